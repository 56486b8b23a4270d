"""The JSON result document (schema ``analyzer.report/1``, see docs/contract.md)."""
from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Final, Optional, TextIO

from analyzer import __version__
from analyzer.model import TARGET_TEXT, TECHNIQUE_TEXT, TRIGGER_TEXT, LadderPacket, Verdict
from analyzer.pipeline import FlowRecord, Result

SCHEMA: Final = "analyzer.report/1"


def _ts(v: Optional[float]) -> Optional[float]:
    """``round(v, 6)``: a time stamp to the microsecond."""
    if v is None:
        return None
    n = _micros(v)
    # n / 1e6, a correctly rounded division of exact operands, is the float nearest n
    # microseconds, as round() gives
    return n / 1e6 if n >= 0 else round(v, 6)


# Below this, v * 1e6 is computed within 0.125 of its exact value (float spacing <= 0.25).
_TS_INT_MAX: Final = float(2 ** 51)


def _micros(v: float) -> int:
    """The exact value of ``v * 1e6`` rounded to an integer, when it can be had from the
    computed product: -1 otherwise (v < 1e-4, v >= 2**51 µs, or within 0.125 of a tie)."""
    x = v * 1e6
    if 100.0 <= x < _TS_INT_MAX:
        # the computed x is within 0.125 of the exact product, so when x is within 0.375 of
        # an integer n, the exact product rounds to n (no tie possible). Capture time stamps
        # are whole microseconds (or nanoseconds): always so.
        n = int(x + 0.5)
        if -0.375 < x - n < 0.375:
            return n
    return -1


def verdict_dict(v: Verdict, packets: bool = True) -> dict[str, Any]:
    """The verdict's JSON object; ``packets=False`` leaves its ladder out (an empty list)."""
    return {
        "id": v.id,
        "technique": TECHNIQUE_TEXT[v.technique],
        "trigger": TRIGGER_TEXT[v.trigger],
        "target": TARGET_TEXT[v.target],
        "proto": v.proto,
        "client": v.client,
        "server": v.server,
        "domain": v.domain,
        "confidence": v.confidence,
        "first_ts": _ts(v.first_ts),
        "last_ts": _ts(v.last_ts),
        "signals": list(v.signals),
        "evidence": [{"frame": e.frame, "ts": _ts(e.ts), "input": e.input, "reason": e.reason}
                     for e in v.evidence],
        "detector": v.detector,
        "notes": list(v.notes),
        "related": list(v.related),
        "flow_id": v.flow_id,
        "packets": [ladder_dict(p) for p in v.ladder] if packets else [],
    }


def ladder_dict(p: LadderPacket) -> dict[str, Any]:
    return {"frame": p.frame, "ts": _ts(p.ts), "input": p.input, "dir": p.dir,
            "summary": p.summary, "flags": p.flags, "ttl": p.ttl, "ipid": p.ipid, "seq": p.seq,
            "ack": p.ack, "win": p.win, "len": p.len, "forged": p.forged}


def flow_dict(f: FlowRecord) -> dict[str, Any]:
    return {"id": f.id, "input": f.input, "proto": f.proto, "client": f.client,
            "server": f.server, "target": f.target, "app": f.app, "domain": f.domain,
            "packets": f.packets, "bytes": f.bytes, "first_ts": _ts(f.first_ts),
            "last_ts": _ts(f.last_ts), "outcome": f.outcome}


def to_document(result: Result, flows: str = "all", with_verdicts: bool = True) -> dict[str, Any]:
    """``flows``: "all", "interfered" (flows with a verdict or not ok) or "none";
    ``with_verdicts=False`` leaves the verdict list empty (streaming writers add it)."""
    st = result.stats
    flow_list = [flow_dict(f) for f in _sorted_records(result, flows)]
    return {
        "schema": SCHEMA,
        "tool": {"name": "analyzer", "version": __version__},
        "inputs": [{"path": i.path, "packets": i.packets, "linktype": i.linktype,
                    "format": i.format, "first_ts": _ts(i.first_ts), "last_ts": _ts(i.last_ts)}
                   for i in result.inputs],
        "verdicts": [verdict_dict(v) for v in result.verdicts] if with_verdicts else [],
        "flows": flow_list,
        "stats": {"packets": st.packets, "decoded": st.decoded,
                  "skipped": dict(sorted(st.skipped.items())), "flows": st.flows,
                  "flows_evicted": st.flows_evicted, "dns_transactions": st.dns_transactions,
                  "fragments": st.fragments, "reassembled": st.reassembled,
                  "weak_findings": st.weak_findings,
                  "seconds": st.seconds},
    }


def _sorted_records(result: Result, flows: str) -> list[FlowRecord]:
    if flows == "none":
        return []
    recs = [f for f in result.flows if flows != "interfered" or f.outcome != "ok"]
    recs.sort(key=lambda f: (f.input, _ts(f.first_ts) or 0.0, f.id))
    return recs


def _nested(value: Any, level: int) -> str:
    """json.dumps(value, indent=2) as it appears ``level`` levels deep in a document."""
    text = json.dumps(value, indent=2, ensure_ascii=False)
    return text.replace("\n", "\n" + "  " * level)


def _indented(value: Any, level: int) -> str:
    """:func:`_nested` without the pure-Python indenting encoder (4 times faster on verdicts
    with their ladders): dicts with str keys, lists and tuples, scalars through the C string
    encoder; anything else is left to json.dumps. Same text (tests/report)."""
    cls = value.__class__
    if cls is _Text:
        return str(value.text)
    if cls is dict:
        if not value:
            return "{}"
        inner = "\n" + "  " * (level + 1)
        parts = []
        for k, v in value.items():
            if k.__class__ is not str:
                return _nested(value, level)
            parts.append(_encode_str(k) + ": " + _indented(v, level + 1))
        return "{" + inner + ("," + inner).join(parts) + "\n" + "  " * level + "}"
    if cls is list or cls is tuple:
        if not value:
            return "[]"
        inner = "\n" + "  " * (level + 1)
        return "[" + inner + ("," + inner).join([_indented(v, level + 1) for v in value]) + "\n" + "  " * level + "]"
    return _scalar(value)


_SCALAR_ENCODER: Final = json.JSONEncoder(ensure_ascii=False)
_encode_str = json.encoder.encode_basestring  # the C one when available
_INF: Final = float("inf")


def _scalar(v: Any) -> str:
    """JSON text of a scalar exactly as json.dumps(ensure_ascii=False) writes it."""
    if v.__class__ is str:
        return _encode_str(v)
    if v is None:
        return "null"
    if v.__class__ is int:
        return int.__repr__(v)
    if v.__class__ is float and v == v and v not in (_INF, -_INF):
        return float.__repr__(v)
    return _SCALAR_ENCODER.encode(v)  # bool, NaN/Infinity, subclasses: the encoder decides


@lru_cache(maxsize=8)
def _flat_template(keys: tuple[str, ...], level: int) -> str:
    """``_indented`` of a flat dict with these keys, with a %s for each value."""
    inner = "\n" + "  " * (level + 1)
    return ("{" + inner + ("," + inner).join(_encode_str(k).replace("%", "%%") + ": %s" for k in keys)
            + "\n" + "  " * level + "}")


# Where "%.6f" with its trailing zeros cut is exactly repr(round(v, 6)): no exponent notation
# (|v| >= 1e-4), and a float spacing under 1e-6, so that no shorter decimal maps to the same
# float (|v| < 2**33). Capture timestamps (~1.7e9) are inside.
_TS_FAST_MIN: Final = 1e-4
_TS_FAST_MAX: Final = float(2 ** 33)


def _ts_text(v: float) -> str:
    """``_scalar(_ts(v))`` for a float: the JSON text of a time stamp rounded to the
    microsecond. Twice as fast as rounding then repr() inside the fast range (tests/report)."""
    n = _micros(v)  # "%.6f" writes the same integer of microseconds
    if n >= 0:
        sec = n // 1_000_000
        us = n - sec * 1_000_000
        if us == 0:
            return f"{sec}.0"
        width = 6  # digits of the fraction, trailing zeros cut
        while us % 10 == 0:
            us //= 10
            width -= 1
        frac = str(us)
        return f"{sec}.{'0' * (width - len(frac))}{frac}"
    if _TS_FAST_MIN <= abs(v) < _TS_FAST_MAX:
        text = ("%.6f" % v).rstrip("0")
        return text + "0" if text.endswith(".") else text
    return _scalar(round(v, 6))


def _opt_text(v: Optional[str]) -> str:
    return "null" if v is None else _encode_str(v)


def _opt_int_text(v: Optional[int]) -> str:
    return "null" if v is None else int.__repr__(v)


class _Text:
    """JSON text already indented for its place, which :func:`_indented` writes as is."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def _pieces(template: str, n: int) -> tuple[str, ...]:
    """The literal text around the ``n`` values of a :func:`_flat_template`, to be joined with
    them (one join costs a third of the %-formatting)."""
    assert "%%" not in template  # (the keys are ours: no "%" to unescape)
    parts = tuple(template.split("%s"))
    assert len(parts) == n + 1, template
    return parts


# the keys (and so the template) of ladder_dict, from a blank packet, at its depth in a verdict
_LADDER_TEMPLATE: Final = _flat_template(tuple(ladder_dict(LadderPacket(0, 0.0, "", ""))), 4)
_LADDER_PIECES: Final = _pieces(_LADDER_TEMPLATE, 13)


def _ladder_text(p: LadderPacket) -> str:
    """``_indented(ladder_dict(p), 4)``, written by type like :func:`_flow_text`."""
    t = _LADDER_PIECES
    return "".join((
        t[0], int.__repr__(p.frame), t[1], _ts_text(p.ts), t[2], int.__repr__(p.input), t[3],
        _encode_str(p.dir), t[4], _encode_str(p.summary), t[5], _opt_text(p.flags), t[6],
        _opt_int_text(p.ttl), t[7], _opt_int_text(p.ipid), t[8], _opt_int_text(p.seq), t[9],
        _opt_int_text(p.ack), t[10], _opt_int_text(p.win), t[11], _opt_int_text(p.len), t[12],
        "true" if p.forged else "false", t[13]))


def _verdict_text(v: Verdict) -> str:
    """``_indented(verdict_dict(v), 2)``, its ladder (most of its text) written by type."""
    d = verdict_dict(v, packets=False)
    if v.ladder:
        inner = "\n" + "  " * 4
        d["packets"] = _Text("[" + inner + ("," + inner).join([_ladder_text(p) for p in v.ladder])
                             + "\n" + "  " * 3 + "]")
    return _indented(d, 2)


# the keys (and so the template) of flow_dict, from a blank record
_FLOW_TEMPLATE: Final = _flat_template(
    tuple(flow_dict(FlowRecord("", 0, "", "", "", "", None, None, 0, 0, 0.0, 0.0, ""))), 2)
_FLOW_PIECES: Final = _pieces(_FLOW_TEMPLATE, 13)


def _flow_text(rec: FlowRecord) -> str:
    """``_indented(flow_dict(rec), 2)``: one template, the values written by type in
    flow_dict's order (the same text: tests/report/test_report_escape.py)."""
    t = _FLOW_PIECES
    return "".join((
        t[0], _encode_str(rec.id), t[1], int.__repr__(rec.input), t[2], _encode_str(rec.proto),
        t[3], _encode_str(rec.client), t[4], _encode_str(rec.server), t[5],
        _encode_str(rec.target), t[6], _opt_text(rec.app), t[7], _opt_text(rec.domain), t[8],
        int.__repr__(rec.packets), t[9], int.__repr__(rec.bytes), t[10], _ts_text(rec.first_ts),
        t[11], _ts_text(rec.last_ts), t[12], _encode_str(rec.outcome), t[13]))


def write_json(result: Result, out: TextIO, flows: str = "all") -> None:
    """Write the JSON document, flow by flow, without building it in memory: the text is the
    same as ``render_json(to_document(result, flows))`` (tests/core/test_cli.py)."""
    head = to_document(result, "none", with_verdicts=False)
    out.write("{\n")
    for key in ("schema", "tool", "inputs"):
        out.write(f'  "{key}": {_nested(head[key], 1)},\n')
    # verdicts one at a time: thousands of them with their ladders as one string was the
    # run's memory peak
    if not result.verdicts:
        out.write('  "verdicts": [],\n')
    else:
        out.write('  "verdicts": [\n')
        last_v = len(result.verdicts) - 1
        for i, v in enumerate(result.verdicts):
            out.write("    " + _verdict_text(v) + (",\n" if i < last_v else "\n"))
        out.write("  ],\n")
    recs = _sorted_records(result, flows)
    if not recs:
        out.write('  "flows": [],\n')
    else:
        out.write('  "flows": [\n')
        last = len(recs) - 1
        for i, rec in enumerate(recs):
            out.write("    " + _flow_text(rec) + (",\n" if i < last else "\n"))
        out.write("  ],\n")
    out.write(f'  "stats": {_nested(head["stats"], 1)}\n}}\n')


def write_jsonl(result: Result, out: TextIO, flows: str = "all") -> None:
    """JSON lines, streamed: verdicts, flows, then the summary (as ``render_jsonl``)."""
    head = to_document(result, "none")
    for v in head["verdicts"]:
        out.write(json.dumps({"type": "verdict", **v}, ensure_ascii=False) + "\n")
    for rec in _sorted_records(result, flows):
        out.write(json.dumps({"type": "flow", **flow_dict(rec)}, ensure_ascii=False) + "\n")
    out.write(json.dumps({"type": "summary", "schema": head["schema"], "tool": head["tool"],
                          "inputs": head["inputs"], "stats": head["stats"]}, ensure_ascii=False) + "\n")
