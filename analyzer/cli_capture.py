"""Command line for live capture: ``analyzer capture`` and ``analyzer interfaces``.

A thin click layer like :mod:`analyzer.cli` (options -> :func:`analyzer.capture.run_capture` ->
exit status). It does not import :mod:`analyzer.cli`, so that ``cli.py`` can register these
commands with ``main.add_command(...)`` without an import cycle.
"""
from __future__ import annotations

import os
import sys
from typing import NoReturn, Optional

import click

from analyzer.report import FORMATS
from analyzer.status import AnalyzerError, ExitStatus

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}
# Default --idle-timeout: shorter than the offline Settings.idle_timeout so that live verdicts
# come quickly (a flow is decided once it has been silent this long).
LIVE_IDLE_TIMEOUT = 30.0


def _fail(message: str, status: ExitStatus) -> NoReturn:
    click.echo(f"analyzer: error: {message}", err=True)
    sys.exit(int(status))


@click.command(context_settings=CONTEXT)
@click.option("-i", "--interface", required=True, metavar="IFACE",
              help="Network interface to capture on, or 'any' for all of them (see "
                   "'analyzer interfaces'). Ethernet and loopback interfaces are captured as "
                   "Ethernet frames, 'any' and other interfaces as Linux cooked (SLL2) records.")
@click.option("--bpf", metavar="EXPR", default=None,
              help="Capture filter in tcpdump/pcap-filter syntax, e.g. \"tcp port 443 or udp port "
                   "53\". It runs in the kernel, so packets it rejects cost nothing. Keep both "
                   "directions of the flows you want analysed.")
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), default=None,
              metavar="SECONDS", help="Stop after this many seconds (default: run until Ctrl-C "
                                      "or SIGTERM).")
@click.option("--count", type=click.IntRange(min=1), default=None, metavar="N",
              help="Stop after N packets (counted after the --bpf filter).")
@click.option("-w", "--write", "write_path", type=click.Path(dir_okay=False, writable=True),
              default=None, metavar="FILE",
              help="Also save every captured packet to FILE: pcapng (nanosecond time stamps) when "
                   "the name ends in .pcapng, else classic pcap (microseconds). Frame numbers in "
                   "the verdicts' evidence are frame numbers in this file. It is flushed as "
                   "packets arrive and closed cleanly on Ctrl-C/SIGTERM, so "
                   "'analyzer analyze FILE' can re-run the analysis offline.")
@click.option("-f", "--format", "fmt", type=click.Choice(FORMATS), default="table",
              show_default=True,
              help="Format of the final report (table, one JSON document, JSON lines, CSV, "
                   "Markdown, self-contained HTML). Verdicts are also printed as they are decided: "
                   "as JSON lines for json/jsonl, one readable line otherwise; on standard output, "
                   "or on standard error when standard output receives a json/csv/markdown/html "
                   "document. With jsonl on standard output the final report adds only the flow "
                   "and summary lines.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True, allow_dash=True),
              default=None, metavar="FILE",
              help="Write the final report to FILE instead of standard output (verdicts are then "
                   "printed to standard output as they come).")
@click.option("--idle-timeout", type=click.FloatRange(min=0, min_open=True),
              default=LIVE_IDLE_TIMEOUT,
              show_default=True, metavar="SECONDS",
              help="Finish (and decide) a flow after this many seconds without packets. Shorter "
                   "than the offline default so verdicts come quickly; closed flows (RST, FIN) are "
                   "decided a few seconds after they close, DNS lookups ~10 s after the last "
                   "answer.")
@click.option("-q", "--quiet", is_flag=True,
              help="No status line and no start/summary messages on standard error (the status "
                   "line is shown only when standard error is a terminal).")
def capture(interface: str, bpf: Optional[str], duration: Optional[float], count: Optional[int],
            write_path: Optional[str], fmt: str, output: Optional[str], idle_timeout: float,
            quiet: bool) -> None:
    """Capture live traffic on IFACE and report interference as it happens.

    Needs root or CAP_NET_RAW (Linux AF_PACKET). The status line on standard error shows
    packets, flows, verdicts and packets the kernel dropped because the analysis fell behind.
    Stop with Ctrl-C, SIGTERM, --duration or --count: the -w file is closed, the remaining
    flows are decided and the final report is written.

    \b
    Examples:
      sudo analyzer capture -i eth0
      sudo analyzer capture -i any --bpf "tcp port 443 or udp port 53" -w run.pcapng
      sudo analyzer capture -i wlan0 --duration 300 -f json -o result.json

    Exit status: 0 when the capture ran, 2 for usage errors (unknown interface, bad filter),
    4 without permission to capture, 1 when the capture failed midway (the report of what was
    captured is still written), 130 when a second Ctrl-C aborted the report.
    """
    from analyzer.capture import CaptureOptions, run_capture
    from analyzer.config import Settings

    opts = CaptureOptions(interface=interface, bpf=bpf, duration=duration, count=count,
                          write=write_path, fmt=fmt, output=output, quiet=quiet)
    stderr = sys.stderr
    try:
        run_capture(opts, Settings(idle_timeout=idle_timeout), sys.stdout,
                    stderr, status_enabled=_isatty(stderr))
    except AnalyzerError as err:
        _fail(str(err), err.status)
    except KeyboardInterrupt:
        click.echo("analyzer: interrupted", err=True)
        sys.exit(int(ExitStatus.INTERRUPTED))
    except Exception as err:  # no traceback for the user; the message names the bug
        _fail(f"internal error: {type(err).__name__}: {err} (please report this)", ExitStatus.ERROR)


def _isatty(stream: object) -> bool:
    try:
        return bool(getattr(stream, "isatty")())
    except (AttributeError, ValueError, OSError):
        return False


@click.command(context_settings=CONTEXT)
def interfaces() -> None:
    """List the network interfaces that 'analyzer capture -i' accepts (in this network
    namespace), with their framing, state, MTU and addresses. Needs no privileges."""
    from analyzer.sources.live import ANY, list_interfaces

    try:
        found = list_interfaces(with_addresses=True)
    except OSError as e:
        _fail(f"cannot list interfaces: {e.strerror}", ExitStatus.ERROR)
    rows = [(str(i.index), i.name, i.kind, ("up" if i.up else "down")
             + (", running" if i.running else ""), str(i.mtu), " ".join(i.addresses) or "-")
            for i in found]
    rows.append(("-", ANY, "cooked (SLL2)", "every interface", "-", "-"))
    headers = ("index", "name", "type", "state", "mtu", "addresses")
    widths = [max(len(r[c]) for r in rows + [headers]) for c in range(len(headers) - 1)]
    for r in [headers] + rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r, widths)) + "  " + r[-1])
    if os.geteuid() != 0:
        click.echo("\n(capturing needs root or CAP_NET_RAW)")


__all__ = ["capture", "interfaces"]
