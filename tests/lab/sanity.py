"""Lab-side checks that a scenario's pcap really shows what its ground truth claims
(independent of the analyzer; reads pcaps with dpkt).  Also enforces network safety: every
IPv4 address in a lab capture must belong to the lab's address plan."""
from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dpkt

from .censor import GFW_FORGED_POOL
from .quic import initial_sni
from .topology import CLIENT_IP, OTHER_IP, RESOLVER_IP, VPN_IP, WA_IP1, WA_IP2

LAB_NETS = [ipaddress.ip_network(n) for n in (
    "10.99.0.0/16", "157.240.1.53/32", "157.240.2.53/32", "203.0.113.0/24",
    "198.51.100.0/24")]
# addresses that may appear only inside DNS answers (never as packet endpoints)
MAX_BYTES = 200 * 1024


@dataclass
class Pkt:
    n: int
    ts: float
    src: str
    dst: str
    ttl: int
    ipid: int
    proto: int
    sport: int = 0
    dport: int = 0
    flags: int = 0
    seq: int = 0
    ack: int = 0
    data: bytes = b""
    icmp_type: int = -1
    icmp_code: int = -1
    dns: Any = None


def read(pcap: Path) -> list[Pkt]:
    out = []
    with open(pcap, "rb") as fh:
        for n, (ts, buf) in enumerate(dpkt.pcap.Reader(fh), 1):
            eth = dpkt.ethernet.Ethernet(buf)
            ip = eth.data
            if not isinstance(ip, dpkt.ip.IP):
                continue
            p = Pkt(n, ts, socket.inet_ntoa(ip.src), socket.inet_ntoa(ip.dst), ip.ttl, ip.id,
                    ip.p)
            l4 = ip.data
            if isinstance(l4, dpkt.tcp.TCP):
                p.sport, p.dport, p.flags, p.seq, p.ack, p.data = (l4.sport, l4.dport, l4.flags,
                                                                   l4.seq, l4.ack, bytes(l4.data))
            elif isinstance(l4, dpkt.udp.UDP):
                p.sport, p.dport, p.data = l4.sport, l4.dport, bytes(l4.data)
                if 53 in (p.sport, p.dport):
                    try:
                        p.dns = dpkt.dns.DNS(p.data)
                    except (dpkt.UnpackError, IndexError):
                        pass
            elif isinstance(l4, dpkt.icmp.ICMP):
                p.icmp_type, p.icmp_code = l4.type, l4.code
            out.append(p)
    return out


def _a(d: Any) -> list[str]:
    return [socket.inet_ntoa(rr.rdata) for rr in d.an if rr.type == dpkt.dns.DNS_A]


RST, SYN, ACK, FIN = dpkt.tcp.TH_RST, dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN


def _synack_ttl(ps: list[Pkt], server: str, port: int) -> int | None:
    for p in ps:
        if p.src == server and p.sport == port and p.flags & SYN and p.flags & ACK:
            return p.ttl
    return None


def _clienthellos(ps: list[Pkt], server: str, port: int) -> list[Pkt]:
    return [p for p in ps if p.dst == server and p.dport == port and p.data[:1] == b"\x16"
            and p.data[5:6] == b"\x01"]


def _rst_injection(ps: list[Pkt], probs: list[str]) -> None:
    ttl = _synack_ttl(ps, WA_IP1, 443)
    forged = [p for p in ps if p.src == WA_IP1 and p.sport == 443 and p.flags & RST
              and p.ttl != ttl]
    if ttl is None or len(forged) < 3:
        probs.append(f"expected >=3 RSTs from {WA_IP1} with a TTL other than the SYN/ACK's "
                     f"({ttl}); got {[(p.n, p.ttl) for p in forged]}")
    if not _clienthellos(ps, WA_IP1, 443):
        probs.append("no ClientHello to 157.240.1.53:443")


def c_clean(ps: list[Pkt], probs: list[str]) -> None:
    if not any(p.src == WA_IP1 and p.data[:3] == b"\x16\x03\x03" for p in ps):
        probs.append("no ServerHello from 157.240.1.53")
    if any(p.flags & RST for p in ps if p.proto == 6):
        probs.append("unexpected RST in clean session")


def c_rst(ps: list[Pkt], probs: list[str]) -> None:
    _rst_injection(ps, probs)


def c_sni_drop(ps: list[Pkt], probs: list[str]) -> None:
    ch = _clienthellos(ps, WA_IP1, 443)
    if len(ch) < 3:
        probs.append(f"expected the ClientHello retransmitted, got {len(ch)} copies")
    if ch and any(p.src == WA_IP1 and p.n > ch[0].n for p in ps):
        probs.append("server packets after the ClientHello (should all be dropped)")


def c_dns(ps: list[Pkt], probs: list[str]) -> None:
    resp = [p for p in ps if p.src == RESOLVER_IP and p.dns is not None
            and p.dns.qd and p.dns.qd[0].name == "g.whatsapp.net"]
    if len(resp) != 2:
        probs.append(f"expected 2 answers for g.whatsapp.net, got {len(resp)}")
        return
    first, second = resp
    if first.dns.id != second.dns.id:
        probs.append("the two answers have different transaction ids")
    if _a(first.dns) != [GFW_FORGED_POOL[0]] or first.ttl == second.ttl:
        probs.append(f"first answer should be forged {GFW_FORGED_POOL[0]} with another IP TTL")
    if set(_a(second.dns)) != {WA_IP1, WA_IP2}:
        probs.append(f"second answer should be genuine, got {_a(second.dns)}")


def c_blackhole(ps: list[Pkt], probs: list[str]) -> None:
    syns = [p for p in ps if p.dst == WA_IP1 and p.flags & SYN]
    if len(syns) < 2:
        probs.append(f"expected retransmitted SYNs to {WA_IP1}, got {len(syns)}")
    if any(p.src == WA_IP1 for p in ps):
        probs.append(f"packets from blackholed {WA_IP1}")
    if _synack_ttl(ps, WA_IP2, 443) is None:
        probs.append(f"no working handshake with {WA_IP2}")


def c_residual(rst_mode: bool) -> Callable[[list[Pkt], list[str]], None]:
    def check(ps: list[Pkt], probs: list[str]) -> None:
        _rst_injection(ps, probs)
        ch = _clienthellos(ps, WA_IP1, 443)
        later = [p for p in ps if p.dst == WA_IP1 and p.dport == 443 and p.flags == SYN
                 and ch and p.n > ch[0].n]
        ports = {p.sport for p in later}
        if len(ports) < 2:
            probs.append(f"expected 2 later connection attempts, got {len(ports)}")
        answered = [p for p in ps if p.src == WA_IP1 and p.sport == 443 and p.dport in ports]
        if rst_mode and (len(answered) < 2 or not all(p.flags & RST for p in answered)):
            probs.append("later SYNs should be answered by forged RSTs only")
        if not rst_mode and answered:
            probs.append("later SYNs should go unanswered")
        if _synack_ttl(ps, WA_IP1, 5222) is None:
            probs.append("port 5222 should work")
    return check


def _udp_to(ps: list[Pkt], host: str, port: int) -> list[Pkt]:
    return [p for p in ps if p.proto == 17 and p.dst == host and p.dport == port]


def _udp_from(ps: list[Pkt], host: str, port: int) -> list[Pkt]:
    return [p for p in ps if p.proto == 17 and p.src == host and p.sport == port]


def _control_ok(ps: list[Pkt], probs: list[str]) -> None:
    if _synack_ttl(ps, VPN_IP, 443) is None:
        probs.append("control connection to the VPN host's 443 did not work")


def c_ovpn(ok: bool) -> Callable[[list[Pkt], list[str]], None]:
    def check(ps: list[Pkt], probs: list[str]) -> None:
        if not ok:
            _control_ok(ps, probs)
        resets = [p for p in _udp_to(ps, VPN_IP, 1194) if p.data[:1] == b"\x38"]
        back = _udp_from(ps, VPN_IP, 1194)
        if not resets:
            probs.append("no P_CONTROL_HARD_RESET_CLIENT_V2 to 198.51.100.20:1194")
        if ok and not any(p.data[:1] == b"\x40" for p in back):
            probs.append("no P_CONTROL_HARD_RESET_SERVER_V2 back")
        if not ok and (back or len(resets) < 2):
            probs.append(f"expected >=2 unanswered hard resets; {len(resets)} sent, "
                         f"{len(back)} back")
    return check


def c_wg(ok: bool) -> Callable[[list[Pkt], list[str]], None]:
    def check(ps: list[Pkt], probs: list[str]) -> None:
        if not ok:
            _control_ok(ps, probs)
        inits = [p for p in _udp_to(ps, VPN_IP, 51820)
                 if len(p.data) == 148 and p.data[:4] == b"\x01\x00\x00\x00"]
        back = _udp_from(ps, VPN_IP, 51820)
        if not inits:
            probs.append("no WireGuard handshake initiation")
        if ok and not any(len(p.data) == 92 and p.data[:1] == b"\x02" for p in back):
            probs.append("no WireGuard handshake response")
        if not ok and (back or len(inits) < 2):
            probs.append(f"expected >=2 unanswered initiations; {len(inits)} sent, "
                         f"{len(back)} back")
    return check


def c_genuine_rst(ps: list[Pkt], probs: list[str]) -> None:
    ttl = _synack_ttl(ps, WA_IP1, 443)
    rsts = [p for p in ps if p.src == WA_IP1 and p.flags & RST]
    if not rsts or any(p.ttl != ttl for p in rsts):
        probs.append(f"expected server RST(s) with the server's TTL {ttl}: "
                     f"{[(p.n, p.ttl) for p in rsts]}")


def c_lossy(ps: list[Pkt], probs: list[str]) -> None:
    high: int | None = None
    retrans = 0
    for p in ps:
        if p.src == WA_IP1 and p.data:
            end = (p.seq + len(p.data)) & 0xFFFFFFFF
            if high is not None and ((high - p.seq) & 0xFFFFFFFF) < 1 << 31 and p.seq != high:
                retrans += 1  # starts below the highest byte already sent
            if high is None or ((end - high) & 0xFFFFFFFF) < 1 << 31:
                high = end
    total = sum(len(p.data) for p in ps if p.src == WA_IP1)
    if retrans < 1:
        probs.append("expected retransmissions on the lossy link")
    if total < 65536 or not any(p.src == WA_IP1 and p.flags & FIN for p in ps):
        probs.append("transfer did not complete")


def c_cdn(ps: list[Pkt], probs: list[str]) -> None:
    ans = [_a(p.dns) for p in ps if p.src == RESOLVER_IP and p.dns is not None and p.dns.an]
    if ans != [[WA_IP1], [WA_IP2]]:
        probs.append(f"expected answers [[{WA_IP1}], [{WA_IP2}]], got {ans}")
    for ip in (WA_IP1, WA_IP2):
        if _synack_ttl(ps, ip, 443) is None:
            probs.append(f"no handshake with {ip}")


def c_blockpage(ps: list[Pkt], probs: list[str]) -> None:
    pages = [p for p in ps if p.src == WA_IP1 and p.data.startswith(b"HTTP/1.1 403")]
    ttl = _synack_ttl(ps, WA_IP1, 80)
    if not pages or pages[0].ttl == ttl:
        probs.append("no injected 403 page with a foreign TTL")
    if any(p.src == WA_IP1 and p.data.startswith(b"HTTP/1.1 200") for p in ps):
        probs.append("genuine response reached the client")


def c_icmp(ps: list[Pkt], probs: list[str]) -> None:
    icmps = [p for p in ps if p.icmp_type == 3 and p.icmp_code == 13]
    if len(icmps) < 2:
        probs.append(f"expected 2 ICMP admin-prohibited, got {len(icmps)}")
    if _synack_ttl(ps, WA_IP1, 443) is None:
        probs.append("443 should work")


def c_quic(ps: list[Pkt], probs: list[str]) -> None:
    inits = _udp_to(ps, WA_IP1, 443)
    if len(inits) < 2 or any(len(p.data) < 1200 for p in inits):
        probs.append(f"expected >=2 full-size Initials, got {len(inits)}")
    snis = {getattr(initial_sni(p.data), "sni", None) for p in inits}
    if snis != {"g.whatsapp.net"}:
        probs.append(f"Initials should decrypt to SNI g.whatsapp.net: {snis}")
    if _udp_from(ps, WA_IP1, 443):
        probs.append("server answered")


def _download(ps: list[Pkt], server: str, nth: int = 0) -> tuple[int, float]:
    """(payload bytes, seconds from SYN/ACK to the server's FIN) of the nth TCP connection
    downloaded from server (connections told apart by the client's port)."""
    ports: list[int] = []
    for p in ps:
        if p.src == server and p.proto == 6 and p.sport == 443 and p.dport not in ports:
            ports.append(p.dport)
    if nth >= len(ports):
        return 0, 0.0
    data = [p for p in ps if p.src == server and p.proto == 6 and p.dport == ports[nth]]
    start = next((p.ts for p in data if p.flags & SYN), None)
    end = next((p.ts for p in data if p.flags & FIN), None)
    if start is None or end is None:
        return 0, 0.0
    return sum(len(p.data) for p in data), end - start


def c_throttle(ps: list[Pkt], probs: list[str]) -> None:
    # the control (SNI www.example.com) and the WhatsApp download go to the same server
    b1, t1 = _download(ps, WA_IP1, 0)
    b2, t2 = _download(ps, WA_IP1, 1)
    if b1 < 49152 or b2 < 49152:
        probs.append(f"downloads incomplete: {b1} B from control, {b2} B from WhatsApp")
    elif not t2 > 5 * t1:
        probs.append(f"WhatsApp download ({t2:.3f}s) should be much slower than the control "
                     f"({t1:.3f}s)")


SLOW_LINK_BPS = 1_000_000   # benign-slow-link: tc tbf rate 1mbit ...
SLOW_LINK_BURST = 16 * 1024  # ... burst 16kb


def c_slow(ps: list[Pkt], probs: list[str]) -> None:
    """Both downloads went through the same shaper: neither beat the link's rate once the
    burst was spent.  Their durations are not compared closely: a lost segment costs one
    download a retransmission timeout (CI once saw 0.63 s against 0.30 s), which is the
    benign noise this scenario exists to keep silent.  Only a gap the size of the throttle
    scenario's (5x) would make the lab's shaping look targeted."""
    b1, t1 = _download(ps, OTHER_IP)
    b2, t2 = _download(ps, WA_IP1)
    if b1 < 49152 or b2 < 49152:
        probs.append(f"downloads incomplete: {b1} B, {b2} B")
        return
    for what, b, t in (("control", b1, t1), ("WhatsApp", b2, t2)):
        floor = 0.8 * (b - SLOW_LINK_BURST) * 8 / SLOW_LINK_BPS
        if t < floor:
            probs.append(f"{what} download was not shaped: {b} B in {t:.3f}s "
                         f"(the link allows no less than {floor:.3f}s)")
    if max(t1, t2) > 5 * min(t1, t2):
        probs.append(f"the downloads should be about as slow: {t1:.3f}s vs {t2:.3f}s")


CHECKS: dict[str, Callable[[list[Pkt], list[str]], None]] = {
    "whatsapp-clean-tls": c_clean,
    "rst-injection-whatsapp-sni": c_rst,
    "sni-drop": c_sni_drop,
    "dns-injection-race": c_dns,
    "ip-blackhole": c_blackhole,
    "residual-blocking": c_residual(True),
    "residual-drop": c_residual(False),
    "openvpn-handshake-drop": c_ovpn(False),
    "openvpn-handshake-ok": c_ovpn(True),
    "wireguard-handshake-drop": c_wg(False),
    "wireguard-handshake-ok": c_wg(True),
    "benign-genuine-rst": c_genuine_rst,
    "benign-lossy-link": c_lossy,
    "benign-cdn-dns": c_cdn,
    "http-blockpage": c_blockpage,
    "icmp-admin-prohibited": c_icmp,
    "quic-sni-drop": c_quic,
    "throttling-sni": c_throttle,
    "benign-slow-link": c_slow,
}


def check_pcap(name: str, pcap: Path) -> list[str]:
    probs: list[str] = []
    size = pcap.stat().st_size
    if size >= MAX_BYTES:
        probs.append(f"{pcap.name} is {size} bytes (limit {MAX_BYTES})")
    ps = read(pcap)
    if not ps:
        return probs + [f"{pcap.name}: no IPv4 packets"]
    for p in ps:
        for a in (p.src, p.dst):
            if not any(ipaddress.ip_address(a) in n for n in LAB_NETS):
                probs.append(f"frame {p.n}: address {a} outside the lab plan")
    if not any(p.src == CLIENT_IP for p in ps):
        probs.append("no packet from the client")
    fn = CHECKS.get(name)
    if fn is not None:
        fn(ps, probs)
    return [f"{name}: {x}" for x in probs]


__all__ = ["CHECKS", "OTHER_IP", "check_pcap", "read"]
