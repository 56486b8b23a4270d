"""Header fields of a whole chunk of frames at once (numpy), for the batch fast path.

The per-packet decoder (:mod:`analyzer.decode.packet`) builds an object per frame; at a
million packets per second there is no budget for that. This module reads the fixed-offset
fields of every frame of a chunk with vectorised gathers from the shared buffer: link header
(Ethernet with up to two VLAN tags, Linux SLL/SLL2, raw IP, BSD loopback), IPv4, and the
TCP/UDP header. It decides nothing: it marks which frames are plain IPv4 TCP/UDP whose
headers lie fully inside the captured bytes (``keyable``), and which of those carry no flag or
port that always needs the deep path (``candidate``). Everything else goes to the per-packet
decoder, which stays the reference for what a frame means.

IPv6 frames, fragments, ICMP and non-IP frames always take the per-packet path.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from analyzer.sources.files import (
    LINKTYPE_EN10MB,
    LINKTYPE_IPV4,
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
VLAN_TPIDS = (0x8100, 0x88A8, 0x9100)
FAST_VLAN_TAGS = 2
AF_INET = 2
TCP_FLAGS_ALWAYS_DEEP = 0x07  # FIN | SYN | RST
DNS_PORT = 53
IPV4_FRAG_MASK = 0x3FFF  # MF + fragment offset
IPV4_MF = 0x2000
PROTO_TCP = 6
PROTO_UDP = 17


@dataclass(slots=True)
class Fields:
    keyable: BOOL  # plain IPv4 TCP/UDP, L4 header captured, not a non-first fragment
    candidate: BOOL  # keyable, unfragmented, no SYN/FIN/RST, not DNS
    proto: I64
    src: I64
    dst: I64
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
    """Fields of frames start..end of a batch (numpy arrays of the batch's records)."""
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

    l3 = np.full(n, -1, dtype=np.int64)
    if n == 0:
        z = np.zeros(0, dtype=np.int64)
        zb = np.zeros(0, dtype=np.bool_)
        return Fields(zb, zb, z, z, z, z, z, z, z, zb, z, z, z, z, z, z)
    # Ethernet (+ up to two VLAN tags)
    eth = lt == LINKTYPE_EN10MB
    if eth.any():
        et = u16(off + 12)
        pos = off + 14
        for _ in range(FAST_VLAN_TAGS):
            tagged = np.isin(et, VLAN_TPIDS)
            et = np.where(tagged, u16(pos + 2), et)
            pos = np.where(tagged, pos + 4, pos)
        l3 = np.where(eth & (et == ETHERTYPE_IPV4) & (pos <= cap_end), pos, l3)
    sll = lt == LINKTYPE_LINUX_SLL
    if sll.any():
        l3 = np.where(sll & (u16(off + 14) == ETHERTYPE_IPV4) & (off + 16 <= cap_end), off + 16, l3)
    sll2 = lt == LINKTYPE_LINUX_SLL2
    if sll2.any():
        l3 = np.where(sll2 & (u16(off) == ETHERTYPE_IPV4) & (off + 20 <= cap_end), off + 20, l3)
    raw = np.isin(lt, (LINKTYPE_RAW, LINKTYPE_RAW_OLD_A, LINKTYPE_RAW_OLD_B, LINKTYPE_IPV4))
    l3 = np.where(raw, off, l3)
    null = (lt == LINKTYPE_NULL) | (lt == LINKTYPE_LOOP)
    if null.any():
        f0, f1, f2, f3 = u8(off), u8(off + 1), u8(off + 2), u8(off + 3)
        le_inet = (f0 == AF_INET) & (f1 == 0) & (f2 == 0) & (f3 == 0)
        be_inet = (f0 == 0) & (f1 == 0) & (f2 == 0) & (f3 == AF_INET)
        fam_ok = np.where(lt == LINKTYPE_LOOP, be_inet, le_inet | be_inet)
        l3 = np.where(null & fam_ok & (off + 4 <= cap_end), off + 4, l3)

    vihl = u8(l3)
    ihl = (vihl & 0x0F) * 4
    total = u16(l3 + 2)
    frag = u16(l3 + 6)
    proto = u8(l3 + 9)
    ok = (l3 >= 0) & (l3 < cap_end) & ((vihl >> 4) == 4) & (ihl >= 20) & (total >= ihl) & (l3 + ihl <= cap_end)
    ok &= (frag & 0x1FFF) == 0  # a non-first fragment carries no L4 header
    ip_end = np.minimum(cap_end, l3 + total)
    l4 = l3 + ihl
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
    unfragmented = (frag & IPV4_MF) == 0
    candidate = keyable & unfragmented & ~dns & np.where(is_tcp, (flags & TCP_FLAGS_ALWAYS_DEEP) == 0, True)
    return Fields(
        keyable=keyable, candidate=candidate, proto=proto, src=u32(l3 + 12), dst=u32(l3 + 16),
        sport=sport, dport=dport, ttl=u8(l3 + 8), ipid=u16(l3 + 4),
        df=(frag & 0x4000) != 0, ip_len=total, plen=np.maximum(plen, 0), flags=flags,
        seq=u32(l4 + 4), ack=u32(l4 + 8), win=u16(l4 + 14),
    )
