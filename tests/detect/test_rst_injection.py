"""RST injection: each positive signal and each benign guard, on packets built with scapy."""
from __future__ import annotations

from typing import Any, Callable

import pytest
from scapy.layers.inet import IP, TCP
from scapy.packet import Raw

C, S = "10.0.0.2", "198.51.100.7"
CS, SS = 1000, 50000
T = 1_700_000_000.0


def ip(src: str, dst: str, ttl: int, ipid: int) -> IP:
    return IP(src=src, dst=dst, ttl=ttl, id=ipid, flags="DF")


def handshake(sttl: int = 52) -> list[tuple[float, Any]]:
    return [
        (T, ip(C, S, 64, 10) / TCP(sport=41000, dport=443, flags="S", seq=CS)),
        (T + 0.05, ip(S, C, sttl, 500) / TCP(sport=443, dport=41000, flags="SA", seq=SS, ack=CS + 1)),
        (T + 0.051, ip(C, S, 64, 11) / TCP(sport=41000, dport=443, flags="A", seq=CS + 1, ack=SS + 1)),
    ]


def client_hello(sni: str) -> bytes:
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    ch = TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])])
    return bytes(TLS(msg=[ch]))


CH = client_hello("g.whatsapp.net")


def hello(t: float = T + 0.06) -> tuple[float, Any]:
    return (t, ip(C, S, 64, 12) / TCP(sport=41000, dport=443, flags="PA", seq=CS + 1, ack=SS + 1) / Raw(CH))


def run(make_pcap: Callable[..., Any], analyze_doc: Callable[..., dict[str, Any]], pkts: list[tuple[float, Any]]) -> dict[str, Any]:
    return analyze_doc(make_pcap(pkts))


def test_ttl_mismatch_rst_after_client_hello_is_sni_rst_injection(make_pcap, analyze_doc) -> None:
    pkts = handshake() + [hello(),
        (T + 0.08, ip(S, C, 103, 4321) / TCP(sport=443, dport=41000, flags="RA", seq=SS + 1, ack=CS + 1 + len(CH), window=16)),
    ]
    doc = run(make_pcap, analyze_doc, pkts)
    [v] = doc["verdicts"]
    assert (v["technique"], v["trigger"], v["target"]) == ("rst_injection", "sni", "whatsapp")
    assert v["domain"] == "g.whatsapp.net"
    assert "ttl_mismatch" in v["signals"]
    assert [e["frame"] for e in v["evidence"]] == [4, 5]
    assert "TTL 103 vs server's 52" in v["evidence"][1]["reason"]
    assert v["server"] == f"{S}:443"


def test_gfw_triplet_with_seq_jumps_and_server_data_after(make_pcap, analyze_doc) -> None:
    n = len(CH)
    pkts = handshake() + [hello()]
    for i, off in enumerate((0, 1460, 4380)):
        pkts.append((T + 0.08 + i * 0.0001, ip(S, C, 200 - 9 * i, 0) /
                     TCP(sport=443, dport=41000, flags="RA", seq=SS + 1 + off, ack=CS + 1 + n, window=1596 - 20 * i)))
    pkts.append((T + 0.11, ip(S, C, 52, 501) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"\x16\x03\x03\x00\x02\x02\x00")))
    doc = run(make_pcap, analyze_doc, pkts)
    [v] = doc["verdicts"]
    for s in ("ttl_mismatch", "data_after_rst", "seq_race", "rst_seq_jumps", "gfw_type2"):
        assert s in v["signals"], s
    assert v["confidence"] >= 0.9
    assert sorted(p["frame"] for p in v["packets"] if p["forged"]) == [5, 6, 7]


def test_server_side_vantage_client_keeps_talking_after_its_rst(make_pcap, analyze_doc) -> None:
    """Captured at the server: a RST claiming to be the client, then the client's ACK and FIN."""
    n = len(CH)
    pkts = [
        (T, ip(C, S, 50, 10) / TCP(sport=41000, dport=443, flags="S", seq=CS)),
        (T + 0.001, ip(S, C, 64, 500) / TCP(sport=443, dport=41000, flags="SA", seq=SS, ack=CS + 1)),
        (T + 0.05, ip(C, S, 50, 11) / TCP(sport=41000, dport=443, flags="A", seq=CS + 1, ack=SS + 1)),
        (T + 0.06, ip(C, S, 50, 12) / TCP(sport=41000, dport=443, flags="PA", seq=CS + 1, ack=SS + 1) / Raw(CH)),
        (T + 0.061, ip(C, S, 50, 777) / TCP(sport=41000, dport=443, flags="R", seq=CS + 1 + n)),
        (T + 0.2, ip(C, S, 50, 13) / TCP(sport=41000, dport=443, flags="A", seq=CS + 1 + n, ack=SS + 1)),
        (T + 0.3, ip(C, S, 50, 14) / TCP(sport=41000, dport=443, flags="FA", seq=CS + 1 + n, ack=SS + 1)),
    ]
    doc = run(make_pcap, analyze_doc, pkts)
    [v] = doc["verdicts"]
    assert v["technique"] == "rst_injection" and v["trigger"] == "sni"
    assert "acks_after_rst" in v["signals"]
    assert "claim to come from the client" in v["notes"][0]


# --- benign guards -------------------------------------------------------------------------

def test_lone_rst_from_the_same_stack_after_close_is_silent(make_pcap, analyze_doc) -> None:
    n = len(CH)
    pkts = handshake() + [hello(),
        (T + 0.1, ip(S, C, 52, 501) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"x" * 100)),
        (T + 0.2, ip(C, S, 64, 13) / TCP(sport=41000, dport=443, flags="FA", seq=CS + 1 + n, ack=SS + 101)),
        (T + 0.25, ip(S, C, 52, 502) / TCP(sport=443, dport=41000, flags="RA", seq=SS + 101, ack=CS + 2 + n, window=0)),
    ]
    assert run(make_pcap, analyze_doc, pkts)["verdicts"] == []


def test_so_linger_zero_abort_is_silent(make_pcap, analyze_doc) -> None:
    n = len(CH)
    pkts = handshake() + [hello(),
        (T + 0.1, ip(S, C, 52, 501) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"y" * 50)),
        (T + 0.11, ip(S, C, 52, 502) / TCP(sport=443, dport=41000, flags="RA", seq=SS + 51, ack=CS + 1 + n, window=0)),
        # the client did not know yet: its ACK crosses the RST (client is not the RST's sender)
        (T + 0.111, ip(C, S, 64, 13) / TCP(sport=41000, dport=443, flags="A", seq=CS + 1 + n, ack=SS + 51)),
        (T + 0.16, ip(C, S, 64, 14) / TCP(sport=41000, dport=443, flags="R", seq=CS + 1 + n)),
    ]
    assert run(make_pcap, analyze_doc, pkts)["verdicts"] == []


def test_rst_to_closed_port_is_silent(make_pcap, analyze_doc) -> None:
    pkts = [
        (T, ip(C, S, 64, 10) / TCP(sport=41000, dport=443, flags="S", seq=CS)),
        (T + 0.05, ip(S, C, 120, 0) / TCP(sport=443, dport=41000, flags="RA", seq=0, ack=CS + 1)),
    ]
    assert run(make_pcap, analyze_doc, pkts)["verdicts"] == []


def test_retransmissions_and_loss_are_silent(make_pcap, analyze_doc) -> None:
    n = len(CH)
    pkts = handshake() + [hello(), hello(T + 0.3), hello(T + 0.9),
        (T + 1.0, ip(S, C, 52, 501) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"z" * 200)),
        (T + 1.0, ip(S, C, 52, 502) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"z" * 200)),
        (T + 1.2, ip(C, S, 64, 13) / TCP(sport=41000, dport=443, flags="FA", seq=CS + 1 + n, ack=SS + 201)),
        (T + 1.25, ip(S, C, 52, 503) / TCP(sport=443, dport=41000, flags="FA", seq=SS + 201, ack=CS + 2 + n)),
        (T + 1.26, ip(C, S, 64, 14) / TCP(sport=41000, dport=443, flags="A", seq=CS + 2 + n, ack=SS + 202)),
    ]
    assert run(make_pcap, analyze_doc, pkts)["verdicts"] == []


def test_small_ttl_wobble_is_tolerated(make_pcap, analyze_doc) -> None:
    n = len(CH)
    pkts = handshake(52) + [hello(),
        (T + 0.1, ip(S, C, 51, 501) / TCP(sport=443, dport=41000, flags="PA", seq=SS + 1, ack=CS + 1 + n) / Raw(b"x" * 10)),
        (T + 0.2, ip(S, C, 53, 502) / TCP(sport=443, dport=41000, flags="R", seq=SS + 11)),
    ]
    assert run(make_pcap, analyze_doc, pkts)["verdicts"] == []


def test_public_gfw_capture_and_its_control(public, analyze_doc) -> None:
    doc = analyze_doc(public / "censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_archive.org.pcap")
    assert len(doc["verdicts"]) == 6
    assert {(v["technique"], v["trigger"], v["domain"]) for v in doc["verdicts"]} == {("rst_injection", "sni", "archive.org")}
    ctrl = analyze_doc(public / "censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_example.com.pcap")
    assert ctrl["verdicts"] == []


@pytest.mark.parametrize("name", [
    "the-tcpdump-group__tcpdump__tests__tcp_rst_data.pcap",
    "zeek__zeek__testing__btest__Traces__tcp__syn-then-rst.pcap",
    "zeek__zeek__testing__btest__Traces__tls__tls13-ech.pcap",
    "ntop__nDPI__tests__cfgs__default__pcap__pptp.pcap",
])
def test_public_benign_resets_stay_silent(public, analyze_doc, name: str) -> None:
    assert analyze_doc(public / name)["verdicts"] == []


def test_public_zeek_injected_rst_before_synack(public, analyze_doc) -> None:
    [v] = analyze_doc(public / "zeek__zeek__testing__btest__Traces__tcp__rst-inject-rae.pcap")["verdicts"]
    assert v["technique"] == "rst_injection"
    assert "reserved_bits" in v["signals"] or "ttl_mismatch" in v["signals"]


def test_untriggered_ttl_only_reset_is_low_confidence(make_pcap, analyze_doc) -> None:
    """Plain data on port 9000 (no SNI/Host), then a RST with another TTL and nothing after it:
    a load balancer does this too, so the verdict stays low and says why."""
    pkts = [
        (T, ip(C, S, 64, 10) / TCP(sport=41000, dport=9000, flags="S", seq=CS)),
        (T + 0.05, ip(S, C, 52, 500) / TCP(sport=9000, dport=41000, flags="SA", seq=SS, ack=CS + 1)),
        (T + 0.051, ip(C, S, 64, 11) / TCP(sport=41000, dport=9000, flags="A", seq=CS + 1, ack=SS + 1)),
        (T + 0.06, ip(C, S, 64, 12) / TCP(sport=41000, dport=9000, flags="PA", seq=CS + 1, ack=SS + 1) / Raw(b"hello")),
        (T + 0.08, ip(S, C, 52, 501) / TCP(sport=9000, dport=41000, flags="PA", seq=SS + 1, ack=CS + 6) / Raw(b"world")),
        (T + 60, ip(S, C, 90, 0) / TCP(sport=9000, dport=41000, flags="R", seq=SS + 6)),
    ]
    [v] = run(make_pcap, analyze_doc, pkts)["verdicts"]
    assert v["trigger"] == "unknown" and v["confidence"] <= 0.35
    assert any("load balancer" in n for n in v["notes"])
