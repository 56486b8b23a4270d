"""Sanity tests for bench/gen_capture.py (correctness of the synthetic capture, not timing)."""
from __future__ import annotations

import hashlib
import importlib.util
import json
import socket
import struct
from pathlib import Path
from typing import Any, Dict, List, Tuple

import dpkt
import pytest

REPO = Path(__file__).resolve().parents[2]
M32 = 0xFFFFFFFF
N = 5000
# boost the rare kinds so a 5,000-packet file contains every interference kind;
# a low packet rate makes the capture long enough for SYN/ClientHello back-off
MIX = {"rst": 8, "dnsinj": 8, "snidrop": 5, "blackhole": 6, "wg": 5, "ovpn": 5}


def _load_gen() -> Any:
    spec = importlib.util.spec_from_file_location("bench_gen_capture",
                                                  REPO / "bench" / "gen_capture.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


gen = _load_gen()


def _generate(path: Path, seed: int) -> Dict[str, Any]:
    gen.generate(N, str(path), seed=seed, pps=500, mix=MIX, quiet=True)
    return json.loads(path.with_suffix(".truth.json").read_text())


@pytest.fixture(scope="module")
def capture(tmp_path_factory: pytest.TempPathFactory) -> Tuple[Path, Dict[str, Any], List[Any]]:
    path = tmp_path_factory.mktemp("gen") / "mixed.pcap"
    truth = _generate(path, seed=7)
    with open(path, "rb") as f:
        pkts = [(ts, dpkt.ethernet.Ethernet(buf)) for ts, buf in dpkt.pcap.Reader(f)]
    return path, truth, pkts


def _fold(data: bytes) -> int:
    if len(data) & 1:
        data += b"\0"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return s


def _ip(p: Any) -> Any:
    return p.data


def test_count_timestamps_and_checksums(capture: Any) -> None:
    path, truth, pkts = capture
    assert len(pkts) == N == truth["packets"]
    assert path.stat().st_size == truth["bytes"]
    with open(path, "rb") as f:
        r = dpkt.pcap.Reader(f)
        assert r.datalink() == dpkt.pcap.DLT_EN10MB
    prev = 0.0
    for ts, eth in pkts:
        assert ts >= prev
        prev = ts
        ip = eth.data
        assert isinstance(ip, dpkt.ip.IP)
        raw = bytes(eth)[14:]
        assert _fold(raw[:20]) == 0xFFFF, "bad IPv4 header checksum"
        assert ip.len == len(raw)
        # transport checksums are correct too
        l4 = raw[20:]
        pseudo = ip.src + ip.dst + struct.pack("!BBH", 0, ip.p, len(l4))
        assert _fold(pseudo + l4) == 0xFFFF, "bad TCP/UDP checksum"


def test_tcp_sequence_numbers_consistent(capture: Any) -> None:
    _, truth, pkts = capture
    forged = {f for e in truth["interference"] if e["kind"] == "rst_injection"
              for f in e["frames"]["forged_rst"]}
    assert forged
    nxt: Dict[Tuple[bytes, int, bytes, int], int] = {}
    advanced = 0
    for no, (_, eth) in enumerate(pkts, 1):
        ip = eth.data
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP) or no in forged:
            continue
        key = (ip.src, tcp.sport, ip.dst, tcp.dport)
        rkey = (ip.dst, tcp.dport, ip.src, tcp.sport)
        plen = len(tcp.data)
        if tcp.flags & dpkt.tcp.TH_SYN:
            nxt[key] = (tcp.seq + 1) & M32
            continue
        if key not in nxt:  # flow started before the capture (warm-up)
            nxt[key] = tcp.seq
        exp = nxt[key]
        if tcp.seq == exp:
            nxt[key] = (exp + plen + (1 if tcp.flags & dpkt.tcp.TH_FIN else 0)) & M32
            advanced += plen
        else:
            # only retransmissions of already-sent bytes are allowed
            assert plen and ((exp - (tcp.seq + plen)) & M32) < 1 << 31, \
                "frame %d: seq %d, expected %d" % (no, tcp.seq, exp)
        # nobody acknowledges bytes the peer has not sent
        if tcp.flags & dpkt.tcp.TH_ACK and rkey in nxt:
            assert ((nxt[rkey] - tcp.ack) & M32) < 1 << 31, "frame %d acks unseen data" % no
    assert advanced > 100_000


def test_dns_parses(capture: Any) -> None:
    _, _, pkts = capture
    n = 0
    for _, eth in pkts:
        udp = eth.data.data
        if isinstance(udp, dpkt.udp.UDP) and 53 in (udp.sport, udp.dport):
            d = dpkt.dns.DNS(udp.data)
            assert len(d.qd) == 1 and d.qd[0].type in (dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA)
            if d.qr == dpkt.dns.DNS_R:
                for rr in d.an:
                    assert rr.type in (dpkt.dns.DNS_A, dpkt.dns.DNS_AAAA, dpkt.dns.DNS_CNAME)
                    if rr.type == dpkt.dns.DNS_A:
                        assert len(rr.rdata) == 4
            n += 1
    assert n > 20


def _sni(payload: bytes) -> str:
    rec = dpkt.ssl.TLSRecord(payload)
    hs = dpkt.ssl.TLSHandshake(rec.data)
    assert hs.type == 1
    ch = hs.data
    for etype, edata in ch.extensions:
        if etype == 0:
            return edata[5:].decode()
    raise AssertionError("no SNI")


def test_truth_frames_point_at_described_packets(capture: Any) -> None:
    _, truth, pkts = capture
    entries = truth["interference"]
    kinds = {e["kind"] for e in entries}
    assert kinds == {"rst_injection", "dns_injection", "sni_drop", "ip_blackhole"}

    def pkt(no: int) -> Any:
        return pkts[no - 1][1].data

    def addr(b: bytes) -> str:
        return socket.inet_ntoa(b)

    for e in entries:
        allf = [f for v in e["frames"].values() for f in v]
        assert e["first_frame"] == min(e["frames"][{
            "rst_injection": "forged_rst", "dns_injection": "forged_answer",
            "sni_drop": "client_hello", "ip_blackhole": "syn"}[e["kind"]]])
        assert abs(pkts[e["first_frame"] - 1][0] - e["ts"]) < 1e-5
        assert all(1 <= f <= N for f in allf)
        if e["kind"] == "rst_injection":
            for f in e["frames"]["client_hello"]:
                ip = pkt(f)
                assert (addr(ip.src), ip.data.sport, addr(ip.dst)) == \
                    (e["client"], e["client_port"], e["server"])
                assert _sni(ip.data.data) == e["domain"]
            ch = pkt(e["frames"]["client_hello"][0]).data
            seqs = []
            for f in e["frames"]["forged_rst"]:
                ip = pkt(f)
                tcp = ip.data
                assert isinstance(tcp, dpkt.tcp.TCP)
                assert tcp.flags & dpkt.tcp.TH_RST and tcp.flags & dpkt.tcp.TH_ACK
                assert (addr(ip.src), tcp.sport, addr(ip.dst), tcp.dport) == \
                    (e["server"], 443, e["client"], e["client_port"])
                assert ip.ttl == e["forged_ttl"] != e["server_ttl"]
                assert tcp.win == e["forged_window"]
                assert tcp.ack == (ch.seq + len(ch.data)) & M32
                seqs.append(tcp.seq)
            assert [(s - seqs[0]) & M32 for s in seqs] == e["seq_offsets"]
            # genuine server packets of the same connection carry the server's TTL
            expect_seq = seqs[0]
            for f in e["frames"].get("genuine_server_data", []):
                ip = pkt(f)
                assert addr(ip.src) == e["server"] and ip.ttl == e["server_ttl"]
                assert ip.data.seq == expect_seq and ip.data.data
                expect_seq = (expect_seq + len(ip.data.data)) & M32
        elif e["kind"] == "dns_injection":
            q = dpkt.dns.DNS(pkt(e["frames"]["query"][0]).data.data)
            assert q.qr == dpkt.dns.DNS_Q and q.qd[0].name == e["domain"] and q.id == e["txid"]
            for f in e["frames"]["forged_answer"]:
                ip = pkt(f)
                d = dpkt.dns.DNS(ip.data.data)
                assert addr(ip.src) == e["server"] and addr(ip.dst) == e["client"]
                assert ip.data.dport == e["client_port"] and d.id == e["txid"]
                assert ip.ttl == e["forged_ttl"] != e["resolver_ttl"]
                assert not ip.df
                assert [addr(rr.rdata) for rr in d.an] == [e["forged_address"]]
            g = pkt(e["frames"]["genuine_answer"][0])
            assert g.ttl == e["resolver_ttl"] and g.df
            assert min(e["frames"]["forged_answer"]) < e["frames"]["genuine_answer"][0]
            ga = [addr(rr.rdata) for rr in dpkt.dns.DNS(g.data.data).an
                  if rr.type == dpkt.dns.DNS_A]
            assert ga == e["genuine_addresses"]
        elif e["kind"] == "sni_drop":
            frames = e["frames"]["client_hello"]
            payloads = {bytes(pkt(f).data.data) for f in frames}
            assert len(payloads) == 1 and _sni(payloads.pop()) == e["domain"]
            assert len({pkt(f).data.seq for f in frames}) == 1
            if e["complete"]:
                assert len(frames) == 1 + e["retransmissions"]
            # the server never sends payload on this connection
            for _, eth in pkts[frames[0]:]:
                ip = eth.data
                if addr(ip.src) == e["server"] and isinstance(ip.data, dpkt.tcp.TCP) \
                        and ip.data.dport == e["client_port"]:
                    assert not ip.data.data
        elif e["kind"] == "ip_blackhole":
            for f in e["frames"]["syn"]:
                tcp = pkt(f).data
                assert tcp.flags == dpkt.tcp.TH_SYN and addr(pkt(f).dst) == e["server"]
            assert not any(addr(eth.data.src) == e["server"] for _, eth in pkts)


def test_vpn_handshakes(capture: Any) -> None:
    _, _, pkts = capture
    inits = set()
    n_resp = n_ovpn_reset = 0
    for _, eth in pkts:
        udp = eth.data.data
        if not isinstance(udp, dpkt.udp.UDP):
            continue
        b = bytes(udp.data)
        if 51820 in (udp.sport, udp.dport):
            if b[0] == 1:
                assert len(b) == 148 and b[1:4] == b"\0\0\0"
                inits.add(b[4:8])
            elif b[0] == 2:
                assert len(b) == 92 and b[1:4] == b"\0\0\0" and b[8:12] in inits
                n_resp += 1
            else:
                assert b[0] == 4 and b[1:4] == b"\0\0\0" and (len(b) - 16) % 16 == 0
        elif udp.dport == 1194 and b[0] == 7 << 3:
            n_ovpn_reset += 1
        elif udp.sport == 1194:
            assert b[0] >> 3 in (4, 5, 8, 9)
    assert n_resp and n_ovpn_reset


def test_same_seed_same_bytes(tmp_path: Path, capture: Any) -> None:
    path, truth, _ = capture
    again = tmp_path / "again.pcap"
    truth2 = _generate(again, seed=7)
    h = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()  # noqa: E731
    assert h(path) == h(again)
    assert {**truth2, "file": None} == {**truth, "file": None}
    other = tmp_path / "other.pcap"
    _generate(other, seed=8)
    assert h(other) != h(path)
