"""PPTP: control connection on TCP 1723, and enhanced GRE (IP protocol 47) as data channel.

Wire format (RFC 2637)
----------------------
Control message header, §2: Length(2) PPTP Message Type(2, 1 = control message)
Magic Cookie(4, 0x1A2B3C4D) Control Message Type(2) Reserved0(2, zero).
Start-Control-Connection-Request (type 1, SCCRQ) and -Reply (type 2, SCCRP) are 156 bytes
and continue with Protocol Version 0x0100.  Enhanced GRE header, §4.1: flags byte with only
K (0x20) and optionally S (0x10) set, second byte A (0x80) optional and version 1,
protocol type 0x880B (PPP), payload length(2) call id(2) [sequence(4)] [ack(4)].

Rules
-----
* TCP: the client's first segment starts with a control message whose length field equals
  the segment length (or whose messages tile the segment), message type 1, the magic
  cookie, Reserved0 zero, control type 1..15.  SCCRQ with length 156 and protocol version
  1.0 -> 0.95; another control message first (capture began mid-connection) -> 0.8.
  Any port is accepted (the magic cookie is specific); 1723 is noted.  An HTTP request on
  1723 does not match (no cookie).
* ``handshake_answered`` True when the server sent a control message of type 2 (SCCRP),
  False when the SCCRQ is there and the server sent nothing.
* GRE (``facts.proto == "gre"``): payload starting with an enhanced GRE v1 header carrying
  PPP (0x880B) -> PPTP data channel 0.8.  GRE without visible payload -> weak hint 0.25
  (GRE also carries site-to-site tunnels, Cisco GRE, Ethernet over GRE...).  GRE version 0
  with another protocol type is not PPTP and is left alone.

Sources: RFC 2637; Wireshark ``pptp`` dissector (same header checks); nDPI
``protocols/pptp.c`` (matches port 1723 + magic cookie); nDPI trace ``pptp.pcap``.

Known false positives: none known for the control rule (32-bit cookie + length + types).
GRE-only hints are weak: a plain GRE tunnel with no payload in view looks the same.
"""
from __future__ import annotations

from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

PPTP_PORT: Final = 1723
MAGIC_COOKIE: Final = 0x1A2B3C4D
SCCRQ: Final = 1
SCCRP: Final = 2
CONTROL_LENGTHS: Final = {1: 156, 2: 156, 3: 16, 4: 16, 5: 16, 6: 20, 7: 168, 8: 32, 9: 220, 10: 24,
                   11: 28, 12: 16, 13: 148, 14: 40, 15: 24}
CONTROL_NAMES: Final = {1: "Start-Control-Connection-Request", 2: "Start-Control-Connection-Reply",
                 3: "Stop-Control-Connection-Request", 4: "Stop-Control-Connection-Reply",
                 5: "Echo-Request", 6: "Echo-Reply", 7: "Outgoing-Call-Request",
                 8: "Outgoing-Call-Reply", 9: "Incoming-Call-Request",
                 10: "Incoming-Call-Reply", 11: "Incoming-Call-Connected",
                 12: "Call-Clear-Request", 13: "Call-Disconnect-Notify", 14: "WAN-Error-Notify",
                 15: "Set-Link-Info"}
GRE_PPP: Final = 0x880B


def control_messages(segment: bytes) -> Optional[list[int]]:
    """Control message types tiling ``segment`` (the last may be cut); None if not PPTP."""
    types: list[int] = []
    off = 0
    n = len(segment)
    while off < n:
        if n - off < 12:
            return types if types else None
        length = int.from_bytes(segment[off:off + 2], "big")
        if (int.from_bytes(segment[off + 4:off + 8], "big") != MAGIC_COOKIE
                or int.from_bytes(segment[off + 2:off + 4], "big") != 1
                or segment[off + 10:off + 12] != b"\x00\x00"):
            return None
        ctype = int.from_bytes(segment[off + 8:off + 10], "big")
        if ctype not in CONTROL_LENGTHS or length < 12:
            return None
        # lengths are fixed per type; tolerate vendor padding but not shrinking
        if length < CONTROL_LENGTHS[ctype]:
            return None
        types.append(ctype)
        off += length
    return types


def identify_pptp_control(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "tcp":
        return None
    first = first_payload(facts.client_payloads)
    if not first:
        return None
    types = control_messages(first)
    if not types:
        return None
    reasons = [f"PPTP control message {CONTROL_NAMES[types[0]]}, magic cookie 0x1A2B3C4D"]
    version_ok = len(first) >= 14 and first[12:14] == b"\x01\x00"
    if types[0] == SCCRQ and version_ok:
        conf = 0.95
        reasons.append("protocol version 1.0")
    else:
        conf = 0.8
        reasons.append("flow does not start with an SCCRQ (mid-connection)")
    if PPTP_PORT in (facts.server_port, facts.client_port):
        reasons.append("TCP port 1723")
    else:
        conf -= 0.05
        reasons.append(f"unusual port {facts.server_port}")
    answered: Optional[bool] = None
    for p in facts.server_payloads[:4]:
        st = control_messages(p) if p else None
        if st and SCCRP in st:
            answered = True
            reasons.append("server sent Start-Control-Connection-Reply")
            break
    if answered is None and not facts.server_payloads and types[0] == SCCRQ:
        answered = False
        reasons.append("no reply from the server")
    return Identification(Target.PPTP, "pptp", round(conf, 2), tuple(reasons), answered)


def is_enhanced_gre(data: bytes) -> bool:
    """RFC 2637 §4.1 enhanced GRE header (version 1, PPP)."""
    if len(data) < 8:
        return False
    return (data[0] & 0xEF == 0x20 and data[1] & 0x7F == 0x01
            and int.from_bytes(data[2:4], "big") == GRE_PPP)


def identify_gre(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "gre":
        return None
    payloads = [p for p in facts.client_payloads[:4] + facts.server_payloads[:4] if p]
    if not payloads:
        return Identification(Target.PPTP, "gre", 0.25,
                              ("GRE (IP protocol 47) without payload in view: weak PPTP hint",),
                              None)
    if any(is_enhanced_gre(p) for p in payloads):
        call = int.from_bytes(payloads[0][6:8], "big") if is_enhanced_gre(payloads[0]) else None
        reasons = ["enhanced GRE v1 carrying PPP (0x880B): PPTP data channel"]
        if call is not None:
            reasons.append(f"call id {call}")
        return Identification(Target.PPTP, "gre", 0.8, tuple(reasons), None)
    return None
