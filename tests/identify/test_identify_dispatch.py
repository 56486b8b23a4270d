"""identify() skips the rules that cannot answer for a flow's protocol (RULE_PROTOS) and the
name checks are cached: the answer must stay the first answer of RULES in order, and the
WhatsApp name match must stay the label-boundary suffix match it was."""
from __future__ import annotations

import random
import re

import pytest

from analyzer.identify import NO_MATCH, RULE_PROTOS, RULES, identify
from analyzer.identify.whatsapp import _data_lines, is_whatsapp_name
from analyzer.model import FlowFacts, Identification, Target

PROTOS = ["tcp", "udp", "esp", "ah", "gre", "icmp", "sctp"]

# Payload starts that satisfy (or nearly satisfy) each family's rules, so that every rule gets
# to answer for some of the random flows below.
OPENVPN_RESET = b"\x38" + bytes.fromhex("507a28a78275788d") + b"\x00" + b"\x00" * 4
STARTS = [
    OPENVPN_RESET,
    len(OPENVPN_RESET).to_bytes(2, "big") + OPENVPN_RESET,
    b"\x20" + bytes.fromhex("9d3f01c2aa5e7a10"),  # OpenVPN P_CONTROL_V1 (mid-flow)
    b"\x01\x00\x00\x00\x11\x22\x33\x44" + b"\x00" * 140,  # WireGuard initiation (148 bytes)
    b"\x04\x00\x00\x00\x01\x02\x03\x04",  # WireGuard transport
    b"\x11" * 8 + b"\x00" * 8 + b"\x21\x20\x22\x08" + bytes(4) + (28).to_bytes(4, "big"),  # IKEv2
    b"\x00\x00\x00\x00" + b"\x11" * 8 + b"\x00" * 8 + b"\x21\x20\x22\x08",  # NAT-T marker
    b"\xc8\x02\x00\x14" + b"\x00" * 8 + b"\x80\x08\x00\x00\x00\x00\x00\x01",  # L2TP SCCRQ
    b"\x00\x9c\x00\x01\x1a\x2b\x3c\x4d\x00\x01\x00\x00\x01\x00",  # PPTP SCCRQ
    b"\x30\x81\x88\x0b\x00\x10\x00\x01",  # enhanced GRE carrying PPP
    b"SSTP_DUPLEX_POST /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1\r\n",
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03",  # TLS ClientHello record
    b"\x16\x03\x03\x00\x5a\x02\x00\x00\x56\x03\x03",  # TLS ServerHello record
    b"\x17\x03\x03\x00\x20",  # TLS application data
    b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
    b"HTTP/1.1 200 OK\r\n",
    b"\xc3\x00\x00\x00\x01\x08" + b"\x83" * 8 + b"\x00\x00\x44\xe6",  # QUIC v1 Initial
    b"\xc0\x00\x00\x00\x00\x08" + b"\x83" * 8 + b"\x00",  # QUIC version negotiation
    b"WA\x06\x03\x00\x00\x05\x12\x03\x0a\x20",  # WhatsApp Noise prologue
    b"ED\x00\x01\x00\x00\x02\x08\x00WA\x05\x02",  # WhatsApp edge routing
    b"\x00\x00\x10\x00",
    b"\xff",
]


def _payload(rng: random.Random) -> bytes:
    kind = rng.randrange(5)
    if kind == 0:
        return b""
    if kind == 1:
        return rng.randbytes(rng.randrange(1, 300))
    start = rng.choice(STARTS)
    if rng.random() < 0.3:
        return start  # exact (lengths that must match the datagram do)
    data = start + rng.randbytes(rng.randrange(0, 200))
    return data[:rng.randrange(1, len(data) + 1)] if rng.random() < 0.2 else data


def _facts(rng: random.Random) -> FlowFacts:
    client = tuple(_payload(rng) for _ in range(rng.randrange(0, 7)))
    if client and rng.random() < 0.3:
        client = (client[0],) * len(client)  # retransmissions / repeated packets
    server = tuple(_payload(rng) for _ in range(rng.randrange(0, 5)))
    proto = rng.choice(["tcp", "udp"]) if rng.random() < 0.8 else rng.choice(PROTOS)
    return FlowFacts(
        proto, "192.0.2.1", rng.choice([40000, 500, 4500, 1701, 53]),
        rng.choice(["157.240.1.60", "198.51.100.1", "2001:db8::1"]),
        rng.choice([443, 80, 1194, 51820, 500, 4500, 1701, 1723, 5222, 9001, 53,
                    rng.randrange(1, 65536)]),
        client, server,
        sni=rng.choice([None] * 6 + ["g.whatsapp.net", "www.ab2cdefg.com", "example.org",
                                     "www.bcdfghjkl.net"]),
        http_host=rng.choice([None] * 8 + ["web.whatsapp.com:443", "example.com"]),
        dns_names=rng.choice([()] * 6 + [("e1.whatsapp.net",), ("example.org", "mmg.whatsapp.net"),
                                         ("www.ab2cdefg.com",)]),
        alpn=rng.choice([(), ("h2",), ("x",)]),
        ech=rng.random() < 0.2,
        client_sizes=tuple(rng.choice([len(p), 0, 1250, len(p) + 100]) for p in client),
        server_sizes=tuple(len(p) for p in server),
        handshake_seen=rng.random() < 0.7,
    )


def _reference_identify(facts: FlowFacts) -> Identification:
    """The original definition: every rule of RULES in order, first answer wins."""
    for rule in RULES:
        found = rule(facts)
        if found is not None:
            return found
    return Identification(Target.OTHER, None, 0.0, ("no identification rule matched",), None)


@pytest.mark.parametrize("seed", range(6))
def test_identify_is_first_answer_of_all_rules(seed: int) -> None:
    rng = random.Random(seed)
    answered: set[str] = set()
    for _ in range(1500):
        f = _facts(rng)
        expected = _reference_identify(f)
        assert identify(f) == expected, f
        answered.add(f"{expected.target.value}/{expected.app}")
    assert len(answered) >= 15  # the flows above reach many different rules


@pytest.mark.parametrize("seed", range(3))
def test_skipped_rules_answer_nothing_for_other_protocols(seed: int) -> None:
    rng = random.Random(100 + seed)
    for _ in range(1500):
        f = _facts(rng)
        for rule, protos in RULE_PROTOS.items():
            if f.proto not in protos:
                assert rule(f) is None, (rule.__name__, f)


def test_no_match_answer() -> None:
    f = FlowFacts("udp", "192.0.2.1", 40000, "198.51.100.1", 53, (b"\x12\x34\x01\x00",), ())
    assert identify(f) is NO_MATCH
    assert NO_MATCH == Identification(Target.OTHER, None, 0.0,
                                      ("no identification rule matched",), None)


def _reference_is_whatsapp_name(name: str) -> bool:
    n = name.strip().lower().rstrip(".")
    if not n:
        return False
    suffixes: set[str] = set()
    patterns: list[re.Pattern[str]] = []
    for entry in _data_lines("whatsapp_domains.txt"):
        entry = entry.lower().rstrip(".")
        if "*" in entry:
            rx = "".join("[a-z0-9-]*" if part == "*" else re.escape(part)
                         for part in re.split(r"(\*)", entry))
            patterns.append(re.compile(rx + r"\Z"))
        else:
            suffixes.add(entry)
    labels = n.split(".")
    if any(".".join(labels[i:]) in suffixes for i in range(len(labels))):
        return True
    return any(p.match(n) for p in patterns)


def test_whatsapp_name_match_unchanged() -> None:
    names = [
        "whatsapp.net", "g.whatsapp.net", "G.WhatsApp.NET.", " mmg.whatsapp.net ",
        "notwhatsapp.net", "whatsapp.net.evil.com", "a..whatsapp.net", ".whatsapp.net",
        "whatsapp.com", "web.whatsapp.com", "wa.me", "x.wa.me", "ewa.me", "wa.me.",
        "whatsapp-cdn-shv-01-ams2.fbcdn.net", "whatsapp-cdn-shv-.fbcdn.net",
        "whatsapp-cdn-shv-01.fbcdn.net.example", "xwhatsapp-cdn-shv-01.fbcdn.net",
        "media-ams2-1.cdn.whatsapp.net", "", ".", "..", "net", "whatsapp", "example.org",
        "whatsapp.net\\046evil", "whatsapp.ne", "hatsapp.net",
    ]
    rng = random.Random(3)
    alphabet = "abcdefghijklmnopqrstuvwxyzw.-AW"
    names += ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 20)))
              + rng.choice(["", ".whatsapp.net", "whatsapp.net", ".wa.me", ".fbcdn.net"])
              for _ in range(3000)]
    for name in names:
        assert is_whatsapp_name(name) == _reference_is_whatsapp_name(name), name
