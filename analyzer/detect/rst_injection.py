"""RST injection: forged TCP resets sent by an on-path device in the name of an endpoint.

Censor model
    An on-path (not in-path) box watches a copy of the traffic. When a packet matches (an SNI,
    a Host header, a keyword, a protocol fingerprint, or a residual-state entry) it cannot drop
    the packet, so it races the endpoints: it sends RST or RST/ACK segments to one or both
    sides, spoofing the other side's address and guessing the sequence numbers from the packet
    it saw. The GFW does this since at least 2006 (Clayton, Murdoch & Watson, PET 2006); its
    two injector types were described by Weaver, Sommer & Paxson (NDSS 2009) and tracked by
    Wang et al. (IMC 2017) and Bock et al. (Geneva, CCS 2019).

Because the injector is a different host than the endpoint it claims to be, its packets carry
its own IP header fields and arrive on their own schedule. Signals (ids in ``SIGNALS``):

- ``ttl_mismatch``: the RST's TTL / hop limit differs by at least ``rst_ttl_delta`` from every
  TTL the claimed sender used on the flow (its non-RST packets). Strong: a path does not change
  length for one packet. The GFW's type-2 injector even randomises TTLs.
- ``ipid_mismatch``: the claimed sender's IP-IDs are sequential on this flow, and the RST's
  IP-ID is far (``rst_ipid_gap``) from the previous one. Weak alone: stacks may use a separate
  counter (or 0) for resets generated outside the socket.
- ``data_after_rst`` / ``acks_after_rst``: the claimed sender keeps sending (data, or ACKs and
  FINs) after "its" RST, within ``rst_after_window``. A stack that reset the connection has no
  connection left to talk on. Seen from the server side this is the client keeping on talking.
- ``seq_race``: data from the claimed sender arrives after the RST with a sequence number at
  or below the RST's (Weaver et al.'s DATA-SEQ-RST/RST-SEQ-DATA races).
- ``rst_seq_jumps``: several RSTs whose sequence numbers step by multiples of an MSS (the GFW's
  base, base+1460, base+4380 triplets).
- ``rst_mixture``: both RST and RST/ACK segments among the forged ones.
- ``injector_window``: a RST whose window is non-zero and matches none of the sender's windows
  (the GFW type-2 RST/ACKs carry windows such as 1596/1576/1558; some injectors use 16).
- ``reserved_bits``: reserved TCP header bits set on the RST and on none of the sender's packets.
- ``gfw_type1`` / ``gfw_type2``: tags for the two GFW injector fingerprints (type 1: RST
  without ACK, random TTL, no window; type 2: several RST/ACKs with changing TTL and window).

Thresholds: ``Thresholds.rst_ttl_delta``, ``rst_ipid_gap``, ``ipid_seq_step``,
``rst_after_window``.

A finding needs ``ttl_mismatch`` or the claimed sender being alive after its RST; the other
signals only add weight. Benign guards (tests/detect/test_rst_injection.py):

- a lone RST with the sender's TTL after a normal close or an SO_LINGER=0 abort;
- a RST answering a SYN (closed port): the "sender" has no other packet to compare with, so
  nothing is said (a missed detection is preferred to a false accusation);
- a middlebox's RST carrying a diagnostic payload with no other packet from that side;
- retransmissions, loss and reordering: they change no TTL and no liveness.

Known false positives: asymmetric or flapping routes (TTL changes by several hops within a
flow), load balancers that terminate a connection on another box (different TTL and IP-ID;
hence a TTL-only reset with no trigger and no liveness signal is capped at a confidence of
``UNTRIGGERED_TTL_ONLY``),
a NAT/firewall that resets on state timeout (a real middlebox, though not always a censor),
captures merged from two vantage points.
"""
from __future__ import annotations

from typing import Final, Optional

from analyzer.config import Thresholds
from analyzer.decode.packet import TCP_ACK, TCP_FIN, TCP_RST, tcp_flags_str
from analyzer.detect.context import Context
from analyzer.model import Evidence, Finding, LadderPacket, Technique, Trigger
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import (
    C2S,
    E_ACK,
    E_FLAGS,
    E_FRAME,
    E_INPUT,
    E_IPID,
    E_LEN,
    E_SEQ,
    E_TS,
    E_TTL,
    E_WIN,
    Event,
    Flow,
)

NAME: Final = "rst_injection"
TCP_RESERVED_BITS: Final = 0x0E00  # in our 12-bit flags: reserved bits above NS (bit 8)
MSS_STEPS: Final = (1460, 2920, 4380)
IPID_MOD: Final = 1 << 16
SEQ_MOD: Final = 1 << 32
# Confidence ceiling of a TTL-only reset with no trigger and no liveness after it.
UNTRIGGERED_TTL_ONLY: Final = 0.35

SIGNALS: Final = {
    "ttl_mismatch": "RST TTL/hop limit differs from every TTL the claimed sender used on the flow",
    "ipid_mismatch": "RST IP-ID out of the claimed sender's sequential IP-ID stream",
    "data_after_rst": "the claimed sender sent data after its own RST",
    "acks_after_rst": "the claimed sender sent ACKs/FINs after its own RST",
    "seq_race": "data after the RST carries sequence numbers at or below the RST's",
    "rst_seq_jumps": "several RSTs whose sequence numbers jump by MSS multiples",
    "rst_mixture": "both RST and RST/ACK segments among the forged resets",
    "injector_window": "RST window matches none of the sender's and is not zero",
    "reserved_bits": "reserved TCP bits set on the RST only",
    "gfw_type1": "fingerprint of the GFW type-1 injector (RST, random TTL)",
    "gfw_type2": "fingerprint of the GFW type-2 injector (RST/ACK triplets, varying TTL/window)",
}


def _side(d: int) -> str:
    return "client" if d == C2S else "server"


def _ttl_mismatch(rst: Event, genuine_ttls: dict[int, int], th: Thresholds) -> Optional[int]:
    if not genuine_ttls:
        return None
    nearest = min(genuine_ttls, key=lambda t: abs(t - rst[E_TTL]))
    if abs(nearest - rst[E_TTL]) >= th.rst_ttl_delta:
        return nearest
    return None


def _ipid_sequential(ipids: list[tuple[int, int]], th: Thresholds) -> bool:
    if len(ipids) < 3:
        return False
    steps = [((b[1] - a[1]) % IPID_MOD) for a, b in zip(ipids, ipids[1:])]
    return all(0 < s <= th.ipid_seq_step for s in steps)


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    if flow.proto != 6 or not flow.hot:
        return []
    th = ctx.th
    events = sorted(flow.events, key=lambda e: e[E_FRAME])
    findings: list[Finding] = []
    for d in (C2S, 1):
        ds = flow.dirs[d]
        if not ds.rsts:
            continue
        genuine = ds.genuine_ttls()
        # IP-IDs of the sender's non-RST packets (from the key packets, in order)
        rst_frames = {r[E_FRAME] for r in ds.rsts}
        own = [e for e in events if e[3] == d and e[E_FRAME] not in rst_frames]
        own_ipids = [(e[E_FRAME], e[E_IPID]) for e in own if e[E_IPID] >= 0]
        sequential = _ipid_sequential(own_ipids, th)
        own_wins = {e[E_WIN] for e in own if not e[E_FLAGS] & TCP_RST}
        own_reserved = any(e[E_FLAGS] & TCP_RESERVED_BITS for e in own)
        signals: list[str] = []
        evidence: list[Evidence] = []
        forged: set[int] = set()
        first_rst = ds.rsts[0]
        for rst in ds.rsts:
            reasons = []
            near = _ttl_mismatch(rst, genuine, th)
            if near is not None:
                reasons.append(f"TTL {rst[E_TTL]} vs {_side(d)}'s {near} on this flow")
                _add(signals, "ttl_mismatch")
            if sequential and own_ipids:
                prev = [x for x in own_ipids if x[0] < rst[E_FRAME]]
                ref = prev[-1] if prev else own_ipids[0]
                gap = min((rst[E_IPID] - ref[1]) % IPID_MOD, (ref[1] - rst[E_IPID]) % IPID_MOD)
                if rst[E_IPID] >= 0 and gap > th.rst_ipid_gap:
                    reasons.append(f"IP-ID {rst[E_IPID]} vs {_side(d)}'s sequence near {ref[1]}")
                    _add(signals, "ipid_mismatch")
            if rst[E_WIN] and rst[E_WIN] not in own_wins and own_wins:
                if reasons:
                    reasons.append(f"window {rst[E_WIN]}")
                    _add(signals, "injector_window")
            if rst[E_FLAGS] & TCP_RESERVED_BITS and not own_reserved:
                reasons.append("reserved bits set")
                _add(signals, "reserved_bits")
            if reasons and ("ttl_mismatch" in signals or "ipid_mismatch" in signals):
                forged.add(rst[E_FRAME])
                evidence.append(Evidence(rst[E_FRAME], rst[E_TS], f"RST from {_side(d)}: " + ", ".join(reasons), rst[E_INPUT]))
        # liveness after the first RST
        alive = [e for e in events if e[3] == d and e[E_FRAME] > first_rst[E_FRAME]
                 and not e[E_FLAGS] & TCP_RST and e[E_TS] - first_rst[E_TS] <= th.rst_after_window]
        if alive:
            data = [e for e in alive if e[E_LEN] > 0]
            if data:
                _add(signals, "data_after_rst")
                e = data[0]
                evidence.append(Evidence(e[E_FRAME], e[E_TS], f"{_side(d)} sent {e[E_LEN]} bytes after its 'own' RST (frame {first_rst[E_FRAME]})", e[E_INPUT]))
                rseq = first_rst[E_SEQ]
                if any(((x[E_SEQ] - rseq) % SEQ_MOD) == 0 or ((x[E_SEQ] - rseq) % SEQ_MOD) > SEQ_MOD // 2 for x in data):
                    _add(signals, "seq_race")
            else:
                _add(signals, "acks_after_rst")
                e = alive[0]
                what = "FIN" if e[E_FLAGS] & TCP_FIN else "ACK"
                evidence.append(Evidence(e[E_FRAME], e[E_TS], f"{_side(d)} sent {what} after its 'own' RST (frame {first_rst[E_FRAME]})", e[E_INPUT]))
            for r in ds.rsts:
                if r[E_FRAME] < alive[0][E_FRAME]:
                    forged.add(r[E_FRAME])
            if not any(ev.frame == first_rst[E_FRAME] for ev in evidence):
                evidence.append(Evidence(first_rst[E_FRAME], first_rst[E_TS], f"RST claiming to be the {_side(d)}, who kept talking afterwards", first_rst[E_INPUT]))
        strong = "ttl_mismatch" in signals or "data_after_rst" in signals or "acks_after_rst" in signals
        if not strong:
            continue
        # injector fingerprints over the forged RSTs
        frst = [r for r in ds.rsts if r[E_FRAME] in forged] or ds.rsts
        seqs = sorted({(r[E_SEQ] - frst[0][E_SEQ]) % SEQ_MOD for r in frst})
        if len(frst) >= 2 and any(s in MSS_STEPS for s in seqs):
            _add(signals, "rst_seq_jumps")
        kinds = {bool(r[E_FLAGS] & TCP_ACK) for r in frst}
        if len(kinds) == 2:
            _add(signals, "rst_mixture")
        if len(frst) >= 2 and all(r[E_FLAGS] & TCP_ACK for r in frst) and len({r[E_TTL] for r in frst}) >= 2:
            _add(signals, "gfw_type2")
        elif any(not r[E_FLAGS] & TCP_ACK for r in frst) and "ttl_mismatch" in signals:
            _add(signals, "gfw_type1")
        strength = _strength(signals)
        trigger, trig_ev = _trigger(flow, info, first_rst)
        notes = [f"forged RSTs claim to come from the {_side(d)}"]
        alive_signal = "data_after_rst" in signals or "acks_after_rst" in signals
        if trigger == Trigger.UNKNOWN and not alive_signal:
            # A reset with another TTL but nothing that triggered it and no sign of life from
            # the claimed sender afterwards: a load balancer or firewall of the server's own
            # network resetting an idle or rejected connection looks the same.
            strength = min(strength, UNTRIGGERED_TTL_ONLY)
            notes.append("no trigger seen and the claimed sender did not keep talking: a "
                         "middlebox of the server's own network (load balancer, firewall state "
                         "timeout) can send such a reset too")
        if trig_ev is not None:
            evidence.insert(0, trig_ev)
        evidence.sort(key=lambda e: e.frame)
        findings.append(Finding(
            detector=NAME,
            technique=Technique.RST_INJECTION,
            trigger=trigger,
            proto="tcp",
            client=flow.client_ep,
            server=flow.server_ep,
            signals=tuple(signals),
            evidence=tuple(evidence),
            strength=strength,
            first_ts=min(r[E_TS] for r in frst),
            last_ts=max(r[E_TS] for r in frst),
            domain=info.domain,
            target=info.ident.target,
            notes=tuple(notes),
            flow_id=flow.flow_id,
            ladder=ladder(flow, events, forged),
        ))
    return _merge(findings)


def _add(signals: list[str], s: str) -> None:
    if s not in signals:
        signals.append(s)


def _strength(signals: list[str]) -> float:
    s = 0.0
    if "ttl_mismatch" in signals:
        s += 0.6
    if "data_after_rst" in signals:
        s += 0.5
    elif "acks_after_rst" in signals:
        s += 0.4
    if "ipid_mismatch" in signals:
        s += 0.15
    for extra in ("seq_race", "rst_seq_jumps", "injector_window", "reserved_bits", "gfw_type2"):
        if extra in signals:
            s += 0.05
    return min(s, 0.99)


def _trigger(flow: Flow, info: FlowInfo, first_rst: Event) -> tuple[Trigger, Optional[Evidence]]:
    """What the reset followed: the client's SNI / Host, or a protocol fingerprint."""
    if info.trigger_kind and info.trigger_frames and info.trigger_frames[0] < first_rst[E_FRAME]:
        frame = info.trigger_frames[-1] if len(info.trigger_frames) == 1 else info.trigger_frames[0]
        ts = next((p[3] for p in flow.dirs[C2S].payloads if p[1] == frame), first_rst[E_TS])
        if info.trigger_kind == "sni":
            what = f"ClientHello with SNI {info.sni}"
            trig = Trigger.SNI
        else:
            what = f"HTTP request with Host {info.http_host}"
            trig = Trigger.HTTP_HOST
        return trig, Evidence(frame, ts, what + " (trigger)", flow.input)
    app = info.ident.app
    if info.ident.target.value not in ("other", "whatsapp") and flow.dirs[C2S].payloads:
        p = flow.dirs[C2S].payloads[0]
        if p[1] < first_rst[E_FRAME]:
            return Trigger.PROTOCOL, Evidence(p[1], p[3], f"first {app or info.ident.target.value} packet (trigger)", flow.input)
    return Trigger.UNKNOWN, None


def _merge(findings: list[Finding]) -> list[Finding]:
    """Forged RSTs towards both sides of one flow are one interference event."""
    if len(findings) <= 1:
        return findings
    a, b = findings[0], findings[1]
    signals = tuple(dict.fromkeys(a.signals + b.signals))
    ev = tuple(sorted({(e.frame, e.reason): e for e in a.evidence + b.evidence}.values(), key=lambda e: e.frame))
    forged_frames = {p.frame for p in a.ladder if p.forged} | {p.frame for p in b.ladder if p.forged}
    lad = tuple(LadderPacket(p.frame, p.ts, p.dir, p.summary, p.input, p.flags, p.ttl, p.ipid, p.seq,
                             p.ack, p.win, p.len, p.frame in forged_frames) for p in a.ladder)
    trigger = a.trigger if a.trigger != Trigger.UNKNOWN else b.trigger
    return [Finding(a.detector, a.technique, trigger, a.proto, a.client, a.server, signals, ev,
                    min(0.99, max(a.strength, b.strength) + 0.05), min(a.first_ts, b.first_ts),
                    max(a.last_ts, b.last_ts), a.domain, a.target,
                    ("forged RSTs claim to come from both the client and the server",),
                    flow_id=a.flow_id, ladder=lad)]


def ladder(flow: Flow, events: list[Event], forged: set[int]) -> tuple[LadderPacket, ...]:
    out = []
    for e in events:
        d = e[3]
        flags = e[E_FLAGS]
        text = tcp_flags_str(flags)
        summary = f"{text} len={e[E_LEN]}" if e[E_LEN] else text
        out.append(LadderPacket(
            frame=e[E_FRAME], ts=e[E_TS], dir="c2s" if d == C2S else "s2c", summary=summary,
            input=e[E_INPUT], flags=text, ttl=e[E_TTL],
            ipid=e[E_IPID] if e[E_IPID] >= 0 else None,
            seq=flow.rel_seq(d, e[E_SEQ]), ack=flow.rel_seq(1 - d, e[E_ACK]) if flags & TCP_ACK else None,
            win=e[E_WIN], len=e[E_LEN], forged=e[E_FRAME] in forged,
        ))
    return tuple(out)
