"""ICMP/ICMPv6 errors that end a flow: unreachable and administratively prohibited.

Censor model
    A filtering router rejects instead of dropping: it answers the client's packet with an ICMP
    destination-unreachable error quoting it (iptables ``REJECT --reject-with
    icmp-admin-prohibited``; national firewalls in Iran, Turkmenistan and corporate proxies do
    so; RFC 792, RFC 1812 §5.2.7.1 codes 9/10/13, RFC 4443 code 1 and 5/6).

Signals (``SIGNALS``):

- ``icmp_admin_prohibited``: ICMP type 3 code 9, 10 or 13, or ICMPv6 type 1 code 1, 5 or 6,
  quoting a packet of the flow. Strong: an explicit policy rejection.
- ``icmp_unreachable``: net/host unreachable (ICMP 3/0, 3/1; ICMPv6 1/0, 1/3) from a router
  (not the server itself) quoting a packet of the flow, and nothing from the server. Weak: a
  routing failure looks the same.

Port unreachable sent by the server itself is a closed port, not interference: nothing is
said. Known false positives: real outages (net/host unreachable), firewalls of the destination
network itself (admin prohibited by the server's own operator is still a block, but not
necessarily censorship: the verdict notes who sent it).
"""
from __future__ import annotations

from typing import Final

from analyzer.detect.context import Context
from analyzer.model import Evidence, Finding, Technique, Trigger, format_ip
from analyzer.track.facts import FlowInfo
from analyzer.track.flows import S2C, Flow

NAME: Final = "icmp_unreachable"

ICMP_UNREACH: Final = 3
ICMP_NET_UNREACH: Final = 0
ICMP_HOST_UNREACH: Final = 1
ICMP_ADMIN_CODES: Final = (9, 10, 13)
ICMPV6_UNREACH: Final = 1
ICMPV6_ADMIN_CODES: Final = (1, 5, 6)
ICMPV6_NOROUTE_CODES: Final = (0, 3)

SIGNALS: Final = {
    "icmp_admin_prohibited": "an ICMP 'administratively prohibited' error quoting the flow",
    "icmp_unreachable": "an ICMP net/host unreachable from a router quoting the flow",
}


def detect(flow: Flow, info: FlowInfo, ctx: Context) -> list[Finding]:
    if not flow.icmp:
        return []
    admin = []
    unreach = []
    for frame, ts, inp, itype, code, src in flow.icmp:
        v6 = len(src) == 16
        if (not v6 and itype == ICMP_UNREACH and code in ICMP_ADMIN_CODES) or (
                v6 and itype == ICMPV6_UNREACH and code in ICMPV6_ADMIN_CODES):
            admin.append((frame, ts, inp, itype, code, src))
        elif ((not v6 and itype == ICMP_UNREACH and code in (ICMP_NET_UNREACH, ICMP_HOST_UNREACH))
              or (v6 and itype == ICMPV6_UNREACH and code in ICMPV6_NOROUTE_CODES)) and src != flow.server:
            unreach.append((frame, ts, inp, itype, code, src))
    if admin:
        chosen, signal, strength = admin, "icmp_admin_prohibited", 0.8
    elif unreach and flow.dirs[S2C].packets == 0:
        chosen, signal, strength = unreach, "icmp_unreachable", 0.4
    else:
        return []
    ev = tuple(Evidence(f, t, f"ICMP{'v6' if len(s) == 16 else ''} type {ty} code {co} from {format_ip(s)}"
                        f"{' (the server itself)' if s == flow.server else ''}", i)
               for f, t, i, ty, co, s in chosen[:6])
    trigger = Trigger.IP
    if info.trigger_kind == "sni" and flow.dirs[S2C].packets > 0:
        trigger = Trigger.SNI
    elif info.trigger_kind == "http_host" and flow.dirs[S2C].packets > 0:
        trigger = Trigger.HTTP_HOST
    senders = sorted({format_ip(s) for *_x, s in chosen})
    return [Finding(
        detector=NAME, technique=Technique.ICMP_UNREACHABLE, trigger=trigger, proto=flow.proto_name,
        client=flow.client_ep, server=flow.server_ep, signals=(signal,), evidence=ev,
        strength=strength, first_ts=chosen[0][1], last_ts=chosen[-1][1], domain=info.domain,
        target=info.ident.target, notes=(f"ICMP errors sent by {', '.join(senders)}",),
        flow_id=flow.flow_id,
    )]
