"""Generic TLS record recognition (and plain HTTP request recognition) for the ``app`` field.

Rules
-----
* A TLS record starts with a 5-byte header (RFC 8446 §5.1, RFC 5246 §6.2.1): content type
  20 change_cipher_spec, 21 alert, 22 handshake or 23 application_data; legacy record version
  ``0x03 0x00``..``0x03 0x04`` (SSL 3.0 .. TLS 1.3; TLS 1.3 still writes 0x0301/0x0303 here);
  a 16-bit length of 1..2^14+2048 (the largest ciphertext a record may carry).
* A ClientHello is a handshake record (22) whose first handshake byte is 1; a ServerHello
  (or TLS 1.3 HelloRetryRequest, same type) is a handshake record whose first handshake byte
  is 2.  The flow is app ``tls`` with high confidence when the client's first payload is a
  ClientHello; a flow that starts with other TLS records (capture began mid-connection) is
  ``tls`` with lower confidence and ``handshake_answered`` None.
* ``handshake_answered``: True when a server payload starts with a ServerHello record, False
  when the client's ClientHello is present and the server sent no payload at all, else None
  (e.g. the server answered with an alert or something that is not TLS).
* A plain HTTP/1.x request starts with an RFC 9110 method token and a space; when the first
  line is complete it must match ``METHOD SP request-target SP HTTP/d.d``.  A response
  starts with ``HTTP/1.`` or ``HTTP/2``.  Flows whose client starts with an HTTP request are
  app ``http``; ``handshake_answered`` stays None (HTTP is not a handshake).

These functions are also used by other modules: the fully-encrypted-traffic exemption Ex5
(fep.py), WhatsApp-by-name and Tor (to fill ``app`` and ``handshake_answered``).

Sources: RFC 8446, RFC 5246, RFC 9110 §9 (methods); Wireshark's ``ssl``/``tls`` heuristic
dissector and nDPI's ``tls.c`` apply the same record-header checks.

Known false positives: any protocol whose first bytes happen to be ``16 03 0x`` with a sane
length (for random data about 5 * 2^-24 per packet for the header alone, lower with the
handshake-type byte).  Unencrypted protocols that look like HTTP (RTSP uses ``RTSP/1.0``
and is not matched; SSTP's ``SSTP_DUPLEX_POST`` is not an RFC 9110 method and is handled by
sstp.py).  TLS inside other framing (e.g. STARTTLS after SMTP/XMPP banners) is not seen as
TLS by the first-payload rule.
"""
from __future__ import annotations

import re
from typing import Final, Optional

from analyzer.model import FlowFacts, Identification, Target

TLS_CHANGE_CIPHER_SPEC: Final = 20
TLS_ALERT: Final = 21
TLS_HANDSHAKE: Final = 22
TLS_APPLICATION_DATA: Final = 23
_CONTENT_TYPES: Final = frozenset({TLS_CHANGE_CIPHER_SPEC, TLS_ALERT, TLS_HANDSHAKE, TLS_APPLICATION_DATA})
_MAX_RECORD: Final = (1 << 14) + 2048

HS_CLIENT_HELLO: Final = 1
HS_SERVER_HELLO: Final = 2

HTTP_METHODS: tuple[bytes, ...] = (
    b"GET", b"POST", b"HEAD", b"PUT", b"DELETE", b"OPTIONS", b"CONNECT", b"PATCH", b"TRACE",
)
_REQUEST_LINE: Final = re.compile(rb"^[A-Z]{3,7} [\x21-\x7e]+ HTTP/\d(?:\.\d)?$")


def tls_record_header(data: bytes) -> Optional[tuple[int, int, int]]:
    """(content type, version, length) when ``data`` starts with a plausible TLS record header."""
    if len(data) < 5:
        return None
    ctype = data[0]
    if ctype not in _CONTENT_TYPES or data[1] != 0x03 or data[2] > 0x04:
        return None
    length = int.from_bytes(data[3:5], "big")
    if length == 0 or length > _MAX_RECORD:
        return None
    return ctype, (data[1] << 8) | data[2], length


def handshake_type(data: bytes) -> Optional[int]:
    """Handshake message type of the first handshake record, if any."""
    # tls_record_header()'s checks for a handshake record, inline: this runs on the first
    # payloads of every TCP flow.
    if len(data) < 6 or data[0] != TLS_HANDSHAKE or data[1] != 0x03 or data[2] > 0x04:
        return None
    length = (data[3] << 8) | data[4]
    if length == 0 or length > _MAX_RECORD:
        return None
    return data[5]


def is_client_hello(data: bytes) -> bool:
    return handshake_type(data) == HS_CLIENT_HELLO


def is_server_hello(data: bytes) -> bool:
    return handshake_type(data) == HS_SERVER_HELLO


def is_tls(data: bytes) -> bool:
    """True when ``data`` starts with any plausible TLS record header."""
    return tls_record_header(data) is not None


def tls_handshake_answered(facts: FlowFacts) -> Optional[bool]:
    """Tri-state answer for a TLS flow (see the module docstring)."""
    for p in facts.server_payloads[:4]:
        if handshake_type(p) == HS_SERVER_HELLO:
            return True
    if facts.server_payloads:
        return None
    for p in facts.client_payloads[:4]:
        if handshake_type(p) == HS_CLIENT_HELLO:
            return False
    return None


def is_http_request(data: bytes) -> bool:
    """True when ``data`` starts like an HTTP/1.x request (method token, space, target)."""
    sp = data.find(b" ", 0, 9)
    if sp <= 0 or data[:sp] not in HTTP_METHODS:
        return False
    eol = data.find(b"\r\n")
    if eol < 0:
        eol = data.find(b"\n")
    if eol >= 0:
        return _REQUEST_LINE.match(data[:eol]) is not None
    # First line cut off: accept origin-form, absolute-form or CONNECT authority-form targets.
    rest = data[sp + 1:]
    if data[:sp] == b"CONNECT":
        return len(rest) > 0 and rest[:1].isalnum()
    return rest.startswith(b"/") or rest[:7].lower() in (b"http://", b"https:/")


def is_http_response(data: bytes) -> bool:
    return data.startswith(b"HTTP/1.") or data.startswith(b"HTTP/2")


def first_payload(payloads: tuple[bytes, ...]) -> bytes:
    """The first non-empty payload (b"" when there is none)."""
    for p in payloads:
        if p:
            return p
    return b""


def detect_tls(facts: FlowFacts) -> Optional[tuple[float, tuple[str, ...], Optional[bool]]]:
    """(confidence, reasons, handshake_answered) when the client speaks TLS."""
    if facts.proto != "tcp":
        return None
    first = first_payload(facts.client_payloads)
    if not first:
        return None
    if is_client_hello(first):
        return 0.95, ("client's first payload is a TLS ClientHello record",), \
            tls_handshake_answered(facts)
    hdr = tls_record_header(first)
    if hdr is None:
        return None
    # Mid-connection capture: require a second record header or a TLS-looking server side.
    server_first = first_payload(facts.server_payloads)
    others = [p for p in facts.client_payloads[1:4] if p]
    if any(is_tls(p) for p in others) or is_tls(server_first):
        return 0.7, (f"TLS record (type {hdr[0]}) without ClientHello: capture began "
                     "mid-connection",), None
    return None


def detect_http(facts: FlowFacts) -> Optional[tuple[float, tuple[str, ...]]]:
    if facts.proto != "tcp":
        return None
    first = first_payload(facts.client_payloads)
    if first and is_http_request(first):
        method = first.split(b" ", 1)[0].decode("ascii")
        return 0.95, (f"client's first payload is an HTTP {method} request",)
    return None


def identify_tls(facts: FlowFacts) -> Optional[Identification]:
    """Generic TLS: target OTHER, app ``tls`` (target-specific rules run before this one)."""
    found = detect_tls(facts)
    if found is None:
        return None
    conf, reasons, answered = found
    if facts.sni:
        reasons = reasons + (f"SNI {facts.sni}",)
    elif is_client_hello(first_payload(facts.client_payloads)):
        reasons = reasons + ("no SNI",)
    if facts.ech:
        reasons = reasons + ("Encrypted ClientHello: the SNI is the outer (public) name",)
    return Identification(Target.OTHER, "tls", conf, reasons, answered)


def identify_http(facts: FlowFacts) -> Optional[Identification]:
    """Generic plain HTTP: target OTHER, app ``http``."""
    found = detect_http(facts)
    if found is None:
        return None
    conf, reasons = found
    if facts.http_host:
        reasons = reasons + (f"Host {facts.http_host}",)
    return Identification(Target.OTHER, "http", conf, reasons, None)
