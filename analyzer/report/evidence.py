"""Evidence export: the packets a result cites, as one annotated pcapng.

A reader who wants to verify a verdict should not have to trust our summary of a packet:
``write_evidence_pcapng`` re-reads the original captures named in ``doc["inputs"]`` and
writes every packet cited in any verdict's evidence, byte for byte with its original
timestamp, into a pcapng whose packet comments say why it was cited::

    rst_injection/sni v-3f2a9c1d04: RST TTL 103 vs server's 47 on this flow

(several reasons for one packet are joined with `` | ``). Open it in Wireshark and the
comments show under "Packet comments"; ``frame.comment`` filters on them.

Frame numbers are 1-based positions counting packet blocks only (pcap records; pcapng
Enhanced, Simple and obsolete Packet Blocks across all sections), exactly as Wireshark
numbers them. The captures are read with a small reader of our own rather than dpkt's,
which keeps only the first pcapng interface (so it would lose per-packet link types and
timestamp resolutions); this is not the hot path.

Output layout (little-endian, pcapng 1.0): one Section Header Block; one Interface
Description Block per (input, link type, timestamp resolution, timestamp offset), all before
the first packet, each with ``if_name``, ``if_description`` and ``if_tsresol`` (microseconds
or nanoseconds for pcap inputs, the interface's own for pcapng inputs); then one Enhanced
Packet Block per cited packet, in input/frame order, with an ``opt_comment``.
"""
from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from typing import Any, BinaryIO, Optional

from analyzer import __version__
from analyzer.report.escape import terminal_safe
from analyzer.report.merge import read_view

__all__ = ["write_evidence_pcapng"]

# pcap (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcap-04.html)
PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_GLOBAL_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16
PCAP_LINKTYPE_MASK = 0xFFFF  # the upper bits of the field carry FCS information

# pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html)
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_PB = 0x00000002  # obsolete Packet Block
BT_SPB = 0x00000003
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D
OPT_ENDOFOPT = 0
OPT_COMMENT = 1
OPT_SHB_USERAPPL = 4
OPT_IF_NAME = 2
OPT_IF_DESCRIPTION = 3
OPT_IF_TSRESOL = 9
OPT_IF_TSOFFSET = 14
OPTION_VALUE_MAX = 0xFFFF
TSRESOL_USEC = 6
TSRESOL_NSEC = 9
DEFAULT_TSRESOL = TSRESOL_USEC
OUTPUT_SNAPLEN = 262144

# Refuse absurd lengths instead of allocating them (a corrupt or hostile capture).
MAX_BLOCK_LEN = 64 * 1024 * 1024

COMMENT_SEPARATOR = " | "


@dataclass(frozen=True, slots=True)
class _Interface:
    linktype: int
    tsresol: int  # raw if_tsresol byte: 6 = microseconds, 9 = nanoseconds, 0x80|n = 2^-n
    tsoffset: int
    snaplen: int


@dataclass(frozen=True, slots=True)
class _Packet:
    interface: _Interface
    ts: int  # in units of the interface's resolution, offset not applied
    origlen: int
    data: bytes


def write_evidence_pcapng(doc: dict[str, Any], out_path: str, *,
                          base_dir: Optional[str] = None) -> int:
    """Write every packet cited as evidence in ``doc`` to ``out_path``; return their number.

    Input paths are taken as they are in ``doc["inputs"]``; a relative path that does not
    exist is also looked up under ``base_dir`` (e.g. the directory of the result file).
    Raises ``FileNotFoundError`` when a cited capture cannot be found (or was read from
    stdin), ``ValueError`` when a capture is unreadable or lacks a cited frame.
    """
    view = read_view(doc)
    comments: dict[tuple[int, int], list[str]] = {}
    for verdict in view.verdicts:
        for item in verdict.evidence:
            if item.frame is None:
                continue
            text = f"{verdict.technique}/{verdict.trigger} {verdict.id}: {item.reason}"
            pieces = comments.setdefault((item.input, item.frame), [])
            if text not in pieces:
                pieces.append(text)

    wanted: dict[int, set[int]] = {}
    for index, frame in comments:
        wanted.setdefault(index, set()).add(frame)

    packets: list[tuple[int, int, _Packet]] = []
    for index in sorted(wanted):
        if index >= len(view.inputs):
            raise ValueError(f"evidence cites input #{index}, but the result lists only "
                             f"{len(view.inputs)} input(s)")
        path = _locate(view.inputs[index].path, index, base_dir)
        found = _read_frames(path, wanted[index])
        missing = sorted(wanted[index] - set(found))
        if missing:
            shown = " ".join(str(f) for f in missing[:10]) + (" …" if len(missing) > 10 else "")
            raise ValueError(f"{path}: evidence cites frame(s) {shown}, which the capture does "
                             "not contain; is this the capture the result was made from?")
        packets += [(index, frame, found[frame]) for frame in sorted(found)]

    interface_ids: dict[tuple[int, _Interface], int] = {}
    for index, _, packet in packets:
        interface_ids.setdefault((index, packet.interface), len(interface_ids))

    with open(out_path, "wb") as out:
        n_verdicts = len(view.verdicts)
        out.write(_shb(f"evidence cited by {n_verdicts} verdict(s) of "
                       f"{view.tool_name} {view.tool_version}"))
        for (index, interface) in interface_ids:
            out.write(_idb(interface, view.inputs[index].path, index))
        for index, frame, packet in packets:
            comment = COMMENT_SEPARATOR.join(comments[(index, frame)])
            out.write(_epb(interface_ids[(index, packet.interface)], packet,
                           terminal_safe(comment)))
    return len(packets)


def _locate(path: str, index: int, base_dir: Optional[str]) -> str:
    if path == "-":
        raise FileNotFoundError(f"input #{index} was read from stdin ('-'); save the capture "
                                "to a file and analyze that file to export its evidence")
    if os.path.isfile(path):
        return path
    if base_dir is not None and not os.path.isabs(path):
        candidate = os.path.join(base_dir, path)
        if os.path.isfile(candidate):
            return candidate
    where = f" (also looked in {base_dir})" if base_dir is not None else ""
    raise FileNotFoundError(f"input #{index} capture {path!r} not found{where}; the evidence "
                            "export re-reads the original capture files")


# --------------------------------------------------------------------------------------------
# Reading


def _read_frames(path: str, wanted: set[int]) -> dict[int, _Packet]:
    """The packets at the 1-based positions ``wanted`` of the pcap/pcapng file at ``path``."""
    with open(path, "rb") as fh:
        head = fh.read(4)
        if len(head) == 4 and struct.unpack("<I", head)[0] == BT_SHB:
            return _read_pcapng(fh, path, head, wanted)
        for endian in ("<", ">"):
            if len(head) == 4 and struct.unpack(endian + "I", head)[0] in (PCAP_MAGIC_USEC,
                                                                          PCAP_MAGIC_NSEC):
                return _read_pcap(fh, path, head, endian, wanted)
    raise ValueError(f"{path}: not a pcap or pcapng capture")


def _read_exact(fh: BinaryIO, n: int) -> Optional[bytes]:
    data = fh.read(n)
    return data if len(data) == n else None


def _read_pcap(fh: BinaryIO, path: str, magic: bytes, endian: str,
               wanted: set[int]) -> dict[int, _Packet]:
    rest = _read_exact(fh, PCAP_GLOBAL_HEADER_LEN - 4)
    if rest is None:
        raise ValueError(f"{path}: truncated pcap header")
    nsec = struct.unpack(endian + "I", magic)[0] == PCAP_MAGIC_NSEC
    _, _, _, _, snaplen, network = struct.unpack(endian + "HHiIII", rest)
    interface = _Interface(linktype=network & PCAP_LINKTYPE_MASK,
                           tsresol=TSRESOL_NSEC if nsec else TSRESOL_USEC, tsoffset=0,
                           snaplen=snaplen)
    scale = 10 ** interface.tsresol
    found: dict[int, _Packet] = {}
    last = max(wanted, default=0)
    frame = 0
    while frame < last:
        header = _read_exact(fh, PCAP_RECORD_HEADER_LEN)
        if header is None:
            break
        sec, frac, caplen, origlen = struct.unpack(endian + "IIII", header)
        if caplen > MAX_BLOCK_LEN:
            raise ValueError(f"{path}: record {frame + 1} claims {caplen} bytes; corrupt capture")
        frame += 1
        if frame in wanted:
            data = _read_exact(fh, caplen)
            if data is None:
                break
            found[frame] = _Packet(interface, sec * scale + frac, origlen, data)
        else:
            fh.seek(caplen, os.SEEK_CUR)
    return found


def _parse_options(body: bytes, endian: str) -> dict[int, bytes]:
    """First value of each option code in an options area (bounded, tolerant)."""
    options: dict[int, bytes] = {}
    pos = 0
    while pos + 4 <= len(body):
        code, length = struct.unpack(endian + "HH", body[pos:pos + 4])
        if code == OPT_ENDOFOPT:
            break
        value = body[pos + 4:pos + 4 + length]
        options.setdefault(code, value)
        pos += 4 + length + (-length % 4)
    return options


def _read_pcapng(fh: BinaryIO, path: str, first: bytes,
                 wanted: set[int]) -> dict[int, _Packet]:
    found: dict[int, _Packet] = {}
    last = max(wanted, default=0)
    endian = "<"
    interfaces: list[_Interface] = []
    frame = 0
    head: Optional[bytes] = first + fh.read(4)
    while head is not None and len(head) == 8 and frame < last:
        if struct.unpack("<I", head[:4])[0] == BT_SHB:  # same bytes in either byte order
            bom = _read_exact(fh, 4)
            if bom is None:
                break
            endian = "<" if struct.unpack("<I", bom)[0] == BYTE_ORDER_MAGIC else ">"
            if struct.unpack(endian + "I", bom)[0] != BYTE_ORDER_MAGIC:
                raise ValueError(f"{path}: bad pcapng byte-order magic")
            length = struct.unpack(endian + "I", head[4:])[0]
            _check_length(path, length, 16)
            fh.seek(length - 12, os.SEEK_CUR)
            interfaces = []  # interface ids are per section
            head = _read_exact(fh, 8)
            continue
        block_type, length = struct.unpack(endian + "II", head)
        _check_length(path, length, 12)
        is_packet = block_type in (BT_EPB, BT_SPB, BT_PB)
        if is_packet:
            frame += 1
        if block_type == BT_IDB or (is_packet and frame in wanted):
            body = _read_exact(fh, length - 8)
            if body is None:
                break
            body = body[:-4]  # trailing block length
            if block_type == BT_IDB:
                interfaces.append(_idb_interface(path, body, endian))
            else:
                found[frame] = _packet(path, block_type, body, endian, interfaces)
        else:
            fh.seek(length - 8, os.SEEK_CUR)
        head = _read_exact(fh, 8)
    return found


def _check_length(path: str, length: int, minimum: int) -> None:
    if length < minimum or length % 4 or length > MAX_BLOCK_LEN:
        raise ValueError(f"{path}: pcapng block length {length} is invalid; corrupt capture")


def _idb_interface(path: str, body: bytes, endian: str) -> _Interface:
    if len(body) < 8:
        raise ValueError(f"{path}: truncated pcapng interface description")
    linktype, _, snaplen = struct.unpack(endian + "HHI", body[:8])
    options = _parse_options(body[8:], endian)
    tsresol = options.get(OPT_IF_TSRESOL, bytes([DEFAULT_TSRESOL]))[:1] or bytes([6])
    raw_offset = options.get(OPT_IF_TSOFFSET, b"")
    tsoffset = struct.unpack(endian + "q", raw_offset)[0] if len(raw_offset) == 8 else 0
    return _Interface(linktype=linktype, tsresol=tsresol[0], tsoffset=tsoffset,
                      snaplen=snaplen)


def _packet(path: str, block_type: int, body: bytes, endian: str,
            interfaces: list[_Interface]) -> _Packet:
    if block_type == BT_EPB and len(body) >= 20:
        iface, high, low, caplen, origlen = struct.unpack(endian + "IIIII", body[:20])
        data = body[20:20 + caplen]
    elif block_type == BT_PB and len(body) >= 20:
        iface, _, high, low, caplen, origlen = struct.unpack(endian + "HHIIII", body[:20])
        data = body[20:20 + caplen]
    elif block_type == BT_SPB and len(body) >= 4:
        iface, high, low = 0, 0, 0
        origlen = struct.unpack(endian + "I", body[:4])[0]
        data = body[4:4 + origlen]
    else:
        raise ValueError(f"{path}: truncated pcapng packet block")
    if iface >= len(interfaces):
        raise ValueError(f"{path}: packet refers to undeclared interface {iface}")
    return _Packet(interfaces[iface], (high << 32) | low, origlen, data)


# --------------------------------------------------------------------------------------------
# Writing


def _option(code: int, value: bytes) -> bytes:
    value = value[:OPTION_VALUE_MAX]
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _text_option(code: int, text: str) -> bytes:
    raw = text.encode("utf-8", "backslashreplace")
    if len(raw) > OPTION_VALUE_MAX:  # cut on a character boundary
        raw = raw[:OPTION_VALUE_MAX].decode("utf-8", "ignore").encode("utf-8")
    return _option(code, raw)


def _options(*options: bytes) -> bytes:
    return b"".join(options) + struct.pack("<HH", OPT_ENDOFOPT, 0)


def _block(block_type: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", block_type, length) + body + struct.pack("<I", length)


def _shb(comment: str) -> bytes:
    body = struct.pack("<IHHq", BYTE_ORDER_MAGIC, 1, 0, -1)  # version 1.0, length unknown
    body += _options(_text_option(OPT_COMMENT, terminal_safe(comment)),
                     _text_option(OPT_SHB_USERAPPL, f"analyzer {__version__} evidence export"))
    return _block(BT_SHB, body)


def _idb(interface: _Interface, path: str, index: int) -> bytes:
    body = struct.pack("<HHI", interface.linktype, 0, interface.snaplen or OUTPUT_SNAPLEN)
    options = [_text_option(OPT_IF_NAME, f"input{index}:{os.path.basename(path)}"),
               _text_option(OPT_IF_DESCRIPTION, f"analyzer input #{index}: {path}"),
               _option(OPT_IF_TSRESOL, bytes([interface.tsresol]))]
    if interface.tsoffset:
        options.append(_option(OPT_IF_TSOFFSET, struct.pack("<q", interface.tsoffset)))
    return _block(BT_IDB, body + _options(*options))


def _epb(interface_id: int, packet: _Packet, comment: str) -> bytes:
    data = packet.data
    body = struct.pack("<IIIII", interface_id, (packet.ts >> 32) & 0xFFFFFFFF,
                       packet.ts & 0xFFFFFFFF, len(data), max(packet.origlen, len(data)))
    body += data + b"\0" * (-len(data) % 4)
    body += _options(_text_option(OPT_COMMENT, comment))
    return _block(BT_EPB, body)
