"""Packet builders shared by the DNS tests (scapy layers decoded by the real decoder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Optional

from scapy.layers.dns import DNS, DNSQR, DNSRR
from scapy.layers.inet import IP, UDP

import pytest

from analyzer.decode.packet import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    Packet,
    decode_frame,
)
from analyzer.sources.files import open_reader
from analyzer.status import DecodeError
from analyzer.track.dns import DnsTracker, DnsTransaction

LINKTYPE_RAW = 101
CLIENT = "10.0.0.2"
RESOLVER = "8.8.8.8"
CAPTURES = Path(__file__).resolve().parents[2].parent / "shared" / "captures-public"


def ip4(text: str) -> bytes:
    return bytes(int(x) for x in text.split("."))


def decode(layer: Any, frame: int, ts: float) -> Packet:
    raw = bytes(layer)
    p = decode_frame(raw, 0, len(raw), LINKTYPE_RAW)
    p.frame = frame
    p.ts = ts
    return p


def query(
    qname: str, txid: int = 0x1111, sport: int = 40000, dst: str = RESOLVER, qtype: str = "A"
) -> Any:
    return (
        IP(src=CLIENT, dst=dst, ttl=64, id=100)
        / UDP(sport=sport, dport=53)
        / DNS(id=txid, rd=1, qd=[DNSQR(qname=qname, qtype=qtype)])
    )


def response(
    qname: str,
    addrs: Iterable[str],
    txid: int = 0x1111,
    sport: int = 40000,
    src: str = RESOLVER,
    ttl: int = 52,
    ipid: int = 7,
    df: bool = True,
    rcode: int = 0,
    aa: int = 0,
    rtype: str = "A",
    qtype: str = "A",
    extra: bytes = b"",
    tc: int = 0,
    cname: Optional[str] = None,
) -> Any:
    an = []
    owner = qname
    if cname:
        an.append(DNSRR(rrname=qname, type="CNAME", ttl=60, rdata=cname))
        owner = cname
    an += [DNSRR(rrname=owner, type=rtype, ttl=60, rdata=a) for a in addrs]
    dns = DNS(
        id=txid,
        qr=1,
        rd=1,
        ra=1,
        aa=aa,
        tc=tc,
        rcode=rcode,
        qd=[DNSQR(qname=qname, qtype=qtype)],
        an=an,
    )
    return (
        IP(src=src, dst=CLIENT, ttl=ttl, id=ipid, flags="DF" if df else 0)
        / UDP(sport=53, dport=sport)
        / (bytes(dns) + extra)
    )




def feed_capture(path: Path, tracker: DnsTracker) -> list[DnsTransaction]:
    if not path.exists():
        pytest.skip(f"{path.name} not available")
    with path.open("rb") as f:
        reader = open_reader(f, str(path))
        for batch in reader.batches():
            for i in range(len(batch)):
                try:
                    p = decode_frame(
                        batch.buf, batch.offsets[i], batch.caplens[i], batch.linktypes[i]
                    )
                except DecodeError:
                    continue
                p.frame = batch.first_frame + i
                p.ts = batch.ts[i]
                if (
                    p.proto in (IPPROTO_UDP, IPPROTO_TCP) and 53 in (p.sport, p.dport)
                ) or p.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
                    tracker.on_packet(p)
    return tracker.flush()
