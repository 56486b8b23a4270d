"""IPsec: IKEv1/IKEv2 on UDP 500/4500, ESP (IP protocol 50), UDP-encapsulated ESP, AH.

Wire format
-----------
IKE header, 28 bytes (RFC 7296 §3.1, RFC 2408 §3.1): initiator SPI(8) responder SPI(8)
next payload(1) version(1: 0x20 IKEv2, 0x10 IKEv1) exchange type(1) flags(1)
message id(4) length(4, whole message).  On UDP 4500 (NAT traversal, RFC 3948/RFC 7296
§2.23) IKE messages are preceded by a 4-byte all-zero non-ESP marker; anything else on
4500 whose first four bytes are non-zero is UDP-encapsulated ESP (SPI(4) seq(4) ...); a
single 0xFF byte is a NAT-keepalive.

Rules
-----
* IKE: version 0x20 or 0x10; exchange type known (IKEv2: 34 IKE_SA_INIT, 35 IKE_AUTH,
  36 CREATE_CHILD_SA, 37 INFORMATIONAL; IKEv1: 1 Base, 2 Main Mode (Identity
  Protection), 4 Aggressive, 5 Informational, 32 Quick Mode); next payload plausible
  (IKEv2 33..54, IKEv1 1..21 or private 128+); length field == datagram length (minus the
  marker), or larger than a cut payload but equal to the recorded datagram size.
  - First request (IKEv2 IKE_SA_INIT with I flag and message id 0, or IKEv1 Main/Aggressive
    with message id 0): initiator SPI non-zero, responder SPI zero -> 0.95.
  - Continuation (both SPIs non-zero, e.g. NAT-T switch to 4500 mid-exchange): 0.85.
  - 0.1 less on ports other than 500/4500.
  - ``handshake_answered`` True when a server message carries the same initiator SPI and a
    non-zero responder SPI; False when the request is there and the server sent nothing.
* ESP (``facts.proto == "esp"``) and AH (``"ah"``): the IP protocol number says so -> 0.9;
  payload SPI must be >= 256 when present (1..255 are IANA-reserved).  Not a handshake:
  ``handshake_answered`` None.
* UDP-encapsulated ESP on 4500 without IKE in view: non-zero SPI >= 256 and a sequence
  number; 0.8 when two client packets share the SPI with increasing sequence numbers,
  0.6 for one.

Sources: RFC 7296 (IKEv2), RFC 2408/2409 (ISAKMP/IKEv1), RFC 3947/3948 (NAT-T, UDP
encapsulation), RFC 4303 (ESP), IANA IKEv2 parameters; Wireshark ``isakmp`` and ``udpencap``
dissectors; tcpdump ``isakmp4500`` test trace.

Known false positives: other UDP/500 traffic that happens to have 0x10/0x20 at byte 17 and
an exact length field (very rare).  Encapsulated ESP on 4500 is only "non-zero SPI +
sequence number", so the single-packet case is weak.  IKE over TCP (RFC 8229, "IKETCP"
prefix) is not handled.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Optional

from analyzer.identify.tls import first_payload
from analyzer.model import FlowFacts, Identification, Target

IKE_PORTS: Final = frozenset({500, 4500})
NON_ESP_MARKER: Final = b"\x00\x00\x00\x00"
IKEV2_EXCHANGES: Final = {34: "IKE_SA_INIT", 35: "IKE_AUTH", 36: "CREATE_CHILD_SA",
                   37: "INFORMATIONAL"}
IKEV1_EXCHANGES: Final = {1: "Base", 2: "Main Mode", 4: "Aggressive", 5: "Informational",
                   32: "Quick Mode"}


@dataclass(frozen=True, slots=True)
class IkeHeader:
    version: int  # 1 or 2
    ispi: bytes
    rspi: bytes
    exchange: int
    flags: int
    message_id: int
    length: int

    @property
    def exchange_name(self) -> str:
        table = IKEV2_EXCHANGES if self.version == 2 else IKEV1_EXCHANGES
        return table.get(self.exchange, str(self.exchange))

    @property
    def is_initial_request(self) -> bool:
        if self.rspi != b"\x00" * 8 or self.message_id != 0:
            return False
        if self.version == 2:
            return self.exchange == 34 and self.flags & 0x08 != 0 and self.flags & 0x20 == 0
        return self.exchange in (1, 2, 4)


def parse_ike(data: bytes, marker: bool, real_size: Optional[int] = None,
              check_length: bool = True) -> Optional[IkeHeader]:
    """Parse an IKE header; ``marker`` = expect the 4-byte non-ESP marker (UDP 4500).

    ``real_size`` is the datagram's recorded size when ``data`` may have been cut;
    ``check_length=False`` skips the length check (used for replies matched by SPI).
    """
    if marker:
        if not data.startswith(NON_ESP_MARKER):
            return None
        data = data[4:]
        if real_size is not None:
            real_size -= 4
    if len(data) < 28 or (data[17] != 0x20 and data[17] != 0x10):
        return None  # (the version byte is checked again below; this is the cheap reject)
    ispi, rspi = data[0:8], data[8:16]
    np_, ver, exch, flags = data[16], data[17], data[18], data[19]
    msgid = int.from_bytes(data[20:24], "big")
    length = int.from_bytes(data[24:28], "big")
    if ispi == b"\x00" * 8:
        return None
    if ver == 0x20:
        if exch not in IKEV2_EXCHANGES or not 33 <= np_ <= 54:
            return None
        if flags & ~0x38:  # only I(0x08), V(0x10), R(0x20) are defined
            return None
        version = 2
    elif ver == 0x10:
        if exch not in IKEV1_EXCHANGES or not (1 <= np_ <= 21 or np_ >= 128):
            return None
        if flags & ~0x07:  # E, C, A
            return None
        version = 1
    else:
        return None
    if check_length and length != len(data):
        if not (length > len(data) and real_size is not None and length == real_size):
            return None
    return IkeHeader(version, ispi, rspi, exch, flags, msgid, length)


def _parse_ike_any(data: bytes, ports: tuple[int, int], real_size: Optional[int],
                   check_length: bool = True) -> Optional[IkeHeader]:
    if 4500 in ports and data.startswith(NON_ESP_MARKER):
        return parse_ike(data, True, real_size, check_length)
    return parse_ike(data, False, real_size, check_length)


def identify_ike(facts: FlowFacts) -> Optional[Identification]:
    if facts.proto != "udp":
        return None
    first = first_payload(facts.client_payloads)
    if not first:
        return None
    ports = (facts.client_port, facts.server_port)
    real: Optional[int] = None  # the first non-zero recorded size
    for size in facts.client_sizes:
        if size > 0:
            real = size
            break
    hdr = _parse_ike_any(first, ports, real)
    if hdr is None:
        return None
    app = "ikev2" if hdr.version == 2 else "ikev1"
    reasons = [f"IKEv{hdr.version} {hdr.exchange_name} header, initiator SPI {hdr.ispi.hex()}, "
               "length field matches the datagram"]
    if first.startswith(NON_ESP_MARKER):
        reasons.append("non-ESP marker (NAT-T, UDP 4500)")
    if hdr.is_initial_request:
        conf = 0.95
        reasons.append("first request: responder SPI zero")
    else:
        conf = 0.85
        reasons.append("exchange already under way (responder SPI set)")
    if facts.server_port not in IKE_PORTS and facts.client_port not in IKE_PORTS:
        conf -= 0.1
        reasons.append(f"unusual port {facts.server_port}")
    answered: Optional[bool] = None
    for p in facts.server_payloads[:8]:
        if not p:
            continue
        # the server payload may be cut: the SPI match below stands in for the length check
        s = _parse_ike_any(p, ports, None, check_length=False)
        if s is not None and s.ispi == hdr.ispi and s.rspi != b"\x00" * 8:
            answered = True
            reasons.append(f"responder replied (responder SPI {s.rspi.hex()})")
            break
    if answered is None and not facts.server_payloads:
        answered = False
        reasons.append("no reply from the responder")
    return Identification(Target.IPSEC, app, round(conf, 2), tuple(reasons), answered)


def _esp_header(data: bytes) -> Optional[tuple[int, int]]:
    if len(data) < 8:
        return None
    spi = int.from_bytes(data[0:4], "big")
    seq = int.from_bytes(data[4:8], "big")
    if spi < 256:
        return None
    return spi, seq


def identify_esp(facts: FlowFacts) -> Optional[Identification]:
    """ESP/AH by IP protocol, and UDP-encapsulated ESP on 4500."""
    if facts.proto in ("esp", "ah"):
        name = facts.proto
        reasons = [f"IP protocol {50 if name == 'esp' else 51} ({name.upper()})"]
        first = first_payload(facts.client_payloads)
        if name == "esp" and first:
            h = _esp_header(first)
            if h is None:
                return Identification(Target.IPSEC, name, 0.7,
                                      tuple(reasons) + ("SPI in the IANA-reserved range",), None)
            reasons.append(f"SPI {h[0]:#010x}, sequence {h[1]}")
        if facts.server_payloads:
            reasons.append("ESP in both directions" if name == "esp" else "AH in both directions")
        return Identification(Target.IPSEC, name, 0.9, tuple(reasons), None)
    if facts.proto != "udp" or 4500 not in (facts.server_port, facts.client_port):
        return None
    client = [p for p in facts.client_payloads[:8] if p and p != b"\xff"]
    if not client or client[0].startswith(NON_ESP_MARKER):
        return None
    heads = [_esp_header(p) for p in client]
    if heads[0] is None or len(client[0]) < 16:
        return None
    spi0 = heads[0][0]
    seqs = [h[1] for h in heads if h is not None and h[0] == spi0]
    reasons = [f"UDP-encapsulated ESP on 4500, SPI {spi0:#010x}"]
    conf = 0.6
    if len(seqs) >= 2 and all(b > a for a, b in zip(seqs, seqs[1:])):
        conf = 0.8
        reasons.append(f"{len(seqs)} packets with the same SPI and increasing sequence numbers")
    return Identification(Target.IPSEC, "esp", conf, tuple(reasons), None)
