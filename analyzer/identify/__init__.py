"""Target identification: what was this flow trying to reach?

``identify(facts)`` runs an ordered list of small pure rules (``RULES``); each looks only at
the ``FlowFacts`` and returns an ``Identification`` or None, and the first answer wins.
Order = strength of evidence:

1. payload fingerprints of specific targets: WhatsApp prologue, OpenVPN, WireGuard, IKE,
   ESP/AH (and ESP-in-UDP), PPTP control and enhanced GRE, L2TP, plain-text SSTP.  These
   come before anything port- or name-based so that e.g. OpenVPN over TCP/443 is OpenVPN,
   not "https".
2. names: WhatsApp SNI / HTTP Host / DNS names (TLS to 443 with SNI g.whatsapp.net is
   WhatsApp with app ``tls``); then the Tor random-SNI heuristic (never above 0.6).
3. generic application protocols with target OTHER: QUIC, TLS, HTTP.
4. weak WhatsApp hint: Meta address range + TCP 5222 and no contradicting name.
5. fully encrypted traffic (Wu et al. 2023 exemptions not met) -> shadowsocks/fep, 0.5.
6. port-only hints (``data/port_hints.txt``), only when the client sent no payload.
Anything else is Target.OTHER with app None and confidence 0.

Each family lives in its own module whose docstring states the rules, sources and known
false positives.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Final, Optional

from analyzer import data_text
from analyzer.identify import fep, ipsec, l2tp, openvpn, pptp, quic, sstp, tls, tor, whatsapp, \
    wireguard
from analyzer.identify.whatsapp import is_whatsapp_name
from analyzer.model import FlowFacts, Identification, Target

Rule = Callable[[FlowFacts], Optional[Identification]]

__all__ = ["identify", "is_whatsapp_name", "resolve_target", "RULES", "RULE_PROTOS", "Rule",
           "port_hint"]


@lru_cache(maxsize=1)
def _port_hints() -> dict[tuple[str, int], tuple[Target, float]]:
    text = data_text("port_hints.txt")
    out: dict[tuple[str, int], tuple[Target, float]] = {}
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        proto, port, target, conf = line.split()
        out[(proto, int(port))] = (Target(target), float(conf))
    return out


def port_hint(facts: FlowFacts) -> Optional[Identification]:
    """Weak hint from the server port, only when the client sent no payload at all."""
    if any(facts.client_payloads):
        return None
    hit = _port_hints().get((facts.proto, facts.server_port))
    if hit is None:
        return None
    target, conf = hit
    return Identification(target, None, conf,
                          (f"{facts.proto.upper()} port {facts.server_port} only "
                           "(no client payload to confirm; weak hint)",), None)


RULES: tuple[Rule, ...] = (
    # 1. payload fingerprints
    whatsapp.identify_prologue,
    openvpn.identify_openvpn,
    wireguard.identify_wireguard,
    ipsec.identify_ike,
    ipsec.identify_esp,
    pptp.identify_pptp_control,
    pptp.identify_gre,
    l2tp.identify_l2tp,
    sstp.identify_sstp,
    # 2. names
    whatsapp.identify_by_name,
    tor.identify_tor,
    # 3. generic application protocols (target OTHER)
    quic.identify_quic,
    tls.identify_tls,
    tls.identify_http,
    # 4. weak address hint
    whatsapp.identify_by_range,
    # 5. fully encrypted traffic
    fep.identify_fep,
    # 6. ports, only without payload
    port_hint,
)


def resolve_target(target: Target, domain: Optional[str]) -> Target:
    """A flow's or verdict's target: identification's, or WhatsApp when only the name (SNI,
    Host, DNS) says so and identification found nothing more specific."""
    if target == Target.OTHER and domain and is_whatsapp_name(domain):
        return Target.WHATSAPP
    return target


#: The ``FlowFacts.proto`` values a rule can answer for; rules not listed answer for any. Each
#: of these rules returns None first thing (or, for Tor, at the latest through
#: ``tls.detect_tls``) on any other protocol, so skipping it changes no answer.
RULE_PROTOS: dict[Rule, frozenset[str]] = {
    whatsapp.identify_prologue: frozenset({"tcp"}),
    openvpn.identify_openvpn: frozenset({"udp", "tcp"}),
    wireguard.identify_wireguard: frozenset({"udp"}),
    ipsec.identify_ike: frozenset({"udp"}),
    ipsec.identify_esp: frozenset({"esp", "ah", "udp"}),
    pptp.identify_pptp_control: frozenset({"tcp"}),
    pptp.identify_gre: frozenset({"gre"}),
    l2tp.identify_l2tp: frozenset({"udp"}),
    sstp.identify_sstp: frozenset({"tcp"}),
    tor.identify_tor: frozenset({"tcp"}),
    quic.identify_quic: frozenset({"udp"}),
    tls.identify_tls: frozenset({"tcp"}),
    tls.identify_http: frozenset({"tcp"}),
    whatsapp.identify_by_range: frozenset({"tcp"}),
    fep.identify_fep: frozenset({"tcp"}),
}


@lru_cache(maxsize=64)
def _rules_for(proto: str) -> tuple[Rule, ...]:
    """``RULES`` in order, without the rules that cannot answer for ``proto``.

    identify() runs for every flow; most rules only look at one or two protocols, and calling
    each just to be told "not my protocol" was a large part of its cost (profiled)."""
    return tuple(r for r in RULES if proto in RULE_PROTOS.get(r, (proto,)))


#: The answer when no rule matched (immutable, so one instance serves every flow).
NO_MATCH: Final = Identification(Target.OTHER, None, 0.0, ("no identification rule matched",), None)


def identify(facts: FlowFacts) -> Identification:
    """Run ``RULES`` in order and return the first identification (OTHER when none)."""
    for rule in _rules_for(facts.proto):
        found = rule(facts)
        if found is not None:
            return found
    return NO_MATCH
