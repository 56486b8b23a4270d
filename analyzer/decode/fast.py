"""Header fields of a whole chunk of frames at once (numpy), for the batch fast path.

The per-packet decoder (:mod:`analyzer.decode.packet`) builds an object per frame; at a
million packets per second there is no budget for that. This module reads the fixed-offset
fields of every frame of a chunk with vectorised gathers from the shared buffer: link header
(Ethernet with up to two VLAN tags, Linux SLL/SLL2, raw IP, BSD loopback), IPv4, and the
TCP/UDP header. It decides nothing: it marks which frames are plain IPv4 TCP/UDP whose
headers lie fully inside the captured bytes (``keyable``), and which of those carry no flag or
port that always needs the deep path (``candidate``). Everything else goes to the per-packet
decoder, which stays the reference for what a frame means.

IPv6 frames without extension headers are read too; IPv6 with extension headers, fragments,
ICMP and non-IP frames always take the per-packet path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer import speedups
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

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
BOOL = npt.NDArray[np.bool_]

ETHERTYPE_IPV4 = 0x0800
ETHERTYPE_IPV6 = 0x86DD
IPV6_HEADER_LEN = 40
AF_INET6_VALUES = (10, 24, 28, 30)
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
FAST_VLAN_TAGS = 2
AF_INET = 2
TCP_FLAGS_ALWAYS_DEEP = 0x07  # FIN | SYN | RST
DNS_PORT = 53
IPV4_FRAG_MASK = 0x3FFF  # MF + fragment offset
IPV4_MF = 0x2000
PROTO_TCP = 6
PROTO_UDP = 17


U64 = npt.NDArray[np.uint64]


@dataclass(slots=True)
class Fields:
    keyable: BOOL  # plain IPv4/IPv6 TCP/UDP, L4 header captured, not a non-first fragment
    candidate: BOOL  # keyable, unfragmented, no SYN/FIN/RST, not DNS
    proto: I64
    v6: BOOL
    # addresses as (high, low) 64-bit halves; IPv4 in the low half, high half 0
    src_hi: U64
    src_lo: U64
    dst_hi: U64
    dst_lo: U64
    # 32-bit words of the addresses (IPv6 folded by XOR), for --jobs sharding
    srcw: I64
    dstw: I64
    sport: I64
    dport: I64
    ttl: I64
    ipid: I64
    df: BOOL
    ip_len: I64
    plen: I64
    flags: I64
    seq: I64
    ack: I64
    win: I64


def extract(buf: bytes, offsets: I64, caplens: I64, linktypes: I64, start: int, end: int) -> Fields:
    """Fields of frames start..end of a batch (numpy arrays of the batch's records).

    One pass in C when the extension is built (:mod:`analyzer.speedups`), else numpy; the two
    give identical arrays (:func:`extract_numpy` is the reference)."""
    native = speedups.native
    if native is not None:
        off = np.ascontiguousarray(offsets[start:end], dtype=np.int64)
        data = native.extract(buf, off, np.ascontiguousarray(caplens[start:end], dtype=np.int64),
                              np.ascontiguousarray(linktypes[start:end], dtype=np.int64))
        if data is not None:
            return _fields_of_columns(data, len(off))
    return extract_numpy(buf, offsets, caplens, linktypes, start, end)


def _fields_of_columns(data: bytearray, n: int) -> Fields:
    """Fields over the columns the C extract() filled: 17 columns of n 8-byte words (in the
    order below), then 4 columns of n bools; every array is a writable view of data."""
    w = np.frombuffer(data, dtype=np.int64, count=17 * n).reshape(17, n)
    u = w.view(np.uint64)
    bl = np.frombuffer(data, dtype=np.bool_, count=4 * n, offset=17 * 8 * n).reshape(4, n)
    return Fields(
        keyable=bl[0], candidate=bl[1], proto=w[0], v6=bl[2], src_hi=u[1], src_lo=u[2],
        dst_hi=u[3], dst_lo=u[4], srcw=w[5], dstw=w[6], sport=w[7], dport=w[8], ttl=w[9],
        ipid=w[10], df=bl[3], ip_len=w[11], plen=w[12], flags=w[13], seq=w[14], ack=w[15],
        win=w[16],
    )


def extract_numpy(
    buf: bytes, offsets: I64, caplens: I64, linktypes: I64, start: int, end: int
) -> Fields:
    """:func:`extract` with numpy gathers (the reference for the C version)."""
    b = np.frombuffer(buf, dtype=np.uint8)
    last = len(b) - 1
    off = offsets[start:end]
    cap_end = off + caplens[start:end]
    lt = linktypes[start:end]
    n = len(off)

    def u8(pos: I64) -> I64:
        return b[np.clip(pos, 0, last)].astype(np.int64)

    def u16(pos: I64) -> I64:
        return (u8(pos) << 8) | u8(pos + 1)

    def u32(pos: I64) -> I64:
        return (u16(pos) << 16) | u16(pos + 2)

    def u64(pos: I64) -> U64:
        hi = u32(pos).astype(np.uint64)
        lo = u32(pos + 4).astype(np.uint64)
        out: U64 = (hi << np.uint64(32)) | lo
        return out

    l3 = np.full(n, -1, dtype=np.int64)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        zb = np.zeros(0, dtype=np.bool_)
        zu = np.zeros(0, dtype=np.uint64)
        return Fields(zb, zb, z, zb, zu, zu, zu, zu, z, z, z, z, z, z, zb, z, z, z, z, z, z)
    # link layer: offset of the IP header and which version the link says it is (0: not IP)
    ver_link = np.zeros(n, dtype=np.int64)
    eth = lt == LINKTYPE_EN10MB
    if eth.any():
        et = u16(off + 12)
        pos = off + 14
        for _ in range(FAST_VLAN_TAGS):
            tagged = np.isin(et, VLAN_TPIDS)
            et = np.where(tagged, u16(pos + 2), et)
            pos = np.where(tagged, pos + 4, pos)
        ok_eth = eth & (pos <= cap_end)
        l3 = np.where(ok_eth, pos, l3)
        ver_link = np.where(ok_eth & (et == ETHERTYPE_IPV4), 4, np.where(ok_eth & (et == ETHERTYPE_IPV6), 6, ver_link))
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        et = u16(off + 14)
        ok_sll = sll & (off + 16 <= cap_end)
        l3 = np.where(ok_sll, off + 16, l3)
        ver_link = np.where(ok_sll & (et == ETHERTYPE_IPV4), 4, np.where(ok_sll & (et == ETHERTYPE_IPV6), 6, ver_link))
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        et = u16(off)
        ok_sll2 = sll2 & (off + 20 <= cap_end)
        l3 = np.where(ok_sll2, off + 20, l3)
        ver_link = np.where(ok_sll2 & (et == ETHERTYPE_IPV4), 4, np.where(ok_sll2 & (et == ETHERTYPE_IPV6), 6, ver_link))
    raw = np.isin(lt, (LINKTYPE_RAW, LINKTYPE_RAW_OLD_A, LINKTYPE_RAW_OLD_B))
    l3 = np.where(raw, off, l3)
    ver_link = np.where(raw, u8(off) >> 4, ver_link)
    l3 = np.where(lt == LINKTYPE_IPV4, off, l3)
    ver_link = np.where(lt == LINKTYPE_IPV4, 4, ver_link)
    l3 = np.where(lt == LINKTYPE_IPV6, off, l3)
    ver_link = np.where(lt == LINKTYPE_IPV6, 6, ver_link)
    null = (lt == LINKTYPE_NULL) | (lt == LINKTYPE_LOOP)
    if null.any():
        le = u8(off) | (u8(off + 1) << 8) | (u8(off + 2) << 16) | (u8(off + 3) << 24)
        be = u32(off)
        # DLT_NULL: host byte order (a value above 0xFFFF was written big-endian)
        fam = np.where(lt == LINKTYPE_LOOP, be, np.where(le > 0xFFFF, be, le))
        ok_null = null & (off + 4 <= cap_end)
        l3 = np.where(ok_null, off + 4, l3)
        ver_link = np.where(ok_null & (fam == AF_INET), 4,
                            np.where(ok_null & np.isin(fam, AF_INET6_VALUES), 6, ver_link))

    first = u8(l3)
    ver = first >> 4
    is4 = (l3 >= 0) & (l3 < cap_end) & (ver_link == 4) & (ver == 4)
    is6 = (l3 >= 0) & (l3 < cap_end) & (ver_link == 6) & (ver == 6)
    # IPv4
    ihl = (first & 0x0F) * 4
    total = u16(l3 + 2)
    frag = u16(l3 + 6)
    ok4 = is4 & (ihl >= 20) & (total >= ihl) & (l3 + ihl <= cap_end)
    ok4 &= (frag & 0x1FFF) == 0  # a non-first fragment carries no L4 header
    # IPv6 without extension headers (next header TCP/UDP directly), not a jumbogram
    plen6 = u16(l3 + 4)
    nh6 = u8(l3 + 6)
    ok6 = is6 & (l3 + IPV6_HEADER_LEN <= cap_end) & (plen6 > 0) & ((nh6 == PROTO_TCP) | (nh6 == PROTO_UDP))
    proto = np.where(ok6, nh6, u8(l3 + 9))
    ok = ok4 | ok6
    ip_end = np.where(ok6, np.minimum(cap_end, l3 + IPV6_HEADER_LEN + plen6), np.minimum(cap_end, l3 + total))
    l4 = np.where(ok6, l3 + IPV6_HEADER_LEN, l3 + ihl)
    sport = u16(l4)
    dport = u16(l4 + 2)
    doff = u8(l4 + 12)
    hlen = (doff >> 4) * 4
    is_tcp = proto == PROTO_TCP
    is_udp = proto == PROTO_UDP
    tcp_hdr = ok & is_tcp & (l4 + 20 <= ip_end) & (hlen >= 20) & (l4 + hlen <= ip_end)
    udp_hdr = ok & is_udp & (l4 + 8 <= ip_end)
    keyable = tcp_hdr | udp_hdr
    flags = u8(l4 + 13) | ((doff & 1) << 8)
    ulen = u16(l4 + 4)
    udp_stop = np.where(ulen < 8, ip_end, np.minimum(ip_end, l4 + ulen))
    plen = np.where(is_tcp, ip_end - (l4 + hlen), udp_stop - (l4 + 8))
    dns = (sport == DNS_PORT) | (dport == DNS_PORT)
    unfragmented = ok6 | ((frag & IPV4_MF) == 0)
    candidate = keyable & unfragmented & ~dns & np.where(is_tcp, (flags & TCP_FLAGS_ALWAYS_DEEP) == 0, True)
    zero = np.zeros(n, dtype=np.uint64)
    src4 = u32(l3 + 12)
    dst4 = u32(l3 + 16)
    s_hi = np.where(ok6, u64(l3 + 8), zero)
    s_lo = np.where(ok6, u64(l3 + 16), src4.astype(np.uint64))
    d_hi = np.where(ok6, u64(l3 + 24), zero)
    d_lo = np.where(ok6, u64(l3 + 32), dst4.astype(np.uint64))
    mask32 = np.uint64(0xFFFFFFFF)
    sh32 = np.uint64(32)
    srcw = ((s_hi >> sh32) ^ (s_hi & mask32) ^ (s_lo >> sh32) ^ (s_lo & mask32)).astype(np.int64)
    dstw = ((d_hi >> sh32) ^ (d_hi & mask32) ^ (d_lo >> sh32) ^ (d_lo & mask32)).astype(np.int64)
    return Fields(
        keyable=keyable, candidate=candidate, proto=proto, v6=ok6, src_hi=s_hi, src_lo=s_lo,
        dst_hi=d_hi, dst_lo=d_lo, srcw=srcw, dstw=dstw,
        sport=sport, dport=dport, ttl=np.where(ok6, u8(l3 + 7), u8(l3 + 8)),
        ipid=np.where(ok6, -1, u16(l3 + 4)),
        df=~ok6 & ((frag & 0x4000) != 0), ip_len=np.where(ok6, IPV6_HEADER_LEN + plen6, total),
        plen=np.maximum(plen, 0), flags=flags, seq=u32(l4 + 4), ack=u32(l4 + 8), win=u16(l4 + 14),
    )
