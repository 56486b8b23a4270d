"""What detectors may know about the rest of the capture (cross-flow controls).

Bounded summaries only: per server address/port, the TTLs it answered with and the names that
worked; per (client, server, port), the time and verdict link of the last triggered block
(for residual blocking); global counts of flows that worked.
"""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Optional

from analyzer.config import Thresholds

MAX_SERVERS = 100_000
MAX_NAMES_PER_SERVER = 16


@dataclass(slots=True)
class ServerStats:
    flows: int = 0
    answered: int = 0  # flows in which the server sent anything
    ttls: dict[int, int] = field(default_factory=dict)  # TTLs of genuine-looking server packets
    ok_names: list[str] = field(default_factory=list)  # names (SNI/Host) that got an answer
    blocked_names: list[str] = field(default_factory=list)
    first_ok_ts: Optional[float] = None
    last_ok_ts: Optional[float] = None


@dataclass(slots=True)
class Block:
    ts: float
    link_key: str
    technique: str
    domain: Optional[str]


class Context:
    def __init__(self, thresholds: Thresholds) -> None:
        self.th = thresholds
        # download rates of flows that moved enough data: flow id -> (server ip, domain, rate)
        self.rates: OrderedDict[str, tuple[bytes, Optional[str], float]] = OrderedDict()
        self.servers: OrderedDict[tuple[bytes, int, int], ServerStats] = OrderedDict()
        self.server_ips: OrderedDict[bytes, ServerStats] = OrderedDict()
        self.blocks: OrderedDict[tuple[bytes, bytes, int, int], Block] = OrderedDict()
        self.flows = 0
        self.answered_flows = 0

    def record_rate(self, flow_id: str, server: bytes, domain: Optional[str], rate: float) -> None:
        self.rates[flow_id] = (server, domain, rate)
        if len(self.rates) > MAX_SERVERS:
            self.rates.popitem(last=False)

    def server(self, ip: bytes, port: int, proto: int) -> ServerStats:
        key = (ip, port, proto)
        st = self.servers.get(key)
        if st is None:
            st = self.servers[key] = ServerStats()
            if len(self.servers) > MAX_SERVERS:
                self.servers.popitem(last=False)
        return st

    def server_ip(self, ip: bytes) -> ServerStats:
        st = self.server_ips.get(ip)
        if st is None:
            st = self.server_ips[ip] = ServerStats()
            if len(self.server_ips) > MAX_SERVERS:
                self.server_ips.popitem(last=False)
        return st

    def record_block(self, client: bytes, server: bytes, port: int, proto: int, block: Block) -> None:
        key = (client, server, port, proto)
        self.blocks[key] = block
        self.blocks.move_to_end(key)
        if len(self.blocks) > MAX_SERVERS:
            self.blocks.popitem(last=False)

    def recent_block(self, client: bytes, server: bytes, port: int, proto: int, ts: float) -> Optional[Block]:
        b = self.blocks.get((client, server, port, proto))
        if b is None:
            return None
        if 0.0 <= ts - b.ts <= self.th.residual_window:
            return b
        return None


def add_name(names: list[str], name: Optional[str]) -> None:
    if name and name not in names and len(names) < MAX_NAMES_PER_SERVER:
        names.append(name)
