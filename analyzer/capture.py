"""Live analysis: one capture (:mod:`analyzer.sources.live`) feeding one :class:`Analyzer`,
verdicts printed as soon as they are decided.

Offline, the pipeline decides verdicts in ``end_input()``. Live, :class:`LiveAnalysis` decides
them while the capture runs: at least every ``TICK_SECONDS`` it runs the pipeline's expiry scan
with the wall clock as capture time (kernel time stamps and ``time.time()`` are both
``CLOCK_REALTIME``), so a flow is finished once it has been closed for ``close_linger`` seconds
or silent for ``--idle-timeout`` seconds, and a DNS transaction ``dns_timeout`` seconds after
its last packet. The findings of what finished are decided one by one with
:func:`analyzer.verdict.decide` (which refines each finding on its own; only the linking of
``related`` ids spans findings, and that is kept here across calls), printed, and kept for the
final report. The rest is decided by ``end_input()`` when the capture stops.

Where verdicts go while the capture runs: ``-f jsonl``/``json`` print one JSON object per line
(``{"type": "verdict", ...}``, as in the JSONL report), the other formats one readable line. They
go to standard output, except when standard output is to receive a report that must stay one
document (``json``, ``csv``, ``markdown``, ``html`` without ``-o``): then to standard error. With
``-f jsonl`` on standard output the final report adds only the flow and summary lines, so the
whole output is the same JSONL document ``analyze -f jsonl`` writes.

The capture stops on SIGINT (Ctrl-C), SIGTERM, ``--duration`` or ``--count``; then the ``-w``
file is flushed and closed, the analysis finished and the report written. A second Ctrl-C
aborts the report (exit status 130); the ``-w`` file is still closed cleanly.
"""
from __future__ import annotations

import json
import shutil
import signal
import time
from dataclasses import dataclass, replace
from types import FrameType
from typing import IO, Any, Callable, Optional

from analyzer.config import Settings
from analyzer.model import Finding, InputInfo, Outcome, Verdict
from analyzer.pipeline import Analyzer, Result
from analyzer.report import render, render_jsonl
from analyzer.report.document import to_document, verdict_dict
from analyzer.report.escape import terminal_safe
from analyzer.sources.files import Batch
from analyzer.sources.live import CaptureError, CaptureWriter, LiveBatch, LiveCapture
from analyzer.status import AnalyzerError
from analyzer.verdict import decide

TICK_SECONDS = 0.5  # expiry scan + verdict decisions, at least this often
STATUS_SECONDS = 0.5  # status line refresh
READ_TIMEOUT = 0.1  # longest wait for the first packet of a batch
DOCUMENT_FORMATS = ("json", "csv", "markdown", "html")  # one document: nothing else on its stream


def _verdict_order(v: Verdict) -> tuple[int, float, str]:
    return (v.evidence[0].input if v.evidence else 0, v.first_ts, v.id)


class LiveAnalysis:
    """An :class:`Analyzer` whose verdicts are decided while the input is still running.

    A finding that is too weak to be a verdict *now* (e.g. a slow flow with no comparable flow
    yet, see verdict.py's throttling controls) is held and decided again by ``end_input()``
    with the whole capture's context, as offline; only then is it counted as weak."""

    def __init__(self, settings: Settings,
                 emit: Optional[Callable[[Verdict], None]] = None) -> None:
        self.analyzer = Analyzer(settings)
        self.emit = emit
        self._link_ids: dict[str, str] = {}  # finding link_key -> verdict id, over the whole run
        self._decided: set[str] = set()
        self._held: list[Finding] = []
        self._records_seen = 0  # flow records already looked at for outcomes

    @property
    def result(self) -> Result:
        return self.analyzer.result

    def begin(self, info: InputInfo) -> None:
        self.analyzer.begin_input(info)
        self._records_seen = len(self.analyzer.result.flows)

    def feed(self, batch: Batch) -> None:
        self.analyzer.feed(batch)

    def tick(self, now: float) -> list[Verdict]:
        """Finish what is over at capture time ``now``; decide, emit and return new verdicts."""
        self.analyzer.expire(now)
        return self._decide_pending()

    def _decide_pending(self) -> list[Verdict]:
        an = self.analyzer
        findings, an.findings = an.findings, []
        verdicts: list[Verdict] = []
        for f in findings:
            weak: list[Finding] = []
            for v in decide([f], an.ctx, an.answered_ips, weak):
                if f.link_key:
                    self._link_ids[f.link_key] = v.id
                verdicts.append(v)
            if weak:
                self._held.append(f)
        out = self._publish(verdicts)
        self._mark_interfered(out)
        return out

    def _mark_interfered(self, verdicts: list[Verdict]) -> None:
        """The flow records behind this tick's verdicts were added by the same expiry scan."""
        flows = self.analyzer.result.flows
        fresh = {rec.id: rec for rec in flows[self._records_seen:]} if verdicts else {}
        self._records_seen = len(flows)
        for v in verdicts:
            found = fresh.get(v.flow_id or "")
            if found is not None:
                found.outcome = Outcome.INTERFERED.value

    def finish(self) -> list[Verdict]:
        """End the input: every open flow and transaction is finished, and what is left
        (including held weak findings) is decided by ``end_input()``."""
        an = self.analyzer
        out = self._decide_pending()
        an.findings[:0] = self._held
        self._held = []
        n0 = len(an.result.verdicts)
        an.end_input()  # also marks the outcome of the flows behind its verdicts
        rest = an.result.verdicts[n0:]
        del an.result.verdicts[n0:]
        out += self._publish(rest)
        an.result.verdicts.sort(key=_verdict_order)
        return out

    def _publish(self, verdicts: list[Verdict]) -> list[Verdict]:
        out: list[Verdict] = []
        for v in sorted(verdicts, key=_verdict_order):
            if v.id in self._decided:
                continue
            self._decided.add(v.id)
            if v.related:
                v = replace(v, related=tuple(self._link_ids.get(r, r) for r in v.related))
            out.append(v)
        self.analyzer.result.verdicts.extend(out)
        if self.emit is not None:
            for v in out:
                self.emit(v)
        return out


class StatusLine:
    """One self-overwriting line on a terminal (nothing when disabled)."""

    def __init__(self, stream: IO[str], enabled: bool) -> None:
        self.stream = stream
        self.enabled = enabled
        self._shown = False

    def show(self, text: str) -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((100, 24)).columns - 1)
        try:
            self.stream.write("\r" + text[:width] + "\x1b[K")
            self.stream.flush()
            self._shown = True
        except (OSError, ValueError):
            self.enabled = False

    def clear(self) -> None:
        if self._shown:
            try:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            except (OSError, ValueError):
                pass
            self._shown = False


def verdict_line(v: Verdict) -> str:
    """One readable line per verdict (terminal-safe)."""
    stamp = time.strftime("%H:%M:%S", time.localtime(v.first_ts))
    domain = f" {terminal_safe(v.domain)}" if v.domain else ""
    signals = ", ".join(terminal_safe(s) for s in v.signals)
    return (f"{stamp} {v.technique.value}/{v.trigger.value} {v.target.value} {v.proto} "
            f"{terminal_safe(v.client)} → {terminal_safe(v.server)}{domain} "
            f"conf {v.confidence:.2f} [{signals}] {v.id}")


def verdict_json_line(v: Verdict) -> str:
    return json.dumps({"type": "verdict", **verdict_dict(v)}, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class CaptureOptions:
    interface: str
    bpf: Optional[str] = None
    duration: Optional[float] = None
    count: Optional[int] = None
    write: Optional[str] = None
    fmt: str = "table"
    output: Optional[str] = None
    quiet: bool = False


class _Stop:
    """Set by SIGINT/SIGTERM; a second signal aborts (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.reason: Optional[str] = None

    def __call__(self, signum: int, _frame: Optional[FrameType]) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = signal.Signals(signum).name


def _head(batch: LiveBatch, n: int) -> LiveBatch:
    return LiveBatch(batch.buf, batch.first_frame, batch.offsets[:n], batch.caplens[:n],
                     batch.wirelens[:n], batch.ts[:n], batch.linktypes[:n], batch.ts_ns[:n])


class _Printer:
    """Prints verdicts as they are decided; a closed pipe stops the capture quietly."""

    def __init__(self, fmt: str, stream: IO[str], status: StatusLine, stop: _Stop) -> None:
        self.line = verdict_json_line if fmt in ("json", "jsonl") else verdict_line
        self.stream = stream
        self.status = status
        self.stop = stop
        self.broken = False

    def __call__(self, v: Verdict) -> None:
        if self.broken:
            return
        self.status.clear()
        try:
            self.stream.write(self.line(v) + "\n")
            self.stream.flush()
        except BrokenPipeError:
            self.broken = True
            self.stop.reason = "broken pipe"


def run_capture(opts: CaptureOptions, settings: Settings, stdout: IO[str], stderr: IO[str],
                status_enabled: bool = False) -> dict[str, Any]:
    """Capture and analyse until stopped; write the report; return the result document.

    Raises AnalyzerError subclasses for setup problems (interface, filter, permission, -w file)
    before anything is captured, and re-raises a failure during the capture (interface gone,
    disk full) after the report of what was captured so far has been written."""
    to_file = bool(opts.output) and opts.output != "-"
    stream_out = stdout if (to_file or opts.fmt not in DOCUMENT_FORMATS) else stderr
    status = StatusLine(stderr, status_enabled and not opts.quiet)
    stop = _Stop()
    printer = _Printer(opts.fmt, stream_out, status, stop)
    live = LiveAnalysis(settings, emit=printer)

    cap = LiveCapture(opts.interface, opts.bpf)
    cap.open()
    started = time.monotonic()
    writer: Optional[CaptureWriter] = None
    failure: Optional[AnalyzerError] = None
    restore: list[tuple[int, Any]] = []
    try:
        if opts.write:
            writer = CaptureWriter(opts.write, cap.linktype, cap.snaplen, opts.interface, cap.bpf)
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                restore.append((sig, signal.signal(sig, stop)))
            except ValueError:  # not the main thread: no signal handling
                pass
        info = InputInfo(path=f"live:{opts.interface}", format="live", linktype=cap.linktype_name)
        live.begin(info)
        if not opts.quiet:
            what = f" ({opts.bpf})" if cap.bpf else ""
            stderr.write(f"analyzer: capturing on {opts.interface}{what}, "
                         f"{cap.linktype_name}; Ctrl-C to stop\n")
            stderr.flush()
        failure = _loop(opts, cap, writer, live, status, stop)
    finally:
        for signum, old in restore:
            signal.signal(signum, old)
        status.clear()
        cap.close()
        if writer is not None:
            writer.close()

    an = live.analyzer
    live.finish()
    kpackets, kdrops = cap.kernel_stats()
    an.stats.seconds = round(time.monotonic() - started, 3)
    doc = to_document(an.result)
    doc["stats"]["kernel_drops"] = kdrops
    if cap.bpf:
        doc["inputs"][0]["filter"] = cap.bpf
    if not opts.quiet:
        saved = f", {writer.packets:,} written to {writer.path}" if writer else ""
        stderr.write(f"analyzer: {cap.packets:,} packets captured, {kpackets:,} received by "
                     f"filter, {kdrops:,} dropped by kernel{saved}\n")
        stderr.flush()
    if to_file:
        assert opts.output is not None
        with open(opts.output, "w", encoding="utf-8", newline="") as fh:
            fh.write(render(doc, opts.fmt))
    elif not printer.broken:
        if opts.fmt == "jsonl":  # the verdict lines are out already
            text = render_jsonl(dict(doc, verdicts=[]))
        else:
            text = render(doc, opts.fmt)
        try:
            stdout.write(text)
            stdout.flush()
        except BrokenPipeError:
            pass
    if failure is not None:
        raise failure
    return doc


def _loop(opts: CaptureOptions, cap: LiveCapture, writer: Optional[CaptureWriter],
          live: LiveAnalysis, status: StatusLine, stop: _Stop) -> Optional[AnalyzerError]:
    """Read, write and analyse until a stop condition; return a failure instead of raising it."""
    an = live.analyzer
    start = time.monotonic()
    next_tick = start + TICK_SECONDS
    next_status = start
    end = start + opts.duration if opts.duration is not None else None
    left = opts.count
    while stop.reason is None:
        now_m = time.monotonic()
        if end is not None and now_m >= end:
            break
        wait = READ_TIMEOUT if end is None else max(0.0, min(READ_TIMEOUT, end - now_m))
        try:
            batch = cap.read_batch(wait)
            if batch is not None:
                if left is not None and len(batch) >= left:
                    batch = _head(batch, left)
                if writer is not None:
                    writer.write(batch)
                live.feed(batch)
                if left is not None:
                    left -= len(batch)
        except CaptureError as e:
            return e
        now_m = time.monotonic()
        if now_m >= next_tick:
            next_tick = now_m + TICK_SECONDS
            live.tick(time.time())
        if status.enabled and now_m >= next_status:
            next_status = now_m + STATUS_SECONDS
            _, drops = cap.kernel_stats()
            st = an.stats
            status.show(f"live:{opts.interface}  {st.packets:,} packets  "
                        f"{st.flows + len(an.table):,} flows ({len(an.table):,} open)  "
                        f"{len(an.result.verdicts)} verdicts  {drops:,} dropped by kernel  "
                        f"{int(now_m - start)}s")
        if left is not None and left <= 0:
            break
    return None


__all__ = ["CaptureOptions", "LiveAnalysis", "StatusLine", "run_capture",
           "verdict_json_line", "verdict_line"]
