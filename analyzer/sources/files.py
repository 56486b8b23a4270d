"""Capture files (pcap, pcapng, stdin) read in batches of raw records.

Nothing here builds an object per packet: a reader fills a :class:`Batch` of parallel lists
(offset into one shared buffer, captured length, wire length, timestamp, link type) and hands
it to the decoder. Files are read in fixed-size chunks, so memory does not grow with the file.

Formats: classic pcap (micro- and nanosecond magic, both byte orders) and pcapng (several
sections and interfaces, if_tsresol/if_tsoffset, EPB, SPB and the obsolete PB). Frame numbers
are 1-based positions counting packet blocks only, as Wireshark numbers them.

Damage inside an otherwise good file is counted in ``skips`` (reason -> count) and reading
stops or resynchronises as the format allows; a file that is not a capture at all raises
:class:`~analyzer.status.InputError` with a one-line message.
"""
from __future__ import annotations

import struct
from array import array
from dataclasses import dataclass, field
from typing import Any, BinaryIO, Iterator, Optional

from analyzer import speedups
from analyzer.status import InputError

# Link-layer header types (tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_EN10MB = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_OLD_A = 12  # DLT_RAW on some BSDs
LINKTYPE_RAW_OLD_B = 14  # DLT_RAW on OpenBSD
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

LINKTYPE_NAMES = {
    LINKTYPE_NULL: "NULL",
    LINKTYPE_EN10MB: "EN10MB",
    LINKTYPE_RAW: "RAW",
    LINKTYPE_RAW_OLD_A: "RAW",
    LINKTYPE_RAW_OLD_B: "RAW",
    LINKTYPE_LOOP: "LOOP",
    LINKTYPE_LINUX_SLL: "LINUX_SLL",
    LINKTYPE_IPV4: "IPV4",
    LINKTYPE_IPV6: "IPV6",
    LINKTYPE_LINUX_SLL2: "LINUX_SLL2",
}

PCAP_MAGIC_USEC = 0xA1B2C3D4
PCAP_MAGIC_NSEC = 0xA1B23C4D
PCAP_GLOBAL_HEADER_LEN = 24
PCAP_RECORD_HEADER_LEN = 16
PCAPNG_SHB = 0x0A0D0D0A
PCAPNG_BYTE_ORDER_MAGIC = 0x1A2B3C4D
PCAPNG_IDB = 0x00000001
PCAPNG_PB = 0x00000002  # obsolete Packet Block
PCAPNG_SPB = 0x00000003
PCAPNG_EPB = 0x00000006
PCAPNG_OPT_ENDOFOPT = 0
PCAPNG_OPT_IF_TSRESOL = 9
PCAPNG_OPT_IF_TSOFFSET = 14

# A record longer than this is corruption, not a packet (Wireshark's own limit is 256 KiB
# for most link types; jumbo/TSO captures stay far below 1 MiB).
MAX_RECORD_LEN = 1 << 20
CHUNK_BYTES = 4 << 20


def linktype_name(linktype: int) -> str:
    return LINKTYPE_NAMES.get(linktype, f"LINKTYPE_{linktype}")


# (data offsets, caplens, wirelens, ts) of the records of one batch, numpy arrays
_RecordColumns = tuple[Any, Any, Any, Any]
# (offsets, caplens, wirelens, ts, linktypes) of a batch as Python lists
BatchLists = tuple[list[int], list[int], list[int], list[float], list[int]]


@dataclass(slots=True)
class Batch:
    """A run of records sharing one buffer. Index i = one packet in all of the parallel
    sequences. Readers fill them as lists, numpy arrays or typed memoryviews (the C record
    scan); :meth:`arrays`, :meth:`columns` and :meth:`lists` give numpy arrays, contiguous
    int64/float64 buffers, or lists (converted once and cached). numpy is imported only when
    asked for: the C path never needs it."""

    buf: bytes
    first_frame: int
    offsets: Any = field(default_factory=list)
    caplens: Any = field(default_factory=list)
    wirelens: Any = field(default_factory=list)
    ts: Any = field(default_factory=list)
    linktypes: Any = field(default_factory=list)
    _arrays: Optional[tuple[Any, Any, Any, Any, Any]] = field(default=None, init=False, repr=False)
    _lists: Optional[BatchLists] = field(default=None, init=False, repr=False)

    def __len__(self) -> int:
        return len(self.offsets)

    def arrays(self) -> tuple[Any, Any, Any, Any, Any]:
        """(offsets, caplens, wirelens, ts, linktypes) as numpy arrays."""
        if self._arrays is None:
            import numpy as np

            self._arrays = (np.asarray(self.offsets, dtype=np.int64), np.asarray(self.caplens, dtype=np.int64),
                            np.asarray(self.wirelens, dtype=np.int64), np.asarray(self.ts, dtype=np.float64),
                            np.asarray(self.linktypes, dtype=np.int64))
        return self._arrays

    def columns(self) -> tuple[Any, Any, Any, Any, Any]:
        """(offsets, caplens, wirelens, ts, linktypes) as C-contiguous int64/float64 buffers
        (the C flow table's input), without numpy unless the batch already holds arrays."""
        if self._arrays is not None:
            import numpy as np

            return tuple(np.ascontiguousarray(a) for a in self._arrays)  # type: ignore[return-value]
        return (_column(self.offsets, "q"), _column(self.caplens, "q"), _column(self.wirelens, "q"),
                _column(self.ts, "d"), _column(self.linktypes, "q"))

    def lists(self) -> BatchLists:
        """(offsets, caplens, wirelens, ts, linktypes) as Python lists (per-packet path)."""
        if self._lists is None:
            self._lists = tuple(  # type: ignore[assignment]
                x.tolist() if hasattr(x, "tolist") else list(x)
                for x in (self.offsets, self.caplens, self.wirelens, self.ts, self.linktypes))
        assert self._lists is not None
        return self._lists


def _column(x: Any, code: str) -> Any:
    """x as a contiguous buffer of C type ``code`` ('q': int64, 'd': float64)."""
    if isinstance(x, memoryview) and x.format == code and x.c_contiguous:
        return x
    if isinstance(x, (list, tuple)):
        return memoryview(array(code, x))
    import numpy as np

    return np.ascontiguousarray(x, dtype=np.int64 if code == "q" else np.float64)


class CaptureReader:
    """Common bookkeeping of the readers."""

    format = "unknown"

    def __init__(self, stream: BinaryIO, name: str, batch_packets: int = 65_536) -> None:
        self.stream = stream
        self.name = name
        self.batch_packets = batch_packets
        self.skips: dict[str, int] = {}
        self.frames = 0
        self.linktypes_seen: list[int] = []

    def skip(self, reason: str, n: int = 1) -> None:
        self.skips[reason] = self.skips.get(reason, 0) + n

    def _saw_linktype(self, lt: int) -> None:
        if lt not in self.linktypes_seen:
            self.linktypes_seen.append(lt)

    @property
    def linktype(self) -> str:
        if not self.linktypes_seen:
            return "UNKNOWN"
        return ",".join(linktype_name(lt) for lt in self.linktypes_seen)

    def batches(self) -> Iterator[Batch]:  # pragma: no cover - abstract
        raise NotImplementedError


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    parts = []
    got = 0
    while got < n:
        b = stream.read(n - got)
        if not b:
            break
        parts.append(b)
        got += len(b)
    return b"".join(parts)


class _Chunks:
    """A capture stream in chunks, for a walk that may stop inside a record or block.

    A regular file is re-read from the first byte the walk did not use (`pending + chunk`
    copied every chunk into a fresh allocation, which cost four times the read itself), with
    reads doubled while one holds no complete item; a pipe gets the unused bytes joined to
    the next chunk. ``first``: bytes the caller already took from the stream."""

    __slots__ = ("stream", "pos", "size", "pending", "eof")

    def __init__(self, stream: BinaryIO, first: bytes = b"") -> None:
        self.stream = stream
        try:  # a seekable file: where its first unread byte is
            self.pos: Optional[int] = stream.tell() - len(first) if stream.seekable() else None
        except (OSError, ValueError, AttributeError):
            self.pos = None
        self.size = CHUNK_BYTES
        self.pending = first
        self.eof = False  # the stream is exhausted: what the walk leaves now is truncated

    def read(self) -> bytes:
        if self.pos is not None:
            self.stream.seek(self.pos)
            buf = self.stream.read(self.size)
            self.eof = len(buf) < self.size
            return buf
        chunk = self.stream.read(CHUNK_BYTES)
        if not chunk:
            self.eof = True
            return self.pending
        return self.pending + chunk if self.pending else chunk

    def used(self, buf: bytes, off: int) -> int:
        """The walk used buf[:off]; returns how many bytes it left."""
        if self.pos is not None:
            self.pos += off
            self.size = self.size * 2 if off == 0 else CHUNK_BYTES
        else:
            self.pending = buf[off:]
        return len(buf) - off


class PcapReader(CaptureReader):
    format = "pcap"

    def __init__(self, stream: BinaryIO, name: str, header: bytes, batch_packets: int = 65_536):
        super().__init__(stream, name, batch_packets)
        if len(header) < PCAP_GLOBAL_HEADER_LEN:
            raise InputError(f"{name}: truncated pcap header ({len(header)} of 24 bytes)")
        magic_le = struct.unpack_from("<I", header, 0)[0]
        if magic_le in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
            self.endian = "<"
        else:
            self.endian = ">"
        magic = struct.unpack_from(self.endian + "I", header, 0)[0]
        self.nanosecond = magic == PCAP_MAGIC_NSEC
        if self.nanosecond:
            self.format = "pcap-ns"
        _vmaj, _vmin, _zone, _sig, self.snaplen, network = struct.unpack_from(
            self.endian + "HHiIII", header, 4
        )
        # The upper 16 bits of the link type field carry FCS info (pcap-savefile(5)).
        self.linktype_value = network & 0xFFFF
        self._saw_linktype(self.linktype_value)

    def batches(self) -> Iterator[Batch]:
        scan = self._scan_native if speedups.native is not None else self._scan_numpy
        lt = self.linktype_value
        frame = 0
        chunks = _Chunks(self.stream)
        while True:
            buf = chunks.read()
            off, corrupt, parts = scan(buf)
            for offsets, caplens, wirelens, ts in parts:
                batch = Batch(buf, frame + 1, offsets, caplens, wirelens, ts,
                              memoryview(array("q", (lt,)) * len(offsets)))
                frame += len(offsets)
                yield batch
            if corrupt:
                # No resync is possible in classic pcap: the rest is unreadable.
                self.skip("corrupt_record_length")
                break
            left = chunks.used(buf, off)
            if chunks.eof:
                if left:
                    self.skip("truncated_record")
                break
        self.frames = frame

    def _scan_numpy(self, buf: bytes) -> tuple[int, bool, Iterator[_RecordColumns]]:
        """The complete records of buf: (where the walk stopped, whether at a corrupt record
        length, per batch (data offsets, caplens, wirelens, ts)). The Python loop only follows
        the record lengths; the record headers of a batch are then gathered at once with numpy
        (fast path, STYLE rule 6). The reference for :meth:`_scan_native`."""
        import numpy as np  # the reference path only

        caplen_at = struct.Struct(self.endian + "I").unpack_from
        hdr = PCAP_RECORD_HEADER_LEN
        n = len(buf)
        off = 0
        corrupt = False
        starts: list[int] = []
        append = starts.append
        limit = n - hdr
        while off <= limit:
            incl = caplen_at(buf, off + 8)[0]
            if incl > MAX_RECORD_LEN:
                corrupt = True
                break
            end = off + hdr + incl
            if end > n:
                break
            append(off)
            off = end
        return off, corrupt, self._gather(buf, starts)

    def _gather(self, buf: bytes, starts: list[int]) -> Iterator[_RecordColumns]:
        import numpy as np  # the reference path only

        hdr = PCAP_RECORD_HEADER_LEN
        scale = 1e-9 if self.nanosecond else 1e-6
        rec_dtype = np.dtype(self.endian + "u4")
        raw = np.frombuffer(buf, dtype=np.uint8)
        for i in range(0, len(starts), self.batch_packets):
            part = np.asarray(starts[i:i + self.batch_packets], dtype=np.int64)
            # one contiguous row per header field (sec, frac, incl, orig), as the C scan gives
            heads = raw[part[:, None] + np.arange(hdr)].view(rec_dtype).reshape(-1, 4)
            fields = heads.T.astype(np.int64, order="C")
            yield part + hdr, fields[2], fields[3], fields[0] + fields[1] * scale

    def _scan_native(self, buf: bytes) -> tuple[int, bool, Iterator[_RecordColumns]]:
        """:meth:`_scan_numpy` in one C call (analyzer/_speedups.c); identical results."""
        native = speedups.native
        assert native is not None
        count, off, corrupt, data = native.pcap_scan(buf, self.endian == ">", self.nanosecond,
                                                     MAX_RECORD_LEN)
        # four columns of `count` 8-byte items: offsets, caplens, wirelens (int64), ts (float64);
        # typed memoryviews, so that the C path needs no numpy
        ints = memoryview(data).cast("q")
        floats = memoryview(data).cast("d")
        step = self.batch_packets
        parts = ((ints[i:min(i + step, count)], ints[count + i:count + min(i + step, count)],
                  ints[2 * count + i:2 * count + min(i + step, count)],
                  floats[3 * count + i:3 * count + min(i + step, count)])
                 for i in range(0, count, step))
        return off, corrupt, parts


class PcapngReader(CaptureReader):
    format = "pcapng"

    def __init__(self, stream: BinaryIO, name: str, header: bytes, batch_packets: int = 65_536):
        super().__init__(stream, name, batch_packets)
        self._first = header

    def batches(self) -> Iterator[Batch]:
        endian = "<"
        interfaces: list[tuple[int, float, float, int]] = []  # linktype, resolution, offset, snaplen
        walk = self._walk_native if speedups.native is not None else self._walk_python
        frame = 0
        chunks = _Chunks(self.stream, self._first)  # open_reader took the first bytes already
        while True:
            buf = chunks.read()
            off, stop, endian, interfaces, parts = walk(buf, endian, interfaces)
            for batch in parts:
                batch.first_frame = frame + 1
                frame += len(batch)
                yield batch
            if stop:  # damage that ends the file (counted by the walk)
                break
            left = chunks.used(buf, off)
            if chunks.eof:
                if left:
                    self.skip("truncated_block")
                break
        self.frames = frame

    def _walk_python(self, buf: bytes, endian: str, interfaces: list[tuple[int, float, float, int]]
                     ) -> tuple[int, bool, str, list[tuple[int, float, float, int]], list[Batch]]:
        """The blocks of one buffer: (where the walk stopped, damage that ends the file, byte
        order, interfaces, batches with their frame numbers still to set). The reference for
        :meth:`_walk_native`."""
        n = len(buf)
        off = 0
        stop = False
        parts: list[Batch] = []
        batch = Batch(buf, 0)
        while off + 12 <= n:
            btype = struct.unpack_from(endian + "I", buf, off)[0]
            if btype == PCAPNG_SHB:
                bom = buf[off + 8 : off + 12]
                if bom == b"\x4d\x3c\x2b\x1a":
                    endian = "<"
                elif bom == b"\x1a\x2b\x3c\x4d":
                    endian = ">"
                else:
                    self.skip("corrupt_section_header")
                    off = n
                    stop = True
                    break
                interfaces = []
            blen = struct.unpack_from(endian + "I", buf, off + 4)[0]
            if blen < 12 or blen % 4 or blen > MAX_RECORD_LEN + 64:
                self.skip("corrupt_block_length")
                off = n
                stop = True
                break
            if off + blen > n:
                break
            body = off + 8
            if btype == PCAPNG_IDB:
                interfaces.append(self._parse_idb(buf, body, off + blen - 4, endian))
            elif btype in (PCAPNG_EPB, PCAPNG_PB, PCAPNG_SPB):
                rec = self._parse_packet_block(buf, btype, body, off + blen - 4, endian, interfaces)
                if rec is not None:
                    data_off, caplen, wirelen, ts, lt = rec
                    batch.offsets.append(data_off)
                    batch.caplens.append(caplen)
                    batch.wirelens.append(wirelen)
                    batch.ts.append(ts)
                    batch.linktypes.append(lt)
                else:
                    # Keep frame numbering aligned with Wireshark: the block still counts.
                    batch.offsets.append(body)
                    batch.caplens.append(0)
                    batch.wirelens.append(0)
                    batch.ts.append(0.0)
                    batch.linktypes.append(-1)
                if len(batch.offsets) >= self.batch_packets:
                    parts.append(batch)
                    batch = Batch(buf, 0)
            off += blen
        if batch.offsets:
            parts.append(batch)
        return off, stop, endian, interfaces, parts

    def _walk_native(self, buf: bytes, endian: str, interfaces: list[tuple[int, float, float, int]]
                     ) -> tuple[int, bool, str, list[tuple[int, float, float, int]], list[Batch]]:
        """:meth:`_walk_python` in C (analyzer/_speedups.c pcapng_scan); identical results
        (tests/core/test_speedups.py)."""
        native = speedups.native
        assert native is not None
        off, stop, big, interfaces, idb_lts, skips, count, data = native.pcapng_scan(
            buf, endian == ">", interfaces, MAX_RECORD_LEN)
        for lt in idb_lts:
            self._saw_linktype(lt)
        for reason, k in skips.items():
            self.skip(reason, k)
        ints = memoryview(data).cast("q")
        floats = memoryview(data).cast("d")
        parts = []
        for i in range(0, count, self.batch_packets):
            j = min(i + self.batch_packets, count)
            parts.append(Batch(buf, 0, ints[i:j], ints[count + i:count + j], ints[2 * count + i:2 * count + j],
                               floats[3 * count + i:3 * count + j], ints[4 * count + i:4 * count + j]))
        return off, stop, ">" if big else "<", interfaces, parts

    def _parse_idb(self, buf: bytes, start: int, end: int, endian: str) -> tuple[int, float, float, int]:
        if start + 8 > end:
            self.skip("corrupt_interface_block")
            return (-1, 1e-6, 0.0, 0)
        linktype, _res, snaplen = struct.unpack_from(endian + "HHI", buf, start)
        resolution = 1e-6
        tsoffset = 0.0
        o = start + 8
        while o + 4 <= end:
            code, length = struct.unpack_from(endian + "HH", buf, o)
            o += 4
            if code == PCAPNG_OPT_ENDOFOPT or o + length > end:
                break
            if code == PCAPNG_OPT_IF_TSRESOL and length >= 1:
                v = buf[o]
                resolution = 2.0 ** -(v & 0x7F) if v & 0x80 else 10.0 ** -v
            elif code == PCAPNG_OPT_IF_TSOFFSET and length >= 8:
                tsoffset = float(struct.unpack_from(endian + "q", buf, o)[0])
            o += (length + 3) & ~3
        self._saw_linktype(linktype)
        return (linktype, resolution, tsoffset, snaplen)

    def _parse_packet_block(
        self,
        buf: bytes,
        btype: int,
        start: int,
        end: int,
        endian: str,
        interfaces: list[tuple[int, float, float, int]],
    ) -> Optional[tuple[int, int, int, float, int]]:
        if btype == PCAPNG_SPB:
            if start + 4 > end or not interfaces:
                self.skip("corrupt_packet_block")
                return None
            wirelen = struct.unpack_from(endian + "I", buf, start)[0]
            lt, _res, _tso, snaplen = interfaces[0]
            caplen = min(wirelen, end - start - 4)
            if snaplen:
                caplen = min(caplen, snaplen)
            return (start + 4, caplen, wirelen, 0.0, lt)
        if btype == PCAPNG_EPB:
            if start + 20 > end:
                self.skip("corrupt_packet_block")
                return None
            ifid, hi, lo, caplen, wirelen = struct.unpack_from(endian + "IIIII", buf, start)
            data = start + 20
        else:
            if start + 20 > end:
                self.skip("corrupt_packet_block")
                return None
            ifid, _drops, hi, lo, caplen, wirelen = struct.unpack_from(endian + "HHIIII", buf, start)
            data = start + 20
        if ifid >= len(interfaces):
            self.skip("unknown_interface")
            return None
        if data + caplen > end:
            self.skip("corrupt_packet_block")
            return None
        lt, res, tso, _snap = interfaces[ifid]
        ts = ((hi << 32) | lo) * res + tso
        return (data, caplen, wirelen, ts, lt)


def open_reader(stream: BinaryIO, name: str, batch_packets: int = 65_536) -> CaptureReader:
    """Sniff the magic and return the matching reader (raises InputError for non-captures)."""
    head = _read_exact(stream, PCAP_GLOBAL_HEADER_LEN)
    if not head:
        raise InputError(f"{name}: empty file, not a capture")
    if len(head) < 4:
        raise InputError(f"{name}: too short to be a pcap or pcapng file ({len(head)} bytes)")
    magic_le = struct.unpack_from("<I", head, 0)[0]
    magic_be = struct.unpack_from(">I", head, 0)[0]
    if magic_le in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC) or magic_be in (PCAP_MAGIC_USEC, PCAP_MAGIC_NSEC):
        return PcapReader(stream, name, head, batch_packets)
    if magic_le == PCAPNG_SHB:
        if len(head) < 12 or head[8:12] not in (b"\x4d\x3c\x2b\x1a", b"\x1a\x2b\x3c\x4d"):
            raise InputError(f"{name}: damaged pcapng section header")
        return PcapngReader(stream, name, head, batch_packets)
    raise InputError(f"{name}: not a pcap or pcapng file (magic 0x{magic_be:08x})")
