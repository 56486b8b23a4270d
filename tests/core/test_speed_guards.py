"""Guards for performance properties that are not timings.

The offline analysis pauses Python's automatic cyclic garbage collector
(:func:`analyzer.pipeline.manual_gc`): that is only sound while the analysis creates no
reference cycles, which would otherwise be freed only by the periodic full collection.
"""
from __future__ import annotations

import gc
import subprocess
import sys
from pathlib import Path

import pytest

from analyzer.config import Settings
from analyzer.pipeline import analyze_files

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = sorted((ROOT / "captures").glob("*.pcap"))


def _cyclic_garbage_of(paths: list[Path], **kw: object) -> int:
    # a first run warms up one-off lazy initialisation (inspect.signature of a builtin
    # leaves a few hundred cyclic objects once per process)
    analyze_files([str(p) for p in paths], Settings(**kw))  # type: ignore[arg-type]
    gc.collect()
    was = gc.isenabled()
    gc.disable()
    try:
        result = analyze_files([str(p) for p in paths], Settings(**kw))  # type: ignore[arg-type]
        assert result.stats.packets > 0
        del result
        return gc.collect()
    finally:
        if was:
            gc.enable()


def test_lab_captures_create_no_reference_cycles() -> None:
    # every detector fires on some of these captures (verdicts, evidence, ladders)
    assert len(CAPTURES) >= 10
    assert _cyclic_garbage_of(CAPTURES) == 0
    assert _cyclic_garbage_of(CAPTURES, reference=True) == 0


def test_generated_capture_creates_no_reference_cycles(tmp_path: Path) -> None:
    p = tmp_path / "mixed.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "20000",
                    "-o", str(p), "--seed", "4", "-q"], check=True)
    assert _cyclic_garbage_of([p], chunk_packets=4096) == 0


def test_manual_gc_restores_the_collector() -> None:
    from analyzer.pipeline import manual_gc

    assert gc.isenabled()
    with manual_gc():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError):
        with manual_gc():
            raise RuntimeError("boom")
    assert gc.isenabled()


def test_the_c_path_does_not_import_numpy() -> None:
    # numpy takes ~90 ms to import; the C path reads batches as plain typed buffers
    from analyzer.track import ctable

    if not ctable.available():
        pytest.skip("analyzer._ctrack is not built")
    code = ("import sys; from analyzer.pipeline import analyze_files; "
            "from analyzer.report.document import write_json; import io; "
            f"r = analyze_files([{str(CAPTURES[0])!r}, {str(CAPTURES[-1])!r}]); "
            "write_json(r, io.StringIO()); assert r.stats.packets; "
            "print('numpy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=str(ROOT), check=True).stdout.strip()
    assert out == "False"
