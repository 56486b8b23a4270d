"""Tests for analyzer.decode.quic: RFC 9001 / RFC 9369 test vectors, synthetic Initials built
with the RFC's packet protection, hostile datagrams and the public QUIC captures."""
from __future__ import annotations

import random
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Iterator, Optional

import dpkt
import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from analyzer.decode.quic import (
    QUIC_VERSION_1,
    QUIC_VERSION_2,
    QUIC_VERSION_DRAFT_29,
    QuicCryptoAssembler,
    QuicInitial,
    decode_varint,
    derive_client_initial_keys,
    is_quic_long_header,
    parse_long_header,
    parse_quic_initial,
    quic_version,
)
from analyzer.decode.tls import parse_client_hello_handshake

CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures-public"

# --- RFC 9001 Appendix A / RFC 9369 Appendix A -----------------------------------------------

RFC_DCID = bytes.fromhex("8394c8f03e515708")

#: RFC 9001 A.2: the client's CRYPTO frame (a ClientHello for example.com), padded to 1162 bytes.
RFC_CLIENT_CRYPTO_FRAME = bytes.fromhex(
    "060040f1010000ed0303ebf8fa56f12939b9584a3896472ec40bb863cfd3e868"
    "04fe3a47f06a2b69484c00000413011302010000c000000010000e00000b6578"
    "616d706c652e636f6dff01000100000a00080006001d00170018001000070005"
    "04616c706e000500050100000000003300260024001d00209370b2c9caa47fba"
    "baf4559fedba753de171fa71f50f1ce15d43e994ec74d748002b000302030400"
    "0d0010000e0403050306030203080408050806002d00020101001c0002400100"
    "3900320408ffffffffffffffff05048000ffff07048000ffff08011001048000"
    "75300901100f088394c8f03e51570806048000ffff"
)
RFC_CLIENT_PAYLOAD = RFC_CLIENT_CRYPTO_FRAME + bytes(1162 - len(RFC_CLIENT_CRYPTO_FRAME))
RFC_V1_UNPROTECTED_HEADER = bytes.fromhex("c300000001088394c8f03e5157080000449e00000002")
RFC_V1_PROTECTED_PACKET = bytes.fromhex(
    "c000000001088394c8f03e5157080000449e7b9aec34d1b1c98dd7689fb8ec11"
    "d242b123dc9bd8bab936b47d92ec356c0bab7df5976d27cd449f63300099f399"
    "1c260ec4c60d17b31f8429157bb35a1282a643a8d2262cad67500cadb8e7378c"
    "8eb7539ec4d4905fed1bee1fc8aafba17c750e2c7ace01e6005f80fcb7df6212"
    "30c83711b39343fa028cea7f7fb5ff89eac2308249a02252155e2347b63d58c5"
    "457afd84d05dfffdb20392844ae812154682e9cf012f9021a6f0be17ddd0c208"
    "4dce25ff9b06cde535d0f920a2db1bf362c23e596d11a4f5a6cf3948838a3aec"
    "4e15daf8500a6ef69ec4e3feb6b1d98e610ac8b7ec3faf6ad760b7bad1db4ba3"
    "485e8a94dc250ae3fdb41ed15fb6a8e5eba0fc3dd60bc8e30c5c4287e53805db"
    "059ae0648db2f64264ed5e39be2e20d82df566da8dd5998ccabdae053060ae6c"
    "7b4378e846d29f37ed7b4ea9ec5d82e7961b7f25a9323851f681d582363aa5f8"
    "9937f5a67258bf63ad6f1a0b1d96dbd4faddfcefc5266ba6611722395c906556"
    "be52afe3f565636ad1b17d508b73d8743eeb524be22b3dcbc2c7468d54119c74"
    "68449a13d8e3b95811a198f3491de3e7fe942b330407abf82a4ed7c1b311663a"
    "c69890f4157015853d91e923037c227a33cdd5ec281ca3f79c44546b9d90ca00"
    "f064c99e3dd97911d39fe9c5d0b23a229a234cb36186c4819e8b9c5927726632"
    "291d6a418211cc2962e20fe47feb3edf330f2c603a9d48c0fcb5699dbfe58964"
    "25c5bac4aee82e57a85aaf4e2513e4f05796b07ba2ee47d80506f8d2c25e50fd"
    "14de71e6c418559302f939b0e1abd576f279c4b2e0feb85c1f28ff18f58891ff"
    "ef132eef2fa09346aee33c28eb130ff28f5b766953334113211996d20011a198"
    "e3fc433f9f2541010ae17c1bf202580f6047472fb36857fe843b19f5984009dd"
    "c324044e847a4f4a0ab34f719595de37252d6235365e9b84392b061085349d73"
    "203a4a13e96f5432ec0fd4a1ee65accdd5e3904df54c1da510b0ff20dcc0c77f"
    "cb2c0e0eb605cb0504db87632cf3d8b4dae6e705769d1de354270123cb11450e"
    "fc60ac47683d7b8d0f811365565fd98c4c8eb936bcab8d069fc33bd801b03ade"
    "a2e1fbc5aa463d08ca19896d2bf59a071b851e6c239052172f296bfb5e724047"
    "90a2181014f3b94a4e97d117b438130368cc39dbb2d198065ae3986547926cd2"
    "162f40a29f0c3c8745c0f50fba3852e566d44575c29d39a03f0cda721984b6f4"
    "40591f355e12d439ff150aab7613499dbd49adabc8676eef023b15b65bfc5ca0"
    "6948109f23f350db82123535eb8a7433bdabcb909271a6ecbcb58b936a88cd4e"
    "8f2e6ff5800175f113253d8fa9ca8885c2f552e657dc603f252e1a8e308f76f0"
    "be79e2fb8f5d5fbbe2e30ecadd220723c8c0aea8078cdfcb3868263ff8f09400"
    "54da48781893a7e49ad5aff4af300cd804a6b6279ab3ff3afb64491c85194aab"
    "760d58a606654f9f4400e8b38591356fbf6425aca26dc85244259ff2b19c41b9"
    "f96f3ca9ec1dde434da7d2d392b905ddf3d1f9af93d1af5950bd493f5aa731b4"
    "056df31bd267b6b90a079831aaf579be0a39013137aac6d404f518cfd4684064"
    "7e78bfe706ca4cf5e9c5453e9f7cfd2b8b4c8d169a44e55c88d4a9a7f9474241"
    "e221af44860018ab0856972e194cd934"
)
RFC_V2_UNPROTECTED_HEADER = bytes.fromhex("d36b3343cf088394c8f03e5157080000449e00000002")
RFC_V2_PROTECTED_PACKET = bytes.fromhex(
    "d76b3343cf088394c8f03e5157080000449ea0c95e82ffe67b6abcdb4298b485"
    "dd04de806071bf03dceebfa162e75d6c96058bdbfb127cdfcbf903388e99ad04"
    "9f9a3dd4425ae4d0992cfff18ecf0fdb5a842d09747052f17ac2053d21f57c5d"
    "250f2c4f0e0202b70785b7946e992e58a59ac52dea6774d4f03b55545243cf1a"
    "12834e3f249a78d395e0d18f4d766004f1a2674802a747eaa901c3f10cda5500"
    "cb9122faa9f1df66c392079a1b40f0de1c6054196a11cbea40afb6ef5253cd68"
    "18f6625efce3b6def6ba7e4b37a40f7732e093daa7d52190935b8da58976ff33"
    "12ae50b187c1433c0f028edcc4c2838b6a9bfc226ca4b4530e7a4ccee1bfa2a3"
    "d396ae5a3fb512384b2fdd851f784a65e03f2c4fbe11a53c7777c023462239dd"
    "6f7521a3f6c7d5dd3ec9b3f233773d4b46d23cc375eb198c63301c21801f6520"
    "bcfb7966fc49b393f0061d974a2706df8c4a9449f11d7f3d2dcbb90c6b877045"
    "636e7c0c0fe4eb0f697545460c806910d2c355f1d253bc9d2452aaa549e27a1f"
    "ac7cf4ed77f322e8fa894b6a83810a34b361901751a6f5eb65a0326e07de7c12"
    "16ccce2d0193f958bb3850a833f7ae432b65bc5a53975c155aa4bcb4f7b2c4e5"
    "4df16efaf6ddea94e2c50b4cd1dfe06017e0e9d02900cffe1935e0491d77ffb4"
    "fdf85290fdd893d577b1131a610ef6a5c32b2ee0293617a37cbb08b847741c3b"
    "8017c25ca9052ca1079d8b78aebd47876d330a30f6a8c6d61dd1ab5589329de7"
    "14d19d61370f8149748c72f132f0fc99f34d766c6938597040d8f9e2bb522ff9"
    "9c63a344d6a2ae8aa8e51b7b90a4a806105fcbca31506c446151adfeceb51b91"
    "abfe43960977c87471cf9ad4074d30e10d6a7f03c63bd5d4317f68ff325ba3bd"
    "80bf4dc8b52a0ba031758022eb025cdd770b44d6d6cf0670f4e990b22347a7db"
    "848265e3e5eb72dfe8299ad7481a408322cac55786e52f633b2fb6b614eaed18"
    "d703dd84045a274ae8bfa73379661388d6991fe39b0d93debb41700b41f90a15"
    "c4d526250235ddcd6776fc77bc97e7a417ebcb31600d01e57f32162a8560cacc"
    "7e27a096d37a1a86952ec71bd89a3e9a30a2a26162984d7740f81193e8238e61"
    "f6b5b984d4d3dfa033c1bb7e4f0037febf406d91c0dccf32acf423cfa1e70710"
    "10d3f270121b493ce85054ef58bada42310138fe081adb04e2bd901f2f13458b"
    "3d6758158197107c14ebb193230cd1157380aa79cae1374a7c1e5bbcb80ee23e"
    "06ebfde206bfb0fcbc0edc4ebec309661bdd908d532eb0c6adc38b7ca7331dce"
    "8dfce39ab71e7c32d318d136b6100671a1ae6a6600e3899f31f0eed19e3417d1"
    "34b90c9058f8632c798d4490da4987307cba922d61c39805d072b589bd52fdf1"
    "e86215c2d54e6670e07383a27bbffb5addf47d66aa85a0c6f9f32e59d85a44dd"
    "5d3b22dc2be80919b490437ae4f36a0ae55edf1d0b5cb4e9a3ecabee93dfc6e3"
    "8d209d0fa6536d27a5d6fbb17641cde27525d61093f1b28072d111b2b4ae5f89"
    "d5974ee12e5cf7d5da4d6a31123041f33e61407e76cffcdcfd7e19ba58cf4b53"
    "6f4c4938ae79324dc402894b44faf8afbab35282ab659d13c93f70412e85cb19"
    "9a37ddec600545473cfb5a05e08d0b209973b2172b4d21fb69745a262ccde96b"
    "a18b2faa745b6fe189cf772a9f84cbfc"
)
#: RFC 9001 A.3: the server's Initial (protected with the *server* keys).
RFC_V1_SERVER_PACKET = bytes.fromhex(
    "cf000000010008f067a5502a4262b5004075c0d95a482cd0991cd25b0aac406a"
    "5816b6394100f37a1c69797554780bb38cc5a99f5ede4cf73c3ec2493a1839b3"
    "dbcba3f6ea46c5b7684df3548e7ddeb9c3bf9c73cc3f3bded74b562bfb19fb84"
    "022f8ef4cdd93795d77d06edbb7aaf2f58891850abbdca3d20398c276456cbc4"
    "2158407dd074ee"
)
#: RFC 9001 A.4: a Retry packet; A.5: a ChaCha20 short header packet.
RFC_V1_RETRY = bytes.fromhex(
    "ff000000010008f067a5502a4262b5746f6b656e04a265ba2eff4d829058fb3f0f2496ba"
)
RFC_SHORT_HEADER = bytes.fromhex("4cfe4189655e5cd55c41f69080575d7999c25a5bfb")

# --- builders ------------------------------------------------------------------------------


def varint(v: int, size: Optional[int] = None) -> bytes:
    if size is None:
        size = 1 if v < 2**6 else 2 if v < 2**14 else 4 if v < 2**30 else 8
    prefix = {1: 0, 2: 1, 4: 2, 8: 3}[size]
    return (v | (prefix << (8 * size - 2))).to_bytes(size, "big")


def crypto_frame(offset: int, data: bytes) -> bytes:
    return b"\x06" + varint(offset) + varint(len(data)) + data


def protect(
    payload: bytes,
    *,
    version: int = QUIC_VERSION_1,
    dcid: bytes = RFC_DCID,
    scid: bytes = b"",
    token: bytes = b"",
    pn: int = 0,
    pn_len: int = 4,
    keys_dcid: Optional[bytes] = None,
) -> bytes:
    """Build a protected client Initial exactly as RFC 9001 §5 describes."""
    keys = derive_client_initial_keys(keys_dcid if keys_dcid is not None else dcid, version)
    assert keys is not None
    type_bits = 0b01 if version == QUIC_VERSION_2 else 0b00
    first = 0xC0 | (type_bits << 4) | (pn_len - 1)
    length = pn_len + len(payload) + 16
    header = (
        bytes([first]) + struct.pack("!I", version)
        + bytes([len(dcid)]) + dcid + bytes([len(scid)]) + scid
        + varint(len(token)) + token + varint(length, 2) + pn.to_bytes(pn_len, "big")
    )
    nonce = (int.from_bytes(keys.iv, "big") ^ pn).to_bytes(12, "big")
    ciphertext = AESGCM(keys.key).encrypt(nonce, payload, header)
    pn_offset = len(header) - pn_len
    packet = bytearray(header + ciphertext)
    sample = bytes(packet[pn_offset + 4:pn_offset + 20])
    enc = Cipher(algorithms.AES(keys.hp), modes.ECB()).encryptor()
    mask = enc.update(sample) + enc.finalize()
    packet[0] ^= mask[0] & 0x0F
    for i in range(pn_len):
        packet[pn_offset + i] ^= mask[1 + i]
    return bytes(packet)


def pad(frames: bytes, size: int = 1162) -> bytes:
    return frames + bytes(max(0, size - len(frames)))


def big_client_hello(host: bytes = b"www.youtube.com", size: int = 1800) -> bytes:
    """A ClientHello too large for one Initial (like Chrome's with an ML-KEM key share)."""
    sni = struct.pack("!HH", 0, len(host) + 5) + struct.pack("!HBH", len(host) + 3, 0, len(host))
    sni += host
    alpn = struct.pack("!HHH", 16, 5, 3) + b"\x02h3"
    versions = struct.pack("!HHB", 43, 3, 2) + b"\x03\x04"
    exts = sni + alpn + versions
    key_share_len = size - len(exts)
    exts += struct.pack("!HH", 51, key_share_len) + bytes(key_share_len)
    body = b"\x03\x03" + bytes(32) + b"\x00" + b"\x00\x02\x13\x01" + b"\x01\x00"
    body += struct.pack("!H", len(exts)) + exts
    return b"\x01" + len(body).to_bytes(3, "big") + body


# --- key derivation vectors ----------------------------------------------------------------


def test_rfc9001_client_and_server_keys() -> None:
    client = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_1)
    assert client is not None
    assert client.secret.hex() == (
        "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea"
    )
    assert client.key.hex() == "1f369613dd76d5467730efcbe3b1a22d"
    assert client.iv.hex() == "fa044b2f42a3fd3b46fb255c"
    assert client.hp.hex() == "9f50449e04a0e810283a1e9933adedd2"
    server = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_1, server=True)
    assert server is not None
    assert server.key.hex() == "cf3a5331653c364c88f0f379b6067e37"
    assert server.iv.hex() == "0ac1493ca1905853b0bba03e"
    assert server.hp.hex() == "c206b8d9b9f0f37644430b490eeaa314"


def test_rfc9369_v2_keys() -> None:
    client = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_2)
    assert client is not None
    assert client.secret.hex() == (
        "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b"
    )
    assert client.key.hex() == "8b1a0bc121284290a29e0971b5cd045d"
    assert client.iv.hex() == "91f73e2351d8fa91660e909f"
    assert client.hp.hex() == "45b95e15235d6f45a6b19cbcb0294ba9"
    server = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_2, server=True)
    assert server is not None
    assert server.key.hex() == "82db637861d55e1d011f19ea71d5d2a7"
    assert server.iv.hex() == "dd13c276499c0249d3310652"
    assert server.hp.hex() == "edf6d05c83121201b436e16877593c3a"


def test_unknown_version_has_no_keys() -> None:
    assert derive_client_initial_keys(RFC_DCID, 0x0A0A0A0A) is None


# --- RFC sample packets --------------------------------------------------------------------


def test_builder_reproduces_rfc_packets_byte_for_byte() -> None:
    assert protect(RFC_CLIENT_PAYLOAD, pn=2) == RFC_V1_PROTECTED_PACKET
    assert protect(RFC_CLIENT_PAYLOAD, pn=2, version=QUIC_VERSION_2) == RFC_V2_PROTECTED_PACKET


@pytest.mark.parametrize(
    "packet, version",
    [(RFC_V1_PROTECTED_PACKET, QUIC_VERSION_1), (RFC_V2_PROTECTED_PACKET, QUIC_VERSION_2)],
    ids=["rfc9001-v1", "rfc9369-v2"],
)
def test_rfc_client_initial(packet: bytes, version: int) -> None:
    assert len(packet) == 1200
    initial = parse_quic_initial(packet)
    assert initial is not None
    assert initial.version == version
    assert initial.dcid == RFC_DCID
    assert initial.scid == b""
    assert initial.token_len == 0
    assert initial.packet_number == 2
    assert initial.crypto == ((0, RFC_CLIENT_CRYPTO_FRAME[4:]),)
    assert initial.frame_types == (0x06, 0x00)
    assert initial.packet_count == 1
    ch = initial.client_hello
    assert ch is not None
    assert ch.sni == "example.com"
    assert ch.alpn == ("alpn",)  # the RFC example really offers an ALPN named "alpn"
    assert ch.supported_versions == (0x0304,)
    assert ch.cipher_suites == (0x1301, 0x1302)
    assert ch == parse_client_hello_handshake(RFC_CLIENT_CRYPTO_FRAME[4:])
    assert is_quic_long_header(packet) and quic_version(packet) == version


def test_rfc_server_initial_retry_and_short_header() -> None:
    header = parse_long_header(RFC_V1_SERVER_PACKET)
    assert header is not None
    assert header.packet_type == "initial" and header.dcid == b""
    assert header.scid == bytes.fromhex("f067a5502a4262b5")
    assert parse_quic_initial(RFC_V1_SERVER_PACKET) is None  # server keys, not client keys
    retry = parse_long_header(RFC_V1_RETRY)
    assert retry is not None and retry.packet_type == "retry"
    assert parse_quic_initial(RFC_V1_RETRY) is None
    assert not is_quic_long_header(RFC_SHORT_HEADER)
    assert quic_version(RFC_SHORT_HEADER) is None
    assert parse_quic_initial(RFC_SHORT_HEADER) is None


def test_version_negotiation_packet() -> None:
    vn = b"\x80" + bytes(4) + b"\x04abcd" + b"\x04efgh" + struct.pack("!II", 1, QUIC_VERSION_2)
    header = parse_long_header(vn)
    assert header is not None and header.packet_type == "version_negotiation"
    assert quic_version(vn) == 0
    assert parse_quic_initial(vn) is None


# --- Synthetic Initials --------------------------------------------------------------------


def test_draft29_initial() -> None:
    ch = big_client_hello(b"draft29.example", size=300)
    packet = protect(pad(crypto_frame(0, ch)), version=QUIC_VERSION_DRAFT_29, scid=b"\x01\x02")
    initial = parse_quic_initial(packet)
    assert initial is not None and initial.version == QUIC_VERSION_DRAFT_29
    assert initial.client_hello is not None and initial.client_hello.sni == "draft29.example"
    assert initial.scid == b"\x01\x02"
    # The v1 salt must not open a draft-29 packet (and the other way round).
    v1 = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_1)
    d29 = derive_client_initial_keys(RFC_DCID, QUIC_VERSION_DRAFT_29)
    assert v1 is not None and d29 is not None and v1.key != d29.key


def test_token_and_short_packet_number() -> None:
    ch = big_client_hello(b"token.example", size=200)
    packet = protect(pad(crypto_frame(0, ch)), token=b"T" * 40, pn=7, pn_len=1, dcid=b"\xaa" * 20)
    initial = parse_quic_initial(packet)
    assert initial is not None
    assert initial.token_len == 40 and initial.packet_number == 7 and initial.dcid == b"\xaa" * 20
    assert initial.client_hello is not None and initial.client_hello.sni == "token.example"


def test_chrome_style_shuffled_frames_with_ping_and_padding() -> None:
    ch = big_client_hello(b"shuffled.example", size=500)
    pieces = [(0, ch[:100]), (100, ch[100:250]), (250, ch[250:])]
    frames = (
        crypto_frame(*pieces[2]) + b"\x01" + b"\x00" * 5 + crypto_frame(*pieces[0])
        + b"\x01\x01" + crypto_frame(*pieces[1])
    )
    initial = parse_quic_initial(protect(pad(frames)))
    assert initial is not None
    assert [o for o, _ in initial.crypto] == [250, 0, 100]
    assert initial.frame_types == (6, 1, 0, 6, 1, 1, 6, 0)
    assert initial.client_hello is not None and initial.client_hello.sni == "shuffled.example"


def test_ack_ecn_and_connection_close_frames() -> None:
    ch = big_client_hello(b"frames.example", size=200)
    ack = b"\x02" + varint(5) + varint(10) + varint(2) + varint(0) + varint(1) + varint(1)
    ack += varint(0) + varint(0)
    ack_ecn = b"\x03" + varint(5) + varint(0) + varint(0) + varint(0) + varint(1) * 3
    close = b"\x1c" + varint(0x0A) + varint(0x06) + varint(3) + b"bye"
    initial = parse_quic_initial(protect(pad(ack + ack_ecn + crypto_frame(0, ch) + close)))
    assert initial is not None
    assert initial.frame_types == (2, 3, 6, 0x1C, 0)
    assert initial.close_error_code == 0x0A
    assert initial.client_hello is not None and initial.client_hello.sni == "frames.example"


def test_unknown_frame_stops_parsing_but_keeps_crypto() -> None:
    ch = big_client_hello(b"stop.example", size=200)
    frames = crypto_frame(0, ch) + b"\x08" + b"\x06\x00\x05hello" + b"\x00" * 10
    initial = parse_quic_initial(protect(pad(frames)))
    assert initial is not None
    assert initial.crypto == ((0, ch),)
    assert initial.frame_types == (6,)


def test_coalesced_packets() -> None:
    ch = big_client_hello(b"coalesced.example", size=600)
    first = protect(crypto_frame(0, ch[:300]), pn=0)
    second = protect(pad(crypto_frame(300, ch[300:]), 400), pn=1)
    zero_rtt = bytes([0xD0]) + struct.pack("!I", 1) + b"\x08" + RFC_DCID + b"\x00"
    zero_rtt += varint(30, 2) + bytes(30)
    datagram = first + zero_rtt + second + bytes(50)
    initial = parse_quic_initial(datagram)
    assert initial is not None
    assert initial.packet_count == 2
    assert initial.packet_number == 0
    assert sorted(o for o, _ in initial.crypto) == [0, 300]
    assert initial.client_hello is not None and initial.client_hello.sni == "coalesced.example"
    # A coalesced Initial for another connection ID is not decrypted into this one.
    other = protect(pad(crypto_frame(300, ch[300:]), 400), pn=1, dcid=b"\x01" * 8)
    alone = parse_quic_initial(first + other)
    assert alone is not None and alone.packet_count == 1 and alone.client_hello is None


def _split_initials() -> tuple[bytes, QuicInitial, QuicInitial]:
    ch = big_client_hello(b"www.google.com", size=1900)
    one = protect(pad(crypto_frame(0, ch[:600]) + crypto_frame(1200, ch[1200:1500]), 1150), pn=0)
    two = protect(
        pad(crypto_frame(1500, ch[1500:]) + crypto_frame(600, ch[600:1200]), 1150), pn=1
    )
    a, b = parse_quic_initial(one), parse_quic_initial(two)
    assert a is not None and b is not None
    return ch, a, b


def test_assembler_across_two_initials_any_order() -> None:
    ch, one, two = _split_initials()
    assert one.client_hello is None and two.client_hello is None
    for order in ((one, two), (two, one)):
        asm = QuicCryptoAssembler()
        assert asm.add(order[0]) is None
        hello = asm.add(order[1])
        assert hello is not None
        assert hello.sni == "www.google.com" and hello.alpn == ("h3",)
        assert hello == parse_client_hello_handshake(ch)
        assert asm.client_hello == hello and asm.contiguous >= len(ch)
        # Retransmissions after completion keep returning the same hello.
        assert asm.add(order[0]) == hello


def test_assembler_overlaps_and_duplicates() -> None:
    ch = big_client_hello(b"dup.example", size=800)
    asm = QuicCryptoAssembler()
    assert asm.add_crypto(500, ch[500:]) is None
    assert asm.add_crypto(100, ch[100:700]) is None
    assert asm.add_crypto(100, ch[100:700]) is None
    assert asm.contiguous == 0
    hello = asm.add_crypto(0, ch[:150])
    assert hello is not None and hello.sni == "dup.example"


def test_assembler_is_bounded() -> None:
    ch = big_client_hello(b"huge.example", size=3000)
    small = QuicCryptoAssembler(cap=1024)
    assert small.add_crypto(0, ch) is None
    assert small.failed and small.client_hello is None
    asm = QuicCryptoAssembler()
    assert asm.add_crypto(2**61, b"x" * 100) is None
    assert asm.add_crypto(-5, b"x") is None
    assert asm.add_crypto(0, b"") is None
    assert asm.add_crypto(65535, b"y" * 10**6) is None
    assert asm.contiguous == 0 and not asm.failed
    not_hello = QuicCryptoAssembler()
    assert not_hello.add_crypto(0, b"\x02\x00\x00\x10" + bytes(16)) is None
    assert not_hello.failed


def test_many_tiny_fragments_are_cheap() -> None:
    asm = QuicCryptoAssembler()
    for off in range(1, 40000, 2):
        assert asm.add_crypto(off, b"x") is None
    assert asm.failed
    # One oversized datagram packed with 1-byte CRYPTO frames at disjoint offsets.
    frames = b"".join(crypto_frame(2 * i + 1, b"x") for i in range(2000))
    initial = parse_quic_initial(protect(frames))
    assert initial is not None and len(initial.crypto) == 2000 and initial.client_hello is None


def test_varint() -> None:
    # RFC 9000 §A.1 examples.
    assert decode_varint(bytes.fromhex("c2197c5eff14e88c"), 0) == (151288809941952652, 8)
    assert decode_varint(bytes.fromhex("9d7f3e7d"), 0) == (494878333, 4)
    assert decode_varint(bytes.fromhex("7bbd"), 0) == (15293, 2)
    assert decode_varint(bytes.fromhex("25"), 0) == (37, 1)
    assert decode_varint(bytes.fromhex("4025"), 0) == (37, 2)
    assert decode_varint(b"\xc2\x19", 0) is None
    assert decode_varint(b"", 0) is None
    assert decode_varint(b"\x01", 5) is None


# --- Hostile input -------------------------------------------------------------------------


def _all_entry_points(data: bytes) -> Optional[QuicInitial]:
    is_quic_long_header(data)
    quic_version(data)
    parse_long_header(data)
    return parse_quic_initial(data)


def test_every_truncation_of_rfc_packet() -> None:
    for i in range(len(RFC_V1_PROTECTED_PACKET)):
        assert _all_entry_points(RFC_V1_PROTECTED_PACKET[:i]) is None


def test_bit_flips_do_not_decrypt() -> None:
    rng = random.Random(9001)
    for _ in range(300):
        data = bytearray(RFC_V1_PROTECTED_PACKET)
        data[rng.randrange(1, len(data))] ^= 1 << rng.randrange(8)
        initial = _all_entry_points(bytes(data))
        # Only a flip that lands in the header-protected packet number bits of byte 0
        # could survive; everything else must fail authentication.
        assert initial is None


def test_lying_lengths() -> None:
    base = RFC_V1_PROTECTED_PACKET
    # DCID length past the end, token length past the end, Length past the end.
    assert parse_quic_initial(base[:5] + b"\xff" + base[6:40]) is None
    assert parse_quic_initial(base[:14] + b"\x00" + b"\x7f\xff" + base[17:]) is None
    assert parse_quic_initial(base[:16] + b"\x7f\xff" + base[18:]) is None
    assert parse_quic_initial(base[:16] + b"\x40\x10" + base[18:]) is None  # too short to sample
    assert parse_quic_initial(base[:14] + b"\xc0" + bytes(7) + base[15:]) is None
    # CID longer than 20 bytes is invalid in v1.
    assert parse_long_header(b"\xc0\x00\x00\x00\x01\x15" + bytes(21) + b"\x00\x00\x00") is None


def test_hostile_frames_inside_valid_protection() -> None:
    """Random plaintext behind valid packet protection exercises the frame parser."""
    rng = random.Random(1234)
    specials = [
        b"\x02" + varint(2**62 - 1, 8) * 2 + varint(2**62 - 1, 8),  # ACK with a huge range count
        b"\x06" + varint(2**62 - 1, 8) + varint(100),  # CRYPTO offset at the varint limit
        b"\x06\x00" + varint(5000, 2) + b"abc",  # CRYPTO length past the payload
        b"\x1c\x00\x00" + varint(10**6, 4),  # CONNECTION_CLOSE reason past the payload
        b"\x03\x01\x00\x00\x00\x01",  # ACK_ECN missing its counts
    ]
    for frames in specials:
        initial = parse_quic_initial(protect(pad(frames, 100)))
        assert initial is not None and initial.client_hello is None
    for i in range(1500):
        n = rng.randrange(20, 300)
        body = rng.randbytes(n)
        if i % 2:
            body = bytes([rng.choice([0, 1, 2, 3, 6, 0x1C, 0x1D])]) + body
        initial = parse_quic_initial(protect(body))
        assert initial is not None


def test_random_datagrams_never_raise() -> None:
    rng = random.Random(20250101)
    versions = [QUIC_VERSION_1, QUIC_VERSION_2, QUIC_VERSION_DRAFT_29, 0, 0x1A2A3A4A]
    for i in range(3000):
        data = rng.randbytes(rng.randrange(0, 1400))
        if i % 2:
            data = (
                bytes([0xC0 | rng.randrange(64)]) + struct.pack("!I", rng.choice(versions))
                + bytes([rng.randrange(22)]) + data
            )
        _all_entry_points(data)


def test_assembler_random_input_never_raises() -> None:
    rng = random.Random(5)
    for _ in range(300):
        asm = QuicCryptoAssembler(cap=rng.choice([0, 10, 4096, 65536]))
        for _ in range(rng.randrange(1, 10)):
            asm.add_crypto(rng.randrange(-10, 70000), rng.randbytes(rng.randrange(0, 3000)))
        asm.add_crypto(0, b"\x01" + rng.randbytes(rng.randrange(0, 200)))


# --- Public captures -----------------------------------------------------------------------

LINKTYPE_ETHERNET = 1
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276


def _capture(name: str) -> Path:
    path = CAPTURES / name
    if not path.exists():
        pytest.skip(f"public capture {name} not available")
    return path


def udp_payloads(path: Path) -> Iterator[tuple[int, bytes]]:
    """(source port, UDP payload) for every UDP datagram of the capture."""
    with path.open("rb") as fh:
        reader = dpkt.pcap.Reader(fh)
        linktype = reader.datalink()
        for _, buf in reader:
            if linktype == LINKTYPE_ETHERNET:
                frame = dpkt.ethernet.Ethernet(buf)
            elif linktype == LINKTYPE_LINUX_SLL:
                frame = dpkt.sll.SLL(buf)
            elif linktype == LINKTYPE_LINUX_SLL2:
                frame = dpkt.sll2.SLL2(buf)
            else:
                raise AssertionError(f"unexpected link type {linktype}")
            ip = frame.data
            if isinstance(ip, (dpkt.ip.IP, dpkt.ip6.IP6)) and isinstance(ip.data, dpkt.udp.UDP):
                yield ip.data.sport, bytes(ip.data.data)


def tshark_quic_snis(path: Path) -> Optional[set[str]]:
    tshark = shutil.which("tshark")
    if tshark is None:
        return None
    res = subprocess.run(
        [tshark, "-r", str(path), "-Y", "quic && tls.handshake.type == 1", "-T", "fields",
         "-e", "tls.handshake.extensions_server_name"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    return {line for line in res.stdout.splitlines() if line}


CHROMIUM = "zeek__zeek__testing__btest__Traces__quic__chromium-115.0.5790.110-api-cirrus-com.pcap"
GFW_FLOW = (
    "gfw-report__usenixsecurity25-quic-sni__experiments__flow-tracking-time__"
    "flow-tracking-time.pcap"
)


@pytest.mark.public
def test_capture_chromium_115() -> None:
    path = _capture(CHROMIUM)
    datagrams = list(udp_payloads(path))
    initial = parse_quic_initial(datagrams[0][1])
    assert initial is not None
    assert initial.version == QUIC_VERSION_1
    assert initial.dcid == bytes.fromhex("95412c47018cdfe8")
    assert initial.packet_number == 1
    # Chromium scatters the ClientHello over out-of-order CRYPTO frames.
    offsets = [o for o, _ in initial.crypto]
    assert offsets != sorted(offsets) and len(offsets) == 9
    ch = initial.client_hello
    assert ch is not None
    assert ch.sni == "api.cirrus-ci.com"
    assert ch.alpn == ("h3",)
    assert ch.supported_versions == (0x0304,)
    assert ch.extensions == (43, 10, 0, 17513, 51, 45, 27, 13, 16, 57, 41)  # tshark agrees
    assert ch.ech is False
    # Every other datagram is server-sent or short-header: no client Initial.
    client_port = datagrams[0][0]
    others = [parse_quic_initial(d) for _, d in datagrams[1:]]
    assert all(o is None for o in others)
    # The assembler, fed every client datagram, yields the same hello.
    asm = QuicCryptoAssembler()
    for port, d in datagrams:
        got = parse_quic_initial(d)
        if port == client_port and got is not None:
            asm.add(got)
    assert asm.client_hello == ch


@pytest.mark.public
def test_capture_gfw_flow_tracking() -> None:
    path = _capture(GFW_FLOW)
    datagrams = [d for _, d in udp_payloads(path)]
    assert len(datagrams) == 11
    # The first payload is the experiment's random probe, not QUIC.
    assert parse_quic_initial(datagrams[0]) is None
    initials = [parse_quic_initial(d) for d in datagrams[1:]]
    assert all(i is not None for i in initials)
    for initial in initials:
        assert initial is not None and initial.client_hello is not None
        assert initial.client_hello.sni == "google.com"
        assert initial.client_hello.alpn == ("h3",)
        assert initial.dcid == bytes.fromhex("aef9731cd9eea9c9eb6ae8d86c33")


@pytest.mark.public
@pytest.mark.parametrize("name", [CHROMIUM, GFW_FLOW])
def test_quic_captures_agree_with_tshark(name: str) -> None:
    path = _capture(name)
    expected = tshark_quic_snis(path)
    if expected is None:
        pytest.skip("tshark not installed")
    ours = set()
    for _, d in udp_payloads(path):
        initial = parse_quic_initial(d)
        if initial is not None and initial.client_hello is not None:
            ours.add(initial.client_hello.sni or "")
    assert ours == expected
