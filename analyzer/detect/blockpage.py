"""Blockpages: HTTP responses injected by a censor in the server's name.

Censor model
    An on-path or in-path box sees an HTTP request whose Host (or URL) matches and answers it
    itself, spoofing the server: a redirect or a small page saying the site is blocked,
    usually followed by a FIN or RST so that the genuine answer is ignored (Iran's 10.10.34.34
    iframe, Turkey, Russia's operators, Indonesia's Internet Positif; Aryan et al., FOCI 2013;
    Jones et al., "Automated Detection and Fingerprinting of Censorship Block Pages", IMC 2014;
    OONI's blockpage fingerprints). Because the injector is not the server, its packets carry
    its own TTL/IP-ID, and when it does not stop the request the genuine answer arrives too.

Signals (``SIGNALS``):

- ``response_ttl_mismatch``: the first HTTP response segment's TTL differs by at least
  ``rst_ttl_delta`` from the server's SYN/ACK. Strong.
- ``conflicting_response``: two different payloads claim the same server sequence number (the
  injected page and the genuine response). Strong.
- ``blockpage_fingerprint``: the response matches a known blockpage fingerprint
  (``data/blockpage_fingerprints.txt``). Medium alone: a site can show such a page itself, and
  a fingerprint list ages.

A finding needs a strong signal, or a fingerprint on a response whose server sent nothing
before the request (an injected response is the first thing the "server" says).

Known false positives: transparent proxies of the user's own network (hotel/captive portals)
produce the same pattern — they are interference, but not necessarily a state censor;
load balancers that answer from another box (different TTL).
"""
from __future__ import annotations

from functools import lru_cache
from typing import Final, Optional

from analyzer import data_text
from analyzer.decode.http import parse_http_response
from analyzer.detect.context import Context
from analyzer.detect.rst_injection import ladder as tcp_ladder
from analyzer.model import Evidence, Finding, Technique, Trigger
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import C2S, E_FRAME, E_TTL, S2C, Flow

NAME: Final = "blockpage"
FINGERPRINT_PREFIX: Final = 4096

SIGNALS: Final = {
    "response_ttl_mismatch": "the HTTP response's TTL differs from the server's SYN/ACK",
    "conflicting_response": "two different payloads claim the same server sequence number",
    "blockpage_fingerprint": "the response matches a known blockpage fingerprint",
}


@lru_cache(maxsize=1)
def fingerprints() -> tuple[tuple[str, bytes], ...]:
    """(name, lowercase byte pattern) pairs from the shipped data file."""
    text = data_text("blockpage_fingerprints.txt")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        name, _, pattern = line.partition("\t")
        if pattern:
            out.append((name.strip(), pattern.strip().lower().encode("utf-8")))
    return tuple(out)


def match_fingerprint(data: bytes) -> Optional[str]:
    low = data[:FINGERPRINT_PREFIX].lower()
    for name, pattern in fingerprints():
        if pattern in low:
            return name
    return None


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    if flow.proto != 6 or info.trigger_kind != "http_host":
        return []
    s = flow.dirs[S2C]
    if not s.payloads:
        return []
    th = ctx.th
    events = sorted(flow.events)
    ttl_by_frame = {e[E_FRAME]: e[E_TTL] for e in events}
    synack = [e for e in events if e[3] == S2C and e[4] & 0x12 == 0x12]
    signals: list[str] = []
    evidence: list[Evidence] = []
    forged: set[int] = set()
    first = s.payloads[0]
    resp = parse_http_response(first[2])
    if resp is None:
        return []
    first_ttl = ttl_by_frame.get(first[1])
    if synack and first_ttl is not None and abs(synack[0][E_TTL] - first_ttl) >= th.rst_ttl_delta:
        signals.append("response_ttl_mismatch")
        forged.add(first[1])
        evidence.append(Evidence(first[1], first[3], f"HTTP {resp.status} with TTL {first_ttl} vs the "
                                 f"server's SYN/ACK TTL {synack[0][E_TTL]}", flow.input))
    same_seq = [p for p in s.payloads[1:] if p[0] == first[0] and p[2][:64] != first[2][:64]]
    if same_seq:
        signals.append("conflicting_response")
        forged.add(first[1])
        g = same_seq[0]
        evidence.append(Evidence(g[1], g[3], "a different response at the same sequence number "
                                 "(the genuine one arriving late)", flow.input))
    fp = match_fingerprint(first[2])
    if fp:
        signals.append("blockpage_fingerprint")
        if not forged:
            forged.add(first[1])
        evidence.append(Evidence(first[1], first[3], f"HTTP {resp.status} matches blockpage fingerprint {fp}", flow.input))
    strong = "response_ttl_mismatch" in signals or "conflicting_response" in signals
    if not strong and not fp:
        return []
    strength = 0.5 if not strong else 0.75
    if strong and fp:
        strength = 0.9
    req_frame = flow.dirs[C2S].payloads[0] if flow.dirs[C2S].payloads else None
    if req_frame is not None:
        evidence.insert(0, Evidence(req_frame[1], req_frame[3], f"HTTP request with Host {info.http_host} (trigger)", flow.input))
    evidence.sort(key=lambda e: e.frame)
    return [Finding(
        detector=NAME, technique=Technique.BLOCKPAGE, trigger=Trigger.HTTP_HOST, proto="tcp",
        client=flow.client_ep, server=flow.server_ep, signals=tuple(signals),
        evidence=tuple(dict.fromkeys(evidence)), strength=strength, first_ts=first[3],
        last_ts=flow.last_ts, domain=info.http_host, target=info.ident.target,
        notes=(f"response status {resp.status}",), flow_id=flow.flow_id,
        ladder=tcp_ladder(flow, events, forged),
    )]
