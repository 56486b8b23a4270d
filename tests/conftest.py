"""Shared fixtures: writing scapy packets to captures, running the analyzer on them."""
from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any, Callable, Iterable

import pytest

PUBLIC = Path(__file__).resolve().parents[1].parent / "shared" / "captures-public"


def pytest_sessionstart(session: pytest.Session) -> None:
    """Refuse to test stale compiled modules: Python imports a module compiled by mypyc
    (setup.py) in preference to its source, so an edited source would not be what runs. The
    compiled code of every module is in one library, rebuilt whenever a source changes."""
    import importlib.util

    import analyzer

    if os.environ.get(analyzer.PURE_PYTHON_ENV) == "1":
        return
    spec = importlib.util.find_spec("analyzer_native__mypyc")
    if spec is None or not spec.origin:
        return  # not compiled: the source runs
    built = Path(spec.origin).stat().st_mtime
    stale = []
    for so in Path(analyzer.__file__).parent.rglob("*.so"):
        src = so.with_name(so.name.split(".", 1)[0] + ".py")
        if src.is_file() and src.stat().st_mtime > built:
            stale.append(str(src))
    if stale:
        raise pytest.UsageError(
            "compiled modules are older than their source (" + ", ".join(sorted(stale)[:5])
            + "): rebuild with `pip install -e .` (or `python setup.py build_ext --inplace`), "
            "or test the source with ANALYZER_PURE_PYTHON=1")
DATA = Path(__file__).resolve().parent / "data"


def write_raw_pcap(path: Path, packets: Iterable[tuple[float, bytes]], linktype: int = 101) -> Path:
    out = bytearray(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
    for ts, data in packets:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        out += struct.pack("<IIII", sec, usec, len(data), len(data)) + data
    path.write_bytes(bytes(out))
    return path


@pytest.fixture
def make_pcap(tmp_path: Path) -> Callable[..., Path]:
    """make_pcap([(ts, scapy_packet_or_bytes), ...], name="x.pcap") -> path (LINKTYPE_RAW)."""
    counter = [0]

    def _make(packets: Iterable[tuple[float, Any]], name: str = "", linktype: int = 101) -> Path:
        counter[0] += 1
        p = tmp_path / (name or f"capture{counter[0]}.pcap")
        return write_raw_pcap(p, ((ts, bytes(pkt)) for ts, pkt in packets), linktype)

    return _make


@pytest.fixture
def analyze_doc() -> Callable[..., dict[str, Any]]:
    """Run the full pipeline on paths and return the JSON document."""
    from analyzer.config import Settings
    from analyzer.pipeline import analyze_files
    from analyzer.report.document import to_document

    def _run(*paths: Path, settings: Settings | None = None) -> dict[str, Any]:
        return to_document(analyze_files([str(p) for p in paths], settings or Settings(strict=True)))

    return _run


@pytest.fixture
def public() -> Path:
    if not PUBLIC.is_dir():
        pytest.skip("../shared/captures-public is not present")
    return PUBLIC
