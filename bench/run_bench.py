#!/usr/bin/env python3
"""Benchmark the analyzer against tshark, tcpdump and dpkt baselines on one capture.

    python bench/run_bench.py --generate 1000000            # bench/out/mixed-1M.pcap
    python bench/run_bench.py --file big.pcap --repeat 3 --jobs 2 --json out.json

Every tool runs in its own child process; wall time is measured around the child,
CPU time and peak RSS come from that child's rusage (``os.wait4``), so each tool's
peak RSS is measured separately (for a process tree ``ru_maxrss`` is the largest
single process; the analyzer runs are additionally sampled via /proc to get the
peak *sum* over the tree, which matters with ``--jobs``).  The file is read once
before timing so every tool sees a warm page cache.  With ``--repeat K`` the best
(lowest) wall time of K runs is reported, and the highest peak RSS.

Measured commands:
  analyzer        analyzer analyze FILE -f json -o OUT      (OUT: temp file, checked to be
                                                           non-empty JSON; --devnull: /dev/null)
  analyzer-jN     the same with --jobs N                   (--jobs N, repeatable)
  analyzer-python the same, interpreted (no compiled code)  (--python; ANALYZER_PURE_PYTHON=1)
  tshark-fields   tshark -r FILE -T fields -e frame.number -e ip.src -e ip.dst -e tcp.flags
                  (stdout to /dev/null)
  dpkt-decode     Python: dpkt pcap Reader + Ethernet/IP/TCP decode, counts RSTs
  dpkt-records    Python: bare dpkt pcap Reader record loop
  tcpdump-rst     tcpdump -r FILE -w /dev/null 'tcp[tcpflags] & tcp-rst != 0'
Ratios are analyzer / tool (e.g. 12x = the analyzer needs 12 times the tool's time).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any, Dict, List, Optional, Tuple

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
PAGE = os.sysconf("SC_PAGE_SIZE")

ALL_TOOLS = ["analyzer", "tshark-fields", "dpkt-decode", "dpkt-records", "tcpdump-rst"]


# ---------------------------------------------------------------------------
# workers (run as: run_bench.py --worker KIND FILE)
# ---------------------------------------------------------------------------

def worker(kind: str, path: str) -> int:
    import dpkt

    t0 = time.perf_counter()
    n = 0
    out: Dict[str, Any] = {}
    with open(path, "rb") as f:
        if kind == "dpkt-records":
            nbytes = 0
            for _ts, buf in dpkt.pcap.Reader(f):
                n += 1
                nbytes += len(buf)
            out["bytes"] = nbytes
        elif kind == "dpkt-decode":
            Ethernet = dpkt.ethernet.Ethernet
            IP = dpkt.ip.IP
            TCP = dpkt.tcp.TCP
            UDP = dpkt.udp.UDP
            TH_RST = dpkt.tcp.TH_RST
            tcp = udp = rst = other = 0
            for _ts, buf in dpkt.pcap.Reader(f):
                n += 1
                ip = Ethernet(buf).data
                if isinstance(ip, IP):
                    l4 = ip.data
                    if isinstance(l4, TCP):
                        tcp += 1
                        if l4.flags & TH_RST:
                            rst += 1
                    elif isinstance(l4, UDP):
                        udp += 1
                    else:
                        other += 1
                else:
                    other += 1
            out.update(tcp=tcp, udp=udp, rst=rst, other=other)
        else:
            raise SystemExit("unknown worker %r" % kind)
    out["packets"] = n
    out["inner_seconds"] = round(time.perf_counter() - t0, 4)
    print(json.dumps(out))
    return 0


# ---------------------------------------------------------------------------
# measurement
# ---------------------------------------------------------------------------

def _descendants(root: int) -> List[int]:
    """root and all its descendants (scans /proc; no /proc/*/children needed)."""
    parent: Dict[int, List[int]] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name, "rb") as f:
                st = f.read()
        except OSError:
            continue
        rp = st.rfind(b")")
        fields = st[rp + 2:].split()
        parent.setdefault(int(fields[1]), []).append(int(name))
    out = [root]
    i = 0
    while i < len(out):
        out.extend(parent.get(out[i], ()))
        i += 1
    return out


def _tree_rss_kb(root: int, skip_root: bool = False) -> int:
    total = 0
    for pid in _descendants(root)[1 if skip_root else 0:]:
        try:
            with open("/proc/%d/statm" % pid, "rb") as f:
                total += int(f.read().split()[1]) * PAGE // 1024
        except (OSError, IndexError, ValueError):
            pass
    return total


def find_gnu_time() -> Optional[str]:
    exe = shutil.which("time") or ("/usr/bin/time" if os.path.exists("/usr/bin/time") else None)
    if not exe:
        return None
    try:
        p = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return exe if "GNU" in p.stdout + p.stderr else None


# Why GNU time: subprocess starts children with vfork/posix_spawn, and on exec Linux
# folds the *parent's* RSS high-water mark into the child's ru_maxrss, so wait4()
# alone reports at least this Python process's peak.  GNU time is a small C program
# that forks the tool and reports the tool's own ru_maxrss (%M).
GNU_TIME: Optional[str] = None


def run_once(cmd: List[str], stdout: Any, timeout: Optional[float],
             sample_tree: bool, interval: float = 0.1) -> Dict[str, Any]:
    err = tempfile.TemporaryFile()
    tfile = None
    if GNU_TIME:
        fd, tfile = tempfile.mkstemp(prefix="bench-time-")
        os.close(fd)
        cmd = [GNU_TIME, "-f", "%M", "-o", tfile, "--"] + cmd
    t0 = time.perf_counter()
    try:
        p = subprocess.Popen(cmd, stdout=stdout, stderr=err, stdin=subprocess.DEVNULL)
    except OSError as e:
        return {"rc": None, "error": str(e)}
    stop = threading.Event()
    peak = [0]
    timed_out = [False]

    def sampler() -> None:
        while not stop.wait(interval):
            v = _tree_rss_kb(p.pid, skip_root=tfile is not None)  # not GNU time itself
            if v > peak[0]:
                peak[0] = v

    def killer() -> None:
        timed_out[0] = True
        try:
            os.kill(p.pid, 9)
        except OSError:
            pass

    th = threading.Thread(target=sampler, daemon=True) if sample_tree else None
    if th:
        th.start()
    tm = threading.Timer(timeout, killer) if timeout else None
    if tm:
        tm.start()
    _pid, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t0
    stop.set()
    if tm:
        tm.cancel()
    if th:
        th.join()
    p.returncode = os.waitstatus_to_exitcode(status)
    err.seek(0)
    stderr = err.read().decode("utf-8", "replace")
    err.close()
    maxrss = ru.ru_maxrss
    if tfile:
        try:
            with open(tfile) as f:
                maxrss = int(f.read().split()[-1])
        except (OSError, ValueError, IndexError):
            pass  # tool killed / time failed: keep the wait4 figure
        os.unlink(tfile)
    res = {"rc": p.returncode, "wall": wall, "user": ru.ru_utime, "sys": ru.ru_stime,
           "maxrss_kb": maxrss, "stderr": stderr, "timeout": timed_out[0]}
    if sample_tree:
        res["tree_rss_kb"] = peak[0]
    return res


def measure(name: str, cmd: List[str], repeat: int, timeout: Optional[float],
            capture_stdout: bool = False, sample_tree: bool = False,
            check: Any = None) -> Dict[str, Any]:
    r: Dict[str, Any] = {"tool": name, "cmd": " ".join(shlex.quote(c) for c in cmd),
                         "walls": []}
    best: Optional[Dict[str, Any]] = None
    for _ in range(repeat):
        if capture_stdout:
            out = tempfile.TemporaryFile()
            res = run_once(cmd, out, timeout, sample_tree)
            out.seek(0)
            res["stdout"] = out.read().decode("utf-8", "replace")
            out.close()
        else:
            res = run_once(cmd, subprocess.DEVNULL, timeout, sample_tree)
        if res.get("rc") is None:
            r.update(status="error", note=res.get("error", ""))
            return r
        if res["timeout"]:
            r.update(status="timeout", note="killed after %ss" % timeout)
            return r
        if res["rc"] != 0:
            tail = res["stderr"].strip().splitlines()[-3:]
            r.update(status="failed", note="rc=%d: %s" % (res["rc"], " | ".join(tail)))
            return r
        if check:
            problem = check(res)
            if problem:
                r.update(status="failed", note=problem, wall_s=round(res["wall"], 3))
                return r
        r["walls"].append(round(res["wall"], 4))
        r["maxrss_kb"] = max(r.get("maxrss_kb", 0), res["maxrss_kb"])
        if sample_tree:
            r["tree_rss_kb"] = max(r.get("tree_rss_kb", 0), res.get("tree_rss_kb", 0))
        if best is None or res["wall"] < best["wall"]:
            best = res
    assert best is not None
    r.update(status="ok", wall_s=round(best["wall"], 4), user_s=round(best["user"], 3),
             sys_s=round(best["sys"], 3))
    if capture_stdout:
        try:
            r["output"] = json.loads(best["stdout"].strip().splitlines()[-1])
        except (ValueError, IndexError):
            r["output"] = best["stdout"][-500:]
    return r


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def short_count(n: int) -> str:
    for div, suf in ((1_000_000, "M"), (1_000, "k")):
        if n >= div and n % div == 0:
            return "%d%s" % (n // div, suf)
    return str(n)


def count_packets(path: str) -> int:
    """Fast record count of a classic pcap (header walk only)."""
    with open(path, "rb") as f:
        hdr = f.read(24)
        magic = struct.unpack("<I", hdr[:4])[0]
        if magic in (0xA1B2C3D4, 0xA1B23C4D):
            rec = struct.Struct("<IIII")
        elif magic in (0xD4C3B2A1, 0x4D3CB2A1):
            rec = struct.Struct(">IIII")
        else:
            raise ValueError("not a classic pcap (pcapng?) - cannot count quickly")
        n = 0
        while True:
            h = f.read(16)
            if len(h) < 16:
                return n
            f.seek(rec.unpack(h)[2], 1)
            n += 1


def version_of(cmd: List[str]) -> Optional[str]:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = (p.stdout + p.stderr).strip().splitlines()
    lines = [ln for ln in lines if not ln.startswith("Running as user")]
    return lines[0] if lines else None


def warm_cache(path: str) -> float:
    t0 = time.perf_counter()
    with open(path, "rb") as f:
        while f.read(1 << 24):
            pass
    return time.perf_counter() - t0


def fmt_ratio(a: Optional[float], b: Optional[float]) -> str:
    if not a or not b:
        return "-"
    return "%.2fx" % (a / b)


def print_table(results: List[Dict[str, Any]], packets: int, baseline: Optional[Dict[str, Any]]
                ) -> None:
    hdr = ["tool", "status", "wall s", "pkt/s", "CPU s", "peak RSS MB", "tree RSS MB",
           "analyzer/tool time", "analyzer/tool RSS"]
    rows = []
    for r in results:
        ok = r.get("status") == "ok"
        wall = r.get("wall_s") if ok else None
        rss = r.get("maxrss_kb") if ok else None
        base_wall = baseline.get("wall_s") if baseline else None
        base_rss = baseline.get("maxrss_kb") if baseline else None
        rows.append([
            r["tool"], r.get("status", "?"),
            "%.3f" % wall if wall else "-",
            "{:,.0f}".format(packets / wall) if wall else "-",
            "%.2f" % (r["user_s"] + r["sys_s"]) if ok else "-",
            "%.1f" % (rss / 1024) if rss else "-",
            "%.1f" % (r["tree_rss_kb"] / 1024) if ok and r.get("tree_rss_kb") else "-",
            fmt_ratio(base_wall, wall) if ok else "-",
            fmt_ratio(base_rss, rss) if ok else "-",
        ])
    widths = [max(len(str(x)) for x in col) for col in zip(hdr, *rows)]
    line = "  ".join("%-*s" % (w, h) for w, h in zip(widths, hdr))
    print(line)
    print("-" * len(line))
    for row in rows:
        print("  ".join(("%-*s" if i < 2 else "%*s") % (w, c)
                        for i, (w, c) in enumerate(zip(widths, row))))
    notes = [(r["tool"], r["note"]) for r in results if r.get("note")]
    if notes:
        print()
        for tool, note in notes:
            print("note: %s: %s" % (tool, note))


# ---------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------

def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 2)[2])
    ap.add_argument("--file", help="capture to benchmark")
    ap.add_argument("--generate", type=int, metavar="N",
                    help="generate an N-packet capture with bench/gen_capture.py if the "
                    "file is missing (default file bench/out/mixed-<N>.pcap)")
    ap.add_argument("--seed", type=int, default=1, help="seed for --generate")
    ap.add_argument("--repeat", type=int, default=1, metavar="K", help="best of K runs")
    ap.add_argument("--jobs", type=int, action="append", default=[], metavar="N",
                    help="also run the analyzer with --jobs N (repeatable)")
    ap.add_argument("--python", action="store_true",
                    help="also run the analyzer interpreted, without any compiled code "
                         "(ANALYZER_PURE_PYTHON=1)")
    ap.add_argument("--tools", default=",".join(ALL_TOOLS),
                    help="comma-separated subset of: " + ", ".join(ALL_TOOLS))
    ap.add_argument("--analyzer-cmd", default=None,
                    help="analyzer command (e.g. 'python -m analyzer'); default: the analyzer "
                         "console script beside this Python, else 'python -m analyzer' (not a "
                         "PATH lookup: a pyenv shim alone adds ~50 ms to every run)")
    ap.add_argument("--devnull", action="store_true",
                    help="write the analyzer report to /dev/null (no output check)")
    ap.add_argument("--no-gnu-time", action="store_true",
                    help="do not use GNU time for peak RSS (use os.wait4 only)")
    ap.add_argument("--timeout", type=float, default=None, help="per-run timeout, seconds")
    ap.add_argument("--json", metavar="OUT", help="write results as JSON")
    ap.add_argument("--worker", nargs=2, metavar=("KIND", "FILE"), help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.worker:
        return worker(*a.worker)

    if a.file:
        path = a.file
    elif a.generate:
        path = os.path.join(HERE, "out", "mixed-%s.pcap" % short_count(a.generate))
    else:
        ap.error("need --file or --generate N")
    gen_info = None
    if not os.path.exists(path):
        if not a.generate:
            ap.error("%s does not exist (use --generate N)" % path)
        sys.path.insert(0, HERE)
        import gen_capture  # noqa: E402

        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        print("generating %s (%d packets, seed %d) ..." % (path, a.generate, a.seed))
        s = gen_capture.generate(a.generate, path, seed=a.seed)
        gen_info = {"seconds": round(s["seconds"], 3), "packets": s["packets"],
                    "bytes": s["bytes"], "seed": a.seed}
        print()

    size = os.path.getsize(path)
    truth = (path[:-5] if path.endswith(".pcap") else path) + ".truth.json"
    packets = None
    if os.path.exists(truth):
        try:
            with open(truth) as f:
                tj = json.load(f)
            if tj.get("bytes") == size:
                packets = tj["packets"]
        except (OSError, ValueError, KeyError):
            pass
    if packets is None:
        packets = count_packets(path)
    warm = warm_cache(path)
    print("file: %s  %d packets  %.1f MB  (cache warm-up read %.2f s)"
          % (path, packets, size / 1e6, warm))
    print("host: %s, %d CPUs, Python %s" % (platform.machine(), os.cpu_count() or 0,
                                            platform.python_version()))
    print()

    global GNU_TIME
    GNU_TIME = None if a.no_gnu_time else find_gnu_time()
    if GNU_TIME:
        rss_how = "ru_maxrss of the tool's own process, via GNU time %M"
    else:
        rss_how = ("ru_maxrss via os.wait4 (GNU time not found: includes this Python "
                   "process's RSS high-water mark as a floor)")
    tools = [t.strip() for t in a.tools.split(",") if t.strip()]
    unknown = set(tools) - set(ALL_TOOLS)
    if unknown:
        ap.error("unknown tools: %s" % ", ".join(sorted(unknown)))
    results: List[Dict[str, Any]] = []
    tmpdir = tempfile.mkdtemp(prefix="bench-")
    env_versions: Dict[str, Any] = {}
    baseline: Optional[Dict[str, Any]] = None
    try:
        if "analyzer" in tools:
            if a.analyzer_cmd is None:
                script = os.path.join(os.path.dirname(sys.executable), "analyzer")
                acmd = [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "analyzer"]
            else:
                acmd = shlex.split(a.analyzer_cmd)
            variants: List[Tuple[str, List[str]]] = [("analyzer", [])] + [("analyzer-j%d" % j, ["--jobs", str(j)])
                                             for j in a.jobs]
            if a.python:
                variants.append(("analyzer-python", []))
            if shutil.which(acmd[0]) is None:
                for name, _ in variants:
                    results.append({"tool": name, "status": "missing",
                                    "note": "command %r not found on PATH" % acmd[0]})
            else:
                env_versions["analyzer"] = version_of(acmd + ["--version"])
                for name, extra in variants:
                    out = "/dev/null" if a.devnull else os.path.join(tmpdir, name + ".json")

                    def check(res: Dict[str, Any], out: str = out) -> Optional[str]:
                        if out == "/dev/null":
                            return None
                        if not os.path.exists(out) or os.path.getsize(out) == 0:
                            return ("exited 0 after %.2f s but wrote no report to -o "
                                    "(analyzer not implemented yet?)" % res["wall"])
                        try:
                            with open(out) as f:
                                json.load(f)
                        except ValueError as e:
                            return "report is not valid JSON: %s" % e
                        finally:
                            os.unlink(out)
                        return None

                    cmd = acmd + ["analyze", path, "-f", "json", "-o", out] + extra
                    if name == "analyzer-python":
                        cmd = ["env", "ANALYZER_PURE_PYTHON=1"] + cmd
                    print("running %s ..." % name, flush=True)
                    r = measure(name, cmd, a.repeat, a.timeout, sample_tree=True, check=check)
                    results.append(r)
                    if name == "analyzer" and r.get("status") == "ok":
                        baseline = r
        if "tshark-fields" in tools:
            if shutil.which("tshark") is None:
                results.append({"tool": "tshark-fields", "status": "missing",
                                "note": "tshark not installed"})
            else:
                env_versions["tshark"] = version_of(["tshark", "--version"])
                print("running tshark-fields ...", flush=True)
                results.append(measure("tshark-fields", [
                    "tshark", "-r", path, "-T", "fields", "-e", "frame.number", "-e", "ip.src",
                    "-e", "ip.dst", "-e", "tcp.flags"], a.repeat, a.timeout))
        for kind in ("dpkt-decode", "dpkt-records"):
            if kind in tools:
                print("running %s ..." % kind, flush=True)
                r = measure(kind, [sys.executable, os.path.abspath(__file__), "--worker",
                                   kind, path], a.repeat, a.timeout, capture_stdout=True)
                got = r.get("output", {})
                if isinstance(got, dict) and got.get("packets") not in (None, packets):
                    r["note"] = "counted %s packets, expected %d" % (got.get("packets"), packets)
                results.append(r)
        if "dpkt-decode" in tools or "dpkt-records" in tools:
            try:
                import dpkt
                env_versions["dpkt"] = dpkt.__version__
            except ImportError:
                pass
        if "tcpdump-rst" in tools:
            if shutil.which("tcpdump") is None:
                results.append({"tool": "tcpdump-rst", "status": "missing",
                                "note": "tcpdump not installed"})
            else:
                env_versions["tcpdump"] = version_of(["tcpdump", "--version"])
                print("running tcpdump-rst ...", flush=True)
                results.append(measure("tcpdump-rst", [
                    "tcpdump", "-r", path, "-w", "/dev/null", "tcp[tcpflags] & tcp-rst != 0"],
                    a.repeat, a.timeout))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)

    for r in results:
        if r.get("status") == "ok":
            r["pkts_per_s"] = round(packets / r["wall_s"], 1)
            if baseline:
                r["analyzer_time_ratio"] = round(baseline["wall_s"] / r["wall_s"], 3)
                r["analyzer_rss_ratio"] = round(baseline["maxrss_kb"] / r["maxrss_kb"], 3)
    print()
    print("best of %d run(s); peak RSS = %s, max over runs;\n"
          "tree RSS = peak of the summed RSS of the process tree, sampled every 0.1 s"
          % (a.repeat, rss_how))
    print_table(results, packets, baseline)
    if baseline is None:
        print("\n(no analyzer result: ratios relative to the analyzer are not available)")

    if a.json:
        doc = {
            "file": os.path.abspath(path), "packets": packets, "bytes": size,
            "repeat": a.repeat, "generated": gen_info,
            "host": {"machine": platform.machine(), "cpus": os.cpu_count(),
                     "python": platform.python_version(), "platform": platform.platform()},
            "versions": env_versions,
            "rss_method": rss_how,
            "results": results,
        }
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
            f.write("\n")
        print("\nwrote %s" % a.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
