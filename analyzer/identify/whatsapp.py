"""WhatsApp: chat-protocol prologue, host names, and (weakly) Meta address ranges.

Rules, strongest first
----------------------
1. Prologue (``identify_prologue``), TCP only, client's first payload:
   * ``"WA" v1 v2`` where both version bytes are < 0x20 (seen: ``WA\\x01\\x05`` in the 2015-era
     FunXMPP client, ``WA\\x05\\x02`` / ``WA\\x06\\x02`` / ``WA\\x06\\x03`` in Noise clients).
     Requiring non-printable version bytes keeps text such as ``WARN``/``WAIT`` out.
   * or the edge-routing prefix ``"ED" 00 01`` + 3-byte length L (1..1024) + L bytes of
     routing info, followed by the ``"WA" v1 v2`` prologue (the routing info starts with a
     protobuf tag, 0x08 in every trace we know).
   * after the prologue, 3-byte length-prefixed frames (Noise: 24-bit big-endian length;
     FunXMPP: 4-bit flags 0 or 8 + 20-bit length) that tile the rest of the segment (the
     last may run past the captured bytes).  A Noise ClientHello frame starts with the
     protobuf bytes ``12 xx 0a 20`` (HandshakeMessage.clientHello.ephemeral, 32 bytes).
   Confidence 0.95 with a valid frame, 0.85 for the bare prologue; 0.1 less on ports other
   than 443/5222/80.  app ``whatsapp-noise``.  ``handshake_answered`` True when the
   server's first payload tiles into 3-byte-length frames, False when it sent nothing.
2. Names (``identify_by_name``): TLS/QUIC SNI, HTTP Host, or DNS names that resolved to the
   server address end in an entry of ``data/whatsapp_domains.txt`` on a label boundary
   (``whatsapp.net``, ``whatsapp.com``, ``wa.me`` and their subdomains: g., e1..e16., mmg.,
   v., web., static., media-*.cdn. ...).  ``notwhatsapp.net`` does NOT match.  SNI 0.95,
   HTTP Host 0.9, DNS-only 0.8 (0.6 when the same address also carries non-WhatsApp
   names).  app/``handshake_answered`` come from the payload (tls, quic, http, noise).
3. Ranges (``identify_by_range``, weak): server address in ``data/whatsapp_ranges.txt``
   (Meta AS32934 prefixes, shared with Facebook/Instagram) AND server port 5222 AND no
   host name that says otherwise -> confidence 0.35 (0.5 when client payloads tile into
   3-byte frames, i.e. Noise traffic without a visible prologue).

Sources: nDPI ``protocols/whatsapp.c`` (sequences ``ED 00 01 00 00 02 08`` /
``ED 00 01 00 00 04 08`` and the old ``WA 01 05``), the open-source whatsmeow/Baileys
clients (``ED 00 01`` + routing info, ``WA`` magic + dictionary version, 3-byte frame
length, HandshakeMessage protobuf), the nDPI test trace ``whatsapp_login_chat.pcap``.

Known false positives / limits: the prologue rule can only see the first segment; a client
that resumes on an already-open connection shows no prologue.  Names cannot tell WhatsApp
from another service behind the same name (none known).  DNS-derived names are only as good
as the caller's DNS-to-address matching; Meta front-ends serve several brands from one
address.  Address ranges are Meta-wide and go stale.
"""
from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Optional, Union

from analyzer import data_text
from analyzer.identify import quic as _quic
from analyzer.identify import tls as _tls
from analyzer.model import FlowFacts, Identification, Target

_Net = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

CHAT_PORTS: Final = frozenset({443, 5222, 80})
ED_PREFIX: Final = b"ED\x00\x01"
MAX_ROUTING_LEN: Final = 1024


def _data_lines(name: str) -> list[str]:
    text = data_text(name)
    out = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


@lru_cache(maxsize=1)
def _domain_rules() -> tuple[frozenset[str], tuple[str, ...], Optional[re.Pattern[str]]]:
    """Label-boundary suffixes (as a set and as a tuple for ``str.endswith``), and one pattern
    matching any wildcard entry (None without any)."""
    suffixes: set[str] = set()
    patterns: list[str] = []
    for entry in _data_lines("whatsapp_domains.txt"):
        entry = entry.lower().rstrip(".")
        if "*" in entry:
            rx = "".join("[a-z0-9-]*" if part == "*" else re.escape(part)
                         for part in re.split(r"(\*)", entry))
            patterns.append(f"(?:{rx}\\Z)")
        else:
            suffixes.add(entry)
    return (frozenset(suffixes), tuple(sorted(suffixes)),
            re.compile("|".join(patterns)) if patterns else None)


@lru_cache(maxsize=1)
def _ranges() -> tuple[_Net, ...]:
    return tuple(ipaddress.ip_network(x, strict=False) for x in _data_lines("whatsapp_ranges.txt"))


# Names and addresses repeat across the flows of a capture (the same SNI, DNS names, server);
# both checks are pure, so their answers are cached (bounded).
@lru_cache(maxsize=8192)
def is_whatsapp_name(name: str) -> bool:
    """True when ``name`` is a WhatsApp host name (label-boundary suffix match)."""
    n = name.strip().lower().rstrip(".")
    if not n:
        return False
    suffixes, ends, pattern = _domain_rules()
    if n.endswith(ends):  # cheap test: a label-boundary suffix is a string suffix
        if n in suffixes:
            return True
        dot = n.find(".")
        while dot >= 0:  # every suffix that starts after a dot, i.e. on a label boundary
            if n[dot + 1:] in suffixes:
                return True
            dot = n.find(".", dot + 1)
    return pattern is not None and pattern.match(n) is not None


@lru_cache(maxsize=4096)
def in_whatsapp_ranges(ip: str) -> bool:
    """True when ``ip`` is inside the (Meta-wide, weak) prefix list."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    return any(addr.version == net.version and addr in net for net in _ranges())


# --------------------------------------------------------------------------- prologue

@dataclass(frozen=True, slots=True)
class Prologue:
    edge_routing: bool
    version: Optional[tuple[int, int]]  # None when the segment ends inside the ED header
    frames: int  # complete or truncated frames found after the prologue
    noise_client_hello: bool


def frame_walk(data: bytes, off: int = 0) -> Optional[int]:
    """Count 3-byte length-prefixed frames tiling ``data[off:]``; None when they do not."""
    frames = 0
    while off < len(data):
        if off + 3 > len(data):
            return None
        flags = data[off] >> 4
        if flags not in (0, 8):
            return None
        length = int.from_bytes(data[off:off + 3], "big") & 0xFFFFF
        if length == 0:
            return None
        frames += 1
        off += 3 + length
    return frames


def parse_prologue(data: bytes) -> Optional[Prologue]:
    """Recognise the WhatsApp connection prologue at the start of ``data``."""
    off = 0
    edge = False
    if data.startswith(ED_PREFIX):
        if len(data) < 8:
            return None
        rlen = int.from_bytes(data[4:7], "big")
        if not 1 <= rlen <= MAX_ROUTING_LEN:
            return None
        off = 7 + rlen
        edge = True
        if len(data) < off + 4:
            # Segment ends inside routing info / before the WA header (seen when the client
            # writes the routing header separately).  Keep only if what we have is consistent.
            if len(data) > off and not b"WA".startswith(data[off:off + 2]):
                return None
            return Prologue(True, None, 0, False)
    if data[off:off + 2] != b"WA" or len(data) < off + 4:
        return None
    v1, v2 = data[off + 2], data[off + 3]
    if v1 >= 0x20 or v2 >= 0x20 or v1 == 0:
        return None
    off += 4
    frames = frame_walk(data, off)
    if frames is None:
        return None
    hello = len(data) >= off + 7 and data[off + 3] == 0x12 and data[off + 5:off + 7] == b"\x0a\x20"
    return Prologue(edge, (v1, v2), frames, hello)


def _noise_answered(facts: FlowFacts) -> Optional[bool]:
    server = _tls.first_payload(facts.server_payloads)
    if server:
        return True if frame_walk(server) else None
    return False


def identify_prologue(facts: FlowFacts) -> Optional[Identification]:
    """Rule 1: WhatsApp chat prologue in the client's first TCP payload."""
    if facts.proto != "tcp":
        return None
    first = _tls.first_payload(facts.client_payloads)
    if not first:
        return None
    pro = parse_prologue(first)
    if pro is None:
        return None
    reasons: list[str] = []
    if pro.edge_routing:
        reasons.append("edge-routing prefix 'ED 00 01' + routing info")
    if pro.version is not None:
        reasons.append(f"prologue 'WA' {pro.version[0]:#04x} {pro.version[1]:#04x}")
        conf = 0.95 if pro.frames else 0.85
    else:
        conf = 0.8
        reasons.append("segment ends before the 'WA' header")
    if pro.frames:
        reasons.append(f"{pro.frames} 3-byte length-prefixed frame(s) follow")
    if pro.noise_client_hello:
        reasons.append("Noise HandshakeMessage.clientHello (32-byte ephemeral)")
    if facts.server_port not in CHAT_PORTS:
        conf -= 0.1
        reasons.append(f"unusual port {facts.server_port}")
    answered = _noise_answered(facts)
    if answered:
        reasons.append("server answered with length-prefixed frames")
    return Identification(Target.WHATSAPP, "whatsapp-noise", round(conf, 2), tuple(reasons),
                          answered)


# --------------------------------------------------------------------------- names

def detect_app(facts: FlowFacts) -> tuple[Optional[str], Optional[bool], tuple[str, ...]]:
    """(app, handshake_answered, reasons) from the payload, for name/range based rules."""
    first = _tls.first_payload(facts.client_payloads)
    if facts.proto == "tcp" and first and parse_prologue(first) is not None:
        return "whatsapp-noise", _noise_answered(facts), ()
    t = _tls.detect_tls(facts)
    if t is not None:
        return "tls", t[2], t[1]
    q = _quic.detect_quic(facts)
    if q is not None:
        return "quic", q[2], q[1]
    h = _tls.detect_http(facts)
    if h is not None:
        return "http", None, h[1]
    return None, None, ()


def identify_by_name(facts: FlowFacts) -> Optional[Identification]:
    """Rule 2: SNI / HTTP Host / DNS names of WhatsApp."""
    reasons: list[str] = []
    conf = 0.0
    if facts.sni and is_whatsapp_name(facts.sni):
        conf = 0.95
        reasons.append(f"SNI {facts.sni} is a WhatsApp name")
    elif facts.http_host and is_whatsapp_name(facts.http_host.split(":", 1)[0]):
        conf = 0.9
        reasons.append(f"HTTP Host {facts.http_host} is a WhatsApp name")
    elif not facts.sni and not facts.http_host and facts.dns_names:
        wa = [n for n in facts.dns_names if is_whatsapp_name(n)]
        if wa:
            other = [n for n in facts.dns_names if not is_whatsapp_name(n)]
            conf = 0.6 if other else 0.8
            reasons.append(f"server address resolved from WhatsApp name {wa[0]}")
            if other:
                reasons.append(f"same address also resolved from {other[0]}")
    if conf == 0.0:
        return None
    app, answered, app_reasons = detect_app(facts)
    return Identification(Target.WHATSAPP, app, conf, tuple(reasons) + app_reasons, answered)


# --------------------------------------------------------------------------- ranges

def identify_by_range(facts: FlowFacts) -> Optional[Identification]:
    """Rule 3 (weak): Meta address + TCP port 5222, nothing contradicting it."""
    if facts.proto != "tcp" or facts.server_port != 5222:
        return None
    if facts.sni or facts.http_host:
        return None  # a name was visible and the name rule did not call it WhatsApp
    if facts.dns_names and not any(is_whatsapp_name(n) for n in facts.dns_names):
        return None
    if not in_whatsapp_ranges(facts.server_ip):
        return None
    reasons = [f"server {facts.server_ip} in Meta (AS32934) prefix, port 5222 (weak hint)"]
    conf = 0.35
    payloads = [p for p in facts.client_payloads[:4] if p]
    if payloads and all(frame_walk(p) for p in payloads):
        conf = 0.5
        reasons.append("client payloads are 3-byte length-prefixed frames")
    app, answered, app_reasons = detect_app(facts)
    return Identification(Target.WHATSAPP, app, conf, tuple(reasons) + app_reasons, answered)
