"""The C DNS parser (analyzer/_cdns.c) against the Python reference, message by message.

Equal results (the frozen dataclasses compare field by field, anomalies in order included)
or the same DecodeError reason, on real messages from the bundled captures, the decoder
tests' hand-built messages, and many mutations and truncations of them (hostile input).
"""
from __future__ import annotations

import os
import random
import struct
from pathlib import Path
from typing import Union

import pytest

from analyzer.decode import dns as D
from analyzer.decode.dns import DnsMessage
from analyzer.sources.files import open_reader
from analyzer.status import DecodeError

from .test_dns_decode import header, name, ptr, question, rich_response, rr, simple_response

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(D._native is None and os.environ.get("CI") != "true",
                                reason="analyzer._cdns is not built")


def _outcome(fn: object, data: bytes) -> Union[DnsMessage, str]:
    try:
        return fn(data)  # type: ignore[operator,no-any-return]
    except DecodeError as e:
        return "DecodeError:" + e.reason


def _same(data: bytes) -> None:
    assert D._native is not None, "CI must build analyzer._cdns"
    ref = _outcome(D.parse_dns_reference, data)
    fast = _outcome(D.parse_dns, data)
    assert ref == fast, data.hex()


def _udp53_payloads(path: Path) -> list[bytes]:
    import dpkt

    out = []
    with open(path, "rb") as fh:
        try:
            reader = dpkt.pcap.Reader(fh)
        except ValueError:
            return []
        for _ts, buf in reader:
            try:
                ip = dpkt.ethernet.Ethernet(buf).data
            except Exception:
                continue
            udp = getattr(ip, "data", None)
            if isinstance(udp, dpkt.udp.UDP) and 53 in (udp.sport, udp.dport):
                out.append(bytes(udp.data))
    return out


def _corpus() -> list[bytes]:
    msgs = [simple_response(), rich_response()]
    for p in sorted((ROOT / "captures").glob("*.pcap")):
        msgs += _udp53_payloads(p)
    # types and corner cases the captures lack
    q = question(name(b"a", b"example", b"com"))
    msgs.append(header(qd=1, an=1, flags=0x8180) + q + rr(ptr(12), 41, b""))  # OPT in answers
    msgs.append(header(qd=1, ar=2, flags=0x8180) + q + rr(b"\x00", 41, b"", ttl=0x01008000)
                + rr(b"\x00", 41, b""))  # two OPTs, extended rcode, DO
    msgs.append(header(qd=1, ar=1) + q + rr(ptr(12), 41, b"\x00\x0a\x00\x00"))  # non-root owner
    msgs.append(header(qd=1, an=1, flags=0x8180) + q + rr(ptr(12), 1, b"\x01\x02\x03"))  # bad A
    msgs.append(header(qd=1, an=1, flags=0x8180) + q + rr(ptr(12), 5, name(b"x") + b"\x00"))
    msgs.append(header(qd=1, an=1, flags=0x81C0) + q + rr(ptr(12), 16, b"\x05he\x00lo"))
    msgs.append(header(qd=2, flags=0x0100) + q + q[:5])  # second question cut
    msgs.append(header(qd=1, an=3) + q)  # counts lie
    msgs.append(header(qd=1) + q + rr(ptr(12), 1, b"\x01\x02\x03\x04"))  # extra records
    msgs.append(header(qd=1) + q + b"\xff\xfe")  # trailing bytes
    msgs.append(header(qd=1) + question(name(b"A.B", b"\\x\x00\xff", b"C")))  # escapes, case
    return msgs


def test_corpus_is_rich_enough() -> None:
    msgs = _corpus()
    assert len(msgs) > 40
    kinds = {type(_outcome(D.parse_dns_reference, m)).__name__ for m in msgs}
    assert kinds == {"DnsMessage"}


def test_real_and_built_messages_equal() -> None:
    for m in _corpus():
        _same(m)


def test_every_truncation_equal() -> None:
    for m in _corpus()[:60]:
        for cut in range(len(m) + 1):
            _same(m[:cut])


def test_mutations_equal() -> None:
    rnd = random.Random(20261128)
    corpus = _corpus()
    for _ in range(20_000):
        m = bytearray(rnd.choice(corpus))
        for _k in range(rnd.randint(1, 6)):
            i = rnd.randrange(len(m))
            m[i] = rnd.choice([0, 0xC0, 0xC0 | rnd.randrange(4), 12, 0x3F, 0x40, 0x80, 41, 6, 15,
                               rnd.randrange(256)])
        if rnd.random() < 0.2:
            m = m[: rnd.randrange(len(m) + 1)]
        if rnd.random() < 0.1:
            m += bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 20)))
        _same(bytes(m))


def test_pointer_soup_and_long_names_equal() -> None:
    rnd = random.Random(7)
    for _ in range(2_000):
        body = bytes(rnd.choice([0xC0, 0x0C, 0x0D, 0x01, 0x3F, 0x00, 0x61]) for _ in range(300))
        _same(header(qd=1, an=2, ns=1, ar=1) + body)
    long_name = name(*([b"a" * 63] * 3 + [b"b" * 61]))
    _same(header(qd=1) + question(long_name))
    _same(header(qd=1) + question(long_name[:-1] + b"\x01c\x00"))
    _same(struct.pack("!6H", 1, 0x8180, 1, 1, 0, 0) + question(name(b"x")) + rr(ptr(12), 6,
          name(b"ns") + ptr(12) + name(b"h") + struct.pack("!5I", 1, 2, 3, 4, 5)))
