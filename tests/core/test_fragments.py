"""IP fragment reassembly: fragmented ClientHello and DNS answers, IPv6, hostile overlaps,
incomplete datagrams, and the fast path staying identical to the reference."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, TCP, UDP, fragment
from scapy.layers.inet6 import IPv6, IPv6ExtHdrFragment, fragment6
from scapy.packet import Raw

from analyzer.config import Settings
from analyzer.pipeline import analyze_files
from analyzer.report.document import to_document

C, S = "10.0.0.2", "198.51.100.7"
T = 1_700_000_000.0
MakePcap = Callable[..., Path]
Analyze = Callable[..., dict[str, Any]]


def client_hello(sni: str) -> bytes:
    from scapy.layers.tls.extensions import ServerName, TLS_Ext_ServerName
    from scapy.layers.tls.handshake import TLSClientHello
    from scapy.layers.tls.record import TLS

    return bytes(TLS(msg=[TLSClientHello(ext=[TLS_Ext_ServerName(servernames=[ServerName(servername=sni.encode())])])]))


def rst_scenario(frags: list[Any]) -> list[tuple[float, Any]]:
    ch = client_hello("fragmented.example")
    out: list[tuple[float, Any]] = [
        (T, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="S", seq=100)),
        (T + 0.03, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=41000, flags="SA", seq=900, ack=101)),
        (T + 0.031, IP(src=C, dst=S, ttl=64) / TCP(sport=41000, dport=443, flags="A", seq=101, ack=901)),
    ]
    out += [(T + 0.04 + i * 0.0001, f) for i, f in enumerate(frags)]
    out.append((T + 0.06, IP(src=S, dst=C, ttl=120) / TCP(sport=443, dport=41000, flags="RA", seq=901,
                                                          ack=101 + len(ch), window=16)))
    return out


def hello_packet() -> Any:
    ch = client_hello("fragmented.example")
    return IP(src=C, dst=S, ttl=64, id=4242) / TCP(sport=41000, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)


def test_fragmented_clienthello_out_of_order(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    frags = fragment(hello_packet(), fragsize=24)
    assert len(frags) >= 4
    frags = frags[1:] + frags[:1]  # the first fragment arrives last
    doc = analyze_doc(make_pcap(rst_scenario(frags)))
    [v] = doc["verdicts"]
    assert (v["technique"], v["trigger"], v["domain"]) == ("rst_injection", "sni", "fragmented.example")
    assert doc["stats"]["fragments"] == len(frags) and doc["stats"]["reassembled"] == 1
    # the trigger evidence is the frame that completed the datagram
    assert v["evidence"][0]["frame"] == 3 + len(frags)


def test_overlapping_fragments_that_disagree_are_dropped(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    frags = fragment(hello_packet(), fragsize=24)
    evil = frags[1].copy()
    evil[Raw].load = b"X" * len(bytes(evil[Raw].load))
    doc = analyze_doc(make_pcap(rst_scenario([frags[0], evil] + frags[1:])))
    assert doc["stats"]["skipped"].get("fragment_overlap") == 1
    assert doc["stats"]["reassembled"] == 0
    # the duplicate of an identical fragment is harmless
    doc = analyze_doc(make_pcap(rst_scenario([frags[0], frags[1]] + frags[1:])))
    assert doc["stats"]["reassembled"] == 1


def test_incomplete_datagram_is_counted(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    frags = fragment(hello_packet(), fragsize=24)
    doc = analyze_doc(make_pcap(rst_scenario(frags[:-1])))
    assert doc["stats"]["skipped"].get("fragment_incomplete") == 1


def test_fragmented_forged_dns_answer(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    q = IP(src=C, dst="8.8.8.8", ttl=64) / UDP(sport=40000, dport=53) / DNS(id=7, rd=1, qd=DNSQR(qname="g.whatsapp.net"))

    def answer(addr: str, ttl: int, ipid: int) -> Any:
        an = [DNSRR(rrname="g.whatsapp.net", type="A", ttl=60, rdata=addr)]
        an += [DNSRR(rrname="g.whatsapp.net", type="TXT", ttl=60, rdata="p" * 200) for _ in range(8)]
        return IP(src="8.8.8.8", dst=C, ttl=ttl, id=ipid) / UDP(sport=53, dport=40000) / DNS(
            id=7, qr=1, rd=1, ra=1, qd=DNSQR(qname="g.whatsapp.net"), an=an)

    forged = fragment(answer("8.7.198.45", 101, 1), fragsize=512)
    genuine = fragment(answer("157.240.1.53", 52, 2), fragsize=512)
    pkts = [(T, q)] + [(T + 0.01, f) for f in forged] + [(T + 0.05, f) for f in genuine]
    doc = analyze_doc(make_pcap(pkts))
    [v] = doc["verdicts"]
    assert v["technique"] == "dns_injection" and "forged_address_pool" in v["signals"]
    assert doc["stats"]["reassembled"] == 2


def test_ipv6_fragments(make_pcap: MakePcap, analyze_doc: Analyze) -> None:
    ch = client_hello("v6.example")
    c6, s6 = "2001:db8::2", "2001:db8:1::7"
    syn = IPv6(src=c6, dst=s6) / TCP(sport=41000, dport=443, flags="S", seq=100)
    synack = IPv6(src=s6, dst=c6, hlim=52) / TCP(sport=443, dport=41000, flags="SA", seq=900, ack=101)
    ack = IPv6(src=c6, dst=s6) / TCP(sport=41000, dport=443, flags="A", seq=101, ack=901)
    hello = IPv6(src=c6, dst=s6) / IPv6ExtHdrFragment(id=99) / TCP(sport=41000, dport=443, flags="PA", seq=101, ack=901) / Raw(ch)
    frags = fragment6(hello, 200)
    rst = IPv6(src=s6, dst=c6, hlim=120) / TCP(sport=443, dport=41000, flags="RA", seq=901, ack=101 + len(ch), window=16)
    pkts = [(T, syn), (T + 0.03, synack), (T + 0.031, ack)] + [(T + 0.04, f) for f in reversed(frags)] + [(T + 0.06, rst)]
    doc = analyze_doc(make_pcap(pkts))
    [v] = doc["verdicts"]
    assert (v["trigger"], v["domain"], v["server"]) == ("sni", "v6.example", f"[{s6}]:443")


def test_fast_path_equals_reference_with_fragments(make_pcap: MakePcap) -> None:
    frags = fragment(hello_packet(), fragsize=24)
    pkts = rst_scenario(frags[2:] + frags[:2])
    # plenty of ordinary data of the same flow around the datagram, over several chunks
    for i in range(300):
        pkts.append((T + 0.07 + i * 0.001, IP(src=S, dst=C, ttl=52) / TCP(sport=443, dport=41000, flags="A", seq=901, ack=200) / Raw(b"d" * 100)))
    path = make_pcap(sorted(pkts, key=lambda p: p[0]))
    for chunk in (5, 64, 16384):
        a = to_document(analyze_files([str(path)], Settings(reference=True, chunk_packets=chunk, strict=True)))
        b = to_document(analyze_files([str(path)], Settings(reference=False, chunk_packets=chunk, strict=True)))
        a["stats"].pop("seconds"), b["stats"].pop("seconds")
        assert a == b
