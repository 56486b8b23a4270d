"""identify() on real handshakes from public captures (../shared/captures-public).

The captures belong to their publishers (nDPI, tcpdump, zeek test suites); they are read in
place and never copied.  FlowFacts are built here with dpkt: flows are grouped by 5-tuple,
the client is the sender of the SYN (TCP) or of the first packet.
"""
from __future__ import annotations

import socket
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import dpkt
import pytest

from analyzer.identify import identify
from analyzer.model import FlowFacts, Identification, Target

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures-public"
NDPI = "ntop__nDPI__tests__cfgs__default__pcap__"
PAYLOAD_CUT = 2048
MAX_PAYLOADS = 32

pytestmark = pytest.mark.public

_PROTO_NAMES = {6: "tcp", 17: "udp", 47: "gre", 50: "esp", 51: "ah"}


def _ntop(addr: bytes) -> str:
    return socket.inet_ntop(socket.AF_INET if len(addr) == 4 else socket.AF_INET6, addr)


def _ip_of(buf: bytes, linktype: int) -> Optional[dpkt.Packet]:
    try:
        if linktype == dpkt.pcap.DLT_EN10MB:
            pkt = dpkt.ethernet.Ethernet(buf).data
        elif linktype == 113:  # LINUX_SLL
            pkt = dpkt.sll.SLL(buf).data
        elif linktype == 276:  # LINUX_SLL2: 20-byte header, protocol at 0
            raw = buf[20:]
            pkt = dpkt.ip.IP(raw) if raw[:1] and raw[0] >> 4 == 4 else dpkt.ip6.IP6(raw)
        elif linktype in (0, 108):  # NULL / LOOP
            raw = buf[4:]
            pkt = dpkt.ip.IP(raw) if raw[0] >> 4 == 4 else dpkt.ip6.IP6(raw)
        elif linktype in (12, 101, 228, 229):  # raw IP
            pkt = dpkt.ip.IP(buf) if buf[0] >> 4 == 4 else dpkt.ip6.IP6(buf)
        else:
            return None
    except (dpkt.UnpackError, IndexError, ValueError):
        return None
    return pkt if isinstance(pkt, (dpkt.ip.IP, dpkt.ip6.IP6)) else None


def _raw_l4(ip: dpkt.Packet) -> bytes:
    if isinstance(ip, dpkt.ip.IP):
        raw = bytes(ip)
        return raw[ip.hl * 4:ip.len]
    return bytes(ip.data)


def _client_hello(data: bytes) -> tuple[Optional[str], tuple[str, ...]]:
    """(SNI, ALPN) of a TLS ClientHello, parsed by hand (only what the tests need)."""
    if len(data) < 43 or data[0] != 0x16 or data[5] != 1:
        return None, ()
    off = 9 + 2 + 32
    off += 1 + data[off]  # session id
    off += 2 + int.from_bytes(data[off:off + 2], "big")  # cipher suites
    off += 1 + data[off]  # compression
    end = off + 2 + int.from_bytes(data[off:off + 2], "big")
    off += 2
    sni: Optional[str] = None
    alpn: list[str] = []
    while off + 4 <= min(end, len(data)):
        etype = int.from_bytes(data[off:off + 2], "big")
        elen = int.from_bytes(data[off + 2:off + 4], "big")
        ext = data[off + 4:off + 4 + elen]
        if etype == 0 and len(ext) > 5:
            sni = ext[5:5 + int.from_bytes(ext[3:5], "big")].decode("ascii", "replace")
        elif etype == 16 and len(ext) > 2:
            p = 2
            while p < len(ext):
                n = ext[p]
                alpn.append(ext[p + 1:p + 1 + n].decode("ascii", "replace"))
                p += 1 + n
        off += 4 + elen
    return sni, tuple(alpn)


@dataclass
class _Flow:
    proto: str
    client: tuple[str, int]
    server: tuple[str, int]
    first_ts: float
    client_payloads: list[bytes] = field(default_factory=list)
    server_payloads: list[bytes] = field(default_factory=list)
    client_sizes: list[int] = field(default_factory=list)
    server_sizes: list[int] = field(default_factory=list)


def load_flows(name: str) -> list[FlowFacts]:
    """FlowFacts for every TCP/UDP/ESP/AH/GRE flow of a capture, in order of appearance."""
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"capture {name} not available")
    flows: dict[tuple[object, ...], _Flow] = {}
    dns: list[tuple[float, str, str]] = []  # (ts, address, name)
    with path.open("rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            fh.seek(0)
            reader = dpkt.pcapng.Reader(fh)
        linktype = reader.datalink()
        for ts, buf in reader:
            ip = _ip_of(buf, linktype)
            if ip is None:
                continue
            src, dst = _ntop(ip.src), _ntop(ip.dst)
            l4 = ip.data
            syn = False
            if isinstance(l4, dpkt.tcp.TCP):
                proto, sport, dport, payload = "tcp", l4.sport, l4.dport, bytes(l4.data)
                syn = bool(l4.flags & dpkt.tcp.TH_SYN) and not l4.flags & dpkt.tcp.TH_ACK
            elif isinstance(l4, dpkt.udp.UDP):
                proto, sport, dport, payload = "udp", l4.sport, l4.dport, bytes(l4.data)
                if sport == 53 and payload:
                    try:
                        msg = dpkt.dns.DNS(payload)
                    except (dpkt.UnpackError, IndexError):
                        msg = None
                    if msg is not None and msg.qd:
                        for an in msg.an:
                            if an.type in (dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA):
                                dns.append((ts, _ntop(an.rdata), msg.qd[0].name))
                                dns.append((ts, _ntop(an.rdata), an.name))
            else:
                p = ip.p if isinstance(ip, dpkt.ip.IP) else ip.nxt
                if p not in _PROTO_NAMES:
                    continue
                proto, sport, dport, payload = _PROTO_NAMES[p], 0, 0, _raw_l4(ip)
            a, b = (src, sport), (dst, dport)
            key = (proto,) + tuple(sorted([a, b]))
            fl = flows.get(key)
            if fl is None:
                fl = flows[key] = _Flow(proto, a, b, ts)
            elif syn and fl.client != a:
                # the SYN sender is the client even when other packets came first
                fl.client, fl.server = a, b
                fl.client_payloads, fl.server_payloads = fl.server_payloads, fl.client_payloads
                fl.client_sizes, fl.server_sizes = fl.server_sizes, fl.client_sizes
            from_client = a == fl.client
            sizes = fl.client_sizes if from_client else fl.server_sizes
            pays = fl.client_payloads if from_client else fl.server_payloads
            if len(sizes) < MAX_PAYLOADS:
                sizes.append(len(payload))
            if payload and len(pays) < MAX_PAYLOADS:
                pays.append(payload[:PAYLOAD_CUT])
    out = []
    for fl in flows.values():
        first = fl.client_payloads[0] if fl.client_payloads else b""
        sni, alpn = _client_hello(first) if fl.proto == "tcp" else (None, ())
        host = None
        if fl.proto == "tcp" and b"\r\nHost:" in first:
            host = first.split(b"\r\nHost:", 1)[1].split(b"\r\n", 1)[0].strip().decode("latin-1")
        names = tuple(dict.fromkeys(n for t, addr, n in dns
                                    if addr == fl.server[0] and t <= fl.first_ts))
        out.append(FlowFacts(
            proto=fl.proto, client_ip=fl.client[0], client_port=fl.client[1],
            server_ip=fl.server[0], server_port=fl.server[1],
            client_payloads=tuple(fl.client_payloads), server_payloads=tuple(fl.server_payloads),
            sni=sni, http_host=host, dns_names=names, alpn=alpn,
            client_sizes=tuple(fl.client_sizes), server_sizes=tuple(fl.server_sizes)))
    return out


def identified(name: str) -> list[tuple[FlowFacts, Identification]]:
    return [(f, identify(f)) for f in load_flows(name)]


def _key(f: FlowFacts) -> str:
    return f"{f.proto} {f.client_ip}:{f.client_port} -> {f.server_ip}:{f.server_port}"


if __name__ == "__main__":  # exploration aid: python tests/identify/test_identify_captures.py
    import sys
    for capture in sys.argv[1:]:
        print("==", capture)
        for facts, ident in identified(capture):
            print(f"  {_key(facts):60s} {ident.target.value:12s} {ident.app!s:15s} "
                  f"{ident.confidence:.2f} {ident.handshake_answered!s:5s} {'; '.join(ident.reasons)}")
