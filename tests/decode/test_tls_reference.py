"""The one-pass ClientHello/ServerHello decoders of analyzer.decode.tls against an obviously
correct reference: the cursor-based decoder they replaced, kept here verbatim in spirit (one
``_Reader`` method call per field). Both must agree on every input -- real hellos from the lab
and public captures, hand-built hellos with odd extensions, and thousands of mutations of them
(truncations, byte flips, lying lengths, insertions) -- status and decoded fields alike."""
from __future__ import annotations

import random
import struct
from pathlib import Path
from typing import Callable, Iterator, Optional, TypeVar

import dpkt
import pytest

from analyzer.decode import tls
from analyzer.decode.tls import ClientHello, ServerHello

ROOT = Path(__file__).resolve().parents[2]
LAB = ROOT / "captures"
PUBLIC = ROOT.parent / "shared" / "captures-public"

# --- reference decoder ---------------------------------------------------------------------


class _Truncated(Exception):
    pass


class _Malformed(Exception):
    pass


class _Reader:
    """Cursor over ``buf`` for one structure whose declared end is ``limit``: reading past
    ``limit`` is malformed, past the available bytes (but within ``limit``) truncated."""

    def __init__(self, buf: bytes, pos: int, limit: int) -> None:
        self._buf = buf
        self._pos = pos
        self._limit = limit

    @property
    def remaining(self) -> int:
        return self._limit - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._limit

    def raw(self, n: int) -> bytes:
        end = self._pos + n
        if end > self._limit:
            raise _Malformed
        if end > len(self._buf):
            raise _Truncated
        out = self._buf[self._pos:end]
        self._pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self.raw(n), "big")

    def vector(self, length_size: int, min_len: int = 0,
               max_len: Optional[int] = None) -> _Reader:
        length = self.uint(length_size)
        if length < min_len or (max_len is not None and length > max_len):
            raise _Malformed
        start = self._pos
        end = start + length
        if end > self._limit:
            raise _Malformed
        self._pos = end
        return _Reader(self._buf, start, end)

    def rest(self) -> bytes:
        return self.raw(self._limit - self._pos)


_T = TypeVar("_T")


def _uint_list(r: _Reader, size: int) -> tuple[int, ...]:
    out: list[int] = []
    while not r.at_end():
        out.append(r.uint(size))
    return tuple(out)


def _reassemble(stream: bytes) -> tuple[bytes, int, bool]:
    parts: list[bytes] = []
    have = records = pos = 0
    need: Optional[int] = None
    n = len(stream)
    while pos < n:
        if need is not None and have >= need:
            break
        if n - pos < 5:
            head = stream[pos:]
            ok = not (
                (len(head) >= 1 and head[0] != 22) or (len(head) >= 2 and head[1] != 3)
                or (len(head) >= 3 and head[2] > 4)
                or (len(head) >= 4 and (head[3] << 8) > tls.MAX_CIPHERTEXT_LENGTH)
            )
            return b"".join(parts), records, not ok
        ctype = stream[pos]
        version = (stream[pos + 1] << 8) | stream[pos + 2]
        length = (stream[pos + 3] << 8) | stream[pos + 4]
        if ctype != 22 or not 0x0300 <= version <= 0x0304:
            return b"".join(parts), records, True
        if length == 0 or length > tls.MAX_CIPHERTEXT_LENGTH:
            return b"".join(parts), records, True
        fragment = stream[pos + 5:pos + 5 + length]
        parts.append(fragment)
        have += len(fragment)
        records += 1
        pos += 5 + length
        if need is None and have >= 4:
            need = 4 + int.from_bytes(b"".join(parts)[1:4], "big")
    message = b"".join(parts)
    if need is not None:
        message = message[:need]
    return message, records, False


def _handshake_body(msg: bytes, msg_type: int, max_len: int) -> _Reader:
    header = _Reader(msg, 0, 4)
    if header.uint(1) != msg_type:
        raise _Malformed
    length = header.uint(3)
    if length > max_len:
        raise _Malformed
    return _Reader(msg, 4, 4 + length)


def _legacy_version(r: _Reader) -> int:
    major = r.uint(1)
    if major != 3:
        raise _Malformed
    return (major << 8) | r.uint(1)


def _lenient(parse: Callable[[_Reader], _T], data: bytes, default: _T) -> _T:
    try:
        return parse(_Reader(data, 0, len(data)))
    except (_Truncated, _Malformed):
        return default


def _server_name(r: _Reader) -> Optional[bytes]:
    names = r.vector(2, min_len=1)
    while not names.at_end():
        name_type = names.uint(1)
        name = names.vector(2).rest()
        if name_type == 0:
            return name
    return None


def _alpn(r: _Reader) -> tuple[str, ...]:
    names = r.vector(2)
    out: list[str] = []
    while not names.at_end():
        out.append(names.vector(1).rest().decode("ascii", errors="backslashreplace"))
    return tuple(out)


def _key_shares(r: _Reader) -> tuple[int, ...]:
    shares = r.vector(2)
    out: list[int] = []
    while not shares.at_end():
        out.append(shares.uint(2))
        shares.vector(2)
    return tuple(out)


def ref_decode_client_hello(msg: bytes, records: int) -> ClientHello:
    body = _handshake_body(msg, 1, tls.MAX_CLIENT_HELLO_LENGTH)
    legacy_version = _legacy_version(body)
    random_ = body.raw(32)
    session_id = body.vector(1, max_len=32)
    suites_r = body.vector(2, min_len=2, max_len=2**16 - 2)
    if suites_r.remaining % 2:
        raise _Malformed
    cipher_suites = _uint_list(suites_r, 2)
    compression = _uint_list(body.vector(1, min_len=1), 1)
    ext_types: list[int] = []
    ext_data: dict[int, bytes] = {}
    if not body.at_end():
        exts = body.vector(2)
        while not exts.at_end():
            ext_type = exts.uint(2)
            data = exts.vector(2).rest()
            ext_types.append(ext_type)
            ext_data.setdefault(ext_type, data)
    body.rest()
    sni_raw = _lenient(_server_name, ext_data[0], None) if 0 in ext_data else None
    e: tuple[int, ...] = ()
    return ClientHello(
        legacy_version=legacy_version,
        supported_versions=_lenient(lambda r: _uint_list(r.vector(1), 2),
                                    ext_data.get(43, b""), e),
        cipher_suites=cipher_suites,
        extensions=tuple(ext_types),
        sni=None if sni_raw is None else sni_raw.decode("ascii", errors="backslashreplace"),
        alpn=_lenient(_alpn, ext_data.get(16, b""), ()),
        ech=0xFE0D in ext_data,
        esni=0xFFCE in ext_data,
        session_id_len=session_id.remaining,
        sni_raw=sni_raw,
        random=random_,
        compression_methods=compression,
        supported_groups=_lenient(lambda r: _uint_list(r.vector(2), 2), ext_data.get(10, b""), e),
        ec_point_formats=_lenient(lambda r: _uint_list(r.vector(1), 1), ext_data.get(11, b""), e),
        signature_algorithms=_lenient(lambda r: _uint_list(r.vector(2), 2),
                                      ext_data.get(13, b""), e),
        key_share_groups=_lenient(_key_shares, ext_data.get(51, b""), e),
        handshake_length=len(msg) - 4,
        record_count=records,
    )


def ref_decode_server_hello(msg: bytes) -> ServerHello:
    body = _handshake_body(msg, 2, tls.MAX_SERVER_HELLO_LENGTH)
    legacy_version = _legacy_version(body)
    random_ = body.raw(32)
    session_id = body.vector(1, max_len=32)
    cipher_suite = body.uint(2)
    compression_method = body.uint(1)
    ext_types: list[int] = []
    selected_version = legacy_version
    seen_versions = False
    if not body.at_end():
        exts = body.vector(2)
        while not exts.at_end():
            ext_type = exts.uint(2)
            data = exts.vector(2)
            ext_types.append(ext_type)
            if ext_type == 43 and not seen_versions:
                seen_versions = True
                selected_version = data.uint(2)
    body.rest()
    return ServerHello(legacy_version, selected_version, cipher_suite,
                       random_ == tls.HELLO_RETRY_REQUEST_RANDOM, tuple(ext_types),
                       session_id.remaining, compression_method, random_)


def _status(decode: Callable[[], _T]) -> tuple[str, Optional[_T]]:
    try:
        return "complete", decode()
    except _Truncated:
        return "need_more", None
    except _Malformed:
        return "not_tls", None


def ref_client_hello(stream: bytes) -> tuple[str, Optional[ClientHello]]:
    msg, records, bad = _reassemble(stream)
    if bad:
        return "not_tls", None
    return _status(lambda: ref_decode_client_hello(msg, records))


def ref_client_hello_handshake(msg: bytes) -> tuple[str, Optional[ClientHello]]:
    return _status(lambda: ref_decode_client_hello(msg, 0))


def ref_server_hello(stream: bytes) -> tuple[str, Optional[ServerHello]]:
    msg, _, bad = _reassemble(stream)
    if bad:
        return "not_tls", None
    return _status(lambda: ref_decode_server_hello(msg))


# --- inputs --------------------------------------------------------------------------------


def _tcp_streams(path: Path) -> Iterator[bytes]:
    """First bytes of every TCP direction (segments in sequence order, up to a gap)."""
    segs: dict[tuple[bytes, int, bytes, int], dict[int, bytes]] = {}
    with path.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        link = reader.datalink()
        for _, buf in reader:
            try:
                frame = (dpkt.ethernet.Ethernet(buf) if link == 1 else
                         dpkt.sll.SLL(buf) if link == 113 else dpkt.sll2.SLL2(buf))
            except dpkt.UnpackError:
                continue
            ip = frame.data
            if not isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) or \
                    not isinstance(ip.data, dpkt.tcp.TCP) or not ip.data.data:
                continue
            t = ip.data
            segs.setdefault((bytes(ip.src), t.sport, bytes(ip.dst), t.dport), {}) \
                .setdefault(t.seq, bytes(t.data))
    for by_seq in segs.values():
        start = min(by_seq)
        out = bytearray()
        for seq in sorted(by_seq):
            if seq - start > len(out):
                break
            out += by_seq[seq][len(out) - (seq - start):]
        yield bytes(out[:8192])


def _capture_hellos() -> list[bytes]:
    paths = sorted(LAB.glob("*.pcap"))
    if PUBLIC.is_dir():
        paths += [p for p in sorted(PUBLIC.glob("*.pcap")) if "openvpn" not in p.name
                  and "wireguard" not in p.name]
    out: list[bytes] = []
    for path in paths:
        try:
            out.extend(s for s in _tcp_streams(path) if s[:1] == b"\x16")
        except (ValueError, dpkt.NeedData):
            continue
    return out


def _vec(size: int, data: bytes) -> bytes:
    return len(data).to_bytes(size, "big") + data


def _ext(t: int, data: bytes) -> bytes:
    return struct.pack("!H", t) + _vec(2, data)


def _hand_built(rng: random.Random) -> bytes:
    """A ClientHello with a random mix of well-formed and broken extensions, in records."""
    pool = [
        _ext(0, _vec(2, b"\x00" + _vec(2, b"www.example.com"))),
        _ext(0, _vec(2, b"\x01" + _vec(2, b"x") + b"\x00" + _vec(2, b"b\xffd.org"))),
        _ext(0, b""), _ext(0, b"\x00\x00"), _ext(0, b"\x00\x05\x00\x00\x09ab"),
        _ext(16, _vec(2, _vec(1, b"h2") + _vec(1, b"http/1.1"))), _ext(16, b"\x00\x03\x02h2"),
        _ext(16, _vec(2, _vec(1, b"\xc3\xa9"))),
        _ext(43, _vec(1, b"\x03\x04\x03\x03")), _ext(43, b"\x03\x03\x04\x03"),
        _ext(10, _vec(2, b"\x00\x1d\x00\x17")), _ext(10, b"\x00\x03\x00\x1d\x00"),
        _ext(11, _vec(1, b"\x00\x01\x02")), _ext(11, b"\x05\x00"),
        _ext(13, _vec(2, b"\x04\x03\x08\x04")),
        _ext(51, _vec(2, b"\x00\x1d" + _vec(2, b"k" * 32) + b"\x00\x17" + _vec(2, b""))),
        _ext(51, b"\x00\x06\x00\x1d\x00\x09ab"), _ext(51, b"\x00\x03\x00\x1d\x00"),
        _ext(0xFE0D, b"\x00" * 9), _ext(0xFFCE, b""), _ext(0x0A0A, b""), _ext(21, b"\x00" * 40),
    ]
    exts = b"".join(rng.choice(pool) for _ in range(rng.randrange(0, 9)))
    body = (b"\x03" + bytes([rng.choice([1, 3, 4])]) + rng.randbytes(32)
            + _vec(1, rng.randbytes(rng.choice([0, 8, 32])))
            + _vec(2, rng.randbytes(2 * rng.randrange(1, 20))) + _vec(1, b"\x00"))
    if rng.random() < 0.9:
        body += _vec(2, exts)
    if rng.random() < 0.1:
        body += b"trailing"
    msg = b"\x01" + len(body).to_bytes(3, "big") + body
    cut = [rng.randrange(1, len(msg)) for _ in range(rng.randrange(0, 3))]
    out = b""
    prev = 0
    for c in sorted(set(cut)) + [len(msg)]:
        out += b"\x16\x03\x01" + _vec(2, msg[prev:c])
        prev = c
    return out


def _server_hellos(rng: random.Random) -> list[bytes]:
    out = []
    for _ in range(40):
        exts = b"".join(rng.choice([_ext(43, b"\x03\x04"), _ext(43, b"\x03"), _ext(51, b"k" * 36),
                                    _ext(43, b""), _ext(0xFF01, b"\x00")])
                        for _ in range(rng.randrange(0, 4)))
        rnd = tls.HELLO_RETRY_REQUEST_RANDOM if rng.random() < 0.2 else rng.randbytes(32)
        body = b"\x03\x03" + rnd + _vec(1, rng.randbytes(32)) + b"\x13\x01\x00"
        if rng.random() < 0.8:
            body += _vec(2, exts)
        msg = b"\x02" + len(body).to_bytes(3, "big") + body
        out.append(b"\x16\x03\x03" + _vec(2, msg) + b"\x14\x03\x03\x00\x01\x01")
    return out


def _mutants(data: bytes, rng: random.Random, count: int) -> Iterator[bytes]:
    yield data
    for cut in range(0, min(len(data), 400)):
        yield data[:cut]
    for cut in range(400, len(data), 97):
        yield data[:cut]
    for _ in range(count):
        b = bytearray(data)
        kind = rng.randrange(5)
        if not b:
            break
        i = rng.randrange(len(b))
        if kind == 0:
            b[i] = rng.randrange(256)
        elif kind == 1:  # nudge a (possible) length field
            b[i] = (b[i] + rng.choice([-2, -1, 1, 2, 0x40])) & 0xFF
        elif kind == 2:
            b[i:i] = rng.randbytes(rng.randrange(1, 4))
        elif kind == 3:
            del b[i:i + rng.randrange(1, 4)]
        else:
            b[i] = rng.choice([0x00, 0xFF, 0x01, 0x20])
        yield bytes(b[:rng.choice([len(b), len(b), rng.randrange(len(b) + 1)])])


# --- tests ---------------------------------------------------------------------------------


def _check_client(data: bytes) -> None:
    expected = ref_client_hello(data)
    assert tls.client_hello_and_status(data) == expected, data.hex()
    assert tls.client_hello_status(data) == expected[0]
    assert tls.parse_client_hello(data) == expected[1]
    ch = expected[1]
    assert tls.client_hello_trigger(data) == (
        expected[0], None if ch is None else (ch.sni, ch.alpn, ch.ech, ch.esni))
    msg = data[5:]
    expected_hs = ref_client_hello_handshake(msg)
    assert (tls.client_hello_handshake_status(msg), tls.parse_client_hello_handshake(msg)) \
        == expected_hs, msg.hex()


def _check_server(data: bytes) -> None:
    expected = ref_server_hello(data)
    assert (tls.server_hello_status(data), tls.parse_server_hello(data)) == expected, data.hex()


def test_capture_hellos_agree_with_reference() -> None:
    streams = _capture_hellos()
    assert len(streams) >= 10  # the lab captures alone hold TLS handshakes
    rng = random.Random(1)
    complete = 0
    for data in streams:
        complete += ref_client_hello(data)[0] == "complete"
        for m in _mutants(data, rng, 60):
            _check_client(m)
            _check_server(m)
    assert complete >= 5


@pytest.mark.parametrize("seed", range(8))
def test_hand_built_hellos_agree_with_reference(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(25):
        for m in _mutants(_hand_built(rng), rng, 40):
            _check_client(m)


@pytest.mark.parametrize("seed", range(4))
def test_server_hellos_agree_with_reference(seed: int) -> None:
    rng = random.Random(100 + seed)
    for data in _server_hellos(rng):
        for m in _mutants(data, rng, 40):
            _check_server(m)


def test_random_bytes_agree_with_reference() -> None:
    rng = random.Random(7)
    for _ in range(3000):
        data = rng.choice([b"\x16\x03\x01", b"\x16\x03\x03\x00", b"", b"\x01\x00"]) \
            + rng.randbytes(rng.randrange(0, 80))
        _check_client(data)
        _check_server(data)
