"""Drops: packets silently discarded after a trigger, or a server that never answers.

Censor model
    An in-path censor (or an on-path one that can null-route) discards the packets of a flow
    instead of resetting it. The GFW does so for TLS/QUIC flows whose SNI matches (it then drops
    every later packet of the 4-tuple, and for a while the residual state: Bock et al. 2020,
    GFW Report "ESNI blocking" 2020; Zohaib et al., USENIX Security 2025 for QUIC), for VPN
    handshakes it recognises (OpenVPN: Xue et al., USENIX Security 2022; WireGuard, reported by
    net4people/bbs users since 2021), and for blocked addresses (null routes at the border).

Seen from the client, a drop is silence: the kernel retransmits what was not acknowledged.
Signals (``SIGNALS``):

- ``trigger_retransmitted``: after a completed handshake, the client's ClientHello / HTTP
  request / first VPN packet was retransmitted at least ``drop_min_retrans`` times and the
  server sent nothing after it (not even an ACK of it). Trigger: ``sni``/``http_host`` (or
  ``protocol`` for an identified VPN without SNI).
- ``syn_unanswered``: ``syn_min_attempts`` SYNs and nothing at all from the server (no SYN/ACK,
  no RST, no ICMP). Trigger: ``ip``.
- ``handshake_unanswered``: a UDP handshake (QUIC Initial, WireGuard initiation, OpenVPN hard
  reset, IKE SA_INIT) sent at least twice with no datagram back. Trigger ``quic_sni`` for QUIC
  with an SNI, ``protocol`` for VPNs (verdict.py turns it into ``ip`` when nothing else from
  that address worked either: then the capture cannot tell a protocol filter from a blackhole).
- ``tunnel_stalled``: a UDP VPN tunnel that worked, then ``stall_packets`` client packets over
  at least ``stall_seconds`` got no answer up to the end of the flow.

Thresholds: ``drop_min_retrans``, ``syn_min_attempts``, ``silence_seconds``, ``stall_seconds``,
``stall_packets``.

Vantage point: silence is only evidence when the capture was taken at the client (its packets
carry an initial TTL such as 64/128/255, or one less at the first-hop router). In a server-side
capture the server received the packets and chose not to answer: nothing is said.

Benign guards: a lossy link (the server's answer does come, late: no finding); the capture
ending right after the ClientHello (no retransmission: no finding); a server that answers with
RST (closed port) or ICMP (handled elsewhere); UDP that is not a handshake (no expectation of
an answer).

Known false positives: a server or path that is down (say so: verdict.py lowers confidence
when no other flow in the capture worked); a client that went offline mid-capture.
"""
from __future__ import annotations

from typing import Final

from analyzer.decode.packet import TCP_ACK, TCP_FIN, TCP_RST
from analyzer.detect.context import Context
from analyzer.detect.rst_injection import ladder as tcp_ladder
from analyzer.model import Evidence, Finding, LadderPacket, Target, Technique, Trigger
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import C2S, E_ACK, E_FLAGS, E_FRAME, S2C, Flow

NAME: Final = "drop"
SEQ_MASK: Final = 0xFFFFFFFF
# Unanswered SYNs: blackholing or a dead server cannot be told apart passively.
SYN_DROP_STRENGTH: Final = 0.5
SEQ_HALF: Final = 0x80000000

SIGNALS: Final = {
    "trigger_retransmitted": "the client's trigger packet was retransmitted and never answered",
    "syn_unanswered": "SYNs retransmitted with nothing at all from the server",
    "handshake_unanswered": "a UDP handshake sent repeatedly with no datagram back",
    "tunnel_stalled": "a VPN tunnel that worked stopped getting answers",
}

VPN_TARGETS: Final = {Target.OPENVPN, Target.WIREGUARD, Target.IPSEC, Target.L2TP, Target.PPTP,
               Target.SSTP, Target.TOR, Target.SHADOWSOCKS}


# Initial TTLs of common stacks; a client whose packets carry one of these (or one less: a
# capture on the first-hop router) was captured on its own side of the path.
INITIAL_TTLS: Final = (64, 128, 255)
VANTAGE_SLACK: Final = 1
# every TTL a client-side capture can show: an initial TTL, or up to VANTAGE_SLACK less
_VANTAGE_TTLS: Final = frozenset(init - k for init in INITIAL_TTLS for k in range(VANTAGE_SLACK + 1))


def client_side_vantage(flow: Flow) -> bool:
    """True when the capture was taken at (or next to) the client: only there does silence
    mean that the client's packets or the server's answers were discarded on the path. At the
    server, an unanswered packet is the server's own choice."""
    ttls = flow.dirs[C2S].ttls
    if not ttls:
        return False
    return _VANTAGE_TTLS.issuperset(ttls)


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    if not client_side_vantage(flow):
        return []
    if flow.proto == 6:
        return _tcp(flow, info, ctx)
    if flow.proto == 17:
        return _udp(flow, info, ctx)
    return []


def _tcp(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    th = ctx.th
    c, s = flow.dirs[C2S], flow.dirs[S2C]
    if flow.icmp:
        return []
    # 1. SYN never answered
    if c.syn_count >= th.syn_min_attempts and s.packets == 0 and c.payload_packets == 0:
        syns = [e for e in sorted(flow.events) if e[3] == C2S and e[E_FLAGS] & 0x02]
        ev = tuple(Evidence(e[E_FRAME], e[1], f"SYN {i + 1} to {flow.server_ep}, no answer", e[2])
                   for i, e in enumerate(syns[:6]))
        return [_finding(flow, info, Trigger.IP, ("syn_unanswered",), ev, SYN_DROP_STRENGTH,
                         (f"{c.syn_count} SYNs over {c.last_ts - c.first_ts:.1f}s, nothing from the server",
                          "a server that is down or unreachable looks the same from here"),
                         tcp_ladder(flow, sorted(flow.events), set()))]
    # 2. trigger (ClientHello / request / first VPN packet) retransmitted, server silent
    if not (flow.syn_seen and flow.synack_seen):
        return []
    if any(e[3] == S2C and e[E_FLAGS] & (TCP_RST | TCP_FIN) for e in flow.events):
        return []
    if s.payload_packets or not c.payloads:
        return []
    first_seq = c.payloads[0][0]
    copies = [p for p in c.payloads if p[0] == first_seq]
    if len(copies) - 1 < th.drop_min_retrans:
        return []
    if c.last_ts - copies[0][3] < th.silence_seconds:
        return []
    # the server must not have acknowledged the trigger either (its ACKs are dropped too)
    sl = s.last
    if sl is not None and sl[E_FRAME] > copies[0][1] and sl[E_FLAGS] & TCP_ACK:
        acked = (sl[E_ACK] - first_seq) & SEQ_MASK
        if 0 < acked < SEQ_HALF:
            return []
    if info.trigger_kind == "sni":
        trig, what = Trigger.SNI, f"ClientHello with SNI {info.sni}"
    elif info.trigger_kind == "http_host":
        trig, what = Trigger.HTTP_HOST, f"HTTP request with Host {info.http_host}"
    elif info.ident.target in VPN_TARGETS:
        trig, what = Trigger.PROTOCOL, f"first {info.ident.app or info.ident.target.value} packet"
    else:
        trig, what = Trigger.UNKNOWN, "first data packet"
    evl = [Evidence(copies[0][1], copies[0][3], f"{what} (trigger), never acknowledged", flow.input)]
    for i, p in enumerate(copies[1:6]):
        evl.append(Evidence(p[1], p[3], f"retransmission {i + 1} of the trigger, no answer", flow.input))
    strength = 0.55 + 0.05 * min(4, len(copies) - 1 - th.drop_min_retrans)
    return [_finding(flow, info, trig, ("trigger_retransmitted",), tuple(evl), strength,
                     (f"{len(copies) - 1} retransmissions over {c.last_ts - copies[0][3]:.1f}s, "
                      "nothing from the server after the trigger",),
                     tcp_ladder(flow, sorted(flow.events), set()))]


def _udp(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    th = ctx.th
    c, s = flow.dirs[C2S], flow.dirs[S2C]
    if flow.icmp or flow.sport == 53 or flow.cport == 53:
        return []
    is_quic = info.quic_sni is not None or info.ident.app == "quic"
    is_vpn = info.ident.target in VPN_TARGETS
    if not (is_quic or is_vpn):
        return []
    # a VPN flow counts here only when its client handshake went unanswered
    is_vpn_handshake = is_vpn and info.ident.handshake_answered is False
    if not (is_quic or is_vpn_handshake) and s.packets == 0:
        return []
    if s.packets == 0 and c.packets >= 2 and c.last_ts - c.first_ts >= th.silence_seconds / 2:
        if is_quic and info.quic_sni:
            trig, what = Trigger.QUIC_SNI, f"QUIC Initial with SNI {info.quic_sni}"
        elif is_vpn:
            trig, what = Trigger.PROTOCOL, f"{info.ident.app or info.ident.target.value} handshake"
        else:
            trig, what = Trigger.IP, "QUIC Initial"
        ev = tuple(Evidence(p[1], p[3], f"{what}{' (trigger)' if i == 0 else f', retry {i}'}, no answer", flow.input)
                   for i, p in enumerate(c.payloads[:6]))
        strength = 0.5 + 0.05 * min(4, c.packets - 2)
        return [_finding(flow, info, trig, ("handshake_unanswered",), ev, strength,
                         (f"{c.packets} datagrams over {c.last_ts - c.first_ts:.1f}s, none back",),
                         _udp_ladder(flow, info))]
    if is_vpn and s.packets > 0 and c.unanswered >= th.stall_packets \
            and c.last_ts - c.unanswered_since >= th.stall_seconds:
        ev = (Evidence(c.last[0] if c.last else flow.first_frame, c.last_ts,
                       f"{c.unanswered} client packets since {c.last_ts - c.unanswered_since:.1f}s without answer",
                       flow.input),)
        return [_finding(flow, info, Trigger.PROTOCOL, ("tunnel_stalled",), ev, 0.4,
                         ("the tunnel worked, then the server side went silent",),
                         _udp_ladder(flow, info))]
    return []


def _udp_ladder(flow: Flow, info: FlowInfo) -> tuple[LadderPacket, ...]:
    out = []
    label = info.ident.app or "UDP"
    for e in sorted(flow.events):
        out.append(LadderPacket(frame=e[0], ts=e[1], dir="c2s" if e[3] == C2S else "s2c",
                                summary=f"{label} len={e[10]}", input=e[2], ttl=e[7],
                                ipid=e[8] if e[8] >= 0 else None, len=e[10]))
    return tuple(out)


def _finding(flow: Flow, info: FlowInfo, trigger: Trigger, signals: tuple[str, ...],
             evidence: tuple[Evidence, ...], strength: float, notes: tuple[str, ...],
             lad: tuple[LadderPacket, ...]) -> Finding:
    return Finding(
        detector=NAME, technique=Technique.DROP, trigger=trigger, proto=flow.proto_name,
        client=flow.client_ep, server=flow.server_ep, signals=signals, evidence=evidence,
        strength=min(strength, 0.95), first_ts=evidence[0].ts if evidence else flow.first_ts,
        last_ts=flow.last_ts, domain=info.domain, target=info.ident.target, notes=notes,
        flow_id=flow.flow_id, ladder=lad,
    )
