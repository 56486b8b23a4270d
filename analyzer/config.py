"""Every tunable number of the analysis, in one frozen dataclass.

Detectors read their thresholds from :class:`Thresholds`; the pipeline reads its limits from
:class:`Settings`. Nothing else in the package hard-codes a threshold.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def reduce_by_fields(obj: Any) -> tuple[Any, tuple[Any, ...]]:
    """``__reduce__`` of a frozen dataclass: rebuilt by its constructor. (The default sets the
    fields one by one, which a frozen class compiled by mypyc refuses; --jobs pickles these.)"""
    return type(obj), tuple([getattr(obj, f.name) for f in fields(obj)])


@dataclass(frozen=True, slots=True)
class Thresholds:
    # --- RST injection (detect/rst_injection.py) ---
    # A RST whose TTL differs from every TTL the claimed sender used on this flow by at least
    # this much is "ttl_mismatch". Routes rarely change by more than 1-2 hops within a flow.
    rst_ttl_delta: int = 3
    # IP-ID of a RST is "out of sequence" when it is further than this from the claimed
    # sender's previous IP-ID (mod 2**16), for senders whose IP-IDs are sequential.
    rst_ipid_gap: int = 1000
    # IP-IDs of one sender count as sequential when successive packets step by at most this.
    ipid_seq_step: int = 64
    # Packets from the "resetting" side within this many seconds after its RST mean the RST
    # did not come from that side's stack.
    rst_after_window: float = 10.0
    # Seconds a flow stays open after a RST or both FINs so late packets are still attributed.
    close_linger: float = 5.0
    # --- drops (detect/drop.py) ---
    # A client payload retransmitted at least this many times with nothing from the server
    # after it is a dropped flow.
    drop_min_retrans: int = 2
    # SYNs (first + retransmissions) with no answer before a flow counts as unanswered.
    syn_min_attempts: int = 2
    # Seconds between the client's first trigger/handshake packet and its last retransmission
    # before silence counts (Linux retransmits after ~0.2-1 s, doubling).
    silence_seconds: float = 1.0
    # A VPN tunnel that worked is "stalled" when the client sent at least stall_packets over at
    # least stall_seconds with nothing back (WireGuard keepalives come every 25 s when idle;
    # TCP inside a tunnel acknowledges within an RTT).
    stall_seconds: float = 10.0
    stall_packets: int = 5
    # --- residual blocking (detect/residual.py) ---
    # The GFW keeps residual state 60-180 s (Bock et al. 2020; Wang et al. 2017).
    residual_window: float = 180.0
    # --- DNS (detect/dns_injection.py) ---
    dns_timeout: float = 10.0
    dns_ttl_delta: int = 3
    # --- throttling ---
    # A flow is compared for throttling when its server sent this much, over at least this long.
    throttle_min_bytes: int = 32_768
    throttle_min_seconds: float = 0.2
    # ... and it is throttled when its rate is at most this fraction of a comparable flow's.
    throttle_ratio: float = 0.1
    # With no control to the same server, the flow must be this far below the median flow to
    # other servers (policers cut rates ~100x: Twitter in Russia, 2021).
    throttle_other_ratio: float = 0.02

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)


@dataclass(frozen=True, slots=True)
class Settings:
    thresholds: Thresholds = field(default_factory=Thresholds)
    # Flows idle this long (capture time) are finished and evicted.
    idle_timeout: float = 120.0
    # Hard cap of live flows; the least recently active are finished early and counted.
    max_flows: int = 500_000
    # Hard cap of pending DNS transactions.
    max_dns: int = 200_000
    # Per flow: how many key packets (SYN/FIN/RST, first payloads, packets around RSTs) are
    # kept for detectors and ladder diagrams.
    max_events: int = 96
    # Per direction: first payload segments kept (for ClientHello reassembly and target id).
    first_payloads: int = 6
    # Bytes of those kept per direction: the client's side holds the trigger (a ClientHello with
    # post-quantum key shares is ~2 KB), the server's only needs its first message.
    first_payload_bytes: int = 8_192
    first_payload_bytes_server: int = 2_048
    # Packets per batch handed from the reader to the decoder.
    batch_packets: int = 65_536
    # Packets per chunk: flows are expired at chunk boundaries and the fast path plans a chunk
    # at a time. The reference and fast paths give identical results for the same value.
    chunk_packets: int = 16_384
    # Re-raise decoder errors instead of counting them (debugging).
    strict: bool = False
    # Analyse every packet on the per-packet reference path (slow; for tests/debugging).
    reference: bool = False
    # Track plain TCP/UDP frames in the C flow table (analyzer/_ctrack.c) when it is built;
    # False: the numpy fast path. All three paths give identical results.
    native: bool = True
    # (k, n): this process analyses shard k of n (flows sharded by address pair; --jobs).
    shard: tuple[int, int] = (0, 1)

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return reduce_by_fields(self)
