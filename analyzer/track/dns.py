"""DNS transactions over time: queries, every response to them, and per-resolver baselines.

A transaction is keyed by (client ip, client port, server ip, server port, transport, txid,
qname, qtype); the query name is compared lowercased, so 0x20-randomised case still matches.
:meth:`DnsTracker.on_packet` takes decoded packets to or from port 53:

- UDP: the payload is one DNS message;
- TCP (RFC 1035 §4.2.2 / RFC 7766): each message carries a 2-byte length prefix; messages may
  be split over segments or several may share one. The pipeline passes segments in order per
  direction; a small per-direction buffer (at most one message plus one segment) joins them.
  Sequence numbers drop retransmitted bytes and reset the buffer after a gap. A message is
  attributed to the segment that completed it (its frame, time and IP header fields).
- ICMP/ICMPv6 destination-unreachable errors quoting a UDP datagram to port 53 are attached to
  the transaction they answer (the latest one of that client port and server that was queried
  before the error): the detector's ``answer_from_non_resolver`` evidence.

Every query transmission (retransmissions too) and EVERY response is kept with its frame, time,
IP TTL/hop limit, IP-ID, DF, DNS flags, RCODE, answers, anomalies and a fingerprint of the
message bytes (byte-identical duplicates have the same fingerprint). A response without a
matching query (capture started late) is a transaction whose ``query`` is None.

Transactions end when idle for ``Thresholds.dns_timeout`` seconds of capture time
(:meth:`~DnsTracker.expire`), at the end (:meth:`~DnsTracker.flush`), or when ``max_pending``
is exceeded (the least recently active are evicted, counted in ``evicted`` and returned by the
next expire/flush). The detector receives finished transactions plus a snapshot of the
resolver's baseline (:meth:`~DnsTracker.baseline_for`): IP TTLs, DF, header flag patterns and
recent IP-IDs over all of that resolver's responses so far.

Memory is bounded everywhere: pending transactions (``max_pending``), queries/responses per
transaction, answers per response, TCP streams and their buffers, resolvers with baselines,
and the address -> names map behind :meth:`~DnsTracker.names_for` (an LRU of ``max_names``).
"""
from __future__ import annotations

import hashlib
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Final, Optional

from analyzer.config import Thresholds
from analyzer.decode.dns import (
    FLAG_AA,
    FLAG_AD,
    FLAG_CD,
    FLAG_RA,
    FLAG_RD,
    FLAG_TC,
    DnsMessage,
    DnsRR,
    parse_dns,
)
from analyzer.decode.packet import (
    ICMPV6_DEST_UNREACH,
    ICMP_DEST_UNREACH,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    TCP_FIN,
    TCP_RST,
    TCP_SYN,
    Packet,
)
from analyzer.status import DecodeError

DNS_PORT: Final = 53
TCP_LENGTH_PREFIX: Final = 2  # RFC 1035 §4.2.2: two-octet message length before each message
MAX_DNS_MESSAGE: Final = 0xFFFF
SEQ_MOD: Final = 1 << 32
SEQ_HALF: Final = 1 << 31

# Bounds (memory, not detection thresholds).
MAX_QUERIES_PER_TXN: Final = 16  # query transmissions kept per transaction; more are only counted
MAX_RESPONSES_PER_TXN: Final = 16
MAX_ANSWERS_PER_RESPONSE: Final = 64
MAX_TCP_STREAMS: Final = 10_000  # per-direction TCP reassembly buffers (LRU)
MAX_TCP_BUFFER: Final = 2 * (TCP_LENGTH_PREFIX + MAX_DNS_MESSAGE)  # one message + one segment
MAX_RESOLVERS: Final = 10_000  # resolvers with a baseline (LRU)
BASELINE_IPID_SAMPLES: Final = 32  # most recent IP-IDs kept per resolver
MAX_NAMES: Final = 50_000  # addresses in the names_for map (LRU)
MAX_NAMES_PER_ADDR: Final = 8
FINGERPRINT_BYTES: Final = 8

# Header flag bits that describe the responder rather than the answer.
BASELINE_FLAG_BITS: Final = FLAG_AA | FLAG_RA

TxnKey = tuple[bytes, int, bytes, int, str, int, str, int]
FlowKey = tuple[bytes, int, bytes, int, str]


def fingerprint(message: bytes) -> str:
    """Short stable digest of a DNS message's bytes (duplicates have equal fingerprints)."""
    return hashlib.blake2b(message, digest_size=FINGERPRINT_BYTES).hexdigest()


@dataclass(init=False, frozen=True, slots=True)
class DnsQuery:
    """One transmission of the query (retransmissions are separate entries)."""

    frame: int
    ts: float
    input: int
    ttl: int
    ipid: int  # -1 when the packet has none (IPv6 without fragment header)
    df: bool
    flags: int  # DNS header flags word
    anomalies: tuple[str, ...]
    fingerprint: str
    size: int

    def __init__(
            self, frame: int, ts: float, input: int, ttl: int, ipid: int, df: bool, flags: int,
            anomalies: tuple[str, ...], fingerprint: str, size: int,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "ipid", ipid)
        object.__setattr__(self, "df", df)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "anomalies", anomalies)
        object.__setattr__(self, "fingerprint", fingerprint)
        object.__setattr__(self, "size", size)


@dataclass(init=False, frozen=True, slots=True)
class DnsResponse:
    frame: int
    ts: float
    input: int
    ttl: int
    ipid: int
    df: bool
    flags: int
    rcode: int
    answers: tuple[DnsRR, ...]  # answer section, at most MAX_ANSWERS_PER_RESPONSE
    authority: int  # number of authority records
    anomalies: tuple[str, ...]
    fingerprint: str
    size: int

    def __init__(
            self, frame: int, ts: float, input: int, ttl: int, ipid: int, df: bool, flags: int,
            rcode: int, answers: tuple[DnsRR, ...], authority: int, anomalies: tuple[str, ...],
            fingerprint: str, size: int,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "frame", frame)
        object.__setattr__(self, "ts", ts)
        object.__setattr__(self, "input", input)
        object.__setattr__(self, "ttl", ttl)
        object.__setattr__(self, "ipid", ipid)
        object.__setattr__(self, "df", df)
        object.__setattr__(self, "flags", flags)
        object.__setattr__(self, "rcode", rcode)
        object.__setattr__(self, "answers", answers)
        object.__setattr__(self, "authority", authority)
        object.__setattr__(self, "anomalies", anomalies)
        object.__setattr__(self, "fingerprint", fingerprint)
        object.__setattr__(self, "size", size)

    @property
    def aa(self) -> bool:
        return bool(self.flags & FLAG_AA)

    @property
    def tc(self) -> bool:
        return bool(self.flags & FLAG_TC)

    @property
    def rd(self) -> bool:
        return bool(self.flags & FLAG_RD)

    @property
    def ra(self) -> bool:
        return bool(self.flags & FLAG_RA)

    @property
    def ad(self) -> bool:
        return bool(self.flags & FLAG_AD)

    @property
    def cd(self) -> bool:
        return bool(self.flags & FLAG_CD)


@dataclass(frozen=True, slots=True)
class IcmpError:
    """An ICMP/ICMPv6 destination-unreachable quoting one of the transaction's queries."""

    frame: int
    ts: float
    input: int
    src: bytes  # who sent the error (the server itself for "port unreachable")
    icmp_type: int
    icmp_code: int
    ttl: int


@dataclass(init=False, frozen=True, slots=True)
class DnsTransaction:
    client: bytes
    client_port: int
    server: bytes
    server_port: int
    transport: str  # "udp" | "tcp"
    txid: int
    qname: str  # lowercased ("" when the message had no question)
    raw_qname: str
    qtype: int
    queries: tuple[DnsQuery, ...]
    responses: tuple[DnsResponse, ...]
    icmp_errors: tuple[IcmpError, ...]
    first_ts: float
    last_ts: float
    dropped: int = 0  # queries/responses beyond the per-transaction caps
    evicted: bool = False  # ended early by the max_pending cap

    def __init__(
            self, client: bytes, client_port: int, server: bytes, server_port: int, transport: str,
            txid: int, qname: str, raw_qname: str, qtype: int, queries: tuple[DnsQuery, ...],
            responses: tuple[DnsResponse, ...], icmp_errors: tuple[IcmpError, ...],
            first_ts: float, last_ts: float, dropped: int = 0, evicted: bool = False,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        object.__setattr__(self, "client", client)
        object.__setattr__(self, "client_port", client_port)
        object.__setattr__(self, "server", server)
        object.__setattr__(self, "server_port", server_port)
        object.__setattr__(self, "transport", transport)
        object.__setattr__(self, "txid", txid)
        object.__setattr__(self, "qname", qname)
        object.__setattr__(self, "raw_qname", raw_qname)
        object.__setattr__(self, "qtype", qtype)
        object.__setattr__(self, "queries", queries)
        object.__setattr__(self, "responses", responses)
        object.__setattr__(self, "icmp_errors", icmp_errors)
        object.__setattr__(self, "first_ts", first_ts)
        object.__setattr__(self, "last_ts", last_ts)
        object.__setattr__(self, "dropped", dropped)
        object.__setattr__(self, "evicted", evicted)

    @property
    def query(self) -> Optional[DnsQuery]:
        return self.queries[0] if self.queries else None


@dataclass(frozen=True, slots=True)
class ResolverBaseline:
    """What one resolver's responses looked like so far (all transactions, this one included).

    The detector subtracts the transaction's own responses before comparing.
    """

    server: bytes
    responses: int
    ttls: tuple[tuple[int, int], ...]  # (IP TTL, count), sorted by TTL
    df_set: int
    df_clear: int
    flag_patterns: tuple[tuple[int, int], ...]  # (flags & (AA|RA), count)
    ipids: tuple[tuple[int, int, int], ...]  # (input, frame, IP-ID), arrival order, recent only


class _Txn:
    __slots__ = ("key", "queries", "responses", "icmp", "first_ts", "last_ts", "dropped",
                 "raw_qname")

    def __init__(self, key: TxnKey, raw_qname: str, ts: float) -> None:
        self.key = key
        self.raw_qname = raw_qname
        self.queries: list[DnsQuery] = []
        self.responses: list[DnsResponse] = []
        self.icmp: list[IcmpError] = []
        self.first_ts = ts
        self.last_ts = ts
        self.dropped = 0

    def freeze(self, evicted: bool = False) -> DnsTransaction:
        c, cp, s, sp, transport, txid, qname, qtype = self.key
        return DnsTransaction(c, cp, s, sp, transport, txid, qname, self.raw_qname, qtype,
                              tuple(self.queries), tuple(self.responses), tuple(self.icmp),
                              self.first_ts, self.last_ts, self.dropped, evicted)


class _Resolver:
    __slots__ = ("responses", "ttls", "df", "flags", "ipids", "snapshot")

    def __init__(self) -> None:
        self.responses = 0
        self.ttls: dict[int, int] = {}  # at most 256 keys
        self.df = [0, 0]  # [clear, set]
        self.flags: dict[int, int] = {}  # at most 4 keys (AA x RA)
        self.ipids: deque[tuple[int, int, int]] = deque(maxlen=BASELINE_IPID_SAMPLES)
        # baseline_for's answer until the next response (transactions end in batches, and
        # between two of them the resolver usually sent nothing)
        self.snapshot: Optional[ResolverBaseline] = None

    def add(self, r: DnsResponse) -> None:
        self.snapshot = None
        self.responses += 1
        self.ttls[r.ttl] = self.ttls.get(r.ttl, 0) + 1
        self.df[1 if r.df else 0] += 1
        pat = r.flags & BASELINE_FLAG_BITS
        self.flags[pat] = self.flags.get(pat, 0) + 1
        if r.ipid >= 0:
            self.ipids.append((r.input, r.frame, r.ipid))


class _Stream:
    __slots__ = ("buf", "next_seq")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.next_seq: Optional[int] = None


class DnsTracker:
    """Follows DNS transactions; see the module docstring."""

    def __init__(self, thresholds: Optional[Thresholds] = None, max_pending: int = 200_000,
                 max_names: int = MAX_NAMES) -> None:
        self.th = thresholds if thresholds is not None else Thresholds()
        self.max_pending = max(1, max_pending)
        self.max_names = max(1, max_names)
        self._pending: OrderedDict[TxnKey, _Txn] = OrderedDict()
        self._by_flow: dict[FlowKey, dict[TxnKey, None]] = {}
        self._out: list[DnsTransaction] = []  # evicted, waiting for the next expire/flush
        self._streams: OrderedDict[tuple[bytes, int, bytes, int], _Stream] = OrderedDict()
        self._resolvers: OrderedDict[bytes, _Resolver] = OrderedDict()
        self._names: OrderedDict[bytes, tuple[str, ...]] = OrderedDict()
        # Counters for the pipeline's stats.
        self.transactions = 0
        self.evicted = 0
        self.messages = 0
        self.decode_errors: dict[str, int] = {}
        self.tcp_resyncs = 0

    # --- input ------------------------------------------------------------------------------
    def on_packet(self, pkt: Packet) -> None:
        """Feed one decoded packet (UDP/TCP to or from port 53, or an ICMP error about one)."""
        if pkt.proto == IPPROTO_UDP:
            if pkt.frag_more or pkt.frag_offset:
                self._count("dns_fragment")
                return
            if DNS_PORT not in (pkt.sport, pkt.dport) or not pkt.payload:
                return
            self._message(pkt, pkt.payload, "udp")
        elif pkt.proto == IPPROTO_TCP:
            if DNS_PORT in (pkt.sport, pkt.dport):
                self._tcp(pkt)
        elif pkt.proto in (IPPROTO_ICMP, IPPROTO_ICMPV6):
            self._icmp(pkt)

    def _count(self, reason: str) -> None:
        self.decode_errors[reason] = self.decode_errors.get(reason, 0) + 1

    def _tcp(self, pkt: Packet) -> None:
        skey = (pkt.src, pkt.sport, pkt.dst, pkt.dport)
        if pkt.flags & TCP_RST:
            self._streams.pop(skey, None)
            self._streams.pop((pkt.dst, pkt.dport, pkt.src, pkt.sport), None)
            return
        st = self._streams.get(skey)
        data_seq = pkt.seq
        if pkt.flags & TCP_SYN:
            st = _Stream()
            data_seq = (pkt.seq + 1) % SEQ_MOD
            st.next_seq = data_seq
            self._streams[skey] = st
            if len(self._streams) > MAX_TCP_STREAMS:
                self._streams.popitem(last=False)
        payload = pkt.payload
        if payload:
            if st is None:
                st = self._streams[skey] = _Stream()
                if len(self._streams) > MAX_TCP_STREAMS:
                    self._streams.popitem(last=False)
            else:
                self._streams.move_to_end(skey)
            payload = self._in_order(st, data_seq, payload)
            if payload:
                st.buf += payload
                self._drain(pkt, st)
        if pkt.flags & TCP_FIN:
            self._streams.pop(skey, None)

    def _in_order(self, st: _Stream, seq: int, payload: bytes) -> bytes:
        """The part of ``payload`` not seen before; resets the buffer after a gap."""
        end = (seq + len(payload)) % SEQ_MOD
        if st.next_seq is None:
            st.next_seq = end
            return payload
        delta = (seq - st.next_seq) % SEQ_MOD
        if delta >= SEQ_HALF:  # starts before next_seq: retransmission / overlap
            overlap = SEQ_MOD - delta
            if overlap >= len(payload):
                return b""
            st.next_seq = end
            return payload[overlap:]
        if delta:  # bytes missing: message boundaries are lost, restart at this segment
            st.buf.clear()
            self.tcp_resyncs += 1
        st.next_seq = end
        return payload

    def _drain(self, pkt: Packet, st: _Stream) -> None:
        buf = st.buf
        while len(buf) >= TCP_LENGTH_PREFIX:
            mlen = (buf[0] << 8) | buf[1]
            if mlen == 0:
                del buf[:TCP_LENGTH_PREFIX]
                self._count("dns_tcp_empty")
                continue
            if len(buf) < TCP_LENGTH_PREFIX + mlen:
                break
            msg = bytes(buf[TCP_LENGTH_PREFIX : TCP_LENGTH_PREFIX + mlen])
            del buf[: TCP_LENGTH_PREFIX + mlen]
            self._message(pkt, msg, "tcp")
        if len(buf) > MAX_TCP_BUFFER:
            buf.clear()
            self._count("dns_tcp_overflow")

    def _icmp(self, pkt: Packet) -> None:
        q = pkt.quoted
        unreach = ((pkt.proto == IPPROTO_ICMP and pkt.icmp_type == ICMP_DEST_UNREACH)
                   or (pkt.proto == IPPROTO_ICMPV6 and pkt.icmp_type == ICMPV6_DEST_UNREACH))
        if not unreach or q is None or q.proto != IPPROTO_UDP or q.dport != DNS_PORT:
            return
        keys = self._by_flow.get((q.src, q.sport, q.dst, q.dport, "udp"))
        if not keys:
            return
        err = IcmpError(pkt.frame, pkt.ts, pkt.input, pkt.src, pkt.icmp_type, pkt.icmp_code,
                        pkt.ttl)
        for key in reversed(keys):  # the latest transaction queried before the error
            txn = self._pending[key]
            if txn.queries and txn.queries[0].ts <= pkt.ts:
                if len(txn.icmp) < MAX_RESPONSES_PER_TXN:
                    txn.icmp.append(err)
                self._touch(txn, pkt.ts)
                return

    def on_udp(self, src: bytes, dst: bytes, sport: int, dport: int, frame: int, ts: float,
               input_idx: int, ttl: int, ipid: int, df: bool, payload: bytes) -> None:
        """:meth:`on_packet` for an unfragmented UDP datagram to or from port 53, given by its
        fields (the C flow table decodes these itself)."""
        if payload:
            self._message_at(src, sport, dst, dport, frame, ts, input_idx, ttl, ipid, df,
                             payload, "udp")

    def _message(self, pkt: Packet, msg: bytes, transport: str) -> None:
        self._message_at(pkt.src, pkt.sport, pkt.dst, pkt.dport, pkt.frame, pkt.ts, pkt.input,
                         pkt.ttl, pkt.ipid, pkt.df, msg, transport)

    def _message_at(self, src: bytes, sport: int, dst: bytes, dport: int, frame: int, ts: float,
                    input_idx: int, ttl: int, ipid: int, df: bool, msg: bytes,
                    transport: str) -> None:
        try:
            m = parse_dns(msg)
        except DecodeError as exc:
            self._count(exc.reason)
            return
        self.messages += 1
        if sport != dport:
            to_server = dport == DNS_PORT
        else:
            to_server = not m.qr
        anomalies = m.anomalies
        if m.qr == to_server:
            anomalies = anomalies + ("qr_mismatch",)
        fp = fingerprint(msg)
        if to_server:
            flow: FlowKey = (src, sport, dst, dport, transport)
            q = DnsQuery(frame, ts, input_idx, ttl, ipid, df, m.flags, anomalies, fp, len(msg))
            txn = self._txn(flow, m, ts, want_query=False)
            if len(txn.queries) < MAX_QUERIES_PER_TXN:
                txn.queries.append(q)
            else:
                txn.dropped += 1
            return
        flow = (dst, dport, src, sport, transport)
        r = DnsResponse(frame, ts, input_idx, ttl, ipid, df, m.flags,
                        m.rcode, m.answers[:MAX_ANSWERS_PER_RESPONSE], len(m.authority),
                        anomalies, fp, len(msg))
        txn = self._txn(flow, m, ts, want_query=True)
        if len(txn.responses) < MAX_RESPONSES_PER_TXN:
            txn.responses.append(r)
        else:
            txn.dropped += 1
        self._resolver(src).add(r)
        self._learn_names(txn.key[6], r.answers)

    # --- transactions -----------------------------------------------------------------------
    def _txn(self, flow: FlowKey, m: DnsMessage, ts: float, want_query: bool) -> _Txn:
        q = m.question
        if q is None and want_query:
            # A response without a question section: match the pending query by txid.
            keys = self._by_flow.get(flow)
            if keys:
                for k in reversed(keys):
                    cand = self._pending[k]
                    if k[5] == m.txid and cand.queries:
                        self._touch(cand, ts)
                        return cand
        qname, raw, qtype = (q.name, q.raw_name, q.qtype) if q is not None else ("", "", 0)
        key: TxnKey = (flow[0], flow[1], flow[2], flow[3], flow[4], m.txid, qname, qtype)
        found = self._pending.get(key)
        if found is not None:
            self._touch(found, ts)
            return found
        txn = _Txn(key, raw, ts)
        self._pending[key] = txn
        self._by_flow.setdefault(flow, {})[key] = None
        self.transactions += 1
        while len(self._pending) > self.max_pending:
            _k, old = self._pending.popitem(last=False)
            self._unindex(old)
            self.evicted += 1
            self._out.append(old.freeze(evicted=True))
        return txn

    def _touch(self, txn: _Txn, ts: float) -> None:
        if ts > txn.last_ts:
            txn.last_ts = ts
        if ts < txn.first_ts:
            txn.first_ts = ts
        self._pending.move_to_end(txn.key)

    def _unindex(self, txn: _Txn) -> None:
        k = txn.key
        flow = (k[0], k[1], k[2], k[3], k[4])
        keys = self._by_flow.get(flow)
        if keys is not None:
            keys.pop(k, None)
            if not keys:
                del self._by_flow[flow]

    def expire(self, now: float) -> list[DnsTransaction]:
        """Transactions idle for more than ``dns_timeout`` (capture time), plus evicted ones."""
        out, self._out = self._out, []
        limit = now - self.th.dns_timeout
        # The dict is ordered by last activity, so the stale ones are a prefix. When capture
        # time goes backwards (merged inputs) a stale entry behind a fresh one waits for a
        # later call; scanning only the prefix keeps each call cheap.
        while self._pending:
            key, txn = next(iter(self._pending.items()))
            if txn.last_ts >= limit:
                break
            del self._pending[key]
            self._unindex(txn)
            out.append(txn.freeze())
        return out

    def flush(self) -> list[DnsTransaction]:
        """Every remaining transaction (end of input)."""
        out, self._out = self._out, []
        for txn in self._pending.values():
            out.append(txn.freeze())
        self._pending.clear()
        self._by_flow.clear()
        self._streams.clear()
        return out

    @property
    def pending(self) -> int:
        return len(self._pending)

    # --- baselines and names ----------------------------------------------------------------
    def _resolver(self, server: bytes) -> _Resolver:
        st = self._resolvers.get(server)
        if st is None:
            st = self._resolvers[server] = _Resolver()
            if len(self._resolvers) > MAX_RESOLVERS:
                self._resolvers.popitem(last=False)
        else:
            self._resolvers.move_to_end(server)
        return st

    def baseline_for(self, server: bytes) -> Optional[ResolverBaseline]:
        """Snapshot of everything this resolver answered so far, or None if nothing."""
        st = self._resolvers.get(server)
        if st is None:
            return None
        if st.snapshot is None:
            st.snapshot = ResolverBaseline(
                server=server,
                responses=st.responses,
                ttls=tuple(sorted(st.ttls.items())),
                df_set=st.df[1],
                df_clear=st.df[0],
                flag_patterns=tuple(sorted(st.flags.items())),
                ipids=tuple(st.ipids),
            )
        return st.snapshot

    def _learn_names(self, qname: str, answers: tuple[DnsRR, ...]) -> None:
        q_ok = bool(qname) and qname != "."
        names = self._names
        for rr in answers:
            addr = rr.address
            if addr is None:
                continue
            # the query name and the owner name, in that order, once each, without "" and "."
            name = rr.name
            n_ok = bool(name) and name != "." and name != qname
            new = ((qname, name) if n_ok else (qname,)) if q_ok else ((name,) if n_ok else ())
            if not new:
                continue
            old = names.get(addr, ())
            if old[:len(new)] != new:  # else merging changes nothing (old has no repeats)
                names[addr] = tuple(dict.fromkeys(new + old))[:MAX_NAMES_PER_ADDR]
            names.move_to_end(addr)
            if len(names) > self.max_names:
                names.popitem(last=False)

    def names_for(self, addr: bytes) -> tuple[str, ...]:
        """Names whose A/AAAA answers contained ``addr`` (most recent first)."""
        return self._names.get(addr, ())
