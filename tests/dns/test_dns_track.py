"""DNS transaction tracker on packets built with scapy (UDP, TCP with length prefix, ICMP)."""

from __future__ import annotations

import struct
from typing import Any, Iterator

import pytest
from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from analyzer.config import Thresholds
from analyzer.decode.packet import (
    IPPROTO_ICMP,
)
from analyzer.track.dns import DnsTracker

LINKTYPE_RAW = 101
from .builders import CAPTURES, CLIENT, RESOLVER, decode, feed_capture, ip4
from .builders import query as _query
from .builders import response as _response


def query(qname: str = "g.whatsapp.net", txid: int = 0x1111, qtype: str = "A", sport: int = 40000,
          dst: str = RESOLVER) -> Any:
    return _query(qname, txid=txid, sport=sport, dst=dst, qtype=qtype)


def response(addrs: list[str], qname: str = "g.whatsapp.net", **kw: Any) -> Any:
    return _response(qname, addrs, **kw)


def test_query_and_response() -> None:
    t = DnsTracker()
    t.on_packet(decode(query(), 1, 1.0))
    t.on_packet(decode(response(["157.240.1.53"]), 2, 1.05))
    assert t.pending == 1
    (txn,) = t.flush()
    assert txn.client == ip4(CLIENT) and txn.client_port == 40000
    assert txn.server == ip4(RESOLVER) and txn.server_port == 53
    assert txn.transport == "udp" and txn.txid == 0x1111
    assert txn.qname == "g.whatsapp.net" and txn.qtype == 1
    assert txn.query is not None and txn.query.frame == 1
    (r,) = txn.responses
    assert (r.frame, r.ts, r.ttl, r.ipid, r.df) == (2, 1.05, 52, 7, True)
    assert r.rd and r.ra and not r.aa and not r.tc and r.rcode == 0
    assert [a.value for a in r.answers] == ["157.240.1.53"]
    assert r.anomalies == () and len(r.fingerprint) == 16
    assert t.names_for(ip4("157.240.1.53")) == ("g.whatsapp.net",)
    assert t.transactions == 1


def test_retransmissions_and_duplicates_are_all_kept() -> None:
    t = DnsTracker()
    t.on_packet(decode(query(), 1, 1.0))
    t.on_packet(decode(query(), 2, 2.0))
    t.on_packet(decode(response(["1.1.1.1"]), 3, 2.1))
    t.on_packet(decode(response(["1.1.1.1"]), 4, 2.1))
    (txn,) = t.flush()
    assert [q.frame for q in txn.queries] == [1, 2]
    assert [r.frame for r in txn.responses] == [3, 4]
    assert txn.responses[0].fingerprint == txn.responses[1].fingerprint


def test_response_without_query_and_case_insensitive_match() -> None:
    t = DnsTracker()
    t.on_packet(decode(response(["1.1.1.1"], qname="late.example"), 1, 1.0))
    t.on_packet(decode(query(qname="WwW.ExAmple.COM"), 2, 1.0))
    t.on_packet(decode(response(["2.2.2.2"], qname="www.example.com"), 3, 1.1))
    txns = {x.qname: x for x in t.flush()}
    assert txns["late.example"].query is None
    mixed = txns["www.example.com"]
    assert mixed.raw_qname == "WwW.ExAmple.COM"
    assert mixed.query is not None and len(mixed.responses) == 1


def test_transactions_are_keyed_by_server_txid_and_port() -> None:
    t = DnsTracker()
    t.on_packet(decode(query(), 1, 1.0))
    t.on_packet(decode(query(dst="168.95.1.1"), 2, 1.0))
    t.on_packet(decode(query(txid=2), 3, 1.0))
    t.on_packet(decode(query(sport=40001), 4, 1.0))
    t.on_packet(decode(query(qtype="AAAA"), 5, 1.0))
    assert len(t.flush()) == 5


def test_response_without_question_matches_by_txid() -> None:
    t = DnsTracker()
    t.on_packet(decode(query(), 1, 1.0))
    bare = (
        IP(src=RESOLVER, dst=CLIENT, ttl=52)
        / UDP(sport=53, dport=40000)
        / DNS(id=0x1111, qr=1, qd=[], an=[DNSRR(rrname="g.whatsapp.net", rdata="1.2.3.4")])
    )
    t.on_packet(decode(bare, 2, 1.1))
    (txn,) = t.flush()
    assert txn.query is not None and len(txn.responses) == 1


def test_expire_uses_capture_time() -> None:
    t = DnsTracker(Thresholds(dns_timeout=10.0))
    t.on_packet(decode(query(), 1, 100.0))
    t.on_packet(decode(response(["1.1.1.1"]), 2, 100.2))
    t.on_packet(decode(query(qname="b.example", txid=2), 3, 105.0))
    assert t.expire(109.0) == []
    out = t.expire(110.5)
    assert [x.qname for x in out] == ["g.whatsapp.net"]
    assert [x.qname for x in t.expire(115.5)] == ["b.example"]
    assert t.pending == 0 and t.flush() == []


def test_max_pending_evicts_oldest_and_counts() -> None:
    t = DnsTracker(max_pending=3)
    for i in range(5):
        t.on_packet(decode(query(txid=i), i + 1, float(i)))
    assert t.pending == 3 and t.evicted == 2
    out = t.expire(0.0)  # nothing idle yet, but the evicted ones come out
    assert sorted(x.txid for x in out) == [0, 1] and all(x.evicted for x in out)
    assert len(t.flush()) == 3


def test_names_for_is_bounded_lru() -> None:
    t = DnsTracker(max_names=2)
    for i, a in enumerate(["1.0.0.1", "1.0.0.2", "1.0.0.3"]):
        t.on_packet(decode(response([a], qname=f"n{i}.example", txid=i), i + 1, 1.0))
    assert t.names_for(ip4("1.0.0.1")) == ()
    assert t.names_for(ip4("1.0.0.3")) == ("n2.example",)


def test_names_for_includes_cname_owner() -> None:
    t = DnsTracker()
    pkt = (
        IP(src=RESOLVER, dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(
            id=1,
            qr=1,
            qd=[DNSQR(qname="web.whatsapp.com")],
            an=[
                DNSRR(rrname="web.whatsapp.com", type="CNAME", rdata="mmx-ds.cdn.whatsapp.net"),
                DNSRR(rrname="mmx-ds.cdn.whatsapp.net", rdata="157.240.2.2"),
            ],
        )
    )
    t.on_packet(decode(pkt, 1, 1.0))
    assert t.names_for(ip4("157.240.2.2")) == ("web.whatsapp.com", "mmx-ds.cdn.whatsapp.net")


def test_baseline_snapshot() -> None:
    t = DnsTracker()
    assert t.baseline_for(ip4(RESOLVER)) is None
    for i in range(4):
        t.on_packet(
            decode(response(["1.1.1.1"], txid=i, ttl=52 if i < 3 else 53, ipid=10 + i), i, 1.0)
        )
    b = t.baseline_for(ip4(RESOLVER))
    assert b is not None
    assert b.responses == 4 and dict(b.ttls) == {52: 3, 53: 1}
    assert b.df_set == 4 and b.df_clear == 0
    assert [s[2] for s in b.ipids] == [10, 11, 12, 13]
    assert sum(c for _p, c in b.flag_patterns) == 4


def test_icmp_port_unreachable_is_attached() -> None:
    t = DnsTracker()
    q = query(dst="192.0.2.9")
    t.on_packet(decode(q, 1, 1.0))
    err = IP(src="192.0.2.9", dst=CLIENT, ttl=50) / ICMP(type=3, code=3) / bytes(q)[:28]
    p = decode(err, 2, 1.01)
    assert p.proto == IPPROTO_ICMP and p.quoted is not None
    t.on_packet(p)
    (txn,) = t.flush()
    (e,) = txn.icmp_errors
    assert e.frame == 2 and e.src == ip4("192.0.2.9") and e.icmp_code == 3


def test_qr_mismatch_malformed_and_fragments() -> None:
    t = DnsTracker()
    odd = (
        IP(src=RESOLVER, dst=CLIENT)
        / UDP(sport=53, dport=40000)
        / DNS(id=5, qr=0, qd=[DNSQR(qname="x.example")])
    )
    t.on_packet(decode(odd, 1, 1.0))
    junk = IP(src=RESOLVER, dst=CLIENT) / UDP(sport=53, dport=40000) / b"\x01\x02\x03"
    t.on_packet(decode(junk, 2, 1.0))
    frag = decode(
        IP(src=RESOLVER, dst=CLIENT, flags="MF") / UDP(sport=53, dport=40000) / (b"x" * 40), 3, 1.0
    )
    t.on_packet(frag)
    (txn,) = t.flush()
    assert "qr_mismatch" in txn.responses[0].anomalies
    assert t.decode_errors == {"dns_truncated": 1, "dns_fragment": 1}


def test_ipv6_udp() -> None:
    t = DnsTracker()
    c6, s6 = "2001:db8::2", "2001:4860:4860::8888"
    q = (
        IPv6(src=c6, dst=s6)
        / UDP(sport=5555, dport=53)
        / DNS(id=9, qd=[DNSQR(qname="a.example", qtype="AAAA")])
    )
    r = (
        IPv6(src=s6, dst=c6, hlim=57)
        / UDP(sport=53, dport=5555)
        / DNS(
            id=9,
            qr=1,
            qd=[DNSQR(qname="a.example", qtype="AAAA")],
            an=[DNSRR(rrname="a.example", type="AAAA", rdata="2606:4700::1")],
        )
    )
    t.on_packet(decode(q, 1, 1.0))
    t.on_packet(decode(r, 2, 1.1))
    (txn,) = t.flush()
    assert len(txn.server) == 16 and txn.responses[0].ipid == -1 and txn.responses[0].ttl == 57
    assert txn.responses[0].answers[0].value == "2606:4700::1"


# --- TCP --------------------------------------------------------------------------------------


def tcp_segments(
    src: str, dst: str, sport: int, dport: int, isn: int, chunks: list[bytes], ttl: int = 64
) -> Iterator[Any]:
    yield IP(src=src, dst=dst, ttl=ttl) / TCP(sport=sport, dport=dport, flags="S", seq=isn)
    seq = isn + 1
    for c in chunks:
        yield (
            IP(src=src, dst=dst, ttl=ttl)
            / TCP(sport=sport, dport=dport, flags="PA", seq=seq, ack=1)
            / c
        )
        seq += len(c)


def framed(msg: Any) -> bytes:
    raw = bytes(msg)
    return struct.pack("!H", len(raw)) + raw


def test_tcp_split_and_coalesced_messages() -> None:
    t = DnsTracker()
    q1 = framed(DNS(id=1, rd=1, qd=[DNSQR(qname="a.example")]))
    q2 = framed(DNS(id=2, rd=1, qd=[DNSQR(qname="b.example")]))
    r1 = framed(
        DNS(
            id=1,
            qr=1,
            qd=[DNSQR(qname="a.example")],
            an=[DNSRR(rrname="a.example", rdata="1.1.1.1")],
        )
    )
    r2 = framed(
        DNS(
            id=2,
            qr=1,
            qd=[DNSQR(qname="b.example")],
            an=[DNSRR(rrname="b.example", rdata="2.2.2.2")],
        )
    )
    # client: prefix split after 1 byte, then rest of q1 + whole q2 in one segment
    c2s = [q1[:1], q1[1:] + q2]
    # server: r1 split in three, r2 in two, the boundary mid-message
    both = r1 + r2
    cut = [0, 5, 20, len(r1) + 3, len(both)]
    s2c = [both[a:b] for a, b in zip(cut, cut[1:])]
    frame = 0
    for layer in tcp_segments(CLIENT, RESOLVER, 40001, 53, 1000, c2s):
        frame += 1
        t.on_packet(decode(layer, frame, 1.0 + frame / 100))
    last_frames = []
    for layer in tcp_segments(RESOLVER, CLIENT, 53, 40001, 5000, s2c, ttl=52):
        frame += 1
        t.on_packet(decode(layer, frame, 1.0 + frame / 100))
        last_frames.append(frame)
    txns = {x.qname: x for x in t.flush()}
    assert set(txns) == {"a.example", "b.example"}
    a, b = txns["a.example"], txns["b.example"]
    assert a.transport == "tcp" and a.query is not None and b.query is not None
    assert a.query.frame == b.query.frame == 3  # both completed by the second client segment
    assert a.responses[0].frame == last_frames[3]  # frame that completed r1
    assert b.responses[0].frame == last_frames[4]
    assert a.responses[0].answers[0].value == "1.1.1.1"
    assert b.responses[0].answers[0].value == "2.2.2.2" and b.responses[0].ttl == 52


def test_tcp_retransmitted_segment_is_ignored() -> None:
    t = DnsTracker()
    r = framed(
        DNS(
            id=3,
            qr=1,
            qd=[DNSQR(qname="c.example")],
            an=[DNSRR(rrname="c.example", rdata="3.3.3.3")],
        )
    )
    segs = list(tcp_segments(RESOLVER, CLIENT, 53, 40002, 7000, [r[:10], r[10:]]))
    for i, layer in enumerate([segs[0], segs[1], segs[1], segs[2], segs[2]]):
        t.on_packet(decode(layer, i + 1, 1.0))
    (txn,) = t.flush()
    assert len(txn.responses) == 1 and t.decode_errors == {}


def test_tcp_gap_resynchronises() -> None:
    t = DnsTracker()
    r = framed(
        DNS(
            id=4,
            qr=1,
            qd=[DNSQR(qname="d.example")],
            an=[DNSRR(rrname="d.example", rdata="4.4.4.4")],
        )
    )
    segs = list(tcp_segments(RESOLVER, CLIENT, 53, 40003, 9000, [r[:10], r[10:], r]))
    # lose the middle segment: the partial message is dropped, the next one parses
    for i, layer in enumerate([segs[0], segs[1], segs[3]]):
        t.on_packet(decode(layer, i + 1, 1.0))
    (txn,) = t.flush()
    assert len(txn.responses) == 1 and t.tcp_resyncs == 1


# --- real captures ----------------------------------------------------------------------------




@pytest.mark.public
def test_zeek_two_identical_responses() -> None:
    t = DnsTracker()
    (txn,) = feed_capture(
        CAPTURES / "zeek__zeek__testing__btest__Traces__dns-two-responses.pcap", t
    )
    assert txn.qname == "www.cmu.edu"
    assert [r.frame for r in txn.responses] == [2, 3]
    assert txn.responses[0].fingerprint == txn.responses[1].fingerprint
    assert txn.responses[0].ipid == txn.responses[1].ipid == 0x1623


@pytest.mark.public
def test_1kxun_same_query_two_resolvers() -> None:
    t = DnsTracker()
    txns = feed_capture(CAPTURES / "ntop__nDPI__tests__cfgs__default__pcap__1kxun.pcap", t)
    kankan = [x for x in txns if x.qname == "kankan.1kxun.com"]
    assert len(kankan) == 2
    assert {x.txid for x in kankan} == {0x71E5}
    assert {x.server for x in kankan} == {ip4("8.8.8.8"), ip4("168.95.1.1")}
    assert sorted(x.responses[0].ttl for x in kankan) == [48, 248]
    assert t.names_for(ip4("222.73.254.167")) == ("kankan.1kxun.com",)
