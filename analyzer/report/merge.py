"""Reading saved results: load, merge, and a typed read-only view for the renderers.

``analyzer report A.json B.jsonl`` loads every file with :func:`load_result` (a JSON document
or a JSONL stream), joins them with :func:`merge_documents` and hands the document to a
renderer. Renderers never index the raw dict: they call :func:`read_view`, which turns a
document that may be older, partial or hostile (any field null, missing, or of the wrong
type) into frozen records with safe defaults. Strings in the view are *not* escaped; each
renderer escapes for its own sink (see ``escape.py``).
"""
from __future__ import annotations

import copy
import json
import math
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Optional

from analyzer import __version__

__all__ = [
    "SCHEMA",
    "TECHNIQUE_ORDER",
    "TARGET_ORDER",
    "OUTCOME_ORDER",
    "load_result",
    "merge_documents",
    "read_view",
    "ReportView",
    "InputView",
    "VerdictView",
    "EvidenceView",
    "PacketView",
    "FlowView",
    "wireshark_filters",
    "technique_matrix",
    "flows_by_target",
    "outcome_columns",
    "TargetFlows",
    "format_ts",
    "format_duration",
]

SCHEMA = "analyzer.report/1"
_TOOL = {"name": "analyzer", "version": __version__}

# Display order of the contract's vocabulary; values the project adds later sort after these.
TECHNIQUE_ORDER = ("rst_injection", "dns_injection", "drop", "icmp_unreachable", "blockpage",
                   "throttling")
TARGET_ORDER = ("whatsapp", "openvpn", "wireguard", "ipsec", "pptp", "l2tp", "sstp", "tor",
                "shadowsocks", "other")
OUTCOME_ORDER = ("interfered", "failed", "incomplete", "ok")

UNKNOWN = "unknown"


# --------------------------------------------------------------------------------------------
# Loading and merging


def load_result(path: str) -> dict[str, Any]:
    """Read a saved result: a JSON document (``--format json``) or a JSONL stream.

    A JSONL stream holds ``"type": "verdict"`` lines, optional ``"type": "flow"`` lines and a
    final ``"type": "summary"`` line with ``inputs`` and ``stats``; it is returned as the
    equivalent document. A stream cut short (no summary line) still loads. ``-`` reads stdin.
    Raises ``ValueError`` naming the file (and line) when the content is not a result.
    """
    if path == "-":
        text = sys.stdin.read()
    else:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    try:
        whole = json.loads(text)
    except json.JSONDecodeError:
        return _load_jsonl(path, text)
    if isinstance(whole, dict) and whole.get("type") in ("verdict", "flow", "summary"):
        return _load_jsonl(path, text)  # a stream of a single line
    if not isinstance(whole, dict):
        raise ValueError(f"{path}: not an analyzer result (expected a JSON object)")
    return whole


def _load_jsonl(path: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"schema": SCHEMA, "tool": dict(_TOOL), "inputs": [], "verdicts": [],
                           "flows": [], "stats": {}}
    seen_any = False
    for lineno, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{lineno}: not JSON ({exc.msg})") from None
        if not isinstance(obj, dict):
            raise ValueError(f"{path}:{lineno}: expected a JSON object per line")
        kind = obj.pop("type", None)
        if kind == "verdict":
            doc["verdicts"].append(obj)
        elif kind == "flow":
            doc["flows"].append(obj)
        elif kind == "summary":
            for key in ("schema", "tool", "inputs", "stats"):
                if key in obj:
                    doc[key] = obj[key]
        else:
            continue  # a line type added later: not ours to interpret
        seen_any = True
    if not seen_any:
        raise ValueError(f"{path}: no analyzer result lines (verdict/flow/summary) found")
    return doc


def merge_documents(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """One document from several, as if their inputs had been analyzed together.

    Inputs are concatenated; every evidence/packet/flow ``input`` index is re-based onto the
    joined list; ``stats`` are summed (numbers, and number maps such as ``skipped``); verdict
    and flow ids stay unique (a repeated id gets a ``d<N>-`` prefix, N = 1-based document
    number, and ``related`` / ``flow_id`` references inside that document follow it);
    ``schema`` and ``tool`` come from the first document that has them. The inputs are not
    modified.
    """
    out: dict[str, Any] = {"schema": None, "tool": None, "inputs": [], "verdicts": [],
                           "flows": [], "stats": {}}
    verdict_ids: set[str] = set()
    flow_ids: set[str] = set()
    for number, raw in enumerate(docs, 1):
        doc = copy.deepcopy(raw) if isinstance(raw, dict) else {}
        if out["schema"] is None and isinstance(doc.get("schema"), str):
            out["schema"] = doc["schema"]
        if out["tool"] is None and isinstance(doc.get("tool"), dict):
            out["tool"] = doc["tool"]
        offset = len(out["inputs"])
        out["inputs"].extend(_dicts(doc.get("inputs")))

        flow_map: dict[str, str] = {}
        for flow in _dicts(doc.get("flows")):
            _rebase(flow, offset)
            old_id = flow.get("id")
            if isinstance(old_id, str):
                flow["id"] = flow_map[old_id] = _unique(old_id, number, flow_ids)
            out["flows"].append(flow)

        verdict_map: dict[str, str] = {}
        verdicts = _dicts(doc.get("verdicts"))
        for verdict in verdicts:
            old_id = verdict.get("id")
            if isinstance(old_id, str):
                verdict["id"] = verdict_map[old_id] = _unique(old_id, number, verdict_ids)
            for key in ("evidence", "packets"):
                for item in _dicts(verdict.get(key)):
                    _rebase(item, offset)
            if isinstance(verdict.get("flow_id"), str):
                verdict["flow_id"] = flow_map.get(verdict["flow_id"], verdict["flow_id"])
        for verdict in verdicts:
            related = verdict.get("related")
            if isinstance(related, list):
                verdict["related"] = [verdict_map.get(r, r) if isinstance(r, str) else r
                                      for r in related]
            out["verdicts"].append(verdict)

        if isinstance(doc.get("stats"), dict):
            out["stats"] = _sum_stats(out["stats"], doc["stats"])
    if out["schema"] is None:
        out["schema"] = SCHEMA
    if out["tool"] is None:
        out["tool"] = dict(_TOOL)
    return out


def _dicts(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _rebase(item: dict[str, Any], offset: int) -> None:
    index = _as_int(item.get("input"))
    item["input"] = (index if index is not None and index >= 0 else 0) + offset


def _unique(ident: str, number: int, seen: set[str]) -> str:
    candidate = ident
    n = 0
    while candidate in seen:
        n += 1
        candidate = f"d{number}-{ident}" if n == 1 else f"d{number}.{n}-{ident}"
    seen.add(candidate)
    return candidate


def _sum_stats(into: dict[str, Any], add: dict[str, Any]) -> dict[str, Any]:
    out = dict(into)
    for key, value in add.items():
        mine = out.get(key)
        if key not in out:
            out[key] = copy.deepcopy(value)
        elif _is_number(mine) and _is_number(value):
            out[key] = mine + value
        elif isinstance(mine, dict) and isinstance(value, dict):
            out[key] = _sum_stats(mine, value)
    return out


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


# --------------------------------------------------------------------------------------------
# Coercion of untrusted values


def _as_text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)
    except (TypeError, ValueError):
        return str(value)


def _as_opt_text(value: Any) -> Optional[str]:
    if value is None or value == "":
        return None
    return _as_text(value)


def _as_float(value: Any) -> Optional[float]:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    result = float(value)
    return result if math.isfinite(result) else None


def _as_int(value: Any) -> Optional[int]:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and math.isfinite(value) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value.strip())
    return None


def _as_texts(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        value = [value]
    return tuple(_as_text(item) for item in value if item is not None)


def _as_bool(value: Any) -> bool:
    return value is True


def format_ts(ts: Optional[float], with_date: bool = True) -> str:
    """UTC wall-clock time with milliseconds, or ``—`` when unknown or out of range."""
    if ts is None:
        return "—"
    try:
        moment = datetime.fromtimestamp(ts, tz=timezone.utc)
    except (OverflowError, OSError, ValueError):
        return f"{ts:.6f}"
    text = moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")
    return f"{text}.{moment.microsecond // 1000:03d}"


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or seconds < 0:
        return "—"
    if seconds < 0.001:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 0.01:
        return f"{seconds * 1000:.1f} ms"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 7200:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


# --------------------------------------------------------------------------------------------
# The view


@dataclass(frozen=True, slots=True)
class InputView:
    index: int
    path: str
    format: str
    linktype: str
    packets: Optional[int]
    first_ts: Optional[float]
    last_ts: Optional[float]


@dataclass(frozen=True, slots=True)
class EvidenceView:
    frame: Optional[int]
    ts: Optional[float]
    input: int
    reason: str


@dataclass(frozen=True, slots=True)
class PacketView:
    frame: Optional[int]
    ts: Optional[float]
    input: int
    dir: str  # "c2s", "s2c" or "" when unknown
    summary: str
    flags: Optional[str]
    ttl: Optional[int]
    ipid: Optional[int]
    seq: Optional[int]
    ack: Optional[int]
    win: Optional[int]
    len: Optional[int]
    forged: bool


@dataclass(frozen=True, slots=True)
class VerdictView:
    index: int  # 1-based position in the document; anchors use it (ids are not trusted)
    id: str
    technique: str
    trigger: str
    target: str
    proto: str
    client: str
    server: str
    domain: Optional[str]
    confidence: Optional[float]
    first_ts: Optional[float]
    last_ts: Optional[float]
    signals: tuple[str, ...]
    evidence: tuple[EvidenceView, ...]
    detector: str
    notes: tuple[str, ...]
    related: tuple[str, ...]
    flow_id: Optional[str]
    packets: tuple[PacketView, ...]

    @property
    def anchor(self) -> str:
        return f"v{self.index}"

    @property
    def confidence_label(self) -> str:
        if self.confidence is None:
            return "unknown"
        if self.confidence >= 0.8:
            return "high"
        if self.confidence >= 0.5:
            return "medium"
        return "low"

    @property
    def confidence_text(self) -> str:
        return "—" if self.confidence is None else f"{self.confidence:.2f}"


@dataclass(frozen=True, slots=True)
class FlowView:
    id: Optional[str]
    input: int
    proto: str
    client: str
    server: str
    target: str
    app: Optional[str]
    domain: Optional[str]
    packets: Optional[int]
    bytes: Optional[int]
    first_ts: Optional[float]
    last_ts: Optional[float]
    outcome: str


@dataclass(frozen=True, slots=True)
class ReportView:
    schema: str
    tool_name: str
    tool_version: str
    inputs: tuple[InputView, ...]
    verdicts: tuple[VerdictView, ...]
    flows: tuple[FlowView, ...]
    has_flows: bool  # the document carried a ``flows`` list (possibly empty)
    stats: tuple[tuple[str, str], ...]  # flat (name, value) pairs, ``skipped.x`` for maps

    def input_name(self, index: int) -> str:
        if 0 <= index < len(self.inputs):
            return self.inputs[index].path
        return f"input #{index}"

    @property
    def span(self) -> tuple[Optional[float], Optional[float]]:
        """Earliest and latest time known from inputs and verdicts."""
        times: list[float] = []
        for item in self.inputs:
            times += [t for t in (item.first_ts, item.last_ts) if t is not None]
        for verdict in self.verdicts:
            times += [t for t in (verdict.first_ts, verdict.last_ts) if t is not None]
        if not times:
            return None, None
        return min(times), max(times)


def read_view(doc: Any) -> ReportView:
    """A typed, defaulted view of ``doc``; never raises on malformed content."""
    if not isinstance(doc, dict):
        doc = {}
    tool = doc.get("tool") if isinstance(doc.get("tool"), dict) else {}
    assert isinstance(tool, dict)
    inputs = tuple(_input_view(i, raw) for i, raw in enumerate(_list(doc.get("inputs"))))
    verdicts = tuple(_verdict_view(i, raw)
                     for i, raw in enumerate(_dicts(doc.get("verdicts")), 1))
    flows = tuple(_flow_view(raw) for raw in _dicts(doc.get("flows")))
    return ReportView(
        schema=_as_text(doc.get("schema"), "unknown"),
        tool_name=_as_text(tool.get("name"), "analyzer"),
        tool_version=_as_text(tool.get("version"), "?"),
        inputs=inputs,
        verdicts=verdicts,
        flows=flows,
        has_flows=isinstance(doc.get("flows"), list),
        stats=tuple(_flatten_stats(doc.get("stats"))),
    )


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _input_view(index: int, raw: Any) -> InputView:
    if not isinstance(raw, dict):
        raw = {"path": raw}
    return InputView(
        index=index,
        path=_as_text(raw.get("path"), f"input #{index}"),
        format=_as_text(raw.get("format"), "—"),
        linktype=_as_text(raw.get("linktype"), "—"),
        packets=_as_int(raw.get("packets")),
        first_ts=_as_float(raw.get("first_ts")),
        last_ts=_as_float(raw.get("last_ts")),
    )


def _index(value: Any) -> int:
    index = _as_int(value)
    return index if index is not None and index >= 0 else 0


def _evidence_view(raw: dict[str, Any]) -> EvidenceView:
    frame = _as_int(raw.get("frame"))
    return EvidenceView(
        frame=frame if frame is not None and frame > 0 else None,
        ts=_as_float(raw.get("ts")),
        input=_index(raw.get("input")),
        reason=_as_text(raw.get("reason")),
    )


def _packet_view(raw: dict[str, Any]) -> PacketView:
    direction = raw.get("dir")
    return PacketView(
        frame=_as_int(raw.get("frame")),
        ts=_as_float(raw.get("ts")),
        input=_index(raw.get("input")),
        dir=direction if direction in ("c2s", "s2c") else "",
        summary=_as_text(raw.get("summary")),
        flags=_as_opt_text(raw.get("flags")),
        ttl=_as_int(raw.get("ttl")),
        ipid=_as_int(raw.get("ipid")),
        seq=_as_int(raw.get("seq")),
        ack=_as_int(raw.get("ack")),
        win=_as_int(raw.get("win")),
        len=_as_int(raw.get("len")),
        forged=_as_bool(raw.get("forged")),
    )


def _verdict_view(index: int, raw: dict[str, Any]) -> VerdictView:
    confidence = _as_float(raw.get("confidence"))
    if confidence is not None:
        confidence = min(1.0, max(0.0, confidence))
    return VerdictView(
        index=index,
        id=_as_text(raw.get("id"), f"verdict-{index}"),
        technique=_as_text(raw.get("technique"), UNKNOWN),
        trigger=_as_text(raw.get("trigger"), UNKNOWN),
        target=_as_text(raw.get("target"), "other"),
        proto=_as_text(raw.get("proto"), "—"),
        client=_as_text(raw.get("client"), "?"),
        server=_as_text(raw.get("server"), "?"),
        domain=_as_opt_text(raw.get("domain")),
        confidence=confidence,
        first_ts=_as_float(raw.get("first_ts")),
        last_ts=_as_float(raw.get("last_ts")),
        signals=_as_texts(raw.get("signals")),
        evidence=tuple(_evidence_view(e) for e in _dicts(raw.get("evidence"))),
        detector=_as_text(raw.get("detector"), "—"),
        notes=_as_texts(raw.get("notes")),
        related=_as_texts(raw.get("related")),
        flow_id=_as_opt_text(raw.get("flow_id")),
        packets=tuple(_packet_view(p) for p in _dicts(raw.get("packets"))),
    )


def _flow_view(raw: dict[str, Any]) -> FlowView:
    return FlowView(
        id=_as_opt_text(raw.get("id")),
        input=_index(raw.get("input")),
        proto=_as_text(raw.get("proto"), "—"),
        client=_as_text(raw.get("client"), "?"),
        server=_as_text(raw.get("server"), "?"),
        target=_as_text(raw.get("target"), "other"),
        app=_as_opt_text(raw.get("app")),
        domain=_as_opt_text(raw.get("domain")),
        packets=_as_int(raw.get("packets")),
        bytes=_as_int(raw.get("bytes")),
        first_ts=_as_float(raw.get("first_ts")),
        last_ts=_as_float(raw.get("last_ts")),
        outcome=_as_text(raw.get("outcome"), UNKNOWN),
    )


def _flatten_stats(stats: Any, prefix: str = "") -> Iterable[tuple[str, str]]:
    if not isinstance(stats, dict):
        return
    for key in sorted(stats, key=str):
        value = stats[key]
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            yield from _flatten_stats(value, f"{name}.")
        elif isinstance(value, float) and not isinstance(value, bool):
            yield name, f"{value:.3f}" if math.isfinite(value) else str(value)
        else:
            yield name, _as_text(value, "—")


# --------------------------------------------------------------------------------------------
# Summaries shared by the renderers


def wireshark_filters(verdict: VerdictView) -> list[tuple[int, str]]:
    """``(input index, display filter)`` per input, showing exactly the evidence packets.

    Frame numbers are per capture file, so evidence that spans inputs gets one filter each.
    Set elements are comma-separated: Wireshark 4.x rejects the older whitespace-separated
    form (``{7 9}``) as a syntax error; commas work from Wireshark 3.6 on.
    """
    frames: dict[int, list[int]] = {}
    for item in verdict.evidence:
        if item.frame is not None and item.frame not in frames.setdefault(item.input, []):
            frames[item.input].append(item.frame)
    return [(index, "frame.number in {" + ", ".join(str(f) for f in sorted(numbers)) + "}")
            for index, numbers in sorted(frames.items()) if numbers]


def _ordered(values: Iterable[str], order: tuple[str, ...]) -> list[str]:
    rank = {name: i for i, name in enumerate(order)}
    return sorted(set(values), key=lambda v: (rank.get(v, len(order)), v))


def technique_matrix(view: ReportView) -> tuple[list[str], list[str], dict[tuple[str, str], int]]:
    """Targets (rows), techniques (columns) and verdict counts per (target, technique)."""
    counts = Counter((v.target, v.technique) for v in view.verdicts)
    targets = _ordered((t for t, _ in counts), TARGET_ORDER)
    techniques = _ordered((q for _, q in counts), TECHNIQUE_ORDER)
    return targets, techniques, dict(counts)


@dataclass(frozen=True, slots=True)
class TargetFlows:
    target: str
    flows: int
    outcomes: dict[str, int]
    verdicts: int
    domains: tuple[str, ...]  # the most frequent domains, at most 3

    @property
    def interfered(self) -> int:
        return self.outcomes.get("interfered", 0)


def flows_by_target(view: ReportView) -> list[TargetFlows]:
    """Per target: flows seen, their outcomes, verdicts, and the main domains."""
    flows: Counter[str] = Counter()
    outcomes: dict[str, Counter[str]] = {}
    domains: dict[str, Counter[str]] = {}
    for flow in view.flows:
        flows[flow.target] += 1
        outcomes.setdefault(flow.target, Counter())[flow.outcome] += 1
        if flow.domain:
            domains.setdefault(flow.target, Counter())[flow.domain] += 1
    verdicts = Counter(v.target for v in view.verdicts)
    rows = []
    for target in _ordered(list(flows) + list(verdicts), TARGET_ORDER):
        top = domains.get(target, Counter()).most_common()
        top.sort(key=lambda item: (-item[1], item[0]))
        rows.append(TargetFlows(target=target, flows=flows[target],
                                outcomes=dict(outcomes.get(target, Counter())),
                                verdicts=verdicts[target],
                                domains=tuple(name for name, _ in top[:3])))
    return rows


def outcome_columns(rows: list[TargetFlows]) -> list[str]:
    """Outcome names present in ``rows`` (``interfered`` always), contract values first."""
    names = [name for row in rows for name in row.outcomes]
    return _ordered(names + ["interfered"] if rows else names, OUTCOME_ORDER)
