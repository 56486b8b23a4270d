"""The batch fast path must give exactly what the per-packet reference path gives.

Not a timing test: the same inputs through both paths, whole result documents compared
(verdicts, flows with their counters, stats), with several chunk sizes so that flows straddle
chunk boundaries, on generated mixed captures (bench/gen_capture.py), the format fixtures and
the public captures.
"""
from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analyzer.config import Settings
from analyzer.track import ctable
from analyzer.pipeline import analyze_files
from analyzer.report.document import to_document

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _doc(path: Path, **kw: Any) -> dict[str, Any]:
    d = to_document(analyze_files([str(path)], Settings(strict=True, **kw)))
    d["stats"].pop("seconds")
    return d


def _same(path: Path, chunk: int) -> None:
    """Reference (per packet) == numpy fast path == C flow table (when built)."""
    ref = _doc(path, reference=True, chunk_packets=chunk)
    fast = _doc(path, reference=False, native=False, chunk_packets=chunk)
    for key in ref:
        assert ref[key] == fast[key], f"{path.name} chunk={chunk}: '{key}' differs (numpy)"
    if ctable.available():
        native = _doc(path, reference=False, native=True, chunk_packets=chunk)
        for key in ref:
            assert ref[key] == native[key], f"{path.name} chunk={chunk}: '{key}' differs (C)"


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    out = []
    for seed in (1, 2):
        p = tmp_path_factory.mktemp("gen") / f"mixed-{seed}.pcap"
        subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "30000",
                        "-o", str(p), "--seed", str(seed), "-q"], check=True)
        out.append(p)
    return out


@pytest.mark.parametrize("chunk", [997, 4096, 16384])
def test_generated_captures_identical(generated: list[Path], chunk: int) -> None:
    for p in generated:
        _same(p, chunk)


def to_ipv6(src: Path, dst: Path) -> None:
    """Rewrite every IPv4 TCP/UDP packet of an Ethernet pcap as IPv6 (2001:db8::/96 + the
    IPv4 address), hop limit = TTL, same ports and payload; other frames unchanged."""
    data = src.read_bytes()
    out = bytearray(data[:24])
    off = 24
    while off + 16 <= len(data):
        sec, frac, incl, _orig = struct.unpack_from("<IIII", data, off)
        frame = data[off + 16: off + 16 + incl]
        off += 16 + incl
        if len(frame) >= 34 and frame[12:14] == b"\x08\x00" and frame[23] in (6, 17):
            ihl = (frame[14] & 0x0F) * 4
            total = struct.unpack_from("!H", frame, 16)[0]
            l4 = frame[14 + ihl: 14 + total]
            ip6 = struct.pack("!IHBB", 0x60000000, len(l4), frame[23], frame[22])
            ip6 += b"\x20\x01\x0d\xb8" + bytes(8) + frame[26:30] + b"\x20\x01\x0d\xb8" + bytes(8) + frame[30:34]
            frame = frame[:12] + b"\x86\xdd" + ip6 + l4
        out += struct.pack("<IIII", sec, frac, len(frame), len(frame)) + frame
    dst.write_bytes(bytes(out))


def test_ipv6_capture_identical_and_fast(generated: list[Path], tmp_path: Path) -> None:
    v6 = tmp_path / "mixed-v6.pcap"
    to_ipv6(generated[0], v6)
    for chunk in (997, 16384):
        _same(v6, chunk)
    share, doc = boring_share(v6)
    assert share > 0.5
    assert doc["verdicts"] and all(v["server"].startswith("[2001:db8::") for v in doc["verdicts"])


def boring_share(path: Path) -> tuple[float, dict[str, Any]]:
    """Share of packets the fast path folded into aggregates, and the document."""
    import analyzer.track.fastpath as fp  # the pipeline imports plan_chunk at call time

    seen = {"boring": 0, "all": 0}
    orig = fp.plan_chunk

    def spy(*a: Any, **k: Any) -> Any:
        plan, nb, lo, hi = orig(*a, **k)
        seen["boring"] += nb
        seen["all"] += len(a[1].keyable)
        return plan, nb, lo, hi

    fp.plan_chunk = spy  # type: ignore[assignment]
    try:
        doc = _doc(path, native=False)
    finally:
        fp.plan_chunk = orig  # type: ignore[assignment]
    return seen["boring"] / max(seen["all"], 1), doc


def test_generated_capture_exercises_the_fast_path(generated: list[Path]) -> None:
    share, _doc_ = boring_share(generated[0])
    assert share > 0.5


def test_generated_capture_exercises_the_c_table(generated: list[Path]) -> None:
    if not ctable.available():
        if os.environ.get("CI") == "true":
            pytest.fail("CI must build the C extension (analyzer/_ctrack.c)")
        pytest.skip("analyzer._ctrack is not built")
    from analyzer.pipeline import Analyzer, _analyze_paths

    an = Analyzer(Settings(strict=True))
    _analyze_paths(an, [str(generated[0])], None, None)
    # DNS, the first fragments and ICMP go to the Python path; nearly all else stays in C
    assert an.native_packets > 0.9 * an.stats.packets


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.pcap*")))
def test_fixtures_identical(name: str) -> None:
    _same(DATA / name, 3)


def test_public_captures_identical(public: Path) -> None:
    for p in sorted(public.glob("*.pcap*")):
        for chunk in (64, 16384):
            _same(p, chunk)


def test_mutated_captures_identical_and_never_raise(tmp_path: Path) -> None:
    """Hostile input: random bytes of link/IP/TCP headers changed in the lab captures. The fast
    path must still agree with the reference, and nothing may raise (strict mode re-raises)."""
    import random

    rnd = random.Random(20261128)
    sources = sorted((ROOT / "captures").glob("*.pcap"))
    for it in range(40):
        data = bytearray(rnd.choice(sources).read_bytes())
        off, recs = 24, []
        while off + 16 <= len(data):
            incl = struct.unpack_from("<I", data, off + 8)[0]
            recs.append((off + 16, incl))
            off += 16 + incl
        for _ in range(rnd.randint(1, 40)):
            o, n = rnd.choice(recs)
            if n:
                data[o + rnd.randrange(min(n, 80))] = rnd.randrange(256)
        p = tmp_path / f"m{it}.pcap"
        p.write_bytes(bytes(data))
        _same(p, 64)


def test_c_table_with_the_numpy_reader(monkeypatch: pytest.MonkeyPatch) -> None:
    """One extension built and not the other (the record scan missing, the flow table there):
    the C table then reads numpy batches; still the reference's documents."""
    if not ctable.available():
        pytest.skip("analyzer._ctrack is not built")
    from analyzer import speedups

    caps = sorted((ROOT / "captures").glob("*.pcap"))[:8] + sorted(DATA.glob("*.pcap*"))
    monkeypatch.setattr(speedups, "native", None)
    for p in caps:
        ref = _doc(p, reference=True, chunk_packets=7)
        assert ref == _doc(p, native=True, chunk_packets=7), p.name
