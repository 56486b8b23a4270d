"""Golden scenarios: every curated capture in captures/ (made by the lab, tests/lab/scenarios.py,
regenerated with `python -m tests.lab.make_captures --out captures/`) is analysed and compared

1. with its ground truth (captures/NAME.truth.json: the verdicts the censor's actions must
   produce, and nothing else), and
2. with the expected analyzer output kept in tests/golden/NAME.expected.json (technique,
   trigger, target, endpoints, domain, signals, evidence frames and reasons, flows), so any
   change in what the analyzer says about a real capture shows up in review.
   Regenerate after an intended change: UPDATE_GOLDEN=1 pytest tests/golden
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from analyzer.config import Settings
from analyzer.pipeline import analyze_files
from analyzer.report.document import to_document

ROOT = Path(__file__).resolve().parents[2]
CAPTURES = ROOT / "captures"
GOLDEN = Path(__file__).resolve().parent
NAMES = sorted(p.stem for p in CAPTURES.glob("*.pcap"))


def stable_view(doc: dict[str, Any]) -> dict[str, Any]:
    """The parts of a result that must not change silently."""
    return {
        "verdicts": [{k: v[k] for k in ("id", "technique", "trigger", "target", "proto", "client", "server",
                                       "domain", "confidence", "signals", "related")}
                     | {"evidence": [[e["frame"], e["reason"]] for e in v["evidence"]],
                        "forged": [p["frame"] for p in v["packets"] if p["forged"]]}
                     for v in doc["verdicts"]],
        "flows": [[f["proto"], f["client"], f["server"], f["target"], f["app"], f["domain"],
                   f["packets"], f["outcome"]] for f in doc["flows"]],
        "stats": {k: doc["stats"][k] for k in ("packets", "decoded", "skipped", "flows")},
    }


def _matches(v: dict[str, Any], e: dict[str, Any]) -> bool:
    ip = v["client"].rsplit(":", 1)[0].strip("[]")
    ok = all(v[k] == e[k] for k in ("technique", "trigger", "target", "server")) and ip == e["client"]
    if ok and e.get("match_domain"):
        ok = (v["domain"] or "").lower().rstrip(".") == e["domain"].lower().rstrip(".")
    return ok


@pytest.mark.parametrize("name", NAMES)
def test_golden(name: str) -> None:
    doc = to_document(analyze_files([str(CAPTURES / f"{name}.pcap")], Settings(strict=True)))
    truth = json.loads((CAPTURES / f"{name}.truth.json").read_text())
    expected = truth["expected_verdicts"]
    for e in expected:
        assert any(_matches(v, e) for v in doc["verdicts"]), f"missing {e}"
    if not expected:
        assert doc["verdicts"] == [], "benign capture got a verdict"
    view = stable_view(doc)
    path = GOLDEN / f"{name}.expected.json"
    if os.environ.get("UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(view, indent=1, ensure_ascii=False) + "\n")
    assert view == json.loads(path.read_text())
