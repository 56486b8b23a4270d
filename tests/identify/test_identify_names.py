"""WhatsApp (prologue, names, ranges), Tor's random SNI, and generic TLS/QUIC/HTTP."""
from __future__ import annotations

import random

import pytest

from analyzer.identify import identify, is_whatsapp_name
from analyzer.identify import quic, tls, tor, whatsapp
from analyzer.model import FlowFacts, Target


def client_hello(sni: str | None, alpn: tuple[bytes, ...] = ()) -> bytes:
    """A minimal TLS 1.2-style ClientHello record (RFC 8446 §4.1.2, RFC 6066 §3)."""
    exts = b""
    if sni is not None:
        name = sni.encode()
        entry = b"\x00" + len(name).to_bytes(2, "big") + name
        lst = len(entry).to_bytes(2, "big") + entry
        exts += b"\x00\x00" + len(lst).to_bytes(2, "big") + lst
    if alpn:
        protos = b"".join(bytes([len(a)]) + a for a in alpn)
        body = len(protos).to_bytes(2, "big") + protos
        exts += b"\x00\x10" + len(body).to_bytes(2, "big") + body
    hello = (b"\x03\x03" + bytes(range(32)) + b"\x00" + b"\x00\x04\x13\x01\xc0\x2f"
             + b"\x01\x00" + len(exts).to_bytes(2, "big") + exts)
    hs = b"\x01" + len(hello).to_bytes(3, "big") + hello
    return b"\x16\x03\x01" + len(hs).to_bytes(2, "big") + hs


SERVER_HELLO = b"\x16\x03\x03\x00\x4a\x02\x00\x00\x46\x03\x03" + bytes(70)


def tcp(client: tuple[bytes, ...] = (), server: tuple[bytes, ...] = (), port: int = 443,
        ip: str = "198.51.100.7", **kw: object) -> FlowFacts:
    return FlowFacts("tcp", "192.0.2.10", 50000, ip, port, client, server,
                     client_sizes=(0, 0) + tuple(len(p) for p in client),
                     server_sizes=(0,) + tuple(len(p) for p in server), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- names

@pytest.mark.parametrize("name", [
    "whatsapp.net", "g.whatsapp.net", "e1.whatsapp.net", "e16.whatsapp.net", "mmg.whatsapp.net",
    "v.whatsapp.net", "web.whatsapp.com", "static.whatsapp.net", "whatsapp.com", "wa.me",
    "media-ams4-1.cdn.whatsapp.net", "G.WhatsApp.Net.", "whatsapp-cdn-shv-01-atl1.fbcdn.net",
])
def test_whatsapp_names(name: str) -> None:
    assert is_whatsapp_name(name)


@pytest.mark.parametrize("name", [
    "notwhatsapp.net", "whatsapp.net.evil.com", "whatsapp.network", "swa.me", "wa.me.uk",
    "facebook.com", "fbcdn.net", "whatsapp-cdn-shv-01-atl1.fbcdn.net.example", "", "net",
])
def test_not_whatsapp_names(name: str) -> None:
    assert not is_whatsapp_name(name)


def test_tls_sni_whatsapp_on_443() -> None:
    ident = identify(tcp((client_hello("g.whatsapp.net"),), (SERVER_HELLO,), sni="g.whatsapp.net"))
    assert ident.target is Target.WHATSAPP and ident.app == "tls"
    assert ident.confidence >= 0.9 and ident.handshake_answered is True


def test_tls_sni_whatsapp_unanswered() -> None:
    ident = identify(tcp((client_hello("mmg.whatsapp.net"),), sni="mmg.whatsapp.net"))
    assert ident.target is Target.WHATSAPP and ident.handshake_answered is False


def test_notwhatsapp_sni_is_other() -> None:
    ident = identify(tcp((client_hello("notwhatsapp.net"),), sni="notwhatsapp.net"))
    assert ident.target is Target.OTHER and ident.app == "tls"


def test_tls_on_5222_with_other_sni_is_not_whatsapp() -> None:
    ch = client_hello("xmpp.example.org")
    for ip in ("198.51.100.7", "157.240.1.60"):  # also inside a Meta prefix
        ident = identify(tcp((ch,), port=5222, ip=ip, sni="xmpp.example.org"))
        assert ident.target is Target.OTHER and ident.app == "tls"


def test_dns_name_only_flow_is_whatsapp() -> None:
    ident = identify(tcp(port=443, dns_names=("g.whatsapp.net",)))
    assert ident.target is Target.WHATSAPP and ident.app is None
    assert 0.7 <= ident.confidence <= 0.85 and ident.handshake_answered is None


def test_dns_name_shared_address_is_less_sure() -> None:
    ident = identify(tcp(port=443, dns_names=("g.whatsapp.net", "www.facebook.com")))
    assert ident.target is Target.WHATSAPP and ident.confidence < 0.7


def test_sni_overrides_dns_name() -> None:
    ident = identify(tcp((client_hello("example.com"),), sni="example.com",
                         dns_names=("g.whatsapp.net",)))
    assert ident.target is Target.OTHER


def test_http_host_whatsapp() -> None:
    req = b"GET / HTTP/1.1\r\nHost: web.whatsapp.com\r\n\r\n"
    ident = identify(tcp((req,), port=80, http_host="web.whatsapp.com"))
    assert ident.target is Target.WHATSAPP and ident.app == "http"


# --------------------------------------------------------------------------- prologue
# Noise: "WA" magic + dictionary version, then a 3-byte length frame holding
# HandshakeMessage{clientHello{ephemeral(32)}} = 12 22 0a 20 <32 bytes>.
NOISE_HELLO = b"\x12\x22\x0a\x20" + random.Random(7).randbytes(32)
WA_NOISE = b"WA\x06\x03" + len(NOISE_HELLO).to_bytes(3, "big") + NOISE_HELLO
# Edge routing header: "ED" 00 01, 3-byte length, routing info (protobuf, starts 0x08).
WA_EDGE = b"ED\x00\x01" + b"\x00\x00\x04" + b"\x08\x02\x10\x05" + WA_NOISE
# Server hello frame: HandshakeMessage{serverHello{...}} (field 3 -> 0x1a).
WA_SERVER = b"\x00\x00\x0a" + b"\x1a\x08" + bytes(8)


def test_whatsapp_noise_prologue() -> None:
    p = whatsapp.parse_prologue(WA_NOISE)
    assert p is not None and p.version == (6, 3) and p.frames == 1 and p.noise_client_hello
    ident = identify(tcp((WA_NOISE,), (WA_SERVER,), port=5222))
    assert ident.target is Target.WHATSAPP and ident.app == "whatsapp-noise"
    assert ident.confidence >= 0.9 and ident.handshake_answered is True


def test_whatsapp_edge_routing_prefix_on_443() -> None:
    ident = identify(tcp((WA_EDGE,), port=443))
    assert ident.target is Target.WHATSAPP and ident.app == "whatsapp-noise"
    assert ident.handshake_answered is False


@pytest.mark.parametrize("prologue", [b"WA\x05\x02", b"WA\x06\x00", b"WA\x01\x05"])
def test_whatsapp_bare_prologue(prologue: bytes) -> None:
    ident = identify(tcp((prologue,), port=5222))
    assert ident.target is Target.WHATSAPP and 0.8 <= ident.confidence < 0.95


@pytest.mark.parametrize("data", [
    b"WARNING: something happened\r\n", b"WAIT\x00\x00\x05hello", b"WA\x05\x02\x00\x00",
    b"WA\x05\x02\x40\x00\x01x",
])
def test_whatsapp_prologue_near_misses(data: bytes) -> None:
    assert identify(tcp((data,), port=5222)).target is not Target.WHATSAPP


def test_whatsapp_range_hint_is_weak() -> None:
    ident = identify(tcp(port=5222, ip="157.240.1.60"))
    assert ident.target is Target.WHATSAPP and ident.confidence <= 0.5
    assert identify(tcp(port=5222, ip="8.8.8.8")).target is Target.OTHER
    assert identify(tcp(port=443, ip="157.240.1.60")).target is Target.OTHER
    # a non-WhatsApp DNS name for the address contradicts the hint
    assert identify(tcp(port=5222, ip="157.240.1.60",
                        dns_names=("www.instagram.com",))).target is Target.OTHER


def test_whatsapp_ranges_data() -> None:
    assert whatsapp.in_whatsapp_ranges("157.240.1.60")
    assert whatsapp.in_whatsapp_ranges("2a03:2880:f00c:1::1")
    assert not whatsapp.in_whatsapp_ranges("8.8.8.8")
    assert not whatsapp.in_whatsapp_ranges("not an address")


# --------------------------------------------------------------------------- Tor

@pytest.mark.parametrize("sni", ["www.ct7ctrgb6cr7.com", "www.e6r5p57kbafwrxj3plz.com",
                                 "www.t3i3ru.com", "www.jmts2id.net", "www.xkcdqrbtzmnp.com"])
def test_tor_like_sni(sni: str) -> None:
    assert tor.tor_like_sni(sni) is not None
    ident = identify(tcp((client_hello(sni),), (SERVER_HELLO,), port=9001, sni=sni))
    assert ident.target is Target.TOR
    assert 0.4 <= ident.confidence <= 0.6 and ident.handshake_answered is True


@pytest.mark.parametrize("sni", ["www.google.com", "www.wikipedia.org", "www.example.com",
                                 "www.abc.com", "mail.ct7ctrgb6cr7.com", "www.01890.com",
                                 "www.ct7ctrgb6cr7.org"])
def test_not_tor_sni(sni: str) -> None:
    assert identify(tcp((client_hello(sni),), sni=sni)).target is not Target.TOR


def test_tor_never_high_and_contradicted_by_dns_or_alpn() -> None:
    sni = "www.q4cyamnc6mtokjurvdclt.com"
    for port in (443, 9001, 9030, 12345):
        ident = identify(tcp((client_hello(sni),), port=port, sni=sni))
        assert ident.target is Target.TOR and ident.confidence <= 0.6
    assert identify(tcp((client_hello(sni),), sni=sni, dns_names=(sni,))).target is Target.OTHER
    assert identify(tcp((client_hello(sni, (b"h2",)),), sni=sni,
                        alpn=("h2",))).target is Target.OTHER


# --------------------------------------------------------------------------- generic

def test_generic_tls() -> None:
    ident = identify(tcp((client_hello("example.com"),), (SERVER_HELLO,), sni="example.com"))
    assert ident.target is Target.OTHER and ident.app == "tls" and ident.handshake_answered is True
    alert = b"\x15\x03\x03\x00\x02\x02\x28"
    assert identify(tcp((client_hello(None),), (alert,))).handshake_answered is None
    assert tls.is_client_hello(client_hello(None))
    assert not tls.is_tls(b"\x16\x03\x05\x00\x10")


def test_generic_http() -> None:
    ident = identify(tcp((b"POST /api HTTP/1.1\r\nHost: a.example\r\n\r\n",), port=8080))
    assert ident.app == "http" and ident.target is Target.OTHER
    assert not tls.is_http_request(b"GETTING /x HTTP/1.1\r\n")
    assert not tls.is_http_request(b"GET /x FTP/1.0\r\n")
    assert tls.is_http_request(b"GET /very/long/path-cut-before-the-version")


def quic_initial(version: int = quic.QUIC_V1, size: int = 1250, dcid_len: int = 8) -> bytes:
    # RFC 9000 §17.2.2: 1 1 type(2) reserved(2) pn_len(2); version; DCID len + DCID;
    # SCID len + SCID; token length (varint); length (2-byte varint); packet number; payload
    type_bits = 0 if version != quic.QUIC_V2 else 1
    first = 0xC0 | (type_bits << 4) | 0x03
    head = (bytes([first]) + version.to_bytes(4, "big") + bytes([dcid_len])
            + bytes(range(1, dcid_len + 1)) + b"\x00" + b"\x00")
    rest = size - len(head) - 2
    return head + (0x4000 | rest).to_bytes(2, "big") + random.Random(size).randbytes(rest)


def udp(client: tuple[bytes, ...], server: tuple[bytes, ...] = (), port: int = 443,
        **kw: object) -> FlowFacts:
    return FlowFacts("udp", "192.0.2.10", 50000, "198.51.100.7", port, client, server,
                     client_sizes=tuple(len(p) for p in client),
                     server_sizes=tuple(len(p) for p in server), **kw)  # type: ignore[arg-type]


def test_quic_v1_and_v2() -> None:
    for version in (quic.QUIC_V1, quic.QUIC_V2, 0xFF00001D):
        pkt = quic_initial(version)
        hdr = quic.parse_long_header(pkt)
        assert hdr is not None and hdr.packet_type == "initial"
        ident = identify(udp((pkt,), (quic_initial(version, 1200),)))
        assert ident.app == "quic" and ident.target is Target.OTHER
        assert ident.handshake_answered is True and ident.confidence >= 0.9
    assert identify(udp((quic_initial(),))).handshake_answered is False


def test_quic_target_from_sni() -> None:
    ident = identify(udp((quic_initial(),), sni="g.whatsapp.net"))
    assert ident.target is Target.WHATSAPP and ident.app == "quic"
    ident = identify(udp((quic_initial(),), sni="www.google.com"))
    assert ident.target is Target.OTHER and ident.app == "quic"
    assert any("www.google.com" in r for r in ident.reasons)


def test_quic_near_misses() -> None:
    unknown = b"\xc3\x12\x34\x56\x78" + quic_initial()[5:]
    assert identify(udp((unknown,))).app is None
    small = quic_initial(size=300)
    ident = identify(udp((small,)))
    assert ident.app == "quic" and ident.confidence <= 0.6  # below the 1200-byte minimum
    short_dcid = quic_initial(dcid_len=4)
    assert identify(udp((short_dcid,))).confidence <= 0.6
    # version negotiation from the server counts as an answer
    vn = b"\x80\x00\x00\x00\x00\x00\x08" + bytes(8) + b"\x00\x00\x00\x00\x01"
    assert identify(udp((quic_initial(),), (vn,))).handshake_answered is True


def test_quic_after_a_non_quic_datagram() -> None:
    ident = identify(udp((random.Random(3).randbytes(21), quic_initial())))
    assert ident.app == "quic"
