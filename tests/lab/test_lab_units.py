"""Fast checks of the lab's own pieces (no root, no namespaces): packet builders and
parsers, the QUIC Initial encryptor, the censor's decisions, the truth comparison, and the
curated captures in captures/ against their ground truth."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from .censor import Censor, CensorConfig, RstSpec, Rule
from .expect import check
from .pkt import (
    TCP_ACK,
    TCP_PSH,
    TCP_RST,
    TCP_SYN,
    build_dns_a_answer,
    build_tcp,
    build_udp,
    checksum,
    http_host,
    parse_dns_query,
    parse_ipv4,
    tls_client_hello_sni,
)
from .quic import build_client_hello, build_initial, initial_keys, initial_sni
from .topology import REPO_ROOT

C, S = "10.99.1.2", "157.240.1.53"
CAPTURES = REPO_ROOT / "captures"


def _tls_client_hello(sni: str) -> bytes:
    hs = build_client_hello(sni)  # TLS 1.3 ClientHello handshake message
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


def test_rfc9001_initial_keys() -> None:
    key, iv, hp = initial_keys(bytes.fromhex("8394c8f03e515708"))
    assert key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert hp.hex() == "9f50449e04a0e810283a1e9933adedd2"


def test_quic_initial_roundtrip() -> None:
    d = build_initial("g.whatsapp.net")
    assert len(d) == 1200
    info = initial_sni(d)
    assert info is not None and info.sni == "g.whatsapp.net" and info.alpn == ["h3"]
    assert initial_sni(b"\xc0" + d[1:40]) is None


def test_builders_and_parsers() -> None:
    pkt = build_tcp(C, S, 40000, 443, 1000, 2000, TCP_PSH | TCP_ACK, 500,
                    _tls_client_hello("g.whatsapp.net"), ttl=64, ipid=7)
    ip = parse_ipv4(pkt)
    assert ip and ip.is_tcp and ip.ttl == 64 and ip.ipid == 7 and ip.dport == 443
    assert checksum(pkt[:20]) == 0
    ch = tls_client_hello_sni(ip.data)
    assert ch is not None and ch.sni == "g.whatsapp.net"
    assert http_host(b"GET / HTTP/1.1\r\nHost: www.whatsapp.com:80\r\n\r\n") == "www.whatsapp.com"
    q = build_udp(C, "10.99.3.53", 5353, 53, bytes.fromhex("abcd01000001000000000000")
                  + b"\x01g\x08whatsapp\x03net\x00\x00\x01\x00\x01")
    qi = parse_ipv4(q)
    assert qi is not None
    dq = parse_dns_query(qi.data)
    assert dq and dq.qname == "g.whatsapp.net" and dq.txid == 0xABCD
    ans = build_dns_a_answer(dq, ["8.7.198.45"])
    assert ans[:2] == b"\xab\xcd" and ans.endswith(bytes([8, 7, 198, 45]))


def _handshake(c: Censor, sport: int = 40000) -> None:
    for p in (build_tcp(C, S, sport, 443, 100, 0, TCP_SYN),
              build_tcp(S, C, 443, sport, 5000, 101, TCP_SYN | TCP_ACK),
              build_tcp(C, S, sport, 443, 101, 5001, TCP_ACK)):
        ip = parse_ipv4(p)
        assert ip is not None
        assert c.decide(ip)[0] == "accept"


def test_censor_rst_injection_and_residual() -> None:
    sent: list[bytes] = []
    now = [100.0]
    cfg = CensorConfig(rules=[Rule(name="r", match="sni", action="rst",
                                   pattern=r"(.+\.)?whatsapp\.net", ports=[443],
                                   rst=[RstSpec(to="client", flags="RA", seq_offset=1460, ttl=99),
                                        RstSpec(to="server", flags="R", ttl=98)],
                                   residual_seconds=20)])
    c = Censor(cfg, send=lambda p, d: sent.append(p), clock=lambda: now[0])
    _handshake(c)
    hello = _tls_client_hello("g.whatsapp.net")
    ip = parse_ipv4(build_tcp(C, S, 40000, 443, 101, 5001, TCP_PSH | TCP_ACK, 500, hello))
    assert ip is not None
    verdict, _hold, post = c.decide(ip)
    assert verdict == "accept"  # on-path: the trigger passes
    for cb in post:
        cb()
    to_client, to_server = (parse_ipv4(p) for p in sent)
    assert to_client and to_client.src == S and to_client.flags == TCP_RST | TCP_ACK
    assert to_client.seq == 5001 + 1460 and to_client.ack == 101 + len(hello)
    assert to_client.ttl == 99
    assert to_server and to_server.dst == S and to_server.seq == 101 + len(hello)
    # residual: a new SYN to the same server:port within the window gets a RST/ACK
    now[0] += 5
    syn = parse_ipv4(build_tcp(C, S, 40001, 443, 7000, 0, TCP_SYN))
    assert syn is not None
    verdict, _h, post = c.decide(syn)
    assert verdict == "drop" and post
    post[0]()
    rst = parse_ipv4(sent[-1])
    assert rst and rst.flags == TCP_RST | TCP_ACK and rst.ack == 7001
    # another port is not affected, and the window expires
    other = parse_ipv4(build_tcp(C, S, 40002, 5222, 9000, 0, TCP_SYN))
    assert other is not None and c.decide(other)[0] == "accept"
    now[0] += 30
    syn2 = parse_ipv4(build_tcp(C, S, 40003, 443, 8000, 0, TCP_SYN))
    assert syn2 is not None and c.decide(syn2)[0] == "accept"


def test_censor_vpn_fingerprints_and_loss_determinism() -> None:
    cfg = CensorConfig(rules=[Rule(name="wg", match="wireguard", action="drop",
                                   drop_flow_seconds=60),
                              Rule(name="ovpn", match="openvpn", action="drop")])
    c = Censor(cfg)
    wg = parse_ipv4(build_udp(C, "198.51.100.20", 5000, 51820, b"\x01\x00\x00\x00" + b"\x11" * 144))
    ov = parse_ipv4(build_udp(C, "198.51.100.20", 5001, 1194, b"\x38" + b"\x22" * 13))
    other = parse_ipv4(build_udp(C, "198.51.100.20", 5002, 1194, b"\x40" + b"\x22" * 13))
    assert wg and ov and other
    assert c.decide(wg)[0] == "drop" and c.decide(ov)[0] == "drop"
    assert c.decide(other)[0] == "accept"
    runs = []
    for _ in range(2):
        lc = Censor(CensorConfig(loss=0.2, seed=12))
        runs.append([lc.decide(other)[0] for _ in range(200)])
    assert runs[0] == runs[1] and 20 < runs[0].count("drop") < 60


def test_expect_check() -> None:
    truth = {"scenario": "x", "expected_verdicts": [
        {"technique": "rst_injection", "trigger": "sni", "target": "whatsapp", "proto": "tcp",
         "client": C, "server": f"{S}:443", "domain": "g.whatsapp.net", "match_domain": True}]}
    good = {"technique": "rst_injection", "trigger": "sni", "target": "whatsapp",
            "client": f"{C}:40000", "server": f"{S}:443", "domain": "G.whatsapp.net."}
    assert check({"verdicts": [good]}, truth) == []
    assert check({"verdicts": []}, truth)
    assert check({"verdicts": [good, dict(good, technique="drop")]}, truth)  # wrong technique
    assert check({"verdicts": [good, dict(good, client=f"{C}:40001")]}, truth) == []
    assert check({"verdicts": [good, dict(good, server="157.240.2.53:443")]}, truth)
    assert check({"verdicts": [dict(good, trigger="ip")]}, truth)
    assert check({"verdicts": [dict(good, domain="x.whatsapp.net")]}, truth)
    assert check({"verdicts": []}, {"scenario": "b", "expected_verdicts": []}) == []
    assert check({"verdicts": [good]}, {"scenario": "b", "expected_verdicts": []})


TRUTHS = sorted(CAPTURES.glob("*.truth.json"))


@pytest.mark.parametrize("truth_path", TRUTHS, ids=[p.name[:-11] for p in TRUTHS])
def test_curated_capture_matches_truth(truth_path: Path) -> None:
    from .sanity import check_pcap
    truth = json.loads(truth_path.read_text())
    pcap = CAPTURES / truth["pcap"]
    assert pcap.exists() and pcap.stat().st_size < 200 * 1024
    assert not check_pcap(truth["scenario"], pcap)


def test_slow_link_check_tolerates_a_retransmission_but_not_an_unshaped_download() -> None:
    """The benign-slow-link self-check: CI once saw the control take 0.63 s against 0.30 s
    (a retransmission timeout); that is still one shaped link.  A download faster than
    the link's rate is not."""
    from dataclasses import replace

    from .sanity import OTHER_IP, WA_IP1, c_slow, read

    ps = read(CAPTURES / "benign-slow-link.pcap")
    probs: list[str] = []
    c_slow(ps, probs)
    assert probs == []

    def stretch(server: str, factor: float) -> list:
        flow = [p for p in ps if p.src == server and p.proto == 6 and p.sport == 443]
        t0 = flow[0].ts
        return [replace(p, ts=t0 + (p.ts - t0) * factor) if p.src == server else p
                for p in ps]

    probs = []
    c_slow(stretch(OTHER_IP, 2.1), probs)
    assert probs == []
    probs = []
    c_slow(stretch(WA_IP1, 0.5), probs)
    assert len(probs) == 1 and "WhatsApp download was not shaped" in probs[0], probs
    probs = []
    c_slow(stretch(OTHER_IP, 6.0), probs)
    assert len(probs) == 1 and "about as slow" in probs[0], probs


def test_censor_dropped_counts_the_packets_dropped_on_the_rules_flows(tmp_path: Path) -> None:
    """The VPN drop scenarios stop their client once the censor's log shows two dropped
    handshakes (instead of after a fixed time): the count follows the log the censor writes,
    and only the VPN server's flow counts (the OpenVPN fingerprint also fits a DNS query
    whose transaction id starts with 0x38)."""
    from .scenarios import Bench

    vpn, log = "198.51.100.20", tmp_path / "censor.jsonl"
    reset = b"\x38" + b"\x22" * 13
    dns = (bytes.fromhex("38cd01000001000000000000")  # a query, transaction id 0x38cd
           + b"\x03vpn\x07example\x03net\x00\x00\x01\x00\x01")
    packets = [("10.99.3.53", 5353, 53, dns), (vpn, 5000, 1194, reset), (vpn, 5000, 1194, reset),
               (vpn, 5001, 1194, b"\x40" + b"\x22" * 13)]
    b = Bench(None, tmp_path, tmp_path / "x.pcap")  # type: ignore[arg-type]  # no lab needed
    assert b.censor_dropped("ovpn") == 0  # no censor started yet
    for ports, everywhere, at_vpn in (([], 3, 2), ([1194], 2, 2)):
        cfg = CensorConfig(rules=[Rule(name="ovpn", match="openvpn", action="drop",
                                       ports=ports, drop_flow_seconds=60)], log_path=str(log))
        c = Censor(cfg)
        verdicts = []
        for dst, sport, dport, payload in packets:
            ip = parse_ipv4(build_udp(C, dst, sport, dport, payload))
            assert ip is not None
            verdicts.append(c.decide(ip)[0])
        assert verdicts == ["drop" if not ports else "accept", "drop", "drop", "accept"]
        log.write_text("".join(json.dumps(e) + "\n" for e in c.events) + '{"ts": 1, "ev')
        b.censor_cfg = cfg
        assert b.censor_dropped("ovpn") == everywhere
        assert b.censor_dropped("ovpn", f"{vpn}:1194") == at_vpn  # the reset and its retry
        assert b.censor_dropped("wireguard") == 0
