"""Residual blocking: new flows punished because an earlier one to the same server was blocked.

Censor model
    After a triggered block, the GFW keeps state for (client IP, server IP, server port) — and
    for some triggers (client, server) alone — for 60 to 180 seconds, and resets or drops every
    new connection on it at the SYN stage, whatever the new flow carries (Wang et al., IMC 2017
    §4; Bock et al., "Detecting and Evading Censorship-in-Depth", 2021; Iran's and Kazakhstan's
    residual censorship in Bock et al. 2020). The GFW's QUIC blocking keeps a similar per-flow
    state (Zohaib et al. 2025).

Signals (``SIGNALS``):

- ``after_block``: the flow starts within ``residual_window`` seconds of a blocked flow (a
  finding with trigger sni/http_host/quic_sni/protocol) with the same client, server address,
  server port and transport.
- ``reset_at_syn``: the server side answered the SYN with RST only (no SYN/ACK).
- ``syn_unanswered``: SYNs with nothing back.
- ``no_trigger_sent``: the flow failed before the client could send anything that could have
  triggered a block on its own.

A finding needs ``after_block`` and a failure at the SYN stage (or a first-datagram drop for
UDP). Thresholds: ``residual_window``.

Benign guard: a server that is down or a port that is closed also fails new flows; that is why
the earlier block is required, and why flows to the same server that *work* inside the window
stop the chain (the state would have caught them too).
"""
from __future__ import annotations

from typing import Final

from analyzer.decode.packet import TCP_ACK, TCP_RST, TCP_SYN
from analyzer.detect.context import Context
from analyzer.detect.rst_injection import ladder as tcp_ladder
from analyzer.model import Evidence, Finding, Technique, Trigger
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import C2S, E_FLAGS, E_FRAME, E_TTL, S2C, Flow

NAME: Final = "residual"

SIGNALS: Final = {
    "after_block": "started within the residual window after a blocked flow to the same server",
    "reset_at_syn": "the SYN was answered by RST only",
    "syn_unanswered": "SYNs got no answer",
    "no_trigger_sent": "the flow failed before the client sent any payload",
    "ttl_mismatch": "the RST's TTL differs from the server's in earlier flows",
}


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    block = ctx.recent_block(flow.client, flow.server, flow.sport, flow.proto, flow.first_ts)
    if block is None:
        return []
    c, s = flow.dirs[C2S], flow.dirs[S2C]
    signals = ["after_block"]
    evidence: list[Evidence] = []
    events = sorted(flow.events)
    technique = Technique.DROP
    if flow.proto == 6:
        if c.payload_packets:
            return []  # the flow got as far as sending data: judged on its own
        if s.synack_count:
            return []
        rsts = [e for e in events if e[3] == S2C and e[E_FLAGS] & TCP_RST]
        if rsts:
            technique = Technique.RST_INJECTION
            signals.append("reset_at_syn")
            known = ctx.server_ttls(flow.client, flow.server)
            for r in rsts[:4]:
                note = ""
                if known and min(abs(t - r[E_TTL]) for t in known) >= ctx.th.rst_ttl_delta:
                    if "ttl_mismatch" not in signals:
                        signals.append("ttl_mismatch")
                    note = f", TTL {r[E_TTL]} vs the server's {max(known, key=lambda t: (known[t], -t))} in earlier flows"
                flag = "RST/ACK" if r[E_FLAGS] & TCP_ACK else "RST"
                evidence.append(Evidence(r[E_FRAME], r[1], f"{flag} answering the SYN{note}", r[2]))
        elif c.syn_count >= ctx.th.syn_min_attempts and s.packets == 0:
            signals.append("syn_unanswered")
        else:
            return []
        signals.append("no_trigger_sent")
        syns = [e for e in events if e[3] == C2S and e[E_FLAGS] & TCP_SYN]
        for e in syns[:4]:
            evidence.append(Evidence(e[E_FRAME], e[1], f"SYN {block_age(flow, block.ts)} after the block of {block.domain or 'this server'}", e[2]))
        lad = tcp_ladder(flow, events, {r[E_FRAME] for r in rsts if "ttl_mismatch" in signals})
    else:
        if s.packets or c.packets < 2:
            return []
        signals.append("no_trigger_sent")
        for p in c.payloads[:4]:
            evidence.append(Evidence(p[1], p[3], f"datagram {block_age(flow, block.ts)} after the block, no answer", flow.input))
        lad = ()
    evidence.sort(key=lambda e: e.frame)
    strength = 0.6 + (0.25 if "ttl_mismatch" in signals else 0.0)
    return [Finding(
        detector=NAME, technique=technique, trigger=Trigger.RESIDUAL, proto=flow.proto_name,
        client=flow.client_ep, server=flow.server_ep, signals=tuple(signals),
        evidence=tuple(evidence), strength=strength, first_ts=flow.first_ts, last_ts=flow.last_ts,
        domain=info.domain or block.domain, target=info.ident.target,
        notes=(f"{flow.first_ts - block.ts:.1f}s after a {block.technique} block of the same "
               f"client/server/port (residual window {ctx.th.residual_window:.0f}s)",),
        related=(block.link_key,), flow_id=flow.flow_id, ladder=lad,
    )]


def block_age(flow: Flow, ts: float) -> str:
    return f"{flow.first_ts - ts:.1f}s"
