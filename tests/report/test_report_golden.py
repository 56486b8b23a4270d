"""Golden tests for the Markdown, CSV and HTML reports.

The fixture document (``golden/input.json``) has three verdicts with hostile strings in
them. Regenerate the expected files after an intended change with::

    UPDATE_GOLDEN=1 python -m pytest tests/report -q
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
from pathlib import Path
from typing import Any, Callable

import pytest

from analyzer.report.csv_ import COLUMNS, render_csv
from analyzer.report.html import render_html
from analyzer.report.markdown import render_markdown

GOLDEN = Path(__file__).with_name("golden")
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"

HOSTILE = ["<script>alert(1)</script>", "\x1b", "\u202e", "\x07"]


def load_fixture() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((GOLDEN / "input.json").read_text(encoding="utf-8"))
    return doc


EMPTY_DOC: dict[str, Any] = {
    "schema": "analyzer.report/1",
    "tool": {"name": "analyzer", "version": "0.1.0"},
    "inputs": [{"path": "clean.pcap", "packets": 50, "linktype": "EN10MB", "format": "pcap",
                "first_ts": 1700000000.0, "last_ts": 1700000003.0}],
    "verdicts": [],
    "flows": [{"proto": "tcp", "client": "10.0.0.2:5000", "server": "157.240.1.53:443",
               "target": "whatsapp", "domain": "g.whatsapp.net", "packets": 9, "bytes": 900,
               "outcome": "ok"}],
    "stats": {"packets": 50, "decoded": 50, "skipped": {}, "flows": 1, "seconds": 0.01},
}

# Older, partial or hostile documents: nothing here may crash a renderer.
MALFORMED: list[Any] = [
    None,
    [],
    {},
    {"schema": 7, "tool": "x", "inputs": "x", "verdicts": "x", "flows": {}, "stats": []},
    {"inputs": [None, 3, {"path": None, "packets": "many", "first_ts": "soon"}],
     "verdicts": [None, 1, "v", {}]},
    {"verdicts": [{"id": None, "technique": None, "trigger": 3, "target": ["x"],
                   "confidence": "high", "first_ts": float("nan"), "last_ts": float("inf"),
                   "signals": "one", "evidence": [None, {"frame": "x", "input": -3},
                                                  {"frame": 2.0, "ts": 1e308, "input": 99}],
                   "notes": None, "related": [None, {"a": 1}],
                   "packets": [None, {"dir": "up", "ts": -1e308, "ttl": True},
                               {"dir": "c2s", "summary": "\ud800" * 3000, "seq": 2 ** 80}]}]},
    {"inputs": [{"first_ts": -1e308, "last_ts": 1e308}],
     "verdicts": [{"first_ts": -1e308, "last_ts": 1e308, "domain": "\ud800\x1b[2J"}],
     "flows": [None, {"target": None, "outcome": None, "domain": 5}]},
]


def check_golden(name: str, actual: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        path.write_text(actual, encoding="utf-8", newline="")
    if not path.exists():
        pytest.fail(f"{path} missing; run with UPDATE_GOLDEN=1 to create it")
    assert actual == path.read_text(encoding="utf-8"), (
        f"{name} differs from the golden file; if the change is intended, regenerate with "
        "UPDATE_GOLDEN=1")


def test_markdown_golden() -> None:
    check_golden("report.md", render_markdown(load_fixture()))


def test_csv_golden() -> None:
    check_golden("report.csv", render_csv(load_fixture()))


def test_html_golden() -> None:
    check_golden("report.html", render_html(load_fixture()))


@pytest.mark.parametrize("render", [render_markdown, render_csv, render_html])
def test_no_raw_control_or_bidi_characters(render: Callable[[dict[str, Any]], str]) -> None:
    out = render(load_fixture())
    assert "\x1b" not in out and "\x07" not in out
    assert not re.search("[\u202a-\u202e\u2066-\u2069]", out)
    out.encode("utf-8")


def test_html_escapes_document_strings() -> None:
    out = render_html(load_fixture())
    assert "<script>" not in out
    assert "&lt;script&gt;alert(1)&lt;/script&gt;.whatsapp.net" in out
    assert "evil\\u202egnp.exe" in out
    assert "\\x1b[31mred" in out
    # The page can do nothing by itself: no script, no external fetch.
    assert "Content-Security-Policy" in out and "default-src 'none'" in out
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", out)
    assert "<script" not in out.lower()


def test_html_structure() -> None:
    out = render_html(load_fixture())
    assert out.count('<section class="card verdict"') == 3
    assert out.count("<svg") == 1 + 2  # the timeline, and ladders for the two with packets
    assert "frame.number in {7, 9}" in out
    assert "frame.number in {20, 21}" in out
    assert "frame.number in {2, 4}" in out
    assert 'stroke-dasharray="7 5"' in out  # forged packets are dashed
    assert 'href="#v1"' in out  # timeline marks and the index link to the cards


def test_markdown_content() -> None:
    out = render_markdown(load_fixture())
    assert out.startswith("# Network interference report\n")
    assert "```\nframe.number in {7, 9}\n```" in out
    assert "a\\|b" in out  # a pipe cannot split a table cell
    assert "\\<script\\>" in out
    assert out.count("\n### ") == 3 + 1  # three verdicts, plus "Flows per target"


def test_csv_rows_and_formula_defence() -> None:
    rows = list(csv.reader(io.StringIO(render_csv(load_fixture()))))
    assert tuple(rows[0]) == COLUMNS
    assert len(rows) == 1 + 3
    first = dict(zip(COLUMNS, rows[1]))
    assert first["evidence_frames"] == "7;9"
    assert first["signals"] == "ttl_mismatch;ipid_mismatch;data_after_rst"
    assert first["input"] == "captures/whatsapp-sni.pcap"
    assert first["confidence"] == "0.93"
    third = dict(zip(COLUMNS, rows[3]))
    assert third["client"].startswith("'=HYPERLINK")
    assert third["signals"].startswith("'-")
    for row in rows[1:]:
        for cell in row:
            assert not cell.lstrip().startswith(("=", "+", "-", "@")), cell


def test_empty_report_says_no_interference() -> None:
    html_out = render_html(EMPTY_DOC)
    assert "No interference found" in html_out
    assert "clean.pcap" in html_out and "g.whatsapp.net" in html_out  # inputs and flows
    md_out = render_markdown(EMPTY_DOC)
    assert "No interference found" in md_out
    assert "clean.pcap" in md_out and "Flows per target" in md_out
    assert render_csv(EMPTY_DOC) == ",".join(COLUMNS) + "\n"


@pytest.mark.parametrize("render", [render_markdown, render_csv, render_html])
@pytest.mark.parametrize("doc", MALFORMED, ids=lambda d: type(d).__name__)
def test_malformed_documents_never_crash(render: Callable[[Any], str], doc: Any) -> None:
    out = render(doc)
    out.encode("utf-8")
    assert "\x1b" not in out
