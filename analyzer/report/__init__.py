"""Report writers. Each renders the JSON result document (a dict), never internal objects,
so that ``analyzer report`` can re-render saved results exactly like ``analyze`` does."""
from __future__ import annotations

import json
from typing import Any

FORMATS = ("table", "json", "jsonl", "csv", "markdown", "html")


def render_json(doc: dict[str, Any]) -> str:
    return json.dumps(doc, indent=2, ensure_ascii=False) + "\n"


def render_jsonl(doc: dict[str, Any]) -> str:
    lines = []
    for v in doc.get("verdicts") or []:
        lines.append(json.dumps({"type": "verdict", **v}, ensure_ascii=False))
    for f in doc.get("flows") or []:
        lines.append(json.dumps({"type": "flow", **f}, ensure_ascii=False))
    lines.append(json.dumps({"type": "summary", "schema": doc.get("schema"), "tool": doc.get("tool"),
                             "inputs": doc.get("inputs"), "stats": doc.get("stats")},
                            ensure_ascii=False))
    return "\n".join(lines) + "\n"


def render(doc: dict[str, Any], fmt: str) -> str:
    if fmt == "json":
        return render_json(doc)
    if fmt == "jsonl":
        return render_jsonl(doc)
    if fmt == "table":
        from analyzer.report.table import render_table
        return render_table(doc)
    if fmt == "csv":
        from analyzer.report.csv_ import render_csv
        return render_csv(doc)
    if fmt == "markdown":
        from analyzer.report.markdown import render_markdown
        return render_markdown(doc)
    if fmt == "html":
        from analyzer.report.html import render_html
        return render_html(doc)
    raise ValueError(f"unknown format {fmt!r}")
