#!/usr/bin/env python3
"""Fast generator of large, realistic-looking gateway captures for benchmarking.

Writes a classic pcap (LINKTYPE_ETHERNET, microsecond timestamps) of exactly
``-n`` packets plus a ground-truth JSON side file listing the interference that
was injected::

    python bench/gen_capture.py -n 1000000 -o bench/out/mixed-1M.pcap --seed 1

Speed: no per-packet scapy/dpkt objects.  Every flow direction is a small
template (MACs, addresses, ports, TTL, precomputed checksum partial sums); a
packet is one ``struct.pack_into`` of the Ethernet+IPv4+TCP/UDP header straight
into a large output ``bytearray`` followed by a slice copy of the payload.
Checksums are computed arithmetically (one's-complement sums are taken modulo
0xFFFF, so a payload's contribution is ``int.from_bytes(payload) % 0xFFFF``).

Model: a discrete-event simulation of a busy gateway.  Flows start as a Poisson
process (rate steered to ``--pps``) and each flow is a Python generator that
yields its packets in time order; a heap interleaves all concurrent flows.
Flow kinds (weights configurable with ``--mix``):

  tls        TCP/443: handshake, TLS 1.3 ClientHello with SNI, ServerHello flight,
             request/response exchanges with window-limited bulk transfer (most
             packets are mid-flow data and ACKs), closed by FIN, genuine RST abort
             (sender's own TTL/IP-ID), or left open.
  dns        UDP/53 A (+AAAA) queries and answers, EDNS, some CNAME chains.
  quic       UDP/443: long-header Initial/Handshake (version 1) then short header.
  wg         WireGuard UDP/51820: 148-byte initiation, 92-byte response with the
             matching receiver index, type-4 transport data in bursts.
  ovpn       OpenVPN UDP/1194: P_CONTROL_HARD_RESET_CLIENT_V2 / SERVER_V2, TLS over
             P_CONTROL_V1, P_ACK_V1, then P_DATA_V2 (half of them with tls-auth HMAC).
  rst        INTERFERED: forged RST/ACKs (server address, foreign TTL, unrelated
             IP-ID, fixed window) right after the ClientHello; 1-3 RSTs with seq
             offsets +0/+1460/+4380; sometimes the genuine server flight still
             arrives and the client answers it with its own RSTs.
  dnsinj     INTERFERED: forged A answer (address from a fixed pool, other IP TTL,
             random IP-ID, no DF, no EDNS) before the genuine answer.
  snidrop    INTERFERED: handshake completes, the ClientHello is retransmitted 3-4
             times and never answered.
  blackhole  INTERFERED: SYNs to a blackholed address, retransmitted with
             exponential back-off, never answered.

Ground truth (``<output without .pcap>.truth.json``) lists every interference
instance with 1-based frame numbers (as in Wireshark).  The same ``--seed``
and options always produce byte-identical output.
"""
from __future__ import annotations

import argparse
import bisect
import heapq
import json
import math
import os
import random
import struct
import sys
import time
from typing import Any, Callable, Dict, Generator, Iterator, List, Optional, Tuple

# --------------------------------------------------------------------------
# constants
# --------------------------------------------------------------------------

M32 = 0xFFFFFFFF
MSS = 1460
FIN, SYN, RST, PSH, ACK = 0x01, 0x02, 0x04, 0x08, 0x10

# Ethernet + IPv4 (20 bytes) + TCP (20 bytes, options appended separately)
ETH_IP_TCP = struct.Struct("!6s6sHBBHHHBBH4s4sHHIIHHHH")
ETH_IP_UDP = struct.Struct("!6s6sHBBHHHBBH4s4sHHHH")
PCAP_GLOBAL = struct.Struct("<IHHiIII")
PCAP_REC = struct.Struct("<IIII")
HDR_TCP = 16 + 54
HDR_UDP = 16 + 42

ID_INC, ID_ZERO, ID_RAND, ID_HOST = 0, 1, 2, 3

GW_MAC = bytes.fromhex("02420a000001")

# Windows-like SYN options (no timestamps, so data segments carry 20-byte headers)
SYN_OPTS = bytes.fromhex("020405b4010303080101" "0402")
SYNACK_OPTS = bytes.fromhex("020405b40101040201030307")

DEFAULT_MIX: Dict[str, float] = {
    "tls": 30.0,
    "dns": 60.0,
    "quic": 4.0,
    "wg": 0.4,
    "ovpn": 0.3,
    "rst": 1.5,
    "dnsinj": 1.5,
    "snidrop": 1.0,
    "blackhole": 0.5,
}
KINDS = list(DEFAULT_MIX)

WHATSAPP_DOMAINS = [
    "g.whatsapp.net",
    "mmg.whatsapp.net",
    "web.whatsapp.com",
    "static.whatsapp.net",
    "pps.whatsapp.net",
    "media.fcgh1-1.fna.whatsapp.net",
    "mmx-ds.cdn.whatsapp.net",
    "www.whatsapp.com",
]
ORDINARY_DOMAINS = [
    ("www.google.com", 10), ("www.youtube.com", 6), ("i.ytimg.com", 5),
    ("fonts.gstatic.com", 5), ("www.gstatic.com", 4), ("www.facebook.com", 3),
    ("static.xx.fbcdn.net", 3), ("en.wikipedia.org", 3), ("upload.wikimedia.org", 2),
    ("github.com", 2), ("api.github.com", 2), ("objects.githubusercontent.com", 1),
    ("cdn.jsdelivr.net", 2), ("www.cloudflare.com", 1), ("www.amazon.com", 2),
    ("login.microsoftonline.com", 2), ("www.microsoft.com", 1), ("www.apple.com", 1),
    ("example.com", 1), ("example.org", 1), ("www.bbc.co.uk", 1), ("www.nytimes.com", 1),
    ("telegram.org", 1), ("signal.org", 1), ("www.instagram.com", 2),
    ("api.openweathermap.org", 1), ("update.googleapis.com", 2), ("play.googleapis.com", 2),
]
# domains the simulated censor interferes with
BLOCKED_DOMAINS = WHATSAPP_DOMAINS + ["telegram.org", "signal.org", "www.instagram.com",
                                      "www.bbc.co.uk"]
# forged DNS answers come from this fixed pool
FORGED_DNS_POOL = ["198.18.254.10", "198.18.254.77", "203.0.113.250", "192.0.2.251"]
RESOLVERS = ["192.0.2.53", "198.51.100.53"]
# TTLs seen on forged packets (the genuine servers sit ~8-20 hops away)
FORGED_TTLS = [103, 99, 47, 111, 228]


def ip2b(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


def ip2i(s: str) -> int:
    return int.from_bytes(ip2b(s), "big")


def csum_fin(s: int) -> int:
    """Internet checksum from an (unfolded) sum of 16-bit words."""
    r = s % 0xFFFF
    if r == 0 and s:
        r = 0xFFFF
    return 0xFFFF - r


def psum(b: bytes) -> int:
    """Integer congruent (mod 0xFFFF) to the 16-bit word sum of ``b``."""
    v = int.from_bytes(b, "big")
    return v << 8 if len(b) & 1 else v


def qname(name: str) -> bytes:
    out = bytearray()
    for lab in name.split("."):
        lb = lab.encode("ascii")
        out.append(len(lb))
        out += lb
    out.append(0)
    return bytes(out)


# --------------------------------------------------------------------------
# hosts and flow-direction templates
# --------------------------------------------------------------------------

class Host:
    __slots__ = ("ip", "ipb", "mac", "ttl", "idmode", "idn", "df", "rtt", "lan",
                 "port", "port_lo", "port_hi")

    def __init__(self, ip: str, mac: bytes, ttl: int, idmode: int, df: bool,
                 rtt: int = 0, lan: int = 0, rng: Optional[random.Random] = None,
                 port_range: Tuple[int, int] = (32768, 60999)) -> None:
        self.ip = ip
        self.ipb = ip2b(ip)
        self.mac = mac
        self.ttl = ttl
        self.idmode = idmode
        self.idn = rng.getrandbits(16) if rng else 0
        self.df = df
        self.rtt = rtt
        self.lan = lan
        self.port_lo, self.port_hi = port_range
        self.port = rng.randint(*port_range) if rng else port_range[0]

    def next_port(self, rng: random.Random) -> int:
        p = self.port + 1 + rng.randrange(4)
        if p > self.port_hi:
            p = self.port_lo + rng.randrange(64)
        self.port = p
        return p


class Dir:
    """Template for one direction of one flow."""
    __slots__ = ("smac", "dmac", "src", "dst", "sport", "dport", "ttl", "df",
                 "idmode", "idn", "host", "ipc", "l4c", "rng")

    def __init__(self, src: Host, dst: Host, sport: int, dport: int, proto: int,
                 rng: random.Random, src_is_client: bool) -> None:
        self.smac = src.mac if src_is_client else GW_MAC
        self.dmac = GW_MAC if src_is_client else dst.mac
        self.src = src.ipb
        self.dst = dst.ipb
        self.sport = sport
        self.dport = dport
        self.ttl = src.ttl
        self.df = 0x4000 if src.df else 0
        self.idmode = src.idmode
        self.idn = rng.getrandbits(16)
        self.host = src
        si = int.from_bytes(src.ipb, "big")
        di = int.from_bytes(dst.ipb, "big")
        self.ipc = 0x4500 + si + di + proto
        self.l4c = si + di + proto + sport + dport
        self.rng = rng

    def next_id(self) -> int:
        m = self.idmode
        if m == ID_INC:
            i = self.idn
            self.idn = (i + 1) & 0xFFFF
            return i
        if m == ID_ZERO:
            return 0
        if m == ID_HOST:
            h = self.host
            i = h.idn
            h.idn = (i + 1) & 0xFFFF
            return i
        return self.rng.getrandbits(16)


# A "packet" travelling through the heap is a tuple (proto, dir, fields..., payload)
# and is only serialised by the writer (straight into the output buffer).
# TCP: (6, d, seq, ack, flags, win, payload, opts, ttl, ipid, df)
# UDP: (17, d, payload, ttl, ipid, df)

def tcp(d: Dir, seq: int, ack: int, flags: int, win: int, payload: bytes = b"",
        opts: bytes = b"", ttl: int = 0, ipid: int = -1, df: int = -1) -> tuple:
    if ipid < 0:
        ipid = d.next_id()
    return (6, d, seq, ack, flags, win, payload, opts, ttl or d.ttl, ipid,
            d.df if df < 0 else df)


def udp(d: Dir, payload: bytes, ttl: int = 0, ipid: int = -1, df: int = -1) -> tuple:
    if ipid < 0:
        ipid = d.next_id()
    return (17, d, payload, ttl or d.ttl, ipid, d.df if df < 0 else df)


# --------------------------------------------------------------------------
# payload builders
# --------------------------------------------------------------------------

class Stream:
    """Byte stream of TLS records (optional plaintext prefix, then 0x17 records)."""
    __slots__ = ("buf", "off", "pool", "rng")

    def __init__(self, pool: bytes, rng: random.Random, prefix: bytes = b"") -> None:
        self.buf = prefix
        self.off = 0
        self.pool = pool
        self.rng = rng

    def take(self, n: int) -> bytes:
        if len(self.buf) - self.off < n:
            parts = [self.buf[self.off:]]
            have = len(parts[0])
            rng = self.rng
            plen = len(self.pool)
            while have < n:
                rl = rng.randint(1200, 16401)
                o = rng.randrange(plen - rl)
                parts.append(b"\x17\x03\x03" + rl.to_bytes(2, "big"))
                parts.append(self.pool[o:o + rl])
                have += rl + 5
            self.buf = b"".join(parts)
            self.off = 0
        o = self.off
        self.off = o + n
        return self.buf[o:o + n]


def client_hello(rng: random.Random, sni: str) -> bytes:
    """A Chrome-like TLS 1.3 ClientHello record (padded to 512-byte handshake)."""
    def ext(t: int, body: bytes) -> bytes:
        return struct.pack("!HH", t, len(body)) + body

    host = sni.encode("ascii")
    g1 = rng.choice([0x0A0A, 0x1A1A, 0x2A2A, 0x3A3A, 0x4A4A, 0x5A5A, 0x6A6A, 0x7A7A])
    exts = [
        ext(g1, b""),
        ext(0x0000, struct.pack("!HBH", len(host) + 3, 0, len(host)) + host),
        ext(0x0017, b""),
        ext(0xFF01, b"\x00"),
        ext(0x000A, bytes.fromhex("0008") + struct.pack("!H", g1) + bytes.fromhex("001d00170018")),
        ext(0x000B, b"\x01\x00"),
        ext(0x0023, b""),
        ext(0x0010, bytes.fromhex("000c02683208687474702f312e31")),
        ext(0x0005, bytes.fromhex("0100000000")),
        ext(0x000D, bytes.fromhex("0012040308040401050308050501080606010201")),
        ext(0x0012, b""),
        ext(0x0033, bytes.fromhex("0029") + struct.pack("!H", g1) + b"\x00\x01\x00"
            + bytes.fromhex("001d0020") + rng.randbytes(32)),
        ext(0x002D, b"\x01\x01"),
        ext(0x002B, bytes.fromhex("06") + struct.pack("!H", g1) + bytes.fromhex("03040303")),
        ext(0x001B, bytes.fromhex("020002")),
        ext(0x4469, bytes.fromhex("0003026832")),
    ]
    ciphers = struct.pack("!H", g1) + bytes.fromhex(
        "130113021303c02bc02fc02cc030cca9cca8c013c014009c009d002f0035")
    body_wo_ext = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32)
                   + struct.pack("!H", len(ciphers)) + ciphers + b"\x01\x00")
    exts.append(ext(g1 ^ 0x1010, b"\x00"))  # trailing GREASE extension
    extb = b"".join(exts)
    # padding extension (RFC 7685): like Chrome, pad the handshake message to 512 bytes
    hs_len = 4 + len(body_wo_ext) + 2 + len(extb)
    if hs_len + 4 < 512:
        extb += ext(0x0015, bytes(512 - hs_len - 4))
    body = body_wo_ext + struct.pack("!H", len(extb)) + extb
    hs = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def server_hello_flight(rng: random.Random, pool: bytes) -> bytes:
    body = (b"\x03\x03" + rng.randbytes(32) + b"\x20" + rng.randbytes(32) + b"\x13\x01\x00")
    exts = (bytes.fromhex("002b00020304") + bytes.fromhex("00330024001d0020")
            + rng.randbytes(32))
    body += struct.pack("!H", len(exts)) + exts
    hs = b"\x02" + len(body).to_bytes(3, "big") + body
    sh = b"\x16\x03\x03" + struct.pack("!H", len(hs)) + hs
    ccs = b"\x14\x03\x03\x00\x01\x01"
    n = rng.randint(2200, 5200)  # encrypted extensions + certificate + verify + finished
    o = rng.randrange(len(pool) - n)
    return sh + ccs + b"\x17\x03\x03" + struct.pack("!H", n) + pool[o:o + n]


def dns_query(txid: int, name: str, qtype: int, edns: bool) -> bytes:
    q = struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 1 if edns else 0)
    q += qname(name) + struct.pack("!HH", qtype, 1)
    if edns:
        q += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return q


def dns_answer(txid: int, name: str, qtype: int, edns: bool, cname: Optional[str],
               addrs: List[bytes], ttl: int) -> bytes:
    question = qname(name) + struct.pack("!HH", qtype, 1)
    ans = bytearray()
    n = 0
    ptr = 0xC00C
    if cname:
        rd = qname(cname)
        ans += struct.pack("!HHHIH", ptr, 5, 1, ttl, len(rd)) + rd
        ptr = 0xC000 | (12 + len(question) + 12)
        n += 1
    for a in addrs:
        ans += struct.pack("!HHHIH", ptr, qtype, 1, ttl, len(a)) + a
        n += 1
    hdr = struct.pack("!HHHHHH", txid, 0x8180, 1, n, 0, 1 if edns else 0)
    out = hdr + question + bytes(ans)
    if edns:
        out += b"\x00" + struct.pack("!HHIH", 41, 1232, 0, 0)
    return out


# --------------------------------------------------------------------------
# the simulation
# --------------------------------------------------------------------------

Item = Tuple[int, tuple, Optional[Tuple[Dict[str, Any], str]]]


class Sim:
    def __init__(self, seed: int, n_clients: int = 3000) -> None:
        self.rng = rng = random.Random(seed)
        self.pool = rng.randbytes(1 << 20)
        self.truth: List[Dict[str, Any]] = []
        # clients: 10.0.0.0/16 mostly, some 10.1.0.0/16 and 192.168.1.0/24
        self.clients: List[Host] = []
        for i in range(n_clients):
            r = rng.random()
            if r < 0.7:
                ip = "10.0.%d.%d" % (i // 250 % 256, i % 250 + 2)
            elif r < 0.95:
                ip = "10.1.%d.%d" % (i // 250 % 256, i % 250 + 2)
            else:
                ip = "192.168.1.%d" % (i % 250 + 2)
            win = rng.random() < 0.25
            mac = b"\x02\x00" + (0x0A000000 + i).to_bytes(4, "big")
            self.clients.append(Host(
                ip, mac, 128 if win else 64, ID_HOST if win else ID_INC, True,
                lan=rng.randint(150, 2500), rng=rng,
                port_range=(49152, 65535) if win else (32768, 60999)))
        # de-duplicate client addresses (pools overlap for big n_clients)
        seen: Dict[str, Host] = {}
        for c in self.clients:
            seen.setdefault(c.ip, c)
        self.clients = list(seen.values())
        self.servers: Dict[str, Host] = {}
        self.domains: Dict[str, Dict[str, Any]] = {}
        doc_nets = ["192.0.2", "198.51.100", "203.0.113"]
        used: set = set(RESOLVERS) | set(FORGED_DNS_POOL)
        used |= {"203.0.113.%d" % i for i in list(range(120, 126)) + list(range(140, 146))}

        def new_server(whatsapp: bool) -> Host:
            while True:
                if whatsapp:
                    ip = "157.240.%d.%d" % (rng.randrange(256), rng.choice([53, 54, 60, 61, 35, 32]))
                elif rng.random() < 0.4:
                    ip = "%s.%d" % (rng.choice(doc_nets), rng.randint(1, 249))
                else:
                    ip = "198.%d.%d.%d" % (rng.choice([18, 19]), rng.randrange(256),
                                           rng.randint(1, 254))
                if ip not in used:
                    used.add(ip)
                    break
            init = rng.choices([64, 128, 255], [6, 2, 1])[0]
            ttl = init - rng.randint(8, 20)
            idmode = rng.choices([ID_ZERO, ID_INC, ID_RAND], [5, 3, 1])[0]
            rtt = int(rng.lognormvariate(math.log(40000), 0.7))
            rtt = min(max(rtt, 4000), 400000)
            h = Host(ip, GW_MAC, ttl, idmode, idmode != ID_RAND, rtt=rtt, rng=rng)
            self.servers[ip] = h
            return h

        def add_domain(name: str, whatsapp: bool) -> None:
            n = rng.choice([1, 1, 2, 2, 3, 4])
            hosts = [new_server(whatsapp) for _ in range(n)]
            cname = None
            if whatsapp and name.startswith("mm"):
                cname = name.split(".")[0] + ".fna.whatsapp.net"
            elif not whatsapp and rng.random() < 0.35:
                cname = name.replace(".", "-") + ".edge.cdn-example.net"
            v6 = [] if rng.random() < 0.2 else [
                bytes.fromhex("20010db8") + rng.randbytes(12) for _ in range(rng.randint(1, 2))]
            self.domains[name] = {"hosts": hosts, "cname": cname, "v6": v6,
                                  "ttl": rng.choice([60, 120, 300, 600, 3600])}

        for d in WHATSAPP_DOMAINS:
            add_domain(d, True)
        for d, _w in ORDINARY_DOMAINS:
            add_domain(d, False)
        names = [d for d, _ in ORDINARY_DOMAINS] + WHATSAPP_DOMAINS
        weights = [float(w) for _, w in ORDINARY_DOMAINS] + [2.0] * len(WHATSAPP_DOMAINS)
        self.dom_names = names
        self.dom_cum = _cumulative(weights)
        # blackholed addresses: never used by ordinary flows
        self.blackholes = [(new_server(True), "g.whatsapp.net"),
                           (new_server(False), "telegram.org")]
        self.resolvers = [Host(ip, GW_MAC, 64 - rng.randint(4, 9), ID_ZERO, True,
                               rtt=rng.randint(2000, 30000), rng=rng) for ip in RESOLVERS]
        # VPN endpoints (WireGuard: no DF, incrementing IP-ID; OpenVPN: DF, IP-ID 0)
        self.vpn_servers: Dict[str, List[Host]] = {}
        for kind, base, idmode in (("wg", 120, ID_INC), ("ovpn", 140, ID_ZERO)):
            self.vpn_servers[kind] = [
                Host("203.0.113.%d" % (base + i), GW_MAC, 64 - rng.randint(9, 18), idmode,
                     kind != "wg", rtt=rng.randint(20000, 180000), rng=rng)
                for i in range(6)]
        self.client_cum = _cumulative([1.0 / (1 + i) ** 0.6 for i in range(len(self.clients))])

    # ---------------------------------------------------------------- helpers
    def pick_client(self) -> Host:
        return self.clients[_pick(self.client_cum, self.rng)]

    def pick_domain(self) -> str:
        return self.dom_names[_pick(self.dom_cum, self.rng)]

    def bytes_of(self, n: int) -> bytes:
        o = self.rng.randrange(len(self.pool) - n)
        return self.pool[o:o + n]

    def rounds(self, t: int, nseg: int, gap: int, d_rx: int, d_tx: int,
               seg: Callable[[int], tuple], ack: Callable[[int], tuple],
               cwnd: int = 10, cwnd_max: int = 64, ack_every: int = 2
               ) -> Generator[Item, None, int]:
        """Window-limited one-way transfer as seen at the gateway.

        Segment k of a round is seen at start + k*gap; the receiver's ACK for every
        ``ack_every``-th segment is seen d_rx later; the sender's next round starts
        d_tx after the first ACK of the round (slow start doubles the window).
        Returns (via StopIteration) the timestamp of the last packet.
        """
        pend: list = []
        n = 0
        k = 0
        last = t
        push = heapq.heappush
        pop = heapq.heappop
        while k < nseg:
            start = t
            m = min(cwnd, nseg - k)
            first_ack = -1
            for j in range(m):
                ts = start + j * gap
                push(pend, (ts, n, seg(k)))
                n += 1
                if k % ack_every == ack_every - 1 or k == nseg - 1:
                    ats = ts + d_rx
                    push(pend, (ats, n, ack(k)))
                    n += 1
                    if first_ack < 0:
                        first_ack = ats
                k += 1
            if first_ack < 0:
                first_ack = start + d_rx
            cwnd = min(cwnd * 2, cwnd_max)
            t = max(first_ack + d_tx, start + m * gap)
            while pend and pend[0][0] < t:
                ts, _, p = pop(pend)
                last = ts
                yield ts, p, None
        while pend:
            ts, _, p = pop(pend)
            last = ts
            yield ts, p, None
        return last

    def tcp_bulk(self, t: int, tx: Dir, rx: Dir, tseq: int, rseq: int, stream: Stream,
                 nbytes: int, gap: int, d_rx: int, d_tx: int, win_tx: int, win_rx: int,
                 cwnd_max: int) -> Generator[Item, None, int]:
        nseg = -(-nbytes // MSS)

        def seg(k: int) -> tuple:
            off = k * MSS
            ln = MSS if nbytes - off > MSS else nbytes - off
            fl = ACK | PSH if off + ln == nbytes else ACK
            return tcp(tx, (tseq + off) & M32, rseq, fl, win_tx, stream.take(ln))

        def ack(k: int) -> tuple:
            end = (k + 1) * MSS
            if end > nbytes:
                end = nbytes
            return tcp(rx, rseq, (tseq + end) & M32, ACK, win_rx)

        last = yield from self.rounds(t, nseg, gap, d_rx, d_tx, seg, ack, cwnd_max=cwnd_max)
        return last

    def new_entry(self, kind: str, c: Host, cport: int, s: Host, sport: int,
                  proto: str, domain: Optional[str], **kw: Any) -> Dict[str, Any]:
        e: Dict[str, Any] = {"kind": kind, "client": c.ip, "client_port": cport,
                             "server": s.ip, "server_port": sport, "proto": proto,
                             "domain": domain}
        e.update(kw)
        e["frames"] = {}
        return e

    # ------------------------------------------------------------------ flows
    def flow_tls(self, t: int, mode: Optional[str] = None) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        if mode is None:
            sni = self.pick_domain()
        else:
            sni = rng.choice(BLOCKED_DOMAINS)
        s = rng.choice(self.domains[sni]["hosts"])
        rtt = int(s.rtt * rng.uniform(0.9, 1.2))
        lan = c.lan
        cp = c.next_port(rng)
        cd = Dir(c, s, cp, 443, 6, rng, True)
        sd = Dir(s, c, 443, cp, 6, rng, False)
        cs = rng.getrandbits(32)
        ss = rng.getrandbits(32)
        cwin = rng.choice([1026, 2053, 501, 8212])
        swin = rng.choice([501, 83, 1051, 285])
        entry = None
        if mode == "rst":
            entry = self.new_entry("rst_injection", c, cp, s, 443, "tcp", sni)
        elif mode == "snidrop":
            entry = self.new_entry("sni_drop", c, cp, s, 443, "tcp", sni)

        yield t, tcp(cd, cs, 0, SYN, 64240, opts=SYN_OPTS), None
        t += rtt
        yield t, tcp(sd, ss, (cs + 1) & M32, SYN | ACK, 65535, opts=SYNACK_OPTS), None
        cs = (cs + 1) & M32
        ss = (ss + 1) & M32
        t += lan
        yield t, tcp(cd, cs, ss, ACK, cwin), None
        t += rng.randint(30, 900)
        ch = client_hello(rng, sni)
        ch_pkt = tcp(cd, cs, ss, ACK | PSH, cwin, ch)

        if mode == "snidrop":
            assert entry is not None
            rto = max(200000 + rtt, 2 * rtt)
            n = rng.choice([3, 4])
            entry["retransmissions"] = n
            entry["expected_frames"] = n + 1
            yield t, ch_pkt, (entry, "client_hello")
            for _ in range(n):
                t += rto
                rto *= 2
                yield t, tcp(cd, cs, ss, ACK | PSH, cwin, ch), (entry, "client_hello")
            if rng.random() < 0.5:  # browser gives up and aborts
                t += rto
                yield t, tcp(cd, (cs + len(ch)) & M32, ss, RST | ACK, 0), None
            return

        if mode == "rst":
            assert entry is not None
            cs2 = (cs + len(ch)) & M32
            nrst = rng.choice([1, 1, 2, 3, 3])
            offs = [0, 1460, 4380][:nrst]
            fttl = rng.choice([x for x in FORGED_TTLS if abs(x - s.ttl) > 4])
            fwin = rng.choice([16, 16, 16, 0, 2])
            t_inj = t + max(int(rtt * rng.uniform(0.15, 0.6)), 300)
            genuine = rng.random() < 0.5
            flight = server_hello_flight(rng, self.pool) if genuine else b""
            n = -(-len(flight) // MSS)
            entry.update(server_ttl=s.ttl, forged_ttl=fttl, forged_window=fwin,
                         seq_offsets=offs, genuine_server_data_after=genuine,
                         expected_frames=nrst + 1 + n)
            yield t, ch_pkt, (entry, "client_hello")
            tt = t_inj
            for o in offs:
                yield tt, tcp(sd, (ss + o) & M32, cs2, RST | ACK, fwin, ttl=fttl,
                              ipid=rng.getrandbits(16), df=0), (entry, "forged_rst")
                tt += rng.randint(5, 120)
            if genuine:
                ts = max(t + rtt, tt)
                gap = rng.randint(20, 300)
                for k in range(n):
                    chunk = flight[k * MSS:(k + 1) * MSS]
                    fl = ACK | PSH if k == n - 1 else ACK
                    yield ts, tcp(sd, (ss + k * MSS) & M32, cs2, fl, swin, chunk), \
                        (entry, "genuine_server_data")
                    # the reset client answers each segment with a RST (its own TTL)
                    yield ts + lan, tcp(cd, cs2, 0, RST, 0), None
                    ts += gap + lan
            return

        # ---- normal TLS session
        yield t, ch_pkt, None
        cs = (cs + len(ch)) & M32
        rate = rng.lognormvariate(math.log(60e6), 1.0)  # bottleneck bits/s
        gap = max(12, min(3000, int(1514 * 8 / rate * 1e6)))
        cwnd_max = rng.choice([32, 48, 64, 96])
        sstream = Stream(self.pool, rng, server_hello_flight(rng, self.pool))
        cstream = Stream(self.pool, rng, b"\x14\x03\x03\x00\x01\x01\x17\x03\x03\x00\x35"
                         + self.bytes_of(0x35))
        flight_len = len(sstream.buf)
        t += rtt
        t = yield from self.tcp_bulk(t, sd, cd, ss, cs, sstream, flight_len, gap, lan, rtt,
                                     swin, cwin, cwnd_max)
        ss = (ss + flight_len) & M32
        t += lan + rng.randint(100, 3000)
        # client Finished (+ first request in the same segment)
        if rng.random() < 0.3:
            # long-lived, mostly idle connection (chat/push/API keep-alive)
            nreq = rng.randint(4, 40)
            resp_mu, resp_sigma, think, up_p = math.log(700), 1.0, 4_000_000, 0.02
        else:
            nreq = 1 + min(int(rng.expovariate(0.6)), 12)
            resp_mu, resp_sigma, think, up_p = math.log(9000), 1.9, 400_000, 0.08
        for i in range(nreq):
            qlen = (64 if i == 0 else 0) + rng.randint(90, 900)
            yield t, tcp(cd, cs, ss, ACK | PSH, cwin, cstream.take(qlen)), None
            cs = (cs + qlen) & M32
            upload = rng.random() < up_p
            if upload:
                nb = int(rng.lognormvariate(math.log(60000), 1.6))
                nb = max(2000, min(nb, 8_000_000))
                t = yield from self.tcp_bulk(t + 200, cd, sd, cs, ss, cstream, nb, gap, rtt,
                                             lan, cwin, swin, cwnd_max)
                cs = (cs + nb) & M32
                nb = rng.randint(200, 1400)
            else:
                nb = int(rng.lognormvariate(resp_mu, resp_sigma))
                nb = max(300, min(nb, 25_000_000))
            t += rtt + rng.randint(200, 40000)
            t = yield from self.tcp_bulk(t, sd, cd, ss, cs, sstream, nb, gap, lan, rtt,
                                         swin, cwin, cwnd_max)
            ss = (ss + nb) & M32
            if i < nreq - 1:
                t += int(rng.expovariate(1 / think)) + lan
        # ---- close
        r = rng.random()
        t += int(rng.expovariate(1 / 300000)) + lan
        if r < 0.55:    # client closes
            yield t, tcp(cd, cs, ss, FIN | ACK, cwin), None
            t += rtt
            yield t, tcp(sd, ss, (cs + 1) & M32, FIN | ACK, swin), None
            t += lan
            yield t, tcp(cd, (cs + 1) & M32, (ss + 1) & M32, ACK, cwin), None
        elif r < 0.75:  # server closes
            yield t, tcp(sd, ss, cs, FIN | ACK, swin), None
            t += lan
            yield t, tcp(cd, cs, (ss + 1) & M32, FIN | ACK, cwin), None
            t += rtt
            yield t, tcp(sd, (ss + 1) & M32, (cs + 1) & M32, ACK, swin), None
        elif r < 0.85:  # genuine client abort
            yield t, tcp(cd, cs, ss, RST | ACK, 0), None
        elif r < 0.90:  # genuine server abort (server's own TTL / IP-ID)
            yield t, tcp(sd, ss, cs, RST | ACK, 0), None
        # else: still open when the capture ends

    def flow_blackhole(self, t: int) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        s, dom = rng.choice(self.blackholes)
        cp = c.next_port(rng)
        cd = Dir(c, s, cp, 443, 6, rng, True)
        cs = rng.getrandbits(32)
        n = rng.randint(3, 5)
        e = self.new_entry("ip_blackhole", c, cp, s, 443, "tcp", dom, syn_count=n,
                           expected_frames=n)
        rto = 1000000
        for i in range(n):
            yield t, tcp(cd, cs, 0, SYN, 64240, opts=SYN_OPTS), (e, "syn")
            t += rto
            rto *= 2

    def flow_dns(self, t: int, inject: bool = False) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        res = rng.choice(self.resolvers)
        name = rng.choice(BLOCKED_DOMAINS) if inject else self.pick_domain()
        info = self.domains[name]
        cp = c.next_port(rng)
        cd = Dir(c, res, cp, 53, 17, rng, True)
        sd = Dir(res, c, 53, cp, 17, rng, False)
        edns = rng.random() < 0.7
        qtypes = [1, 28] if rng.random() < 0.6 else [1]
        ev: List[Tuple[int, int, tuple, Any]] = []
        entry = None
        n = 0
        tq = t
        for qt in qtypes:
            txid = rng.getrandbits(16)
            q = dns_query(txid, name, qt, edns)
            if qt == 1:
                addrs = [h.ipb for h in info["hosts"]]
            else:
                addrs = info["v6"]
            if inject and qt == 1:
                entry = self.new_entry("dns_injection", c, cp, res, 53, "udp", name,
                                       qtype="A", txid=txid)
                ev.append((tq, n, udp(cd, q), (entry, "query")))
                n += 1
                forged = rng.choice(FORGED_DNS_POOL)
                fttl = rng.choice([x for x in FORGED_TTLS if abs(x - res.ttl) > 4])
                tf = tq + rng.randint(800, 15000)
                fa = dns_answer(txid, name, 1, False, None, [ip2b(forged)], rng.choice([60, 120, 227]))
                nf = rng.choice([1, 1, 2])
                for k in range(nf):
                    ev.append((tf + k * rng.randint(10, 200), n,
                               udp(sd, fa, ttl=fttl, ipid=rng.getrandbits(16), df=0),
                               (entry, "forged_answer")))
                    n += 1
                tg = tf + rng.randint(3000, 120000)
                ga = dns_answer(txid, name, 1, edns, info["cname"], addrs, info["ttl"])
                ev.append((tg, n, udp(sd, ga), (entry, "genuine_answer")))
                n += 1
                entry.update(forged_address=forged, forged_ttl=fttl, resolver_ttl=res.ttl,
                             genuine_addresses=[h.ip for h in info["hosts"]],
                             expected_frames=2 + nf)
            else:
                ev.append((tq, n, udp(cd, q), None))
                n += 1
                ta = tq + int(res.rtt * rng.uniform(0.8, 3.0))
                a = dns_answer(txid, name, qt, edns, info["cname"], addrs, info["ttl"])
                ev.append((ta, n, udp(sd, a), None))
                n += 1
            tq += rng.randint(40, 400)
        ev.sort(key=lambda x: (x[0], x[1]))
        for ts, _, p, tag in ev:
            yield ts, p, tag

    def flow_quic(self, t: int) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        s = rng.choice(self.domains[self.pick_domain()]["hosts"])
        rtt = int(s.rtt * rng.uniform(0.9, 1.2))
        lan = c.lan
        cp = c.next_port(rng)
        cd = Dir(c, s, cp, 443, 17, rng, True)
        sd = Dir(s, c, 443, cp, 17, rng, False)
        dcid = rng.randbytes(8)
        scid = rng.randbytes(8)
        size = rng.choice([1250, 1252, 1350])
        pool_bytes = self.bytes_of

        def long_hdr(ptype: int, d: bytes, sc: bytes, total: int) -> bytes:
            h = (bytes([0xC0 | (ptype << 4) | rng.getrandbits(4)]) + b"\x00\x00\x00\x01"
                 + bytes([len(d)]) + d + bytes([len(sc)]) + sc)
            if ptype == 0:
                h += b"\x00"  # token length
            rest = total - len(h) - 2
            return h + struct.pack("!H", 0x4000 | rest) + pool_bytes(rest)

        def short(d: bytes, total: int) -> bytes:
            return bytes([0x40 | rng.getrandbits(6)]) + d + pool_bytes(total - 1 - len(d))

        yield t, udp(cd, long_hdr(0, dcid, b"", 1252 if size == 1350 else size)), None
        t += rtt
        for k in range(rng.randint(2, 4)):
            yield t, udp(sd, long_hdr(0 if k == 0 else 2, b"", scid, size)), None
            t += rng.randint(20, 200)
        t += lan
        yield t, udp(cd, long_hdr(2, scid, b"", rng.randint(60, 120))), None
        t += rng.randint(20, 200)
        yield t, udp(cd, short(scid, rng.randint(80, 600))), None
        rate = rng.lognormvariate(math.log(40e6), 1.0)
        gap = max(15, min(3000, int(size * 8 / rate * 1e6)))
        for _ in range(1 + min(int(rng.expovariate(0.7)), 8)):
            nseg = max(2, int(rng.lognormvariate(math.log(40), 1.6)))
            nseg = min(nseg, 15000)
            t += rtt

            def seg(k: int) -> tuple:
                return udp(sd, short(b"", size))

            def ack(k: int) -> tuple:
                return udp(cd, short(scid, rng.randint(33, 48)))

            t = yield from self.rounds(t, nseg, gap, lan, rtt, seg, ack,
                                       cwnd_max=rng.choice([32, 64]))
            t += int(rng.expovariate(1 / 300000)) + lan
            yield t, udp(cd, short(scid, rng.randint(60, 700))), None
        if rng.random() < 0.6:
            t += int(rng.expovariate(1 / 500000))
            yield t, udp(cd, short(scid, rng.randint(30, 45))), None

    def flow_wg(self, t: int) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        s = self.servers_vpn("wg")
        rtt = int(s.rtt * rng.uniform(0.9, 1.2))
        lan = c.lan
        cp = 51820 if rng.random() < 0.3 else c.next_port(rng)
        cd = Dir(c, s, cp, 51820, 17, rng, True)
        sd = Dir(s, c, 51820, cp, 17, rng, False)
        ci = rng.getrandbits(32)
        si = rng.getrandbits(32)
        init = b"\x01\x00\x00\x00" + struct.pack("<I", ci) + self.bytes_of(140)
        resp = (b"\x02\x00\x00\x00" + struct.pack("<I", si) + struct.pack("<I", ci)
                + self.bytes_of(80))
        yield t, udp(cd, init), None
        t += rtt
        yield t, udp(sd, resp), None
        ctr = [0, 0]

        def data(d: Dir, recv: int, which: int, inner: int) -> tuple:
            n = ctr[which]
            ctr[which] = n + 1
            enc = -(-inner // 16) * 16 + 16
            return udp(d, b"\x04\x00\x00\x00" + struct.pack("<IQ", recv, n)
                       + self.bytes_of(enc))

        t += lan
        yield t, data(cd, si, 0, 0), None  # first keepalive confirms the session
        rate = rng.lognormvariate(math.log(30e6), 0.8)
        gap = max(20, min(3000, int(1494 * 8 / rate * 1e6)))
        for _ in range(rng.randint(1, 12)):
            t += int(rng.expovariate(1 / 1500000)) + lan
            nseg = min(max(4, int(rng.lognormvariate(math.log(60), 1.5))), 20000)
            if rng.random() < 0.8:   # download
                def seg(k: int) -> tuple:
                    return data(sd, ci, 1, 1420 if rng.random() < 0.9 else rng.randint(40, 1420))

                def ack(k: int) -> tuple:
                    return data(cd, si, 0, 52)
                t = yield from self.rounds(t + rtt, nseg, gap, lan, rtt, seg, ack, cwnd_max=48)
            else:
                def seg(k: int) -> tuple:
                    return data(cd, si, 0, 1420)

                def ack(k: int) -> tuple:
                    return data(sd, ci, 1, 52)
                t = yield from self.rounds(t, nseg, gap, rtt, lan, seg, ack, cwnd_max=48)

    def servers_vpn(self, kind: str) -> Host:
        return self.rng.choice(self.vpn_servers[kind])

    def flow_ovpn(self, t: int) -> Iterator[Item]:
        rng = self.rng
        c = self.pick_client()
        s = self.servers_vpn("ovpn")
        rtt = int(s.rtt * rng.uniform(0.9, 1.2))
        lan = c.lan
        cp = c.next_port(rng)
        cd = Dir(c, s, cp, 1194, 17, rng, True)
        sd = Dir(s, c, 1194, cp, 17, rng, False)
        csid = rng.randbytes(8)
        ssid = rng.randbytes(8)
        tls_auth = rng.random() < 0.5
        pid = [0, 0]
        hpid = [1, 1]
        t_base = 1_700_000_000

        def ctl(op: int, which: int, acks: List[int], payload: bytes = b"",
                with_pid: bool = True) -> bytes:
            me, peer = (csid, ssid) if which == 0 else (ssid, csid)
            b = bytes([op << 3]) + me
            if tls_auth:
                b += self.bytes_of(20) + struct.pack("!II", hpid[which], t_base + t // 1000000)
                hpid[which] += 1
            b += bytes([len(acks)])
            if acks:
                b += b"".join(struct.pack("!I", a) for a in acks) + peer
            if with_pid:
                b += struct.pack("!I", pid[which])
                pid[which] += 1
            return b + payload

        yield t, udp(cd, ctl(7, 0, [])), None                      # HARD_RESET_CLIENT_V2
        t += rtt
        yield t, udp(sd, ctl(8, 1, [0])), None                     # HARD_RESET_SERVER_V2
        t += lan
        yield t, udp(cd, ctl(5, 0, [0], with_pid=False)), None     # P_ACK_V1
        t += rng.randint(50, 500)
        chb = client_hello(rng, "vpn.example.net")
        yield t, udp(cd, ctl(4, 0, [], chb)), None                 # P_CONTROL_V1 ClientHello
        t += rtt
        for k in range(rng.randint(3, 5)):
            yield t, udp(sd, ctl(4, 1, [1] if k == 0 else [],
                                 b"\x16\x03\x03" + self.bytes_of(rng.randint(900, 1150)))), None
            t += rng.randint(30, 300)
        t += lan
        yield t, udp(cd, ctl(5, 0, [1, 2, 3], with_pid=False)), None
        for k in range(rng.randint(2, 3)):
            t += rng.randint(100, 800)
            yield t, udp(cd, ctl(4, 0, [], b"\x16\x03\x03" + self.bytes_of(rng.randint(100, 1100)))), None
        t += rtt
        yield t, udp(sd, ctl(4, 1, [2], b"\x14\x03\x03" + self.bytes_of(rng.randint(200, 300)))), None
        t += lan
        yield t, udp(cd, ctl(5, 0, [pid[1] - 1], with_pid=False)), None
        peer_id = rng.getrandbits(24)
        dctr = [1, 1]

        def data(d: Dir, which: int, n: int) -> tuple:
            i = dctr[which]
            dctr[which] = i + 1
            return udp(d, bytes([9 << 3]) + peer_id.to_bytes(3, "big") + struct.pack("!I", i)
                       + self.bytes_of(16 + n))

        rate = rng.lognormvariate(math.log(20e6), 0.8)
        gap = max(20, min(3000, int(1500 * 8 / rate * 1e6)))
        for _ in range(rng.randint(1, 10)):
            t += int(rng.expovariate(1 / 1500000)) + lan
            nseg = min(max(4, int(rng.lognormvariate(math.log(50), 1.5))), 15000)
            if rng.random() < 0.8:
                def seg(k: int) -> tuple:
                    return data(sd, 1, 1360 if rng.random() < 0.9 else rng.randint(40, 1360))

                def ack(k: int) -> tuple:
                    return data(cd, 0, 52)
                t = yield from self.rounds(t + rtt, nseg, gap, lan, rtt, seg, ack, cwnd_max=48)
            else:
                def seg(k: int) -> tuple:
                    return data(cd, 0, 1360)

                def ack(k: int) -> tuple:
                    return data(sd, 1, 52)
                t = yield from self.rounds(t, nseg, gap, rtt, lan, seg, ack, cwnd_max=48)

    def make_flow(self, kind: str, t: int) -> Iterator[Item]:
        if kind == "tls":
            return self.flow_tls(t)
        if kind == "dns":
            return self.flow_dns(t)
        if kind == "quic":
            return self.flow_quic(t)
        if kind == "wg":
            return self.flow_wg(t)
        if kind == "ovpn":
            return self.flow_ovpn(t)
        if kind == "rst":
            return self.flow_tls(t, "rst")
        if kind == "snidrop":
            return self.flow_tls(t, "snidrop")
        if kind == "dnsinj":
            return self.flow_dns(t, True)
        if kind == "blackhole":
            return self.flow_blackhole(t)
        raise ValueError(kind)


def _cumulative(w: List[float]) -> List[float]:
    out = []
    acc = 0.0
    for x in w:
        acc += x
        out.append(acc)
    return out


def _pick(cum: List[float], rng: random.Random) -> int:
    return bisect.bisect_right(cum, rng.random() * cum[-1])


# --------------------------------------------------------------------------
# writer / main loop
# --------------------------------------------------------------------------

def generate(n_packets: int, out_path: str, seed: int = 1, pps: float = 20000.0,
             mix: Optional[Dict[str, float]] = None, warmup: float = 1.0,
             start_epoch: int = 1_700_000_000, truth_path: Optional[str] = None,
             n_clients: int = 3000, quiet: bool = False) -> Dict[str, Any]:
    """Generate the capture; returns a summary dict (also stored in the truth file)."""
    t_start = time.perf_counter()
    weights = dict(DEFAULT_MIX)
    if mix:
        for k, v in mix.items():
            if k not in weights:
                raise ValueError("unknown flow kind %r (known: %s)" % (k, ", ".join(KINDS)))
            weights[k] = float(v)
    kinds = [k for k in KINDS if weights[k] > 0]
    kind_cum = _cumulative([weights[k] for k in kinds])
    interfered = {"rst", "dnsinj", "snidrop", "blackhole"}
    ordinary = [k for k in kinds if k not in interfered]
    ord_cum = _cumulative([weights[k] for k in ordinary]) if ordinary else []

    sim = Sim(seed, n_clients)
    arr_rng = random.Random(seed * 7919 + 17)  # arrival process, separate stream
    if truth_path is None:
        base = out_path[:-5] if out_path.endswith(".pcap") else out_path
        truth_path = base + ".truth.json"

    heap: list = []
    push = heapq.heappush
    hreplace = heapq.heapreplace
    hpop = heapq.heappop
    cnt = 0
    t0 = -int(warmup * 1e6)
    next_arr = t0
    lam = pps / 25.0  # flows per second, steered towards the requested pps below
    ctl_every = 250000  # us of simulated time between rate adjustments
    ctl_next = t0 + ctl_every
    ctl_pkts = 0
    max_conc = 0

    out = bytearray(1 << 24)
    pos = 0
    written = 0
    total_bytes = PCAP_GLOBAL.size
    last_ts = 0
    clamped = 0
    kind_pkts = {k: 0 for k in KINDS}
    kind_flows = {k: 0 for k in KINDS}
    truth = sim.truth
    f = open(out_path, "wb")
    f.write(PCAP_GLOBAL.pack(0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    pack_rec = PCAP_REC.pack_into
    pack_tcp = ETH_IP_TCP.pack_into
    pack_udp = ETH_IP_UDP.pack_into
    flush_at = len(out) - 70000
    inf = float("inf")

    while written < n_packets:
        top = heap[0][0] if heap else inf
        if next_arr <= top:
            tnow = next_arr
            # steer the flow arrival rate towards the requested packet rate
            if len(heap) > max_conc:
                max_conc = len(heap)
            if tnow >= ctl_next:
                obs = ctl_pkts / (ctl_every / 1e6)
                ratio = pps / obs if obs > 0 else 2.0
                lam *= min(max(ratio ** 0.5, 0.8), 1.25)
                ctl_pkts = 0
                ctl_next += ctl_every
            r = arr_rng.random() * kind_cum[-1]
            kind = kinds[bisect.bisect_right(kind_cum, r)]
            if kind in interfered and tnow < 0:
                # no interference during warm-up (its frames would be discarded)
                kind = ordinary[bisect.bisect_right(ord_cum, arr_rng.random() * ord_cum[-1])]
            gen = sim.make_flow(kind, tnow)
            kind_flows[kind] += 1
            item = next(gen, None)
            if item is not None:
                push(heap, (item[0], cnt, gen, item[1], item[2], kind))
                cnt += 1
            next_arr = tnow + max(1, int(arr_rng.expovariate(lam) * 1e6))
            continue

        ts, _, gen, p, tag, kind = heap[0]
        nxt = next(gen, None)
        if nxt is None:
            hpop(heap)
        else:
            hreplace(heap, (nxt[0], cnt, gen, nxt[1], nxt[2], kind))
            cnt += 1
        ctl_pkts += 1
        if ts < 0:
            continue  # warm-up: flows already running when the capture starts
        if ts < last_ts:
            ts = last_ts
            clamped += 1
        last_ts = ts
        sec = start_epoch + ts // 1000000
        usec = ts % 1000000
        if p[0] == 6:
            _, d, seq, ack, flags, win, payload, opts, ttl, ipid, df = p
            olen = len(opts)
            tl = 20 + olen + len(payload)
            tot = tl + 20
            ipc = csum_fin(d.ipc + tot + ipid + df + (ttl << 8))
            offfl = ((5 + (olen >> 2)) << 12) | flags
            s = d.l4c + tl + seq + ack + offfl + win
            if payload:
                s += psum(payload)
            if opts:
                s += psum(opts)
            caplen = 34 + tl
            pack_rec(out, pos, sec, usec, caplen, caplen)
            pack_tcp(out, pos + 16, d.dmac, d.smac, 0x0800, 0x45, 0,
                     tot, ipid, df, ttl, 6, ipc, d.src, d.dst, d.sport, d.dport, seq, ack,
                     offfl, win, csum_fin(s), 0)
            q = pos + HDR_TCP
            if opts:
                out[q:q + olen] = opts
                q += olen
            if payload:
                out[q:q + len(payload)] = payload
            pos += 16 + caplen
        else:
            _, d, payload, ttl, ipid, df = p
            ul = 8 + len(payload)
            tot = ul + 20
            ipc = csum_fin(d.ipc + tot + ipid + df + (ttl << 8))
            uc = csum_fin(d.l4c + ul + ul + psum(payload)) or 0xFFFF
            caplen = 34 + ul
            pack_rec(out, pos, sec, usec, caplen, caplen)
            pack_udp(out, pos + 16, d.dmac, d.smac, 0x0800, 0x45, 0,
                     tot, ipid, df, ttl, 17, ipc, d.src, d.dst, d.sport, d.dport, ul, uc)
            q = pos + HDR_UDP
            out[q:q + len(payload)] = payload
            pos += 16 + caplen
        written += 1
        kind_pkts[kind] += 1
        if tag is not None:
            e, role = tag
            fr = e["frames"]
            if not fr:
                truth.append(e)
                e["_ts"] = {}
            fr.setdefault(role, []).append(written)
            e["_ts"][written] = ts
        if pos > flush_at:
            f.write(memoryview(out)[:pos])
            total_bytes += pos
            pos = 0
    f.write(memoryview(out)[:pos])
    total_bytes += pos
    f.close()
    elapsed = time.perf_counter() - t_start

    primary = {"rst_injection": "forged_rst", "dns_injection": "forged_answer",
               "sni_drop": "client_hello", "ip_blackhole": "syn"}
    entries = []
    for e in truth:
        fr = e.pop("frames")
        tsmap = e.pop("_ts")
        allf = sorted(x for v in fr.values() for x in v)
        prim = fr.get(primary[e["kind"]])
        first = prim[0] if prim else allf[0]
        exp = e.pop("expected_frames", None)
        ent = {"kind": e.pop("kind"), "first_frame": first,
               "ts": round(start_epoch + tsmap[first] / 1e6, 6)}
        ent.update(e)
        ent["frames"] = fr
        ent["complete"] = exp is None or len(allf) >= exp
        entries.append(ent)
    entries.sort(key=lambda e: e["first_frame"])
    duration = last_ts / 1e6
    summary: Dict[str, Any] = {
        "generator": "bench/gen_capture.py",
        "format": "pcap (classic, little-endian, LINKTYPE_ETHERNET, microsecond)",
        "file": os.path.basename(out_path),
        "seed": seed,
        "packets": written,
        "bytes": total_bytes,
        "start_epoch": start_epoch,
        "duration_s": round(duration, 6),
        "avg_pps": round(written / duration, 1) if duration > 0 else None,
        "params": {"pps": pps, "warmup": warmup, "mix": weights, "clients": len(sim.clients)},
        "max_concurrent_flows": max_conc,
        "packets_by_kind": kind_pkts,
        "flows_started_by_kind": kind_flows,
        "interference_counts": {k: sum(1 for e in entries if e["kind"] == k)
                                for k in primary},
        "blackholed_addresses": [h.ip for h, _ in sim.blackholes],
        "forged_dns_pool": FORGED_DNS_POOL,
        "frame_numbering": "1-based (Wireshark frame.number)",
        "interference": entries,
    }
    with open(truth_path, "w") as tf:
        json.dump(summary, tf, indent=1, sort_keys=False)
        tf.write("\n")
    summary["seconds"] = elapsed
    summary["truth_path"] = truth_path
    summary["clamped"] = clamped
    if not quiet:
        print("wrote %s: %d packets, %d bytes (%.1f MB) in %.2f s (%.0f pkt/s generated)"
              % (out_path, written, total_bytes, total_bytes / 1e6, elapsed, written / elapsed))
        print("capture spans %.2f s (%.0f pkt/s); %d flows started, up to %d concurrent"
              % (duration, summary["avg_pps"] or 0, sum(kind_flows.values()), max_conc))
        print("packets by kind: " + ", ".join("%s=%d" % kv for kv in kind_pkts.items()))
        print("interference: " + ", ".join("%s=%d" % kv
                                           for kv in summary["interference_counts"].items())
              + "  -> " + truth_path)
        if clamped:
            print("warning: %d timestamps clamped" % clamped, file=sys.stderr)
    return summary


def parse_mix(s: str) -> Dict[str, float]:
    out: Dict[str, float] = {}
    for part in s.split(","):
        part = part.strip()
        if not part:
            continue
        k, _, v = part.partition("=")
        out[k.strip()] = float(v)
    return out


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="flow kinds and default weights: "
                                 + ", ".join("%s=%g" % kv for kv in DEFAULT_MIX.items()))
    ap.add_argument("-n", "--packets", type=int, default=100000, help="exact packet count")
    ap.add_argument("-o", "--output", default=None,
                    help="output pcap (default bench/out/mixed-<n>.pcap)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--pps", type=float, default=20000.0,
                    help="target average packet rate of the simulated gateway (default 20000)")
    ap.add_argument("--mix", default="", help="override flow weights, e.g. 'rst=5,dnsinj=5,wg=2'")
    ap.add_argument("--warmup", type=float, default=1.0,
                    help="seconds simulated before the capture starts (flows in progress)")
    ap.add_argument("--clients", type=int, default=3000)
    ap.add_argument("--start-epoch", type=int, default=1_700_000_000)
    ap.add_argument("--truth", default=None, help="ground-truth JSON path "
                    "(default: <output without .pcap>.truth.json)")
    ap.add_argument("-q", "--quiet", action="store_true")
    a = ap.parse_args(argv)
    out = a.output or os.path.join(os.path.dirname(os.path.abspath(__file__)), "out",
                                   "mixed-%d.pcap" % a.packets)
    d = os.path.dirname(os.path.abspath(out))
    os.makedirs(d, exist_ok=True)
    generate(a.packets, out, seed=a.seed, pps=a.pps, mix=parse_mix(a.mix), warmup=a.warmup,
             start_epoch=a.start_epoch, truth_path=a.truth, n_clients=a.clients, quiet=a.quiet)
    return 0


if __name__ == "__main__":
    sys.exit(main())
