"""What a finished flow was about: the client's trigger (SNI, Host, QUIC SNI), the server's
answer, and the target identification. Computed once per flow when it ends."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from analyzer.decode.dns import parse_dns
from analyzer.decode.http import parse_http_request
from analyzer.decode.packet import IPPROTO_TCP, IPPROTO_UDP
from analyzer.decode.quic import QuicCryptoAssembler, is_quic_long_header, parse_quic_initial
from analyzer.decode.tls import client_hello_and_status, parse_server_hello
from analyzer.identify import identify
from analyzer.model import FlowFacts, Identification, Target, format_ip
from analyzer.status import DecodeError
from analyzer.track.flows import C2S, S2C, Flow

DNS_PORT = 53
DNS_TCP_PREFIX = 2  # RFC 1035 4.2.2 length field
# Payload bytes of each direction handed to identification.
IDENTIFY_PREFIX = 2048
IDENTIFY_PACKETS = 6


@dataclass(frozen=True, slots=True)
class FlowInfo:
    sni: Optional[str]
    http_host: Optional[str]
    quic_sni: Optional[str]
    ech: bool
    trigger_kind: Optional[str]  # "sni" | "http_host" | "quic_sni" | None
    trigger_frames: tuple[int, ...]  # frames of the client packets that carried the trigger
    trigger_complete: bool  # the whole ClientHello / request line + Host was sent
    server_answered: bool  # server sent payload (any) after the trigger
    server_hello: bool
    ident: Identification
    dns_names: tuple[str, ...]

    @property
    def domain(self) -> Optional[str]:
        return self.sni or self.quic_sni or self.http_host or (self.dns_names[0] if self.dns_names else None)


def describe(flow: Flow, dns_names: tuple[str, ...] = ()) -> FlowInfo:
    sni: Optional[str] = None
    host: Optional[str] = None
    quic_sni: Optional[str] = None
    ech = False
    alpn: tuple[str, ...] = ()
    trigger_kind: Optional[str] = None
    trigger_frames: tuple[int, ...] = ()
    complete = False
    server_hello = False
    cdir = flow.dirs[C2S]
    sdir = flow.dirs[S2C]
    if flow.proto == IPPROTO_TCP:
        cstream = flow.stream(C2S)
        if cstream:
            status, ch = client_hello_and_status(cstream)
            if status != "not_tls":
                if ch is not None:
                    sni = ch.sni
                    ech = ch.ech or ch.esni
                    alpn = ch.alpn
                    complete = status == "complete"
                    trigger_kind = "sni" if sni else None
            else:
                req = parse_http_request(cstream)
                if req is not None and req.host:
                    host = req.host
                    trigger_kind = "http_host"
                    complete = True
            if trigger_kind is not None:
                trigger_frames = tuple(sorted({s[1] for s in cdir.payloads}))
        sstream = flow.stream(S2C, 4096)
        if sstream:
            server_hello = parse_server_hello(sstream) is not None
    elif flow.proto == IPPROTO_UDP:
        asm: Optional[QuicCryptoAssembler] = None
        for _seq, _frame, data, _ts in cdir.payloads:
            if not is_quic_long_header(data):
                continue
            ini = parse_quic_initial(data)
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
            trigger_frames = tuple(sorted({s[1] for s in cdir.payloads if is_quic_long_header(s[2])}))
    if flow.sport == DNS_PORT and cdir.payloads:
        # a DNS flow's domain is its first query's name (TCP: after the 2-byte length)
        data = cdir.payloads[0][2][DNS_TCP_PREFIX:] if flow.proto == IPPROTO_TCP else cdir.payloads[0][2]
        try:
            msg = parse_dns(data)
            if msg.questions:
                dns_names = (msg.questions[0].name,) + tuple(n for n in dns_names if n != msg.questions[0].name)
        except DecodeError:
            pass
    server_answered = sdir.payload_packets > 0
    facts = FlowFacts(
        proto=flow.proto_name,
        client_ip=format_ip(flow.client),
        client_port=flow.cport,
        server_ip=format_ip(flow.server),
        server_port=flow.sport,
        client_payloads=tuple(p[2][:IDENTIFY_PREFIX] for p in cdir.payloads[:IDENTIFY_PACKETS]),
        server_payloads=tuple(p[2][:IDENTIFY_PREFIX] for p in sdir.payloads[:IDENTIFY_PACKETS]),
        sni=sni or quic_sni,
        http_host=host,
        dns_names=dns_names,
        alpn=alpn,
        ech=ech,
        client_sizes=tuple(len(p[2]) for p in cdir.payloads),
        server_sizes=tuple(len(p[2]) for p in sdir.payloads),
        handshake_seen=flow.syn_seen,
    )
    try:
        ident = identify(facts)
    except Exception:  # identification must never end a run
        ident = Identification(Target.OTHER)
    return FlowInfo(sni, host, quic_sni, ech, trigger_kind, trigger_frames, complete,
                    server_answered, server_hello, ident, dns_names)
