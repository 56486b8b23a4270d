"""CSV report: one row per verdict, for spreadsheets and scripts.

Columns: ``id, input, technique, trigger, target, proto, client, server, domain, confidence,
first_ts, last_ts, signals, evidence_frames, detector``. ``input`` is the path of the capture
the evidence comes from; ``signals`` and ``evidence_frames`` are ``;``-joined. When a
verdict's evidence spans several inputs, ``input`` lists every path (``;``-joined) and each
frame is written as ``<input index>:<frame>``. Times are Unix seconds (UTC).

Text cells are made visible (``terminal_safe``: no terminal escapes, no bidi tricks) and
inert in spreadsheets (``csv_safe``: no formulas). Numbers come from the document's numbers.
"""
from __future__ import annotations

import csv
import io
from typing import Any, Optional

from analyzer.report.escape import csv_safe, terminal_safe
from analyzer.report.merge import ReportView, VerdictView, read_view

__all__ = ["render_csv", "COLUMNS"]

COLUMNS = ("id", "input", "technique", "trigger", "target", "proto", "client", "server",
           "domain", "confidence", "first_ts", "last_ts", "signals", "evidence_frames",
           "detector")


def render_csv(doc: dict[str, Any]) -> str:
    """Header plus one row per verdict, ``\\n`` line ends, RFC 4180 quoting."""
    view = read_view(doc)
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    for verdict in view.verdicts:
        writer.writerow(_row(view, verdict))
    return buf.getvalue()


def _text(value: Optional[str]) -> str:
    return "" if value is None else csv_safe(terminal_safe(value))


def _number(value: Optional[float]) -> str:
    return "" if value is None else repr(value)


def _row(view: ReportView, v: VerdictView) -> list[str]:
    inputs: list[int] = []
    for item in v.evidence:
        if item.input not in inputs:
            inputs.append(item.input)
    if not inputs and len(view.inputs) == 1:
        inputs = [0]
    several = len(inputs) > 1
    frames = [("" if not several else f"{e.input}:") + str(e.frame)
              for e in v.evidence if e.frame is not None]
    return [
        _text(v.id),
        _text(";".join(view.input_name(i) for i in inputs)),
        _text(v.technique),
        _text(v.trigger),
        _text(v.target),
        _text(v.proto),
        _text(v.client),
        _text(v.server),
        _text(v.domain),
        _number(v.confidence),
        _number(v.first_ts),
        _number(v.last_ts),
        _text(";".join(v.signals)),
        ";".join(frames),
        _text(v.detector),
    ]
