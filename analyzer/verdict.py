"""The only place where findings become verdicts: target, trigger, confidence, stable ids.

A detector's ``strength`` says how sure it is that its signals show interference on this flow.
The verdict's ``confidence`` also weighs what the rest of the capture shows:

- address-level drops (trigger ``ip``) when no flow in the whole capture worked are as likely a
  dead network as a censor: confidence is halved and a note says so;
- a VPN handshake drop is attributed to the *protocol* only when other traffic to the same
  address got answers; otherwise the capture cannot tell a protocol filter from a blackholed
  address, and the trigger becomes ``ip`` (issue #4);
- an SNI/Host-triggered block whose server answered other names in the same capture is a
  controlled observation (signal ``control_ok``): confidence in the trigger goes up; with
  nothing to compare, it goes down a little (signal ``no_control``).
"""
from __future__ import annotations

import hashlib
from dataclasses import replace
from typing import Final, Iterable, Optional

from analyzer.detect.context import Context
from analyzer.identify import resolve_target
from analyzer.model import TECHNIQUE_TEXT, TRIGGER_TEXT, Finding, Target, Technique, Trigger, Verdict

# Findings weaker than this stay signals (counted in stats.weak_findings), never verdicts:
# e.g. a bogon DNS answer alone, which a misconfigured site produces too.
MIN_VERDICT_CONFIDENCE: Final = 0.3
CONTROL_BONUS: Final = 0.1
NO_CONTROL_PENALTY: Final = 0.05
DEAD_NETWORK_FACTOR: Final = 0.5
MAX_CONFIDENCE: Final = 0.99


def can_become_verdict(f: Finding) -> bool:
    """False for a finding that no capture-wide control can lift to a verdict: it is counted
    as weak at once instead of being kept (with its ladder) until the end of the input."""
    if f.technique == Technique.THROTTLING:
        return True  # decided only against the whole capture's rates
    bonus = CONTROL_BONUS if f.trigger in (Trigger.SNI, Trigger.HTTP_HOST, Trigger.QUIC_SNI) else 0.0
    return f.strength + bonus >= MIN_VERDICT_CONFIDENCE


def verdict_id(f: Finding) -> str:
    first = f.evidence[0] if f.evidence else None
    basis = "|".join((
        str(first.input if first else 0), TECHNIQUE_TEXT[f.technique], TRIGGER_TEXT[f.trigger],
        f.client, f.server, str(first.frame if first else 0), f.domain or "",
    ))
    return "v-" + hashlib.sha1(basis.encode("utf-8", "backslashreplace")).hexdigest()[:12]


def _server_ip(endpoint: str) -> str:
    if endpoint.startswith("["):
        return endpoint[1:endpoint.index("]")]
    return endpoint.rsplit(":", 1)[0]


def decide(findings: Iterable[Finding], ctx: Context, answered_ips: dict[str, int],
           weak: Optional[list[Finding]] = None) -> list[Verdict]:
    """Turn findings into verdicts. ``answered_ips`` counts flows per server address in which
    the server answered (cross-flow control). Findings too weak to be verdicts are appended to
    ``weak`` when given."""
    verdicts: list[Verdict] = []
    link_ids: dict[str, str] = {}
    staged: list[tuple[Finding, str]] = []
    for f in findings:
        f = _refine(f, ctx, answered_ips)
        vid = verdict_id(f)
        if f.link_key:
            link_ids[f.link_key] = vid
        staged.append((f, vid))
    # independent of the order flows ended in (several shards, live decisions)
    staged.sort(key=lambda x: (x[1], x[0].detector, x[0].first_ts))
    seen: set[str] = set()
    for f, vid in staged:
        if vid in seen:
            continue
        if f.strength < MIN_VERDICT_CONFIDENCE:
            if weak is not None:
                weak.append(f)
            continue
        seen.add(vid)
        related = tuple(link_ids.get(r, r) for r in f.related)
        verdicts.append(Verdict(
            id=vid, technique=f.technique, trigger=f.trigger, target=_target(f), proto=f.proto,
            client=f.client, server=f.server, domain=f.domain,
            confidence=round(max(0.0, min(MAX_CONFIDENCE, f.strength)), 2),
            first_ts=f.first_ts, last_ts=f.last_ts, signals=f.signals, evidence=f.evidence,
            detector=f.detector, notes=f.notes, related=related, flow_id=f.flow_id, ladder=f.ladder,
        ))
    verdicts.sort(key=lambda v: (v.evidence[0].input if v.evidence else 0, v.first_ts, v.id))
    return verdicts


def _target(f: Finding) -> Target:
    return resolve_target(f.target, f.domain)


def _refine(f: Finding, ctx: Context, answered_ips: dict[str, int]) -> Finding:
    strength = f.strength
    signals = list(f.signals)
    notes = list(f.notes)
    trigger = f.trigger
    server_ip = _server_ip(f.server)
    others_ok = answered_ips.get(server_ip, 0)
    if f.technique == Technique.DROP and trigger == Trigger.PROTOCOL and others_ok == 0:
        trigger = Trigger.IP
        notes.append("nothing else to this address got an answer either: the capture cannot tell "
                     "a protocol filter from a blackholed address")
        strength -= 0.1
    if trigger == Trigger.IP and ctx.answered_flows == 0:
        strength *= DEAD_NETWORK_FACTOR
        notes.append("no flow in this capture got any answer: a dead network or server looks the same")
    if f.technique == Technique.THROTTLING:
        return _throttling(f, ctx, server_ip)
    if trigger in (Trigger.SNI, Trigger.HTTP_HOST, Trigger.QUIC_SNI):
        ok_names = _ok_names(ctx, server_ip)
        others = [n for n in ok_names if n != f.domain]
        if others:
            signals.append("control_ok")
            strength += CONTROL_BONUS
            notes.append(f"the same server answered other names in this capture: {', '.join(others[:3])}")
        elif f.domain in ok_names:
            notes.append(f"the same name worked in another flow to this server (intermittent or stateful blocking)")
        else:
            signals.append("no_control")
            strength -= NO_CONTROL_PENALTY
    return replace(f, strength=strength, signals=tuple(dict.fromkeys(signals)), notes=tuple(notes),
                   trigger=trigger)


THROTTLE_SAME_SERVER: Final = 0.8
# without a same-server control a slow flow stays a signal: servers and applications differ
# too much in speed (interactive flows, slow origins) for a verdict (issue #3: "verdict only
# with strong evidence")
THROTTLE_OTHER_SERVER: Final = 0.25
THROTTLE_NO_CONTROL: Final = 0.1


def _rate_index(ctx: Context) -> tuple[list[tuple[float, str, bytes, Optional[str]]],
                                        dict[bytes, list[tuple[float, str, Optional[str]]]]]:
    """All recorded download rates, fastest first, overall and per server (cached per size)."""
    cached = ctx.rate_index
    if cached is not None and cached[0] == len(ctx.rates):
        return cached[1], cached[2]
    overall = sorted(((r, fid, srv, d) for fid, (srv, d, r) in ctx.rates.items()), reverse=True)
    per: dict[bytes, list[tuple[float, str, Optional[str]]]] = {}
    for r, fid, srv, d in overall:
        per.setdefault(srv, []).append((r, fid, d))
    ctx.rate_index = (len(ctx.rates), overall, per)
    return overall, per


def _throttling(f: Finding, ctx: Context, server_ip: str) -> Finding:
    """A slow flow is throttled only next to a comparable flow that was much faster."""
    own = ctx.rates.get(f.flow_id or "")
    if own is None:
        return replace(f, strength=THROTTLE_NO_CONTROL)
    server, domain, rate = own
    ratio = ctx.th.throttle_ratio
    overall, per = _rate_index(ctx)
    # a control with another *known* name: a flow whose name is unknown may be the same one
    same: Optional[tuple[str, float]] = next(
        ((d, r) for r, fid, d in per.get(server, []) if fid != f.flow_id and d is not None and d != domain),
        None)
    # other servers: compare with the median of their rates, not the fastest one; rates across
    # servers differ by orders of magnitude, so only a flow far below the typical one counts
    others = overall  # fastest first; the median of all flows (the own one barely moves it)
    other = None
    if len(others) > 1:
        m = len(others) // 2
        if others[m][1] == f.flow_id:
            m -= 1
        r_med, _fid, _srv, d_med = others[m]
        other = (d_med, r_med)
    signals = list(f.signals)
    notes = list(f.notes)
    if same is not None and rate <= ratio * same[1]:
        name, r = same
        signals.append("control_same_server")
        strength = THROTTLE_SAME_SERVER
        notes.append(f"the same server sent {name} at {r / 1000:.1f} kB/s "
                     f"({r / max(rate, 1e-9):.0f}x faster)")
    elif other is not None and rate <= ctx.th.throttle_other_ratio * other[1]:
        r = other[1]
        signals.append("control_other_server")
        strength = THROTTLE_OTHER_SERVER
        notes.append(f"the median of the capture's {len(others)} large flows ran at {r / 1000:.1f} kB/s "
                     f"({r / max(rate, 1e-9):.0f}x faster); servers differ, so this is weak evidence")
    else:
        strength = THROTTLE_NO_CONTROL
    return replace(f, strength=strength, signals=tuple(signals), notes=tuple(notes))


def _ok_names(ctx: Context, server_ip: str) -> list[str]:
    return ctx.controls.ok_names.get(server_ip, [])
