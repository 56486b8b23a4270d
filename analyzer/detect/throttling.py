"""Throttling: a flow slowed down after a trigger while comparable flows are not.

Censor model
    Instead of blocking, a policer limits the rate of flows whose ClientHello SNI (or HTTP Host)
    matches, dropping what exceeds its token bucket: Russia throttled Twitter this way in
    March 2021 (Xue et al., "Throttling Twitter: an emerging censorship technique in Russia",
    IMC 2021), and the GFW has been seen to degrade flows before blocking them. The rest of the
    link is untouched.

Signals (``SIGNALS``):

- ``slow_after_trigger``: a TLS/HTTP flow whose server sent at least ``throttle_min_bytes``
  and whose download rate is at most ``throttle_ratio`` times the rate of a comparable flow.
  Rates are bytes per second of *busy* time (gaps between the server's packets, each capped
  at one second), so an interactive flow that idles between messages is not called slow.
- ``control_same_server``: the comparable flow went to the same server address with another
  name: the strongest control a passive capture offers.
- ``control_other_server``: no control to the same server, but the flow ran at most
  ``throttle_other_ratio`` times the median rate of the capture's large flows. Weak: servers
  and applications differ in speed (an interactive flow streams slowly by design), so this
  stays a signal (counted in ``stats.weak_findings``), never a verdict.

A slow flow alone is a signal, not a verdict (nothing says the path or the server was not
simply slow). The detector records the flow's rate; ``verdict.py`` compares it with every
other flow of the capture once the input is finished and sets the confidence.

Thresholds: ``throttle_min_bytes``, ``throttle_ratio``, ``throttle_other_ratio``,
``throttle_min_seconds``.

Benign guard: a slow link slows every flow alike (no control is faster): nothing is said.
Known false positives: a slow or overloaded server next to a fast CDN (other-server control,
hence the low confidence), a download competing with another one on the user's own link.
"""
from __future__ import annotations

from typing import Final

from analyzer.detect.context import Context
from analyzer.detect.rst_injection import ladder as tcp_ladder
from analyzer.model import Evidence, Finding, Technique, Trigger
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import C2S, S2C, Flow

NAME: Final = "throttling"
LADDER_KEEP: Final = 8

SIGNALS: Final = {
    "slow_after_trigger": "the server's data came at a small fraction of a comparable flow's rate",
    "control_same_server": "the comparable, fast flow went to the same server with another name",
    "control_other_server": "the comparable, fast flow went to another server",
}


RATE_MIN_SPAN: Final = 0.001  # seconds: a download faster than this counts as taking 1 ms


def download_rate(flow: Flow) -> float | None:
    """Server payload bytes per second of *busy* time: the gaps between the server's packets,
    each capped at one second, so that an interactive flow that idles is not called slow."""
    s = flow.dirs[S2C]
    if not s.payloads:
        return None
    return s.payload_bytes / max(s.busy_us / 1e6, RATE_MIN_SPAN)


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    th = ctx.th
    if flow.proto != 6 or info.trigger_kind not in ("sni", "http_host"):
        return []
    s = flow.dirs[S2C]
    if s.payload_bytes < th.throttle_min_bytes or not s.payloads:
        return []
    if s.busy_us / 1e6 < th.throttle_min_seconds:
        return []
    rate = download_rate(flow)
    if rate is None:
        return []
    trig = Trigger.SNI if info.trigger_kind == "sni" else Trigger.HTTP_HOST
    c = flow.dirs[C2S]
    first = c.payloads[0] if c.payloads else None
    ev = []
    if first is not None:
        ev.append(Evidence(first[1], first[3], f"{'ClientHello with SNI ' + str(info.sni) if trig == Trigger.SNI else 'HTTP request with Host ' + str(info.http_host)} (trigger)", flow.input))
    last = s.last
    if last is not None:
        ev.append(Evidence(last[0], last[1], f"server data ends after {s.last_ts - s.payloads[0][3]:.2f}s: "
                           f"{s.payload_bytes} bytes at {rate / 1000:.1f} kB/s", flow.input))
    return [Finding(
        detector=NAME, technique=Technique.THROTTLING, trigger=trig, proto="tcp",
        client=flow.client_ep, server=flow.server_ep, signals=("slow_after_trigger",),
        evidence=tuple(ev), strength=0.0, first_ts=first[3] if first else flow.first_ts,
        last_ts=flow.last_ts, domain=info.domain, target=info.ident.target,
        notes=(f"download rate {rate / 1000:.1f} kB/s",), flow_id=flow.flow_id,
        # a candidate is kept until the end of the input (decided against the whole capture):
        # only the handshake and trigger part of the ladder, to bound memory
        ladder=tcp_ladder(flow, sorted(flow.events)[:LADDER_KEEP], set()),
    )]
