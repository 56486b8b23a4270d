"""Bidirectional TCP/UDP flows with per-direction baselines and the flow's key packets.

A flow is keyed by its two endpoints and the transport. The *client* is the side that sent
the SYN (or, when the handshake was not captured, the receiver of a SYN/ACK, else the sender
of the first packet seen). For each direction the tracker keeps what the detectors compare a
suspicious packet against — the TTL/hop-limit histogram, the last IP-IDs, DF, windows, the
sequence space — plus the first payload segments (ClientHello reassembly, identification)
and a bounded list of *key packets* (handshake, FIN/RST, first payloads, packets around a
RST), which also feed the ladder diagrams.

Memory is bounded per flow (settings.max_events, first_payloads, first_payload_bytes[_server]) and
the table evicts idle flows (settings.idle_timeout) and the least recently active ones when
it is full (settings.max_flows).
"""
from __future__ import annotations

from collections import OrderedDict, deque
from typing import Final, Optional


from analyzer.config import Settings
from analyzer.decode.packet import (
    IPPROTO_TCP,
    PROTO_NAMES,
    TCP_ACK,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Packet,
)
from analyzer.model import format_endpoint

C2S: Final = 0
S2C: Final = 1
# Packets recorded as key packets after a flow's first RST (to see data/ACKs racing it).
AFTER_RST_EVENTS: Final = 24
# RSTs kept per direction as events (all are counted, with their TTLs): a capture can hold
# a flood of them on one flow, and memory stays bounded per flow.
MAX_RSTS_KEPT: Final = 64

# Key packet tuple layout (plain tuples in the hot path, see STYLE rule 6):
E_FRAME: Final = 0
E_TS: Final = 1
E_INPUT: Final = 2
E_DIR: Final = 3
E_FLAGS: Final = 4
E_SEQ: Final = 5
E_ACK: Final = 6
E_TTL: Final = 7
E_IPID: Final = 8
E_WIN: Final = 9
E_LEN: Final = 10
E_DF: Final = 11
E_KIND: Final = 12
# E_KIND: why the packet was kept
K_HANDSHAKE, K_PAYLOAD, K_CLOSE, K_AFTER_RST, K_CONTEXT = range(5)

BUSY_GAP_US: Final = 1_000_000

# Server ports above 1023 that identify the server side of a flow seen without its handshake.
SERVICE_PORTS: Final = frozenset((1194, 1701, 1723, 4500, 5222, 8388, 8443, 9001, 9030, 51820, 8080, 3128))
EPHEMERAL_MIN: Final = 1024


def _is_service(port: int) -> bool:
    return 0 < port < EPHEMERAL_MIN or port in SERVICE_PORTS


Event = tuple[int, float, int, int, int, int, int, int, int, int, int, bool, int]


class Direction:
    """What one side of a flow sent."""

    __slots__ = (
        "packets", "bytes", "payload_bytes", "ttls", "df_set", "df_clear", "isn", "payloads",
        "kept_bytes", "payload_packets", "syn_count", "fin_frame", "rsts", "rst_count", "rst_ttls",
        "first_ts", "last_ts", "last", "synack_count", "unanswered", "unanswered_since",
        "busy_us",
    )

    def __init__(
            self, packets: int = 0, bytes_: int = 0, payload_bytes: int = 0,
            ttls: Optional[dict[int, int]] = None, df_set: int = 0, df_clear: int = 0,
            isn: Optional[int] = None, payloads: Optional[list[tuple[int, int, bytes, float]]] = None,
            kept_bytes: int = 0, payload_packets: int = 0, syn_count: int = 0, fin_frame: int = 0,
            rsts: Optional[list[Event]] = None, rst_count: int = 0,
            rst_ttls: Optional[dict[int, int]] = None, first_ts: float = 0.0, last_ts: float = 0.0,
            last: Optional[Event] = None, synack_count: int = 0, unanswered: int = 0,
            unanswered_since: float = 0.0, busy_us: int = 0,
    ) -> None:
        # Every field is a parameter (in __slots__ order) so that the C flow table builds a
        # finished Direction with one call: cheaper than setting 22 attributes one by one.
        self.packets = packets
        self.bytes = bytes_
        self.payload_bytes = payload_bytes
        self.ttls: dict[int, int] = ttls if ttls is not None else {}
        self.df_set = df_set
        self.df_clear = df_clear
        self.isn: Optional[int] = isn
        # (seq, frame, data, ts)
        self.payloads: list[tuple[int, int, bytes, float]] = payloads if payloads is not None else []
        self.kept_bytes = kept_bytes
        self.payload_packets = payload_packets
        self.syn_count = syn_count
        self.fin_frame = fin_frame
        self.rsts: list[Event] = rsts if rsts is not None else []  # the first MAX_RSTS_KEPT RSTs of this side
        self.rst_count = rst_count  # all of them
        self.rst_ttls: dict[int, int] = rst_ttls if rst_ttls is not None else {}  # TTL histogram of all of them
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.last: Optional[Event] = last  # the most recent packet of this side
        self.synack_count = synack_count
        # packets of this side since the other side last sent anything, and when they began
        self.unanswered = unanswered
        self.unanswered_since = unanswered_since
        # time this side was sending: gaps between its packets, each capped at BUSY_GAP_US
        # (idle periods do not count), in integer microseconds so both paths sum exactly
        self.busy_us = busy_us

    def genuine_ttls(self) -> dict[int, int]:
        """TTL histogram of this side's packets other than RSTs (which may be forged)."""
        counts = dict(self.ttls)
        for t, n in self.rst_ttls.items():
            if t in counts:
                counts[t] -= n
                if counts[t] <= 0:
                    del counts[t]
        return counts

    def main_ttl(self) -> Optional[int]:
        """Most frequent TTL among this side's non-RST packets (ties: the lowest TTL)."""
        counts = self.genuine_ttls() if self.rst_ttls else self.ttls  # no copy without RSTs
        if len(counts) == 1:
            return next(iter(counts))  # the usual case: one TTL per side
        if not counts:
            return None
        return max(counts.items(), key=lambda kv: (kv[1], -kv[0]))[0]


class Flow:
    """A bidirectional TCP or UDP flow. ``Flow()`` is blank: :func:`new_flow` starts one from
    its first packet, and the C flow table (analyzer/_ctrack.c) fills in a blank one."""

    __slots__ = (
        "key", "proto", "client", "cport", "server", "sport", "input", "first_frame",
        "first_ts", "last_ts", "packets", "bytes", "dirs", "events", "closed", "hot",
        "after_rst", "syn_seen", "synack_seen", "ended", "icmp",
        "evicted", "seq",
    )

    def __init__(
            self, key: tuple[bytes, int, bytes, int, int] = (b"", 0, b"", 0, 0), proto: int = 0,
            client: bytes = b"", cport: int = 0, server: bytes = b"", sport: int = 0, input: int = 0,
            first_frame: int = 0, first_ts: float = 0.0, last_ts: float = 0.0, packets: int = 0,
            bytes_: int = 0, dirs: Optional[tuple[Direction, Direction]] = None,
            events: Optional[list[Event]] = None, closed: bool = False, hot: bool = False,
            after_rst: int = 0, syn_seen: bool = False, synack_seen: bool = False,
            ended: float = 0.0, icmp: Optional[list[tuple[int, float, int, int, int, bytes]]] = None,
            evicted: bool = False, seq: int = 0,
    ) -> None:
        # Every field is a parameter (in __slots__ order), as for Direction: the C flow table
        # builds a finished flow with one call.
        self.key = key
        self.proto = proto
        self.client = client
        self.cport = cport
        self.server = server
        self.sport = sport
        self.input = input
        self.first_frame = first_frame
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.packets = packets
        self.bytes = bytes_
        self.dirs: tuple[Direction, Direction] = dirs if dirs is not None else (Direction(), Direction())
        self.events: list[Event] = events if events is not None else []
        self.closed = closed  # RST seen or both FINs
        self.hot = hot  # a RST was seen: keep packets after it
        self.after_rst = after_rst
        self.syn_seen = syn_seen
        self.synack_seen = synack_seen
        self.ended = ended
        # frame, ts, input, type, code, from
        self.icmp: list[tuple[int, float, int, int, int, bytes]] = icmp if icmp is not None else []
        self.evicted = evicted
        self.seq = seq  # creation order, for deterministic ids

    # -- naming -------------------------------------------------------------------------
    @property
    def proto_name(self) -> str:
        return PROTO_NAMES.get(self.proto, str(self.proto))

    @property
    def client_ep(self) -> str:
        return format_endpoint(self.client, self.cport)

    @property
    def server_ep(self) -> str:
        return format_endpoint(self.server, self.sport)

    @property
    def flow_id(self) -> str:
        return f"f{self.input}-{self.first_frame}"

    def stream(self, d: int, limit: int = 16_384) -> bytes:
        """Reassembled first bytes of direction d from the kept segments (TCP), or the
        concatenated first datagrams (UDP). Overlaps and retransmissions are de-duplicated."""
        segs = self.dirs[d].payloads
        if not segs:
            return b""
        if self.proto != IPPROTO_TCP:
            return b"".join(s[2] for s in segs)[:limit]
        base = self.dirs[d].isn
        start = (base + 1) & 0xFFFFFFFF if base is not None else min(s[0] for s in segs)
        out = bytearray()
        # in stream order, then frame order (no closure: mypyc cannot compile one here)
        order = sorted([((s[0] - start) & 0xFFFFFFFF, s[1], i) for i, s in enumerate(segs)])
        for rel, _frame, i in order:
            data = segs[i][2]
            if rel > len(out):
                break  # a hole: stop at the contiguous prefix
            piece = data[len(out) - rel:] if rel < len(out) else data
            out += piece
            if len(out) >= limit:
                break
        return bytes(out[:limit])

    def datagrams(self, d: int) -> tuple[bytes, ...]:
        return tuple(s[2] for s in self.dirs[d].payloads)

    def rel_seq(self, d: int, seq: int) -> int:
        isn = self.dirs[d].isn
        return (seq - isn) & 0xFFFFFFFF if isn is not None else seq


def new_flow(key: tuple[bytes, int, bytes, int, int], pkt: Packet, seq: int) -> Flow:
    """The flow that ``pkt`` (its first packet) starts, the ``seq``-th of its table."""
    flow = Flow()
    flow.key = key
    flow.proto = pkt.proto
    # Orientation: the SYN sender is the client, the SYN/ACK sender the server; without a
    # handshake (capture started mid-flow, UDP), the side on a service port is the server,
    # and failing that the first sender is the client.
    syn = pkt.flags & (TCP_SYN | TCP_ACK) if pkt.proto == IPPROTO_TCP else 0
    if syn == TCP_SYN | TCP_ACK or (syn != TCP_SYN and _is_service(pkt.sport) and not _is_service(pkt.dport)):
        flow.client, flow.cport, flow.server, flow.sport = pkt.dst, pkt.dport, pkt.src, pkt.sport
    else:
        flow.client, flow.cport, flow.server, flow.sport = pkt.src, pkt.sport, pkt.dst, pkt.dport
    flow.input = pkt.input
    flow.first_frame = pkt.frame
    flow.first_ts = pkt.ts
    flow.last_ts = pkt.ts
    flow.seq = seq
    return flow


class FlowTable:
    """Flows by canonical key, ordered by last activity for O(1) idle expiry."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.flows: OrderedDict[tuple[bytes, int, bytes, int, int], Flow] = OrderedDict()
        # closed flows waiting out the linger: (ended, key, seq). Not the flow itself: one that
        # left the table (evicted, reused) must not be kept alive here, as a file can close any
        # number of flows within one linger window; (key, seq) finds it if it is still there
        self.closing: deque[tuple[float, tuple[bytes, int, bytes, int, int], int]] = deque()
        self.reused: list[Flow] = []  # flows ended because a new connection took their 4-tuple
        # flows with an IP datagram being reassembled (set by the pipeline's Reassembler)
        self.frag_pending: dict[tuple[bytes, int, bytes, int, int], int] = {}
        self.created = 0
        self.evicted = 0
        self._max_events = settings.max_events
        self._first_payloads = settings.first_payloads
        # per direction (client, server)
        self._limits = (settings.first_payload_bytes, settings.first_payload_bytes_server)
        self._linger = settings.thresholds.close_linger

    def __len__(self) -> int:
        return len(self.flows)

    def lookup(self, pkt: Packet) -> tuple[Flow, int]:
        """Find or create the flow of pkt; return it with the packet's direction."""
        a = (pkt.src, pkt.sport)
        b = (pkt.dst, pkt.dport)
        key = (pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.proto) if a <= b else (
            pkt.dst, pkt.dport, pkt.src, pkt.sport, pkt.proto)
        flows = self.flows
        flow = flows.get(key)
        if flow is None:
            flow = new_flow(key, pkt, self.created)
            self.created += 1
            flows[key] = flow
        else:
            if (flow.closed and pkt.proto == IPPROTO_TCP and pkt.flags & (TCP_SYN | TCP_ACK) == TCP_SYN
                    and pkt.seq != flow.dirs[C2S].isn):
                # the 4-tuple is reused by a new connection: end the old flow
                del flows[key]
                self.reused.append(flow)
                flow = new_flow(key, pkt, self.created)
                self.created += 1
                flows[key] = flow
            else:
                flows.move_to_end(key)
        d = C2S if (pkt.src == flow.client and pkt.sport == flow.cport) else S2C
        return flow, d

    def observe(self, pkt: Packet) -> Flow:
        flow, d = self.lookup(pkt)
        if flow.proto == IPPROTO_TCP:
            self._tcp(flow, d, pkt)
        else:
            self._udp(flow, d, pkt)
        return flow

    # -- TCP ------------------------------------------------------------------------------
    def _tcp(self, flow: Flow, d: int, pkt: Packet) -> None:
        ds = flow.dirs[d]
        flags = pkt.flags
        plen = len(pkt.payload)
        ts = pkt.ts
        # --- aggregates: what every packet does. The batch fast path (track/fastpath.py)
        # reproduces exactly this block for packets that are not key packets; keep in step.
        flow.packets += 1
        flow.bytes += pkt.ip_len
        if ts > flow.last_ts:
            flow.last_ts = ts
        ds.packets += 1
        ds.bytes += pkt.ip_len
        if ds.packets == 1:
            ds.first_ts = ts
        if ts > ds.last_ts:
            ds.last_ts = ts
        ds.unanswered += 1
        if ds.unanswered == 1:
            ds.unanswered_since = ts
        flow.dirs[1 - d].unanswered = 0
        prev = ds.last
        if prev is not None:
            gap = round((ts - prev[1]) * 1e6)
            if gap > 0:
                ds.busy_us += gap if gap < BUSY_GAP_US else BUSY_GAP_US
        ttls = ds.ttls
        ttls[pkt.ttl] = ttls.get(pkt.ttl, 0) + 1
        if pkt.df:
            ds.df_set += 1
        else:
            ds.df_clear += 1
        if plen:
            ds.payload_packets += 1
            ds.payload_bytes += plen
        ev: Event = (pkt.frame, ts, pkt.input, d, flags, pkt.seq, pkt.ack, pkt.ttl, pkt.ipid,
                     pkt.win, plen, pkt.df, K_CONTEXT)
        # --- key packets: handshake, first payloads, FIN/RST, packets after a RST ---
        kind = -1
        if flags & TCP_SYN:
            kind = K_HANDSHAKE
            if flags & TCP_ACK:
                ds.synack_count += 1
                flow.synack_seen = True
            else:
                ds.syn_count += 1
                flow.syn_seen = True
            if ds.isn is None or ds.syn_count + ds.synack_count == 1:
                ds.isn = pkt.seq
        limit = self._limits[d]
        if plen and len(ds.payloads) < self._first_payloads and ds.kept_bytes < limit:
            data = bytes(pkt.payload[: limit - ds.kept_bytes])
            ds.payloads.append((pkt.seq, pkt.frame, data, ts))
            ds.kept_bytes += len(data)
            kind = K_PAYLOAD
        if flags & TCP_FIN:
            kind = K_CLOSE
            if not ds.fin_frame:
                ds.fin_frame = pkt.frame
        if flags & TCP_RST:
            kind = K_CLOSE
            ds.rst_count += 1
            ds.rst_ttls[pkt.ttl] = ds.rst_ttls.get(pkt.ttl, 0) + 1
            if len(ds.rsts) < MAX_RSTS_KEPT:  # a flood of RSTs must not grow memory
                ds.rsts.append(ev)
            if not flow.hot:
                flow.hot = True
                # context: the last packet each side sent before the first RST
                recent = {e[E_FRAME] for e in flow.events[-8:]}
                for other in flow.dirs:
                    if other.last is not None and other.last[E_FRAME] not in recent:
                        self._add_event(flow, other.last)
        elif kind < 0 and flow.hot and flow.after_rst < AFTER_RST_EVENTS:
            kind = K_AFTER_RST
        if flow.hot and not flags & TCP_RST:
            flow.after_rst += 1
        if kind >= 0:
            self._add_event(flow, ev[:E_KIND] + (kind,))  # type: ignore[arg-type]
        ds.last = ev
        if not flow.closed and (flags & TCP_RST or (flow.dirs[0].fin_frame and flow.dirs[1].fin_frame)):
            flow.closed = True
            flow.ended = ts
            self.closing.append((ts, flow.key, flow.seq))

    def _add_event(self, flow: Flow, ev: Event) -> None:
        evs = flow.events
        if len(evs) < self._max_events or (ev[E_FLAGS] & TCP_RST and len(evs) < 2 * self._max_events):
            evs.append(ev)

    # -- UDP and others ----------------------------------------------------------------------
    def _udp(self, flow: Flow, d: int, pkt: Packet) -> None:
        ds = flow.dirs[d]
        plen = len(pkt.payload)
        ts = pkt.ts
        # aggregates (mirrored by track/fastpath.py)
        flow.packets += 1
        flow.bytes += pkt.ip_len
        if ts > flow.last_ts:
            flow.last_ts = ts
        ds.packets += 1
        ds.bytes += pkt.ip_len
        if ds.packets == 1:
            ds.first_ts = ts
        if ts > ds.last_ts:
            ds.last_ts = ts
        ds.unanswered += 1
        if ds.unanswered == 1:
            ds.unanswered_since = ts
        flow.dirs[1 - d].unanswered = 0
        prev = ds.last
        if prev is not None:
            gap = round((ts - prev[1]) * 1e6)
            if gap > 0:
                ds.busy_us += gap if gap < BUSY_GAP_US else BUSY_GAP_US
        ds.ttls[pkt.ttl] = ds.ttls.get(pkt.ttl, 0) + 1
        if pkt.df:
            ds.df_set += 1
        else:
            ds.df_clear += 1
        ds.payload_packets += 1
        ds.payload_bytes += plen
        ev: Event = (pkt.frame, ts, pkt.input, d, 0, 0, 0, pkt.ttl, pkt.ipid, 0, plen, pkt.df, K_PAYLOAD)
        limit = self._limits[d]
        if len(ds.payloads) < self._first_payloads and ds.kept_bytes < limit:
            data = bytes(pkt.payload[: limit - ds.kept_bytes])
            ds.payloads.append((0, pkt.frame, data, ts))
            ds.kept_bytes += len(data)
            self._add_event(flow, ev)
        ds.last = ev

    def attach_icmp(self, pkt: Packet) -> Optional[Flow]:
        """Attach an ICMP error to the flow whose packet it quotes."""
        q = pkt.quoted
        if q is None or q.proto not in (6, 17):
            return None
        a = (q.src, q.sport)
        b = (q.dst, q.dport)
        key = (q.src, q.sport, q.dst, q.dport, q.proto) if a <= b else (q.dst, q.dport, q.src, q.sport, q.proto)
        flow = self.flows.get(key)
        if flow is None:
            return None
        if len(flow.icmp) < 16:
            flow.icmp.append((pkt.frame, pkt.ts, pkt.input, pkt.icmp_type, pkt.icmp_code, pkt.src))
        flow.last_ts = max(flow.last_ts, pkt.ts)
        return flow

    # -- ending flows ----------------------------------------------------------------------
    def expire(self, now: float) -> list[Flow]:
        """Flows that are over: closed and lingered, idle, or pushed out by the cap."""
        out: list[Flow] = self.reused
        self.reused = []
        closing = self.closing
        linger = self._linger
        while closing and closing[0][0] + linger <= now:
            _ended, key, seq = closing.popleft()
            f = self.flows.get(key)
            if f is None or f.seq != seq:
                continue  # finished already
            if f.last_ts + linger <= now:
                del self.flows[key]
                out.append(f)
            else:
                f.ended = f.last_ts
                closing.append((f.ended, key, seq))
        idle = self.settings.idle_timeout
        flows = self.flows
        while flows:
            key, f = next(iter(flows.items()))
            if f.last_ts + idle > now:
                break
            del flows[key]
            out.append(f)
        while len(flows) > self.settings.max_flows:
            key, f = flows.popitem(last=False)
            f.evicted = True
            self.evicted += 1
            out.append(f)
        return out

    def flush(self) -> list[Flow]:
        out = self.reused + sorted(self.flows.values(), key=lambda f: f.seq)
        self.reused = []
        self.flows.clear()
        self.closing.clear()
        return out
