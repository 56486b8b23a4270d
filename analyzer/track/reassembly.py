"""IP fragment reassembly (IPv4, RFC 791; IPv6, RFC 8200 §4.5), bounded and strict.

Fragments are kept per datagram (source, destination, protocol, identification) until the
pieces cover it from offset 0 to the end of the last fragment; then one packet made of them is
handed on, stamped with the frame that completed it. Hostile input is expected:

- overlapping fragments whose bytes disagree drop the whole datagram (RFC 5722 for IPv6;
  overlaps are also a known evasion trick, so neither version guesses which copy is right);
  an exact duplicate is ignored;
- a datagram larger than 65,535 bytes of payload, more than ``max_pieces`` fragments, or
  more than ``max_pending`` datagrams at once are dropped and counted;
- incomplete datagrams are dropped after ``timeout`` seconds of capture time (counted as
  ``fragment_incomplete``).
"""
from __future__ import annotations

from collections import OrderedDict
from typing import Final, Optional

from analyzer.decode.packet import IPPROTO_TCP, IPPROTO_UDP, Packet, decode_reassembled
from analyzer.status import DecodeError

MAX_DATAGRAM: Final = 65_535
FRAG_TIMEOUT: Final = 30.0  # Linux ipfrag_time
MAX_PENDING: Final = 4096
MAX_PIECES: Final = 128

FlowKey = tuple[bytes, int, bytes, int, int]


class _Datagram:
    __slots__ = ("pieces", "total", "first", "ts", "flow_key")

    def __init__(self, ts: float) -> None:
        self.pieces: dict[int, bytes] = {}
        self.total: Optional[int] = None
        self.first: Optional[Packet] = None
        self.ts = ts
        self.flow_key: Optional[FlowKey] = None


class Reassembler:
    def __init__(self, timeout: float = FRAG_TIMEOUT, max_pending: int = MAX_PENDING) -> None:
        self.timeout = timeout
        self.max_pending = max_pending
        self.pending: OrderedDict[tuple[int, bytes, bytes, int, int], _Datagram] = OrderedDict()
        # flows with a datagram in progress (known from its first fragment): the fast path
        # leaves them to the per-packet path so that order is kept
        self.pending_flows: dict[FlowKey, int] = {}
        self.counts: dict[str, int] = {}
        self.expired: list[tuple[bytes, bytes]] = []  # (src, dst) of datagrams dropped unfinished

    def _count(self, reason: str) -> None:
        self.counts[reason] = self.counts.get(reason, 0) + 1

    def add(self, pkt: Packet) -> Optional[Packet]:
        """Add a fragment; return the reassembled packet when this one completes it."""
        key = (pkt.ipv, pkt.src, pkt.dst, pkt.frag_id, pkt.frag_nxt)
        dg = self.pending.get(key)
        if dg is None:
            dg = self.pending[key] = _Datagram(pkt.ts)
            if len(self.pending) > self.max_pending:
                _k, old = self.pending.popitem(last=False)
                self._forget(old)
                self._count("fragment_overflow")
        off = pkt.frag_offset
        data = pkt.frag_data
        if off + len(data) > MAX_DATAGRAM or len(dg.pieces) >= MAX_PIECES:
            self._drop(key, dg, "fragment_oversize")
            return None
        if not self._fits(dg, off, data):
            self._drop(key, dg, "fragment_overlap")
            return None
        dg.pieces[off] = data
        if off == 0:
            dg.first = pkt
            if pkt.proto in (IPPROTO_TCP, IPPROTO_UDP) and pkt.sport | pkt.dport:
                a, b = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
                fk = (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto) if a <= b else (
                    pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.proto)
                dg.flow_key = fk
                self.pending_flows[fk] = self.pending_flows.get(fk, 0) + 1
        if not pkt.frag_more:
            dg.total = off + len(data)
        if dg.total is None or dg.first is None:
            return None
        covered = 0
        for o in sorted(dg.pieces):
            if o > covered:
                return None  # a hole
            covered = max(covered, o + len(dg.pieces[o]))
        if covered < dg.total:
            return None
        buf = bytearray(dg.total)
        for o, piece in dg.pieces.items():
            buf[o:o + len(piece)] = piece[: max(0, dg.total - o)]
        first = dg.first
        del self.pending[key]
        self._forget(dg)
        try:
            whole = decode_reassembled(first, bytes(buf))
        except DecodeError as e:
            self._count(e.reason)
            return None
        self._count("fragments_reassembled")
        return whole

    @staticmethod
    def _fits(dg: _Datagram, off: int, data: bytes) -> bool:
        end = off + len(data)
        for o, piece in dg.pieces.items():
            pe = o + len(piece)
            if o < end and off < pe:  # overlap
                lo, hi = max(o, off), min(end, pe)
                if piece[lo - o:hi - o] != data[lo - off:hi - off]:
                    return False
        return True

    def _drop(self, key: tuple[int, bytes, bytes, int, int], dg: _Datagram, reason: str) -> None:
        self.pending.pop(key, None)
        self._forget(dg)
        self._count(reason)

    def _forget(self, dg: _Datagram) -> None:
        fk = dg.flow_key
        if fk is not None:
            n = self.pending_flows.get(fk, 0) - 1
            if n > 0:
                self.pending_flows[fk] = n
            else:
                self.pending_flows.pop(fk, None)
            dg.flow_key = None

    def expire(self, now: float) -> None:
        """Drop datagrams older than the timeout (their (src, dst) go to ``expired``)."""
        while self.pending:
            key, dg = next(iter(self.pending.items()))
            if dg.ts + self.timeout > now:
                break
            del self.pending[key]
            self._forget(dg)
            self.expired.append((key[1], key[2]))
