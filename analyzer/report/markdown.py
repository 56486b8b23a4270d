"""Markdown report: for issues, pads and mailing lists.

Renders a result *document* (the JSON contract, see ``merge.read_view``), never internal
objects. Every value from the document goes through ``markdown_safe``; the only unescaped
text from the document is the Wireshark filter, which is built from integers.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional

from analyzer.report.escape import markdown_safe as md
from analyzer.report.merge import (
    ReportView,
    VerdictView,
    flows_by_target,
    format_duration,
    format_ts,
    outcome_columns,
    read_view,
    technique_matrix,
    wireshark_filters,
)

__all__ = ["render_markdown"]

_DIR_ARROW = {"c2s": "client → server", "s2c": "server → client", "": "?"}


def render_markdown(doc: dict[str, Any]) -> str:
    """The whole report as GitHub-flavoured Markdown (ends with one newline)."""
    view = read_view(doc)
    out: list[str] = ["# Network interference report", ""]
    out += [f"Produced by {md(view.tool_name)} {md(view.tool_version)} "
            f"(result schema {md(view.schema)}). Times are UTC.", ""]
    out += _inputs(view)
    out += _summary(view)
    if view.verdicts:
        out += ["## Verdicts", ""]
        for verdict in view.verdicts:
            out += _verdict(view, verdict)
    out += _stats(view)
    while out and out[-1] == "":
        out.pop()
    return "\n".join(out) + "\n"


def _table(headers: Iterable[str], rows: Iterable[Iterable[str]],
           align: Optional[str] = None) -> list[str]:
    """A GFM table; cells must already be escaped. ``align``: one of ``l``/``r`` per column."""
    heads = list(headers)
    marks = ["---:" if a == "r" else "---" for a in (align or "l" * len(heads))]
    lines = ["| " + " | ".join(heads) + " |", "| " + " | ".join(marks) + " |"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines + [""]


def _num(value: Optional[int]) -> str:
    return "—" if value is None else f"{value:,}"


def _inputs(view: ReportView) -> list[str]:
    out = ["## Inputs", ""]
    if not view.inputs:
        return out + ["No inputs are listed in this result.", ""]
    rows = []
    for item in view.inputs:
        duration = (item.last_ts - item.first_ts
                    if item.first_ts is not None and item.last_ts is not None else None)
        rows.append([str(item.index), md(item.path), md(item.format), md(item.linktype),
                     _num(item.packets), format_ts(item.first_ts), format_ts(item.last_ts),
                     format_duration(duration)])
    return out + _table(["#", "File", "Format", "Link type", "Packets", "First packet",
                         "Last packet", "Duration"], rows, "rlllrllr")


def _summary(view: ReportView) -> list[str]:
    out = ["## Summary", ""]
    if not view.verdicts:
        out += ["**No interference found** in the packets of the inputs above.", ""]
    else:
        targets, techniques, counts = technique_matrix(view)
        n = len(view.verdicts)
        out += [f"**{n} verdict{'s' if n != 1 else ''} of interference**, "
                f"affecting {', '.join(md(t) for t in targets)}.", ""]
        rows = []
        for target in targets:
            cells = [str(counts.get((target, q), 0) or "") for q in techniques]
            total = sum(counts.get((target, q), 0) for q in techniques)
            rows.append([md(target), *cells, str(total)])
        out += _table(["Target", *(md(q) for q in techniques), "Total"], rows,
                      "l" + "r" * (len(techniques) + 1))
    rows_by_target = flows_by_target(view)
    if view.flows:
        outcomes = outcome_columns(rows_by_target)
        out += ["### Flows per target", ""]
        rows = [[md(row.target), str(row.flows),
                 *(str(row.outcomes.get(o, 0)) for o in outcomes), str(row.verdicts),
                 ", ".join(md(d) for d in row.domains) or "—"]
                for row in rows_by_target]
        out += _table(["Target", "Flows", *(md(o) for o in outcomes), "Verdicts",
                       "Main domains"], rows, "lr" + "r" * len(outcomes) + "rl")
    elif not view.has_flows:
        out += ["This result does not list flows.", ""]
    return out


def _verdict(view: ReportView, v: VerdictView) -> list[str]:
    title = f"{v.index}. {md(v.technique)} via {md(v.trigger)} — {md(v.target)}"
    if v.domain:
        title += f" ({md(v.domain)})"
    out = [f"### {title}", ""]
    when = format_ts(v.first_ts)
    if v.last_ts is not None and v.last_ts != v.first_ts:
        same_day = (v.first_ts is not None
                    and format_ts(v.first_ts)[:10] == format_ts(v.last_ts)[:10])
        when += " – " + format_ts(v.last_ts, with_date=not same_day)
    fields = [
        ("ID", md(v.id)),
        ("Technique", md(v.technique)),
        ("Trigger", md(v.trigger)),
        ("Target", md(v.target)),
        ("Domain", md(v.domain) if v.domain else "—"),
        ("Protocol", md(v.proto)),
        ("Client", md(v.client)),
        ("Server", md(v.server)),
        ("Confidence", f"{v.confidence_text} ({v.confidence_label})"),
        ("Time", when),
        ("Signals", ", ".join(md(s) for s in v.signals) or "—"),
        ("Detector", md(v.detector)),
    ]
    if v.flow_id:
        fields.append(("Flow", md(v.flow_id)))
    if v.related:
        fields.append(("Related verdicts", ", ".join(md(r) for r in v.related)))
    out += _table(["Field", "Value"], fields)

    out += ["#### Evidence", ""]
    if v.evidence:
        rows = [[md(view.input_name(e.input)), "—" if e.frame is None else str(e.frame),
                 format_ts(e.ts), md(e.reason) or "—"] for e in v.evidence]
        out += _table(["Input", "Frame", "Time", "Reason"], rows, "lrll")
    else:
        out += ["No evidence packets are cited.", ""]
    for index, expression in wireshark_filters(v):
        out += [f"Wireshark display filter for {md(view.input_name(index))}:", "",
                "```", expression, "```", ""]

    if v.packets:
        out += ["#### Key packets of the flow", ""]
        cited = {(e.input, e.frame) for e in v.evidence}
        rows = []
        for p in v.packets:
            frame = "—" if p.frame is None else str(p.frame)
            if (p.input, p.frame) in cited:
                frame = f"**{frame}**"
            rows.append([frame, format_ts(p.ts, with_date=False), _DIR_ARROW[p.dir],
                         md(p.summary) or "—", md(p.flags) if p.flags else "—",
                         _opt(p.ttl), _opt(p.ipid), _opt(p.seq), _opt(p.ack), _opt(p.len),
                         "**forged**" if p.forged else ""])
        out += _table(["Frame", "Time", "Direction", "Summary", "Flags", "TTL", "IP-ID",
                       "Seq", "Ack", "Len", ""], rows, "rlllrrrrrrl")
        out += ["Frames in bold are cited as evidence; sequence numbers are relative.", ""]

    if v.notes:
        out += ["#### Notes", ""]
        out += [f"- {md(note)}" for note in v.notes]
        out.append("")
    return out


def _opt(value: Optional[int]) -> str:
    return "—" if value is None else str(value)


def _stats(view: ReportView) -> list[str]:
    if not view.stats:
        return []
    out = ["## Processing statistics", ""]
    return out + _table(["Counter", "Value"], [[md(k), md(v)] for k, v in view.stats], "lr")
