"""QUIC long-header recognition (no decryption; analyzer/decode/quic.py extracts the SNI).

Rules
-----
* Long header (RFC 8999 §5.1, RFC 9000 §17.2): first byte has the form bit (0x80) and the
  fixed bit (0x40) set, i.e. ``first & 0xC0 == 0xC0``; then a 32-bit version, a DCID length
  byte (<= 20 for the versions we know), the DCID, an SCID length byte (<= 20) and the SCID.
* Known versions: 1 (RFC 9000), 2 = 0x6b3343cf (RFC 9369), IETF drafts 0xff0000NN
  (NN = 1..34), Facebook mvfst 0xfaceb001..0xfaceb00f, and Google QUIC versions written as
  ASCII ``Q0NN``/``T0NN`` (Q046+ use the IETF-style long header).  Unknown versions do not
  match (a version-0 Version Negotiation packet is accepted only from the server).
* Packet type: bits 0x30 of the first byte; Initial is type 0 in v1/drafts and type 1 in v2.
  For a client Initial the DCID must be at least 8 bytes (RFC 9000 §7.2), and an Initial
  carries a token-length varint and a length varint that must fit the datagram when the
  datagram is complete.
* A client Initial must be sent in a datagram of at least 1200 bytes (RFC 9000 §14.1); the
  datagram size is taken from ``client_sizes[0]`` when known (payloads may be cut).  A
  smaller one is still reported as QUIC with lower confidence.
* The first ``SCAN_DATAGRAMS`` = 4 client datagrams are examined, so a flow that starts with
  some other datagram (the GFW QUIC experiments send a random 21-byte datagram first) is
  still recognised; the reason says which datagram matched.
* Target: OTHER here; the WhatsApp-by-name rule runs first and uses the SNI that the caller
  decoded into ``facts.sni``.
* ``handshake_answered``: True when a server datagram is a long-header packet of a known
  version (Initial/Handshake/Retry) or a Version Negotiation packet; False when the client
  sent an Initial and nothing came back; else None.

Sources: RFC 8999, RFC 9000, RFC 9369; Wireshark's ``quic`` heuristic dissector and nDPI's
``quic.c`` (version list, same header checks).

Known false positives: random UDP whose first byte is 0xC0..0xFF and whose next four bytes
hit one of the listed versions (about 45 / 2^32 * 1/4 per datagram) and whose CID lengths
are sane.  Other protocols that borrowed the QUIC wire image (e.g. some obfuscating proxies
such as Hysteria, which are real QUIC) are reported as QUIC, which is what they are on the
wire.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Optional

from analyzer.model import FlowFacts, Identification, Target

QUIC_V1: Final = 0x00000001
QUIC_V2: Final = 0x6B3343CF
MIN_CLIENT_INITIAL: Final = 1200
SCAN_DATAGRAMS: Final = 4


def version_name(version: int) -> Optional[str]:
    """Human name of a known QUIC version, None when unknown."""
    if version == QUIC_V1:
        return "QUICv1"
    if version == QUIC_V2:
        return "QUICv2"
    top = version >> 24  # each family below has one first byte: most versions stop here
    if top == 0xFF:
        if version & 0xFFFFFF00 == 0xFF000000 and 1 <= version & 0xFF <= 34:
            return f"draft-{version & 0xFF}"
    elif top == 0xFA:
        if 0xFACEB001 <= version <= 0xFACEB00F:
            return f"mvfst-{version & 0xF}"
    elif top == 0x51 or top == 0x54:  # "Q", "T"
        raw = version.to_bytes(4, "big")
        if raw[1:2] == b"0" and raw[2:4].isdigit():
            return "gQUIC-" + raw.decode("ascii")
    return None


@dataclass(frozen=True, slots=True)
class LongHeader:
    version: int
    packet_type: str  # "initial", "0rtt", "handshake", "retry", "version_negotiation"
    dcid: bytes
    scid: bytes


def _varint(data: bytes, off: int) -> Optional[tuple[int, int]]:
    if off >= len(data):
        return None
    n = 1 << (data[off] >> 6)
    if off + n > len(data):
        return None
    value = data[off] & 0x3F
    for b in data[off + 1:off + n]:
        value = (value << 8) | b
    return value, off + n


def parse_long_header(data: bytes, complete: bool = True) -> Optional[LongHeader]:
    """Parse a QUIC long header; ``complete`` says whether ``data`` is the whole datagram."""
    if len(data) < 7 or data[0] & 0x80 == 0:
        return None
    version = int.from_bytes(data[1:5], "big")
    dcid_len = data[5]
    if version == 0:  # Version Negotiation: fixed bit is unused, CIDs up to 255 bytes.
        off = 6 + dcid_len
        if off >= len(data):
            return None
        scid_len = data[off]
        if off + 1 + scid_len > len(data):
            return None
        return LongHeader(0, "version_negotiation", data[6:off], data[off + 1:off + 1 + scid_len])
    if data[0] & 0x40 == 0 or version_name(version) is None or dcid_len > 20:
        return None
    off = 6 + dcid_len
    if off >= len(data):
        return None
    scid_len = data[off]
    if scid_len > 20 or off + 1 + scid_len > len(data):
        return None
    dcid = data[6:off]
    scid = data[off + 1:off + 1 + scid_len]
    off += 1 + scid_len
    bits = (data[0] & 0x30) >> 4
    if version == QUIC_V2:
        ptype = ("retry", "initial", "0rtt", "handshake")[bits]
    else:
        ptype = ("initial", "0rtt", "handshake", "retry")[bits]
    if ptype == "initial":
        tok = _varint(data, off)
        if tok is None:
            return None
        token_len, off = tok
        if complete and off + token_len > len(data):
            return None
        off += token_len
        ln = _varint(data, off)
        if ln is None:
            return None
        length, off = ln
        if complete and off + length > len(data):
            return None
        if length < 20:  # packet number + at least a 16-byte AEAD tag
            return None
    return LongHeader(version, ptype, dcid, scid)


def _size(payload: bytes, index: int, sizes: tuple[int, ...]) -> int:
    """The datagram's real size when the caller recorded it, else the (maybe cut) length."""
    nonzero = [s for s in sizes if s > 0]
    if index < len(nonzero) and nonzero[index] >= len(payload):
        return nonzero[index]
    return len(payload)


def detect_quic(facts: FlowFacts) -> Optional[tuple[float, tuple[str, ...], Optional[bool]]]:
    """(confidence, reasons, handshake_answered) when the client's first datagram is QUIC."""
    if facts.proto != "udp" or not facts.client_payloads:
        return None
    hdr: Optional[LongHeader] = None
    size = 0
    index = 0
    for index, first in enumerate(facts.client_payloads[:SCAN_DATAGRAMS]):
        if len(first) < 7 or first[0] & 0x80 == 0 \
                or version_name(int.from_bytes(first[1:5], "big")) is None:
            continue  # parse_long_header rejects it (or it is Version Negotiation), any size
        size = _size(first, index, facts.client_sizes)
        hdr = parse_long_header(first, complete=size == len(first))
        if hdr is not None and hdr.version != 0:
            break
        hdr = None
    if hdr is None:
        return None
    name = version_name(hdr.version) or hex(hdr.version)
    reasons: list[str] = [f"QUIC long header, version {name}, {hdr.packet_type} packet"]
    if index:
        reasons.append(f"in client datagram #{index + 1}; earlier datagrams are not QUIC")
    conf = 0.9
    if hdr.packet_type == "initial":
        if len(hdr.dcid) < 8:
            conf = 0.6
            reasons.append(f"client DCID only {len(hdr.dcid)} bytes (RFC 9000 wants >= 8)")
        if size < MIN_CLIENT_INITIAL and not name.startswith("gQUIC"):
            conf = min(conf, 0.6)
            reasons.append(f"client Initial datagram {size} bytes < 1200 (not conforming)")
    else:
        conf = 0.75
        reasons.append("flow does not start with a client Initial")
    answered: Optional[bool] = None
    for sp in facts.server_payloads[:8]:
        shdr = parse_long_header(sp, complete=False)
        if shdr is not None:
            answered = True
            reasons.append(f"server answered with {shdr.packet_type} packet")
            break
    if answered is None and not facts.server_payloads and hdr.packet_type == "initial":
        answered = False
    return conf, tuple(reasons), answered


def identify_quic(facts: FlowFacts) -> Optional[Identification]:
    """Generic QUIC: target OTHER, app ``quic``."""
    found = detect_quic(facts)
    if found is None:
        return None
    conf, reasons, answered = found
    if facts.sni:
        reasons = reasons + (f"SNI {facts.sni}",)
    return Identification(Target.OTHER, "quic", conf, reasons, answered)
