"""QUIC v1 Initial packets (RFC 9000/9001) for the lab: build a client Initial carrying a
TLS 1.3 ClientHello with SNI, and decrypt one to recover the SNI (what a censor does).

Self-contained (uses ``cryptography`` for AES-GCM/AES-ECB and X25519); no analyzer imports.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import struct

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from .pkt import ClientHelloInfo, parse_client_hello_body

INITIAL_SALT_V1 = bytes.fromhex("38762cf7f55934b34d179ae6a4c80cadccbb7f0a")


def _hkdf_extract(salt: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt, ikm, hashlib.sha256).digest()


def _hkdf_expand_label(secret: bytes, label: str, length: int) -> bytes:
    full = b"tls13 " + label.encode()
    info = struct.pack("!H", length) + bytes([len(full)]) + full + b"\x00"
    out, block, i = b"", b"", 1
    while len(out) < length:
        block = hmac.new(secret, block + info + bytes([i]), hashlib.sha256).digest()
        out += block
        i += 1
    return out[:length]


def initial_keys(dcid: bytes, client: bool = True) -> tuple[bytes, bytes, bytes]:
    initial = _hkdf_extract(INITIAL_SALT_V1, dcid)
    secret = _hkdf_expand_label(initial, "client in" if client else "server in", 32)
    return (_hkdf_expand_label(secret, "quic key", 16), _hkdf_expand_label(secret, "quic iv", 12),
            _hkdf_expand_label(secret, "quic hp", 16))


def _varint(v: int) -> bytes:
    if v < 0x40:
        return bytes([v])
    if v < 0x4000:
        return struct.pack("!H", 0x4000 | v)
    if v < 0x40000000:
        return struct.pack("!I", 0x80000000 | v)
    return struct.pack("!Q", 0xC000000000000000 | v)


def _read_varint(b: bytes, off: int) -> tuple[int, int]:
    first = b[off]
    n = 1 << (first >> 6)
    v = first & 0x3F
    for i in range(1, n):
        v = (v << 8) | b[off + i]
    return v, off + n


def _ext(etype: int, data: bytes) -> bytes:
    return struct.pack("!HH", etype, len(data)) + data


def build_client_hello(sni: str, alpn: str = "h3", scid: bytes = b"") -> bytes:
    """A TLS 1.3 ClientHello handshake message (with the 4-byte header) for QUIC."""
    pub = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    name = sni.encode()
    tp = b""
    for pid, val in ((0x04, 1048576), (0x05, 262144), (0x06, 262144), (0x07, 262144),
                     (0x08, 100), (0x09, 100), (0x01, 30000)):
        enc = _varint(val)
        tp += _varint(pid) + _varint(len(enc)) + enc
    tp += _varint(0x0F) + _varint(len(scid)) + scid  # initial_source_connection_id
    exts = b"".join([
        _ext(0, struct.pack("!HBH", len(name) + 3, 0, len(name)) + name),
        _ext(10, struct.pack("!HHHH", 6, 0x001D, 0x0017, 0x0018)),
        _ext(13, struct.pack("!H", 8) + struct.pack("!HHHH", 0x0403, 0x0804, 0x0401, 0x0503)),
        _ext(16, struct.pack("!H", len(alpn) + 1) + bytes([len(alpn)]) + alpn.encode()),
        _ext(43, b"\x02\x03\x04"),
        _ext(45, b"\x01\x01"),
        _ext(51, struct.pack("!HHH", 36, 0x001D, 32) + pub),
        _ext(0x39, tp),
    ])
    body = (b"\x03\x03" + os.urandom(32) + b"\x00" + struct.pack("!H", 6)
            + struct.pack("!HHH", 0x1301, 0x1302, 0x1303) + b"\x01\x00"
            + struct.pack("!H", len(exts)) + exts)
    return b"\x01" + len(body).to_bytes(3, "big") + body


def _hp_mask(hp_key: bytes, sample: bytes) -> bytes:
    enc = Cipher(algorithms.AES(hp_key), modes.ECB()).encryptor()
    return enc.update(sample) + enc.finalize()


def build_initial(sni: str, dcid: bytes | None = None, scid: bytes | None = None,
                  pn: int = 0, min_size: int = 1200, client_hello: bytes | None = None
                  ) -> bytes:
    """A complete, encrypted, header-protected QUIC v1 client Initial datagram.

    Pass the same ``client_hello`` (and dcid/scid) with a new ``pn`` for a retransmission."""
    dcid = dcid if dcid is not None else os.urandom(8)
    scid = scid if scid is not None else os.urandom(8)
    ch = client_hello if client_hello is not None else build_client_hello(sni, scid=scid)
    frames = b"\x06" + _varint(0) + _varint(len(ch)) + ch
    pn_len = 4
    first = 0xC0 | (pn_len - 1)
    hdr_wo_len = (bytes([first]) + struct.pack("!I", 1) + bytes([len(dcid)]) + dcid
                  + bytes([len(scid)]) + scid + _varint(0))
    # pad the plaintext so the whole datagram reaches min_size
    overhead = len(hdr_wo_len) + 2 + pn_len + 16
    if overhead + len(frames) < min_size:
        frames += b"\x00" * (min_size - overhead - len(frames))
    length = pn_len + len(frames) + 16
    header = hdr_wo_len + struct.pack("!H", 0x4000 | length) + pn.to_bytes(pn_len, "big")
    key, iv, hp = initial_keys(dcid)
    nonce = bytes(a ^ b for a, b in zip(iv, pn.to_bytes(12, "big")))
    ct = AESGCM(key).encrypt(nonce, frames, header)
    pn_off = len(header) - pn_len
    mask = _hp_mask(hp, ct[4 - pn_len: 4 - pn_len + 16])
    h = bytearray(header)
    h[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        h[pn_off + i] ^= mask[1 + i]
    return bytes(h) + ct


def decrypt_initial(datagram: bytes) -> bytes | None:
    """Decrypt a client Initial; returns the reassembled CRYPTO stream bytes (or None)."""
    try:
        if len(datagram) < 7 or not datagram[0] & 0x80 or (datagram[0] & 0x30) != 0:
            return None
        if struct.unpack_from("!I", datagram, 1)[0] != 1:
            return None
        off = 5
        dcid = datagram[off + 1: off + 1 + datagram[off]]
        off += 1 + datagram[off]
        off += 1 + datagram[off]
        tok_len, off = _read_varint(datagram, off)
        off += tok_len
        length, off = _read_varint(datagram, off)
        pn_off = off
        key, iv, hp = initial_keys(dcid)
        mask = _hp_mask(hp, datagram[pn_off + 4: pn_off + 20])
        first = datagram[0] ^ (mask[0] & 0x0F)
        pn_len = (first & 0x03) + 1
        pn_bytes = bytes(datagram[pn_off + i] ^ mask[1 + i] for i in range(pn_len))
        header = bytes([first]) + datagram[1:pn_off] + pn_bytes
        ct = datagram[pn_off + pn_len: pn_off + length]
        nonce = bytes(a ^ b for a, b in zip(iv, int.from_bytes(pn_bytes, "big").to_bytes(12, "big")))
        plain = AESGCM(key).decrypt(nonce, ct, header)
    except Exception:
        return None
    chunks: dict[int, bytes] = {}
    p = 0
    try:
        while p < len(plain):
            ftype = plain[p]
            if ftype == 0x00 or ftype == 0x01:
                p += 1
            elif ftype == 0x06:
                o, p = _read_varint(plain, p + 1)
                n, p = _read_varint(plain, p)
                chunks[o] = plain[p: p + n]
                p += n
            else:
                break
    except IndexError:
        pass
    stream, pos = b"", 0
    for o in sorted(chunks):
        if o != pos:
            break
        stream += chunks[o]
        pos += len(chunks[o])
    return stream


def initial_sni(datagram: bytes) -> ClientHelloInfo | None:
    stream = decrypt_initial(datagram)
    if not stream or stream[0] != 0x01 or len(stream) < 4:
        return None
    n = int.from_bytes(stream[1:4], "big")
    return parse_client_hello_body(stream[4: 4 + n])
