"""Hostile input and lifecycle edge cases of the C extensions (analyzer/_ctrack.c, _cdns.c).

A crafted capture must never crash, hang or leak, and the C flow table must still give the
reference path's result document: lying lengths, truncations, TCP 4-tuple reuse, RST floods,
a max_flows cap of 1-5 that evicts constantly, close_linger 0, shards, chunks of 1 packet,
callbacks that raise in the middle of Table.feed, wrong arguments, and a table dropped while
its flows sit in the hash table, the closing queue, the reused list and the flush drain at
once. Built with -fsanitize=address,undefined these tests are also the memory checks.
"""
from __future__ import annotations

import gc
import os
import random
import struct
import sys
import tracemalloc
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from analyzer.config import Settings, Thresholds
from analyzer.decode import dns as D
from analyzer.decode.packet import decode_frame
from analyzer.pipeline import Analyzer, analyze_files
from analyzer.report.document import to_document
from analyzer.track import ctable
from analyzer.track.flows import Direction, Flow, FlowTable

pytestmark = pytest.mark.skipif(not ctable.available() and os.environ.get("CI") != "true",
                                reason="analyzer._ctrack is not built")

CLIENTS = [bytes([10, 0, 0, i]) for i in (1, 2, 3)]
SERVER = bytes([192, 0, 2, 1])
RESOLVER = bytes([8, 8, 8, 8])
LINGER_0 = Thresholds(close_linger=0.0)


# ------------------------------------------------------------------ frames and captures

def ip4(src: bytes, dst: bytes, proto: int, l4: bytes, ttl: int = 64, ipid: int = 1,
        frag: int = 0x4000, total: int | None = None, vihl: int = 0x45) -> bytes:
    opts = bytes(((vihl & 15) - 5) * 4) if (vihl & 15) > 5 else b""
    tl = (20 + len(opts) + len(l4)) if total is None else total
    hdr = struct.pack("!BBHHHBBH4s4s", vihl, 0, tl, ipid, frag, ttl, proto, 0, src, dst)
    return hdr + opts + l4


def tcp(sport: int, dport: int, flags: int, seq: int = 1, payload: bytes = b"",
        doff: int = 5) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, seq, 0, doff << 4, flags, 65535, 0, 0) + payload


def udp(sport: int, dport: int, payload: bytes, ulen: int | None = None) -> bytes:
    length = 8 + len(payload) if ulen is None else ulen
    return struct.pack("!HHHH", sport, dport, length, 0) + payload


def eth(ip: bytes, etype: int = 0x0800) -> bytes:
    return b"\x02" * 6 + b"\x04" * 6 + struct.pack("!H", etype) + ip


def ip6(src: bytes, dst: bytes, nxt: int, l4: bytes, plen: int | None = None) -> bytes:
    length = len(l4) if plen is None else plen
    return struct.pack("!IHBB", 0x60000000, length, nxt, 57) + src + dst + l4


def icmp_unreach(src: bytes, quoted_ip: bytes) -> bytes:
    return ip4(src, quoted_ip[12:16], 1, bytes([3, 13, 0, 0, 0, 0, 0, 0]) + quoted_ip[:28], ttl=250)


def dns_query(txid: int, name: bytes = b"\x07example\x03com\x00") -> bytes:
    return struct.pack("!HHHHHH", txid, 0x0100, 1, 0, 0, 0) + name + b"\x00\x01\x00\x01"


def dns_answer(txid: int, addr: bytes) -> bytes:
    q = dns_query(txid)
    return (struct.pack("!HHHHHH", txid, 0x8180, 1, 1, 0, 0) + q[12:]
            + b"\xc0\x0c\x00\x01\x00\x01\x00\x00\x00\x3c\x00\x04" + addr)


def write_pcap(path: Path, records: list[tuple[float, bytes]], lie_last: int = 0) -> Path:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
    for i, (ts, fr) in enumerate(records):
        sec = int(ts)
        incl = len(fr) + (lie_last if i == len(records) - 1 else 0)
        out += struct.pack("<IIII", sec, round((ts - sec) * 1e6), incl, len(fr)) + fr
    path.write_bytes(bytes(out))
    return path


def lifecycle_records() -> list[tuple[float, bytes]]:
    """Every path of a flow's life, hostile frames in between."""
    c1, c2, c3 = CLIENTS
    r: list[tuple[float, bytes]] = []
    t = 1000.0

    def add(fr: bytes, dt: float = 0.01) -> None:
        nonlocal t
        t += dt
        r.append((t, fr))

    hello = b"\x16\x03\x01\x00\x05hello" * 10
    # a flow closed by FINs, a late packet inside the linger and one after it
    add(eth(ip4(c1, SERVER, 6, tcp(40000, 443, 0x02, 100))))
    add(eth(ip4(SERVER, c1, 6, tcp(443, 40000, 0x12, 500))))
    add(eth(ip4(c1, SERVER, 6, tcp(40000, 443, 0x18, 101, hello))))
    add(eth(ip4(SERVER, c1, 6, tcp(443, 40000, 0x11, 501))))
    add(eth(ip4(c1, SERVER, 6, tcp(40000, 443, 0x11, 151))))
    add(eth(ip4(c1, SERVER, 6, tcp(40000, 443, 0x10, 152))), 0.5)
    add(eth(ip4(SERVER, c1, 6, tcp(443, 40000, 0x10, 502))), 9.0)
    # 4-tuple reuse: SYN retransmitted with the same ISN after a RST (same flow), then new ISNs
    for isn, rst_from_server in ((7000, True), (7000, False), (8000, True), (9000, False),
                                 (9000, True)):
        add(eth(ip4(c2, SERVER, 6, tcp(41000, 443, 0x02, isn))), 0.001)
        add(eth(ip4(c2, SERVER, 6, tcp(41000, 443, 0x18, isn + 1, hello))), 0.001)
        if rst_from_server:
            add(eth(ip4(SERVER, c2, 6, tcp(443, 41000, 0x14, 1), ttl=40)), 0.0)
        else:
            add(eth(ip4(c2, SERVER, 6, tcp(41000, 443, 0x04, isn + 2))), 0.0)
    # an ICMP error about a live flow, then about one that was just reused
    q = ip4(c3, SERVER, 6, tcp(42000, 8443, 0x02, 1))
    add(eth(q))
    add(eth(icmp_unreach(bytes([203, 0, 113, 9]), q)))
    add(eth(icmp_unreach(bytes([203, 0, 113, 9]), ip4(c2, SERVER, 6, tcp(41000, 443, 0x02, 9000)))))
    # a RST flood on one flow, and many flows each reset at the same instant
    for i in range(60):
        seg = tcp(8443, 42000, 0x04 if i % 3 else 0x14, 77 + i)
        add(eth(ip4(SERVER, c3, 6, seg, ttl=40 + i % 5)), 0.0)
    for i in range(40):
        add(eth(ip4(c1, SERVER, 6, tcp(30000 + i, 443, 0x18, 5, hello[: i + 1]))), 0.0)
        add(eth(ip4(SERVER, c1, 6, tcp(443, 30000 + i, 0x14, 9))), 0.0)
    # DNS over UDP (the dns callback), over TCP (the per-packet path), and over IPv6
    add(eth(ip4(c1, RESOLVER, 17, udp(5353, 53, dns_query(0x1234)))))
    add(eth(ip4(RESOLVER, c1, 17, udp(53, 5353, dns_answer(0x1234, bytes([93, 184, 216, 34]))))))
    forged = dns_answer(0x1234, bytes([10, 10, 10, 10]))
    add(eth(ip4(RESOLVER, c1, 17, udp(53, 5353, forged), ttl=200)), 0.0)
    add(eth(ip4(c2, RESOLVER, 6, tcp(43000, 53, 0x18, 1, struct.pack("!H", 29) + dns_query(7)))))
    a6, b6 = b"\x20\x01\x0d\xb8" + bytes(11) + b"\x01", b"\x20\x01\x0d\xb8" + bytes(11) + b"\x02"
    add(eth(ip6(a6, b6, 17, udp(5000, 53, dns_query(9))), 0x86DD))
    add(eth(ip6(a6, b6, 6, tcp(44000, 443, 0x02, 1)), 0x86DD))
    add(eth(ip6(b6, a6, 6, tcp(443, 44000, 0x12, 1)), 0x86DD))
    # UDP service flows (WireGuard, OpenVPN) and a fragmented datagram
    for i in range(4):
        add(eth(ip4(c3, SERVER, 17, udp(50000, 51820, bytes([1 + i % 2]) + bytes(40)))))
        add(eth(ip4(SERVER, c3, 17, udp(1194, 50001, bytes(30)))))
    big = udp(6000, 53, dns_query(11) + bytes(40))
    add(eth(ip4(c1, RESOLVER, 17, big[:24], ipid=77, frag=0x2000, total=44)))
    add(eth(ip4(c1, RESOLVER, 17, big[24:], ipid=77, frag=3, total=20 + len(big) - 24)))
    # hostile frames: lying IP/UDP/TCP lengths, bad header lengths, truncations, VLAN stacks
    hostile = [
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1, b"xyz"), total=0xFFFF)),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1, b"xyz"), total=19)),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1, b"xyz"), total=21)),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1), vihl=0x4F)[:40]),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x10, 1, b"abc", doff=15))),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x10, 1, b"abc", doff=2))),
        eth(ip4(c1, SERVER, 17, udp(45001, 443, b"abcdef", ulen=0))),
        eth(ip4(c1, SERVER, 17, udp(45001, 443, b"abcdef", ulen=7))),
        eth(ip4(c1, SERVER, 17, udp(45001, 443, b"abcdef", ulen=0xFFFF))),
        eth(ip4(c1, SERVER, 17, udp(45001, 53, b"\x00" * 11))),
        eth(ip6(a6, b6, 6, tcp(44000, 443, 0x10, 2), plen=0), 0x86DD),
        eth(ip6(a6, b6, 6, tcp(44000, 443, 0x10, 2, b"zz"), plen=0xFFFF), 0x86DD),
        eth(ip6(a6, b6, 6, tcp(44000, 443, 0x10, 2))[:50], 0x86DD),
        b"\x02" * 12 + b"\x81\x00\x00\x01" * 5 + b"\x08\x00" + ip4(c1, SERVER, 6, tcp(1, 2, 0x02)),
        b"\x02" * 12 + b"\x81\x00\x00\x01\x08\x00" + ip4(c1, SERVER, 6, tcp(45002, 443, 0x02)),
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1, b"xyz")))[:14 + 19],
        eth(ip4(c1, SERVER, 6, tcp(45000, 443, 0x18, 1, b"xyz")))[:10],
        b"",
        eth(b"\x45" + bytes(30), 0x0806),
        eth(ip4(c1, SERVER, 47, b"\x00\x00\x08\x00" + bytes(20))),
    ]
    for fr in hostile:
        add(fr)
    # time going backwards, then a long idle gap (idle expiry), then the reused 4-tuple again
    add(eth(ip4(c2, SERVER, 6, tcp(41000, 443, 0x10, 9001))), -50.0)
    add(eth(ip4(c2, SERVER, 6, tcp(41000, 443, 0x02, 12345))), 500.0)
    add(eth(ip4(SERVER, c2, 6, tcp(443, 41000, 0x12, 1))))
    return r


@pytest.fixture(scope="module")
def lifecycle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("native")
    return write_pcap(d / "lifecycle.pcap", lifecycle_records(), lie_last=1000)


# ------------------------------------------------------------------ documents

Outcome = dict[str, Any] | tuple[str, str]


def _doc(path: Path, **kw: Any) -> Outcome:
    try:
        d = to_document(analyze_files([str(path)], Settings(**kw)))
    except Exception as e:  # noqa: BLE001 (both paths must then fail the same way)
        return type(e).__name__, str(e)
    d["stats"].pop("seconds")
    return d


def _same(path: Path, **kw: Any) -> Outcome:
    ref = _doc(path, reference=True, **kw)
    native = _doc(path, reference=False, native=True, **kw)
    if isinstance(ref, dict) and isinstance(native, dict):
        for key in ref:
            assert ref[key] == native[key], f"{path.name} {kw}: '{key}' differs"
    assert ref == native, f"{path.name} {kw}"
    return native


SETTINGS: list[dict[str, Any]] = [
    dict(chunk_packets=1, max_flows=1, thresholds=LINGER_0),
    dict(chunk_packets=2, max_flows=2),
    dict(chunk_packets=3, max_flows=5, thresholds=LINGER_0, shard=(0, 2)),
    dict(chunk_packets=7, max_flows=3, shard=(1, 2)),
    dict(chunk_packets=5, idle_timeout=0.0, max_flows=4),
    dict(chunk_packets=4, max_events=1, first_payloads=1, first_payload_bytes=3,
         first_payload_bytes_server=0, thresholds=Thresholds(close_linger=0.005)),
    dict(chunk_packets=16384),
]


@pytest.mark.parametrize("kw", SETTINGS, ids=lambda kw: ",".join(f"{k}={v}" for k, v in kw.items()
                                                                  if k != "thresholds"))
def test_lifecycle_capture_identical(lifecycle: Path, kw: dict[str, Any]) -> None:
    doc = _same(lifecycle, strict=True, **kw)
    assert isinstance(doc, dict)
    assert doc["stats"]["flows"] > (40 if "shard" not in kw else 10)
    if kw.get("shard", (0, 1))[0] == 0:
        assert doc["stats"]["skipped"], "the hostile frames are counted"


def _mutate(rng: random.Random, data: bytes) -> bytes:
    """Random header bytes, length fields, flags, ports and record lengths of a classic pcap."""
    b = bytearray(data)
    recs = []
    off = 24
    while off + 16 <= len(b):
        incl = struct.unpack_from("<I", b, off + 8)[0]
        if off + 16 + incl > len(b):
            break
        recs.append((off, off + 16, incl))
        off += 16 + incl
    for _ in range(rng.randint(1, 8)):
        ho, fo, incl = rng.choice(recs)
        k = rng.randrange(6)
        if k == 0 and incl:
            for _ in range(rng.randint(1, 4)):
                b[fo + rng.randrange(min(incl, 80))] = rng.randrange(256)
        elif k == 1 and incl >= 18:
            v = rng.choice([0, 1, 20, 0xFFFF, rng.randrange(0x10000)])
            struct.pack_into("!H", b, fo + 16, v)
        elif k == 2 and incl >= 15:
            b[fo + 14] = rng.randrange(256)
        elif k == 3 and incl >= 48:
            b[fo + 47] = rng.choice([0x02, 0x04, 0x14, 0x12, 0x01, rng.randrange(256)])
        elif k == 4 and incl >= 38:
            ports = [53, 443, 41000]
            struct.pack_into("!HH", b, fo + 34, rng.choice(ports), rng.choice(ports))
        elif k == 5 and rng.random() < 0.3:
            v = rng.choice([0, incl + 1, 0xFFFFFFFF, rng.randrange(90)])
            struct.pack_into("<I", b, ho + 8, v)
    return bytes(b)


def test_mutated_captures_identical(lifecycle: Path, tmp_path: Path) -> None:
    rng = random.Random(20240611)
    data = lifecycle.read_bytes()
    for i in range(16):
        p = tmp_path / f"m{i}.pcap"
        p.write_bytes(_mutate(rng, data))
        kw = dict(rng.choice(SETTINGS))
        kw["chunk_packets"] = rng.choice([1, 3, 64, 16384])
        _same(p, **kw)


DATA = Path(__file__).resolve().parents[1] / "data"


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.pcap*")))
def test_every_link_type_identical_with_tiny_table(name: str, tmp_path: Path) -> None:
    """The format fixtures (Ethernet, SLL, SLL2, raw, IPv4/IPv6 link types, NULL/LOOP, pcapng
    with several interfaces), whole and cut in the middle of a record."""
    _same(DATA / name, chunk_packets=1, max_flows=1, thresholds=LINGER_0)
    data = (DATA / name).read_bytes()
    cut = tmp_path / name
    cut.write_bytes(data[: len(data) * 2 // 3])
    _same(cut, chunk_packets=2, max_flows=2)


def test_negative_max_flows_fails_like_the_reference(lifecycle: Path) -> None:
    """The Python table raises (popitem on the emptied OrderedDict); the C one used to read
    through a NULL list head."""
    out = _same(lifecycle, max_flows=-1, chunk_packets=50)
    assert not isinstance(out, dict)


# ------------------------------------------------------------------ the Table API

def _table(**kw: Any) -> Any:
    from analyzer._ctrack import Table

    args: dict[str, Any] = dict(flow_type=Flow, direction_type=Direction, max_events=8,
                                first_payloads=2,
                limit_client=64, limit_server=16, linger=5.0, idle_timeout=60.0, max_flows=1000)
    args.update(kw)
    return Table(**args)


def _columns(frames: list[bytes], ts: list[float]) -> tuple[Any, ...]:
    from array import array

    offs, o = [], 0
    for f in frames:
        offs.append(o)
        o += len(f)
    caps = [len(f) for f in frames]
    return (b"".join(frames), memoryview(array("q", offs)), memoryview(array("q", caps)),
            memoryview(array("q", caps)), memoryview(array("d", ts)),
            memoryview(array("q", [1] * len(frames))))


def _nothing(*_a: Any) -> None:
    return None


def _feed(t: Any, frames: list[bytes], ts: list[float], frame0: int = 0,
          slow: Callable[..., Any] = _nothing, dns: Callable[..., Any] = _nothing) -> Any:
    return t.feed(*_columns(frames, ts), 0, len(frames), frame0, 0, 0, 1, slow, dns)


def _attributes(cls: type) -> list[str]:
    """The instance attributes of a class with __slots__, interpreted (member descriptors) or
    compiled by mypyc (getset descriptors; such a class has no __slots__ left)."""
    names = [n for n, v in vars(cls).items()
             if type(v).__name__ in ("member_descriptor", "getset_descriptor") and not n.startswith("__")]
    assert names, cls
    return names


def _same_flow(a: Any, b: Any, where: str = "flow") -> None:
    if isinstance(a, (Flow, Direction)):
        assert type(a) is type(b), where
        for s in _attributes(type(a)):
            _same_flow(getattr(a, s), getattr(b, s), f"{where}.{s}")
    elif isinstance(a, (tuple, list)):
        assert type(a) is type(b) and len(a) == len(b), (where, a, b)
        for i, (x, y) in enumerate(zip(a, b)):
            _same_flow(x, y, f"{where}[{i}]")
    else:
        assert type(a) is type(b) and a == b, (where, a, b)


def test_uninitialised_table_raises() -> None:
    """Table.__new__ without __init__: no buckets, no classes (a NULL dereference before)."""
    from analyzer._ctrack import Table

    t = Table.__new__(Table)
    fr = eth(ip4(CLIENTS[0], SERVER, 6, tcp(1000, 443, 0x02)))
    pkt = decode_frame(fr, 0, len(fr), 1)
    for call in (lambda: _feed(t, [fr], [1.0]), lambda: t.observe(pkt), lambda: t.attach_icmp(pkt),
                 lambda: t.expire(1.0), t.begin_flush, t.flush):
        with pytest.raises(RuntimeError):
            call()
    assert t.next_flushed() is None and len(t) == 0


def test_wrong_arguments_raise_and_leave_the_table_usable() -> None:
    from array import array

    for bad in (dict(max_events="8"), dict(flow_type=1), dict(linger="x"), dict(max_flows=2 ** 70)):
        with pytest.raises((TypeError, OverflowError)):
            _table(**bad)
    t = _table()
    fr = eth(ip4(CLIENTS[0], SERVER, 6, tcp(1000, 443, 0x02)))
    buf, offs, caps, wls, tss, lts = _columns([fr] * 4, [1.0] * 4)
    i32 = memoryview(array("i", [0] * 4))
    q = memoryview(array("q", [0] * 4))
    cases = [
        (buf, i32, caps, wls, tss, lts, 0, 4),  # int32 offsets
        (buf, offs, caps, wls, q, lts, 0, 4),  # int64 timestamps
        (buf, offs, caps, wls, tss, tss, 0, 4),  # float64 link types
        (buf, offs[:2], caps, wls, tss, lts, 0, 4),  # too short
        (buf, offs, caps, wls, tss[:3], lts, 0, 4),
        (buf, q[::2], caps, wls, tss, lts, 0, 2),  # not contiguous
        (None, offs, caps, wls, tss, lts, 0, 4),
        (buf, list(range(4)), caps, wls, tss, lts, 0, 4),
        (buf, offs, caps, wls, tss, lts, 0, 5),  # past the arrays
        (buf, offs, caps, wls, tss, lts, -1, 2),
        (buf, offs, caps, wls, tss, lts, 3, 2),
    ]
    for args in cases:
        with pytest.raises((TypeError, ValueError, BufferError)):
            t.feed(*args, 0, 0, 0, 1, _nothing, _nothing)
    with pytest.raises(ValueError):
        t.feed(buf, offs, caps, wls, tss, lts, 0, 4, 0, 0, 0, 0, _nothing, _nothing)  # 0 shards
    with pytest.raises(OverflowError):
        t.feed(buf, offs, caps, wls, tss, lts, 0, 4, 2 ** 63 - 2, 0, 0, 1, _nothing, _nothing)
    with pytest.raises(AttributeError):
        t.observe(object())
    # (a plain copy: a Packet compiled by mypyc refuses an ill-typed field by itself)
    pkt = decode_frame(fr, 0, len(fr), 1)
    bad_pkt = types.SimpleNamespace(**{n: getattr(pkt, n) for n in dir(pkt) if not n.startswith("_")})
    bad_pkt.src = "10.0.0.1"
    with pytest.raises(TypeError):
        t.observe(bad_pkt)
    bad_pkt.src = bytes(17)
    with pytest.raises(ValueError):
        t.observe(bad_pkt)
    with pytest.raises(TypeError):
        t.expire("now")
    assert len(t) == 0
    assert _feed(t, [fr], [1.0]) == (1, 1.0, 1.0, 1.0)  # decoded, first, last taken, last seen
    (flow,) = t.flush()
    assert flow.packets == 1 and flow.dirs[0].isn == 1


def test_lying_offsets_go_to_the_slow_path_untouched() -> None:
    """Offsets and lengths from the file, negative or huge (off + caplen overflowing int64),
    are never decoded here: the per-packet path gets them as they are."""
    from array import array

    t = _table()
    fr = eth(ip4(CLIENTS[0], SERVER, 6, tcp(1000, 443, 0x02)))
    big = 2 ** 62
    offs = [-1, 0, big, big, len(fr) - 1, 0]
    caps = [len(fr), -5, big, 1, 2, len(fr) + 1]
    got: list[tuple[int, int]] = []
    n = t.feed(fr, memoryview(array("q", offs)), memoryview(array("q", caps)),
               memoryview(array("q", caps)), memoryview(array("d", [1.0, 2.0, 6.0, 3.0, 4.0, 5.0])),
               memoryview(array("q", [1] * 6)), 0, 6, 0, 0, 0, 1,
               lambda b, f, o, c, w, ts, lt: got.append((o, c)), _nothing)
    assert n[0] == 0 and got == list(zip(offs, caps)) and len(t) == 0
    assert n[3] == 6.0  # capture time: the latest record, taken here or not


def _flood(n: int, ts: float = 1000.0, payload: bytes = b"") -> tuple[list[bytes], list[float]]:
    frames = []
    for i in range(n):
        c = bytes([10, 1, i >> 8, i & 255])
        frames.append(eth(ip4(c, SERVER, 6, tcp(2000 + i % 50000, 443, 0x18, 5, payload))))
        frames.append(eth(ip4(SERVER, c, 6, tcp(443, 2000 + i % 50000, 0x14, 9), ttl=33)))
    return frames, [ts] * len(frames)


def _table_everywhere(t: Any) -> None:
    """Flows in the table, the closing queue, the reused list and the flush drain at once."""
    c1, c2 = CLIENTS[:2]
    frames, ts = _flood(6, payload=b"p" * 50)
    frames += [eth(ip4(c2, SERVER, 6, tcp(4000 + i, 443, 0x02, 1))) for i in range(2)]
    # closed flows (closing queue), some evicted by the cap while waiting there; open ones
    _feed(t, frames, ts + [1000.0] * 2)
    assert t.closing == 6
    t.expire(1000.0)
    # the drain: taken out and half handed out
    t.begin_flush()
    assert t.next_flushed() is not None
    # then new flows: a reused 4-tuple (reused list, still in the closing queue), open ones
    _feed(t, [eth(ip4(c1, SERVER, 6, tcp(3000, 443, 0x02, 1))),
              eth(ip4(SERVER, c1, 6, tcp(443, 3000, 0x14, 0))),
              eth(ip4(c1, SERVER, 6, tcp(3000, 443, 0x02, 99))),
              eth(ip4(c2, SERVER, 17, udp(9, 51820, b"x")))],
          [1001.0, 1001.0, 1001.5, 1002.0], frame0=100)
    assert len(t) == 2 and t.closing >= 1


def test_dealloc_with_flows_everywhere() -> None:
    for kw in (dict(), dict(max_flows=1), dict(linger=0.0), dict(max_flows=2, linger=0.0)):
        t = _table(**kw)
        _table_everywhere(t)
        del t
    # and the same table finished properly afterwards
    t = _table(max_flows=1)
    _table_everywhere(t)
    left = t.expire(10_000.0)
    t.begin_flush()
    assert t.next_flushed() is None and len(t) == 0 and t.closing == 0 and left


def _random_frames(rng: random.Random) -> list[bytes]:
    ports = [443, 40000, 53, 1194]
    frames = []
    for _ in range(rng.randint(1, 10)):
        a, b = rng.choice(CLIENTS), rng.choice([*CLIENTS, SERVER])
        sp, dp = rng.choice(ports), rng.choice(ports)
        if rng.random() < 0.1:
            quoted = ip4(a, b, rng.choice([6, 17]), struct.pack("!HHI", sp, dp, 5))
            frames.append(eth(icmp_unreach(SERVER, quoted)))
        elif rng.random() < 0.75:
            fl = rng.choice([0x02, 0x12, 0x10, 0x18, 0x04, 0x14, 0x01, 0x11])
            seg = tcp(sp, dp, fl, rng.choice([1, 2, 999]), b"d" * rng.choice([0, 5]))
            frames.append(eth(ip4(a, b, 6, seg, ttl=rng.choice([64, 50]))))
        else:
            frames.append(eth(ip4(a, b, 17, udp(sp, dp, b"u" * rng.choice([0, 9])))))
    return frames


class _Raising:
    """slow/dns callbacks of Table.feed that track like the pipeline and raise at frame `boom`."""

    def __init__(self, table: Any, frame0: int, boom: int) -> None:
        self.table, self.frame0, self.boom = table, frame0, boom
        self.raised = ""

    def slow(self, buf: bytes, fr: int, off: int, cap: int, _wl: int, ts: float, lt: int) -> None:
        if fr - self.frame0 == self.boom:
            self.raised = "slow"
            raise KeyError("boom")
        p = decode_frame(buf, off, cap, lt)
        p.frame, p.ts, p.input = fr, ts, 0
        if p.proto == 1:
            self.table.attach_icmp(p)
        else:
            self.table.observe(p)

    def dns(self, *a: Any) -> None:
        if a[4] - self.frame0 == self.boom:
            self.raised = "dns"
            raise KeyError("boom")


def test_table_matches_flowtable_through_reuse_eviction_and_raising_callbacks() -> None:
    """Random frames over few 4-tuples (reuse, RSTs, FINs, ICMP), random expiry and flushes,
    callbacks raising mid-chunk: every flow handed out equals FlowTable's, slot by slot."""
    rng = random.Random(7)
    for _ in range(40):
        st = Settings(max_flows=rng.choice([1, 2, 3, 100]),
                      idle_timeout=rng.choice([0.0, 0.5, 100.0]),
                      max_events=rng.choice([0, 2, 96]), first_payloads=rng.choice([0, 1, 3]),
                      first_payload_bytes=rng.choice([0, 3, 100]),
                      thresholds=Thresholds(close_linger=rng.choice([0.0, 0.3, 5.0])))
        ref = FlowTable(st)
        t = _table(max_events=st.max_events, first_payloads=st.first_payloads,
                   limit_client=st.first_payload_bytes, limit_server=st.first_payload_bytes_server,
                   linger=st.thresholds.close_linger, idle_timeout=st.idle_timeout,
                   max_flows=st.max_flows)
        now, frame0 = 0.0, 0
        for _step in range(rng.randrange(1, 30)):
            op = rng.random()
            if op < 0.6:
                frames = _random_frames(rng)
                ts = [now + rng.random() for _ in frames]
                cb = _Raising(t, frame0, rng.randrange(len(frames) + 3))
                try:
                    _feed(t, frames, ts, frame0, cb.slow, cb.dns)
                    upto = len(frames)
                except KeyError:
                    upto = cb.boom + (cb.raised == "dns")  # a DNS datagram is tracked first
                for i, fr in enumerate(frames[:upto]):
                    p = decode_frame(fr, 0, len(fr), 1)
                    p.frame, p.ts, p.input = frame0 + i, ts[i], 0
                    if p.proto == 1:
                        ref.attach_icmp(p)
                    else:
                        ref.observe(p)
                frame0 += len(frames)
                now = max([now, *ts])
            elif op < 0.85:
                now += rng.choice([0.0, 0.2, 1.0, 10.0])
                a_, b_ = ref.expire(now), t.expire(now)
                assert len(a_) == len(b_)
                for x, y in zip(a_, b_):
                    _same_flow(x, y)
            else:
                a_ = ref.flush()
                t.begin_flush()
                k = rng.randrange(len(a_) + 1)  # the rest abandoned, as by a raising consumer
                for x in a_[:k]:
                    _same_flow(x, t.next_flushed())
            assert len(ref) == len(t)


class _FailingFlow:
    """Stands for Flow (which may be compiled, and then cannot be subclassed here): its n-th
    attribute assignment raises, for the error paths of materializing."""

    countdown = [-1]

    def __setattr__(self, name: str, value: Any) -> None:
        self.countdown[0] -= 1
        if self.countdown[0] == 0:
            raise MemoryError("no room")
        super().__setattr__(name, value)


class _FailingDirection:
    def __setattr__(self, name: str, value: Any) -> None:
        _FailingFlow.countdown[0] -= 1
        if _FailingFlow.countdown[0] == 0:
            raise MemoryError("no room")
        super().__setattr__(name, value)


def test_materializing_errors_release_everything() -> None:
    """An error while a finished flow becomes a Python object (at any attribute), in expire
    (with more reused flows pending), next_flushed and flush: no crash, nothing left over."""
    c1 = CLIENTS[0]
    frames = []
    for isn in (10, 20, 30, 40):  # the same 4-tuple reset and reused: three flows in `reused`
        frames += [eth(ip4(c1, SERVER, 6, tcp(5000, 443, 0x02, isn))),
                   eth(ip4(c1, SERVER, 6, tcp(5000, 443, 0x18, isn + 1, b"hi"))),
                   eth(ip4(SERVER, c1, 6, tcp(443, 5000, 0x14, 0)))]
    frames += [eth(ip4(c1, SERVER, 17, udp(7000 + i, 51820, b"x"))) for i in range(3)]
    for nth in (1, 2, 10, 24, 30, 50, 62, 64, 150):
        for how in ("expire", "next_flushed", "flush"):
            t = _table(flow_type=_FailingFlow, direction_type=_FailingDirection, max_flows=2)
            _feed(t, frames, [1.0] * len(frames))
            _FailingFlow.countdown[0] = nth
            try:
                with pytest.raises(MemoryError):
                    if how == "expire":
                        t.expire(1.0)
                    elif how == "flush":
                        t.flush()
                    else:
                        t.begin_flush()
                        while t.next_flushed() is not None:
                            pass
            finally:
                _FailingFlow.countdown[0] = -1
            t.expire(1e9)
            t.begin_flush()
            while t.next_flushed() is not None:
                pass
            assert len(t) == 0 and t.closing == 0
            del t


def test_pipeline_callbacks_raising(lifecycle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An exception from the slow or dns callback leaves Table.feed cleanly (buffers released,
    table consistent, dropped with the Analyzer); the next run is unaffected."""
    for name in ("_frame", "_dns_udp"):
        for nth in (1, 3):
            orig = getattr(Analyzer, name)
            calls = [0]

            def boom(self: Analyzer, *a: Any, _orig: Any = orig, _nth: int = nth,
                     calls: list[int] = calls) -> Any:
                calls[0] += 1
                if calls[0] == _nth:
                    raise RuntimeError("boom")
                return _orig(self, *a)

            monkeypatch.setattr(Analyzer, name, boom)
            with pytest.raises(RuntimeError):
                analyze_files([str(lifecycle)], Settings(max_flows=2, chunk_packets=5))
            monkeypatch.setattr(Analyzer, name, orig)
            gc.collect()
    _same(lifecycle, chunk_packets=5, max_flows=2)


def test_no_leak_across_runs(lifecycle: Path) -> None:
    kws: list[dict[str, Any]] = [dict(chunk_packets=3, max_flows=2, thresholds=LINGER_0),
                                 dict(shard=(1, 2))]

    def run() -> None:
        for kw in kws:
            analyze_files([str(lifecycle)], Settings(**kw))
        t = _table(max_flows=1)
        _table_everywhere(t)
        del t

    for _ in range(3):
        run()
    gc.collect()
    before = sys.getallocatedblocks()
    for _ in range(15):
        run()
    gc.collect()
    # one object per flow leaked would be thousands of blocks
    assert sys.getallocatedblocks() - before < 200


def test_closed_evicted_flows_keep_only_a_shell() -> None:
    """A file can close any number of flows within one linger period (same timestamps): each
    waits in the closing queue after it was handed out (evicted by max_flows). The C copy of
    its events and payloads is released at once; only the queue's shell stays."""
    n = 1500
    frames, ts = _flood(n, payload=b"q" * 1000)
    t = _table(max_flows=1, first_payloads=6, limit_client=8192, max_events=96)
    tracemalloc.start()
    try:
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        _feed(t, frames, ts)
        out = t.expire(1000.0)
        assert len(out) == n - 1 and t.closing == n
        del out
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    assert held < n * 1500, f"{held / n:.0f} bytes per closed flow"
    del t


# ------------------------------------------------------------------ _cdns

def test_cdns_configure_checks_its_classes() -> None:
    from analyzer import _cdns

    msg = dns_answer(5, bytes([1, 2, 3, 4]))
    with pytest.raises(TypeError):
        _cdns.configure(1, 2, 3, 4, 5, 6)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        _cdns.configure(D.DnsMessage, D.DnsQuestion, D.DnsRR, D.SoaData, D.Edns, int)
    # a refused configure changes nothing
    assert _cdns.parse(msg) == D.parse_dns_reference(msg)
