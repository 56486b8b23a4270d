"""--jobs N must give exactly the result of one process (not a timing test)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from analyzer.cli import main
from analyzer.config import Settings
from analyzer.parallel import analyze_files_parallel
from analyzer.pipeline import analyze_files
from analyzer.report.document import to_document

ROOT = Path(__file__).resolve().parents[2]


def _docs(paths: list[Path], jobs: int, **kw: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    a = to_document(analyze_files([str(p) for p in paths], Settings(**kw)))
    b = to_document(analyze_files_parallel([str(p) for p in paths], Settings(**kw), jobs))
    a["stats"].pop("seconds")
    b["stats"].pop("seconds")
    return a, b


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("par") / "mixed.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "40000", "-o", str(p),
                    "--seed", "3", "-q"], check=True)
    return p


@pytest.mark.parametrize("jobs", [2, 3])
def test_generated_capture_same_with_jobs(mixed: Path, jobs: int) -> None:
    a, b = _docs([mixed], jobs, chunk_packets=4096)
    assert a["verdicts"] and a == b


def test_every_lab_capture_same_with_jobs() -> None:
    caps = sorted((ROOT / "captures").glob("*.pcap"))
    a, b = _docs(caps, 2)
    assert a == b


def test_public_captures_same_with_jobs(public: Path) -> None:
    a, b = _docs(sorted(public.glob("*.pcap*")), 2)
    assert a == b


def test_cli_jobs_option_and_bad_input(tmp_path: Path) -> None:
    cap = ROOT / "captures" / "rst-injection-whatsapp-sni.pcap"
    r = CliRunner().invoke(main, ["analyze", str(cap), "-j", "2", "-f", "json"])
    assert r.exit_code == 0 and '"rst_injection"' in r.output
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"nope" * 10)
    r = CliRunner().invoke(main, ["analyze", str(junk), "-j", "2"])
    assert r.exit_code == 3 and "not a pcap" in r.output
