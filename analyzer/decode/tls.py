"""Decode the TLS handshake messages that censors key on: ClientHello and ServerHello.

Parses the TLS record layer (RFC 8446 §5.1, RFC 5246 §6.2) as far as needed to reassemble the
first handshake message of a connection, which may be split over several records (record
fragmentation) and whose bytes may only partially be present (the caller may pass a prefix of a
TCP stream). The ClientHello (RFC 8446 §4.1.2, RFC 5246 §7.4.1.2) is decoded together with the
extensions that matter for interference analysis:

* server_name (SNI, RFC 6066 §3),
* application_layer_protocol_negotiation (ALPN, RFC 7301 §3.1),
* supported_versions (RFC 8446 §4.2.1),
* supported_groups / ec_point_formats / signature_algorithms / key_share (RFC 8446 §4.2,
  RFC 8422 §5.1) for fingerprinting,
* encrypted_client_hello (ECH, draft-ietf-tls-esni / RFC 9849, type 0xfe0d) and the older
  encrypted_server_name (ESNI drafts, type 0xffce).

The ServerHello (RFC 8446 §4.1.3) is decoded to learn the negotiated version and cipher suite and
to recognise a HelloRetryRequest by its special random value (RFC 8446 §4.1.3).

Every public function is pure and total: hostile input (lying lengths, truncation, huge counts)
yields ``None`` or a status string, never an exception.
"""
from __future__ import annotations

import struct

from dataclasses import dataclass
from typing import Callable, Final, Optional, TypeVar

__all__ = [
    "ClientHello",
    "ServerHello",
    "TlsAlert",
    "STATUS_COMPLETE",
    "STATUS_NEED_MORE",
    "STATUS_NOT_TLS",
    "parse_client_hello",
    "parse_client_hello_handshake",
    "client_hello_status",
    "client_hello_handshake_status",
    "parse_server_hello",
    "server_hello_status",
    "parse_tls_alert",
    "looks_like_tls_record",
    "decode_wire_text",
]

# --- Record layer (RFC 8446 §5.1, RFC 5246 §6.2) -------------------------------------------
CONTENT_TYPE_CHANGE_CIPHER_SPEC: Final = 20
CONTENT_TYPE_ALERT: Final = 21
CONTENT_TYPE_HANDSHAKE: Final = 22
CONTENT_TYPE_APPLICATION_DATA: Final = 23
CONTENT_TYPE_HEARTBEAT: Final = 24  # RFC 6520

PROTOCOL_VERSION_SSL3: Final = 0x0300
PROTOCOL_VERSION_TLS10: Final = 0x0301
PROTOCOL_VERSION_TLS12: Final = 0x0303
PROTOCOL_VERSION_TLS13: Final = 0x0304
PROTOCOL_VERSION_MAJOR: Final = 0x03

#: ContentType(1) + legacy_record_version(2) + length(2).
RECORD_HEADER_LENGTH: Final = 5
#: TLSPlaintext.length MUST NOT exceed 2^14 (RFC 8446 §5.1).
MAX_PLAINTEXT_LENGTH: Final = 2**14
#: TLSCiphertext.length MUST NOT exceed 2^14 + 2048 (RFC 5246 §6.2.3; RFC 8446 allows +256).
MAX_CIPHERTEXT_LENGTH: Final = 2**14 + 2048

# --- Handshake layer (RFC 8446 §4) ---------------------------------------------------------
HANDSHAKE_TYPE_CLIENT_HELLO: Final = 1
HANDSHAKE_TYPE_SERVER_HELLO: Final = 2
#: msg_type(1) + uint24 length.
HANDSHAKE_HEADER_LENGTH: Final = 4

RANDOM_LENGTH: Final = 32
#: legacy_session_id <0..32>.
MAX_SESSION_ID_LENGTH: Final = 32
#: cipher_suites <2..2^16-2>, each CipherSuite is uint8[2].
CIPHER_SUITE_LENGTH: Final = 2
MAX_CIPHER_SUITES_LENGTH: Final = 2**16 - 2
#: legacy_compression_methods <1..2^8-1>.
MIN_COMPRESSION_METHODS_LENGTH: Final = 1
#: extensions <8..2^16-1> in a ClientHello; an upper bound for any extensions block.
MAX_EXTENSIONS_LENGTH: Final = 2**16 - 1
#: The largest body a syntactically valid ClientHello can have: legacy_version + random +
#: session id vector + cipher suites vector + compression vector + extensions vector.
MAX_CLIENT_HELLO_LENGTH: Final = (
    2 + RANDOM_LENGTH + 1 + MAX_SESSION_ID_LENGTH + 2 + MAX_CIPHER_SUITES_LENGTH
    + 1 + 2**8 - 1 + 2 + MAX_EXTENSIONS_LENGTH
)
#: ServerHello body bound: legacy_version + random + session id + cipher_suite + compression
#: + extensions vector.
MAX_SERVER_HELLO_LENGTH: Final = (
    2 + RANDOM_LENGTH + 1 + MAX_SESSION_ID_LENGTH + CIPHER_SUITE_LENGTH + 1 + 2
    + MAX_EXTENSIONS_LENGTH
)

#: SHA-256("HelloRetryRequest"), the ServerHello.random of a HelloRetryRequest (RFC 8446 §4.1.3).
HELLO_RETRY_REQUEST_RANDOM: Final = bytes.fromhex(
    "cf21ad74e59a6111be1d8c021e65b891c2a211167abb8c5e079e09e2c8a8339c"
)

# --- Extension types (IANA TLS ExtensionType registry) --------------------------------------
EXT_SERVER_NAME: Final = 0  # RFC 6066
EXT_SUPPORTED_GROUPS: Final = 10  # RFC 8422, RFC 7919
EXT_EC_POINT_FORMATS: Final = 11  # RFC 8422
EXT_SIGNATURE_ALGORITHMS: Final = 13  # RFC 8446
EXT_APPLICATION_LAYER_PROTOCOL_NEGOTIATION: Final = 16  # RFC 7301
EXT_SUPPORTED_VERSIONS: Final = 43  # RFC 8446
EXT_KEY_SHARE: Final = 51  # RFC 8446
EXT_ENCRYPTED_CLIENT_HELLO: Final = 0xFE0D  # draft-ietf-tls-esni-13+
EXT_ENCRYPTED_SERVER_NAME: Final = 0xFFCE  # draft-ietf-tls-esni-00..02

#: ServerName.name_type host_name (RFC 6066 §3).
SERVER_NAME_TYPE_HOST_NAME: Final = 0

# --- Alert (RFC 8446 §6) --------------------------------------------------------------------
ALERT_LENGTH: Final = 2

STATUS_COMPLETE: Final = "complete"
STATUS_NEED_MORE: Final = "need_more"
STATUS_NOT_TLS: Final = "not_tls"


@dataclass(frozen=True, slots=True)
class ClientHello:
    """A decoded ClientHello.

    ``extensions`` lists extension types in wire order (GREASE values included). ``sni`` is the
    first host_name of the server_name extension, byte-exact except that non-ASCII bytes are
    rendered as ``\\xNN`` escapes (``sni_raw`` holds the bytes). ``ech`` only says that an
    encrypted_client_hello extension is present: Chrome and Firefox send a GREASE ECH extension
    even without an ECH config, so ``ech`` does not prove that the outer SNI is a cover.
    """

    legacy_version: int
    supported_versions: tuple[int, ...]
    cipher_suites: tuple[int, ...]
    extensions: tuple[int, ...]
    sni: Optional[str]
    alpn: tuple[str, ...]
    ech: bool
    esni: bool
    session_id_len: int
    sni_raw: Optional[bytes] = None
    random: bytes = b""
    compression_methods: tuple[int, ...] = ()
    supported_groups: tuple[int, ...] = ()
    ec_point_formats: tuple[int, ...] = ()
    signature_algorithms: tuple[int, ...] = ()
    key_share_groups: tuple[int, ...] = ()
    #: Length of the ClientHello body (the handshake message without its 4-byte header).
    handshake_length: int = 0
    #: How many TLS records carried the message (1 unless fragmented; 0 for QUIC CRYPTO data).
    record_count: int = 0


@dataclass(frozen=True, slots=True)
class ServerHello:
    """A decoded ServerHello (or HelloRetryRequest, which shares its wire format)."""

    legacy_version: int
    selected_version: int
    cipher_suite: int
    hello_retry: bool
    extensions: tuple[int, ...] = ()
    session_id_len: int = 0
    compression_method: int = 0
    random: bytes = b""


@dataclass(frozen=True, slots=True)
class TlsAlert:
    """A plaintext alert record (RFC 8446 §6): AlertLevel and AlertDescription."""

    level: int
    description: int
    record_version: int


# --- Internal reader -----------------------------------------------------------------------


class _Truncated(Exception):
    """The data ends before the structure does (a valid prefix so far)."""


class _Malformed(Exception):
    """The data contradicts the wire format."""


class _Reader:
    """Cursor over ``buf`` for one structure whose declared end is ``limit``.

    Reading past ``limit`` means a length field lied (``_Malformed``); reading past the end of
    the available bytes but within ``limit`` means the input is a prefix (``_Truncated``).
    """

    __slots__ = ("_buf", "_pos", "_limit")

    def __init__(self, buf: bytes, pos: int, limit: int) -> None:
        self._buf = buf
        self._pos = pos
        self._limit = limit

    @property
    def remaining(self) -> int:
        """Declared bytes left in this structure."""
        return self._limit - self._pos

    def at_end(self) -> bool:
        return self._pos >= self._limit

    def _take(self, n: int) -> bytes:
        end = self._pos + n
        if end > self._limit:
            raise _Malformed
        if end > len(self._buf):
            raise _Truncated
        out = self._buf[self._pos:end]
        self._pos = end
        return out

    def uint(self, n: int) -> int:
        return int.from_bytes(self._take(n), "big")

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def vector(self, length_size: int, min_len: int = 0, max_len: Optional[int] = None) -> _Reader:
        """Read a length prefix and return a reader over the vector; advance past it."""
        length = self.uint(length_size)
        if length < min_len or (max_len is not None and length > max_len):
            raise _Malformed
        start = self._pos
        end = start + length
        if end > self._limit:
            raise _Malformed
        self._pos = end
        return _Reader(self._buf, start, end)

    def rest(self) -> bytes:
        """The remaining declared bytes (all of them must be available)."""
        return self._take(self._limit - self._pos)


_T = TypeVar("_T")


_UINT_FORMATS = {1: "B", 2: "H"}


def _uint_list(r: _Reader, size: int) -> tuple[int, ...]:
    fmt = _UINT_FORMATS.get(size)
    if fmt is not None and r.remaining % size == 0:
        # one struct call for the whole vector (cipher suites, groups...): the hot case
        data = r.raw(r.remaining)
        return struct.unpack(f"!{len(data) // size}{fmt}", data)
    out: list[int] = []
    while not r.at_end():
        out.append(r.uint(size))
    return tuple(out)


def decode_wire_text(raw: bytes) -> str:
    """Decode protocol text byte-exactly: ASCII as is, other bytes as ``\\xNN`` escapes."""
    return raw.decode("ascii", errors="backslashreplace")


# --- Record layer reassembly ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Reassembly:
    message: bytes  # handshake bytes gathered (may be a prefix of the first message)
    records: int  # handshake records that contributed
    malformed: bool  # the record layer itself is not TLS


def _plausible_partial_header(head: bytes) -> bool:
    """Whether a record header cut short could still start a handshake record."""
    if len(head) >= 1 and head[0] != CONTENT_TYPE_HANDSHAKE:
        return False
    if len(head) >= 2 and head[1] != PROTOCOL_VERSION_MAJOR:
        return False
    if len(head) >= 3 and head[2] > (PROTOCOL_VERSION_TLS13 & 0xFF):
        return False
    if len(head) >= 4:
        # The high length byte alone already bounds the length.
        if (head[3] << 8) > MAX_CIPHERTEXT_LENGTH:
            return False
    return True


def _reassemble_first_message(stream: bytes) -> _Reassembly:
    """Concatenate handshake record fragments until the first message is whole or data ends."""
    parts: list[bytes] = []
    have = 0
    records = 0
    need: Optional[int] = None  # total bytes of the first message once its header is known
    pos = 0
    n = len(stream)
    while pos < n:
        if need is not None and have >= need:
            break
        if n - pos < RECORD_HEADER_LENGTH:
            ok = _plausible_partial_header(stream[pos:])
            return _Reassembly(b"".join(parts), records, not ok)
        ctype = stream[pos]
        version = (stream[pos + 1] << 8) | stream[pos + 2]
        length = (stream[pos + 3] << 8) | stream[pos + 4]
        if ctype != CONTENT_TYPE_HANDSHAKE:
            return _Reassembly(b"".join(parts), records, True)
        if not PROTOCOL_VERSION_SSL3 <= version <= PROTOCOL_VERSION_TLS13:
            return _Reassembly(b"".join(parts), records, True)
        if length == 0 or length > MAX_CIPHERTEXT_LENGTH:
            # Zero-length handshake fragments MUST NOT be sent (RFC 8446 §5.1).
            return _Reassembly(b"".join(parts), records, True)
        fragment = stream[pos + RECORD_HEADER_LENGTH:pos + RECORD_HEADER_LENGTH + length]
        parts.append(fragment)
        have += len(fragment)
        records += 1
        pos += RECORD_HEADER_LENGTH + length
        if need is None and have >= HANDSHAKE_HEADER_LENGTH:
            head = b"".join(parts)[:HANDSHAKE_HEADER_LENGTH]
            need = HANDSHAKE_HEADER_LENGTH + int.from_bytes(head[1:4], "big")
    message = b"".join(parts)
    if need is not None:
        message = message[:need]
    return _Reassembly(message, records, False)


# --- ClientHello ---------------------------------------------------------------------------


def _handshake_body(msg: bytes, msg_type: int, max_len: int) -> _Reader:
    """Check the handshake header (msg_type, uint24 length) and return a reader on the body."""
    header = _Reader(msg, 0, HANDSHAKE_HEADER_LENGTH)
    if header.uint(1) != msg_type:
        raise _Malformed
    length = header.uint(3)
    if length > max_len:
        raise _Malformed
    return _Reader(msg, HANDSHAKE_HEADER_LENGTH, HANDSHAKE_HEADER_LENGTH + length)


def _check_legacy_version(r: _Reader) -> int:
    major = r.uint(1)
    if major != PROTOCOL_VERSION_MAJOR:
        raise _Malformed
    minor = r.uint(1)
    return (major << 8) | minor


def _lenient(parse: Callable[[_Reader], _T], data: bytes, default: _T) -> _T:
    """Decode one extension's contents; malformed contents give ``default``."""
    try:
        return parse(_Reader(data, 0, len(data)))
    except (_Truncated, _Malformed):
        return default


def _parse_server_name(r: _Reader) -> Optional[bytes]:
    names = r.vector(2, min_len=1)
    while not names.at_end():
        name_type = names.uint(1)
        name = names.vector(2).rest()
        if name_type == SERVER_NAME_TYPE_HOST_NAME:
            return name
    return None


def _parse_alpn(r: _Reader) -> tuple[str, ...]:
    names = r.vector(2)
    out: list[str] = []
    while not names.at_end():
        out.append(decode_wire_text(names.vector(1).rest()))
    return tuple(out)


def _parse_u8_vector_of_u16(r: _Reader) -> tuple[int, ...]:
    return _uint_list(r.vector(1), 2)


def _parse_u16_vector_of_u16(r: _Reader) -> tuple[int, ...]:
    return _uint_list(r.vector(2), 2)


def _parse_u8_vector_of_u8(r: _Reader) -> tuple[int, ...]:
    return _uint_list(r.vector(1), 1)


def _parse_key_share_groups(r: _Reader) -> tuple[int, ...]:
    shares = r.vector(2)
    out: list[int] = []
    while not shares.at_end():
        out.append(shares.uint(2))
        shares.vector(2)  # key_exchange
    return tuple(out)


def _decode_client_hello(msg: bytes, records: int) -> ClientHello:
    """Decode a handshake message that must be a ClientHello; raises on prefix or garbage."""
    body = _handshake_body(msg, HANDSHAKE_TYPE_CLIENT_HELLO, MAX_CLIENT_HELLO_LENGTH)
    legacy_version = _check_legacy_version(body)
    random = body.raw(RANDOM_LENGTH)
    session_id = body.vector(1, max_len=MAX_SESSION_ID_LENGTH)
    session_id_len = session_id.remaining
    suites_r = body.vector(2, min_len=CIPHER_SUITE_LENGTH, max_len=MAX_CIPHER_SUITES_LENGTH)
    if suites_r.remaining % CIPHER_SUITE_LENGTH:
        raise _Malformed
    cipher_suites = _uint_list(suites_r, CIPHER_SUITE_LENGTH)
    compression = _uint_list(body.vector(1, min_len=MIN_COMPRESSION_METHODS_LENGTH), 1)
    ext_types: list[int] = []
    ext_data: dict[int, bytes] = {}
    if not body.at_end():
        exts = body.vector(2)
        while not exts.at_end():
            ext_type = exts.uint(2)
            data = exts.vector(2).rest()
            ext_types.append(ext_type)
            ext_data.setdefault(ext_type, data)
    # Bytes after the extensions block are tolerated (they cannot move the SNI).
    body.rest()

    sni_raw: Optional[bytes] = None
    if EXT_SERVER_NAME in ext_data:
        sni_raw = _lenient(_parse_server_name, ext_data[EXT_SERVER_NAME], None)
    empty: tuple[int, ...] = ()
    return ClientHello(
        legacy_version=legacy_version,
        supported_versions=_lenient(
            _parse_u8_vector_of_u16, ext_data.get(EXT_SUPPORTED_VERSIONS, b""), empty
        ),
        cipher_suites=cipher_suites,
        extensions=tuple(ext_types),
        sni=None if sni_raw is None else decode_wire_text(sni_raw),
        alpn=_lenient(
            _parse_alpn, ext_data.get(EXT_APPLICATION_LAYER_PROTOCOL_NEGOTIATION, b""), ()
        ),
        ech=EXT_ENCRYPTED_CLIENT_HELLO in ext_data,
        esni=EXT_ENCRYPTED_SERVER_NAME in ext_data,
        session_id_len=session_id_len,
        sni_raw=sni_raw,
        random=random,
        compression_methods=compression,
        supported_groups=_lenient(
            _parse_u16_vector_of_u16, ext_data.get(EXT_SUPPORTED_GROUPS, b""), empty
        ),
        ec_point_formats=_lenient(
            _parse_u8_vector_of_u8, ext_data.get(EXT_EC_POINT_FORMATS, b""), empty
        ),
        signature_algorithms=_lenient(
            _parse_u16_vector_of_u16, ext_data.get(EXT_SIGNATURE_ALGORITHMS, b""), empty
        ),
        key_share_groups=_lenient(
            _parse_key_share_groups, ext_data.get(EXT_KEY_SHARE, b""), empty
        ),
        handshake_length=len(msg) - HANDSHAKE_HEADER_LENGTH,
        record_count=records,
    )


def _client_hello_from_message(msg: bytes, records: int) -> tuple[str, Optional[ClientHello]]:
    try:
        return STATUS_COMPLETE, _decode_client_hello(msg, records)
    except _Truncated:
        return STATUS_NEED_MORE, None
    except _Malformed:
        return STATUS_NOT_TLS, None


def _client_hello_from_stream(stream: bytes) -> tuple[str, Optional[ClientHello]]:
    re = _reassemble_first_message(stream)
    if re.malformed:
        return STATUS_NOT_TLS, None
    status, hello = _client_hello_from_message(re.message, re.records)
    return status, hello


def parse_client_hello(stream: bytes) -> Optional[ClientHello]:
    """Decode the ClientHello from a client's TCP payload (TLS records from the first byte).

    The handshake message may be fragmented over several handshake records. Returns ``None``
    when the data is not TLS or holds only part of the ClientHello.
    """
    return _client_hello_from_stream(bytes(stream))[1]


def client_hello_and_status(stream: bytes) -> tuple[str, Optional[ClientHello]]:
    """Both at once (one parse): the status of :func:`client_hello_status` and the hello."""
    return _client_hello_from_stream(bytes(stream))


def client_hello_status(stream: bytes) -> str:
    """``"complete"``, ``"need_more"`` (a valid prefix, message incomplete) or ``"not_tls"``."""
    return _client_hello_from_stream(bytes(stream))[0]


def parse_client_hello_handshake(msg: bytes) -> Optional[ClientHello]:
    """Decode a raw ClientHello handshake message (type 1, uint24 length, body).

    This is the form carried in QUIC CRYPTO frames (RFC 9001 §4). Bytes after the message are
    ignored. Returns ``None`` if the message is incomplete or malformed.
    """
    return _client_hello_from_message(bytes(msg), 0)[1]


def client_hello_handshake_status(msg: bytes) -> str:
    """Like :func:`client_hello_status` for a raw handshake message (no record layer)."""
    return _client_hello_from_message(bytes(msg), 0)[0]


# --- ServerHello ---------------------------------------------------------------------------


def _decode_server_hello(msg: bytes) -> ServerHello:
    body = _handshake_body(msg, HANDSHAKE_TYPE_SERVER_HELLO, MAX_SERVER_HELLO_LENGTH)
    legacy_version = _check_legacy_version(body)
    random = body.raw(RANDOM_LENGTH)
    session_id = body.vector(1, max_len=MAX_SESSION_ID_LENGTH)
    cipher_suite = body.uint(CIPHER_SUITE_LENGTH)
    compression_method = body.uint(1)
    ext_types: list[int] = []
    selected_version = legacy_version
    seen_versions = False
    if not body.at_end():
        exts = body.vector(2)
        while not exts.at_end():
            ext_type = exts.uint(2)
            data = exts.vector(2)
            ext_types.append(ext_type)
            if ext_type == EXT_SUPPORTED_VERSIONS and not seen_versions:
                seen_versions = True
                selected_version = data.uint(2)
    body.rest()
    return ServerHello(
        legacy_version=legacy_version,
        selected_version=selected_version,
        cipher_suite=cipher_suite,
        hello_retry=random == HELLO_RETRY_REQUEST_RANDOM,
        extensions=tuple(ext_types),
        session_id_len=session_id.remaining,
        compression_method=compression_method,
        random=random,
    )


def _server_hello_from_stream(stream: bytes) -> tuple[str, Optional[ServerHello]]:
    re = _reassemble_first_message(stream)
    if re.malformed:
        return STATUS_NOT_TLS, None
    try:
        return STATUS_COMPLETE, _decode_server_hello(re.message)
    except _Truncated:
        return STATUS_NEED_MORE, None
    except _Malformed:
        return STATUS_NOT_TLS, None


def parse_server_hello(stream: bytes) -> Optional[ServerHello]:
    """Decode the ServerHello (or HelloRetryRequest) from a server's first TCP payload bytes."""
    return _server_hello_from_stream(bytes(stream))[1]


def server_hello_status(stream: bytes) -> str:
    """``"complete"``, ``"need_more"`` or ``"not_tls"`` for a server's first bytes."""
    return _server_hello_from_stream(bytes(stream))[0]


# --- Other records -------------------------------------------------------------------------


def parse_tls_alert(data: bytes) -> Optional[TlsAlert]:
    """Decode a plaintext alert if ``data`` starts with an alert record (content type 21)."""
    data = bytes(data)
    if not looks_like_tls_record(data) or data[0] != CONTENT_TYPE_ALERT:
        return None
    length = (data[3] << 8) | data[4]
    if length != ALERT_LENGTH or len(data) < RECORD_HEADER_LENGTH + ALERT_LENGTH:
        return None
    return TlsAlert(
        level=data[RECORD_HEADER_LENGTH],
        description=data[RECORD_HEADER_LENGTH + 1],
        record_version=(data[1] << 8) | data[2],
    )


def looks_like_tls_record(data: bytes) -> bool:
    """Whether ``data`` starts with a plausible TLS record header.

    Content type 20-24, legacy_record_version 0x0300-0x0304 and a length within the RFC bound
    (non-zero for types that may not be empty). The record body need not be present.
    """
    if len(data) < RECORD_HEADER_LENGTH:
        return False
    ctype = data[0]
    version = (data[1] << 8) | data[2]
    length = (data[3] << 8) | data[4]
    if not CONTENT_TYPE_CHANGE_CIPHER_SPEC <= ctype <= CONTENT_TYPE_HEARTBEAT:
        return False
    if not PROTOCOL_VERSION_SSL3 <= version <= PROTOCOL_VERSION_TLS13:
        return False
    if length > MAX_CIPHERTEXT_LENGTH:
        return False
    if length == 0 and ctype != CONTENT_TYPE_APPLICATION_DATA:
        return False
    return True
