"""Regenerate the curated lab captures and their ground truth.

    sudo python -m tests.lab.make_captures --out captures/          # all scenarios
    sudo python -m tests.lab.make_captures --out captures/ sni-drop  # some

Writes ``<out>/<scenario>.pcap`` (client-side capture) and ``<out>/<scenario>.truth.json``
and checks that each pcap is readable by tcpdump and smaller than 200 KB.
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from pathlib import Path

if __name__ == "__main__" and not __package__:  # run as a script: python tests/lab/make_captures.py
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    __package__ = "tests.lab"

from .scenarios import SCENARIOS, ScenarioSkipped, run_scenario
from .topology import have_lab_prereqs

MAX_BYTES = 200 * 1024


def count_packets(pcap: Path) -> int:
    if shutil.which("tcpdump") is None:
        return -1
    cp = subprocess.run(["tcpdump", "-n", "-r", str(pcap)], capture_output=True, text=True)
    if cp.returncode != 0:
        raise RuntimeError(f"tcpdump cannot read {pcap}: {cp.stderr}")
    return len([x for x in cp.stdout.splitlines() if x.strip()])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tests.lab.make_captures",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("--out", default="captures", help="output directory (default: captures)")
    ap.add_argument("--server-side", action="store_true",
                    help="also keep a capture on the router's server-facing link")
    ap.add_argument("scenarios", nargs="*", help=f"default: all ({', '.join(SCENARIOS)})")
    a = ap.parse_args(argv)
    why = have_lab_prereqs()
    if why:
        print(f"cannot run the lab: {why}", file=sys.stderr)
        return 2
    names = a.scenarios or list(SCENARIOS)
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"unknown scenario(s): {', '.join(unknown)}", file=sys.stderr)
        return 2
    out = Path(a.out)
    t0 = time.monotonic()
    failed = []
    for n in names:
        try:
            r = run_scenario(n, out, server_capture=a.server_side)
        except ScenarioSkipped as exc:
            print(f"{n:28s} SKIPPED: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - keep going, report at the end
            print(f"{n:28s} FAILED: {type(exc).__name__}: {exc}")
            failed.append(n)
            continue
        size = r.pcap.stat().st_size
        pk = count_packets(r.pcap)
        exp = r.truth["expected_verdicts"]
        what = ("no verdict" if not exp else
                "; ".join(f"{e['technique']}/{e['trigger']}/{e['target']} {e['server']}"
                          for e in exp))
        flag = "" if size < MAX_BYTES else "  TOO BIG"
        print(f"{n:28s} {pk:4d} pkts {size:7d} B {r.seconds:5.1f}s  {what}{flag}")
        if size >= MAX_BYTES:
            failed.append(n)
    print(f"total {time.monotonic() - t0:.1f}s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
