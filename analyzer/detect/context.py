"""What detectors and verdicts may know about the rest of the capture (cross-flow evidence).

Two kinds, kept apart so that a capture can be analysed in several processes with the same
result (``--jobs``; flows are sharded by their pair of addresses):

- per client/server pair, used by detectors when a flow ends: the last triggered block of
  (client, server, port) for residual blocking, with the server's own TTL as this client saw
  it in the blocked flow and later ones. All flows of a pair are in the same shard.
- :class:`Controls`, used only when verdicts are decided at the end of an input: flows that
  got an answer (per server address and in all), the names that worked per server address,
  the download rates of large flows. Controls of several shards merge exactly.

Everything is bounded.
"""
from __future__ import annotations

import bisect
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Final, Optional

from analyzer.config import Thresholds

MAX_ENTRIES: Final = 1_000_000
MAX_NAMES_PER_SERVER: Final = 64  # the smallest names (sorted) are kept, so merging is exact


@dataclass(slots=True)
class Block:
    ts: float
    link_key: str
    technique: str
    domain: Optional[str]
    # the server's genuine TTLs (count per TTL) seen by this client, from the blocked flow and
    # later flows of the pair: residual RSTs are compared with them
    server_ttls: dict[int, int] = field(default_factory=dict)


@dataclass(slots=True)
class Controls:
    answered_flows: int = 0
    answered_ips: dict[str, int] = field(default_factory=dict)  # server ip -> flows answered
    ok_names: dict[str, list[str]] = field(default_factory=dict)  # server ip -> sorted names
    # download rates of flows that moved enough data: flow id -> (server ip, domain, rate)
    rates: dict[str, tuple[bytes, Optional[str], float]] = field(default_factory=dict)

    def add_ok_name(self, server_ip: str, name: Optional[str]) -> None:
        if not name:
            return
        names = self.ok_names.setdefault(server_ip, [])
        i = bisect.bisect_left(names, name)
        if i < len(names) and names[i] == name:
            return
        names.insert(i, name)
        if len(names) > MAX_NAMES_PER_SERVER:
            names.pop()

    def merge(self, other: Controls) -> None:
        self.answered_flows += other.answered_flows
        for ip, n in other.answered_ips.items():
            self.answered_ips[ip] = self.answered_ips.get(ip, 0) + n
        for ip, names in other.ok_names.items():
            for name in names:
                self.add_ok_name(ip, name)
        self.rates.update(other.rates)


class Context:
    def __init__(self, thresholds: Thresholds) -> None:
        self.th = thresholds
        self.controls = Controls()
        self.blocks: OrderedDict[tuple[bytes, bytes, int, int], Block] = OrderedDict()
        # (client, server) pairs with a block: where later genuine TTLs are worth keeping
        self.blocked_pairs: dict[tuple[bytes, bytes], list[Block]] = {}
        # fastest-first index of ``controls.rates`` (verdict.py), rebuilt when rates change
        self.rate_index: Optional[tuple[int, list[tuple[float, str, bytes, Optional[str]]],
                                        dict[bytes, list[tuple[float, str, Optional[str]]]]]] = None

    @property
    def answered_flows(self) -> int:
        return self.controls.answered_flows

    @property
    def rates(self) -> dict[str, tuple[bytes, Optional[str], float]]:
        return self.controls.rates

    def record_rate(self, flow_id: str, server: bytes, domain: Optional[str], rate: float) -> None:
        if len(self.controls.rates) < MAX_ENTRIES:
            self.controls.rates[flow_id] = (server, domain, rate)

    def note_server_ttl(self, client: bytes, server: bytes, ttl: int) -> None:
        """The server's genuine TTL seen by client in a flow that ended: kept only where a
        block of the pair may need it (bounded memory)."""
        for b in self.blocked_pairs.get((client, server), ()):
            b.server_ttls[ttl] = b.server_ttls.get(ttl, 0) + 1

    def server_ttls(self, client: bytes, server: bytes) -> dict[int, int]:
        out: dict[int, int] = {}
        for b in self.blocked_pairs.get((client, server), ()):
            for t, c in b.server_ttls.items():
                out[t] = out.get(t, 0) + c
        return out

    def record_block(self, client: bytes, server: bytes, port: int, proto: int, block: Block) -> None:
        key = (client, server, port, proto)
        old = self.blocks.get(key)
        if old is not None:
            for t, c in old.server_ttls.items():  # what is known of the server stays known
                block.server_ttls[t] = block.server_ttls.get(t, 0) + c
            self._unpair(key, old)
        self.blocks[key] = block
        self.blocks.move_to_end(key)
        self.blocked_pairs.setdefault((client, server), []).append(block)
        if len(self.blocks) > MAX_ENTRIES:
            k, b = self.blocks.popitem(last=False)
            self._unpair(k, b)

    def _unpair(self, key: tuple[bytes, bytes, int, int], block: Block) -> None:
        lst = self.blocked_pairs.get((key[0], key[1]))
        if lst is not None:
            lst[:] = [b for b in lst if b is not block]
            if not lst:
                del self.blocked_pairs[(key[0], key[1])]

    def recent_block(self, client: bytes, server: bytes, port: int, proto: int, ts: float) -> Optional[Block]:
        b = self.blocks.get((client, server, port, proto))
        if b is None:
            return None
        if 0.0 <= ts - b.ts <= self.th.residual_window:
            return b
        return None
