"""L2TP (v2, and v3 over UDP) control connection setup on UDP 1701.

Wire format
-----------
L2TPv2 (RFC 2661 §3.1): flags byte ``T L x x S x O P``, then ``x x x x Ver``; a control
message has T=1, L=1, S=1, O=0, P=0 and version 2, i.e. bytes ``C8 02``; then Length(2)
Tunnel ID(2) Session ID(2) Ns(2) Nr(2).  L2TPv3 over UDP (RFC 3931 §4.1.2.1): ``C8 03``,
Length(2) Control Connection ID(4) Ns(2) Nr(2).  Both continue with AVPs, the first being
Message Type: ``M|H|rsvd|len=8`` (``80 08``; M set, never hidden), Vendor ID 0, Attribute Type 0, value(2):
1 SCCRQ, 2 SCCRP, 3 SCCCN, 4 StopCCN, 6 HELLO, ...

Rules
-----
* The client's first datagram is a control message (as above, reserved bits zero) whose
  Length equals the datagram length, whose tunnel/control-connection id, session id, Ns and
  Nr are zero, and whose first AVP is Message Type = 1 (SCCRQ) -> 0.95 (0.85 off port 1701).
* ``handshake_answered`` True when a server datagram is a control message with Message Type
  2 (SCCRP) or 4 (StopCCN, a refusal is still an answer), or a ZLB acknowledgement (a
  control header without AVPs); False when the SCCRQ is there and nothing came back.

Visibility: L2TP/IPsec (the usual remote-access setup) runs L2TP inside ESP, so only the
IKE/ESP part is visible and is identified by ipsec.py.  Plain L2TP is seen only without
IPsec.

Sources: RFC 2661, RFC 3931; Wireshark ``l2tp`` dissector; nDPI ``protocols/l2tp.c``.

Known false positives: none known; the rule needs 12 header bytes with fixed values plus an
exact length and a fixed 6-byte AVP prefix.
"""
from __future__ import annotations

from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

L2TP_PORT: Final = 1701
SCCRQ: Final = 1
SCCRP: Final = 2
STOPCCN: Final = 4
MESSAGE_NAMES: Final = {1: "SCCRQ", 2: "SCCRP", 3: "SCCCN", 4: "StopCCN", 6: "HELLO", 7: "OCRQ",
                 8: "OCRP", 9: "OCCN", 10: "ICRQ", 11: "ICRP", 12: "ICCN", 14: "CDN",
                 15: "WEN", 16: "SLI"}


def parse_control(data: bytes) -> Optional[tuple[int, bytes, Optional[int]]]:
    """(version, id fields, message type or None for ZLB) of an L2TP control message."""
    if len(data) < 12 or data[0] & 0xCB != 0xC8 or data[0] & 0x34:
        return None
    if data[1] & 0xF0 or data[1] & 0x0F not in (2, 3):
        return None
    version = data[1] & 0x0F
    length = int.from_bytes(data[2:4], "big")
    if length != len(data):
        return None
    ids = data[4:12]
    if len(data) == 12:
        return version, ids, None  # ZLB acknowledgement
    avp = data[12:20]
    if len(avp) < 8 or avp[0] & 0xC0 != 0x80 or (int.from_bytes(avp[0:2], "big") & 0x3FF) != 8:
        return None
    if avp[2:6] != b"\x00\x00\x00\x00":
        return None
    return version, ids, int.from_bytes(avp[6:8], "big")


def identify_l2tp(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "udp":
        return None
    first = first_payload(facts.client_payloads)
    parsed = parse_control(first) if first else None
    if parsed is None:
        return None
    version, ids, mtype = parsed
    if mtype != SCCRQ or ids != b"\x00" * 8:
        return None
    reasons = [f"L2TPv{version} control message SCCRQ (Message Type AVP = 1), ids zero, "
               "length field matches"]
    conf = 0.95
    if L2TP_PORT not in (facts.server_port, facts.client_port):
        conf = 0.85
        reasons.append(f"unusual port {facts.server_port}")
    answered: Optional[bool] = None
    for p in facts.server_payloads[:4]:
        s = parse_control(p) if p else None
        if s is None:
            continue
        if s[2] in (SCCRP, STOPCCN):
            answered = True
            reasons.append(f"server answered {MESSAGE_NAMES[s[2]]}")
            break
        if s[2] is None:
            answered = True
            reasons.append("server acknowledged (ZLB)")
            break
    if answered is None and not facts.server_payloads:
        answered = False
        reasons.append("no reply from the server")
    return Identification(Target.L2TP, "l2tp", conf, tuple(reasons), answered)
