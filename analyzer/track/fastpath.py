"""The batch fast path: flows whose packets in a chunk are all "boring" are updated with
vectorised aggregates; every other packet takes the per-packet (reference) path.

A packet is boring when the per-packet path would only update counters for it (see the
"aggregates" block of :meth:`FlowTable._tcp` / ``_udp``): plain IPv4 TCP/UDP, not DNS, no
SYN/FIN/RST, its flow already exists, is neither closed nor reset, and the packet is not one
of the first payloads the flow keeps. The decision is made per flow and per chunk: if any
packet of a flow in the chunk needs the deep path, all of that flow's packets in the chunk
take it, so the two paths never interleave on one flow and per-flow order is preserved.
The flow table's LRU order is rebuilt in packet order as well. With the same chunk
boundaries, the result is identical to the reference path (tests/core/test_fastpath.py).

Hot-path note (STYLE rule 6): arrays and plain tuples here, no per-packet objects.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import numpy.typing as npt

from analyzer.decode.fast import PROTO_TCP, Fields
from analyzer.decode.packet import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN
from analyzer.track.flows import (
    BUSY_GAP_US,
    EPHEMERAL_MIN,
    K_CONTEXT,
    K_PAYLOAD,
    SERVICE_PORTS,
    Flow,
    FlowTable,
)

I64 = npt.NDArray[np.int64]
SERVICE_PORT_LIST = sorted(SERVICE_PORTS)
# (group, dir, packets, bytes, payload bytes, payload packets, DF count, max ts, first ts,
#  other direction's last index in the segment, tail length, first tail ts, last packet
#  fields, chunk index of the deep packet it precedes (-1: end of chunk), segment*2+dir,
#  busy microseconds between the segment's own packets)
Row = tuple[int, int, int, int, int, int, int, float, float, int, int, float,
            tuple[int, float, int, int, int, int, int, int, int, bool, int], int, int, int]


class ChunkPlan:
    """What to do with one chunk: which packets go deep, and the boring flows' updates."""

    __slots__ = ("slow", "_apply", "fallback")

    def __init__(self, slow: list[int], apply: Callable[[Callable[[int], None]], None]) -> None:
        self.slow = slow  # chunk-relative indices for the per-packet path, ascending
        self._apply: Optional[Callable[[Callable[[int], None]], None]] = apply
        self.fallback = 0  # boring packets that had to take the deep path after all

    def apply(self, process_slow: Callable[[int], None]) -> None:
        """Run the slow packets (process_slow(i)) and the boring updates in order; once.

        The closure refers back to this plan (the fallback counter): dropping it afterwards
        breaks that reference cycle, so the chunk's flows are freed by reference counting
        instead of waiting for the cyclic garbage collector (which then has far less to do)."""
        run, self._apply = self._apply, None
        if run is not None:
            run(process_slow)


def plan_chunk(table: FlowTable, f: Fields, ts: npt.NDArray[np.float64], frame0: int, input_idx: int,
               ignore: Optional[npt.NDArray[np.bool_]] = None) -> tuple[ChunkPlan, int, float, float]:
    """Returns the plan, the number of boring packets, and their min/max timestamps.
    Packets marked in ``ignore`` (another shard's) take neither path."""
    n = len(f.keyable)
    kidx = np.flatnonzero(f.keyable)
    if len(kidx) == 0:
        everything = np.flatnonzero(~ignore).tolist() if ignore is not None else list(range(n))
        return ChunkPlan(everything, _only_slow(everything)), 0, 0.0, 0.0
    s_hi, s_lo, d_hi, d_lo = f.src_hi[kidx], f.src_lo[kidx], f.dst_hi[kidx], f.dst_lo[kidx]
    sport, dport = f.sport[kidx], f.dport[kidx]
    tag = f.proto[kidx] | (f.v6[kidx].astype(np.int64) << 8)
    # canonical orientation, as FlowTable.lookup: (src, sport) <= (dst, dport), addresses
    # compared as big-endian numbers (IPv4 in the low half, high half zero)
    a_le_b = (s_hi < d_hi) | ((s_hi == d_hi) & ((s_lo < d_lo) | ((s_lo == d_lo) & (sport <= dport))))
    lo_hi, lo_lo, lo_port = np.where(a_le_b, s_hi, d_hi), np.where(a_le_b, s_lo, d_lo), np.where(a_le_b, sport, dport)
    hi_hi, hi_lo, hi_port = np.where(a_le_b, d_hi, s_hi), np.where(a_le_b, d_lo, s_lo), np.where(a_le_b, dport, sport)
    order = np.lexsort((kidx, hi_port, hi_lo, hi_hi, lo_port, lo_lo, lo_hi, tag))
    kidx_s = kidx[order]
    cols = [c[order] for c in (tag, lo_hi, lo_lo, lo_port, hi_hi, hi_lo, hi_port)]
    from_lo = a_le_b[order]
    change = np.zeros(max(len(kidx_s) - 1, 0), dtype=np.bool_)
    for c in cols:
        change |= c[1:] != c[:-1]
    brk = np.flatnonzero(change) + 1
    gstart = np.concatenate(([0], brk)).astype(np.int64)
    gend = np.concatenate((brk, [len(kidx_s)])).astype(np.int64)
    ngroups = len(gstart)
    cand_s = f.candidate[kidx_s]
    # per-group state from the flow table (Python loop over flows, not packets)
    flows_dict = table.flows
    frag_pending = table.frag_pending
    n_first = table._first_payloads
    max_c, max_s = table._limits
    eligible = np.zeros(ngroups, dtype=np.bool_)
    client_lo = np.zeros(ngroups, dtype=np.bool_)
    capn = np.zeros((ngroups, 2), dtype=np.int64)
    group_flows: list[Flow | None] = [None] * ngroups
    keys: list[tuple[bytes, int, bytes, int, int]] = [(b"", 0, b"", 0, 0)] * ngroups
    newflow = np.zeros(ngroups, dtype=np.bool_)
    # orientation a new flow will get from its first packet (mirrors Flow.__init__)
    first = kidx_s[gstart]
    syn = np.where(f.proto[first] == PROTO_TCP, f.flags[first] & (TCP_SYN | TCP_ACK), 0)
    sp, dp = f.sport[first], f.dport[first]
    sp_service = ((sp > 0) & (sp < EPHEMERAL_MIN)) | np.isin(sp, SERVICE_PORT_LIST)
    dp_service = ((dp > 0) & (dp < EPHEMERAL_MIN)) | np.isin(dp, SERVICE_PORT_LIST)
    client_is_dst = (syn == (TCP_SYN | TCP_ACK)) | ((syn != TCP_SYN) & sp_service & ~dp_service)
    pred_client_lo = np.where(client_is_dst, ~from_lo[gstart], from_lo[gstart])
    heads = [c[gstart].tolist() for c in cols]
    for g, (tg, lh, ll, lp, hh, hl, hp) in enumerate(zip(*heads)):
        if tg >> 8:  # IPv6
            key = (((lh << 64) | ll).to_bytes(16, "big"), lp, ((hh << 64) | hl).to_bytes(16, "big"), hp, tg & 0xFF)
        else:
            key = (ll.to_bytes(4, "big"), lp, hl.to_bytes(4, "big"), hp, tg)
        keys[g] = key
        if key in frag_pending:
            continue  # a datagram of this flow is being reassembled: keep order, go deep
        flow = flows_dict.get(key)
        if flow is None:
            # a new flow: its first packet creates it on the deep path; the rest may be boring
            # with the orientation Flow.__init__ will choose, checked when applied
            newflow[g] = True
            eligible[g] = True
            client_lo[g] = pred_client_lo[g]
            capn[g, 0] = n_first
            capn[g, 1] = n_first
            continue
        if flow.hot or flow.closed:
            continue
        group_flows[g] = flow
        eligible[g] = True
        client_lo[g] = flow.client == key[0] and flow.cport == key[1]
        d0, d1 = flow.dirs
        # how many more payload packets each direction may still keep (deep path)
        # (flow.dirs[0] is the client's side)
        capn[g, 0] = n_first - len(d0.payloads) if d0.kept_bytes < max_c else 0
        capn[g, 1] = n_first - len(d1.payloads) if d1.kept_bytes < max_s else 0
    nk = len(kidx_s)
    gid = np.repeat(np.arange(ngroups), gend - gstart)
    pos = np.arange(nk, dtype=np.int64)
    big = np.int64(1 << 62)
    # Packets that are not candidates (SYN/FIN/RST, DNS, first fragments) go deep themselves.
    # Two of them change what later packets of the flow mean, so the rest of the chunk goes
    # deep after them: a RST (the flow turns "hot": packets after it are key packets), and a
    # SYN after a FIN (the 4-tuple may be reused by a new connection, a new Flow object).
    # DNS flows are all non-candidates anyway.
    flags_s = np.where(f.proto[kidx_s] == PROTO_TCP, f.flags[kidx_s], 0)
    is_rst = (flags_s & TCP_RST) != 0
    is_fin = (flags_s & TCP_FIN) != 0
    is_syn_only = (flags_s & (TCP_SYN | TCP_ACK)) == TCP_SYN
    first_rst = np.minimum.reduceat(np.where(is_rst, pos, big), gstart)
    first_fin = np.minimum.reduceat(np.where(is_fin, pos, big), gstart)
    first_syn_after_fin = np.minimum.reduceat(np.where(is_syn_only & (pos > first_fin[gid]), pos, big), gstart)
    # non-candidates that are neither RST/FIN/SYN (DNS, first fragments): deep, and so is
    # everything after them in the flow (DNS-over-TCP and fragment reassembly stay exact)
    first_other_nc = np.minimum.reduceat(np.where(~cand_s & ~is_rst & ~is_fin & ((flags_s & TCP_SYN) == 0), pos, big), gstart)
    after_nc = (pos >= first_rst[gid]) | (pos >= first_syn_after_fin[gid]) | (pos >= first_other_nc[gid]) | ~cand_s
    d_s = np.where(from_lo == client_lo[gid], 0, 1).astype(np.int64)
    tcp_s = f.proto[kidx_s] == PROTO_TCP
    plen_s = f.plen[kidx_s]
    payloadish = np.where(tcp_s, plen_s > 0, True)
    # rank of each payload packet within its (flow, direction) in this chunk
    gd_all = gid * 2 + d_s
    o = np.lexsort((pos, gd_all))
    pay_o = payloadish[o].astype(np.int64)
    gd_o = gd_all[o]
    cs = np.cumsum(pay_o)
    seg0 = np.concatenate(([True], gd_o[1:] != gd_o[:-1]))
    base = np.maximum.accumulate(np.where(seg0, cs - pay_o, 0))
    rank = np.empty(nk, dtype=np.int64)
    rank[o] = cs - pay_o - base
    first_of_new = newflow[gid] & (pos == gstart[gid])
    slow_s = ~eligible[gid] | after_nc | first_of_new | (payloadish & (rank < capn[gid, d_s]))
    slow_mask = np.ones(n, dtype=np.bool_) if ignore is None else ~ignore
    slow_mask[kidx_s[~slow_s]] = False
    slow = np.flatnonzero(slow_mask).tolist()
    boring_pkt = ~slow_s
    nb = int(boring_pkt.sum())
    if nb == 0:
        return ChunkPlan(slow, _only_slow(slow)), 0, 0.0, 0.0
    # segment of a boring packet: its flow and the number of deep packets of the flow before it;
    # it is applied just before the flow's next deep packet (or at the end of the chunk)
    gstart_pkt = gstart[gid]
    slow_cum = np.cumsum(slow_s.astype(np.int64))
    slow_before = slow_cum - slow_s - np.where(gstart_pkt > 0, slow_cum[np.maximum(gstart_pkt - 1, 0)], 0)
    nxt = np.minimum.accumulate(np.where(slow_s, pos, big)[::-1])[::-1]
    attach_pos = np.where(nxt < gend[gid], nxt, -1)
    attach_idx = np.where(attach_pos >= 0, kidx_s[np.clip(attach_pos, 0, nk - 1)], -1)
    bsel = np.flatnonzero(boring_pkt)
    seg_brk0 = np.concatenate(([True], (gid[bsel][1:] != gid[bsel][:-1]) | (slow_before[bsel][1:] != slow_before[bsel][:-1])))
    segid = np.cumsum(seg_brk0) - 1
    # packets of each segment in order, for the (should-not-happen) fallback of new flows
    seg_first = np.flatnonzero(seg_brk0)
    seg_packets = np.split(kidx_s[bsel], seg_first[1:]) if newflow.any() else []
    bg = gid[bsel]
    bd = d_s[bsel]
    bidx = kidx_s[bsel]
    gd = segid * 2 + bd
    o2 = np.argsort(gd, kind="stable")
    gd2 = gd[o2]
    idx2 = bidx[o2]
    seg_brk = np.flatnonzero(gd2[1:] != gd2[:-1]) + 1
    sstart = np.concatenate(([0], seg_brk)).astype(np.int64)
    send = np.concatenate((seg_brk, [len(gd2)])).astype(np.int64)
    seg_gd = gd2[sstart]
    seg_group = bg[o2][sstart]
    seg_attach = attach_idx[bsel][o2][sstart]
    cnt = send - sstart
    iplen = f.ip_len[idx2]
    pl = f.plen[idx2]
    tsv = ts[idx2]
    sum_bytes = np.add.reduceat(iplen, sstart)
    sum_plen = np.add.reduceat(pl, sstart)
    n_pay = np.add.reduceat((pl > 0).astype(np.int64), sstart)
    n_df = np.add.reduceat(f.df[idx2].astype(np.int64), sstart)
    max_ts = np.maximum.reduceat(tsv, sstart)
    # busy time: gaps between consecutive packets of a (segment, direction), capped
    gaps = np.rint(np.diff(tsv) * 1e6).astype(np.int64) if len(tsv) > 1 else np.zeros(0, dtype=np.int64)
    gaps = np.clip(gaps, 0, BUSY_GAP_US)
    same_seg = gd2[1:] == gd2[:-1]
    gaps = np.where(same_seg, gaps, 0)
    busy_in = np.add.reduceat(np.concatenate(([0], gaps)), sstart) if len(tsv) else np.zeros(0, dtype=np.int64)
    first_ts = tsv[sstart]
    li = idx2[send - 1]  # last packet of each (segment, direction)
    last_by_gd = dict(zip(seg_gd.tolist(), li.tolist()))
    other_last = np.array([last_by_gd.get(x ^ 1, -1) for x in seg_gd.tolist()], dtype=np.int64)
    other_last_pkt = np.repeat(other_last, cnt)
    tail = idx2 > other_last_pkt
    n_tail = np.add.reduceat(tail.astype(np.int64), sstart)
    first_tail_ts = np.minimum.reduceat(np.where(tail, tsv, np.inf), sstart)
    # TTL histograms per (segment, direction)
    uk, uc = np.unique(gd2 * 256 + f.ttl[idx2], return_counts=True)
    last_fields = list(zip(
        (li + frame0).tolist(), ts[li].tolist(), f.flags[li].tolist(), f.seq[li].tolist(),
        f.ack[li].tolist(), f.ttl[li].tolist(), f.ipid[li].tolist(), f.win[li].tolist(),
        f.plen[li].tolist(), f.df[li].tolist(), f.proto[li].tolist(),
    ))
    rows_by_attach: dict[int, list[Row]] = {}
    for row in zip(seg_group.tolist(), (seg_gd & 1).tolist(), cnt.tolist(), sum_bytes.tolist(),
                   sum_plen.tolist(), n_pay.tolist(), n_df.tolist(), max_ts.tolist(), first_ts.tolist(),
                   other_last.tolist(), n_tail.tolist(), first_tail_ts.tolist(), last_fields,
                   seg_attach.tolist(), seg_gd.tolist(), busy_in.tolist()):
        rows_by_attach.setdefault(row[13], []).append(row)
    ttl_by_seg: dict[int, list[tuple[int, int]]] = {}
    for gdv, ttl, c in zip((uk // 256).tolist(), (uk % 256).tolist(), uc.tolist()):
        ttl_by_seg.setdefault(gdv, []).append((ttl, c))
    # flows whose last packet in the chunk is boring: LRU position set at that packet
    tail_rows = rows_by_attach.get(-1, [])
    g_last: dict[int, int] = {}
    for row in tail_rows:
        g, li_frame = row[0], row[12][0] - frame0
        if li_frame > g_last.get(g, -1):
            g_last[g] = li_frame
    lru = sorted((v, g) for g, v in g_last.items())

    done_fallback: set[int] = set()

    def apply_row(row: Row, process_slow: Callable[[int], None]) -> None:
        g, d, c, sb, sp, npay, ndf, mts, fts, olast, ntail, ftail, lf, _at, gdv, busy = row
        flow = group_flows[g]
        if flow is None:
            key = keys[g]
            flow = flows_dict.get(key)
            want_lo = bool(client_lo[g])
            if flow is None or flow.hot or (flow.client == key[0] and flow.cport == key[1]) != want_lo:
                # the deep path did not create the flow as predicted: take these packets deep
                seg = gdv >> 1
                if seg not in done_fallback:
                    done_fallback.add(seg)
                    for i in seg_packets[seg].tolist():
                        plan.fallback += 1  # counted as boring already; the caller corrects
                        process_slow(i)
                return
            group_flows[g] = flow
        ds = flow.dirs[d]
        flow.packets += c
        flow.bytes += sb
        if mts > flow.last_ts:
            flow.last_ts = mts
        if ds.packets == 0:
            ds.first_ts = fts
        ds.packets += c
        ds.bytes += sb
        if mts > ds.last_ts:
            ds.last_ts = mts
        ds.df_set += ndf
        ds.df_clear += c - ndf
        tcp = lf[10] == PROTO_TCP
        ds.payload_packets += npay if tcp else c
        ds.payload_bytes += sp
        other = flow.dirs[1 - d]
        if olast < 0:  # only this direction spoke in the segment
            if ds.unanswered == 0:
                ds.unanswered_since = fts
            ds.unanswered += c
            other.unanswered = 0
        elif ntail:  # this direction spoke last
            ds.unanswered = ntail
            ds.unanswered_since = ftail
            other.unanswered = 0
        prev = ds.last
        if prev is not None:
            gap = round((fts - prev[1]) * 1e6)
            if gap > 0:
                ds.busy_us += gap if gap < BUSY_GAP_US else BUSY_GAP_US
        ds.busy_us += busy
        frame, t, flags, seq, ack, ttl, ipid, win, plen, df, _p = lf
        if tcp:
            ds.last = (frame, t, input_idx, d, flags, seq, ack, ttl, ipid, win, plen, df, K_CONTEXT)
        else:
            ds.last = (frame, t, input_idx, d, 0, 0, 0, ttl, ipid, 0, plen, df, K_PAYLOAD)
        h = ds.ttls
        for ttl_v, cnt_v in ttl_by_seg[gdv]:
            h[ttl_v] = h.get(ttl_v, 0) + cnt_v

    def apply(process_slow: Callable[[int], None]) -> None:
        move = flows_dict.move_to_end
        j = 0
        nl = len(lru)
        get_rows = rows_by_attach.get
        for i in slow:
            while j < nl and lru[j][0] < i:
                move(keys[lru[j][1]])
                j += 1
            rows = get_rows(i)
            if rows:
                for row in rows:
                    apply_row(row, process_slow)
            process_slow(i)
        for row in tail_rows:
            apply_row(row, process_slow)
        while j < nl:
            move(keys[lru[j][1]])
            j += 1

    tb = ts[kidx_s[boring_pkt]]
    plan = ChunkPlan(slow, apply)
    return plan, nb, float(tb.min()), float(tb.max())


def _only_slow(slow: list[int]) -> Callable[[Callable[[int], None]], None]:
    def apply(process_slow: Callable[[int], None]) -> None:
        for i in slow:
            process_slow(i)
    return apply


__all__ = ["ChunkPlan", "plan_chunk"]
