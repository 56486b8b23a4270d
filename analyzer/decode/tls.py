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
from typing import Callable, Final, NamedTuple, Optional

__all__ = [
    "ClientHello",
    "HelloTrigger",
    "ServerHello",
    "TlsAlert",
    "STATUS_COMPLETE",
    "STATUS_NEED_MORE",
    "STATUS_NOT_TLS",
    "parse_client_hello",
    "parse_client_hello_handshake",
    "client_hello_status",
    "client_hello_trigger",
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


# --- Internal decoding ---------------------------------------------------------------------
#
# The decoders below walk the bytes in one pass with plain index arithmetic: the ClientHello
# is decoded for every TLS flow, and a cursor object with one method call per field cost
# several times more (profiled). Every read keeps the two checks of the wire format: a read
# past the end that a length field declared means the length lied (``_Malformed``); a read past
# the available bytes but within the declared end means the input is a prefix
# (``_Truncated``). ``_fail`` picks between them once a read does not fit.


class _Truncated(Exception):
    """The data ends before the structure does (a valid prefix so far)."""


class _Malformed(Exception):
    """The data contradicts the wire format."""


def _fail(end: int, limit: int) -> Exception:
    """The error for a read ending at ``end`` that does not fit: past the declared ``limit``
    means the length lied, otherwise the available bytes ran out."""
    return _Malformed() if end > limit else _Truncated()


def _u16s(buf: bytes, start: int, length: int) -> tuple[int, ...]:
    """``length`` bytes at ``start`` as big-endian uint16 values (``length`` is even)."""
    return struct.unpack_from(f"!{length >> 1}H", buf, start)


def decode_wire_text(raw: bytes) -> str:
    """Decode protocol text byte-exactly: ASCII as is, other bytes as ``\\xNN`` escapes."""
    return raw.decode("ascii", errors="backslashreplace")


# --- Record layer reassembly ---------------------------------------------------------------


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


def _reassemble_first_message(stream: bytes) -> Optional[tuple[bytes, int]]:
    """Concatenate handshake record fragments until the first message is whole or data ends.

    Returns ``(message, records)``: the handshake bytes gathered (a prefix of the first message
    when data ends early) and how many handshake records contributed; ``None`` when the record
    layer itself is not TLS.
    """
    parts: list[bytes] = []
    have = 0
    records = 0
    need = -1  # total bytes of the first message once its header is known
    pos = 0
    n = len(stream)
    while pos < n:
        if need >= 0 and have >= need:
            break
        if n - pos < RECORD_HEADER_LENGTH:
            if not _plausible_partial_header(stream[pos:]):
                return None
            break
        start = pos + RECORD_HEADER_LENGTH
        length = (stream[pos + 3] << 8) | stream[pos + 4]
        if (
            stream[pos] != CONTENT_TYPE_HANDSHAKE
            or not PROTOCOL_VERSION_SSL3 <= ((stream[pos + 1] << 8) | stream[pos + 2])
            <= PROTOCOL_VERSION_TLS13
            # Zero-length handshake fragments MUST NOT be sent (RFC 8446 §5.1).
            or length == 0
            or length > MAX_CIPHERTEXT_LENGTH
        ):
            return None
        fragment = stream[start:start + length]
        pos = start + length
        records += 1
        if not parts:
            have = len(fragment)
            if have >= HANDSHAKE_HEADER_LENGTH:
                need = HANDSHAKE_HEADER_LENGTH + int.from_bytes(fragment[1:4], "big")
                if have >= need:
                    # the common case: the first record holds the whole message
                    return fragment[:need], records
            parts.append(fragment)
            continue
        parts.append(fragment)
        have += len(fragment)
        if need < 0 and have >= HANDSHAKE_HEADER_LENGTH:
            need = HANDSHAKE_HEADER_LENGTH + int.from_bytes(b"".join(parts)[1:4], "big")
    message = b"".join(parts)
    if need >= 0:
        message = message[:need]
    return message, records


# --- ClientHello ---------------------------------------------------------------------------
#
# Extension contents are decoded leniently: malformed contents give the field's default.
# Each helper reads the contents at ``start`` of an extension whose extension_data length is
# the two bytes before ``start`` (all of them available) and never raises.


def _ext_vector(buf: bytes, start: int, prefix: int) -> tuple[int, int]:
    """(first, stop) of the vector with a ``prefix``-byte (1 or 2) length that opens the
    extension data at ``start``; (0, -1) when it does not fit in the extension."""
    end = start + ((buf[start - 2] << 8) | buf[start - 1])
    first = start + prefix
    if first > end:
        return 0, -1
    stop = first + (buf[start] if prefix == 1 else (buf[start] << 8) | buf[start + 1])
    if stop > end:
        return 0, -1
    return first, stop


def _ext_server_name(buf: bytes, start: int) -> Optional[bytes]:
    """First host_name of a server_name extension (RFC 6066 §3)."""
    pos, stop = _ext_vector(buf, start, 2)
    if stop <= pos:  # does not fit, or empty
        return None
    while pos < stop:
        # name_type(1) + HostName length(2)
        if pos + 3 > stop:
            return None
        name_end = pos + 3 + ((buf[pos + 1] << 8) | buf[pos + 2])
        if name_end > stop:
            return None
        if buf[pos] == SERVER_NAME_TYPE_HOST_NAME:
            return buf[pos + 3:name_end]
        pos = name_end
    return None


def _ext_alpn(buf: bytes, start: int) -> tuple[str, ...]:
    """ProtocolNameList of an ALPN extension (RFC 7301 §3.1)."""
    pos, stop = _ext_vector(buf, start, 2)
    out: list[str] = []
    while pos < stop:
        name_end = pos + 1 + buf[pos]
        if name_end > stop:
            return ()
        out.append(buf[pos + 1:name_end].decode("ascii", errors="backslashreplace"))
        pos = name_end
    return tuple(out)


def _ext_u8_vector_of_u16(buf: bytes, start: int) -> tuple[int, ...]:
    first, stop = _ext_vector(buf, start, 1)
    if stop < 0 or (stop - first) % CIPHER_SUITE_LENGTH:
        return ()
    return _u16s(buf, first, stop - first)


def _ext_u16_vector_of_u16(buf: bytes, start: int) -> tuple[int, ...]:
    first, stop = _ext_vector(buf, start, 2)
    if stop < 0 or (stop - first) % CIPHER_SUITE_LENGTH:
        return ()
    return _u16s(buf, first, stop - first)


def _ext_u8_vector_of_u8(buf: bytes, start: int) -> tuple[int, ...]:
    first, stop = _ext_vector(buf, start, 1)
    return tuple(buf[first:stop]) if stop >= 0 else ()


def _ext_key_share_groups(buf: bytes, start: int) -> tuple[int, ...]:
    """Groups of the KeyShareEntry list of a ClientHello key_share extension."""
    pos, stop = _ext_vector(buf, start, 2)
    out: list[int] = []
    while pos < stop:
        # group(2) + key_exchange length(2)
        if pos + 4 > stop:
            return ()
        out.append((buf[pos] << 8) | buf[pos + 1])
        pos += 4 + ((buf[pos + 2] << 8) | buf[pos + 3])
        if pos > stop:
            return ()
    return tuple(out)


class _ClientHelloLayout(NamedTuple):
    """Where the fields of a structurally valid ClientHello are (``_walk_client_hello``)."""

    legacy_version: int
    session_id_len: int
    suites_at: int  # cipher suites: offset and byte length (even, >= 2)
    suites_len: int
    compression_at: int  # compression methods: offset and byte length (>= 1)
    compression_len: int
    ext_types: list[int]  # extension types in wire order
    ext_starts: list[int]  # where each extension's contents begin (length in the 2 bytes before)


def _hello_start(msg: bytes, hello_type: int, max_length: int) -> tuple[int, int, int, int, int]:
    """What a ClientHello and a ServerHello begin with, checked: the handshake header, the
    legacy version, the random and the session id. Returns (declared end of the body, end of
    what can be read of it, legacy_version, session_id length, offset after the session id);
    raises ``_Truncated`` on a prefix and ``_Malformed`` on garbage."""
    n = len(msg)
    # Handshake header: msg_type, uint24 length.
    if n < 1:
        raise _Truncated
    if msg[0] != hello_type:
        raise _Malformed
    if n < HANDSHAKE_HEADER_LENGTH:
        raise _Truncated
    length = (msg[1] << 16) | (msg[2] << 8) | msg[3]
    if length > max_length:
        raise _Malformed
    limit = HANDSHAKE_HEADER_LENGTH + length  # declared end of the body
    avail = n if n < limit else limit  # reads ending past this do not fit
    # legacy_version: the major byte is checked before the minor byte is read.
    pos = HANDSHAKE_HEADER_LENGTH
    if pos + 1 > avail:
        raise _fail(pos + 1, limit)
    if msg[pos] != PROTOCOL_VERSION_MAJOR:
        raise _Malformed
    # minor version + random + session id length
    if pos + 3 + RANDOM_LENGTH > avail:
        raise _fail(pos + 2 if pos + 2 > avail else
                    pos + 2 + RANDOM_LENGTH if pos + 2 + RANDOM_LENGTH > avail else
                    pos + 3 + RANDOM_LENGTH, limit)
    legacy_version = (PROTOCOL_VERSION_MAJOR << 8) | msg[pos + 1]
    pos += 2 + RANDOM_LENGTH
    session_id_len = msg[pos]
    if session_id_len > MAX_SESSION_ID_LENGTH:
        raise _Malformed
    pos += 1 + session_id_len
    if pos > limit:
        raise _Malformed
    return limit, avail, legacy_version, session_id_len, pos


def _walk_client_hello(msg: bytes) -> _ClientHelloLayout:
    """Check a handshake message that must be a ClientHello, down to the extension headers;
    raises ``_Truncated`` on a prefix and ``_Malformed`` on garbage."""
    n = len(msg)
    limit, avail, legacy_version, session_id_len, pos = _hello_start(
        msg, HANDSHAKE_TYPE_CLIENT_HELLO, MAX_CLIENT_HELLO_LENGTH)
    # cipher_suites <2..2^16-2>
    if pos + 2 > avail:
        raise _fail(pos + 2, limit)
    suites_len = (msg[pos] << 8) | msg[pos + 1]
    pos += 2
    if suites_len < CIPHER_SUITE_LENGTH or suites_len > MAX_CIPHER_SUITES_LENGTH:
        raise _Malformed
    if pos + suites_len > limit or suites_len % CIPHER_SUITE_LENGTH:
        raise _Malformed
    if pos + suites_len > n:
        raise _Truncated
    suites_at = pos
    pos += suites_len
    # legacy_compression_methods <1..2^8-1>
    if pos + 1 > avail:
        raise _fail(pos + 1, limit)
    comp_len = msg[pos]
    pos += 1
    if comp_len < MIN_COMPRESSION_METHODS_LENGTH or pos + comp_len > limit:
        raise _Malformed
    if pos + comp_len > n:
        raise _Truncated
    comp_at = pos
    pos += comp_len
    ext_starts: list[int] = []
    if pos < limit:
        if pos + 2 > avail:
            raise _fail(pos + 2, limit)
        exts_end = pos + 2 + ((msg[pos] << 8) | msg[pos + 1])
        if exts_end > limit:
            raise _Malformed
        pos += 2
        exts_avail = n if n < exts_end else exts_end
        starts_append = ext_starts.append
        while pos < exts_end:
            # extension_type(2) + extension_data length(2)
            if pos + 4 > exts_avail:
                raise _fail(pos + 2 if pos + 2 > exts_avail else pos + 4, exts_end)
            data_len = (msg[pos + 2] << 8) | msg[pos + 3]
            pos += 4
            starts_append(pos)
            pos += data_len
            if pos > exts_avail:
                raise _fail(pos, exts_end)
    # Bytes after the extensions block are tolerated (they cannot move the SNI), but must be
    # there.
    if limit > n:
        raise _Truncated
    ext_types = [(msg[at - 4] << 8) | msg[at - 3] for at in ext_starts]
    return _ClientHelloLayout(legacy_version, session_id_len, suites_at, suites_len, comp_at,
                              comp_len, ext_types, ext_starts)


# The first extension of each type counts.


def _sni_raw(msg: bytes, ext_types: list[int], ext_starts: list[int]) -> Optional[bytes]:
    if EXT_SERVER_NAME not in ext_types:
        return None
    return _ext_server_name(msg, ext_starts[ext_types.index(EXT_SERVER_NAME)])


def _alpn(msg: bytes, ext_types: list[int], ext_starts: list[int]) -> tuple[str, ...]:
    if EXT_APPLICATION_LAYER_PROTOCOL_NEGOTIATION not in ext_types:
        return ()
    return _ext_alpn(msg, ext_starts[ext_types.index(EXT_APPLICATION_LAYER_PROTOCOL_NEGOTIATION)])


def _ext_field(msg: bytes, ext_types: list[int], ext_starts: list[int], ext_type: int,
               parse: Callable[[bytes, int], tuple[int, ...]]) -> tuple[int, ...]:
    if ext_type not in ext_types:
        return ()
    return parse(msg, ext_starts[ext_types.index(ext_type)])


def _decode_client_hello(msg: bytes, records: int) -> ClientHello:
    """Decode a handshake message that must be a ClientHello; raises on prefix or garbage."""
    lay = _walk_client_hello(msg)
    types, starts = lay.ext_types, lay.ext_starts
    sni_raw = _sni_raw(msg, types, starts)
    return ClientHello(
        legacy_version=lay.legacy_version,
        supported_versions=_ext_field(msg, types, starts, EXT_SUPPORTED_VERSIONS,
                                      _ext_u8_vector_of_u16),
        cipher_suites=_u16s(msg, lay.suites_at, lay.suites_len),
        extensions=tuple(types),
        sni=None if sni_raw is None else decode_wire_text(sni_raw),
        alpn=_alpn(msg, types, starts),
        ech=EXT_ENCRYPTED_CLIENT_HELLO in types,
        esni=EXT_ENCRYPTED_SERVER_NAME in types,
        session_id_len=lay.session_id_len,
        sni_raw=sni_raw,
        random=msg[HANDSHAKE_HEADER_LENGTH + 2:HANDSHAKE_HEADER_LENGTH + 2 + RANDOM_LENGTH],
        compression_methods=tuple(
            msg[lay.compression_at:lay.compression_at + lay.compression_len]),
        supported_groups=_ext_field(msg, types, starts, EXT_SUPPORTED_GROUPS,
                                    _ext_u16_vector_of_u16),
        ec_point_formats=_ext_field(msg, types, starts, EXT_EC_POINT_FORMATS,
                                    _ext_u8_vector_of_u8),
        signature_algorithms=_ext_field(msg, types, starts, EXT_SIGNATURE_ALGORITHMS,
                                        _ext_u16_vector_of_u16),
        key_share_groups=_ext_field(msg, types, starts, EXT_KEY_SHARE, _ext_key_share_groups),
        handshake_length=len(msg) - HANDSHAKE_HEADER_LENGTH,
        record_count=records,
    )


class HelloTrigger(NamedTuple):
    """What a censor can key on in a ClientHello: the fields of :class:`ClientHello` with the
    same names (``ech`` and ``esni`` say whether those extensions are present)."""

    sni: Optional[str]
    alpn: tuple[str, ...]
    ech: bool
    esni: bool


def client_hello_trigger(stream: bytes) -> tuple[str, Optional[HelloTrigger]]:
    """Like :func:`client_hello_and_status`, but only the SNI, ALPN and ECH/ESNI flags of the
    hello: the same checks (the status is the same), without decoding the fingerprint fields
    (cipher suites, groups, signature algorithms ...). For callers that run once per flow."""
    re = _reassemble_first_message(bytes(stream))
    if re is None:
        return STATUS_NOT_TLS, None
    msg = re[0]
    try:
        lay = _walk_client_hello(msg)
    except _Truncated:
        return STATUS_NEED_MORE, None
    except _Malformed:
        return STATUS_NOT_TLS, None
    types = lay.ext_types
    sni_raw = _sni_raw(msg, types, lay.ext_starts)
    return STATUS_COMPLETE, HelloTrigger(
        None if sni_raw is None else decode_wire_text(sni_raw),
        _alpn(msg, types, lay.ext_starts),
        EXT_ENCRYPTED_CLIENT_HELLO in types,
        EXT_ENCRYPTED_SERVER_NAME in types,
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
    if re is None:
        return STATUS_NOT_TLS, None
    return _client_hello_from_message(re[0], re[1])


def parse_client_hello(stream: bytes) -> Optional[ClientHello]:
    """Decode the ClientHello from a client's TCP payload (TLS records from the first byte).

    The handshake message may be fragmented over several handshake records. Returns ``None``
    when the data is not TLS or holds only part of the ClientHello.
    """
    return _client_hello_from_stream(bytes(stream))[1]


def client_hello_and_status(stream: bytes) -> tuple[str, Optional[ClientHello]]:
    """Both at once (one parse): the status of :func:`client_hello_status` and the hello."""
    return _client_hello_from_stream(bytes(stream))


def _client_hello_status(msg: bytes) -> str:
    try:
        _walk_client_hello(msg)  # decoding the fields after the walk cannot fail
    except _Truncated:
        return STATUS_NEED_MORE
    except _Malformed:
        return STATUS_NOT_TLS
    return STATUS_COMPLETE


def client_hello_status(stream: bytes) -> str:
    """``"complete"``, ``"need_more"`` (a valid prefix, message incomplete) or ``"not_tls"``."""
    re = _reassemble_first_message(bytes(stream))
    return STATUS_NOT_TLS if re is None else _client_hello_status(re[0])


def parse_client_hello_handshake(msg: bytes) -> Optional[ClientHello]:
    """Decode a raw ClientHello handshake message (type 1, uint24 length, body).

    This is the form carried in QUIC CRYPTO frames (RFC 9001 §4). Bytes after the message are
    ignored. Returns ``None`` if the message is incomplete or malformed.
    """
    return _client_hello_from_message(bytes(msg), 0)[1]


def client_hello_handshake_status(msg: bytes) -> str:
    """Like :func:`client_hello_status` for a raw handshake message (no record layer)."""
    return _client_hello_status(bytes(msg))


# --- ServerHello ---------------------------------------------------------------------------


def _walk_server_hello(msg: bytes) -> tuple[int, int, int, int, list[int], int]:
    """Check a handshake message that must be a ServerHello; raises ``_Truncated`` on a prefix
    and ``_Malformed`` on garbage. Returns (legacy_version, session_id_len, cipher_suite,
    compression_method, extension types, selected_version)."""
    n = len(msg)
    limit, avail, legacy_version, session_id_len, pos = _hello_start(
        msg, HANDSHAKE_TYPE_SERVER_HELLO, MAX_SERVER_HELLO_LENGTH)
    # cipher_suite(2) + legacy_compression_method(1)
    if pos + CIPHER_SUITE_LENGTH + 1 > avail:
        raise _fail(pos + 2 if pos + 2 > avail else pos + 3, limit)
    cipher_suite = (msg[pos] << 8) | msg[pos + 1]
    compression_method = msg[pos + 2]
    pos += 3
    ext_types: list[int] = []
    selected_version = legacy_version
    seen_versions = False
    if pos < limit:
        if pos + 2 > avail:
            raise _fail(pos + 2, limit)
        exts_end = pos + 2 + ((msg[pos] << 8) | msg[pos + 1])
        if exts_end > limit:
            raise _Malformed
        pos += 2
        exts_avail = n if n < exts_end else exts_end
        while pos < exts_end:
            # extension_type(2) + extension_data length(2); the data need not be there yet
            if pos + 4 > exts_avail:
                raise _fail(pos + 2 if pos + 2 > exts_avail else pos + 4, exts_end)
            ext_type = (msg[pos] << 8) | msg[pos + 1]
            data_end = pos + 4 + ((msg[pos + 2] << 8) | msg[pos + 3])
            if data_end > exts_end:
                raise _Malformed
            ext_types.append(ext_type)
            if ext_type == EXT_SUPPORTED_VERSIONS and not seen_versions:
                seen_versions = True
                if pos + 6 > data_end or pos + 6 > n:
                    raise _fail(pos + 6, data_end)
                selected_version = (msg[pos + 4] << 8) | msg[pos + 5]
            pos = data_end
    if limit > n:
        raise _Truncated
    return (legacy_version, session_id_len, cipher_suite, compression_method, ext_types,
            selected_version)


def _decode_server_hello(msg: bytes) -> ServerHello:
    legacy_version, session_id_len, cipher_suite, compression_method, ext_types, selected = \
        _walk_server_hello(msg)
    random = msg[HANDSHAKE_HEADER_LENGTH + 2:HANDSHAKE_HEADER_LENGTH + 2 + RANDOM_LENGTH]
    return ServerHello(
        legacy_version=legacy_version,
        selected_version=selected,
        cipher_suite=cipher_suite,
        hello_retry=random == HELLO_RETRY_REQUEST_RANDOM,
        extensions=tuple(ext_types),
        session_id_len=session_id_len,
        compression_method=compression_method,
        random=random,
    )


def _server_hello_from_stream(stream: bytes) -> tuple[str, Optional[ServerHello]]:
    re = _reassemble_first_message(stream)
    if re is None:
        return STATUS_NOT_TLS, None
    try:
        return STATUS_COMPLETE, _decode_server_hello(re[0])
    except _Truncated:
        return STATUS_NEED_MORE, None
    except _Malformed:
        return STATUS_NOT_TLS, None


def parse_server_hello(stream: bytes) -> Optional[ServerHello]:
    """Decode the ServerHello (or HelloRetryRequest) from a server's first TCP payload bytes."""
    return _server_hello_from_stream(bytes(stream))[1]


def server_hello_status(stream: bytes) -> str:
    """``"complete"``, ``"need_more"`` or ``"not_tls"`` for a server's first bytes.

    ``"complete"`` exactly when :func:`parse_server_hello` returns a ServerHello.
    """
    re = _reassemble_first_message(bytes(stream))
    if re is None:
        return STATUS_NOT_TLS
    try:
        _walk_server_hello(re[0])  # building the ServerHello after the walk cannot fail
    except _Truncated:
        return STATUS_NEED_MORE
    except _Malformed:
        return STATUS_NOT_TLS
    return STATUS_COMPLETE


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
