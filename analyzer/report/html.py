"""HTML report: one self-contained page to read, share and verify.

Renders a result *document* (see ``merge.read_view``). The page has no external fetches and
no script: CSS and SVG are inline, and a Content-Security-Policy forbids anything else, so a
string that somehow escaped escaping still could not run or phone home.

Everything printed from the document passes through Jinja2 autoescaping, after
``terminal_safe`` (the environment's ``finalize`` hook) so that control characters and bidi
overrides in an SNI or DNS name show as visible escapes instead of re-ordering the page.
Diagram geometry (timeline, ladder diagrams) is computed here; the templates only draw it.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Optional

from jinja2 import Environment, FileSystemLoader, StrictUndefined
from markupsafe import Markup

from analyzer.report.escape import terminal_safe
from analyzer.report.merge import (
    PacketView,
    ReportView,
    TARGET_ORDER,
    TECHNIQUE_ORDER,
    VerdictView,
    flows_by_target,
    format_duration,
    format_ts,
    outcome_columns,
    read_view,
    technique_matrix,
    wireshark_filters,
)

__all__ = ["render_html"]

TEMPLATES = Path(__file__).with_name("templates")

# Colour and label per technique (contract vocabulary); other values get FALLBACK_COLOUR.
TECHNIQUE_STYLE: dict[str, tuple[str, str]] = {
    "rst_injection": ("#d1293d", "RST injection"),
    "dns_injection": ("#7b3fbf", "DNS injection"),
    "drop": ("#d9730d", "Packet drop"),
    "icmp_unreachable": ("#0f7b7d", "ICMP unreachable"),
    "blockpage": ("#c026a3", "Block page"),
    "throttling": ("#2563eb", "Throttling"),
}
FALLBACK_COLOUR = "#6b7280"
FORGED_COLOUR = "#d1293d"
NORMAL_COLOUR = "#374151"

# Timeline geometry (SVG user units).
TL_WIDTH = 1080
TL_LABEL_W = 120
TL_RIGHT_PAD = 24
TL_TOP = 8
TL_SUBROW = 26
TL_AXIS_H = 34
TL_MIN_BAR = 13.0  # shorter spans are drawn as a dot
TL_GAP = 10.0
TL_MAX_SUBROWS = 4
TL_MAX_TICKS = 8
TL_SPLIT_SPAN = 86400.0  # merged captures further apart than this get a timeline each

# Ladder geometry.
LD_WIDTH = 980
LD_GUTTER = 104
LD_CLIENT_X = 232
LD_SERVER_X = 856
LD_BOX_W = 236
LD_ENDPOINT_MAX = 30
LD_HEAD_H = 64
LD_ROW = 52
LD_SLOPE = 16
LD_HEAD_LEN = 10
LD_HEAD_HALF = 4.5
LD_MAX_PACKETS = 60
LD_LABEL_MAX = 72

_TICK_STEPS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60,
               120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800,
               604800)


def render_html(doc: dict[str, Any]) -> str:
    """The whole report as one HTML page."""
    view = read_view(doc)
    env = _environment()
    targets, techniques, counts = technique_matrix(view)
    flow_rows = flows_by_target(view)
    context = {
        "view": view,
        "span": _span_text(view),
        "total_packets": _total_packets(view),
        "matrix": {"targets": targets, "techniques": techniques, "counts": counts},
        "flow_rows": flow_rows,
        "outcomes": outcome_columns(flow_rows),
        "flow_total": _flow_total(view),
        "flows_interfered": sum(1 for f in view.flows if f.outcome == "interfered"),
        "timelines": _timelines(view),
        "one_day": len({format_ts(v.first_ts)[:10] for v in view.verdicts}) <= 1,
        "untimed": sum(1 for v in view.verdicts if v.first_ts is None and v.last_ts is None),
        "legend": _legend(view),
        "cards": [_card(view, v) for v in view.verdicts],
    }
    return env.get_template("report.html.j2").render(context)


def _finalize(value: Any) -> Any:
    """Make every printed document string visible-safe before autoescaping."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return terminal_safe(value)
    return value


@functools.cache
def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)), autoescape=True,
                      undefined=StrictUndefined, finalize=_finalize, trim_blocks=True,
                      lstrip_blocks=True, keep_trailing_newline=True)
    env.filters["ts"] = format_ts
    env.filters["clock"] = lambda ts: format_ts(ts, with_date=False)
    env.filters["num"] = lambda n: "—" if n is None else f"{n:,}"
    env.filters["duration"] = format_duration
    env.filters["colour"] = technique_colour
    env.filters["technique_label"] = technique_label
    env.filters["coord"] = _coord
    return env


def technique_colour(technique: str) -> str:
    return TECHNIQUE_STYLE.get(technique, (FALLBACK_COLOUR, ""))[0]


def technique_label(technique: str) -> str:
    style = TECHNIQUE_STYLE.get(technique)
    return style[1] if style else technique


def _coord(value: float) -> str:
    """An SVG coordinate: short, locale-free, never NaN."""
    if not math.isfinite(value):
        return "0"
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _span_text(view: ReportView) -> str:
    first, last = view.span
    if first is None or last is None:
        return "time span unknown"
    return f"{format_ts(first)} – {format_ts(last)} UTC ({format_duration(last - first)})"


def _total_packets(view: ReportView) -> Optional[int]:
    counts = [i.packets for i in view.inputs if i.packets is not None]
    return sum(counts) if counts else None


def _flow_total(view: ReportView) -> Optional[str]:
    if view.flows:
        return f"{len(view.flows):,}"
    for name, value in view.stats:
        if name == "flows":
            return value
    return None


@dataclass(frozen=True, slots=True)
class LegendItem:
    technique: str
    label: str
    colour: str
    count: int


def _legend(view: ReportView) -> list[LegendItem]:
    counts: dict[str, int] = {}
    for verdict in view.verdicts:
        counts[verdict.technique] = counts.get(verdict.technique, 0) + 1
    rank = {name: i for i, name in enumerate(TECHNIQUE_ORDER)}
    ordered = sorted(counts, key=lambda t: (rank.get(t, len(rank)), t))
    return [LegendItem(t, technique_label(t), technique_colour(t), counts[t]) for t in ordered]


# --------------------------------------------------------------------------------------------
# Timeline


@dataclass(frozen=True, slots=True)
class Tick:
    x: float
    label: str


@dataclass(frozen=True, slots=True)
class Mark:
    x1: float
    x2: float
    y: float
    colour: str
    anchor: str
    title: str
    bar: bool


@dataclass(frozen=True, slots=True)
class Lane:
    label: str
    y: float
    height: float
    shaded: bool


@dataclass(frozen=True, slots=True)
class Timeline:
    width: int
    height: float
    x0: float
    x1: float
    axis_y: float
    ticks: tuple[Tick, ...]
    lanes: tuple[Lane, ...]
    marks: tuple[Mark, ...]
    caption: str
    title: str


def _tick_step(span: float) -> float:
    for step in _TICK_STEPS:
        if span / step <= TL_MAX_TICKS:
            return float(step)
    return float(_TICK_STEPS[-1]) * math.ceil(span / (_TICK_STEPS[-1] * TL_MAX_TICKS))


def _tick_label(ts: float, step: float, span: float) -> str:
    try:
        moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.0f}"
    if step >= 86400:
        return moment.strftime("%Y-%m-%d")
    if step >= 60:
        return moment.strftime("%m-%d %H:%M" if span > 86400 else "%H:%M")
    text = moment.strftime("%H:%M:%S")
    if step < 1:
        decimals = min(6, max(1, -math.floor(math.log10(step) + 1e-9)))
        text += f"{moment.microsecond / 1e6:.{decimals}f}"[1:]
    return text


def _primary_input(v: VerdictView) -> int:
    """The capture a verdict's evidence (or else its packet trace) comes from."""
    if v.evidence:
        return v.evidence[0].input
    if v.packets:
        return v.packets[0].input
    return 0


def _bounds(v: VerdictView) -> tuple[float, float]:
    start = v.first_ts if v.first_ts is not None else v.last_ts
    end = v.last_ts if v.last_ts is not None else v.first_ts
    assert start is not None and end is not None
    return start, max(start, end)


def _timelines(view: ReportView) -> list[Timeline]:
    """One timeline; or one per capture when merged captures lie far apart in time."""
    timed = [v for v in view.verdicts if v.first_ts is not None or v.last_ts is not None]
    if not timed:
        return []
    groups: dict[int, list[VerdictView]] = {}
    for verdict in timed:
        groups.setdefault(_primary_input(verdict), []).append(verdict)
    first = min(_bounds(v)[0] for v in timed)
    last = max(_bounds(v)[1] for v in timed)
    if len(groups) > 1 and not last - first <= TL_SPLIT_SPAN:
        drawn = [_timeline(groups[i], f"Capture #{i}: {view.input_name(i)}")
                 for i in sorted(groups)]
    else:
        drawn = [_timeline(timed, "")]
    return [timeline for timeline in drawn if timeline is not None]


def _timeline(timed: list[VerdictView], title: str) -> Optional[Timeline]:
    """The verdicts on one time axis, one lane per target, colour by technique."""
    starts = [_bounds(v)[0] for v in timed]
    ends = [_bounds(v)[1] for v in timed]
    t0, t1 = min(starts), max(ends)
    if t1 - t0 <= 0:
        t0, t1 = t0 - 1.0, t1 + 1.0
    pad = (t1 - t0) * 0.03
    t0, t1 = t0 - pad, t1 + pad
    if not (math.isfinite(t1 - t0) and t1 - t0 > 0):
        return None  # absurd timestamps (hostile document): no axis to draw
    x0, x1 = float(TL_LABEL_W), float(TL_WIDTH - TL_RIGHT_PAD)

    def x_of(ts: float) -> float:
        return x0 + (ts - t0) / (t1 - t0) * (x1 - x0)

    rank = {name: i for i, name in enumerate(TARGET_ORDER)}
    targets = sorted({v.target for v in timed}, key=lambda t: (rank.get(t, len(rank)), t))
    lanes: list[Lane] = []
    marks: list[Mark] = []
    y = float(TL_TOP)
    for lane_no, target in enumerate(targets):
        rows: list[float] = []  # right edge of the last mark per sub-row
        placed: list[tuple[VerdictView, float, float, int]] = []
        for verdict, start, end in sorted(
                ((v, s, e) for v, s, e in zip(timed, starts, ends) if v.target == target),
                key=lambda item: (item[1], item[0].index)):
            a, b = x_of(start), x_of(end)
            row = next((i for i, right in enumerate(rows) if a > right + TL_GAP), None)
            if row is None:
                if len(rows) < TL_MAX_SUBROWS:
                    rows.append(b)
                    row = len(rows) - 1
                else:
                    row = min(range(len(rows)), key=lambda i: rows[i])
            rows[row] = max(rows[row], b)
            placed.append((verdict, a, b, row))
        height = TL_SUBROW * max(1, len(rows))
        lanes.append(Lane(label=target, y=y, height=height, shaded=lane_no % 2 == 0))
        for verdict, a, b, row in placed:
            tooltip = (f"#{verdict.index} {technique_label(verdict.technique)} via "
                     f"{verdict.trigger}, {verdict.target}"
                     + (f" ({verdict.domain})" if verdict.domain else "")
                     + f" at {format_ts(verdict.first_ts)} UTC")
            marks.append(Mark(x1=a, x2=b if b - a >= TL_MIN_BAR else a,
                              y=y + TL_SUBROW * row + TL_SUBROW / 2,
                              colour=technique_colour(verdict.technique),
                              anchor=verdict.anchor, title=tooltip,
                              bar=b - a >= TL_MIN_BAR))
        y += height
    axis_y = y + 4
    step = _tick_step(t1 - t0)
    first_tick = math.ceil(t0 / step) * step
    ticks: list[Tick] = []
    tick = first_tick
    while tick <= t1 and len(ticks) <= TL_MAX_TICKS * 2:
        ticks.append(Tick(x=x_of(tick), label=_tick_label(tick, step, t1 - t0)))
        tick += step
    caption = f"Times in UTC; verdicts from {format_ts(min(starts))} to {format_ts(max(ends))}"
    return Timeline(width=TL_WIDTH, height=axis_y + TL_AXIS_H, x0=x0, x1=x1, axis_y=axis_y,
                    ticks=tuple(ticks), lanes=tuple(lanes), marks=tuple(marks),
                    caption=caption, title=title)


# --------------------------------------------------------------------------------------------
# Ladder (sequence) diagram


@dataclass(frozen=True, slots=True)
class Arrow:
    x1: float
    y1: float
    x2: float
    y2: float
    head: str  # polygon points, "" for no head
    colour: str
    dashed: bool
    forged: bool
    evidence: bool
    label: str
    detail: str
    label_y: float
    detail_y: float
    band_y: float
    frame: str
    time: str
    frame_y: float


@dataclass(frozen=True, slots=True)
class Ladder:
    width: int
    height: float
    client_x: float
    server_x: float
    box_w: int
    lane_top: float
    arrows: tuple[Arrow, ...]
    omitted: int
    client: str
    server: str
    server_sub: str
    label_x: float


def _short(text: str, limit: int = LD_LABEL_MAX) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _packet_detail(p: PacketView) -> str:
    parts = []
    if p.flags:
        parts.append(f"flags {p.flags}")
    if p.ttl is not None:
        parts.append(f"TTL {p.ttl}")
    if p.ipid is not None:
        parts.append(f"IP-ID {p.ipid}")
    if p.seq is not None:
        parts.append(f"seq {p.seq}")
    if p.ack is not None:
        parts.append(f"ack {p.ack}")
    if p.win is not None:
        parts.append(f"win {p.win}")
    if p.len is not None:
        parts.append(f"len {p.len}")
    return _short(" · ".join(parts), LD_LABEL_MAX + 20)


def _arrow_head(x1: float, y1: float, x2: float, y2: float) -> str:
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    ux, uy = (x2 - x1) / length, (y2 - y1) / length
    bx, by = x2 - ux * LD_HEAD_LEN, y2 - uy * LD_HEAD_LEN
    nx, ny = -uy * LD_HEAD_HALF, ux * LD_HEAD_HALF
    points = [(x2, y2), (bx + nx, by + ny), (bx - nx, by - ny)]
    return " ".join(f"{_coord(px)},{_coord(py)}" for px, py in points)


def _relative(ts: Optional[float], origin: Optional[float]) -> str:
    if ts is None or origin is None:
        return ""
    delta = ts - origin
    if abs(delta) < 100:
        return f"+{delta:.3f} s"
    return f"+{delta:.1f} s"


def _ladder(view: ReportView, v: VerdictView) -> Optional[Ladder]:
    if not v.packets:
        return None
    shown = v.packets[:LD_MAX_PACKETS]
    cited = {(e.input, e.frame) for e in v.evidence}
    origin = next((p.ts for p in shown if p.ts is not None), None)
    arrows = []
    top = float(LD_HEAD_H + 26)
    for row, p in enumerate(shown):
        y1 = top + row * LD_ROW
        if p.dir == "c2s":
            x1, x2, y2 = float(LD_CLIENT_X), float(LD_SERVER_X), y1 + LD_SLOPE
        elif p.dir == "s2c":
            x1, x2, y2 = float(LD_SERVER_X), float(LD_CLIENT_X), y1 + LD_SLOPE
        else:
            x1, x2, y2 = float(LD_CLIENT_X), float(LD_SERVER_X), y1
        colour = FORGED_COLOUR if p.forged else NORMAL_COLOUR
        mid = (y1 + y2) / 2
        label = _short(p.summary or "packet")
        if p.forged:
            label = "⚠ " + label + " (forged)"
        if not p.dir:
            label += " (direction unknown)"
        arrows.append(Arrow(
            x1=x1, y1=y1, x2=x2, y2=y2,
            head=_arrow_head(x1, y1, x2, y2) if p.dir else "",
            colour=colour if p.dir else FALLBACK_COLOUR, dashed=p.forged or not p.dir,
            forged=p.forged, evidence=(p.input, p.frame) in cited,
            label=label, detail=_packet_detail(p),
            label_y=mid - 9, detail_y=mid + 19, band_y=y1 - 20,
            frame="" if p.frame is None else f"#{p.frame}",
            time=_relative(p.ts, origin), frame_y=mid - 1,
        ))
    height = top + len(shown) * LD_ROW + (22 if len(v.packets) > len(shown) else 0)
    return Ladder(width=LD_WIDTH, height=height, client_x=LD_CLIENT_X, server_x=LD_SERVER_X,
                  box_w=LD_BOX_W, lane_top=LD_HEAD_H, arrows=tuple(arrows),
                  omitted=len(v.packets) - len(shown),
                  client=_short(v.client, LD_ENDPOINT_MAX),
                  server=_short(v.server, LD_ENDPOINT_MAX),
                  server_sub=_short(v.domain or "", LD_ENDPOINT_MAX),
                  label_x=(LD_CLIENT_X + LD_SERVER_X) / 2)


# --------------------------------------------------------------------------------------------
# Verdict cards


@dataclass(frozen=True, slots=True)
class Filter:
    input: str
    expression: str


@dataclass(frozen=True, slots=True)
class Card:
    verdict: VerdictView
    colour: str
    label: str
    ladder: Optional[Ladder]
    filters: tuple[Filter, ...]
    evidence_inputs: tuple[str, ...]  # input name per evidence row
    related: tuple[tuple[str, Optional[str]], ...]  # (verdict id, anchor if in this report)
    several_inputs: bool
    when: str


def _card(view: ReportView, v: VerdictView) -> Card:
    filters = tuple(Filter(view.input_name(i), expr) for i, expr in wireshark_filters(v))
    anchors = {other.id: other.anchor for other in view.verdicts}
    when = format_ts(v.first_ts)
    if v.last_ts is not None and v.first_ts is not None and v.last_ts != v.first_ts:
        same_day = format_ts(v.first_ts)[:10] == format_ts(v.last_ts)[:10]
        when += (f" – {format_ts(v.last_ts, with_date=not same_day)}"
                 f" ({format_duration(v.last_ts - v.first_ts)})")
    return Card(verdict=v, colour=technique_colour(v.technique),
                label=technique_label(v.technique), ladder=_ladder(view, v),
                filters=filters,
                evidence_inputs=tuple(view.input_name(e.input) for e in v.evidence),
                related=tuple((r, anchors.get(r)) for r in v.related),
                several_inputs=len({e.input for e in v.evidence}) > 1 or len(view.inputs) > 1,
                when=when + (" UTC" if v.first_ts is not None else ""))
