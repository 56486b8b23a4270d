"""Decode the start of HTTP/1.x messages: the request a client sends and a response head.

Parses the request-line / status-line and header fields of HTTP/1.0 and HTTP/1.1 messages
(RFC 9112 §2-§5, field syntax RFC 9110 §5) from a prefix of a TCP stream. Censors key on the
request's Host header field (RFC 9110 §7.2) and answer with block pages, so responses are decoded
with their header fields and the first body bytes.

Tolerated in the wild: bare LF line endings (RFC 9112 §2.2), a missing empty line at the end of
the header section when the prefix ends early, and a status-line without reason phrase. Text is
decoded byte-exactly (non-ASCII bytes as ``\\xNN`` escapes) and never case-folded, because
censors match on bytes.

Every public function is pure and total: non-HTTP or hostile input yields ``None``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Optional

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "parse_http_request",
    "parse_http_response",
    "looks_like_http_request",
]

CR: Final = b"\r"
LF: Final = b"\n"
SP: Final = b" "
HTAB: Final = b"\t"
#: Optional whitespace around field values (RFC 9110 §5.6.3).
OWS: Final = " \t"
COLON: Final = b":"
HTTP_NAME: Final = b"HTTP/"
#: HTTP-version = HTTP-name "/" DIGIT "." DIGIT (RFC 9112 §2.3).
HTTP_VERSION_LENGTH: Final = len(HTTP_NAME) + 3
#: status-code = 3DIGIT (RFC 9110 §15).
STATUS_CODE_LENGTH: Final = 3
HOST_FIELD: Final = "host"
#: tchar (RFC 9110 §5.6.2): token characters for methods and field names.
TCHAR: Final = frozenset(
    b"!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
)
#: Bounds that keep hostile input cheap; real request lines and header sections are far smaller.
MAX_METHOD_LENGTH: Final = 32
MAX_START_LINE_LENGTH: Final = 64 * 1024
MAX_HEADER_FIELDS: Final = 256
MAX_BODY_PREFIX: Final = 64 * 1024


@dataclass(frozen=True, slots=True)
class HttpRequest:
    """Request-line and header fields of an HTTP/1.x request.

    ``host`` is the value of the first Host field (name matched case-insensitively, value
    as sent with surrounding whitespace removed). ``headers_complete`` tells whether the empty
    line ending the header section was seen.
    """

    method: str
    target: str
    version: str
    host: Optional[str]
    headers: tuple[tuple[str, str], ...] = ()
    headers_complete: bool = False

    def header(self, name: str) -> Optional[str]:
        """First value of the field ``name`` (case-insensitive), or ``None``."""
        return _lookup(self.headers, name)


@dataclass(frozen=True, slots=True)
class HttpResponse:
    """Status-line, header fields and the first body bytes of an HTTP/1.x response."""

    version: str
    status: int
    reason: str
    headers: tuple[tuple[str, str], ...]
    body_prefix: bytes
    headers_complete: bool = False

    def header(self, name: str) -> Optional[str]:
        """First value of the field ``name`` (case-insensitive), or ``None``."""
        return _lookup(self.headers, name)


def _lookup(headers: tuple[tuple[str, str], ...], name: str) -> Optional[str]:
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def _text(raw: bytes) -> str:
    return raw.decode("ascii", errors="backslashreplace")


def _is_version(raw: bytes) -> bool:
    return (
        len(raw) == HTTP_VERSION_LENGTH
        and raw.startswith(HTTP_NAME)
        and raw[len(HTTP_NAME)] in b"0123456789"
        and raw[len(HTTP_NAME) + 1:len(HTTP_NAME) + 2] == b"."
        and raw[len(HTTP_NAME) + 2] in b"0123456789"
    )


def _next_line(data: bytes, pos: int) -> Optional[tuple[bytes, int]]:
    """The line at ``pos`` without its CRLF or LF, and the position after it."""
    end = data.find(LF, pos)
    if end < 0:
        return None
    line = data[pos:end]
    if line.endswith(CR):
        line = line[:-1]
    return line, end + 1


def _parse_fields(data: bytes, pos: int) -> tuple[tuple[tuple[str, str], ...], bool, int]:
    """Header fields from ``pos``: (fields, saw the empty line, position after the section).

    Only complete lines are used; a malformed line ends the section early.
    """
    fields: list[tuple[str, str]] = []
    while len(fields) < MAX_HEADER_FIELDS:
        got = _next_line(data, pos)
        if got is None:
            return tuple(fields), False, pos
        line, nxt = got
        if not line:
            return tuple(fields), True, nxt
        if line[:1] in (SP, HTAB):
            # obs-fold (RFC 9112 §5.2): continue the previous value.
            if fields:
                name, value = fields[-1]
                fields[-1] = (name, (value + " " + _text(line).strip(OWS)).strip(OWS))
            pos = nxt
            continue
        colon = line.find(COLON)
        if colon <= 0 or not all(c in TCHAR for c in line[:colon]):
            return tuple(fields), False, pos
        fields.append((_text(line[:colon]), _text(line[colon + 1:]).strip(OWS)))
        pos = nxt
    return tuple(fields), False, pos


def _request_line(data: bytes) -> Optional[tuple[bytes, bytes, bytes, int]]:
    got = _next_line(data[:MAX_START_LINE_LENGTH + 2], 0)
    if got is None:
        return None
    line, pos = got
    parts = line.split(SP)
    if len(parts) != 3:
        return None
    method, target, version = parts
    if not method or len(method) > MAX_METHOD_LENGTH or not all(c in TCHAR for c in method):
        return None
    if not target or not _is_version(version):
        return None
    return method, target, version, pos


def looks_like_http_request(data: bytes) -> bool:
    """Whether ``data`` starts with a token method followed by a space (a cheap pre-check)."""
    data = bytes(data[:MAX_METHOD_LENGTH + 1])
    space = data.find(SP)
    return space > 0 and all(c in TCHAR for c in data[:space])


def parse_http_request(data: bytes) -> Optional[HttpRequest]:
    """Decode the request-line and header fields from a prefix of a client's TCP stream.

    The request-line must be complete. Header lines are used while complete, so a prefix that
    ends before the empty line still yields the Host header if it arrived. ``None`` on non-HTTP.
    """
    data = bytes(data)
    start = _request_line(data)
    if start is None:
        return None
    method, target, version, pos = start
    fields, complete, _ = _parse_fields(data, pos)
    return HttpRequest(
        method=_text(method),
        target=_text(target),
        version=_text(version),
        host=_lookup(fields, HOST_FIELD),
        headers=fields,
        headers_complete=complete,
    )


def parse_http_response(data: bytes) -> Optional[HttpResponse]:
    """Decode the status-line, header fields and first body bytes of a server's response.

    The status-line must be complete. ``body_prefix`` holds the bytes after the header section
    (empty unless the empty line was seen), up to a bound. ``None`` on non-HTTP.
    """
    data = bytes(data)
    got = _next_line(data[:MAX_START_LINE_LENGTH + 2], 0)
    if got is None:
        return None
    line, pos = got
    version, _, rest = line.partition(SP)
    if not _is_version(version):
        return None
    code, _, reason = rest.partition(SP)
    if len(code) != STATUS_CODE_LENGTH or not all(c in b"0123456789" for c in code):
        return None
    fields, complete, body_start = _parse_fields(data, pos)
    body = data[body_start:body_start + MAX_BODY_PREFIX] if complete else b""
    return HttpResponse(
        version=_text(version),
        status=int(code),
        reason=_text(reason),
        headers=fields,
        body_prefix=body,
        headers_complete=complete,
    )
