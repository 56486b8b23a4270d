"""DNS injection detector: positive cases, benign guards, and the two real captures."""

from __future__ import annotations

import struct
from importlib import resources
from typing import Any, Iterable, Optional

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP

from analyzer.config import Thresholds
from analyzer.detect.dns_injection import (
    SIGNALS,
    WEIGHTS,
    default_pool,
    detect_dns,
    is_bogon,
    is_internal_name,
    parse_pool,
)
from analyzer.model import Finding, Target, Technique, Trigger
from analyzer.track.dns import DnsTracker

LINKTYPE_RAW = 101
TH = Thresholds()
from .builders import CAPTURES, CLIENT, RESOLVER, decode, feed_capture, ip4, query, response


def run(layers: Iterable[tuple[Any, float]], tracker: Optional[DnsTracker] = None) -> list[Finding]:
    t = tracker if tracker is not None else DnsTracker()
    for i, (layer, ts) in enumerate(layers, 1):
        t.on_packet(decode(layer, i, ts))
    out: list[Finding] = []
    for txn in sorted(t.flush(), key=lambda x: x.first_ts):
        out += detect_dns(txn, t.baseline_for(txn.server), TH)
    return out


def history(
    n: int = 6, ttl: int = 52, ipid0: int = 100, t0: float = 0.0
) -> list[tuple[Any, float]]:
    """Earlier normal transactions with the resolver: TTL 52, DF, sequential IP-IDs."""
    out = []
    for i in range(n):
        name = f"ok{i}.example.org"
        out.append((query(name, txid=0x2000 + i, sport=41000 + i), t0 + i))
        out.append(
            (
                response(
                    name,
                    [f"93.184.216.{i + 1}"],
                    txid=0x2000 + i,
                    sport=41000 + i,
                    ttl=ttl,
                    ipid=ipid0 + i,
                ),
                t0 + i + 0.05,
            )
        )
    return out


# --- positives --------------------------------------------------------------------------------


def test_gfw_race_forged_first_then_genuine() -> None:
    findings = run(
        [
            (query("twitter.com"), 10.0),
            (response("twitter.com", ["8.7.198.45"], ttl=64, ipid=31337, df=False), 10.02),
            (response("twitter.com", ["104.244.42.1"], ttl=52, ipid=8), 10.20),
        ]
    )
    (f,) = findings
    assert f.detector == "dns_injection"
    assert f.technique == Technique.DNS_INJECTION and f.trigger == Trigger.DNS_NAME
    assert f.target == Target.OTHER and f.proto == "udp"
    assert f.client == "10.0.0.2:40000" and f.server == "8.8.8.8:53"
    assert f.domain == "twitter.com" and f.link_key == "dns:10.0.0.2:twitter.com"
    assert f.flow_id is None
    assert f.signals == ("multiple_answers", "forged_address_pool", "ttl_mismatch", "df_mismatch")
    assert [e.frame for e in f.evidence] == [1, 2, 3]
    forged = f.evidence[1].reason
    assert "8.7.198.45 (known forged pool)" in forged and "TTL 64 vs resolver's 52" in forged
    assert "before the genuine answer (frame 3)" in forged
    assert f.evidence[2].reason.startswith("genuine: answer 104.244.42.1")
    assert [(p.frame, p.dir, p.forged) for p in f.ladder] == [
        (1, "c2s", False),
        (2, "s2c", True),
        (3, "s2c", False),
    ]
    assert f.ladder[0].summary == "DNS A? twitter.com"
    assert f.ladder[1].summary == "DNS A 8.7.198.45 ttl=60" and f.ladder[1].ttl == 64
    assert f.ladder[1].ipid == 31337
    assert f.strength == pytest.approx(1 - 0.5 * 0.4 * 0.7 * 0.9)  # noisy-OR of the four
    assert (f.first_ts, f.last_ts) == (10.0, 10.2)


def test_multiple_answers_without_pool_uses_ttl() -> None:
    (f,) = run(
        [
            (query("blocked.example.net"), 1.0),
            (response("blocked.example.net", ["5.9.9.9"], ttl=110), 1.01),
            (response("blocked.example.net", ["203.0.114.9"], ttl=52), 1.3),
        ]
    )
    assert f.signals == ("multiple_answers", "ttl_mismatch")
    assert f.strength == pytest.approx(1 - 0.5 * 0.7)
    assert [p.forged for p in f.ladder] == [False, True, False]


def test_baseline_ipid_and_flags_and_genuine_first() -> None:
    # The genuine answer arrives FIRST here; the baseline still tells which one is forged.
    layers = history() + [
        (query("www.dropbox.com"), 20.0),
        (response("www.dropbox.com", ["162.125.1.1"], ttl=52, ipid=106), 20.01),
        (response("www.dropbox.com", ["1.2.3.4"], ttl=100, ipid=40000, aa=1), 20.05),
    ]
    findings = run(layers)
    (f,) = findings
    assert set(f.signals) == {"multiple_answers", "ttl_mismatch", "ipid_mismatch", "flags_mismatch"}
    forged = [p.frame for p in f.ladder if p.forged]
    assert forged == [15]  # the second, off-baseline response
    reason = next(e.reason for e in f.evidence if e.frame == 15)
    assert "IP-ID 40000 out of the resolver's sequence" in reason
    assert "flags [aa rd ra] vs resolver's [rd ra]" in reason


def test_single_response_in_forged_pool() -> None:
    (f,) = run(
        [(query("www.youtube.com"), 1.0), (response("www.youtube.com", ["243.185.187.39"]), 1.01)]
    )
    assert "forged_address_pool" in f.signals and "multiple_answers" not in f.signals
    assert "bogon_answer" in f.signals  # 240/4 is also reserved space
    assert f.strength >= 0.6


def test_company_range_scoped_by_name() -> None:
    (f,) = run(
        [(query("www.google.com"), 1.0), (response("www.google.com", ["157.240.12.35"]), 1.01)]
    )
    assert f.signals == ("forged_address_pool",)
    assert (
        run(
            [
                (query("www.facebook.com"), 1.0),
                (response("www.facebook.com", ["157.240.12.35"]), 1.01),
            ]
        )
        == []
    )
    assert (
        run(
            [
                (query("facebook.example"), 1.0),
                (
                    response("facebook.example", ["157.240.12.35"], cname="star.c10r.facebook.com"),
                    1.01,
                ),
            ]
        )
        == []
    )


def test_teredo_aaaa() -> None:
    (f,) = run(
        [
            (query("www.youtube.com", qtype="AAAA"), 1.0),
            (response("www.youtube.com", ["2001::1f0d:4a5b"], rtype="AAAA", qtype="AAAA"), 1.01),
        ]
    )
    assert f.signals == ("forged_address_pool",)
    assert "(Teredo 2001::/32)" in f.evidence[1].reason
    assert (
        run(
            [
                (query("teredo.ipv6.microsoft.com", qtype="AAAA"), 1.0),
                (
                    response("teredo.ipv6.microsoft.com", ["2001::1"], rtype="AAAA", qtype="AAAA"),
                    1.01,
                ),
            ]
        )
        == []
    )


def test_bogon_alone_is_weak_and_says_so() -> None:
    (f,) = run(
        [(query("www.example.com"), 1.0), (response("www.example.com", ["10.10.34.35"]), 1.01)]
    )
    assert f.signals == ("bogon_answer",)
    assert f.strength <= 0.2
    assert any("not proof" in n for n in f.notes)


def test_malformed_forged_response() -> None:
    (f,) = run(
        [
            (query("www.bbc.com"), 1.0),
            (response("www.bbc.com", ["5.6.7.8"], extra=b"\x07\x07\x07"), 1.01),
            (response("www.bbc.com", ["151.101.0.81"]), 1.2),
        ]
    )
    assert f.signals == ("multiple_answers", "malformed_answer")
    assert "malformed (trailing_bytes)" in f.evidence[1].reason


def test_answer_from_non_resolver_with_icmp() -> None:
    host = "203.208.50.1"
    q = query("www.google.com", dst=host)
    err = IP(src=host, dst=CLIENT, ttl=50) / ICMP(type=3, code=3) / bytes(q)[:28]
    (f,) = run(
        [
            (q, 1.0),
            (response("www.google.com", ["66.6.6.6"], src=host, ttl=90), 1.01),
            (err, 1.05),
        ]
    )
    assert f.signals == ("answer_from_non_resolver",)
    assert f.server == "203.208.50.1:53"
    assert [e.frame for e in f.evidence] == [1, 2, 3]
    assert "ICMP destination unreachable (port)" in f.evidence[2].reason
    assert f.strength == pytest.approx(0.6)
    assert [p.forged for p in f.ladder] == [False, True, False]


def test_host_unreachable_from_router_with_answer() -> None:
    host = "203.208.50.2"
    q = query("www.google.com", dst=host)
    err = IP(src="10.0.0.1", dst=CLIENT, ttl=254) / ICMP(type=3, code=1) / bytes(q)[:28]
    (f,) = run([(q, 1.0), (response("www.google.com", ["66.6.6.7"], src=host), 1.01), (err, 1.5)])
    assert f.signals == ("answer_from_non_resolver",)
    assert "(code 1) from 10.0.0.1" in f.evidence[2].reason


def test_restarted_server_is_not_a_non_resolver() -> None:
    # Port unreachable for the first transmission, the retransmission is answered.
    host = "192.0.2.53"
    q = query("a.example.com", dst=host)
    err = IP(src=host, dst=CLIENT) / ICMP(type=3, code=3) / bytes(q)[:28]
    assert (
        run(
            [
                (q, 1.0),
                (err, 1.01),
                (q, 2.0),
                (response("a.example.com", ["93.184.216.34"], src=host), 2.01),
            ]
        )
        == []
    )


def test_port_unreachable_from_someone_else_is_ignored() -> None:
    host = "192.0.2.54"
    q = query("b.example.com", dst=host)
    err = IP(src="192.0.2.99", dst=CLIENT) / ICMP(type=3, code=3) / bytes(q)[:28]
    assert (
        run([(q, 1.0), (response("b.example.com", ["93.184.216.35"], src=host), 1.01), (err, 1.02)])
        == []
    )


def test_tcp_forged_pool_answer() -> None:
    def framed(dns: Any) -> bytes:
        raw = bytes(dns)
        return struct.pack("!H", len(raw)) + raw

    q = framed(DNS(id=7, rd=1, qd=[DNSQR(qname="www.twitter.com")]))
    r = framed(
        DNS(
            id=7,
            qr=1,
            rd=1,
            ra=1,
            qd=[DNSQR(qname="www.twitter.com")],
            an=[DNSRR(rrname="www.twitter.com", rdata="93.46.8.89")],
        )
    )
    layers = [
        (IP(src=CLIENT, dst=RESOLVER) / TCP(sport=45000, dport=53, flags="S", seq=99), 1.0),
        (
            IP(src=RESOLVER, dst=CLIENT) / TCP(sport=53, dport=45000, flags="SA", seq=499, ack=100),
            1.01,
        ),
        (
            IP(src=CLIENT, dst=RESOLVER)
            / TCP(sport=45000, dport=53, flags="PA", seq=100, ack=500)
            / q,
            1.02,
        ),
        (
            IP(src=RESOLVER, dst=CLIENT)
            / TCP(sport=53, dport=45000, flags="PA", seq=500, ack=100 + len(q))
            / r[:7],
            1.03,
        ),
        (
            IP(src=RESOLVER, dst=CLIENT)
            / TCP(sport=53, dport=45000, flags="PA", seq=507, ack=100 + len(q))
            / r[7:],
            1.04,
        ),
    ]
    (f,) = run(layers)
    assert f.proto == "tcp" and f.signals == ("forged_address_pool",)
    assert f.client == "10.0.0.2:45000" and f.server == "8.8.8.8:53"
    assert [e.frame for e in f.evidence] == [3, 5]


def test_header_mismatches_on_lone_response_are_capped() -> None:
    layers = history() + [
        (query("news.example.org"), 20.0),
        (response("news.example.org", ["198.51.99.1"], ttl=120, ipid=54321, df=False), 20.01),
    ]
    (f,) = run(layers)
    assert {"ttl_mismatch", "df_mismatch", "ipid_mismatch"} <= set(f.signals)
    assert f.strength <= 0.4
    assert any("route or anycast" in n for n in f.notes)


# --- benign guards ----------------------------------------------------------------------------


def test_cdn_rotation_two_resolvers() -> None:
    assert (
        run(
            [
                (query("www.cdn.example", txid=1, sport=40000), 1.0),
                (query("www.cdn.example", txid=2, sport=40001, dst="1.1.1.1"), 1.0),
                (
                    response(
                        "www.cdn.example", ["23.1.1.1", "23.1.1.2"], txid=1, sport=40000, ttl=52
                    ),
                    1.02,
                ),
                (
                    response(
                        "www.cdn.example",
                        ["104.16.0.9"],
                        txid=2,
                        sport=40001,
                        src="1.1.1.1",
                        ttl=58,
                    ),
                    1.03,
                ),
            ]
        )
        == []
    )


def test_same_query_to_two_resolvers() -> None:
    # Same txid and source port to two resolvers (Windows does this); different TTLs and order.
    assert (
        run(
            [
                (query("kankan.example.com"), 1.0),
                (query("kankan.example.com", dst="168.95.1.1"), 2.0),
                (
                    response(
                        "kankan.example.com",
                        ["222.73.254.167", "222.73.254.113"],
                        src="168.95.1.1",
                        ttl=248,
                    ),
                    2.01,
                ),
                (
                    response("kankan.example.com", ["222.73.254.113", "222.73.254.167"], ttl=48),
                    2.05,
                ),
            ]
        )
        == []
    )


def test_nxdomain_alone() -> None:
    assert (
        run([(query("nope.example.com"), 1.0), (response("nope.example.com", [], rcode=3), 1.02)])
        == []
    )


def test_retransmission_answered_twice_identically() -> None:
    assert (
        run(
            [
                (query("a.example.com"), 1.0),
                (query("a.example.com"), 2.0),
                (response("a.example.com", ["192.0.43.10"], ipid=10), 2.01),
                (response("a.example.com", ["192.0.43.10"], ipid=11), 2.02),
            ]
        )
        == []
    )


def test_byte_identical_duplicates() -> None:
    r = response("www.cmu.edu", ["128.2.10.163"], ttl=64, ipid=0x1623)
    assert run([(query("www.cmu.edu"), 1.0), (r, 1.01), (r, 1.01)]) == []


def test_single_normal_answer() -> None:
    assert (
        run([(query("g.whatsapp.net"), 1.0), (response("g.whatsapp.net", ["157.240.1.53"]), 1.03)])
        == []
    )


def test_single_normal_answer_against_baseline() -> None:
    assert (
        run(
            history()
            + [
                (query("x.example.org"), 20.0),
                (response("x.example.org", ["93.184.216.99"], ipid=106), 20.02),
            ]
        )
        == []
    )


def test_record_order_only() -> None:
    assert (
        run(
            [
                (query("multi.example.com"), 1.0),
                (query("multi.example.com"), 2.0),
                (response("multi.example.com", ["1.1.1.1", "2.2.2.2", "3.3.3.3"]), 2.01),
                (response("multi.example.com", ["3.3.3.3", "1.1.1.1", "2.2.2.2"]), 2.02),
            ]
        )
        == []
    )


def test_private_answers_for_internal_names() -> None:
    for name in (
        "printer.local",
        "nas.home.arpa",
        "db.corp.internal",
        "router",
        "gw.lan",
        "4.3.2.10.in-addr.arpa",
    ):
        assert run([(query(name), 1.0), (response(name, ["192.168.1.5"]), 1.01)]) == [], name


def test_rotation_between_retransmissions_overlapping() -> None:
    assert (
        run(
            [
                (query("rr.example.com"), 1.0),
                (query("rr.example.com"), 2.0),
                (response("rr.example.com", ["1.1.1.1", "2.2.2.2"]), 2.01),
                (response("rr.example.com", ["2.2.2.2", "3.3.3.3"]), 2.02),
            ]
        )
        == []
    )


def test_servfail_then_answer() -> None:
    assert (
        run(
            [
                (query("slow.example.com"), 1.0),
                (response("slow.example.com", [], rcode=2), 1.5),
                (query("slow.example.com"), 2.0),
                (response("slow.example.com", ["5.5.5.5"]), 2.1),
            ]
        )
        == []
    )


def test_truncated_then_full() -> None:
    assert (
        run(
            [
                (query("big.example.com"), 1.0),
                (response("big.example.com", [], tc=1), 1.01),
                (response("big.example.com", ["6.6.6.6"]), 1.02),
            ]
        )
        == []
    )


def test_no_response_no_finding() -> None:
    assert run([(query("silent.example.com"), 1.0)]) == []


# --- vocabulary, pool, determinism ----------------------------------------------------------


def test_signals_documented_and_weighted() -> None:
    assert set(SIGNALS) == set(WEIGHTS)
    for s in SIGNALS:
        assert s.islower() and " " not in s and SIGNALS[s]


def test_pool_file_contents() -> None:
    text = resources.files("analyzer").joinpath("data/gfw_dns_forged_ips.txt").read_text("utf-8")
    assert "Compiled 2026-" in text and "GFWatch" in text and "Farnan" in text
    pool = default_pool()
    for addr in (
        "8.7.198.45",
        "37.61.54.158",
        "46.82.174.68",
        "59.24.3.173",
        "78.16.49.15",
        "93.46.8.89",
        "159.106.121.75",
        "203.98.7.65",
        "243.185.187.39",
    ):
        assert pool.match(ip4(addr), ("anything.example",)) is not None, addr
    assert pool.match(ip4("8.8.8.8"), ("dns.google",)) is None
    assert pool.match(ip4("162.125.1.1"), ("www.dropbox.com",)) is None
    assert pool.match(ip4("162.125.1.1"), ("www.google.com",)) is not None
    custom = parse_pool("# c\n1.2.3.0/24 owner=a.example\n\n5.5.5.5\n")
    assert len(custom.entries) == 2 and custom.entries[0].owners == ("a.example",)


def test_bogon_and_internal_helpers() -> None:
    assert is_bogon(ip4("10.1.2.3")) and is_bogon(ip4("127.0.0.1")) and is_bogon(ip4("0.0.0.0"))
    assert is_bogon(ip4("224.0.0.1")) and is_bogon(ip4("198.18.0.5"))
    assert not is_bogon(ip4("8.8.8.8"))
    assert is_bogon(bytes(15) + b"\x01")  # ::1
    assert not is_bogon(bytes.fromhex("20010000" + "00" * 12))  # Teredo is not a bogon
    assert is_internal_name("router") and is_internal_name("x.home.arpa")
    assert not is_internal_name("www.example.com") and not is_internal_name("notlocal.com")


def test_deterministic() -> None:
    layers = [
        (query("twitter.com"), 10.0),
        (response("twitter.com", ["8.7.198.45"], ttl=64), 10.02),
        (response("twitter.com", ["104.244.42.1"], ttl=52), 10.20),
    ]
    assert run(layers) == run(layers)


# --- real captures ----------------------------------------------------------------------------


def capture_findings(name: str) -> tuple[list[Finding], int]:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"{name} not available")
    t = DnsTracker()
    txns = feed_capture(path, t)
    out: list[Finding] = []
    for txn in txns:
        out += detect_dns(txn, t.baseline_for(txn.server), TH)
    return out, len(txns)


@pytest.mark.public
def test_zeek_two_identical_responses_no_finding() -> None:
    findings, txns = capture_findings("zeek__zeek__testing__btest__Traces__dns-two-responses.pcap")
    assert txns == 1 and findings == []


@pytest.mark.public
def test_1kxun_two_resolvers_no_finding() -> None:
    findings, txns = capture_findings("ntop__nDPI__tests__cfgs__default__pcap__1kxun.pcap")
    assert txns >= 6 and findings == []


def test_brief_weak_findings_keep_what_the_pipeline_counts() -> None:
    # the pipeline asks for weak findings without evidence/ladder (it only counts them):
    # detector, technique, signals and strength must be those of the full finding
    layers = [(query("www.example.com"), 1.0), (response("www.example.com", ["10.10.34.35"]), 1.01)]
    t = DnsTracker()
    for i, (layer, ts) in enumerate(layers, 1):
        t.on_packet(decode(layer, i, ts))
    (txn,) = t.flush()
    (full,) = detect_dns(txn, t.baseline_for(txn.server), TH)
    (brief,) = detect_dns(txn, t.baseline_for(txn.server), TH, brief_below=0.3)
    assert full.evidence and full.ladder and full.notes
    assert brief.evidence == () and brief.ladder == () and brief.notes == ()
    for attr in ("detector", "technique", "trigger", "signals", "strength", "client", "server",
                 "domain", "proto"):
        assert getattr(brief, attr) == getattr(full, attr)
    # at or above the bar, findings are complete
    (same,) = detect_dns(txn, t.baseline_for(txn.server), TH, brief_below=full.strength)
    assert same == full


def test_baseline_helpers_equal_their_definitions() -> None:
    """The IP-ID behaviour and the usual value, written as loops over integers for speed,
    against their one-line definitions on random inputs."""
    import random

    from analyzer.detect.dns_injection import (
        IPID_MOD,
        MIN_BASELINE,
        SEQUENTIAL_SHARE,
        _in_order,
        _ipid_behaviour,
        _mode,
    )

    def mode(counts: dict[int, int]) -> Optional[int]:
        best = [(c, -v) for v, c in counts.items() if c > 0]
        return -max(best)[1] if best else None

    def behaviour(values: list[int], step: int) -> str:
        if len(values) < MIN_BASELINE:
            return "unknown"
        if not any(values):
            return "zero"
        seq = sum(0 < (b - a) % IPID_MOD <= step for a, b in zip(values, values[1:]))
        return "sequential" if seq >= SEQUENTIAL_SHARE * (len(values) - 1) else "random"

    rnd = random.Random(3)
    for _ in range(20000):
        counts = {rnd.randrange(-3, 8): rnd.randrange(0, 4) for _ in range(rnd.randrange(6))}
        assert _mode(counts) == mode(counts), counts
        start = rnd.randrange(IPID_MOD)
        n = rnd.randrange(8)
        values = rnd.choice([
            [0] * n,
            [(start + i * rnd.randrange(1, 4)) % IPID_MOD for i in range(n)],
            [rnd.randrange(IPID_MOD) for _ in range(n)],
            [rnd.choice((0, start)) for _ in range(n)],
        ])
        samples = [(rnd.randrange(2), rnd.randrange(50), v) for v in values]
        assert _ipid_behaviour(samples, TH.ipid_seq_step) == behaviour(values, TH.ipid_seq_step)
        assert _in_order(samples) == (samples == sorted(samples) or
                                      [s[:2] for s in samples] == sorted(s[:2] for s in samples))
