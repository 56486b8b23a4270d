"""SSTP (Microsoft Secure Socket Tunneling Protocol), visible only when not encrypted.

Rules
-----
* SSTP starts with an HTTP-like request ``SSTP_DUPLEX_POST
  /sra_{BA195980-CD49-458b-9E23-C84EE0ADCD75}/ HTTP/1.1`` ([MS-SSTP] §2.2.2, §3.2.5.1)
  *inside TLS* on TCP 443.  It is recognised only when that request is visible in the
  client's first payload, i.e. in a capture taken behind a TLS terminator, of a
  misconfigured plain-text server, or of decrypted traffic -> 0.95 (the method together
  with the fixed GUID path; the GUID is compared case-insensitively).  The method with a
  different path -> 0.7.
* A normal SSTP session shows only a TLS ClientHello: the request is encrypted, so an
  SSTP connection then looks like any HTTPS connection (app ``tls``, target OTHER).  No
  SNI-free or port-based hint is used: a TLS connection to 443 without SNI is not evidence
  of SSTP.
* ``handshake_answered`` True when the server answered with an HTTP status line (SSTP
  servers answer ``HTTP/1.1 200``), False when the request is there and nothing came back.

Sources: [MS-SSTP] Secure Socket Tunneling Protocol, §2.2.2 (HTTPS request), §3.2.5.1;
Wireshark's ``sstp`` dissector (decodes only after TLS decryption); nDPI does not detect
SSTP without decryption either.

Known false positives: none known (the method name is SSTP-specific).
"""
from __future__ import annotations

from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

SSTP_METHOD: Final = b"SSTP_DUPLEX_POST "
SSTP_PATH: Final = b"/sra_{ba195980-cd49-458b-9e23-c84ee0adcd75}/"


def identify_sstp(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "tcp":
        return None
    first = first_payload(facts.client_payloads)
    if not first.startswith(SSTP_METHOD):
        return None
    target = first[len(SSTP_METHOD):].split(b" ", 1)[0]
    if target.lower() == SSTP_PATH:
        conf = 0.95
        reasons = ["plain-text SSTP_DUPLEX_POST to /sra_{BA195980-...}/ (SSTP request visible: "
                   "not encrypted or decrypted)"]
    else:
        conf = 0.7
        reasons = ["plain-text SSTP_DUPLEX_POST with an unexpected path"]
    answered: Optional[bool] = None
    server = first_payload(facts.server_payloads)
    if server.startswith(b"HTTP/"):
        answered = True
        reasons.append("server answered " + server.split(b"\r\n", 1)[0][:40].decode("latin-1"))
    elif not facts.server_payloads:
        answered = False
        reasons.append("no reply from the server")
    return Identification(Target.SSTP, "sstp", conf, tuple(reasons), answered)
