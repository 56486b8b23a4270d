"""Fully encrypted traffic: the exemption rules of Wu et al. (USENIX Security 2023)."""
from __future__ import annotations

import hashlib

import pytest

from analyzer.identify import fep, identify
from analyzer.model import FlowFacts, Target


def random_bytes(n: int, seed: bytes = b"ss") -> bytes:
    out = b""
    counter = 0
    while len(out) < n:
        out += hashlib.sha256(seed + counter.to_bytes(4, "big")).digest()
        counter += 1
    return out[:n]


def tcp(first: bytes, port: int = 8388, sizes: tuple[int, ...] | None = None) -> FlowFacts:
    return FlowFacts("tcp", "192.0.2.10", 50000, "198.51.100.7", port, (first,), (),
                     client_sizes=sizes if sizes is not None else (0, 0, len(first)))


# Shadowsocks AEAD first packet: salt(32) + encrypted length(2+16) + encrypted payload(+16)
SS_FIRST = random_bytes(32 + 18 + 40 + 16)


def test_random_first_packet_is_fep() -> None:
    ex = fep.evaluate(SS_FIRST)
    assert ex.rule is None and 3.4 < ex.popcount < 4.6
    ident = identify(tcp(SS_FIRST))
    assert ident.target is Target.SHADOWSOCKS and ident.app == "fep"
    assert ident.confidence == 0.5 and ident.handshake_answered is None
    assert any("not proof" in r for r in ident.reasons)


def test_ex1_popcount() -> None:
    low = bytes([0x01, 0x02, 0x04, 0x80, 0x03]) * 20  # ~1.2 bits per byte
    assert fep.evaluate(low).rule == "Ex1"
    high = bytes([0xFE, 0xFD, 0xF7, 0xEF, 0xFF]) * 20
    assert fep.evaluate(high).rule == "Ex1"
    assert identify(tcp(low)).target is Target.OTHER


def test_ex2_first_six_printable() -> None:
    data = b"abcdef" + random_bytes(80, b"ex2")
    assert fep.evaluate(data).rule in ("Ex1", "Ex2")
    assert fep.evaluate(b"abcdef" + SS_FIRST).rule == "Ex2"


def test_ex3_mostly_printable() -> None:
    # binary start (so Ex2 does not fire), then mostly printable
    data = b"\x00\x9f\x01" + bytes(range(0x30, 0x7a)) * 2
    data = bytes(b if i % 19 else 0x90 for i, b in enumerate(data))  # break long runs
    ex = fep.evaluate(data)
    assert ex.rule in ("Ex1", "Ex3")


def test_ex4_printable_run() -> None:
    data = SS_FIRST[:40] + b"A" * 21 + SS_FIRST[40:]
    ex = fep.evaluate(data)
    assert ex.longest_printable_run >= 21
    assert ex.rule in ("Ex1", "Ex3", "Ex4")


@pytest.mark.parametrize("prefix", [b"\x16\x03\x01", b"\x17\x03\x03", b"GET ", b"POST"])
def test_ex5_tls_http_prefix(prefix: bytes) -> None:
    data = prefix + SS_FIRST
    assert fep.evaluate(data).rule in ("Ex2", "Ex5")


def test_printable_text_on_random_port_is_not_fep() -> None:
    text = b"HELO mail.example.org\r\nsome ordinary line-based protocol text here\r\n"
    ident = identify(tcp(text, port=40123))
    assert ident.target is Target.OTHER and ident.app is None


def test_short_payload_is_not_judged() -> None:
    assert identify(tcp(SS_FIRST[:fep.MIN_LENGTH - 1])).target is Target.OTHER
    assert identify(tcp(SS_FIRST[:fep.MIN_LENGTH])).target is Target.SHADOWSOCKS


def test_mid_stream_first_payload_is_not_judged() -> None:
    # the first client packet already carries data: the capture began mid-connection
    assert identify(tcp(SS_FIRST, sizes=(len(SS_FIRST),))).target is Target.OTHER


def test_udp_is_not_judged() -> None:
    f = FlowFacts("udp", "192.0.2.10", 50000, "198.51.100.7", 8388, (SS_FIRST,), ())
    assert identify(f).target is Target.OTHER
