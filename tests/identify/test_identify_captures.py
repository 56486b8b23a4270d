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
    syn_seen: bool = False


def load_flows(name: str, record_empty: bool = True) -> list[FlowFacts]:
    """FlowFacts for every TCP/UDP/ESP/AH/GRE flow of a capture, in order of appearance.

    ``record_empty`` puts empty packets into the size lists as 0 (the FlowFacts contract);
    False mimics a producer that records the sizes of payload packets only.
    """
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
            if syn:
                fl.syn_seen = True
            from_client = a == fl.client
            sizes = fl.client_sizes if from_client else fl.server_sizes
            pays = fl.client_payloads if from_client else fl.server_payloads
            if len(sizes) < MAX_PAYLOADS and (payload or record_empty):
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
            client_sizes=tuple(fl.client_sizes), server_sizes=tuple(fl.server_sizes),
            handshake_seen=fl.proto == "tcp" and fl.syn_seen))
    return out


def identified(name: str, record_empty: bool = True) -> list[tuple[FlowFacts, Identification]]:
    return [(f, identify(f)) for f in load_flows(name, record_empty)]


def _key(f: FlowFacts) -> str:
    return f"{f.proto} {f.client_ip}:{f.client_port} -> {f.server_ip}:{f.server_port}"


def _by_server(results: list[tuple[FlowFacts, Identification]], ip: str,
               port: int) -> tuple[FlowFacts, Identification]:
    for f, i in results:
        if (f.server_ip, f.server_port) == (ip, port) or (f.client_ip, f.client_port) == (ip, port):
            return f, i
    raise AssertionError(f"no flow with {ip}:{port}")


def _strip(f: FlowFacts, client: bool = False, server: bool = True) -> FlowFacts:
    return FlowFacts(f.proto, f.client_ip, f.client_port, f.server_ip, f.server_port,
                     () if client else f.client_payloads, () if server else f.server_payloads,
                     f.sni, f.http_host, f.dns_names, f.alpn, f.ech,
                     () if client else f.client_sizes, () if server else f.server_sizes)


# --------------------------------------------------------------------------- OpenVPN

def test_openvpn_capture_all_flows() -> None:
    res = identified(NDPI + "openvpn.pcap")
    assert len(res) == 10
    for f, i in res:
        assert i.target is Target.OPENVPN and i.app == "openvpn", _key(f)
    answered = {_key(f): i.handshake_answered for f, i in res}
    assert sum(1 for v in answered.values() if v is True) == 8


def test_openvpn_capture_tcp_443_found_by_payload() -> None:
    res = identified(NDPI + "openvpn.pcap")
    f, i = _by_server(res, "46.101.231.218", 443)
    assert f.proto == "tcp" and i.target is Target.OPENVPN and i.handshake_answered is True
    assert any("tls-auth/20" in r for r in i.reasons)
    f, i = _by_server(res, "127.0.0.1", 443)  # loopback OpenVPN with tls-crypt
    assert i.target is Target.OPENVPN and any("tls-crypt" in r for r in i.reasons)
    assert i.handshake_answered is True
    f, i = _by_server(res, "10.251.71.30", 1194)  # TCP 1194, plain
    assert any("echoes client session id" in r for r in i.reasons)


def test_openvpn_capture_udp_variants() -> None:
    res = identified(NDPI + "openvpn.pcap")
    _, i = _by_server(res, "107.161.86.131", 443)  # UDP/443, tls-auth with HMAC-SHA512
    assert i.handshake_answered is True and any("tls-auth/64" in r for r in i.reasons)
    _, i = _by_server(res, "85.134.13.165", 1194)
    assert i.handshake_answered is True and i.confidence >= 0.95
    assert any("ACK fingerprint" in r for r in i.reasons)
    # The reset of 192.168.75.18 is answered in the capture only under NAT-translated
    # addresses (10.0.2.15 <-> 69.197.143.179), i.e. in another 5-tuple: unanswered here.
    _, i = _by_server(res, "166.161.181.18", 443)
    assert i.target is Target.OPENVPN and i.handshake_answered is False
    # ...and that other 5-tuple carries only the server side: identified mid-flow.
    _, i = _by_server(res, "69.197.143.179", 443)
    assert i.target is Target.OPENVPN and i.confidence == 0.7 and i.handshake_answered is None


def test_openvpn_capture_unanswered_when_server_removed() -> None:
    res = identified(NDPI + "openvpn.pcap")
    f, _ = _by_server(res, "85.134.13.165", 1194)
    i = identify(_strip(f))
    assert i.target is Target.OPENVPN and i.handshake_answered is False


def test_openvpn_capture_randomised_payloads_do_not_match() -> None:
    import random
    rng = random.Random(5)
    for f, _ in identified(NDPI + "openvpn.pcap"):
        fake = FlowFacts(f.proto, f.client_ip, f.client_port, f.server_ip, f.server_port,
                         tuple(rng.randbytes(len(p)) for p in f.client_payloads[:8]),
                         tuple(rng.randbytes(len(p)) for p in f.server_payloads[:8]),
                         client_sizes=f.client_sizes)
        assert identify(fake).target is not Target.OPENVPN, _key(f)


# --------------------------------------------------------------------------- WireGuard

def test_wireguard_capture() -> None:
    res = identified(NDPI + "wireguard.pcap")
    assert [i.target for _, i in res] == [Target.WIREGUARD, Target.WIREGUARD]
    f, i = _by_server(res, "10.9.0.2", 51820)
    assert i.handshake_answered is True and i.confidence >= 0.9
    assert identify(_strip(f)).handshake_answered is False
    _, i = _by_server(res, "139.162.192.157", 51820)  # capture starts after the handshake
    assert i.confidence == 0.75 and i.handshake_answered is None


# --------------------------------------------------------------------------- WhatsApp

def test_whatsapp_capture() -> None:
    res = identified(NDPI + "whatsapp_login_chat.pcap")
    f, i = _by_server(res, "158.85.58.15", 5222)
    assert i.target is Target.WHATSAPP and i.app == "whatsapp-noise"
    assert i.confidence >= 0.9 and i.handshake_answered is True
    assert f.client_payloads[0][:4] == b"WA\x01\x05"
    # the address was resolved from e12.whatsapp.net: the name alone identifies the SYN-only flow
    assert "e12.whatsapp.net" in f.dns_names
    bare = identify(_strip(f, client=True, server=True))
    assert bare.target is Target.WHATSAPP and bare.app is None and bare.confidence >= 0.7
    others = [i.target for g, i in res if g is not f]
    assert Target.WHATSAPP not in others


# --------------------------------------------------------------------------- Tor

def test_tor_capture() -> None:
    res = identified(NDPI + "tor.pcap")
    tor_flows = [(f, i) for f, i in res if i.target is Target.TOR]
    assert len(tor_flows) == 7
    for f, i in tor_flows:
        assert f.sni and f.sni.startswith("www.")
        assert 0.4 <= i.confidence <= 0.6 and i.handshake_answered is True
    _, i = _by_server(res, "157.56.30.46", 443)
    assert i.target is not Target.TOR


# --------------------------------------------------------------------------- Shadowsocks

def test_shadowsocks_capture() -> None:
    res = identified(NDPI + "shadowsocks.pcap")
    _, i = _by_server(res, "127.0.0.1", 8388)
    assert i.target is Target.SHADOWSOCKS and i.app == "fep" and i.confidence == 0.5
    _, i = _by_server(res, "127.0.0.1", 1080)  # SOCKS5 to ss-local: short, not judged
    assert i.target is Target.OTHER


# --------------------------------------------------------------------------- PPTP / IPsec

def test_pptp_capture() -> None:
    res = identified(NDPI + "pptp.pcap")
    f, i = _by_server(res, "191.101.61.1", 1723)
    assert i.target is Target.PPTP and i.confidence >= 0.9 and i.handshake_answered is True
    assert identify(_strip(f)).handshake_answered is False


def test_esp_capture() -> None:
    res = identified(NDPI + "esp.pcapng")
    ike = [(f, i) for f, i in res if f.proto == "udp"]
    esp = [(f, i) for f, i in res if f.proto == "esp"]
    assert len(ike) == 1 and len(esp) == 1
    assert ike[0][1].target is Target.IPSEC and ike[0][1].app == "ikev2"
    assert ike[0][1].handshake_answered is True
    assert esp[0][1].target is Target.IPSEC and esp[0][1].app == "esp"


def test_isakmp4500_capture() -> None:
    res = identified("the-tcpdump-group__tcpdump__tests__isakmp4500.pcap")
    _, i = _by_server(res, "192.1.2.23", 500)
    assert i.target is Target.IPSEC and i.app == "ikev1" and i.handshake_answered is True
    f, i = _by_server(res, "192.1.2.23", 4500)
    assert f.client_payloads[0][:4] == b"\x00\x00\x00\x00"
    assert i.target is Target.IPSEC and i.handshake_answered is True
    assert any("non-ESP marker" in r for r in i.reasons)


# --------------------------------------------------------------------------- generic

def test_quic_captures() -> None:
    res = identified("zeek__zeek__testing__btest__Traces__quic__chromium-115.0.5790.110-api-cirrus-com.pcap")
    assert [(i.app, i.handshake_answered) for _, i in res] == [("quic", True)]
    res = identified("gfw-report__usenixsecurity25-quic-sni__experiments__flow-tracking-time__"
                     "flow-tracking-time.pcap")
    assert res[0][1].app == "quic"  # after the random 21-byte datagram


def test_tls_captures() -> None:
    blocked = identified("censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_archive.org.pcap")
    hellos = [i for f, i in blocked if f.sni == "archive.org"]
    assert hellos and all(i.app == "tls" and i.target is Target.OTHER for i in hellos)
    assert any(i.handshake_answered is False for i in hellos)
    control = identified("censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_example.com.pcap")
    assert any(i.handshake_answered is True for _, i in control)


@pytest.mark.parametrize("record_empty", [True, False], ids=["sizes-with-zeros", "payload-sizes"])
def test_benign_corpus_has_no_target_false_positives(record_empty: bool) -> None:
    for name in (NDPI + "1kxun.pcap",
                 "zeek__zeek__testing__btest__Traces__tls__tls13-ech.pcap",
                 "zeek__zeek__testing__btest__Traces__dns-two-responses.pcap",
                 "the-tcpdump-group__tcpdump__tests__tcp_rst_data.pcap"):
        for f, i in identified(name, record_empty):
            assert i.target is Target.OTHER, (name, _key(f), i)


@pytest.mark.parametrize("capture", ["openvpn.pcap", "wireguard.pcap", "whatsapp_login_chat.pcap",
                                     "tor.pcap", "shadowsocks.pcap", "pptp.pcap", "esp.pcapng"])
def test_same_targets_with_payload_only_sizes(capture: str) -> None:
    with_zeros = [(i.target, i.handshake_answered) for _, i in identified(NDPI + capture)]
    without = [(i.target, i.handshake_answered) for _, i in identified(NDPI + capture, False)]
    assert with_zeros == without


def test_weak_targets_stay_weak_everywhere() -> None:
    if not CAPTURES.is_dir():
        pytest.skip("captures-public not available")
    for path in sorted(CAPTURES.glob("*.pcap*")):
        for f, i in identified(path.name):
            if i.target is Target.TOR:
                assert i.confidence <= 0.6
            if i.app == "fep":
                assert i.confidence <= 0.5


if __name__ == "__main__":  # exploration aid: python tests/identify/test_identify_captures.py
    import sys
    for capture in sys.argv[1:]:
        print("==", capture)
        for facts, ident in identified(capture):
            print(f"  {_key(facts):60s} {ident.target.value:12s} {ident.app!s:15s} "
                  f"{ident.confidence:.2f} {ident.handshake_answered!s:5s} {'; '.join(ident.reasons)}")
