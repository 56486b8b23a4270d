"""Drop, residual, ICMP, blockpage and throttling detectors on packets built in code:
each positive case and its benign guards."""
from __future__ import annotations

import struct
from typing import Any, Callable

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6DestUnreach, IPv6
from scapy.packet import Raw

C, S, S2 = "10.0.0.2", "198.51.100.7", "198.51.100.8"
T = 1_700_000_000.0
MakePcap = Callable[..., Any]
Analyze = Callable[..., dict[str, Any]]


def client_hello(sni: str) -> bytes:
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    return bytes(TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])])]))


def tcp_open(t: float, server: str = S, sport: int = 41000, dport: int = 443, sttl: int = 52) -> list[tuple[float, Any]]:
    return [
        (t, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=dport, flags="S", seq=100)),
        (t + 0.03, IP(src=server, dst=C, ttl=sttl) / TCP(sport=dport, dport=sport, flags="SA", seq=900, ack=101)),
        (t + 0.031, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=dport, flags="A", seq=101, ack=901)),
    ]


def tls_ok(t: float, server: str = S, sport: int = 41000, sni: str = "www.example.com") -> list[tuple[float, Any]]:
    ch = client_hello(sni)
    return tcp_open(t, server, sport) + [
        (t + 0.04, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)),
        (t + 0.07, IP(src=server, dst=C, ttl=52) / TCP(sport=443, dport=sport, flags="PA", seq=901, ack=101 + len(ch))
         / Raw(b"\x16\x03\x03\x00\x04\x02\x00\x00\x00")),
        (t + 0.08, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=443, flags="FA", seq=101 + len(ch), ack=910)),
        (t + 0.09, IP(src=server, dst=C, ttl=52) / TCP(sport=443, dport=sport, flags="FA", seq=910, ack=102 + len(ch))),
    ]


def hello_retransmitted(t: float, sni: str, copies: int, server: str = S, sport: int = 42000) -> list[tuple[float, Any]]:
    ch = client_hello(sni)
    out = tcp_open(t, server, sport)
    delay = 0.2
    at = t + 0.04
    for _ in range(copies):
        out.append((at, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)))
        at += delay
        delay *= 2
    return out


def one(doc: dict[str, Any]) -> dict[str, Any]:
    assert len(doc["verdicts"]) == 1, [(v["technique"], v["trigger"]) for v in doc["verdicts"]]
    return doc["verdicts"][0]


# --- drop ---------------------------------------------------------------------------------------

def test_sni_drop_with_a_working_control(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = tls_ok(T, sni="www.example.com") + hello_retransmitted(T + 1, "blocked.example", 4)
    v = one(analyze_doc(make_pcap(pkts)))
    assert (v["technique"], v["trigger"], v["domain"]) == ("drop", "sni", "blocked.example")
    assert "control_ok" in v["signals"] and v["confidence"] >= 0.6
    assert len(v["evidence"]) == 4


def test_clienthello_split_over_segments_still_gives_the_sni(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    ch = client_hello("split.example")
    a, b = ch[:40], ch[40:]
    pkts = tcp_open(T)
    at, delay = T + 0.04, 0.2
    for _ in range(4):
        pkts.append((at, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="A", seq=101, ack=901) / Raw(a)))
        pkts.append((at + 0.001, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="PA", seq=141, ack=901) / Raw(b)))
        at += delay
        delay *= 2
    v = one(analyze_doc(make_pcap(pkts)))
    assert (v["technique"], v["trigger"], v["domain"]) == ("drop", "sni", "split.example")


def test_no_retransmission_or_late_answer_is_not_a_drop(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    # the capture ends right after the ClientHello
    assert analyze_doc(make_pcap(hello_retransmitted(T, "x.example", 1)))["verdicts"] == []
    # lossy path: two retransmissions, then the server answers
    ch = client_hello("x.example")
    pkts = hello_retransmitted(T, "x.example", 3) + [
        (T + 1.0, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=42000, flags="PA", seq=901, ack=101 + len(ch)) / Raw(b"\x16\x03\x03\x00\x01\x02")),
    ]
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


def test_server_side_capture_silence_is_not_a_drop(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    # the client's packets arrive with a decremented TTL: the capture is at the server
    ch = client_hello("x.example")
    pkts = [(T + i * 0.3, IP(src=C, dst=S, ttl=51) / TCP(sport=42000, dport=443, flags="PA", seq=101, ack=901) / Raw(ch))
            for i in range(4)]
    pkts = [(T - 0.1, IP(src=C, dst=S, ttl=51) / TCP(sport=42000, dport=443, flags="S", seq=100)),
            (T - 0.09, IP(src=S, dst=C, ttl=64) / TCP(sport=443, dport=42000, flags="SA", seq=900, ack=101))] + pkts
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


def test_unanswered_syns_are_an_ip_drop_when_other_traffic_works(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    syns = [(T + 1 + i, IP(src=C, dst=S2, ttl=64) / TCP(sport=43000, dport=443, flags="S", seq=5)) for i in range(3)]
    v = one(analyze_doc(make_pcap(tls_ok(T) + syns)))
    assert (v["technique"], v["trigger"], v["server"]) == ("drop", "ip", f"{S2}:443")
    assert v["confidence"] >= 0.5
    assert any("down or unreachable" in n for n in v["notes"])
    # alone in the capture (nothing else got an answer either): a dead network looks the same,
    # so it stays a signal
    doc = analyze_doc(make_pcap(syns))
    assert doc["verdicts"] == [] and doc["stats"]["weak_findings"] == 1


def test_syn_answered_by_rst_is_not_a_drop(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = [(T, IP(src=C, dst=S, ttl=64) / TCP(sport=43000, dport=443, flags="S", seq=5)),
            (T + 0.03, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=43000, flags="RA", seq=0, ack=6)),
            (T + 1, IP(src=C, dst=S, ttl=64) / TCP(sport=43001, dport=443, flags="S", seq=5)),
            (T + 1.03, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=43001, flags="RA", seq=0, ack=6))]
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


WG_INIT = b"\x01\x00\x00\x00" + b"\x11\x22\x33\x44" + bytes(range(140))


def test_wireguard_initiations_unanswered(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    assert len(WG_INIT) == 148
    wg = [(T + 1 + 5 * i, IP(src=C, dst=S, ttl=64) / UDP(sport=50000, dport=51820) / Raw(WG_INIT)) for i in range(3)]
    # other traffic to the same address works: the protocol, not the address, is blocked
    v = one(analyze_doc(make_pcap(tls_ok(T) + wg)))
    assert (v["technique"], v["trigger"], v["target"]) == ("drop", "protocol", "wireguard")
    # nothing else to that address: the capture cannot tell protocol from address
    v = one(analyze_doc(make_pcap(tls_ok(T, server=S2) + wg)))
    assert (v["technique"], v["trigger"], v["target"]) == ("drop", "ip", "wireguard")


def test_random_udp_on_a_vpn_port_is_not_a_vpn_drop(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    junk = [(T + i, IP(src=C, dst=S, ttl=64) / UDP(sport=50000, dport=51820) / Raw(bytes([7]) * 148)) for i in range(4)]
    assert analyze_doc(make_pcap(tls_ok(T) + junk))["verdicts"] == []


# --- residual -----------------------------------------------------------------------------------

def test_residual_reset_after_an_sni_block(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    ch = client_hello("blocked.example")
    pkts = tcp_open(T) + [
        (T + 0.04, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)),
        (T + 0.05, IP(src=S, dst=C, ttl=110) / TCP(sport=443, dport=41000, flags="RA", seq=901, ack=101 + len(ch), window=16)),
        # a new connection 3 s later is reset at the SYN (same client, server, port)
        (T + 3, IP(src=C, dst=S, ttl=64) / TCP(sport=41001, dport=443, flags="S", seq=7)),
        (T + 3.01, IP(src=S, dst=C, ttl=111) / TCP(sport=443, dport=41001, flags="RA", seq=0, ack=8)),
        # another port of the same server is fine
    ] + tls_ok(T + 4, sport=41002)
    doc = analyze_doc(make_pcap(pkts))
    kinds = sorted((v["technique"], v["trigger"]) for v in doc["verdicts"])
    assert kinds == [("rst_injection", "residual"), ("rst_injection", "sni")]
    first = next(v for v in doc["verdicts"] if v["trigger"] == "sni")
    res = next(v for v in doc["verdicts"] if v["trigger"] == "residual")
    assert res["related"] == [first["id"]]
    assert "ttl_mismatch" in res["signals"]


def test_rst_at_syn_without_an_earlier_block_is_not_residual(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = [(T + 3, IP(src=C, dst=S, ttl=64) / TCP(sport=41001, dport=443, flags="S", seq=7)),
            (T + 3.01, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=41001, flags="RA", seq=0, ack=8))]
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


# --- ICMP ---------------------------------------------------------------------------------------

def test_icmp_admin_prohibited_quoting_the_syn(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    syn = IP(src=C, dst=S, ttl=64) / TCP(sport=44000, dport=5222, flags="S", seq=1)
    pkts = [(T, syn), (T + 0.01, IP(src="10.0.0.1", dst=C, ttl=64) / ICMP(type=3, code=13) / bytes(syn)[:28])]
    v = one(analyze_doc(make_pcap(pkts)))
    assert (v["technique"], v["trigger"], v["server"]) == ("icmp_unreachable", "ip", f"{S}:5222")
    assert v["signals"] == ["icmp_admin_prohibited"]


def test_icmpv6_admin_prohibited(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    syn = IPv6(src="2001:db8::2", dst="2001:db8:1::7", hlim=64) / TCP(sport=44000, dport=443, flags="S", seq=1)
    pkts = [(T, syn), (T + 0.01, IPv6(src="2001:db8::1", dst="2001:db8::2") / ICMPv6DestUnreach(code=1) / bytes(syn))]
    v = one(analyze_doc(make_pcap(pkts)))
    assert v["technique"] == "icmp_unreachable" and v["server"] == "[2001:db8:1::7]:443"


def test_port_unreachable_from_the_server_itself_is_silent(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    dgram = IP(src=C, dst=S, ttl=64) / UDP(sport=44000, dport=9999) / Raw(b"hello")
    pkts = [(T, dgram), (T + 0.01, IP(src=S, dst=C, ttl=52) / ICMP(type=3, code=3) / bytes(dgram)[:28])]
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


# --- blockpage ----------------------------------------------------------------------------------

REQ = b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n"
PAGE = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n"


def test_injected_blockpage_with_other_ttl(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = tcp_open(T, dport=80) + [
        (T + 0.04, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=80, flags="PA", seq=101, ack=901) / Raw(REQ)),
        (T + 0.05, IP(src=S, dst=C, ttl=120) / TCP(sport=80, dport=41000, flags="PA", seq=901, ack=101 + len(REQ)) / Raw(PAGE)),
    ]
    v = one(analyze_doc(make_pcap(pkts)))
    assert (v["technique"], v["trigger"], v["domain"]) == ("blockpage", "http_host", "blocked.example")
    assert "response_ttl_mismatch" in v["signals"]


def test_a_normal_403_is_not_a_blockpage(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = tcp_open(T, dport=80) + [
        (T + 0.04, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=80, flags="PA", seq=101, ack=901) / Raw(REQ)),
        (T + 0.05, IP(src=S, dst=C, ttl=52) / TCP(sport=80, dport=41000, flags="PA", seq=901, ack=101 + len(REQ)) / Raw(PAGE)),
    ]
    assert analyze_doc(make_pcap(pkts))["verdicts"] == []


# --- throttling ---------------------------------------------------------------------------------

def download(t: float, server: str, sport: int, sni: str, seconds: float, nbytes: int = 60_000) -> list[tuple[float, Any]]:
    ch = client_hello(sni)
    out = tcp_open(t, server, sport) + [
        (t + 0.04, IP(src=C, dst=server, ttl=64) / TCP(sport=sport, dport=443, flags="PA", seq=101, ack=901) / Raw(ch))]
    seg = 1200
    n = nbytes // seg
    for i in range(n):
        out.append((t + 0.05 + seconds * i / n, IP(src=server, dst=C, ttl=52)
                    / TCP(sport=443, dport=sport, flags="A", seq=901 + i * seg, ack=101 + len(ch)) / Raw(b"d" * seg)))
    return out


def test_throttled_flow_next_to_a_fast_one_on_the_same_server(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = download(T, S, 41000, "fast.example", 0.05) + download(T + 1, S, 41001, "slow.example", 3.0)
    v = one(analyze_doc(make_pcap(sorted(pkts, key=lambda p: p[0]))))
    assert (v["technique"], v["trigger"], v["domain"]) == ("throttling", "sni", "slow.example")
    assert "control_same_server" in v["signals"] and v["confidence"] >= 0.7


def test_everything_slow_is_not_throttling(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    pkts = download(T, S, 41000, "a.example", 3.0) + download(T + 0.5, S2, 41001, "b.example", 3.2)
    assert analyze_doc(make_pcap(sorted(pkts, key=lambda p: p[0])))["verdicts"] == []


def test_pcap_helper_writes_valid_records(make_pcap: MakePcap) -> None:
    p = make_pcap([(T, IP(src=C, dst=S) / UDP(sport=1, dport=2))])
    data = p.read_bytes()
    assert struct.unpack_from("<I", data, 0)[0] == 0xA1B2C3D4 and len(data) == 24 + 16 + 28


def raw_client_hello(sni: str, extra_ext: list[tuple[int, bytes]]) -> bytes:
    """A minimal TLS 1.2-style ClientHello built byte by byte (RFC 8446 §4.1.2)."""
    name = sni.encode()
    sni_ext = struct.pack("!HBH", len(name) + 3, 0, len(name)) + name
    exts = [(0, sni_ext)] + extra_ext
    ext_bytes = b"".join(struct.pack("!HH", t, len(d)) + d for t, d in exts)
    body = (b"\x03\x03" + bytes(32) + b"\x00" + struct.pack("!H", 2) + b"\x13\x01" + b"\x01\x00"
            + struct.pack("!H", len(ext_bytes)) + ext_bytes)
    hs = b"\x01" + struct.pack("!I", len(body))[1:] + body
    return b"\x16\x03\x01" + struct.pack("!H", len(hs)) + hs


def test_ech_outer_sni_is_noted(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    ch = raw_client_hello("public.example", [(0xFE0D, b"\x00" * 40)])
    pkts = tcp_open(T)
    at, delay = T + 0.04, 0.2
    for _ in range(4):
        pkts.append((at, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)))
        at += delay
        delay *= 2
    v = one(analyze_doc(make_pcap(pkts)))
    assert (v["technique"], v["trigger"], v["domain"]) == ("drop", "sni", "public.example")
    assert any("outer (public) name" in n for n in v["notes"])
