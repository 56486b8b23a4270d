"""Decode client QUIC Initial packets down to the TLS ClientHello they carry.

Parses QUIC long headers (RFC 9000 §17.2, version-independent invariants RFC 8999 §5.1) and,
for client Initial packets of QUIC v1 (RFC 9000), QUIC v2 (RFC 9369) and draft-29, removes the
Initial packet protection using the keys every on-path observer can derive from the Destination
Connection ID (RFC 9001 §5.2 initial secrets, §5.4 header protection with an AES-ECB mask,
§5.3 AES-128-GCM payload protection; RFC 9369 §3.3.1-§3.3.2 salt and HKDF labels for v2).

The decrypted payload is walked frame by frame (RFC 9000 §19): PADDING, PING, ACK,
CRYPTO (collected) and CONNECTION_CLOSE; parsing stops safely at any other frame type. CRYPTO
data carries the TLS handshake (RFC 9001 §4); the ClientHello is decoded with
:mod:`analyzer.decode.tls`. :class:`QuicCryptoAssembler` joins CRYPTO data spread over several
Initial datagrams (large post-quantum ClientHellos, Chrome's reordered CRYPTO frames).

Every public function is pure and total: hostile datagrams yield ``None``, never an exception.
"""
from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from functools import lru_cache
from typing import Final, Optional

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from analyzer.decode.tls import (
    HANDSHAKE_HEADER_LENGTH,
    HANDSHAKE_TYPE_CLIENT_HELLO,
    MAX_CLIENT_HELLO_LENGTH,
    ClientHello,
    parse_client_hello_handshake,
)

__all__ = [
    "QUIC_VERSION_1",
    "QUIC_VERSION_2",
    "QUIC_VERSION_DRAFT_29",
    "KEYED_VERSIONS_WIRE",
    "HEADER_FORM_BIT",
    "QuicInitial",
    "QuicLongHeader",
    "InitialKeys",
    "QuicCryptoAssembler",
    "derive_client_initial_keys",
    "parse_quic_initial",
    "parse_long_header",
    "is_quic_long_header",
    "quic_version",
    "decode_varint",
]

# --- Versions and their Initial parameters -------------------------------------------------
QUIC_VERSION_NEGOTIATION: Final = 0x00000000  # RFC 9000 §17.2.1
QUIC_VERSION_1: Final = 0x00000001  # RFC 9000
QUIC_VERSION_2: Final = 0x6B3343CF  # RFC 9369
QUIC_VERSION_DRAFT_29: Final = 0xFF00001D  # draft-ietf-quic-tls-29

#: The Version field (as on the wire) of the versions whose Initial keys are known: any other
#: datagram is not a client Initial that :func:`parse_quic_initial` can decrypt.
KEYED_VERSIONS_WIRE: Final = frozenset(
    v.to_bytes(4, "big") for v in (QUIC_VERSION_1, QUIC_VERSION_2, QUIC_VERSION_DRAFT_29)
)

#: initial_salt (RFC 9001 §5.2).
INITIAL_SALT_V1: Final = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")
#: initial_salt (RFC 9369 §3.3.1).
INITIAL_SALT_V2: Final = bytes.fromhex("0dede3def700a6db819381be6e269dcbf9bd2ed9")
#: initial_salt (draft-ietf-quic-tls-29 §5.2).
INITIAL_SALT_DRAFT_29: Final = bytes.fromhex("afbfec289993d24c9e9786f19c6111e04390a899")

LABEL_CLIENT_IN: Final = b"client in"
LABEL_SERVER_IN: Final = b"server in"
LABEL_QUIC_KEY: Final = b"quic key"
LABEL_QUIC_IV: Final = b"quic iv"
LABEL_QUIC_HP: Final = b"quic hp"
LABEL_QUICV2_KEY: Final = b"quicv2 key"  # RFC 9369 §3.3.2
LABEL_QUICV2_IV: Final = b"quicv2 iv"
LABEL_QUICV2_HP: Final = b"quicv2 hp"
#: HKDF-Expand-Label prefix (RFC 8446 §7.1).
TLS13_LABEL_PREFIX: Final = b"tls13 "

#: Secret, key, IV and header-protection key lengths for AEAD_AES_128_GCM (RFC 9001 §5).
INITIAL_SECRET_LENGTH: Final = 32  # SHA-256 output
AEAD_KEY_LENGTH: Final = 16
AEAD_IV_LENGTH: Final = 12
HP_KEY_LENGTH: Final = 16
AEAD_TAG_LENGTH: Final = 16
#: Header protection sample length and the assumed packet-number length (RFC 9001 §5.4.2).
HP_SAMPLE_LENGTH: Final = 16
HP_SAMPLE_PN_OFFSET: Final = 4

# --- Long header layout (RFC 9000 §17.2) ----------------------------------------------------
HEADER_FORM_BIT: Final = 0x80
FIXED_BIT: Final = 0x40
LONG_PACKET_TYPE_MASK: Final = 0x30
LONG_PACKET_TYPE_SHIFT: Final = 4
#: Header protection covers the low 4 bits of a long header's first byte (RFC 9001 §5.4.1).
LONG_HEADER_PROTECTED_BITS: Final = 0x0F
PACKET_NUMBER_LENGTH_MASK: Final = 0x03
VERSION_LENGTH: Final = 4
#: first byte + version + DCID length byte + SCID length byte.
MIN_LONG_HEADER_LENGTH: Final = 1 + VERSION_LENGTH + 1 + 1
#: Connection IDs are at most 20 bytes in QUIC v1 and v2 (RFC 9000 §17.2).
MAX_CONNECTION_ID_LENGTH_V1: Final = 20

PACKET_TYPE_INITIAL: Final = "initial"
PACKET_TYPE_0RTT: Final = "0rtt"
PACKET_TYPE_HANDSHAKE: Final = "handshake"
PACKET_TYPE_RETRY: Final = "retry"
PACKET_TYPE_VERSION_NEGOTIATION: Final = "version_negotiation"
PACKET_TYPE_UNKNOWN: Final = "unknown"

#: Long Packet Type values (RFC 9000 Table 5).
_PACKET_TYPES_V1: Final = (
    PACKET_TYPE_INITIAL, PACKET_TYPE_0RTT, PACKET_TYPE_HANDSHAKE, PACKET_TYPE_RETRY
)
#: Long Packet Type values in QUIC v2 (RFC 9369 §3.2).
_PACKET_TYPES_V2: Final = (
    PACKET_TYPE_RETRY, PACKET_TYPE_INITIAL, PACKET_TYPE_0RTT, PACKET_TYPE_HANDSHAKE
)

# --- Variable-length integers (RFC 9000 §16) ------------------------------------------------
VARINT_LENGTH_SHIFT: Final = 6
VARINT_FIRST_BYTE_MASK: Final = 0x3F

# --- Frame types (RFC 9000 §19) -------------------------------------------------------------
FRAME_PADDING: Final = 0x00
FRAME_PING: Final = 0x01
FRAME_ACK: Final = 0x02
FRAME_ACK_ECN: Final = 0x03
FRAME_CRYPTO: Final = 0x06
FRAME_CONNECTION_CLOSE: Final = 0x1C
FRAME_CONNECTION_CLOSE_APP: Final = 0x1D
#: ECT(0), ECT(1) and ECN-CE counts follow the ACK ranges of an ACK_ECN frame.
ACK_ECN_COUNT_FIELDS: Final = 3
#: Largest value of a variable-length integer / stream offset (RFC 9000 §19.6).
MAX_VARINT: Final = 2**62 - 1

#: Default bound on the CRYPTO bytes one assembler keeps (a ClientHello fits well below it).
DEFAULT_CRYPTO_CAP: Final = 64 * 1024
#: Bound on how many coalesced packets of one datagram are examined.
MAX_COALESCED_PACKETS: Final = 8
#: Bound on the disjoint CRYPTO ranges an assembler tracks (browsers send a few dozen at most);
#: keeps hostile 1-byte fragments from making reassembly quadratic.
MAX_CRYPTO_FRAGMENTS: Final = 512


@dataclass(frozen=True, slots=True)
class InitialKeys:
    """Initial packet protection keys of one direction (RFC 9001 §5.2)."""

    secret: bytes
    key: bytes
    iv: bytes
    hp: bytes


@dataclass(frozen=True, slots=True)
class QuicLongHeader:
    """Unprotected fields of a long header packet (RFC 9000 §17.2).

    ``length`` is the declared Length field (packet number + payload) for Initial, 0-RTT and
    Handshake packets and ``None`` otherwise; ``packet_length`` is the byte count of this packet
    inside the datagram, or ``None`` when the datagram is shorter than declared.
    """

    version: int
    packet_type: str
    dcid: bytes
    scid: bytes
    token: bytes
    length: Optional[int]
    pn_offset: Optional[int]
    packet_length: Optional[int]


@dataclass(frozen=True, slots=True)
class QuicInitial:
    """A decrypted client Initial (first Initial of the datagram plus coalesced Initials)."""

    version: int
    dcid: bytes
    scid: bytes
    token_len: int
    packet_number: int
    crypto: tuple[tuple[int, bytes], ...]
    client_hello: Optional[ClientHello]
    #: Frame types in the order seen (PADDING runs once per run).
    frame_types: tuple[int, ...] = ()
    #: Error code of a CONNECTION_CLOSE frame, if one was present.
    close_error_code: Optional[int] = None
    #: Number of Initial packets decrypted from the datagram.
    packet_count: int = 1


# --- Primitives ----------------------------------------------------------------------------


class _Bad(Exception):
    """Internal: the input does not decode."""


def decode_varint(data: bytes, pos: int) -> Optional[tuple[int, int]]:
    """Decode a variable-length integer at ``pos``: ``(value, next_pos)`` or ``None``."""
    if pos < 0 or pos >= len(data):
        return None
    first = data[pos]
    size = 1 << (first >> VARINT_LENGTH_SHIFT)
    end = pos + size
    if end > len(data):
        return None
    value = first & VARINT_FIRST_BYTE_MASK
    for b in data[pos + 1:end]:
        value = (value << 8) | b
    return value, end


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    out = decode_varint(data, pos)
    if out is None:
        raise _Bad
    return out


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand_label(secret: bytes, label: bytes, length: int) -> bytes:
    """HKDF-Expand-Label with an empty context (RFC 8446 §7.1)."""
    full = TLS13_LABEL_PREFIX + label
    info = length.to_bytes(2, "big") + bytes([len(full)]) + full + b"\x00"
    out = b""
    block = b""
    counter = 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def _salt_for(version: int) -> Optional[bytes]:
    if version == QUIC_VERSION_1:
        return INITIAL_SALT_V1
    if version == QUIC_VERSION_2:
        return INITIAL_SALT_V2
    if version == QUIC_VERSION_DRAFT_29:
        return INITIAL_SALT_DRAFT_29
    return None


def derive_client_initial_keys(
    dcid: bytes, version: int = QUIC_VERSION_1, *, server: bool = False
) -> Optional[InitialKeys]:
    """Derive the Initial keys for ``dcid`` (the client's first Destination Connection ID).

    Client keys by default, server keys with ``server=True``. ``None`` for unknown versions.
    """
    salt = _salt_for(version)
    if salt is None:
        return None
    return _initial_keys(bytes(dcid), salt, version, server)


# The Initials of one connection (retransmissions, a ClientHello over two datagrams) share the
# DCID: derive their keys once. Pure, so a bounded cache.
@lru_cache(maxsize=1024)
def _initial_keys(dcid: bytes, salt: bytes, version: int, server: bool) -> InitialKeys:
    initial_secret = _hkdf_extract(salt, dcid)
    secret = _hkdf_expand_label(
        initial_secret, LABEL_SERVER_IN if server else LABEL_CLIENT_IN, INITIAL_SECRET_LENGTH
    )
    if version == QUIC_VERSION_2:
        key_label, iv_label, hp_label = LABEL_QUICV2_KEY, LABEL_QUICV2_IV, LABEL_QUICV2_HP
    else:
        key_label, iv_label, hp_label = LABEL_QUIC_KEY, LABEL_QUIC_IV, LABEL_QUIC_HP
    return InitialKeys(
        secret=secret,
        key=_hkdf_expand_label(secret, key_label, AEAD_KEY_LENGTH),
        iv=_hkdf_expand_label(secret, iv_label, AEAD_IV_LENGTH),
        hp=_hkdf_expand_label(secret, hp_label, HP_KEY_LENGTH),
    )


def _hp_mask(hp_key: bytes, sample: bytes) -> bytes:
    """AES-ECB of the 16-byte sample (RFC 9001 §5.4.3)."""
    return _hp_encryptor(hp_key).update(sample[:HP_SAMPLE_LENGTH])


# ECB has no state between blocks: one encryptor per header-protection key serves every
# packet of the connection (making one costs 7 of the 8 µs of a mask). Bounded like the keys.
@lru_cache(maxsize=1024)
def _hp_encryptor(hp_key: bytes) -> CipherContext:
    return Cipher(algorithms.AES(hp_key), modes.ECB()).encryptor()


# --- Long header ---------------------------------------------------------------------------


def _packet_type(version: int, first: int) -> str:
    if version == QUIC_VERSION_NEGOTIATION:
        return PACKET_TYPE_VERSION_NEGOTIATION
    bits = (first & LONG_PACKET_TYPE_MASK) >> LONG_PACKET_TYPE_SHIFT
    if version == QUIC_VERSION_2:
        return _PACKET_TYPES_V2[bits]
    if version in (QUIC_VERSION_1, QUIC_VERSION_DRAFT_29):
        return _PACKET_TYPES_V1[bits]
    return PACKET_TYPE_UNKNOWN


def _parse_long_header(data: bytes, start: int) -> QuicLongHeader:
    n = len(data)
    if n - start < MIN_LONG_HEADER_LENGTH:
        raise _Bad
    first = data[start]
    if not first & HEADER_FORM_BIT:
        raise _Bad
    pos = start + 1
    version = int.from_bytes(data[pos:pos + VERSION_LENGTH], "big")
    pos += VERSION_LENGTH
    dcid_len = data[pos]
    pos += 1
    if pos + dcid_len >= n:  # the SCID length byte must follow
        raise _Bad
    dcid = data[pos:pos + dcid_len]
    pos += dcid_len
    scid_len = data[pos]
    pos += 1
    if pos + scid_len > n:
        raise _Bad
    scid = data[pos:pos + scid_len]
    pos += scid_len
    ptype = _packet_type(version, first)
    if _salt_for(version) is not None:
        if dcid_len > MAX_CONNECTION_ID_LENGTH_V1 or scid_len > MAX_CONNECTION_ID_LENGTH_V1:
            raise _Bad
    token = b""
    length: Optional[int] = None
    pn_offset: Optional[int] = None
    packet_length: Optional[int] = None
    if ptype in (PACKET_TYPE_INITIAL, PACKET_TYPE_0RTT, PACKET_TYPE_HANDSHAKE):
        if ptype == PACKET_TYPE_INITIAL:
            token_len, pos = _varint(data, pos)
            if pos + token_len > n:
                raise _Bad
            token = data[pos:pos + token_len]
            pos += token_len
        length, pos = _varint(data, pos)
        pn_offset = pos
        if pos + length <= n:
            packet_length = pos + length - start
    elif ptype in (PACKET_TYPE_RETRY, PACKET_TYPE_VERSION_NEGOTIATION):
        packet_length = n - start  # these packets are never coalesced with a successor
    return QuicLongHeader(
        version=version,
        packet_type=ptype,
        dcid=dcid,
        scid=scid,
        token=token,
        length=length,
        pn_offset=None if pn_offset is None else pn_offset - start,
        packet_length=packet_length,
    )


def parse_long_header(datagram: bytes) -> Optional[QuicLongHeader]:
    """Decode the unprotected fields of the first long header packet in ``datagram``."""
    try:
        return _parse_long_header(bytes(datagram), 0)
    except _Bad:
        return None


def is_quic_long_header(datagram: bytes) -> bool:
    """Whether ``datagram`` starts with a syntactically valid QUIC long header.

    The same checks as :func:`parse_long_header` (whose result is not None exactly when this
    is True), without building the header: it is asked once per datagram.
    """
    data = bytes(datagram)
    n = len(data)
    if n < MIN_LONG_HEADER_LENGTH:
        return False
    first = data[0]
    if not first & HEADER_FORM_BIT:
        return False
    dcid_len = data[1 + VERSION_LENGTH]
    pos = 2 + VERSION_LENGTH + dcid_len
    if pos >= n:  # the SCID length byte must follow
        return False
    scid_len = data[pos]
    pos += 1 + scid_len
    if pos > n:
        return False
    version = int.from_bytes(data[1:1 + VERSION_LENGTH], "big")
    if _salt_for(version) is None:
        return True  # other versions: no length limits, no fields decoded after the CIDs
    if dcid_len > MAX_CONNECTION_ID_LENGTH_V1 or scid_len > MAX_CONNECTION_ID_LENGTH_V1:
        return False
    ptype = _packet_type(version, first)
    if ptype == PACKET_TYPE_INITIAL:
        token = decode_varint(data, pos)
        if token is None or token[1] + token[0] > n:
            return False
        return decode_varint(data, token[1] + token[0]) is not None
    if ptype in (PACKET_TYPE_0RTT, PACKET_TYPE_HANDSHAKE):
        return decode_varint(data, pos) is not None
    return True


def quic_version(datagram: bytes) -> Optional[int]:
    """The Version field of a long header packet (0 for Version Negotiation), else ``None``."""
    header = parse_long_header(datagram)
    return None if header is None else header.version


# --- Decryption and frames -----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Frames:
    crypto: tuple[tuple[int, bytes], ...]
    types: tuple[int, ...]
    close_error_code: Optional[int]


def _unprotect(
    packet: bytes, header: QuicLongHeader, keys: InitialKeys
) -> Optional[tuple[int, bytes]]:
    """Remove header and payload protection: ``(packet_number, plaintext)`` or ``None``."""
    if header.pn_offset is None or header.length is None or header.packet_length is None:
        return None
    pn_offset = header.pn_offset
    end = header.packet_length
    sample_start = pn_offset + HP_SAMPLE_PN_OFFSET
    if sample_start + HP_SAMPLE_LENGTH > end:
        return None
    mask = _hp_mask(keys.hp, packet[sample_start:sample_start + HP_SAMPLE_LENGTH])
    first = packet[0] ^ (mask[0] & LONG_HEADER_PROTECTED_BITS)
    pn_len = (first & PACKET_NUMBER_LENGTH_MASK) + 1
    # The sample check above guarantees pn_len (<= 4) bytes before the sample.
    masked_pn = int.from_bytes(packet[pn_offset:pn_offset + pn_len], "big")
    # With no packet received yet the expected number is 0, so the truncated packet number
    # decodes to itself (RFC 9000 §A.3).
    packet_number = masked_pn ^ int.from_bytes(mask[1:1 + pn_len], "big")
    pn_bytes = packet_number.to_bytes(pn_len, "big")
    payload_start = pn_offset + pn_len
    if end - payload_start < AEAD_TAG_LENGTH:
        return None
    aad = bytes([first]) + packet[1:pn_offset] + pn_bytes
    nonce = (int.from_bytes(keys.iv, "big") ^ packet_number).to_bytes(AEAD_IV_LENGTH, "big")
    try:
        plaintext = AESGCM(keys.key).decrypt(nonce, packet[payload_start:end], aad)
    except (InvalidTag, ValueError, OverflowError):
        return None
    return packet_number, plaintext


def _parse_frames(payload: bytes) -> _Frames:
    """Walk frames, collecting CRYPTO data; stop at the first unknown or malformed frame."""
    crypto: list[tuple[int, bytes]] = []
    types: list[int] = []
    close_code: Optional[int] = None
    pos = 0
    n = len(payload)
    try:
        while pos < n:
            ftype, pos = _varint(payload, pos)
            if ftype == FRAME_PADDING:
                types.append(ftype)
                pos = n - len(payload[pos:].lstrip(bytes([FRAME_PADDING])))
                continue
            if ftype == FRAME_PING:
                types.append(ftype)
                continue
            if ftype in (FRAME_ACK, FRAME_ACK_ECN):
                _, pos = _varint(payload, pos)  # Largest Acknowledged
                _, pos = _varint(payload, pos)  # ACK Delay
                range_count, pos = _varint(payload, pos)
                _, pos = _varint(payload, pos)  # First ACK Range
                if range_count * 2 > n - pos:  # every Gap and Range takes at least one byte
                    raise _Bad
                for _ in range(range_count * 2):
                    _, pos = _varint(payload, pos)
                if ftype == FRAME_ACK_ECN:
                    for _ in range(ACK_ECN_COUNT_FIELDS):
                        _, pos = _varint(payload, pos)
                types.append(ftype)
                continue
            if ftype == FRAME_CRYPTO:
                offset, pos = _varint(payload, pos)
                length, pos = _varint(payload, pos)
                if pos + length > n or offset + length > MAX_VARINT:
                    raise _Bad
                crypto.append((offset, payload[pos:pos + length]))
                pos += length
                types.append(ftype)
                continue
            if ftype in (FRAME_CONNECTION_CLOSE, FRAME_CONNECTION_CLOSE_APP):
                code, pos = _varint(payload, pos)
                if ftype == FRAME_CONNECTION_CLOSE:
                    _, pos = _varint(payload, pos)  # Frame Type
                reason_len, pos = _varint(payload, pos)
                if pos + reason_len > n:
                    raise _Bad
                pos += reason_len
                if close_code is None:
                    close_code = code
                types.append(ftype)
                continue
            break  # a frame we do not decode: its length is unknown
    except _Bad:
        pass
    return _Frames(tuple(crypto), tuple(types), close_code)


# --- CRYPTO stream reassembly --------------------------------------------------------------


class QuicCryptoAssembler:
    """Joins Initial CRYPTO data of one connection until the ClientHello is whole.

    Chrome splits large ClientHellos over two Initial datagrams and shuffles CRYPTO frames, so
    offsets arrive out of order. Only bytes below ``cap`` are kept (memory is bounded by
    ``cap``). :meth:`add` returns the ClientHello as soon as the contiguous CRYPTO data from
    offset 0 holds the whole message, and keeps returning it on later calls.
    """

    __slots__ = ("_cap", "_buf", "_filled", "_hello", "_failed")

    def __init__(self, cap: int = DEFAULT_CRYPTO_CAP) -> None:
        self._cap = max(0, cap)
        self._buf = bytearray()
        self._filled: list[tuple[int, int]] = []  # sorted, disjoint, non-adjacent [start, end)
        self._hello: Optional[ClientHello] = None
        self._failed = False

    @property
    def client_hello(self) -> Optional[ClientHello]:
        return self._hello

    @property
    def failed(self) -> bool:
        """The data cannot become a ClientHello (malformed, larger than ``cap``, or split
        into more than ``MAX_CRYPTO_FRAGMENTS`` disjoint ranges)."""
        return self._failed

    @property
    def contiguous(self) -> int:
        """Bytes available from offset 0 without a gap."""
        if self._filled and self._filled[0][0] == 0:
            return self._filled[0][1]
        return 0

    def add(self, initial: QuicInitial) -> Optional[ClientHello]:
        """Add the CRYPTO frames of one decrypted Initial; the ClientHello once complete."""
        for offset, data in initial.crypto:
            self.add_crypto(offset, data)
        return self._hello

    def add_crypto(self, offset: int, data: bytes) -> Optional[ClientHello]:
        """Add one CRYPTO frame's data at ``offset``; the ClientHello once complete."""
        if self._hello is not None or self._failed:
            return self._hello
        if offset < 0 or offset >= self._cap or not data:
            return None
        end = min(offset + len(data), self._cap)
        chunk = bytes(data[:end - offset])
        if len(self._buf) < end:
            self._buf.extend(bytes(end - len(self._buf)))
        self._buf[offset:end] = chunk
        self._mark(offset, end)
        if len(self._filled) > MAX_CRYPTO_FRAGMENTS:
            self._failed = True
            return None
        return self._try_complete()

    def _mark(self, start: int, end: int) -> None:
        merged: list[tuple[int, int]] = []
        for s, e in self._filled:
            if e < start or s > end:
                merged.append((s, e))
            else:
                start, end = min(s, start), max(e, end)
        merged.append((start, end))
        merged.sort()
        self._filled = merged

    def _try_complete(self) -> Optional[ClientHello]:
        """The ClientHello if the data now completes it (returned rather than re-read by the
        caller: mypy would keep its narrowing of ``self._hello`` to None across this call,
        and code compiled by mypyc checks that narrowing at run time)."""
        have = self.contiguous
        if have < HANDSHAKE_HEADER_LENGTH:
            return None
        head = self._buf[:HANDSHAKE_HEADER_LENGTH]
        body_len = int.from_bytes(head[1:HANDSHAKE_HEADER_LENGTH], "big")
        need = HANDSHAKE_HEADER_LENGTH + body_len
        if head[0] != HANDSHAKE_TYPE_CLIENT_HELLO or body_len > MAX_CLIENT_HELLO_LENGTH:
            self._failed = True
            return None
        if need > self._cap:
            self._failed = True
            return None
        if have < need:
            return None
        hello = parse_client_hello_handshake(bytes(self._buf[:need]))
        if hello is None:
            self._failed = True
        self._hello = hello
        return hello


def _client_hello_from_crypto(crypto: tuple[tuple[int, bytes], ...]) -> Optional[ClientHello]:
    assembler = QuicCryptoAssembler()
    for offset, data in sorted(crypto, key=lambda c: c[0]):
        assembler.add_crypto(offset, data)
    return assembler.client_hello


# --- Initial packets -----------------------------------------------------------------------


def parse_quic_initial(datagram: bytes) -> Optional[QuicInitial]:
    """Decrypt the client Initial packet(s) at the start of a UDP datagram.

    The first packet must be an Initial of QUIC v1, v2 or draft-29 protected with the client
    Initial keys. Coalesced packets that follow are walked: further Initials with the same
    DCID are decrypted and their frames appended, other long header packets are skipped.
    Returns ``None`` when the datagram is not such a packet or does not decrypt.
    """
    data = bytes(datagram)
    # Cheap rejection of what cannot be a client Initial of a version we can decrypt (most
    # UDP datagrams): the header checks below would reach the same None.
    if len(data) < MIN_LONG_HEADER_LENGTH or not data[0] & HEADER_FORM_BIT:
        return None
    version = int.from_bytes(data[1:1 + VERSION_LENGTH], "big")
    if _salt_for(version) is None or _packet_type(version, data[0]) != PACKET_TYPE_INITIAL:
        return None
    try:
        first = _parse_long_header(data, 0)
    except _Bad:
        return None
    if first.packet_type != PACKET_TYPE_INITIAL or first.packet_length is None:
        return None
    keys = derive_client_initial_keys(first.dcid, first.version)
    if keys is None:
        return None
    opened = _unprotect(data[:first.packet_length], first, keys)
    if opened is None:
        return None
    packet_number, plaintext = opened
    frames = _parse_frames(plaintext)
    crypto = list(frames.crypto)
    types = list(frames.types)
    close_code = frames.close_error_code
    count = 1

    pos = first.packet_length
    for _ in range(MAX_COALESCED_PACKETS - 1):
        if pos >= len(data):
            break
        try:
            nxt = _parse_long_header(data, pos)
        except _Bad:
            break  # short header packet or padding: nothing more to read
        if nxt.packet_length is None:
            break
        packet = data[pos:pos + nxt.packet_length]
        if (
            nxt.packet_type == PACKET_TYPE_INITIAL
            and nxt.version == first.version
            and nxt.dcid == first.dcid
        ):
            more = _unprotect(packet, nxt, keys)
            if more is not None:
                extra = _parse_frames(more[1])
                crypto.extend(extra.crypto)
                types.extend(extra.types)
                if close_code is None:
                    close_code = extra.close_error_code
                count += 1
        pos += nxt.packet_length

    crypto_t = tuple(crypto)
    return QuicInitial(
        version=first.version,
        dcid=first.dcid,
        scid=first.scid,
        token_len=len(first.token),
        packet_number=packet_number,
        crypto=crypto_t,
        client_hello=_client_hello_from_crypto(crypto_t),
        frame_types=tuple(types),
        close_error_code=close_code,
        packet_count=count,
    )
