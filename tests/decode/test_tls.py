"""Tests for analyzer.decode.tls: hand-built and scapy-built hellos, fragmentation, hostile
input and the public captures in ../shared/captures-public."""
from __future__ import annotations

import dataclasses
import importlib
import os
import random
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional

import dpkt
import pytest

from analyzer.decode.tls import (
    EXT_ENCRYPTED_CLIENT_HELLO,
    EXT_ENCRYPTED_SERVER_NAME,
    HELLO_RETRY_REQUEST_RANDOM,
    ClientHello,
    client_hello_handshake_status,
    client_hello_status,
    looks_like_tls_record,
    parse_client_hello,
    parse_client_hello_handshake,
    parse_server_hello,
    parse_tls_alert,
    server_hello_status,
)

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures-public"
STATUSES = {"complete", "need_more", "not_tls"}

# --- builders ------------------------------------------------------------------------------


def u8(v: int) -> bytes:
    return struct.pack("!B", v)


def u16(v: int) -> bytes:
    return struct.pack("!H", v)


def u24(v: int) -> bytes:
    return struct.pack("!I", v)[1:]


def vec8(b: bytes) -> bytes:
    return u8(len(b)) + b


def vec16(b: bytes) -> bytes:
    return u16(len(b)) + b


def ext(ext_type: int, data: bytes) -> bytes:
    return u16(ext_type) + vec16(data)


def sni_ext(*names: bytes, name_type: int = 0) -> bytes:
    return ext(0, vec16(b"".join(u8(name_type) + vec16(n) for n in names)))


def alpn_ext(*protos: bytes) -> bytes:
    return ext(16, vec16(b"".join(vec8(p) for p in protos)))


def client_hello_msg(
    extensions: bytes,
    *,
    suites: tuple[int, ...] = (0x1301, 0x1302, 0x1303, 0xC02F),
    session_id: bytes = b"\x11" * 32,
    version: int = 0x0303,
    with_ext_block: bool = True,
) -> bytes:
    body = (
        u16(version)
        + bytes(range(32))
        + vec8(session_id)
        + vec16(b"".join(u16(s) for s in suites))
        + vec8(b"\x00")
        + (vec16(extensions) if with_ext_block else b"")
    )
    return u8(1) + u24(len(body)) + body


def records(msg: bytes, sizes: Optional[list[int]] = None, ctype: int = 22) -> bytes:
    """Wrap ``msg`` in TLS records of the given fragment sizes (last one takes the rest)."""
    out = b""
    pos = 0
    for size in sizes or []:
        out += u8(ctype) + u16(0x0301) + vec16(msg[pos:pos + size])
        pos += size
    if pos < len(msg):
        out += u8(ctype) + u16(0x0301) + vec16(msg[pos:])
    return out


def full_extensions(host: bytes = b"www.example.com") -> bytes:
    return b"".join([
        ext(0x0A0A, b""),  # GREASE
        sni_ext(host),
        ext(23, b""),
        ext(65281, b"\x00"),
        ext(10, vec16(u16(0x001D) + u16(0x0017) + u16(0x11EC))),
        ext(11, vec8(b"\x00")),
        ext(35, b""),
        alpn_ext(b"h2", b"http/1.1"),
        ext(13, vec16(u16(0x0403) + u16(0x0804))),
        ext(51, vec16(u16(0x001D) + vec16(b"\x42" * 32) + u16(0x0017) + vec16(b"\x04" * 65))),
        ext(45, vec8(b"\x01")),
        ext(43, vec8(u16(0x0304) + u16(0x0303))),
        ext(EXT_ENCRYPTED_CLIENT_HELLO, b"\x00\x00\x01\x00\x01\x05" + vec16(b"") + vec16(b"x" * 8)),
        ext(21, b"\x00" * 40),
    ])


FULL_MSG = client_hello_msg(full_extensions())
FULL_STREAM = records(FULL_MSG)


def server_hello_msg(random_: bytes, extensions: Optional[bytes], suite: int = 0x1301) -> bytes:
    body = u16(0x0303) + random_ + vec8(b"\x22" * 32) + u16(suite) + u8(0)
    if extensions is not None:
        body += vec16(extensions)
    return u8(2) + u24(len(body)) + body


# --- ClientHello decoding -------------------------------------------------------------------


def test_full_client_hello_fields() -> None:
    ch = parse_client_hello(FULL_STREAM)
    assert ch is not None
    assert ch.legacy_version == 0x0303
    assert ch.supported_versions == (0x0304, 0x0303)
    assert ch.cipher_suites == (0x1301, 0x1302, 0x1303, 0xC02F)
    assert ch.extensions == (0x0A0A, 0, 23, 65281, 10, 11, 35, 16, 13, 51, 45, 43, 0xFE0D, 21)
    assert ch.sni == "www.example.com"
    assert ch.sni_raw == b"www.example.com"
    assert ch.alpn == ("h2", "http/1.1")
    assert ch.ech is True
    assert ch.esni is False
    assert ch.session_id_len == 32
    assert ch.supported_groups == (0x001D, 0x0017, 0x11EC)
    assert ch.ec_point_formats == (0,)
    assert ch.signature_algorithms == (0x0403, 0x0804)
    assert ch.key_share_groups == (0x001D, 0x0017)
    assert ch.compression_methods == (0,)
    assert ch.random == bytes(range(32))
    assert ch.record_count == 1
    assert ch.handshake_length == len(FULL_MSG) - 4
    assert client_hello_status(FULL_STREAM) == "complete"
    # Same message without the record layer (QUIC CRYPTO form).
    raw = parse_client_hello_handshake(FULL_MSG)
    assert raw is not None and raw.sni == ch.sni and raw.record_count == 0
    assert client_hello_handshake_status(FULL_MSG) == "complete"


def test_scapy_built_client_hello() -> None:
    # scapy is untyped: reach it through Any-typed module objects.
    ext_mod: Any = importlib.import_module("scapy.layers.tls.extensions")
    hs_mod: Any = importlib.import_module("scapy.layers.tls.handshake")
    rec_mod: Any = importlib.import_module("scapy.layers.tls.record")
    hello = hs_mod.TLSClientHello(
        gmt_unix_time=0x01020304,
        random_bytes=b"\x07" * 28,
        ciphers=[0x1301, 0x1302, 0xC02F],
        ext=[
            ext_mod.TLS_Ext_ServerName(
                servernames=[ext_mod.ServerName(servername=b"blocked.example.org")]
            ),
            ext_mod.TLS_Ext_ALPN(protocols=[ext_mod.ProtocolName(protocol=b"h2")]),
            ext_mod.TLS_Ext_SupportedVersion_CH(versions=[0x0304, 0x0303]),
        ],
    )
    stream = bytes(rec_mod.TLS(msg=[hello]))
    ch = parse_client_hello(stream)
    assert ch is not None
    assert ch.sni == "blocked.example.org"
    assert ch.alpn == ("h2",)
    assert ch.cipher_suites == (0x1301, 0x1302, 0xC02F)
    assert ch.supported_versions == (0x0304, 0x0303)
    assert ch.extensions == (0, 16, 43)
    assert ch.random == b"\x01\x02\x03\x04" + b"\x07" * 28
    assert parse_client_hello_handshake(bytes(hello)) == dataclasses.replace(ch, record_count=0)


def test_minimal_tls10_client_hello_without_extensions() -> None:
    msg = client_hello_msg(b"", session_id=b"", version=0x0301, with_ext_block=False)
    ch = parse_client_hello(records(msg))
    assert ch is not None
    assert ch.legacy_version == 0x0301
    assert ch.extensions == () and ch.sni is None and ch.alpn == ()
    assert ch.supported_versions == () and ch.session_id_len == 0


def test_esni_and_ech_flags() -> None:
    msg = client_hello_msg(sni_ext(b"cover.example") + ext(EXT_ENCRYPTED_SERVER_NAME, b"\x00" * 10))
    ch = parse_client_hello(records(msg))
    assert ch is not None and ch.esni and not ch.ech and ch.sni == "cover.example"


@pytest.mark.parametrize(
    "raw, expected",
    [
        (b"ExAmPle.COM", "ExAmPle.COM"),  # never case-folded
        (b"example.com.", "example.com."),  # trailing dot kept
        (b"caf\xc3\xa9.example", "caf\\xc3\\xa9.example"),
        (b"a\x00b", "a\x00b"),  # control byte kept as is
        (b"192.168.115.75", "192.168.115.75"),  # IP literal (seen in 1kxun.pcap)
        (b"\xff" * 3, "\\xff\\xff\\xff"),
    ],
)
def test_sni_is_byte_exact(raw: bytes, expected: str) -> None:
    ch = parse_client_hello(records(client_hello_msg(sni_ext(raw))))
    assert ch is not None
    assert ch.sni == expected
    assert ch.sni_raw == raw


def test_sni_first_host_name_entry_and_unknown_name_type() -> None:
    names = vec16(u8(7) + vec16(b"other") + u8(0) + vec16(b"first.example") + u8(0) + vec16(b"b"))
    ch = parse_client_hello(records(client_hello_msg(ext(0, names))))
    assert ch is not None and ch.sni == "first.example"


def test_empty_or_broken_sni_extension_does_not_hide_hello() -> None:
    for bad in (b"", u16(50) + u8(0) + vec16(b"x"), vec16(u8(0) + u16(99) + b"abc")):
        ch = parse_client_hello(records(client_hello_msg(ext(0, bad) + alpn_ext(b"h2"))))
        assert ch is not None
        assert ch.sni is None
        assert ch.alpn == ("h2",)


# --- Fragmentation and prefixes ------------------------------------------------------------


@pytest.mark.parametrize("sizes", [[100], [7, 200], [1, 1, 1], [3]])
def test_fragmented_over_records(sizes: list[int]) -> None:
    stream = records(FULL_MSG, sizes)
    n_records = len(sizes) + 1
    ch = parse_client_hello(stream)
    assert ch is not None
    assert ch.sni == "www.example.com"
    assert ch.record_count == n_records
    for i in range(len(stream)):
        assert client_hello_status(stream[:i]) == "need_more", i
        assert parse_client_hello(stream[:i]) is None
    assert client_hello_status(stream) == "complete"


def test_two_and_three_records_over_tcp_segments() -> None:
    for sizes in ([150], [60, 150]):
        stream = records(FULL_MSG, sizes)
        # Segments that do not align with records (like an MSS-limited sender).
        cuts = [0, 3, 64, 65, 200, 201, 333, len(stream)]
        seen: list[str] = []
        for end in cuts[1:]:
            seen.append(client_hello_status(stream[:end]))
        assert seen[:-1] == ["need_more"] * (len(seen) - 1)
        assert seen[-1] == "complete"
        ch = parse_client_hello(stream)
        assert ch is not None and ch.record_count == len(sizes) + 1


def test_data_after_client_hello_is_ignored() -> None:
    ccs = u8(20) + u16(0x0303) + vec16(b"\x01")
    app = u8(23) + u16(0x0303) + vec16(os.urandom(50))
    ch = parse_client_hello(FULL_STREAM + ccs + app)
    assert ch is not None and ch.sni == "www.example.com"
    # Two handshake messages in one record: only the first one is decoded.
    both = records(FULL_MSG + u8(1) + u24(3) + b"abc")
    assert parse_client_hello(both) is not None


def test_every_prefix_of_handshake_message() -> None:
    for i in range(len(FULL_MSG)):
        assert client_hello_handshake_status(FULL_MSG[:i]) == "need_more"
        assert parse_client_hello_handshake(FULL_MSG[:i]) is None


@pytest.mark.parametrize(
    "data",
    [b"", b"\x16", b"\x16\x03", b"\x16\x03\x01", b"\x16\x03\x01\x02", b"\x16\x03\x01\x02\x00"],
)
def test_short_valid_prefixes_need_more(data: bytes) -> None:
    assert client_hello_status(data) == "need_more"


@pytest.mark.parametrize(
    "data",
    [
        b"\x17\x03\x03\x00\x10" + b"\x00" * 16,  # application data first
        b"\x15\x03\x03\x00\x02\x02\x28",  # alert
        b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
        b"\x80\x2e\x01\x00\x02\x00\x15",  # SSLv2-compatible hello
        b"\x16\x02",  # bad major version
        b"\x16\x03\x09",  # unknown minor version
        b"\x16\x03\x01\xff",  # record longer than 2^14 + 2048
        b"\x16\x03\x01\x00\x00",  # zero-length handshake record
        b"\x16\x03\x01\x00\x04\x02\x00\x00\x00",  # a ServerHello, not a ClientHello
        b"\x16\x03\x01\x00\x06\x01\x00\x00\x02\x02\x03",  # legacy_version major 2
        b"SSH-2.0-OpenSSH_9.6\r\n",
    ],
)
def test_not_tls(data: bytes) -> None:
    assert client_hello_status(data) == "not_tls"
    assert parse_client_hello(data) is None


def test_handshake_interrupted_by_other_record_is_not_tls() -> None:
    stream = records(FULL_MSG[:50]) + u8(23) + u16(0x0303) + vec16(b"x") + records(FULL_MSG[50:])
    assert client_hello_status(stream) == "not_tls"


# --- Lying lengths -------------------------------------------------------------------------


def _patch(data: bytes, offset: int, value: bytes) -> bytes:
    return data[:offset] + value + data[offset + len(value):]


def test_lying_lengths() -> None:
    msg = FULL_MSG
    body_len = len(msg) - 4
    # Handshake length larger than what follows: a valid prefix, more is needed.
    longer = _patch(msg, 1, u24(body_len + 500))
    assert client_hello_status(records(longer)) == "need_more"
    # Handshake length above the largest possible ClientHello.
    assert client_hello_status(records(_patch(msg, 1, u24(0xFFFFFF)))) == "not_tls"
    # Handshake length shorter than the body: the extensions overrun it.
    assert client_hello_status(records(_patch(msg, 1, u24(body_len - 10)))) == "not_tls"
    sid_off = 4 + 2 + 32
    assert client_hello_status(records(_patch(msg, sid_off, u8(33)))) == "not_tls"
    suites_off = sid_off + 1 + 32
    assert client_hello_status(records(_patch(msg, suites_off, u16(7)))) == "not_tls"
    assert client_hello_status(records(_patch(msg, suites_off, u16(0)))) == "not_tls"
    assert client_hello_status(records(_patch(msg, suites_off, u16(0xFFFE)))) == "not_tls"
    comp_off = suites_off + 2 + 8
    assert client_hello_status(records(_patch(msg, comp_off, u8(0)))) == "not_tls"
    ext_len_off = comp_off + 2
    assert client_hello_status(records(_patch(msg, ext_len_off, u16(0xFFFF)))) == "not_tls"
    # The first extension (GREASE, empty) claims to be huge.
    first_ext_len_off = ext_len_off + 2 + 2
    assert client_hello_status(records(_patch(msg, first_ext_len_off, u16(5000)))) == "not_tls"
    # Record length smaller than its content is a fragment: the rest looks like a bad record.
    stream = records(msg)
    assert client_hello_status(_patch(stream, 3, u16(len(msg) - 1))) == "not_tls"


def test_huge_counts_are_cheap() -> None:
    suites = tuple(range(0x0001, 0x7FFF))  # 32766 suites, the maximum vector
    msg = client_hello_msg(sni_ext(b"big.example") + ext(0xAAAA, b"\x00" * 30000), suites=suites)
    stream = records(msg, [2**14] * (len(msg) // 2**14))
    ch = parse_client_hello(stream)
    assert ch is not None and len(ch.cipher_suites) == len(suites) and ch.sni == "big.example"
    # Thousands of one-byte records.
    tiny = records(FULL_MSG, [1] * (len(FULL_MSG) - 1))
    ch2 = parse_client_hello(tiny)
    assert ch2 is not None and ch2.record_count == len(FULL_MSG)


# --- Fuzzing -------------------------------------------------------------------------------


def _all_entry_points(data: bytes) -> None:
    assert client_hello_status(data) in STATUSES
    assert client_hello_handshake_status(data) in STATUSES
    parse_client_hello(data)
    parse_client_hello_handshake(data)
    parse_server_hello(data)
    assert server_hello_status(data) in STATUSES
    parse_tls_alert(data)
    looks_like_tls_record(data)


def test_random_bytes_never_raise() -> None:
    rng = random.Random(20240917)
    for i in range(3000):
        n = rng.randrange(0, 600)
        data = rng.randbytes(n)
        if i % 3 == 0:  # make the record header plausible so deeper code runs
            data = b"\x16\x03\x01" + data
        if i % 3 == 1:
            data = b"\x16\x03\x01" + u16(n) + b"\x01" + u24(max(n - 4, 0)) + b"\x03\x03" + data
        _all_entry_points(data)


def test_mutated_hellos_never_raise() -> None:
    rng = random.Random(7)
    base = records(FULL_MSG, [40, 120])
    for _ in range(3000):
        data = bytearray(base)
        for _ in range(rng.randrange(1, 6)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        cut = rng.randrange(len(data) + 1)
        _all_entry_points(bytes(data[:cut]))
        _all_entry_points(bytes(data))


def test_every_truncation_prefix_never_raises() -> None:
    for stream in (FULL_STREAM, records(FULL_MSG, [5, 5])):
        for i in range(len(stream) + 1):
            _all_entry_points(stream[:i])


# --- ServerHello, alerts, record sniffing --------------------------------------------------


def test_server_hello_tls13() -> None:
    exts = ext(43, u16(0x0304)) + ext(51, u16(0x001D) + vec16(b"\x01" * 32))
    stream = records(server_hello_msg(b"\x05" * 32, exts), ctype=22)
    sh = parse_server_hello(stream + u8(20) + u16(0x0303) + vec16(b"\x01"))
    assert sh is not None
    assert sh.legacy_version == 0x0303
    assert sh.selected_version == 0x0304
    assert sh.cipher_suite == 0x1301
    assert sh.hello_retry is False
    assert sh.extensions == (43, 51)
    assert sh.session_id_len == 32
    for i in range(len(stream)):
        assert parse_server_hello(stream[:i]) is None
        assert server_hello_status(stream[:i]) == "need_more"
    assert server_hello_status(stream) == "complete"


def test_hello_retry_request() -> None:
    exts = ext(43, u16(0x0304)) + ext(51, u16(0x0017))
    sh = parse_server_hello(records(server_hello_msg(HELLO_RETRY_REQUEST_RANDOM, exts)))
    assert sh is not None and sh.hello_retry and sh.selected_version == 0x0304


def test_server_hello_tls12_without_extensions() -> None:
    sh = parse_server_hello(records(server_hello_msg(b"\x09" * 32, None, suite=0xC02F)))
    assert sh is not None
    assert sh.selected_version == 0x0303 and sh.cipher_suite == 0xC02F and sh.extensions == ()


def test_server_hello_rejects_client_hello_and_alert() -> None:
    assert parse_server_hello(FULL_STREAM) is None
    assert server_hello_status(FULL_STREAM) == "not_tls"
    alert = b"\x15\x03\x03\x00\x02\x02\x70"  # fatal unrecognized_name
    assert parse_server_hello(alert) is None
    parsed = parse_tls_alert(alert)
    assert parsed is not None and (parsed.level, parsed.description) == (2, 112)
    assert parse_tls_alert(FULL_STREAM) is None
    assert parse_tls_alert(alert[:6]) is None


@pytest.mark.parametrize(
    "data, expected",
    [
        (b"\x16\x03\x01\x02\x00", True),
        (b"\x17\x03\x03\x40\x11", True),
        (b"\x17\x03\x03\x00\x00", True),
        (b"\x14\x03\x03\x00\x01\x01", True),
        (b"\x18\x03\x03\x00\x03", True),
        (b"\x19\x03\x03\x00\x03", False),
        (b"\x13\x03\x03\x00\x03", False),
        (b"\x16\x03\x05\x00\x03", False),
        (b"\x16\x02\x00\x00\x03", False),
        (b"\x17\x03\x03\x48\x01", False),
        (b"\x16\x03\x01\x00\x00", False),
        (b"\x16\x03\x01\x00", False),
        (b"", False),
        (b"GET / HTTP/1.1", False),
    ],
)
def test_looks_like_tls_record(data: bytes, expected: bool) -> None:
    assert looks_like_tls_record(data) is expected


# --- Public captures -----------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


def _capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"public capture {name} not available")
    return path


def _ip_packets(path: Path) -> Iterator[Any]:
    with path.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        for _, buf in reader:
            if linktype == LINKTYPE_ETHERNET:
                frame = dpkt.ethernet.Ethernet(buf)
            elif linktype == LINKTYPE_LINUX_SLL:
                frame = dpkt.sll.SLL(buf)
            elif linktype == LINKTYPE_LINUX_SLL2:
                frame = dpkt.sll2.SLL2(buf)
            else:
                raise AssertionError(f"unexpected link type {linktype}")
            if isinstance(frame.data, (dpkt.ip.IP, dpkt.ip6.IP6)):
                yield frame.data


FlowKey = tuple[bytes, int, bytes, int]


@dataclass
class _Conn:
    key: FlowKey
    isn: Optional[int] = None
    segs: list[tuple[int, bytes]] = field(default_factory=list)


def tcp_streams(path: Path) -> list[tuple[FlowKey, bytes]]:
    """One byte stream per TCP connection and direction, reassembled by sequence number."""
    conns: list[_Conn] = []
    current: dict[FlowKey, _Conn] = {}
    for ip in _ip_packets(path):
        tcp = ip.data
        if not isinstance(tcp, dpkt.tcp.TCP):
            continue
        key: FlowKey = (bytes(ip.src), tcp.sport, bytes(ip.dst), tcp.dport)
        syn = bool(tcp.flags & dpkt.tcp.TH_SYN)
        conn = current.get(key)
        if conn is None or (syn and conn.segs):  # a new connection on a reused 4-tuple
            conn = _Conn(key)
            current[key] = conn
            conns.append(conn)
        if syn:
            conn.isn = (tcp.seq + 1) % 2**32
        if tcp.data:
            conn.segs.append((tcp.seq, bytes(tcp.data)))
    out: list[tuple[FlowKey, bytes]] = []
    for conn in conns:
        if not conn.segs:
            continue
        base = conn.isn if conn.isn is not None else min(seq for seq, _ in conn.segs)
        data = bytearray()
        for seq, payload in sorted(conn.segs, key=lambda s: (s[0] - base) % 2**32):
            off = (seq - base) % 2**32
            if off > len(data):
                break  # a gap: stop at the contiguous prefix
            data += payload[len(data) - off:]
        out.append((conn.key, bytes(data)))
    return out


def client_hellos(path: Path) -> list[ClientHello]:
    found = []
    for _, stream in tcp_streams(path):
        if client_hello_status(stream) == "complete":
            ch = parse_client_hello(stream)
            assert ch is not None
            found.append(ch)
    return found


def tshark_snis(path: Path) -> Optional[list[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    res = subprocess.run(
        [tshark, "-r", str(path), "-Y", "tls.handshake.type == 1 && tcp", "-T", "fields",
         "-e", "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return sorted(line for line in res.stdout.splitlines())


CENTRACE_ARCHIVE = "censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_archive.org.pcap"
CENTRACE_CONTROL = "censoredplanet__CenTrace__testdata__222.138.4.221_archive.org_example.com.pcap"

TOR_SNIS = sorted([
    "www.ct7ctrgb6cr7.com", "www.e6r5p57kbafwrxj3plz.com", "www.q4cyamnc6mtokjurvdclt.com",
    "www.t3i3ru.com", "www.gfu7hbxpfp.com", "www.jmts2id.com", "www.6gyip7tqim7sieb.com",
])


@pytest.mark.public
def test_capture_tls13_ech() -> None:
    path = _capture("zeek__zeek__testing__btest__Traces__tls__tls13-ech.pcap")
    hellos = client_hellos(path)
    assert len(hellos) == 2
    for ch in hellos:
        assert ch.sni == "cloudflare-ech.com"
        assert ch.ech is True and ch.esni is False
        assert ch.alpn == ("h2", "http/1.1")
        assert 0x0304 in ch.supported_versions
        assert EXT_ENCRYPTED_CLIENT_HELLO in ch.extensions
    servers = [parse_server_hello(s) for _, s in tcp_streams(path)]
    selected = [sh for sh in servers if sh is not None]
    assert len(selected) == 2
    assert all(sh.selected_version == 0x0304 and not sh.hello_retry for sh in selected)


@pytest.mark.public
def test_capture_centrace_archive_org() -> None:
    path = _capture(CENTRACE_ARCHIVE)
    hellos = client_hellos(path)
    assert len(hellos) == 19  # one per CenTrace probe connection (tshark agrees)
    assert {ch.sni for ch in hellos} == {"archive.org"}


@pytest.mark.public
def test_capture_centrace_control() -> None:
    path = _capture(CENTRACE_CONTROL)
    hellos = client_hellos(path)
    assert len(hellos) == 19
    assert {ch.sni for ch in hellos} == {"example.com"}


@pytest.mark.public
def test_capture_tor() -> None:
    path = _capture("ntop__nDPI__tests__cfgs__default__pcap__tor.pcap")
    hellos = client_hellos(path)
    assert sorted(ch.sni or "" for ch in hellos) == TOR_SNIS
    for ch in hellos:
        # Tor's own hello: no ALPN, no supported_versions, only SNI + groups + point formats.
        assert ch.extensions == (0, 11, 10)
        assert ch.alpn == ()


@pytest.mark.public
@pytest.mark.parametrize(
    "name",
    [
        "zeek__zeek__testing__btest__Traces__tls__tls13-ech.pcap",
        CENTRACE_ARCHIVE,
        CENTRACE_CONTROL,
        "ntop__nDPI__tests__cfgs__default__pcap__tor.pcap",
        "ntop__nDPI__tests__cfgs__default__pcap__1kxun.pcap",
    ],
)
def test_captures_agree_with_tshark(name: str) -> None:
    path = _capture(name)
    expected = tshark_snis(path)
    if expected is None:
        pytest.skip("tshark not installed")
    ours = sorted(ch.sni or "" for ch in client_hellos(path))
    assert ours == expected


@pytest.mark.public
def test_capture_streams_never_raise_on_any_prefix() -> None:
    path = _capture("ntop__nDPI__tests__cfgs__default__pcap__1kxun.pcap")
    for _, stream in tcp_streams(path):
        for end in range(0, min(len(stream), 700), 7):
            _all_entry_points(stream[:end])
