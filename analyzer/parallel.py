"""``--jobs N``: the same analysis in N processes, flows sharded by their address pair.

Every worker reads the whole capture but tracks only the flows whose pair of addresses hashes
to its shard (the fast path does not even decode the others); all workers feed every DNS packet
to their DNS tracker, so names and resolver baselines are the same everywhere, and each DNS
transaction is judged by the shard of its client/resolver pair. Detectors that look across
flows at flow end use only state of the same client/server pair (same shard). What verdicts
compare across the whole capture (flows that got answers, names that worked per server,
download rates) is collected per worker as :class:`~analyzer.detect.context.Controls`,
merged, and the verdicts are decided once in the parent: the result is the one a single
process gives (tests/core/test_parallel.py). The flow table cap (``--max-flows``) applies per
worker.
"""
from __future__ import annotations

import multiprocessing
import sys
from concurrent.futures import ProcessPoolExecutor
import time
from dataclasses import dataclass, field, replace
from typing import Optional

from analyzer.config import Settings
from analyzer.detect.context import Context, Controls
from analyzer.model import Finding, InputInfo, Stats
from analyzer.pipeline import Analyzer, FlowRecord, Result, analyze_files, manual_gc, open_capture
from analyzer.sources.files import open_reader


@dataclass(slots=True)
class Partial:
    """One worker's share of one input."""

    info: InputInfo
    findings: list[Finding] = field(default_factory=list)
    flows: list[FlowRecord] = field(default_factory=list)
    controls: Controls = field(default_factory=Controls)


def _worker(args: tuple[list[str], Settings, int, int]) -> tuple[list[Partial], Stats]:
    paths, settings, k, n = args
    an = Analyzer(replace(settings, shard=(k, n)))
    parts: list[Partial] = []
    with manual_gc():
        _work(an, paths, k, parts)
    return parts, an.stats


def _work(an: Analyzer, paths: list[str], k: int, parts: list[Partial]) -> None:
    for path in paths:
        stream = open_capture(path)
        try:
            reader = open_reader(stream, path, an.settings.batch_packets)
            info = InputInfo(path=path, format=reader.format)
            an.begin_input(info)
            mark = len(an.result.flows)
            for batch in reader.batches():
                an.feed(batch)
            info.linktype = reader.linktype
            if k == 0:
                for reason, cnt in reader.skips.items():
                    an.stats.skip(reason, cnt)
            an.flush_input()
            parts.append(Partial(info, list(an.findings), an.result.flows[mark:], an.ctx.controls))
            an.findings = []
        finally:
            stream.close()


def analyze_files_parallel(paths: list[str], settings: Optional[Settings] = None, jobs: int = 2) -> Result:
    """Like :func:`analyze_files`, in ``jobs`` processes (stdin: one process)."""
    settings = settings or Settings()
    if jobs <= 1 or "-" in paths:
        return analyze_files(paths, settings)
    for p in paths:  # fail early, in the parent, with the usual one-line errors
        stream = open_capture(p)
        try:
            open_reader(stream, p)
        finally:
            stream.close()
    t0 = time.perf_counter()
    mp = multiprocessing.get_context("fork" if sys.platform != "win32" else "spawn")
    # shards 1..N-1 in child processes, shard 0 here meanwhile: one process fewer to start,
    # and one share of the results that is never pickled
    # (an executor, not multiprocessing.Pool: a worker that dies raises BrokenProcessPool here
    # instead of leaving the parent waiting forever)
    with ProcessPoolExecutor(jobs - 1, mp_context=mp) as pool:
        others = [pool.submit(_worker, (list(paths), settings, k, jobs)) for k in range(1, jobs)]
        outs = [_worker((list(paths), settings, 0, jobs))] + [f.result() for f in others]
    parent = Analyzer(settings)
    result = parent.result
    for i in range(len(paths)):
        shares = [parts[i] for parts, _stats in outs]
        info = shares[0].info
        for sh in shares[1:]:
            if sh.info.first_ts is not None and (info.first_ts is None or sh.info.first_ts < info.first_ts):
                info.first_ts = sh.info.first_ts
            if sh.info.last_ts is not None and (info.last_ts is None or sh.info.last_ts > info.last_ts):
                info.last_ts = sh.info.last_ts
        parent.begin_input(info)
        ctx = Context(settings.thresholds)
        findings: list[Finding] = []
        for sh in shares:
            ctx.controls.merge(sh.controls)
            findings.extend(sh.findings)
            result.flows.extend(sh.flows)
        parent.decide_input(findings, ctx)
    st = result.stats
    for _parts, ws in outs:
        st.packets += ws.packets
        st.decoded += ws.decoded
        for reason, cnt in ws.skipped.items():
            st.skip(reason, cnt)
        st.flows += ws.flows
        st.flows_evicted += ws.flows_evicted
        st.dns_transactions += ws.dns_transactions
        st.fragments += ws.fragments
        st.reassembled += ws.reassembled
        st.weak_findings += ws.weak_findings
    st.seconds = round(time.perf_counter() - t0, 3)
    return result
