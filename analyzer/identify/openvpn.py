"""OpenVPN over UDP and TCP, recognised from the control-channel packet layout.

Wire format (OpenVPN ``ssl_pkt.h`` / Wireshark ``packet-openvpn.c``)
--------------------------------------------------------------------
``byte0 = opcode << 3 | key_id``.  Opcodes: 1 P_CONTROL_HARD_RESET_CLIENT_V1,
2 P_CONTROL_HARD_RESET_SERVER_V1, 3 P_CONTROL_SOFT_RESET_V1, 4 P_CONTROL_V1, 5 P_ACK_V1,
6 P_DATA_V1, 7 P_CONTROL_HARD_RESET_CLIENT_V2, 8 P_CONTROL_HARD_RESET_SERVER_V2,
9 P_DATA_V2, 10 P_CONTROL_HARD_RESET_CLIENT_V3, 11 P_CONTROL_WKC_V1.
Control packets: 8-byte session id; then, depending on the configuration,

* plain:       ack-count(1) [ack ids 4*n, remote session id 8 if n>0] message-packet-id(4)
* tls-auth:    HMAC (16/20/28/32/48/64 bytes by digest) + replay packet-id(4) + time(4),
               then the plain layout
* tls-crypt(-v2): replay packet-id(4) + time(4) + 32-byte tag, then the plain layout
               encrypted (and, for CLIENT_V3, the wrapped client key appended).

Over TCP every packet carries a 2-byte big-endian length prefix.

Rules
-----
* The client's first packet (the first packet of the first segment over TCP, where the
  prefix must equal the packet length and packets must tile the segment) must be a
  client hard reset (opcode 1, 7 or 10) with key id 0 and a non-zero session id, and one
  of the three layouts must parse with: ack count 0 and message packet-id 0 (nothing can be
  acknowledged yet), replay packet-id 1..64 and a time between 2004 and 2106, at most a
  short trailer (early-negotiation TLV) after it (V3 may carry a wrapped key).
  Random bytes pass this with probability ~ 3/256 * 2^-40 (plain) or ~2^-30 (tls-crypt).
* Consistency (raises confidence; Xue et al. call this the opcode fingerprint): further
  client packets carry the same session id and control/ack opcodes (3, 4, 5), the server's
  first packet is a server hard reset (2/8).
* ACK fingerprint (Xue et al., "OpenVPN is Open to VPN Fingerprinting", USENIX Security
  2022): P_ACK_V1 packets carry nothing but acks, so within one session they mostly have
  one size (it changes only with the number of acks carried).  With decodable payloads we
  check that >= 2 of the client's opcode-5 packets share a size and count how often that
  size occurs in ``client_sizes`` during the handshake.  The paper's detector bins the
  first 100 packets and counts ACK-sized packets per bin; FlowFacts only keeps the first
  packets, so we report the observation as a supporting reason (+0.02), not on its own.
* ``handshake_answered``: True when a server packet is a HARD_RESET_SERVER (opcode 2/8, key
  id 0) that either echoes the client's session id as remote session id (plain/tls-auth)
  or, under tls-crypt where the ack is encrypted, has the right layout; False when the
  client's reset is present and the server sent nothing; else None.
* Mid-flow captures (no client reset, e.g. the capture started after the handshake or the
  roles look reversed) are recognised with confidence 0.7 only when one direction has at
  least two distinct control packets with the same random-looking session id (<= 2 zero
  bytes, >= 4 distinct byte values) and either the other direction echoes that id after its
  own session id, or two of those packets carry acks naming the same random-looking peer
  session id (plain/tls-auth layouts; one-directional captures).  Repeated identical datagrams (DNS/LLMNR
  retransmissions, whose header can look like opcode+session id) do not count.
* Random UDP on 1194 fails all of the above; the port alone is never used here.

Sources: OpenVPN source (``ssl_pkt.h``, ``reliable.c``, ``tls_crypt.c``), Wireshark's
OpenVPN dissector, nDPI ``protocols/openvpn.c`` (which also matches the echoed session id),
Xue et al. USENIX Security 2022.

Known false positives: none known for the full client-reset parse.  The mid-flow rule needs
an 8-byte value repeated in one direction and echoed by the other; a protocol that echoes
a random 8-byte token after an opcode-like first byte could match (none seen; an earlier,
weaker version matched DNS and LLMNR retransmissions in nDPI's 1kxun.pcap).  Obfuscated OpenVPN (XOR patch, obfsproxy, stunnel, OpenVPN over
TLS/SSH) is not recognised, it becomes fep/tls/other.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

P_CONTROL_HARD_RESET_CLIENT_V1: Final = 1
P_CONTROL_HARD_RESET_SERVER_V1: Final = 2
P_CONTROL_SOFT_RESET_V1: Final = 3
P_CONTROL_V1: Final = 4
P_ACK_V1: Final = 5
P_DATA_V1: Final = 6
P_CONTROL_HARD_RESET_CLIENT_V2: Final = 7
P_CONTROL_HARD_RESET_SERVER_V2: Final = 8
P_DATA_V2: Final = 9
P_CONTROL_HARD_RESET_CLIENT_V3: Final = 10
P_CONTROL_WKC_V1: Final = 11

CLIENT_RESETS: Final = frozenset({P_CONTROL_HARD_RESET_CLIENT_V1, P_CONTROL_HARD_RESET_CLIENT_V2,
                           P_CONTROL_HARD_RESET_CLIENT_V3})
SERVER_RESETS: Final = frozenset({P_CONTROL_HARD_RESET_SERVER_V1, P_CONTROL_HARD_RESET_SERVER_V2})
CONTROL_OPCODES: Final = frozenset({1, 2, 3, 4, 5, 7, 8, 10, 11})
_RESETS: Final = SERVER_RESETS | CLIENT_RESETS
_CLIENT_RESET_BYTES: Final = frozenset(op << 3 for op in CLIENT_RESETS)  # opcode << 3 | key id 0
HMAC_SIZES: Final = (16, 20, 28, 32, 48, 64)  # MD5, SHA1, SHA224, SHA256, SHA384, SHA512
TLS_CRYPT_TAG: Final = 32
MIN_TIME: Final = 0x3FF36300  # 2004-01-01
MAX_REPLAY_ID: Final = 64
MAX_TRAILER: Final = 64  # early-negotiation TLV etc. after a client reset (V1/V2)
MAX_V3_TRAILER: Final = 2048  # wrapped client key (tls-crypt-v2)

OPCODE_NAMES: Final = {
    1: "HARD_RESET_CLIENT_V1", 2: "HARD_RESET_SERVER_V1", 3: "SOFT_RESET_V1",
    4: "CONTROL_V1", 5: "ACK_V1", 6: "DATA_V1", 7: "HARD_RESET_CLIENT_V2",
    8: "HARD_RESET_SERVER_V2", 9: "DATA_V2", 10: "HARD_RESET_CLIENT_V3", 11: "WKC_V1",
}


@dataclass(frozen=True, slots=True)
class Reset:
    opcode: int
    session_id: bytes
    wrapping: str  # "plain", "tls-auth/<hmac bytes>", "tls-crypt"
    remote_session_id: Optional[bytes] = None  # server resets, when visible


def opcode_of(packet: bytes) -> tuple[int, int]:
    return packet[0] >> 3, packet[0] & 0x07


def _plain_tail(body: bytes, server: bool, client_sid: Optional[bytes]) -> Optional[bytes]:
    """Check ``ack-count [acks remote-sid] msg-pid [trailer]``; return remote sid or b""."""
    if not body:
        return None
    n = body[0]
    if not server:
        if n != 0 or len(body) < 5 or body[1:5] != b"\x00\x00\x00\x00":
            return None
        return b""
    if not 1 <= n <= 8:
        return None
    end = 1 + 4 * n + 8 + 4
    if len(body) < end:
        return None
    remote = body[1 + 4 * n:1 + 4 * n + 8]
    if client_sid is not None and remote != client_sid:
        return None
    if body[end - 4:end] != b"\x00\x00\x00\x00":
        return None
    return remote


def _replay_ok(b: bytes) -> bool:
    if len(b) < 8:
        return False
    pid = int.from_bytes(b[0:4], "big")
    t = int.from_bytes(b[4:8], "big")
    return 1 <= pid <= MAX_REPLAY_ID and t >= MIN_TIME


def parse_reset(packet: bytes, server: bool = False,
                client_sid: Optional[bytes] = None) -> Optional[Reset]:
    """Parse a hard-reset packet (no TCP length prefix). ``server`` selects server resets."""
    if len(packet) < 14:
        return None
    op, key = opcode_of(packet)
    if key != 0 or op not in (SERVER_RESETS if server else CLIENT_RESETS):
        return None
    sid = packet[1:9]
    if sid == b"\x00" * 8:
        return None
    rest = packet[9:]
    max_trailer = MAX_V3_TRAILER if op == P_CONTROL_HARD_RESET_CLIENT_V3 else MAX_TRAILER

    def tail_len_ok(consumed: int) -> bool:
        return len(rest) - consumed <= max_trailer

    # plain (no tls-auth / tls-crypt); V3 always uses tls-crypt-v2
    if op != P_CONTROL_HARD_RESET_CLIENT_V3:
        remote = _plain_tail(rest, server, client_sid)
        if remote is not None:
            used = 5 if not server else 1 + 4 * rest[0] + 12
            if tail_len_ok(used):
                return Reset(op, sid, "plain", remote or None)
        # tls-auth
        for h in HMAC_SIZES:
            if len(rest) < h + 8 + 5 or not _replay_ok(rest[h:h + 8]):
                continue
            remote = _plain_tail(rest[h + 8:], server, client_sid)
            if remote is None:
                continue
            used = h + 8 + (5 if not server else 1 + 4 * rest[h + 8] + 12)
            if tail_len_ok(used):
                return Reset(op, sid, f"tls-auth/{h}", remote or None)
    # tls-crypt / tls-crypt-v2: replay id + time in clear, then tag + encrypted body
    if len(rest) >= 8 + TLS_CRYPT_TAG + 5 and _replay_ok(rest[0:8]):
        enc = len(rest) - 8 - TLS_CRYPT_TAG
        if enc <= (max_trailer + 5 if not server else 1 + 4 * 8 + 12 + MAX_TRAILER):
            return Reset(op, sid, "tls-crypt")
    return None


def split_tcp(segment: bytes) -> tuple[list[bytes], bool]:
    """Split a TCP segment into OpenVPN packets; bool says the packets tile it exactly."""
    out: list[bytes] = []
    off = 0
    while off + 2 <= len(segment):
        n = int.from_bytes(segment[off:off + 2], "big")
        if n == 0:
            return out, False
        if off + 2 + n > len(segment):
            return out, False
        out.append(segment[off + 2:off + 2 + n])
        off += 2 + n
    return out, off == len(segment)


def packets(payloads: tuple[bytes, ...], tcp: bool, limit: int = 16) -> list[bytes]:
    """OpenVPN packets of one direction (TCP: each segment split on its own)."""
    out: list[bytes] = []
    for p in payloads[:limit]:
        if not p:
            continue
        if tcp:
            out.extend(split_tcp(p)[0])
        else:
            out.append(p)
    return out


def _same_session(pkts: list[bytes], sid: bytes) -> list[int]:
    """Opcodes of packets that are control packets of session ``sid``."""
    ops = []
    for p in pkts:
        if len(p) >= 9:
            op, key = opcode_of(p)
            if op in CONTROL_OPCODES and p[1:9] == sid:
                ops.append(op)
    return ops


def ack_fingerprint(client_pkts: list[bytes], sid: bytes,
                    client_sizes: tuple[int, ...], tcp: bool) -> Optional[str]:
    """Xue et al. ACK fingerprint: P_ACK_V1 packets of one size early in the handshake.

    The most common size among the client's decoded P_ACK_V1 packets of this session must
    account for >= 2 of them; the reason also says how often that size (plus the 2-byte
    length prefix on TCP) occurs among the first recorded client packet sizes.
    """
    sizes = [len(p) for p in client_pkts
             if len(p) >= 9 and opcode_of(p)[0] == P_ACK_V1 and p[1:9] == sid]
    if len(sizes) < 2:
        return None
    common, k = Counter(sizes).most_common(1)[0]
    if k < 2:
        return None
    wire = common + 2 if tcp else common
    early = [s for s in client_sizes if s > 0]
    recur = sum(1 for s in early if s == wire)
    return (f"{k} of {len(sizes)} P_ACK_V1 packets share size {common}; that size is "
            f"{recur} of the first {len(early)} client packets (ACK fingerprint, Xue et al. "
            "2022)")


def _answered(server_pkts: list[bytes], sid: bytes) -> tuple[Optional[bool], Optional[str]]:
    for p in server_pkts[:8]:
        srv = parse_reset(p, server=True, client_sid=sid)
        if srv is None:
            continue
        if srv.remote_session_id == sid:
            return True, f"server {OPCODE_NAMES[srv.opcode]} echoes client session id"
        if srv.wrapping == "tls-crypt":
            return True, f"server {OPCODE_NAMES[srv.opcode]} (tls-crypt: ack encrypted)"
    return None, None


def identify_openvpn(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto not in ("udp", "tcp"):
        return None
    tcp = facts.proto == "tcp"
    first_seg = first_payload(facts.client_payloads)
    if not first_seg:
        return None
    if tcp:
        n = (first_seg[0] << 8) | first_seg[1] if len(first_seg) >= 2 else 0
        if not n or 2 + n > len(first_seg):
            return _mid_flow(facts, tcp)  # split_tcp(first_seg) would find no packet
        first_pkts, tiles = split_tcp(first_seg)
        if not first_pkts or not tiles:
            return _mid_flow(facts, tcp)
        first = first_pkts[0]
    else:
        first = first_seg
    # parse_reset's opcode/key-id test first: the first byte of most flows already fails it
    reset = parse_reset(first) if first[0] in _CLIENT_RESET_BYTES else None
    if reset is None:
        return _mid_flow(facts, tcp)
    client_pkts = packets(facts.client_payloads, tcp)
    server_pkts = packets(facts.server_payloads, tcp)
    sid = reset.session_id
    reasons = [f"client {OPCODE_NAMES[reset.opcode]}, key id 0, session id {sid.hex()}, "
               f"{reset.wrapping}" + (", 2-byte TCP length prefix" if tcp else "")]
    conf = 0.85
    ops = _same_session(client_pkts[1:], sid)
    if ops:
        conf += 0.05
        reasons.append("later client packets: " + "/".join(OPCODE_NAMES[o] for o in ops[:4])
                       + " with the same session id (opcode fingerprint)")
    if reset.opcode == P_CONTROL_HARD_RESET_CLIENT_V3:
        wkc = [p for p in client_pkts[1:] if opcode_of(p)[0] == P_CONTROL_WKC_V1]
        if wkc:
            reasons.append("P_CONTROL_WKC_V1 follows")
    answered, why = _answered(server_pkts, sid)
    if answered:
        conf += 0.05
        reasons.append(why or "server answered")
    elif not facts.server_payloads:
        answered = False
        reasons.append("no server payload")
    ack = ack_fingerprint(client_pkts, sid, facts.client_sizes, tcp)
    if ack:
        conf += 0.02
        reasons.append(ack)
    return Identification(Target.OPENVPN, "openvpn", round(min(conf, 0.97), 2), tuple(reasons),
                          answered)


def _random_sid(sid: bytes) -> bool:
    """OpenVPN session ids are 8 random bytes; reject zero-heavy/low-variety values."""
    return len(sid) == 8 and sid.count(0) <= 2 and len(set(sid)) >= 4


def _remote_sid(p: bytes, hmac: int) -> Optional[bytes]:
    """Remote session id after the ack array (plain layout, or tls-auth with ``hmac``)."""
    off = 9 + (hmac + 8 if hmac else 0)
    if len(p) <= off:
        return None
    n = p[off]
    if not 1 <= n <= 8 or len(p) < off + 1 + 4 * n + 8:
        return None
    return p[off + 1 + 4 * n:off + 9 + 4 * n]


def _consistent_remote_sid(pkts: list[bytes], sid: bytes) -> Optional[bytes]:
    """A random-looking peer session id named by the acks of >= 2 packets, if any."""
    for h in (0,) + HMAC_SIZES:
        seen = [r for r in (_remote_sid(p, h) for p in pkts) if r is not None]
        for r in set(seen):
            if seen.count(r) >= 2 and r != sid and _random_sid(r):
                return r
    return None


def _session_openers(facts: FlowFacts, tcp: bool) -> tuple[bool, bool]:
    """For the client and the server side: whether the first packet of ``packets(payloads,
    tcp)`` can open a mid-flow session, i.e. is a control packet (resets with key id 0) with a
    random-looking session id.  Looks at that packet alone, without splitting every segment:
    most flows stop here."""
    out = [False, False]
    for i, payloads in enumerate((facts.client_payloads, facts.server_payloads)):
        first = b""
        for p in payloads[:16]:
            if not tcp:
                if p:
                    first = p
                    break
                continue
            if len(p) >= 2:  # split_tcp's first packet of this segment, if it has one
                n = (p[0] << 8) | p[1]
                if n and 2 + n <= len(p):
                    first = p[2:2 + n]
                    break
        if len(first) < 14:
            continue
        op = first[0] >> 3
        if op not in CONTROL_OPCODES or (op in _RESETS and first[0] & 0x07):
            continue
        out[i] = _random_sid(first[1:9])
    return out[0], out[1]


def _mid_flow(facts: FlowFacts, tcp: bool) -> Optional[Identification]:
    """No client reset.  Accept only when one direction has >= 2 distinct control packets
    with one random-looking session id AND the other direction echoes that id after its
    own session id (ack of the peer's packets: plain or tls-auth mode)."""
    # Cheap test first: each side's first packet must be able to start a session (the first
    # of the distinct packets below is the first packet).
    client_ok, server_ok = _session_openers(facts, tcp)
    if not client_ok and not server_ok:
        return None
    client_pkts = packets(facts.client_payloads, tcp)
    server_pkts = packets(facts.server_payloads, tcp)
    for side, ok, pkts, other in (("client", client_ok, client_pkts, server_pkts),
                                  ("server", server_ok, server_pkts, client_pkts)):
        if not ok:
            continue
        distinct = list(dict.fromkeys(pkts))
        if len(distinct) < 2:
            continue
        p0 = distinct[0]
        op = opcode_of(p0)[0]
        sid = p0[1:9]
        ops = _same_session(distinct[1:8], sid)
        if not ops:
            continue
        echo = any(len(q) >= 22 and opcode_of(q)[0] in CONTROL_OPCODES and q[1:9] != sid
                   and _random_sid(q[1:9]) and sid in q[9:] for q in other[:8])
        peer = None if echo else _consistent_remote_sid(
            [p for p in distinct[:8] if p[1:9] == sid], sid)
        if not echo and peer is None:
            continue
        first_reset = ""
        if side == "client" and parse_reset(p0, server=True) is not None:
            first_reset = " (flow starts with a server reset: client's packets missing " \
                          "or roles reversed)"
        reasons = (f"{side} control packets {OPCODE_NAMES[op]}/"
                   + "/".join(OPCODE_NAMES[o] for o in ops[:3])
                   + f" share session id {sid.hex()}{first_reset}",
                   "the other direction acknowledges that session id" if echo else
                   f"its acks name the same peer session id {peer.hex() if peer else ''}",
                   "no client hard reset seen (mid-flow)")
        return Identification(Target.OPENVPN, "openvpn", 0.7, reasons, None)
    return None
