"""Wiring: source batches -> decode -> track -> detect -> verdicts, with the run's counters.

One :class:`Analyzer` serves offline files and live capture alike: a source hands it
:class:`~analyzer.sources.files.Batch` objects; flows and DNS transactions are finished as
capture time passes (idle timeouts, closed flows after a linger), and their findings collected.
Verdicts are decided at the end of each input (offline) or whenever the caller asks (live).
"""
from __future__ import annotations

import gc
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, Callable, Final, Iterable, Iterator, Optional, TYPE_CHECKING

from analyzer.config import Settings, reduce_by_fields
from analyzer.decode.packet import (
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_TCP,
    IPPROTO_UDP,
    decode_frame,
)
from analyzer.detect import FLOW_DETECTORS
from analyzer.detect import residual as residual_detector
from analyzer.detect.context import Block, Context
from analyzer.detect.dns_injection import detect_dns
from analyzer.detect.throttling import download_rate
from analyzer.model import (
    FAILED,
    INCOMPLETE,
    INTERFERED,
    OK,
    TARGET_TEXT,
    TECHNIQUE_TEXT,
    Finding,
    InputInfo,
    Stats,
    Technique,
    Trigger,
    Verdict,
    format_ip,
)
from analyzer.sources.files import Batch, BatchLists, open_reader
from analyzer.status import DecodeError, InputError
from analyzer.track.dns import DnsTracker, DnsTransaction
from analyzer.track.facts import FlowInfo, describe
from analyzer.track.ctable import native_table
from analyzer.track.reassembly import Reassembler
from analyzer.track.flows import C2S, S2C, Flow, FlowTable
from analyzer.identify import resolve_target
from analyzer.verdict import MIN_VERDICT_CONFIDENCE, can_become_verdict, decide

if TYPE_CHECKING:
    import numpy as np

    from analyzer._ctrack import Table

DNS_PORT: Final = 53
# With the automatic cyclic collector paused (see manual_gc), collect every this many packets.
GC_EVERY_PACKETS: Final = 1 << 22
TRIGGER_KINDS: Final = {Trigger.SNI, Trigger.HTTP_HOST, Trigger.QUIC_SNI, Trigger.PROTOCOL}


@dataclass(init=False, slots=True)
class FlowRecord:
    id: str
    input: int
    proto: str
    client: str
    server: str
    target: str
    app: Optional[str]
    domain: Optional[str]
    packets: int
    bytes: int
    first_ts: float
    last_ts: float
    outcome: str

    def __init__(
            self, id: str, input: int, proto: str, client: str, server: str, target: str,
            app: Optional[str], domain: Optional[str], packets: int, bytes: int, first_ts: float,
            last_ts: float, outcome: str,
    ) -> None:
        # written out: see HOT_RECORDS in analyzer/model.py
        self.id = id
        self.input = input
        self.proto = proto
        self.client = client
        self.server = server
        self.target = target
        self.app = app
        self.domain = domain
        self.packets = packets
        self.bytes = bytes
        self.first_ts = first_ts
        self.last_ts = last_ts
        self.outcome = outcome

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:  # (--jobs: sent by the workers)
        return reduce_by_fields(self)


@dataclass(slots=True)
class Result:
    inputs: list[InputInfo] = field(default_factory=list)
    verdicts: list[Verdict] = field(default_factory=list)
    flows: list[FlowRecord] = field(default_factory=list)
    stats: Stats = field(default_factory=Stats)


class Analyzer:
    def __init__(self, settings: Optional[Settings] = None,
                 on_verdict: Optional[Callable[[Verdict], None]] = None) -> None:
        self.settings = settings or Settings()
        self.result = Result()
        self.stats = self.result.stats
        self.on_verdict = on_verdict
        self._input = -1
        self._since_gc = 0
        self.native_packets = 0  # packets the C table decoded and tracked itself
        self._reset_state()

    # -- per input state ------------------------------------------------------------------
    def _reset_state(self) -> None:
        self.frags = Reassembler()
        # the C table when built (it decodes and tracks plain TCP/UDP frames itself), else the
        # Python one with the numpy fast path; Settings.reference: Python, per packet
        self.ctable = native_table(self.settings)
        self.table: FlowTable | Table = self.ctable if self.ctable is not None else FlowTable(self.settings)
        if isinstance(self.table, FlowTable):
            self.table.frag_pending = self.frags.pending_flows
        self.dns = DnsTracker(self.settings.thresholds, max_pending=self.settings.max_dns)
        self.ctx = Context(self.settings.thresholds)
        self.findings: list[Finding] = []
        self._now = 0.0
        self._flows_mark = len(self.result.flows)

    @property
    def answered_ips(self) -> dict[str, int]:
        """Flows answered per server address so far (cross-flow control for verdicts)."""
        return self.ctx.controls.answered_ips

    def begin_input(self, info: InputInfo) -> int:
        self.result.inputs.append(info)
        self._input = len(self.result.inputs) - 1
        self._reset_state()
        return self._input

    # -- packets ----------------------------------------------------------------------------
    def feed(self, batch: Batch) -> None:
        """Decode and track every packet of a batch, in chunks of ``settings.chunk_packets``;
        flows are expired at chunk boundaries. Three paths give identical results: the C flow
        table when it is built (it decodes and tracks the plain TCP/UDP frames itself and
        hands every other frame back to :meth:`_frame`), else the numpy batch path for the
        boring packets, and ``settings.reference``: the per-packet path on everything."""
        n = len(batch.offsets)
        info = self.result.inputs[self._input]
        if self.settings.shard[0] == 0:
            self.stats.packets += n
            info.packets += n
        self._since_gc += n
        if self._since_gc >= GC_EVERY_PACKETS:
            self._since_gc = 0
            if not gc.isenabled():
                gc.collect()
        chunk = max(1, self.settings.chunk_packets)
        for start in range(0, n, chunk):
            end = min(n, start + chunk)
            if self.ctable is not None:  # None in reference mode
                last = self._native_chunk(self.ctable, batch, start, end, info)
            else:
                if self.settings.reference:
                    lists = batch.lists()
                    for i in range(start, end):
                        self._packet(batch, lists, i)
                else:
                    self._fast_chunk(batch, start, end, info)
                last = float(batch.arrays()[3][start:end].max())
            # capture time advances with every record of the chunk (the same in every shard)
            if last > self._now:
                self._now = last
            self.expire(self._now)

    def _native_chunk(self, table: Table, batch: Batch, start: int, end: int, info: InputInfo) -> float:
        """The C table takes the plain TCP/UDP frames; the others come back, in order, to
        the per-packet path. Returns the latest time stamp of the chunk's records."""
        offs, caps, wls, tss, lts = batch.columns()
        k, nshards = self.settings.shard
        n, tmin, tmax, last = table.feed(batch.buf, offs, caps, wls, tss, lts, start, end,
                                         batch.first_frame, self._input, k, nshards, self._frame,
                                         self._dns_udp)
        if n:
            self.native_packets += n
            self.stats.decoded += n
            self._saw_time(info, tmin, tmax)
        return last

    def _fast_chunk(self, batch: Batch, start: int, end: int, info: InputInfo) -> None:
        from analyzer.decode.fast import extract  # numpy: imported only for this path
        from analyzer.track.fastpath import plan_chunk

        offs, caps, _wl, tss, lts = batch.arrays()
        fields = extract(batch.buf, offs, caps, lts, start, end)
        ts = tss[start:end]
        ignore = None
        k, nshards = self.settings.shard
        if nshards > 1:
            # another shard's flows: not even decoded here (DNS still feeds every tracker)
            mine = shard_of_words(fields.srcw, fields.dstw, nshards) == k
            dns = (fields.sport == DNS_PORT) | (fields.dport == DNS_PORT)
            ignore = fields.keyable & ~mine & ~dns
            fields.keyable = fields.keyable & mine
            fields.candidate = fields.candidate & mine
        assert isinstance(self.table, FlowTable)
        plan, nb, tmin, tmax = plan_chunk(self.table, fields, ts, batch.first_frame + start, self._input, ignore)
        if nb:
            self.stats.decoded += nb
            self._saw_time(info, tmin, tmax)
        packet = self._packet
        lists = batch.lists()
        plan.apply(lambda i: packet(batch, lists, start + i))
        self.stats.decoded -= plan.fallback

    def _saw_time(self, info: InputInfo, tmin: float, tmax: float) -> None:
        """Decoded packets between tmin and tmax: the input's time span."""
        if info.first_ts is None or tmin < info.first_ts:
            info.first_ts = tmin
        if info.last_ts is None or tmax > info.last_ts:
            info.last_ts = tmax

    def _packet(self, batch: Batch, lists: BatchLists, i: int) -> None:
        """The per-packet (reference) path for frame i of the batch.

        With ``settings.shard = (k, n)`` this process owns the packets whose address pair
        hashes to k (see :func:`shard_of`): only those are tracked and counted. DNS packets
        (and ICMP errors about DNS) are fed to every shard's DNS tracker, so that names and
        resolver baselines are the same everywhere; each transaction is judged by its owner.
        Damage counters belong to shard 0."""
        offsets, caplens, wirelens, tss, linktypes = lists
        self._frame(batch.buf, batch.first_frame + i, offsets[i], caplens[i], wirelens[i], tss[i],
                    linktypes[i])

    def _dns_udp(self, src: bytes, dst: bytes, sport: int, dport: int, frame: int, ts: float,
                 ttl: int, ipid: int, df: bool, payload: bytes, owned: bool) -> None:
        """A UDP datagram to or from port 53 that the C table decoded (and tracked if owned):
        what :meth:`_frame` does after ``table.observe`` for such a packet."""
        try:
            self.dns.on_udp(src, dst, sport, dport, frame, ts, self._input, ttl, ipid, df, payload)
        except Exception:
            if self.settings.strict:
                raise
            if owned:
                self.stats.skip("dns_error")

    def _frame(self, buf: bytes, frame: int, offset: int, caplen: int, wirelen: int, ts: float,
               lt: int) -> None:
        """:meth:`_packet` with the record's fields (the C table calls this directly)."""
        stats = self.stats
        k, nshards = self.settings.shard
        if lt < 0:
            return  # a packet block the reader could not use: it counted the reason already
        try:
            pkt = decode_frame(buf, offset, caplen, lt)
        except DecodeError as e:
            if k == 0:
                stats.skip(e.reason)
            return
        except Exception:  # a decoder bug must not end the run on hostile input
            if self.settings.strict:
                raise
            if k == 0:
                stats.skip("decoder_error")
            return
        proto = pkt.proto
        q = pkt.quoted
        if nshards > 1:
            if q is not None and (proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6):
                owned = shard_of(q.src, q.dst, nshards) == k
            else:
                owned = shard_of(pkt.src, pkt.dst, nshards) == k
        else:
            owned = True
        pkt.frame = frame
        pkt.ts = ts
        pkt.input = self._input
        pkt.wirelen = wirelen
        if owned:
            stats.decoded += 1
            self._saw_time(self.result.inputs[self._input], ts, ts)
        if pkt.frag:
            # every shard reassembles (a datagram may be DNS, which all shards need)
            if owned:
                stats.fragments += 1
            whole = self.frags.add(pkt)
            if whole is None:
                return
            whole.frame, whole.ts, whole.input, whole.wirelen = pkt.frame, ts, pkt.input, pkt.wirelen
            pkt = whole
            proto = pkt.proto
        dns = pkt.sport == DNS_PORT or pkt.dport == DNS_PORT
        table = self.table
        if proto == IPPROTO_TCP or proto == IPPROTO_UDP:
            if owned:
                table.observe(pkt)
            if dns:
                try:
                    self.dns.on_packet(pkt)
                except Exception:
                    if self.settings.strict:
                        raise
                    if owned:
                        stats.skip("dns_error")
        elif proto == IPPROTO_ICMP or proto == IPPROTO_ICMPV6:
            if q is not None:
                if owned:
                    table.attach_icmp(pkt)
                if q.sport == DNS_PORT or q.dport == DNS_PORT:
                    self.dns.on_packet(pkt)
        elif owned:
            table.observe(pkt)  # ESP, GRE, ...: tracked as port-less flows

    def expire_fragments_counted(self) -> None:
        if self.frags.expired:
            k, n = self.settings.shard
            for src, dst in self.frags.expired:
                if n == 1 or shard_of(src, dst, n) == k:
                    self.stats.skip("fragment_incomplete")
            self.frags.expired.clear()

    def expire(self, now: float) -> None:
        self.frags.expire(now)
        self.expire_fragments_counted()
        for flow in self.table.expire(now):
            self._finish_flow(flow)
        for txn in self.dns.expire(now):
            self._finish_dns(txn)

    # -- finishing ------------------------------------------------------------------------
    def _finish_flow(self, flow: Flow) -> None:
        stats = self.stats
        stats.flows += 1
        if flow.evicted:
            stats.flows_evicted += 1
        names = self.dns.names_for(flow.server)
        try:
            info = describe(flow, names)
        except Exception:
            if self.settings.strict:
                raise
            stats.skip("flow_describe_error")
            return
        ctx = self.ctx
        findings: list[Finding] = []
        try:
            findings = residual_detector.detect(flow, info, ctx)
            if not findings:
                for det in FLOW_DETECTORS:
                    findings.extend(det(flow, info, ctx))
        except Exception:
            if self.settings.strict:
                raise
            stats.skip("detector_error")
        self._update_context(flow, info, findings)
        for f in findings:
            if not can_become_verdict(f):
                self.stats.weak_findings += 1
                continue
            f = replace(f, link_key=f"{flow.flow_id}:{TECHNIQUE_TEXT[f.technique]}")
            if info.ech and f.trigger in (Trigger.SNI, Trigger.QUIC_SNI):
                # ECH (or GREASE ECH): the visible SNI is the outer, public name
                f = replace(f, notes=f.notes + (
                    "the ClientHello carries an encrypted_client_hello extension: the SNI shown "
                    "is the outer (public) name, which is what an on-path censor can match",))
            if f.trigger in TRIGGER_KINDS:
                block = Block(f.first_ts, f.link_key or "", TECHNIQUE_TEXT[f.technique], f.domain)
                main = flow.dirs[S2C].main_ttl()
                if main is not None:
                    block.server_ttls[main] = 1
                ctx.record_block(flow.client, flow.server, flow.sport, flow.proto, block)
            self.findings.append(f)
        outcome = self._outcome(flow, info, [])
        self.result.flows.append(FlowRecord(
            id=flow.flow_id, input=flow.input, proto=flow.proto_name, client=flow.client_ep,
            server=flow.server_ep,
            target=TARGET_TEXT[resolve_target(info.ident.target, info.domain)],
            app=info.ident.app, domain=info.domain, packets=flow.packets, bytes=flow.bytes,
            first_ts=flow.first_ts, last_ts=flow.last_ts, outcome=outcome,
        ))

    def _update_context(self, flow: Flow, info: FlowInfo, findings: list[Finding]) -> None:
        ctx = self.ctx
        controls = ctx.controls
        th = self.settings.thresholds
        s = flow.dirs[S2C]
        if flow.proto == IPPROTO_TCP and s.payload_bytes >= th.throttle_min_bytes:
            rate = download_rate(flow)
            if rate is not None:
                ctx.record_rate(flow.flow_id, flow.server, info.domain, rate)
        answered = s.packets > 0 and not (s.packets == s.rst_count)
        if answered:
            # the server's own TTL (its non-RST packets: RSTs may be forged), for later flows
            main = s.main_ttl()
            if main is not None:
                ctx.note_server_ttl(flow.client, flow.server, main)
        blocking = [f for f in findings if f.technique != Technique.THROTTLING]
        if answered and not blocking:
            controls.answered_flows += 1
            ip = format_ip(flow.server)
            controls.answered_ips[ip] = controls.answered_ips.get(ip, 0) + 1
            if s.payload_packets:
                controls.add_ok_name(ip, info.domain)

    def _outcome(self, flow: Flow, info: FlowInfo, findings: list[Finding]) -> str:
        if findings:
            return INTERFERED
        c, s = flow.dirs[C2S], flow.dirs[S2C]
        if flow.proto == IPPROTO_TCP:
            if not flow.synack_seen and c.syn_count:
                return FAILED
            if s.rsts and not s.payload_packets and not c.payload_packets:
                return FAILED
            if not flow.syn_seen and not flow.synack_seen:
                return INCOMPLETE
            return OK
        if s.packets == 0:
            return INCOMPLETE if c.packets < 2 else FAILED
        return OK

    def _finish_dns(self, txn: DnsTransaction) -> None:
        k, nshards = self.settings.shard
        if nshards > 1 and shard_of(txn.client, txn.server, nshards) != k:
            return  # judged by the shard that owns the client/resolver pair
        self.stats.dns_transactions += 1
        try:
            found = detect_dns(txn, self.dns.baseline_for(txn.server), self.settings.thresholds,
                               brief_below=MIN_VERDICT_CONFIDENCE)
        except Exception:
            if self.settings.strict:
                raise
            self.stats.skip("detector_error")
            return
        for f in found:
            if not can_become_verdict(f):
                self.stats.weak_findings += 1
                continue
            self.findings.append(replace(f, link_key=f.link_key or f"dns:{f.client}:{f.domain}"))

    def end_input(self) -> list[Verdict]:
        """Finish every flow and transaction of the current input and decide its verdicts."""
        self.flush_input()
        return self.decide_input(self.findings, self.ctx)

    def flush_input(self) -> None:
        """Finish every flow and DNS transaction of the current input (findings collected)."""
        for flow in self._flushed():
            self._finish_flow(flow)
        for txn in self.dns.flush():
            self._finish_dns(txn)
        if self.settings.shard[0] == 0:
            for reason, n in self.dns.decode_errors.items():
                self.stats.skip(reason, n)
        self.dns.decode_errors.clear()
        # reassembly outcomes (overlaps, oversize, reassembled) are counted by shard 0: every
        # shard sees every fragment
        self.frags.expire(float("inf"))
        self.expire_fragments_counted()
        if self.settings.shard[0] == 0:
            for reason, n in self.frags.counts.items():
                if reason == "fragments_reassembled":
                    self.stats.reassembled += n
                else:
                    self.stats.skip(reason, n)
        self.frags.counts.clear()

    def _flushed(self) -> Iterator[Flow]:
        """Every remaining flow (FlowTable.flush order); the C table hands them out one at a
        time, so that a flow's C and Python copies are not all alive at once."""
        table = self.table
        if isinstance(table, FlowTable):
            yield from table.flush()
            return
        table.begin_flush()
        while (flow := table.next_flushed()) is not None:
            yield flow

    def decide_input(self, findings: list[Finding], ctx: Context) -> list[Verdict]:
        """Decide the verdicts of the current input from its findings and cross-flow controls
        (those of this process, or merged from several shards)."""
        weak: list[Finding] = []
        verdicts = decide(findings, ctx, ctx.controls.answered_ips, weak)
        self.stats.weak_findings += len(weak)
        interfered = {v.flow_id for v in verdicts if v.flow_id}
        for rec in self.result.flows[self._flows_mark:]:
            if rec.id in interfered:
                rec.outcome = INTERFERED
        self._flows_mark = len(self.result.flows)
        self.findings = []
        self.result.verdicts.extend(verdicts)
        if self.on_verdict is not None:
            for v in verdicts:
                self.on_verdict(v)
        return verdicts


SHARD_MULT: Final = 2654435761  # Knuth's multiplicative hash constant


def _addr_word(addr: bytes) -> int:
    """32-bit word of an address: IPv4 as is, IPv6 folded by XOR of its four words."""
    if len(addr) == 4:
        return int.from_bytes(addr, "big")
    w = 0
    for j in range(0, len(addr), 4):
        w ^= int.from_bytes(addr[j:j + 4], "big")
    return w


def shard_of(a: bytes, b: bytes, n: int) -> int:
    """Shard of an address pair (symmetric: both directions and all flows of a client/server
    pair land in the same shard). Must agree with :func:`shard_of_words`."""
    return (((_addr_word(a) ^ _addr_word(b)) * SHARD_MULT) >> 16) % n


def shard_of_words(a: "np.ndarray[Any, Any]", b: "np.ndarray[Any, Any]", n: int) -> "np.ndarray[Any, Any]":
    """Vectorised :func:`shard_of` for addresses given as 32-bit words (IPv6 folded)."""
    import numpy as np

    x = (a ^ b).astype(np.uint64) * np.uint64(SHARD_MULT)
    out: np.ndarray[Any, Any] = ((x >> np.uint64(16)) % np.uint64(n)).astype(np.int64)
    return out


@contextmanager
def manual_gc() -> Iterator[None]:
    """Pause Python's automatic cyclic garbage collector for an offline analysis.

    The hot path allocates millions of small tuples, and the automatic collector ran every
    700 allocations, traversing them: 20 % of the run time on the benchmark. The analysis
    creates no reference cycles (tests/core/test_speed_guards.py checks), so reference
    counting frees everything; :meth:`Analyzer.feed` still runs a full collection every
    ``GC_EVERY_PACKETS`` packets, so memory stays bounded even if a cycle slipped in."""
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()


def analyze_files(paths: Iterable[str], settings: Optional[Settings] = None,
                  open_stream: Optional[Callable[[str], BinaryIO]] = None,
                  progress: Optional[Callable[[int, int], None]] = None) -> Result:
    """Analyse capture files (``-`` = stdin) and return the combined result."""
    an = Analyzer(settings)
    t0 = time.perf_counter()
    with manual_gc():
        _analyze_paths(an, paths, open_stream, progress)
    an.stats.seconds = round(time.perf_counter() - t0, 3)
    return an.result


def _analyze_paths(an: Analyzer, paths: Iterable[str], open_stream: Optional[Callable[[str], BinaryIO]],
                   progress: Optional[Callable[[int, int], None]]) -> None:
    import sys

    for path in paths:
        stream = open_stream(path) if open_stream else open_capture(path)
        try:
            reader = open_reader(stream, path, an.settings.batch_packets)
            info = InputInfo(path=path, format=reader.format)
            an.begin_input(info)
            for batch in reader.batches():
                an.feed(batch)
                if progress is not None:
                    progress(len(batch), _tell(stream))
            info.linktype = reader.linktype
            for reason, n in reader.skips.items():
                an.stats.skip(reason, n)
            an.end_input()
        finally:
            if stream is not sys.stdin.buffer:
                stream.close()


def open_capture(path: str) -> BinaryIO:
    """Open a capture file (``-`` = standard input) or raise a one-line InputError."""
    import sys

    if path == "-":
        return sys.stdin.buffer
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a capture file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as e:
        raise InputError(f"{path}: cannot open ({e.strerror})") from None


def _tell(stream: BinaryIO) -> int:
    try:
        return stream.tell()
    except (OSError, ValueError):
        return -1


__all__ = ["Analyzer", "FlowRecord", "Result", "analyze_files", "manual_gc", "open_capture", "shard_of"]
