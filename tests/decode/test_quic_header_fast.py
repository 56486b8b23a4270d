"""The shortcuts of analyzer.decode.quic against the full header parser: ``is_quic_long_header``
(checks without building the header) and the cheap rejection at the top of
``parse_quic_initial`` must agree with ``parse_long_header`` on every input, hostile included."""
from __future__ import annotations

import random
from typing import Iterator

from analyzer.decode import quic
from analyzer.decode.quic import (
    PACKET_TYPE_INITIAL,
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    QUIC_VERSION_DRAFT_29,
    derive_client_initial_keys,
    is_quic_long_header,
    parse_long_header,
    parse_quic_initial,
)

VERSIONS = [QUIC_VERSION_1, QUIC_VERSION_2, QUIC_VERSION_DRAFT_29, 0, 0xFF00001C, 0x51303530,
            0xFACEB002, 0x0A0A0A0A]


def _varint(rng: random.Random) -> bytes:
    size = rng.choice([1, 2, 4, 8])
    value = rng.randrange(0, 64 if size == 1 else 2 ** (8 * size - 2))
    if rng.random() < 0.5:
        value = rng.randrange(0, 40)  # small, so that it may fit the datagram
        size = 1 if value < 64 else 2
    prefix = {1: 0, 2: 0x40, 4: 0x80, 8: 0xC0}[size]
    raw = value.to_bytes(size, "big")
    return bytes([raw[0] | prefix]) + raw[1:]


def _headers(rng: random.Random) -> Iterator[bytes]:
    for _ in range(3000):
        first = rng.choice([0xC0, 0xD0, 0xE0, 0xF0, 0x80, 0x40, rng.randrange(256)])
        first |= rng.randrange(16)
        version = rng.choice(VERSIONS)
        dcid = rng.randbytes(rng.choice([0, 8, 20, 21, rng.randrange(256)]))
        scid = rng.randbytes(rng.choice([0, 5, 20, 21, rng.randrange(64)]))
        body = b""
        if rng.random() < 0.8:
            token = rng.randbytes(rng.randrange(0, 30))
            body = _varint(rng) + token + _varint(rng) + rng.randbytes(rng.randrange(0, 80))
        data = bytes([first]) + version.to_bytes(4, "big") + bytes([len(dcid) & 0xFF]) + dcid \
            + bytes([len(scid)]) + scid + body
        yield data
        for _ in range(3):
            yield data[:rng.randrange(len(data) + 1)]
        b = bytearray(data)
        b[rng.randrange(len(b))] = rng.randrange(256)
        yield bytes(b)


def test_is_quic_long_header_matches_parse_long_header() -> None:
    rng = random.Random(5)
    seen = {True: 0, False: 0}
    for data in _headers(rng):
        expected = parse_long_header(data) is not None
        assert is_quic_long_header(data) == expected, data.hex()
        seen[expected] += 1
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 40))
        assert is_quic_long_header(data) == (parse_long_header(data) is not None)
    assert seen[True] > 1000 and seen[False] > 1000


def test_parse_quic_initial_rejects_only_what_cannot_decrypt() -> None:
    """What the cheap test at the top of parse_quic_initial turns away is not an Initial of a
    version with Initial keys (so the full path would return None as well)."""
    rng = random.Random(6)
    for data in _headers(rng):
        header = parse_long_header(data)
        cheap_reject = (
            len(data) < quic.MIN_LONG_HEADER_LENGTH or not data[0] & quic.HEADER_FORM_BIT
            or quic._salt_for(int.from_bytes(data[1:5], "big")) is None
            or quic._packet_type(int.from_bytes(data[1:5], "big"), data[0])
            != PACKET_TYPE_INITIAL
        )
        if cheap_reject:
            assert header is None or header.packet_type != PACKET_TYPE_INITIAL \
                or derive_client_initial_keys(header.dcid, header.version) is None
            assert parse_quic_initial(data) is None


def test_initial_keys_are_cached_per_dcid() -> None:
    dcid = bytes.fromhex("8394c8f03e515708")
    a = derive_client_initial_keys(dcid)
    assert a is not None
    assert derive_client_initial_keys(bytes(bytearray(dcid))) is a  # equal, not the same object
    assert derive_client_initial_keys(dcid, server=True) != a
    assert derive_client_initial_keys(dcid, QUIC_VERSION_2) != a
