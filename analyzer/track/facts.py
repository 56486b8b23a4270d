"""What a finished flow was about: the client's trigger (SNI, Host, QUIC SNI), the server's
answer, and the target identification. Computed once per flow when it ends."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final, Optional

from analyzer.decode.dns import parse_dns
from analyzer.decode.http import parse_http_request
from analyzer.decode.packet import IPPROTO_TCP, IPPROTO_UDP
from analyzer.decode.quic import (
    HEADER_FORM_BIT,
    KEYED_VERSIONS_WIRE,
    QuicCryptoAssembler,
    is_quic_long_header,
    parse_quic_initial,
)
from analyzer.decode.tls import (
    STATUS_COMPLETE,
    STATUS_NOT_TLS,
    client_hello_trigger,
    server_hello_status,
)
from analyzer.identify import identify
from analyzer.model import FlowFacts, Identification, Target, format_ip
from analyzer.status import DecodeError
from analyzer.track.flows import C2S, S2C, Flow

DNS_PORT: Final = 53
DNS_TCP_PREFIX: Final = 2  # RFC 1035 4.2.2 length field
# Payload bytes of each direction handed to identification.
IDENTIFY_PREFIX: Final = 2048
IDENTIFY_PACKETS: Final = 6


@dataclass(init=False, frozen=True, slots=True)
class FlowInfo:
    sni: Optional[str]
    http_host: Optional[str]
    quic_sni: Optional[str]
    ech: bool
    trigger_kind: Optional[str]  # "sni" | "http_host" | "quic_sni" | None
    trigger_frames: tuple[int, ...]  # frames of the client packets that carried the trigger
    trigger_complete: bool  # the whole ClientHello / request line + Host was sent
    server_answered: bool  # server sent payload (any) after the trigger
    ident: Identification
    dns_names: tuple[str, ...]
    # The described flow, for ``server_hello`` (not part of the value: no ==, no repr).
    flow: Optional[Flow] = field(default=None, repr=False, compare=False)

    def __init__(
            self, sni: Optional[str], http_host: Optional[str], quic_sni: Optional[str], ech: bool,
            trigger_kind: Optional[str], trigger_frames: tuple[int, ...], trigger_complete: bool,
            server_answered: bool, ident: Identification, dns_names: tuple[str, ...],
            flow: Optional[Flow] = None,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "sni", sni)
        object.__setattr__(self, "http_host", http_host)
        object.__setattr__(self, "quic_sni", quic_sni)
        object.__setattr__(self, "ech", ech)
        object.__setattr__(self, "trigger_kind", trigger_kind)
        object.__setattr__(self, "trigger_frames", trigger_frames)
        object.__setattr__(self, "trigger_complete", trigger_complete)
        object.__setattr__(self, "server_answered", server_answered)
        object.__setattr__(self, "ident", ident)
        object.__setattr__(self, "dns_names", dns_names)
        object.__setattr__(self, "flow", flow)

    @property
    def domain(self) -> Optional[str]:
        return self.sni or self.quic_sni or self.http_host or (self.dns_names[0] if self.dns_names else None)

    @property
    def server_hello(self) -> bool:
        """The server's first TCP bytes hold a complete ServerHello.

        Computed on access, from the ended flow: it needs the server's stream reassembled and a
        ServerHello walk (~3 us, a sixth of describe() for a TLS flow), and no consumer reads
        it for most flows."""
        flow = self.flow
        if flow is None or flow.proto != IPPROTO_TCP:
            return False
        sstream = flow.stream(S2C, 4096)
        return bool(sstream) and server_hello_status(sstream) == STATUS_COMPLETE


def describe(flow: Flow, dns_names: tuple[str, ...] = ()) -> FlowInfo:
    sni: Optional[str] = None
    host: Optional[str] = None
    quic_sni: Optional[str] = None
    ech = False
    alpn: tuple[str, ...] = ()
    trigger_kind: Optional[str] = None
    trigger_frames: tuple[int, ...] = ()
    complete = False
    cdir = flow.dirs[C2S]
    sdir = flow.dirs[S2C]
    cpayloads = cdir.payloads
    spayloads = sdir.payloads
    proto = flow.proto
    if proto == IPPROTO_TCP:
        cstream = flow.stream(C2S)
        if cstream:
            # only the fields used here are decoded (the full ClientHello is not needed)
            status, hello = client_hello_trigger(cstream)
            if status != STATUS_NOT_TLS:
                if hello is not None:
                    sni = hello.sni
                    ech = hello.ech or hello.esni
                    alpn = hello.alpn
                    complete = status == STATUS_COMPLETE
                    trigger_kind = "sni" if sni else None
            else:
                req = parse_http_request(cstream)
                if req is not None and req.host:
                    host = req.host
                    trigger_kind = "http_host"
                    complete = True
            if trigger_kind is not None:
                trigger_frames = tuple(sorted({s[1] for s in cpayloads}))
    elif proto == IPPROTO_UDP:
        asm: Optional[QuicCryptoAssembler] = None
        for _seq, _frame, data, _ts in cpayloads:
            if not data or data[0] < HEADER_FORM_BIT or data[1:5] not in KEYED_VERSIONS_WIRE:
                continue  # not a long header of a version with Initial keys (most UDP)
            ini = parse_quic_initial(data)  # None for anything but a client Initial
            if ini is None:
                continue
            if asm is None:
                asm = QuicCryptoAssembler()
            ch = asm.add(ini)
            if ch is not None:
                quic_sni = ch.sni
                ech = ch.ech
                alpn = ch.alpn
                complete = True
                break
        if quic_sni:
            trigger_kind = "quic_sni"
            # every Initial of the client carries the trigger, retransmissions included
            trigger_frames = tuple(sorted({s[1] for s in cpayloads if is_quic_long_header(s[2])}))
    if flow.sport == DNS_PORT and cpayloads:
        # a DNS flow's domain is its first query's name (TCP: after the 2-byte length)
        data = cpayloads[0][2][DNS_TCP_PREFIX:] if proto == IPPROTO_TCP else cpayloads[0][2]
        try:
            msg = parse_dns(data)
            if msg.questions:
                name = msg.questions[0].name
                others = tuple([n for n in dns_names if n != name]) if dns_names else ()
                dns_names = (name,) + others
        except DecodeError:
            pass
    # (comprehensions, not map(): compiled, they index the (seq, frame, data, ts) records natively)
    client_sizes = tuple([len(p[2]) for p in cpayloads])
    server_sizes = tuple([len(p[2]) for p in spayloads])
    # the first IDENTIFY_PACKETS payloads of each side, cut to IDENTIFY_PREFIX bytes
    client_first = tuple([p[2] for p in cpayloads[:IDENTIFY_PACKETS]])
    if any(len(p) > IDENTIFY_PREFIX for p in client_first):
        client_first = tuple([p[:IDENTIFY_PREFIX] for p in client_first])
    server_first = tuple([p[2] for p in spayloads[:IDENTIFY_PACKETS]])
    if any(len(p) > IDENTIFY_PREFIX for p in server_first):
        server_first = tuple([p[:IDENTIFY_PREFIX] for p in server_first])
    facts = FlowFacts(
        proto=flow.proto_name,
        client_ip=format_ip(flow.client),
        client_port=flow.cport,
        server_ip=format_ip(flow.server),
        server_port=flow.sport,
        client_payloads=client_first,
        server_payloads=server_first,
        sni=sni or quic_sni,
        http_host=host,
        dns_names=dns_names,
        alpn=alpn,
        ech=ech,
        client_sizes=client_sizes,
        server_sizes=server_sizes,
        handshake_seen=flow.syn_seen,
    )
    try:
        ident = identify(facts)
    except Exception:  # identification must never end a run
        ident = Identification(Target.OTHER)
    return FlowInfo(sni, host, quic_sni, ech, trigger_kind, trigger_frames, complete,
                    sdir.payload_packets > 0, ident, dns_names, flow)
