"""WireGuard, recognised from its four fixed message layouts (UDP only).

Wire format (WireGuard whitepaper §5.4, Linux ``drivers/net/wireguard/messages.h``)
--------------------------------------------------------------------------------
Every message starts with a type byte and three zero reserved bytes.

* 1 handshake initiation, exactly 148 bytes: sender index(4) ephemeral(32)
  encrypted static(48) encrypted timestamp(28) mac1(16) mac2(16)
* 2 handshake response, exactly 92 bytes: sender index(4) receiver index(4) ephemeral(32)
  encrypted nothing(16) mac1(16) mac2(16)
* 3 cookie reply, exactly 64 bytes: receiver index(4) nonce(24) encrypted cookie(32)
* 4 transport data, >= 32 bytes: receiver index(4) counter(8 LE) encrypted packet; the
  plaintext is padded to a multiple of 16 and carries a 16-byte tag, so
  ``(len - 16) % 16 == 0``.

Rules
-----
* Client's first datagram is an initiation (type 1, zero reserved, 148 bytes, non-zero
  sender index) -> WireGuard 0.9.  (Random data: 2^-32 for the first four bytes, times the
  exact length.)
* ``handshake_answered`` True when a server datagram is a response (92 bytes) whose receiver
  index (bytes 8..12) equals the sender index (bytes 4..8) of any client initiation
  (clients retry with a new index every 5 s), or a cookie reply (64 bytes) addressed to
  such an index (server under load); False when initiations are present and the server
  sent nothing; None otherwise.
* Mid-flow (capture started after the handshake): at least two client transport messages
  with the same receiver index, consistent sizes and increasing counters -> 0.75; a
  single one -> not claimed.
* 148 bytes with a non-zero reserved byte, or random UDP to 51820, do not match.

Sources: WireGuard whitepaper (Donenfeld, NDSS 2017) §5.4; Wireshark ``packet-wg.c``
heuristics (same type/reserved/length checks); nDPI ``protocols/wireguard.c`` (also tracks
the sender/receiver index pair).

Known false positives: other protocols that begin with ``01 00 00 00`` and happen to send
148-byte datagrams; amnezia-wg and other obfuscated forks change the header and are not
recognised (they may become ``fep``-like unknown UDP, which we do not classify).
"""
from __future__ import annotations

from typing import Final, Optional

from analyzer.model import FlowFacts, Identification, Target

INITIATION: Final = 1
RESPONSE: Final = 2
COOKIE_REPLY: Final = 3
TRANSPORT: Final = 4
SIZES: Final = {INITIATION: 148, RESPONSE: 92, COOKIE_REPLY: 64}
_TRANSPORT_HEADER: Final = bytes([TRANSPORT, 0, 0, 0])  # type + reserved, as message_type wants them
_NAMES: Final = {INITIATION: "initiation", RESPONSE: "response", COOKIE_REPLY: "cookie reply",
          TRANSPORT: "transport data"}


def message_type(data: bytes) -> Optional[int]:
    """WireGuard message type when ``data`` has a valid header and size, else None."""
    if len(data) < 4 or data[1:4] != b"\x00\x00\x00" or not 1 <= data[0] <= 4:
        return None
    t = data[0]
    if t == TRANSPORT:
        return t if len(data) >= 32 and (len(data) - 16) % 16 == 0 else None
    return t if len(data) == SIZES[t] else None


def sender_index(initiation: bytes) -> bytes:
    return initiation[4:8]


def _transport_run(pkts: list[bytes]) -> Optional[bytes]:
    """Receiver index shared by >= 2 transport messages with increasing counters."""
    tr = [p for p in pkts if p[:4] == _TRANSPORT_HEADER and message_type(p) == TRANSPORT]
    if len(tr) < 2:
        return None
    idx = tr[0][4:8]
    counters = [int.from_bytes(p[8:16], "little") for p in tr if p[4:8] == idx]
    if len(counters) < 2 or any(b <= a for a, b in zip(counters, counters[1:])):
        return None
    if counters[-1] - counters[0] > 1 << 20:
        return None
    return idx


def identify_wireguard(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "udp" or not facts.client_payloads:
        return None
    client = [p for p in facts.client_payloads[:16] if p]
    if not client:
        return None
    first = client[0]
    if message_type(first) == INITIATION and sender_index(first) != b"\x00\x00\x00\x00":
        server = [p for p in facts.server_payloads[:16] if p]
        senders = {sender_index(p) for p in client if message_type(p) == INITIATION}
        reasons = [f"148-byte handshake initiation, sender index {sender_index(first).hex()}"]
        if len(senders) > 1:
            reasons.append(f"{len(senders)} initiations (retries)")
        answered: Optional[bool] = None
        for p in server:
            t = message_type(p)
            if t == RESPONSE and p[8:12] in senders:
                answered = True
                reasons.append("92-byte response's receiver index matches the initiator's "
                               "sender index")
                break
            if t == COOKIE_REPLY and p[4:8] in senders:
                answered = True
                reasons.append("cookie reply (server under load) for the initiator's index")
                break
        if answered is None and not facts.server_payloads:
            answered = False
            reasons.append("no server datagram")
        conf = 0.95 if answered else 0.9
        return Identification(Target.WIREGUARD, "wireguard", conf, tuple(reasons), answered)
    # Mid-flow: transport data only.
    idx = _transport_run(client)
    if idx is not None:
        mid = [f"transport data messages with receiver index {idx.hex()} and increasing "
               "counters", "no handshake seen (mid-flow)"]
        if _transport_run([p for p in facts.server_payloads[:16] if p]) is not None:
            mid.append("server sends transport data too")
        return Identification(Target.WIREGUARD, "wireguard", 0.75, tuple(mid), None)
    return None
