"""Command line: a thin click layer (options -> pipeline call -> output -> exit status)."""
from __future__ import annotations

import os
import sys
from dataclasses import fields, replace
from typing import IO, Any, Optional

import click

from analyzer import __version__
from analyzer.config import Settings, Thresholds
from analyzer.report import FORMATS, render
from analyzer.status import AnalyzerError, ExitStatus

PROGRESS_MIN_BYTES = 20 << 20  # show a progress bar for inputs larger than this (tty only)


def _parse_thresholds(values: tuple[str, ...]) -> Thresholds:
    th = Thresholds()
    known = {f.name: f for f in fields(Thresholds)}
    changes: dict[str, Any] = {}
    for item in values:
        name, sep, raw = item.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in known:
            raise click.BadParameter(
                f"{item!r}: expected NAME=VALUE with NAME one of {', '.join(sorted(known))}",
                param_hint="--threshold")
        current = getattr(th, name)
        try:
            changes[name] = type(current)(raw)
        except ValueError:
            raise click.BadParameter(f"{item!r}: {raw!r} is not a {type(current).__name__}",
                                     param_hint="--threshold") from None
    return replace(th, **changes)


def _write(text: str, output: Optional[str], stdout: IO[str]) -> None:
    if output and output != "-":
        with open(output, "w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
            fh.write(text)
    else:
        stdout.write(text)
        stdout.flush()


def _fail(err: AnalyzerError) -> None:
    click.echo(f"analyzer: error: {err}", err=True)
    sys.exit(int(err.status))


format_option = click.option(
    "-f", "--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True,
    help="Output format: terminal table, one JSON document, JSON lines (verdicts, then a summary "
         "line), CSV (one row per verdict), Markdown, or a self-contained HTML report.")
output_option = click.option(
    "-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
    default=None, help="Write the report to FILE instead of standard output.")


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="analyzer")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Find network interference in packet captures: forged TCP resets, DNS injection,
    SNI/Host/QUIC-triggered blocking, IP blackholing, residual blocking and VPN handshake
    blocking, with the frames that prove it.

    \b
    Examples:
      analyzer analyze capture.pcapng
      analyzer analyze a.pcap b.pcap -f json -o result.json
      sudo analyzer capture -i eth0 -w evidence.pcapng
      analyzer report result.json -f html -o report.html
    """
    ctx.ensure_object(dict)


@main.command()
@click.argument("pcaps", nargs=-1, required=True, type=click.Path(allow_dash=True))
@format_option
@output_option
@click.option("--flows", "flows_mode", type=click.Choice(["all", "interfered", "none"]),
              default="all", show_default=True,
              help="Which flows to list in JSON/JSONL output (the table shows a per-target summary).")
@click.option("--evidence", "evidence_path", type=click.Path(dir_okay=False, writable=True),
              default=None, help="Also write the packets behind every verdict to this pcapng, each "
                                 "with a comment giving the reason (opens in Wireshark).")
@click.option("--threshold", "thresholds", multiple=True, metavar="NAME=VALUE",
              help="Override a detector threshold (repeatable), e.g. --threshold rst_ttl_delta=5. "
                   "See docs/detectors.md for the names.")
@click.option("--idle-timeout", type=click.FloatRange(min=0.0), default=Settings().idle_timeout,
              show_default=True,
              help="Seconds (capture time) after which an idle flow is finished.")
@click.option("--max-flows", type=click.IntRange(min=1), default=Settings().max_flows, show_default=True,
              help="Live flow table cap; the least recently active flows are finished early "
                   "(counted in stats.flows_evicted).")
@click.option("-j", "--jobs", type=click.IntRange(min=1), default=1, show_default=True,
              help="Analyse in this many processes (flows sharded by address pair; results are "
                   "identical to one process). Not for '-' (stdin).")
@click.option("--progress/--no-progress", default=None,
              help="Progress bar on stderr (default: on for large files when stderr is a terminal).")
@click.option("--strict", is_flag=True, help="Re-raise decoder errors instead of counting them "
                                             "(for debugging the analyzer).")
@click.pass_context
def analyze(ctx: click.Context, pcaps: tuple[str, ...], fmt: str, output: Optional[str],
            flows_mode: str, evidence_path: Optional[str], thresholds: tuple[str, ...],
            idle_timeout: float, max_flows: int, jobs: int, progress: Optional[bool],
            strict: bool) -> None:
    """Analyse pcap/pcapng files (PCAPS; '-' reads a capture from standard input).

    Frame numbers in the output are Wireshark's (1-based, per file). Exit status: 0 when the
    analysis ran (whether or not interference was found), 3 when an input is not a readable
    capture, 2 for usage errors.
    """
    from analyzer.pipeline import analyze_files, manual_gc
    from analyzer.report.document import to_document

    settings = Settings(thresholds=_parse_thresholds(thresholds), idle_timeout=idle_timeout,
                        max_flows=max_flows, strict=strict)
    bar = _progress_bar(pcaps, progress) if jobs == 1 else None
    try:
        # the cyclic collector stays paused while the report is written, as during the
        # analysis (analyze_files): it allocates much and creates no cycles
        with manual_gc():
            try:
                if jobs > 1:
                    from analyzer.parallel import analyze_files_parallel
                    result = analyze_files_parallel(list(pcaps), settings, jobs)
                else:
                    result = analyze_files(pcaps, settings, progress=bar.update if bar else None)
            finally:
                if bar is not None:
                    bar.close()
            if fmt in ("json", "jsonl"):
                # streamed: a capture's flows are never all in memory as dicts or one string
                from analyzer.report.document import write_json, write_jsonl
                writer = write_json if fmt == "json" else write_jsonl
                if output and output != "-":
                    with open(output, "w", encoding="utf-8", errors="backslashreplace", newline="") as fh:
                        writer(result, fh, flows_mode)
                else:
                    writer(result, sys.stdout, flows_mode)
                    sys.stdout.flush()
                doc = to_document(result, "none") if evidence_path else {}
            else:
                doc = to_document(result, flows_mode)
                _write(render(doc, fmt), output, sys.stdout)
            if evidence_path:
                from analyzer.report.evidence import write_evidence_pcapng
                n = write_evidence_pcapng(doc, evidence_path)
                click.echo(f"analyzer: wrote {n} evidence packet(s) to {evidence_path}", err=True)
    except AnalyzerError as err:
        _fail(err)
    except (OSError, ValueError) as err:  # evidence writer: a capture moved or changed
        click.echo(f"analyzer: error: {err}", err=True)
        sys.exit(int(ExitStatus.BAD_INPUT))
    except KeyboardInterrupt:
        click.echo("analyzer: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))


class _Bar:
    def __init__(self, total: int) -> None:
        self.total = total
        self.done = 0
        self._bar = click.progressbar(length=total, file=sys.stderr, label="analysing",
                                      show_eta=True, show_percent=True)
        self._bar.__enter__()
        self._last = 0

    def update(self, _packets: int, pos: int) -> None:
        if pos >= 0 and pos > self._last:
            self._bar.update(pos - self._last)
            self._last = pos

    def close(self) -> None:
        self._bar.__exit__(None, None, None)


def _progress_bar(paths: tuple[str, ...], wanted: Optional[bool]) -> Optional[_Bar]:
    if wanted is False or len(paths) != 1 or paths[0] == "-":
        return None
    try:
        size = os.path.getsize(paths[0])
    except OSError:
        return None
    if wanted is None and (not sys.stderr.isatty() or size < PROGRESS_MIN_BYTES):
        return None
    return _Bar(size)


@main.command()
@click.argument("results", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@format_option
@output_option
def report(results: tuple[str, ...], fmt: str, output: Optional[str]) -> None:
    """Render saved JSON/JSONL results (RESULTS) as one report, merging several.

    Typical use: analyse each capture of a campaign with -f json, then
    `analyzer report a.json b.json -f html -o campaign.html`.
    """
    from analyzer.report.merge import load_result, merge_documents

    try:
        docs = [load_result(p) for p in results]
    except (ValueError, OSError) as e:
        click.echo(f"analyzer: error: {e}", err=True)
        sys.exit(int(ExitStatus.BAD_INPUT))
    doc = merge_documents(docs) if len(docs) > 1 else docs[0]
    _write(render(doc, fmt), output, sys.stdout)


def _register_live_commands() -> None:
    from analyzer.cli_capture import capture, interfaces

    main.add_command(capture)
    main.add_command(interfaces)


_register_live_commands()

if __name__ == "__main__":  # pragma: no cover
    main()


def run() -> None:
    """The console script (and ``python -m analyzer``): :func:`main`, then the process ends
    without tearing the interpreter down. Freeing every object of a large analysis one by one
    cost ~2 % of a run; output is flushed first, and files are closed by their ``with`` blocks."""
    try:
        main()
        status: object = 0
    except SystemExit as exc:
        status = exc.code
    if status is None:
        status = 0
    elif not isinstance(status, int):
        print(status, file=sys.stderr)
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (BrokenPipeError, OSError):  # e.g. `analyzer ... | head`
        pass
    os._exit(status)

