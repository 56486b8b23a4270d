"""Fully encrypted proxies (Shadowsocks, VMess, obfs4, ...): the GFW's exemption rules.

Wu et al., "How the Great Firewall of China Detects and Blocks Fully Encrypted Traffic"
(USENIX Security 2023) found that the GFW blocks a TCP connection when the client's FIRST
data packet looks random, and that it *exempts* the packet when any of these holds:

* Ex1: the average number of set bits per byte (popcount / length) is <= 3.4 or >= 4.6
  (random data averages 4.0);
* Ex2: the first six bytes are all printable ASCII (0x20..0x7e);
* Ex3: more than 50% of the bytes are printable ASCII;
* Ex4: more than 20 contiguous bytes are printable ASCII;
* Ex5: the first bytes match the TLS or HTTP fingerprint (TLS: ``[\\x16-\\x17] \\x03
  [\\x00-\\x09]``; HTTP: a request method such as ``GET ``/``PUT ``/``POST``/``HEAD``).

Rules here
----------
* TCP only, client's first non-empty payload, and at least ``MIN_LENGTH`` = 16 bytes.
  Why 16: the shortest Shadowsocks first packets are a legacy stream-cipher IV (8..16
  bytes) + a 7-byte target address, AEAD ones are >= 50 bytes; below 16 bytes the popcount
  average of random data is too noisy (standard deviation ~0.35 bits) for Ex1 to mean
  anything, and short binary protocol messages are common.  The paper's measurements used
  longer probes; 16 is our choice.
* Not exempt by Ex1..Ex5 -> target SHADOWSOCKS, app ``fep``, confidence 0.5; reasons list
  the measured values.  Random-looking bytes on TCP are NOT proof of Shadowsocks: VMess,
  obfs4, Trojan-without-TLS, MTProto (Telegram obfuscated), BitTorrent MSE/PE, some game and
  proprietary protocols and compressed/encrypted application payloads look the same.
  Exempt -> not claimed (the flow falls through to the other rules).
* ``handshake_answered`` None: a fully encrypted protocol has no recognisable handshake
  reply.
* Only a payload that can be the connection's first data is judged: the SYN must have been
  captured (``FlowFacts.handshake_seen``).  Before that field existed: (a) When the producer
  records empty packets in ``client_sizes`` (the FlowFacts contract: "incl. empty ACKs as
  0") and the first recorded client packet already carries data, the capture began
  mid-connection (TCP Fast Open SYN+data is skipped by this too).  (b) When the "client"
  sends from a port below 1024 to a port >= 1024, the roles are reversed, which happens when
  the tracker saw no handshake.  nDPI's 1kxun.pcap has such a flow: a 1460-byte segment
  from the middle of a TLS stream, sent from port 443, that would otherwise pass as random.
  When sizes carry no zeros (a producer that only records payload packets), only (b) helps.
* This runs after the target-specific and generic (TLS/HTTP/QUIC) rules.

Sources: Wu, Wang, Reddy, Shen, Bock, Houmansadr, Wang, Fifield, "How the Great Firewall of
China Detects and Blocks Fully Encrypted Traffic", USENIX Security 2023, §4 (Algorithm 1);
Shadowsocks SIP022/AEAD spec; nDPI trace ``shadowsocks.pcap`` (nDPI labels the SS flow
"Unknown").

Known false positives: see above (any high-entropy first packet).  Known false negatives:
Shadowsocks implementations that adopted the paper's countermeasures (printable prefix,
popcount shaping, e.g. shadowsocks-rust ``--prefix`` or Outline's prefix feature).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

MIN_LENGTH: Final = 16
POPCOUNT_LOW: Final = 3.4
POPCOUNT_HIGH: Final = 4.6
_TLS_FIRST: Final = frozenset({0x16, 0x17})
_HTTP_PREFIXES: Final = (b"GET ", b"PUT ", b"POST", b"HEAD")  # the paper's list; others pass Ex2


def _printable(b: int) -> bool:
    return 0x20 <= b <= 0x7E


@dataclass(frozen=True, slots=True)
class Exemption:
    """Measurements on a first packet and the first exemption rule that applies, if any."""

    popcount: float
    printable_fraction: float
    longest_printable_run: int
    rule: Optional[str]  # "Ex1".."Ex5", or None when not exempt


def evaluate(data: bytes) -> Exemption:
    """Apply Ex1..Ex5 (Wu et al. 2023) to ``data`` (must be non-empty)."""
    n = len(data)
    popcount = sum(bin(b).count("1") for b in data) / n
    printable = sum(1 for b in data if _printable(b))
    run = best = 0
    for b in data:
        if _printable(b):
            run += 1
            best = max(best, run)
        else:
            run = 0
    frac = printable / n
    rule: Optional[str] = None
    if popcount <= POPCOUNT_LOW or popcount >= POPCOUNT_HIGH:
        rule = "Ex1"
    elif n >= 6 and all(_printable(b) for b in data[:6]):
        rule = "Ex2"
    elif frac > 0.5:
        rule = "Ex3"
    elif best > 20:
        rule = "Ex4"
    elif (len(data) >= 3 and data[0] in _TLS_FIRST and data[1] == 0x03 and data[2] <= 0x09) \
            or data.startswith(_HTTP_PREFIXES):
        rule = "Ex5"
    return Exemption(popcount, frac, best, rule)


def identify_fep(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "tcp":
        return None
    first = first_payload(facts.client_payloads)
    if len(first) < MIN_LENGTH:
        return None
    if not facts.handshake_seen:
        return None  # no SYN captured: the first payload seen may be from mid-stream
    if 0 in facts.client_sizes and facts.client_sizes[0] > 0:
        return None  # empty packets are recorded, yet none preceded the data: mid-stream
    if facts.client_port < 1024 <= facts.server_port:
        return None  # "client" sends from a service port: roles reversed, mid-stream capture
    ex = evaluate(first)
    if ex.rule is not None:
        return None
    reasons = (
        f"client's first payload ({len(first)} bytes) looks random: popcount/byte "
        f"{ex.popcount:.2f} in (3.4, 4.6), {ex.printable_fraction:.0%} printable, longest "
        f"printable run {ex.longest_printable_run}, no TLS/HTTP prefix "
        "(not exempt under Wu et al. 2023 Ex1-Ex5)",
        "random-looking TCP is consistent with Shadowsocks but not proof of it",
    )
    return Identification(Target.SHADOWSOCKS, "fep", 0.5, reasons, None)
