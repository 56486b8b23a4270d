"""Terminal report: verdicts, a summary per target, and the run's counters (tabulate).

Readable at 100 columns: long endpoints and domains are shortened with an ellipsis, the
evidence is listed under each verdict. Every untrusted string passes ``terminal_safe``.
"""
from __future__ import annotations

import textwrap
from typing import Any

from tabulate import tabulate

from analyzer.report.escape import terminal_safe

DOMAIN_WIDTH = 28
ENDPOINT_WIDTH = 24
WIDTH = 100


def _cut(s: Any, width: int) -> str:
    text = terminal_safe(str(s)) if s is not None else "-"
    return text if len(text) <= width else text[: width - 1] + "…"


def target_summary(doc: dict[str, Any]) -> list[list[Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for f in doc.get("flows") or []:
        t = str(f.get("target") or "other")
        r = rows.setdefault(t, {"flows": 0, "interfered": 0, "techniques": {}})
        r["flows"] += 1
        if f.get("outcome") == "interfered":
            r["interfered"] += 1
    for v in doc.get("verdicts") or []:
        t = str(v.get("target") or "other")
        r = rows.setdefault(t, {"flows": 0, "interfered": 0, "techniques": {}})
        tech = str(v.get("technique"))
        r["techniques"][tech] = r["techniques"].get(tech, 0) + 1
    out = []
    for t in sorted(rows, key=lambda k: (k == "other", k)):
        r = rows[t]
        techs = ", ".join(f"{k}×{n}" for k, n in sorted(r["techniques"].items())) or "-"
        out.append([terminal_safe(t), r["flows"], r["interfered"], techs])
    return out


def render_table(doc: dict[str, Any]) -> str:
    lines: list[str] = []
    inputs = doc.get("inputs") or []
    stats = doc.get("stats") or {}
    verdicts = doc.get("verdicts") or []
    lines.append(
        f"analyzer {doc.get('tool', {}).get('version', '?')}: {len(inputs)} input(s), "
        f"{stats.get('packets', 0):,} packets, {stats.get('flows', 0):,} flows, "
        f"{len(verdicts)} verdict(s) in {stats.get('seconds', 0)}s"
    )
    for i, inp in enumerate(inputs):
        tail = f" ({inp.get('format')}, {inp.get('linktype')}, {inp.get('packets', 0):,} packets)"
        lines.append(f"  [{i}] " + _cut(inp.get("path"), WIDTH - 6 - len(tail)) + tail)
    lines.append("")
    if not verdicts:
        lines.append("No interference found.")
    else:
        rows = []
        for n, v in enumerate(verdicts, 1):
            rows.append([
                n, v.get("technique"), v.get("trigger"), v.get("target"),
                _cut(v.get("client"), ENDPOINT_WIDTH) + "\n→ " + _cut(v.get("server"), ENDPOINT_WIDTH),
                _cut(v.get("domain"), DOMAIN_WIDTH), f"{float(v.get('confidence') or 0):.2f}",
            ])
        lines.append(tabulate(rows, headers=["#", "technique", "trigger", "target", "client → server",
                                             "domain", "conf"], tablefmt="simple"))
        lines.append("")
        for n, v in enumerate(verdicts, 1):
            lines.append(f"#{n} {terminal_safe(str(v.get('technique')))}/{terminal_safe(str(v.get('trigger')))} "
                         f"{terminal_safe(str(v.get('id')))}")
            signals = ", ".join(terminal_safe(str(s)) for s in v.get("signals") or [])
            lines.extend(textwrap.wrap("signals: " + signals, WIDTH, initial_indent="    ",
                                       subsequent_indent="             "))
            for e in (v.get("evidence") or [])[:8]:
                inp = e.get("input", 0)
                where = f"    frame {e.get('frame')}" + (f" [{inp}]" if len(inputs) > 1 else "") + ": "
                lines.append(where + _cut(e.get("reason"), WIDTH - len(where)))
            for note in v.get("notes") or []:
                lines.append("    note: " + _cut(note, WIDTH - 10))
    summary = target_summary(doc)
    if summary:
        lines.append("")
        lines.append(tabulate(summary, headers=["target", "flows", "interfered", "techniques"],
                              tablefmt="simple"))
    skipped = stats.get("skipped") or {}
    if skipped:
        lines.append("")
        lines.append("skipped: " + ", ".join(f"{terminal_safe(str(k))}={v}" for k, v in skipped.items()))
    return "\n".join(lines) + "\n"
