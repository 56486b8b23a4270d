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


def tcp(first: bytes, port: int = 8388, sizes: tuple[int, ...] | None = None,
        handshake_seen: bool = True) -> FlowFacts:
    return FlowFacts("tcp", "192.0.2.10", 50000, "198.51.100.7", port, (first,), (),
                     client_sizes=sizes if sizes is not None else (0, 0, len(first)),
                     handshake_seen=handshake_seen)


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
    ex = fep.evaluate(b"abcdef" + SS_FIRST)
    assert ex.rule == "Ex2" and ex.printable_fraction < 0.5
    assert fep.evaluate(b"abcde\x80" + SS_FIRST).rule is None


def test_ex3_mostly_printable() -> None:
    # binary first bytes (Ex2 silent), popcount near 4, runs of 18 printable at most
    data = b"\x00\x9f\x01" + bytes(range(0x30, 0x7a)) * 2
    data = bytes(b if i % 19 else 0x90 for i, b in enumerate(data))
    ex = fep.evaluate(data)
    assert ex.rule == "Ex3" and ex.printable_fraction > 0.5 and ex.longest_printable_run <= 20


RUN = b"Mq7#zK9@xW2!vB5$nR8&y"  # 21 printable bytes, popcount ~4 per byte


def test_ex4_printable_run() -> None:
    data = SS_FIRST[:40] + b"\x80" + RUN + b"\x80" + SS_FIRST[40:]
    ex = fep.evaluate(data)
    assert ex.rule == "Ex4" and ex.longest_printable_run == 21 and ex.printable_fraction < 0.5
    # exactly 20 contiguous printable bytes is not enough (the paper: "more than 20")
    data = SS_FIRST[:40] + b"\x80" + RUN[:20] + b"\x80" + SS_FIRST[40:]
    ex = fep.evaluate(data)
    assert ex.longest_printable_run == 20 and ex.rule is None


@pytest.mark.parametrize("prefix", [b"\x16\x03\x01", b"\x17\x03\x03", b"GET ", b"POST"])
def test_ex5_tls_http_prefix(prefix: bytes) -> None:
    assert fep.evaluate(prefix + SS_FIRST).rule == "Ex5"


def test_printable_text_on_random_port_is_not_fep() -> None:
    text = b"HELO mail.example.org\r\nsome ordinary line-based protocol text here\r\n"
    ident = identify(tcp(text, port=40123))
    assert ident.target is Target.OTHER and ident.app is None


def test_short_payload_is_not_judged() -> None:
    assert identify(tcp(SS_FIRST[:fep.MIN_LENGTH - 1])).target is Target.OTHER
    assert identify(tcp(SS_FIRST[:fep.MIN_LENGTH])).target is Target.SHADOWSOCKS


def test_mid_stream_first_payload_is_not_judged() -> None:
    # empty packets are recorded but the first client packet already carries data
    assert identify(tcp(SS_FIRST, sizes=(len(SS_FIRST), 0, 0))).target is Target.OTHER
    # sizes of payload packets only (no zeros anywhere): cannot tell, judged
    assert identify(tcp(SS_FIRST, sizes=(len(SS_FIRST),))).target is Target.SHADOWSOCKS
    # roles reversed: the "client" sends from a service port to an ephemeral one
    f = FlowFacts("tcp", "119.235.235.84", 443, "192.168.5.16", 53406, (SS_FIRST,), (),
                  client_sizes=(len(SS_FIRST),))
    assert identify(f).target is Target.OTHER


def test_udp_is_not_judged() -> None:
    f = FlowFacts("udp", "192.0.2.10", 50000, "198.51.100.7", 8388, (SS_FIRST,), ())
    assert identify(f).target is Target.OTHER
