"""The batch fast path must give exactly what the per-packet reference path gives.

Not a timing test: the same inputs through both paths, whole result documents compared
(verdicts, flows with their counters, stats), with several chunk sizes so that flows straddle
chunk boundaries, on generated mixed captures (bench/gen_capture.py), the format fixtures and
the public captures.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from analyzer.config import Settings
from analyzer.pipeline import analyze_files
from analyzer.report.document import to_document

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"


def _doc(path: Path, **kw: Any) -> dict[str, Any]:
    d = to_document(analyze_files([str(path)], Settings(strict=True, **kw)))
    d["stats"].pop("seconds")
    return d


def _same(path: Path, chunk: int) -> None:
    ref = _doc(path, reference=True, chunk_packets=chunk)
    fast = _doc(path, reference=False, chunk_packets=chunk)
    for key in ref:
        assert ref[key] == fast[key], f"{path.name} chunk={chunk}: '{key}' differs"


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


def test_generated_capture_exercises_the_fast_path(generated: list[Path]) -> None:
    import analyzer.track.fastpath as fp

    seen = {"boring": 0, "all": 0}
    orig = fp.plan_chunk

    def spy(*a: Any, **k: Any) -> Any:
        plan, nb, lo, hi = orig(*a, **k)
        seen["boring"] += nb
        seen["all"] += len(a[1].keyable)
        return plan, nb, lo, hi

    import analyzer.pipeline as pl
    pl.plan_chunk = spy  # type: ignore[assignment]
    try:
        _doc(generated[0])
    finally:
        pl.plan_chunk = orig  # type: ignore[assignment]
    assert seen["boring"] > seen["all"] * 0.5


@pytest.mark.parametrize("name", sorted(p.name for p in DATA.glob("*.pcap*")))
def test_fixtures_identical(name: str) -> None:
    _same(DATA / name, 3)


def test_public_captures_identical(public: Path) -> None:
    for p in sorted(public.glob("*.pcap*")):
        for chunk in (64, 16384):
            _same(p, chunk)
