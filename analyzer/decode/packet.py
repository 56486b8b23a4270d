"""Bytes of one frame -> the header fields the analysis needs (link, IPv4/IPv6, TCP/UDP/ICMP).

This is the per-packet ("deep") decoder. The batch path in :mod:`analyzer.decode.fast`
decides which packets need it; the reference mode runs it on every packet. Every read is
bounds-checked against the captured length; whatever cannot be decoded raises
:class:`~analyzer.status.DecodeError` with a short reason that the pipeline counts in
``stats.skipped``. No other exception may leave :func:`decode_frame`.

RFCs: 791 (IPv4), 8200 (IPv6 and extension headers), 9293 (TCP), 768 (UDP), 792/4443 (ICMP).
"""
from __future__ import annotations

import struct
from functools import lru_cache
from typing import Final, Optional

from analyzer.sources.files import (
    LINKTYPE_EN10MB,
    LINKTYPE_IPV4,
    LINKTYPE_IPV6,
    LINKTYPE_LINUX_SLL,
    LINKTYPE_LINUX_SLL2,
    LINKTYPE_LOOP,
    LINKTYPE_NULL,
    LINKTYPE_RAW,
    LINKTYPE_RAW_OLD_A,
    LINKTYPE_RAW_OLD_B,
)
from analyzer.status import DecodeError

ETH_HEADER_LEN: Final = 14
ETHERTYPE_IPV4: Final = 0x0800
ETHERTYPE_IPV6: Final = 0x86DD
ETHERTYPE_VLAN: Final = (0x8100, 0x88A8, 0x9100)
VLAN_TAG_LEN: Final = 4
MAX_VLAN_TAGS: Final = 4
SLL_HEADER_LEN: Final = 16
SLL2_HEADER_LEN: Final = 20
NULL_HEADER_LEN: Final = 4
# BSD address families for IPv6 differ per OS (loopback headers of pcap-linktype(7)).
AF_INET: Final = 2
AF_INET6_VALUES: Final = (10, 24, 28, 30)

IPV4_MIN_HEADER: Final = 20
IPV6_HEADER_LEN: Final = 40
IPV4_FLAG_DF: Final = 0x4000
IPV4_FLAG_MF: Final = 0x2000
IPV4_FRAG_OFFSET_MASK: Final = 0x1FFF

IPPROTO_HOPOPTS: Final = 0
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_ROUTING: Final = 43
IPPROTO_FRAGMENT: Final = 44
IPPROTO_GRE: Final = 47
IPPROTO_ESP: Final = 50
IPPROTO_AH: Final = 51
IPPROTO_ICMPV6: Final = 58
IPPROTO_NONE: Final = 59
IPPROTO_DSTOPTS: Final = 60
IPPROTO_MOBILITY: Final = 135
IPV6_EXT_HEADERS: Final = (IPPROTO_HOPOPTS, IPPROTO_ROUTING, IPPROTO_DSTOPTS, IPPROTO_MOBILITY, 139, 140)
MAX_EXT_HEADERS: Final = 16

TCP_MIN_HEADER: Final = 20
UDP_HEADER_LEN: Final = 8
ICMP_HEADER_LEN: Final = 8

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10
TCP_URG: Final = 0x20
TCP_ECE: Final = 0x40
TCP_CWR: Final = 0x80

ICMP_DEST_UNREACH: Final = 3
ICMP_TIME_EXCEEDED: Final = 11
ICMPV6_DEST_UNREACH: Final = 1
ICMPV6_TIME_EXCEEDED: Final = 3

PROTO_NAMES: Final = {IPPROTO_TCP: "tcp", IPPROTO_UDP: "udp", IPPROTO_ICMP: "icmp",
               IPPROTO_ICMPV6: "icmpv6", IPPROTO_ESP: "esp", IPPROTO_GRE: "gre", IPPROTO_AH: "ah"}

_H: Final = struct.Struct("!H")
_HH: Final = struct.Struct("!HH")
_IPV4: Final = struct.Struct("!BBHHHBBH4s4s")
_TCP: Final = struct.Struct("!HHIIBBH")
_IPV6: Final = struct.Struct("!IHBB16s16s")


class Packet:
    """Decoded header fields of one frame. Built only for packets the deep path looks at."""

    __slots__ = (
        "frame", "ts", "input", "ipv", "src", "dst", "proto", "ttl", "ipid", "df", "ip_len",
        "frag", "frag_id", "frag_offset", "frag_more", "sport", "dport", "seq", "ack",
        "flags", "win", "options", "payload", "icmp_type", "icmp_code", "quoted",
        "wirelen", "frag_data", "frag_nxt",
    )

    def __init__(self) -> None:
        self.frame = 0
        self.ts = 0.0
        self.input = 0
        self.ipv = 4
        self.src = b""
        self.dst = b""
        self.proto = 0
        self.ttl = 0
        self.ipid = -1  # -1: no IP-ID (IPv6 without fragment header)
        self.df = False
        self.ip_len = 0
        self.frag = False
        self.frag_id = 0
        self.frag_offset = 0
        self.frag_more = False
        self.sport = 0
        self.dport = 0
        self.seq = 0
        self.ack = 0
        self.flags = 0
        self.win = 0
        self.options = b""
        self.payload = b""
        self.icmp_type = -1
        self.icmp_code = -1
        self.quoted: Optional[Packet] = None
        self.wirelen = 0
        self.frag_data = b""  # fragments: the bytes after the IP (fragment) header
        self.frag_nxt = 0  # fragments: the protocol the fragment data starts with


def link_offset(buf: bytes, off: int, end: int, linktype: int) -> tuple[int, int]:
    """Return (offset of the network header, IP version hint or 0 when unknown)."""
    if linktype == LINKTYPE_EN10MB:
        if off + ETH_HEADER_LEN > end:
            raise DecodeError("truncated_link")
        etype = _H.unpack_from(buf, off + 12)[0]
        o = off + ETH_HEADER_LEN
        tags = 0
        while etype in ETHERTYPE_VLAN:
            tags += 1
            if tags > MAX_VLAN_TAGS or o + VLAN_TAG_LEN > end:
                raise DecodeError("truncated_link")
            etype = _H.unpack_from(buf, o + 2)[0]
            o += VLAN_TAG_LEN
        return o, _ethertype_version(etype)
    if linktype == LINKTYPE_LINUX_SLL:
        if off + SLL_HEADER_LEN > end:
            raise DecodeError("truncated_link")
        return off + SLL_HEADER_LEN, _ethertype_version(_H.unpack_from(buf, off + 14)[0])
    if linktype == LINKTYPE_LINUX_SLL2:
        if off + SLL2_HEADER_LEN > end:
            raise DecodeError("truncated_link")
        return off + SLL2_HEADER_LEN, _ethertype_version(_H.unpack_from(buf, off)[0])
    if linktype in (LINKTYPE_RAW, LINKTYPE_RAW_OLD_A, LINKTYPE_RAW_OLD_B):
        return off, -1
    if linktype == LINKTYPE_IPV4:
        return off, 4
    if linktype == LINKTYPE_IPV6:
        return off, 6
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if off + NULL_HEADER_LEN > end:
            raise DecodeError("truncated_link")
        if linktype == LINKTYPE_LOOP:
            fam = struct.unpack_from("!I", buf, off)[0]
        else:
            # DLT_NULL stores the family in the capturing host's byte order.
            fam = struct.unpack_from("<I", buf, off)[0]
            if fam > 0xFFFF:
                fam = struct.unpack_from(">I", buf, off)[0]
        if fam == AF_INET:
            return off + NULL_HEADER_LEN, 4
        if fam in AF_INET6_VALUES:
            return off + NULL_HEADER_LEN, 6
        return off + NULL_HEADER_LEN, 0
    raise DecodeError("unsupported_linktype")


def _ethertype_version(etype: int) -> int:
    if etype == ETHERTYPE_IPV4:
        return 4
    if etype == ETHERTYPE_IPV6:
        return 6
    return 0


def decode_frame(buf: bytes, off: int, caplen: int, linktype: int) -> Packet:
    """Decode one frame. Raises DecodeError(reason) for anything that is not usable IP."""
    end = off + caplen
    if end > len(buf):
        raise DecodeError("truncated_record")
    l3, version = link_offset(buf, off, end, linktype)
    if version == 0:
        raise DecodeError("not_ip")
    if l3 >= end:
        raise DecodeError("truncated_ip")
    actual = buf[l3] >> 4
    if version == -1:
        version = actual
    if actual != version or version not in (4, 6):
        raise DecodeError("bad_ip_version")
    pkt = Packet()
    if version == 4:
        _decode_ipv4(pkt, buf, l3, end)
    else:
        _decode_ipv6(pkt, buf, l3, end)
    return pkt


def _decode_ipv4(pkt: Packet, buf: bytes, o: int, end: int) -> None:
    if o + IPV4_MIN_HEADER > end:
        raise DecodeError("truncated_ip")
    vihl, _tos, total, ipid, fl, ttl, proto, _csum, src, dst = _IPV4.unpack_from(buf, o)
    ihl = (vihl & 0x0F) * 4
    if ihl < IPV4_MIN_HEADER or total < ihl:
        raise DecodeError("bad_ip_header")
    if o + ihl > end:
        raise DecodeError("truncated_ip")
    # Ethernet pads short frames; the IP total length says where the datagram ends.
    ip_end = min(end, o + total)
    pkt.ipv = 4
    pkt.src = src
    pkt.dst = dst
    pkt.proto = proto
    pkt.ttl = ttl
    pkt.ipid = ipid
    pkt.df = bool(fl & IPV4_FLAG_DF)
    pkt.ip_len = total
    frag_off = (fl & IPV4_FRAG_OFFSET_MASK) * 8
    more = bool(fl & IPV4_FLAG_MF)
    if frag_off or more:
        pkt.frag = True
        pkt.frag_id = ipid
        pkt.frag_offset = frag_off
        pkt.frag_more = more
        pkt.payload = buf[o + ihl : ip_end]
        pkt.frag_data = pkt.payload
        pkt.frag_nxt = proto
        if frag_off:
            return
    _decode_l4(pkt, buf, o + ihl, ip_end)


def _decode_ipv6(pkt: Packet, buf: bytes, o: int, end: int) -> None:
    if o + IPV6_HEADER_LEN > end:
        raise DecodeError("truncated_ip")
    _vtcfl, plen, nxt, hlim, src, dst = _IPV6.unpack_from(buf, o)
    pkt.ipv = 6
    pkt.src = src
    pkt.dst = dst
    pkt.ttl = hlim
    pkt.ip_len = IPV6_HEADER_LEN + plen
    ip_end = min(end, o + IPV6_HEADER_LEN + plen) if plen else end  # plen 0: jumbogram
    p = o + IPV6_HEADER_LEN
    for _ in range(MAX_EXT_HEADERS):
        if nxt in IPV6_EXT_HEADERS or nxt == IPPROTO_AH:
            nxt, p = _skip_ext_header(buf, p, ip_end, nxt)
            continue
        if nxt == IPPROTO_FRAGMENT:
            if p + 8 > ip_end:
                raise DecodeError("truncated_ipv6_ext")
            fo = _H.unpack_from(buf, p + 2)[0]
            pkt.frag = True
            pkt.frag_offset = fo & 0xFFF8
            pkt.frag_more = bool(fo & 1)
            pkt.frag_id = struct.unpack_from("!I", buf, p + 4)[0]
            pkt.ipid = pkt.frag_id & 0xFFFF
            nxt = buf[p]
            p += 8
            pkt.frag_data = buf[p:ip_end]
            pkt.frag_nxt = nxt
            if pkt.frag_offset:
                pkt.proto = nxt
                pkt.payload = buf[p:ip_end]
                return
            if pkt.frag_more:
                pkt.proto = nxt
                pkt.payload = buf[p:ip_end]
            continue
        break
    else:
        raise DecodeError("too_many_ipv6_ext")
    pkt.proto = nxt
    _decode_l4(pkt, buf, p, ip_end)


def _skip_ext_header(buf: bytes, p: int, end: int, nxt: int) -> tuple[int, int]:
    """Skip one IPv6 extension header at p: (next header, offset after it). RFC 8200 §4;
    AH counts its length in 4-octet units minus 2 (RFC 4302)."""
    if p + 2 > end:
        raise DecodeError("truncated_ipv6_ext")
    hdr_len = (buf[p + 1] + 2) * 4 if nxt == IPPROTO_AH else (buf[p + 1] + 1) * 8
    if p + hdr_len > end:
        raise DecodeError("truncated_ipv6_ext")
    return buf[p], p + hdr_len


def decode_reassembled(first: Packet, data: bytes) -> Packet:
    """The datagram made of fragments: IP fields of the first fragment, transport decoded from
    the reassembled bytes ``data`` (which start with protocol ``first.frag_nxt``)."""
    pkt = Packet()
    pkt.ipv, pkt.src, pkt.dst, pkt.ttl = first.ipv, first.src, first.dst, first.ttl
    pkt.ipid, pkt.df = first.ipid, first.df
    pkt.ip_len = first.ip_len - len(first.frag_data) + len(data)
    nxt = first.frag_nxt
    p = 0
    end = len(data)
    if first.ipv == 6:
        for _ in range(MAX_EXT_HEADERS):
            if nxt not in IPV6_EXT_HEADERS and nxt != IPPROTO_AH:
                break
            nxt, p = _skip_ext_header(data, p, end, nxt)
    pkt.proto = nxt
    _decode_l4(pkt, data, p, end)
    return pkt


def _decode_l4(pkt: Packet, buf: bytes, p: int, end: int) -> None:
    proto = pkt.proto
    if proto == IPPROTO_TCP:
        if p + TCP_MIN_HEADER > end:
            if pkt.frag:
                return
            raise DecodeError("truncated_tcp")
        sport, dport, seq, ack, doff, flags, win = _TCP.unpack_from(buf, p)
        hlen = (doff >> 4) * 4
        if hlen < TCP_MIN_HEADER:
            raise DecodeError("bad_tcp_header")
        if p + hlen > end:
            raise DecodeError("truncated_tcp")
        pkt.sport = sport
        pkt.dport = dport
        pkt.seq = seq
        pkt.ack = ack
        pkt.flags = flags | ((doff & 0x01) << 8)  # NS bit
        pkt.win = win
        pkt.options = buf[p + TCP_MIN_HEADER : p + hlen]
        pkt.payload = buf[p + hlen : end]
    elif proto == IPPROTO_UDP:
        if p + UDP_HEADER_LEN > end:
            if pkt.frag:
                return
            raise DecodeError("truncated_udp")
        sport, dport = _HH.unpack_from(buf, p)
        ulen = _H.unpack_from(buf, p + 4)[0]
        pkt.sport = sport
        pkt.dport = dport
        stop = end if pkt.frag or ulen < UDP_HEADER_LEN else min(end, p + ulen)
        pkt.payload = buf[p + UDP_HEADER_LEN : stop]
    elif proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
        if p + 4 > end:
            raise DecodeError("truncated_icmp")
        pkt.icmp_type = buf[p]
        pkt.icmp_code = buf[p + 1]
        pkt.payload = buf[p + 4 : end]
        t = pkt.icmp_type
        quotes = (
            (proto == IPPROTO_ICMP and t in (ICMP_DEST_UNREACH, ICMP_TIME_EXCEEDED))
            or (proto == IPPROTO_ICMPV6 and t in (ICMPV6_DEST_UNREACH, ICMPV6_TIME_EXCEEDED))
        )
        if quotes and p + ICMP_HEADER_LEN < end:
            pkt.quoted = _decode_quoted(buf, p + ICMP_HEADER_LEN, end)
    else:
        pkt.payload = buf[p:end]


def _decode_quoted(buf: bytes, o: int, end: int) -> Optional[Packet]:
    """The IP header + first bytes of the offending datagram quoted in an ICMP error."""
    inner = Packet()
    try:
        v = buf[o] >> 4
        if v == 4:
            if o + IPV4_MIN_HEADER > end:
                return None
            vihl, _tos, total, ipid, _fl, ttl, proto, _c, src, dst = _IPV4.unpack_from(buf, o)
            ihl = (vihl & 0x0F) * 4
            inner.ipv, inner.src, inner.dst, inner.proto, inner.ttl, inner.ipid = 4, src, dst, proto, ttl, ipid
            p = o + ihl
        elif v == 6:
            if o + IPV6_HEADER_LEN > end:
                return None
            _vt, _plen, nxt, hlim, src, dst = _IPV6.unpack_from(buf, o)
            inner.ipv, inner.src, inner.dst, inner.proto, inner.ttl = 6, src, dst, nxt, hlim
            p = o + IPV6_HEADER_LEN
        else:
            return None
        if inner.proto in (IPPROTO_TCP, IPPROTO_UDP) and p + 4 <= end:
            inner.sport, inner.dport = _HH.unpack_from(buf, p)
            if inner.proto == IPPROTO_TCP and p + 8 <= end:
                inner.seq = struct.unpack_from("!I", buf, p + 4)[0]
        return inner
    except (IndexError, struct.error):
        return None


@lru_cache(maxsize=1024)  # 9 flag bits: at most 512 strings
def tcp_flags_str(flags: int) -> str:
    """Wireshark-like compact flag string, e.g. 'SA', 'RA', 'FPA'."""
    out = []
    for bit, ch in ((TCP_SYN, "S"), (TCP_FIN, "F"), (TCP_RST, "R"), (TCP_PSH, "P"),
                    (TCP_ACK, "A"), (TCP_URG, "U"), (TCP_ECE, "E"), (TCP_CWR, "C")):
        if flags & bit:
            out.append(ch)
    return "".join(out) or "."
