"""Small, self-contained packet helpers for the lab censor (no analyzer imports).

IPv4/TCP/UDP parsing and building, TLS ClientHello SNI extraction, HTTP Host extraction,
and just enough DNS to parse a query and forge an A answer.
"""
from __future__ import annotations

import socket
import struct
from dataclasses import dataclass, field

TCP_FIN, TCP_SYN, TCP_RST, TCP_PSH, TCP_ACK = 0x01, 0x02, 0x04, 0x08, 0x10


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


@dataclass
class IPv4:
    src: str
    dst: str
    proto: int
    ttl: int
    ipid: int
    hlen: int
    raw: bytes
    payload: bytes
    # transport (filled for TCP/UDP)
    sport: int = 0
    dport: int = 0
    seq: int = 0
    ack: int = 0
    flags: int = 0
    window: int = 0
    data: bytes = b""
    l4_ok: bool = False

    @property
    def is_tcp(self) -> bool:
        return self.proto == 6 and self.l4_ok

    @property
    def is_udp(self) -> bool:
        return self.proto == 17 and self.l4_ok


def parse_ipv4(raw: bytes) -> IPv4 | None:
    if len(raw) < 20 or raw[0] >> 4 != 4:
        return None
    hlen = (raw[0] & 0x0F) * 4
    total = struct.unpack_from("!H", raw, 2)[0]
    raw = raw[:total] if total >= hlen else raw
    ipid = struct.unpack_from("!H", raw, 4)[0]
    frag = struct.unpack_from("!H", raw, 6)[0]
    p = IPv4(src=socket.inet_ntoa(raw[12:16]), dst=socket.inet_ntoa(raw[16:20]), proto=raw[9],
             ttl=raw[8], ipid=ipid, hlen=hlen, raw=raw, payload=raw[hlen:])
    if frag & 0x1FFF:  # non-first fragment: no transport header
        return p
    l4 = p.payload
    if p.proto == 6 and len(l4) >= 20:
        p.sport, p.dport, p.seq, p.ack = struct.unpack_from("!HHII", l4)
        doff = (l4[12] >> 4) * 4
        p.flags = l4[13]
        p.window = struct.unpack_from("!H", l4, 14)[0]
        p.data = l4[doff:]
        p.l4_ok = True
    elif p.proto == 17 and len(l4) >= 8:
        p.sport, p.dport = struct.unpack_from("!HH", l4)
        p.data = l4[8:]
        p.l4_ok = True
    return p


def build_ipv4(src: str, dst: str, proto: int, l4: bytes, ttl: int = 64, ipid: int = 0,
               df: bool = False, tos: int = 0) -> bytes:
    hdr = struct.pack("!BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ipid & 0xFFFF,
                      0x4000 if df else 0, ttl & 0xFF, proto, 0,
                      socket.inet_aton(src), socket.inet_aton(dst))
    hdr = hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:]
    return hdr + l4


def _pseudo(src: str, dst: str, proto: int, length: int) -> bytes:
    return socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack("!BBH", 0, proto, length)


def build_tcp(src: str, dst: str, sport: int, dport: int, seq: int, ack: int, flags: int,
              window: int = 0, data: bytes = b"", ttl: int = 64, ipid: int = 0,
              df: bool = False) -> bytes:
    l4 = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                     5 << 4, flags, window & 0xFFFF, 0, 0) + data
    csum = checksum(_pseudo(src, dst, 6, len(l4)) + l4)
    l4 = l4[:16] + struct.pack("!H", csum) + l4[18:]
    return build_ipv4(src, dst, 6, l4, ttl=ttl, ipid=ipid, df=df)


def build_udp(src: str, dst: str, sport: int, dport: int, data: bytes, ttl: int = 64,
              ipid: int = 0, df: bool = False) -> bytes:
    l4 = struct.pack("!HHHH", sport, dport, 8 + len(data), 0) + data
    csum = checksum(_pseudo(src, dst, 17, len(l4)) + l4) or 0xFFFF
    l4 = l4[:6] + struct.pack("!H", csum) + l4[8:]
    return build_ipv4(src, dst, 17, l4, ttl=ttl, ipid=ipid, df=df)


# --------------------------------------------------------------------------- TLS

@dataclass
class ClientHelloInfo:
    sni: str | None
    alpn: list[str] = field(default_factory=list)
    versions: list[int] = field(default_factory=list)


def parse_client_hello_body(body: bytes) -> ClientHelloInfo | None:
    """Parse a ClientHello handshake *body* (after the 4-byte handshake header)."""
    try:
        off = 2 + 32  # legacy_version, random
        sid_len = body[off]
        off += 1 + sid_len
        cs_len = struct.unpack_from("!H", body, off)[0]
        off += 2 + cs_len
        comp_len = body[off]
        off += 1 + comp_len
        if off + 2 > len(body):
            return ClientHelloInfo(sni=None)
        ext_total = struct.unpack_from("!H", body, off)[0]
        off += 2
        end = min(len(body), off + ext_total)
        info = ClientHelloInfo(sni=None)
        while off + 4 <= end:
            etype, elen = struct.unpack_from("!HH", body, off)
            ext = body[off + 4: off + 4 + elen]
            off += 4 + elen
            if etype == 0 and len(ext) >= 5:  # server_name
                list_len = struct.unpack_from("!H", ext)[0]
                p = 2
                while p + 3 <= min(len(ext), 2 + list_len):
                    ntype, nlen = ext[p], struct.unpack_from("!H", ext, p + 1)[0]
                    if ntype == 0:
                        info.sni = ext[p + 3: p + 3 + nlen].decode("ascii", "replace")
                        break
                    p += 3 + nlen
            elif etype == 16 and len(ext) >= 2:  # ALPN
                p = 2
                while p < len(ext):
                    n = ext[p]
                    info.alpn.append(ext[p + 1: p + 1 + n].decode("ascii", "replace"))
                    p += 1 + n
            elif etype == 43 and ext:  # supported_versions
                n = ext[0]
                info.versions = [struct.unpack_from("!H", ext, 1 + 2 * i)[0]
                                 for i in range(n // 2)]
        return info
    except (IndexError, struct.error):
        return None


def tls_client_hello_sni(data: bytes) -> ClientHelloInfo | None:
    """SNI from a TCP payload that starts with a TLS handshake record holding a ClientHello.

    Like most deployed middleboxes it does not reassemble across segments.
    """
    if len(data) < 9 or data[0] != 0x16 or data[1] != 0x03 or data[5] != 0x01:
        return None
    rec_len = struct.unpack_from("!H", data, 3)[0]
    hs = data[5: 5 + rec_len]
    hs_len = int.from_bytes(hs[1:4], "big")
    return parse_client_hello_body(hs[4: 4 + hs_len])


# -------------------------------------------------------------------------- HTTP

HTTP_METHODS = (b"GET ", b"POST ", b"HEAD ", b"PUT ", b"OPTIONS ", b"CONNECT ", b"DELETE ")


def http_host(data: bytes) -> str | None:
    if not data.startswith(HTTP_METHODS):
        return None
    head = data.split(b"\r\n\r\n", 1)[0]
    for line in head.split(b"\r\n")[1:]:
        if line.lower().startswith(b"host:"):
            return line[5:].strip().decode("ascii", "replace").split(":")[0]
    return None


# --------------------------------------------------------------------------- DNS

@dataclass
class DnsQuery:
    txid: int
    flags: int
    qname: str
    qtype: int
    qclass: int
    question: bytes  # raw question section (name + type + class)


def parse_dns_query(data: bytes) -> DnsQuery | None:
    if len(data) < 12:
        return None
    txid, flags, qd, _an, _ns, _ar = struct.unpack_from("!HHHHHH", data)
    if flags & 0x8000 or qd < 1:
        return None
    off = 12
    labels = []
    try:
        while True:
            n = data[off]
            if n == 0:
                off += 1
                break
            if n & 0xC0:
                return None
            labels.append(data[off + 1: off + 1 + n].decode("ascii", "replace"))
            off += 1 + n
        qtype, qclass = struct.unpack_from("!HH", data, off)
    except (IndexError, struct.error):
        return None
    return DnsQuery(txid, flags, ".".join(labels).lower(), qtype, qclass, data[12: off + 4])


def build_dns_a_answer(q: DnsQuery, addrs: list[str], ttl: int = 60, aa: bool = False) -> bytes:
    rd = q.flags & 0x0100
    flags = 0x8000 | rd | 0x0080 | (0x0400 if aa else 0)  # QR, RD copy, RA, AA
    ans = b""
    if q.qtype == 1:
        for a in addrs:
            ans += struct.pack("!HHHIH", 0xC00C, 1, 1, ttl, 4) + socket.inet_aton(a)
    n = len(addrs) if q.qtype == 1 else 0
    return struct.pack("!HHHHHH", q.txid, flags, 1, n, 0, 0) + q.question + ans
