"""Records and vocabulary shared by every stage.

The vocabulary (techniques, triggers, targets, signals) is defined once here and mirrored in
``docs/vocabulary.md``; the JSON contract (``schema/report.schema.json``) uses the same values.
"""
from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from enum import Enum
from typing import Any, Final, Optional

from analyzer.config import reduce_by_fields


class Technique(str, Enum):
    """How the traffic was interfered with."""

    RST_INJECTION = "rst_injection"
    DNS_INJECTION = "dns_injection"
    DROP = "drop"
    ICMP_UNREACHABLE = "icmp_unreachable"
    BLOCKPAGE = "blockpage"
    THROTTLING = "throttling"


class Trigger(str, Enum):
    """What the interference keyed on, as far as the capture shows."""

    SNI = "sni"
    QUIC_SNI = "quic_sni"
    HTTP_HOST = "http_host"
    DNS_NAME = "dns_name"
    IP = "ip"
    PROTOCOL = "protocol"
    RESIDUAL = "residual"
    UNKNOWN = "unknown"


class Target(str, Enum):
    """What was being reached."""

    WHATSAPP = "whatsapp"
    OPENVPN = "openvpn"
    WIREGUARD = "wireguard"
    IPSEC = "ipsec"
    PPTP = "pptp"
    L2TP = "l2tp"
    SSTP = "sstp"
    TOR = "tor"
    SHADOWSOCKS = "shadowsocks"
    OTHER = "other"


class Outcome(str, Enum):
    OK = "ok"
    INTERFERED = "interfered"
    FAILED = "failed"
    INCOMPLETE = "incomplete"


# The plain text of each member. ``member.value`` runs Python code (Enum's property, ~90 ns
# even when compiled); the hot paths (a flow's record, a verdict's id and JSON) look it up here.
TECHNIQUE_TEXT: Final[dict[Technique, str]] = {m: m.value for m in Technique}
TRIGGER_TEXT: Final[dict[Trigger, str]] = {m: m.value for m in Trigger}
TARGET_TEXT: Final[dict[Target, str]] = {m: m.value for m in Target}
OK: Final[str] = Outcome.OK.value
INTERFERED: Final[str] = Outcome.INTERFERED.value
FAILED: Final[str] = Outcome.FAILED.value
INCOMPLETE: Final[str] = Outcome.INCOMPLETE.value


def format_ip(addr: bytes) -> str:
    """Text form of a 4- or 16-byte address (IPv4-mapped IPv6 stays IPv6)."""
    # cached: the same few thousand addresses are formatted for every flow, finding and DNS
    # answer. A plain dict (emptied when full) costs a third of an lru_cache here.
    text = _IP_TEXT.get(addr) if type(addr) is bytes else None  # (a bytearray is unhashable)
    if text is None:
        key = bytes(addr)
        if len(key) == 4:
            text = f"{key[0]}.{key[1]}.{key[2]}.{key[3]}"
        else:
            text = str(ipaddress.IPv6Address(key))
        if len(_IP_TEXT) >= IP_TEXT_CACHE:
            _IP_TEXT.clear()
        _IP_TEXT[key] = text
    return text


IP_TEXT_CACHE: Final = 65_536
_IP_TEXT: Final[dict[bytes, str]] = {}


def format_endpoint(addr: bytes, port: int) -> str:
    """``ip:port``, IPv6 as ``[addr]:port`` (contract)."""
    if len(addr) == 16:
        return f"[{format_ip(addr)}]:{port}"
    return f"{format_ip(addr)}:{port}"


# HOT_RECORDS: the records made per packet, DNS message or flow (Evidence, LadderPacket,
# FlowFacts, Identification and Finding here; DnsQuestion, SoaData, DnsRR, Edns, DnsMessage,
# DnsQuery, DnsResponse, DnsTransaction, FlowInfo and FlowRecord elsewhere) spell out their
# __init__ (``dataclass(init=False)``). The __init__ that dataclass generates stays interpreted
# when the module is compiled by mypyc (setup.py) and, for a frozen class, sets each field
# through object.__setattr__: 5.6 times slower than the written-out one compiled (408 against
# 73 ns for four fields), and these are made 300,000 times per million packets.
# tests/core/test_records.py checks that each written-out __init__ takes the fields in order,
# with their defaults.
@dataclass(init=False, frozen=True, slots=True)
class Evidence:
    """One packet behind a finding, with a one-line human reason."""

    frame: int
    ts: float
    reason: str
    input: int = 0  # index into the report's ``inputs`` list

    def __init__(self, frame: int, ts: float, reason: str, input: int = 0) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "input", input)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(init=False, frozen=True, slots=True)
class LadderPacket:
    """A key packet of a verdict's flow, for ladder diagrams (report ``packets`` list).

    ``dir`` is ``"c2s"`` or ``"s2c"``; TCP fields are None for other protocols; seq/ack are
    relative to each side's initial sequence number when the handshake was seen.
    """

    frame: int
    ts: float
    dir: str
    summary: str
    input: int = 0
    flags: Optional[str] = None
    ttl: Optional[int] = None
    ipid: Optional[int] = None
    seq: Optional[int] = None
    ack: Optional[int] = None
    win: Optional[int] = None
    len: Optional[int] = None
    forged: bool = False

    def __init__(
            self, frame: int, ts: float, dir: str, summary: str, input: int = 0,
            flags: Optional[str] = None, ttl: Optional[int] = None, ipid: Optional[int] = None,
            seq: Optional[int] = None, ack: Optional[int] = None, win: Optional[int] = None,
            len: Optional[int] = None, forged: bool = False,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "dir", dir)
        object.__setattr__(self, "summary", summary)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "ipid", ipid)
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "ack", ack)
        object.__setattr__(self, "win", win)
        object.__setattr__(self, "len", len)
        object.__setattr__(self, "forged", forged)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(init=False, frozen=True, slots=True)
class FlowFacts:
    """What identification needs to know about a flow (no packet objects, no I/O).

    ``client_payloads`` / ``server_payloads`` hold the first application payloads of each
    direction in arrival order (TCP segments in order as captured, not reassembled; UDP
    datagrams), each cut to a bounded length.
    """

    proto: str  # "tcp" | "udp" | "esp" | "gre" | ...
    client_ip: str
    client_port: int
    server_ip: str
    server_port: int
    client_payloads: tuple[bytes, ...] = ()
    server_payloads: tuple[bytes, ...] = ()
    sni: Optional[str] = None
    http_host: Optional[str] = None
    dns_names: tuple[str, ...] = ()  # names that resolved to server_ip earlier in the capture
    alpn: tuple[str, ...] = ()
    ech: bool = False
    client_sizes: tuple[int, ...] = ()  # sizes of the first client payload segments (kept ones)
    server_sizes: tuple[int, ...] = ()
    handshake_seen: bool = False  # TCP: the SYN was captured, so payloads start at byte 0

    def __init__(
            self, proto: str, client_ip: str, client_port: int, server_ip: str, server_port: int,
            client_payloads: tuple[bytes, ...] = (), server_payloads: tuple[bytes, ...] = (),
            sni: Optional[str] = None, http_host: Optional[str] = None,
            dns_names: tuple[str, ...] = (), alpn: tuple[str, ...] = (), ech: bool = False,
            client_sizes: tuple[int, ...] = (), server_sizes: tuple[int, ...] = (),
            handshake_seen: bool = False,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "proto", proto)
        object.__setattr__(self, "client_ip", client_ip)
        object.__setattr__(self, "client_port", client_port)
        object.__setattr__(self, "server_ip", server_ip)
        object.__setattr__(self, "server_port", server_port)
        object.__setattr__(self, "client_payloads", client_payloads)
        object.__setattr__(self, "server_payloads", server_payloads)
        object.__setattr__(self, "sni", sni)
        object.__setattr__(self, "http_host", http_host)
        object.__setattr__(self, "dns_names", dns_names)
        object.__setattr__(self, "alpn", alpn)
        object.__setattr__(self, "ech", ech)
        object.__setattr__(self, "client_sizes", client_sizes)
        object.__setattr__(self, "server_sizes", server_sizes)
        object.__setattr__(self, "handshake_seen", handshake_seen)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(init=False, frozen=True, slots=True)
class Identification:
    """What a flow was trying to reach: target, application protocol, how sure, why."""

    target: Target
    app: Optional[str] = None  # "tls", "quic", "http", "dns", "openvpn", "wireguard", "whatsapp-noise", ...
    confidence: float = 0.0
    reasons: tuple[str, ...] = ()
    # For handshake protocols (VPNs, TLS, QUIC): True when the server's side of the handshake
    # was seen, False when the client's handshake is present and nothing answered it,
    # None when it does not apply or cannot be told.
    handshake_answered: Optional[bool] = None

    def __init__(
            self, target: Target, app: Optional[str] = None, confidence: float = 0.0,
            reasons: tuple[str, ...] = (), handshake_answered: Optional[bool] = None,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "app", app)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "reasons", reasons)
        object.__setattr__(self, "handshake_answered", handshake_answered)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(init=False, frozen=True, slots=True)
class Finding:
    """A detector's observation: signals with evidence. Not yet a verdict (see verdict.py)."""

    detector: str
    technique: Technique
    trigger: Trigger
    proto: str
    client: str
    server: str
    signals: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    strength: float  # detector's own estimate in [0, 1]; verdict.py turns it into confidence
    first_ts: float
    last_ts: float
    domain: Optional[str] = None
    target: Target = Target.OTHER
    notes: tuple[str, ...] = ()
    related: tuple[str, ...] = ()  # ids of verdicts this one is linked to (e.g. residual)
    flow_id: Optional[str] = None
    ladder: tuple[LadderPacket, ...] = ()
    # Key used to link later findings (e.g. residual blocking) to this one.
    link_key: Optional[str] = None

    def __init__(
            self, detector: str, technique: Technique, trigger: Trigger, proto: str, client: str,
            server: str, signals: tuple[str, ...], evidence: tuple[Evidence, ...], strength: float,
            first_ts: float, last_ts: float, domain: Optional[str] = None,
            target: Target = Target.OTHER, notes: tuple[str, ...] = (),
            related: tuple[str, ...] = (), flow_id: Optional[str] = None,
            ladder: tuple[LadderPacket, ...] = (), link_key: Optional[str] = None,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "detector", detector)
        object.__setattr__(self, "technique", technique)
        object.__setattr__(self, "trigger", trigger)
        object.__setattr__(self, "proto", proto)
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "server", server)
        object.__setattr__(self, "signals", signals)
        object.__setattr__(self, "evidence", evidence)
        object.__setattr__(self, "strength", strength)
        object.__setattr__(self, "first_ts", first_ts)
        object.__setattr__(self, "last_ts", last_ts)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "notes", notes)
        object.__setattr__(self, "related", related)
        object.__setattr__(self, "flow_id", flow_id)
        object.__setattr__(self, "ladder", ladder)
        object.__setattr__(self, "link_key", link_key)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(frozen=True, slots=True)
class Verdict:
    id: str
    technique: Technique
    trigger: Trigger
    target: Target
    proto: str
    client: str
    server: str
    domain: Optional[str]
    confidence: float
    first_ts: float
    last_ts: float
    signals: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    detector: str
    notes: tuple[str, ...] = ()
    related: tuple[str, ...] = ()
    flow_id: Optional[str] = None
    ladder: tuple[LadderPacket, ...] = ()

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(slots=True)
class InputInfo:
    path: str
    packets: int = 0
    linktype: str = "UNKNOWN"
    first_ts: Optional[float] = None
    last_ts: Optional[float] = None
    format: str = "pcap"


@dataclass(slots=True)
class Stats:
    packets: int = 0
    decoded: int = 0
    skipped: dict[str, int] = field(default_factory=dict)
    flows: int = 0
    flows_evicted: int = 0
    dns_transactions: int = 0
    fragments: int = 0
    reassembled: int = 0  # IP datagrams rebuilt from fragments
    weak_findings: int = 0  # findings below the verdict threshold (signals only)
    seconds: float = 0.0

    def skip(self, reason: str, n: int = 1) -> None:
        self.skipped[reason] = self.skipped.get(reason, 0) + n
