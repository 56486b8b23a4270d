"""The rule pipeline: order, purity, robustness, data files, module docstrings."""
from __future__ import annotations

import importlib
import random

import pytest

from analyzer import identify as ident_pkg
from analyzer.identify import RULES, identify, port_hint
from analyzer.model import FlowFacts, Identification, Target
from analyzer.vocabulary import module_doc

MODULES = ["whatsapp", "openvpn", "wireguard", "ipsec", "pptp", "l2tp", "sstp", "tor", "fep",
           "quic", "tls"]


@pytest.mark.parametrize("name", MODULES)
def test_module_docstrings_state_rules_sources_and_false_positives(name: str) -> None:
    mod = importlib.import_module(f"analyzer.identify.{name}")
    doc = module_doc(mod)
    assert "Rules" in doc or "rules" in doc
    assert "Sources" in doc
    assert "false positive" in doc.lower()


def test_fallback_is_other() -> None:
    ident = identify(FlowFacts("tcp", "192.0.2.1", 40000, "198.51.100.1", 12345))
    assert ident == Identification(Target.OTHER, None, 0.0, ident.reasons, None)


def test_openvpn_over_443_beats_tls_and_port() -> None:
    # OpenVPN TCP reset (plain) with its 2-byte length prefix, on 443.
    pkt = b"\x38" + bytes.fromhex("507a28a78275788d") + b"\x00" + b"\x00" * 4
    f = FlowFacts("tcp", "192.0.2.1", 40000, "198.51.100.1", 443,
                  (len(pkt).to_bytes(2, "big") + pkt,), (), client_sizes=(0, 0, 16))
    assert identify(f).target is Target.OPENVPN


def test_rule_order_payload_before_names_before_generic() -> None:
    names = [r.__name__ for r in RULES]
    assert names.index("identify_prologue") < names.index("identify_by_name")
    assert names.index("identify_openvpn") < names.index("identify_tls")
    assert names.index("identify_by_name") < names.index("identify_tor") \
        < names.index("identify_quic") < names.index("identify_tls")
    assert names.index("identify_tls") < names.index("identify_by_range") \
        < names.index("identify_fep") < names.index("port_hint")
    assert RULES[-1] is port_hint


def test_rules_are_pure() -> None:
    f = FlowFacts("udp", "192.0.2.1", 40000, "198.51.100.1", 1194,
                  (b"\x38" + b"\x11" * 8 + b"\x00" * 5,), ())
    assert identify(f) == identify(f)


def test_port_hints_data() -> None:
    for proto, port, target in [("tcp", 1723, Target.PPTP), ("udp", 51820, Target.WIREGUARD),
                                ("udp", 1194, Target.OPENVPN), ("udp", 500, Target.IPSEC)]:
        ident = identify(FlowFacts(proto, "192.0.2.1", 40000, "198.51.100.1", port))
        assert ident.target is target and ident.confidence <= 0.25
        assert ident.handshake_answered is None


def test_confidences_in_range_and_reasons_present() -> None:
    rng = random.Random(99)
    for _ in range(200):
        f = _random_facts(rng)
        ident = identify(f)
        assert 0.0 <= ident.confidence <= 1.0
        assert ident.reasons and all(isinstance(r, str) and r for r in ident.reasons)


def _random_facts(rng: random.Random) -> FlowFacts:
    proto = rng.choice(["tcp", "udp", "esp", "gre", "ah", "icmp"])
    port = rng.choice([443, 80, 1194, 51820, 500, 4500, 1701, 1723, 5222, 8388, 9001,
                       rng.randrange(1, 65536)])

    def payload() -> bytes:
        kind = rng.randrange(6)
        n = rng.randrange(0, 300)
        if kind == 0:
            return b""
        if kind == 1:  # plausible protocol starts with garbage after them
            return rng.choice([b"\x38", b"\x01\x00\x00\x00", b"WA\x05\x02", b"ED\x00\x01",
                               b"\x16\x03\x01", b"\xc0\x00\x00\x00\x01", b"\xc8\x02",
                               b"\x00\x00\x00\x00", b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d",
                               b"SSTP_DUPLEX_POST "]) + rng.randbytes(n)
        return rng.randbytes(n)

    client = tuple(payload() for _ in range(rng.randrange(0, 5)))
    server = tuple(payload() for _ in range(rng.randrange(0, 4)))
    return FlowFacts(proto, "192.0.2.1", 40000, "157.240.1.60", port, client, server,
                     sni=rng.choice([None, "g.whatsapp.net", "www.ab2cdefg.com", "example.org"]),
                     dns_names=rng.choice([(), ("e1.whatsapp.net",)]),
                     client_sizes=tuple(rng.randrange(0, 1500) for _ in range(rng.randrange(4))))


@pytest.mark.parametrize("seed", range(20))
def test_fuzz_never_raises(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        f = _random_facts(rng)
        for rule in RULES:
            rule(f)  # must not raise on any input
        # truncated prefixes of every payload too
        for p in f.client_payloads:
            for cut in range(0, min(len(p), 40)):
                identify(FlowFacts(f.proto, f.client_ip, f.client_port, f.server_ip,
                                   f.server_port, (p[:cut],), f.server_payloads))


def test_package_exports() -> None:
    assert callable(ident_pkg.identify) and callable(ident_pkg.is_whatsapp_name)
