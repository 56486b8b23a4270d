#!/usr/bin/env python3
"""Throughput of the live capture path (issue #6). A benchmark, not a test: it prints numbers.

    sudo python bench/live_bench.py                         # 200k packets, top speed, both modes
    sudo python bench/live_bench.py --rate 60000 --packets 600000 --mode analyzer
    sudo python bench/live_bench.py --json out.json

Two network namespaces joined by a veth pair (``anbench-<pid>-tx`` / ``-rx``, 10.76.X.1/.2;
deleted at the end, nothing touches the host's interfaces). A C-speed sender in ``tx``
(``tcpreplay --preload-pcap``, or, without tcpreplay, a few Python processes writing prebuilt
frames to AF_PACKET sockets) sends ``--packets`` small UDP packets (60-byte frames, ``--flows``
different source ports) at ``--rate`` packets/s (0: as fast as it can) to the receiver in
``rx``:

source    the capture path alone: :class:`analyzer.sources.live.LiveCapture` batches read in a
          loop (AF_PACKET socket, recvmsg_into a preallocated buffer, kernel time stamps).
analyzer  the whole command: ``analyzer capture -i VETH --bpf udp --count N -f json -o FILE``
          (capture + decode + flow tracking + detectors), i.e. what a user runs.

Printed per mode: packets offered (sender) and captured, kernel drops (PACKET_STATISTICS),
the arrival rate (packets / span of their kernel time stamps: what the sender achieved) and the
processing rate (source: packets / wall time from the first packet to the last one read;
analyzer: packets / wall time from the sender's start to the command's exit, an upper bound that
includes writing the report). The capture keeps up when drops are 0.

Measured (2 vCPUs shared by sender and receiver, Python 3.11, 60-byte frames, 1000 flows):
source 140k-280k pps offered at top speed, 0 drops; analyzer 60k pps (10 s, 20 s): 0 drops;
100k pps (10 s x5, 30 s x1): 0 drops in 5 of 6 runs, 10% dropped in one (noisy neighbour);
at top speed (140k-280k pps bursts) the full analysis drops ~5-40%.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from typing import Any, Optional

ETHERTYPE_IPV4 = 0x0800
IPPROTO_UDP = 17
PAYLOAD = b"analyzer-live-bench"[:18]  # 14 + 20 + 8 + 18 = 60-byte frames (Ethernet minimum)
DST_PORT = 9  # discard

RECEIVER = r"""
import json, sys, time
from analyzer.sources.live import LiveCapture
iface, want, idle = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
cap = LiveCapture(iface, "udp")
cap.open()
print("READY", flush=True)
n = 0; first_wall = last_wall = None; first_ts = last_ts = None
while n < want:
    b = cap.read_batch(idle)
    if b is None:
        if n:
            break
        continue
    now = time.monotonic()
    if first_wall is None:
        first_wall, first_ts = now, b.ts[0]
    last_wall, last_ts = now, b.ts[-1]
    n += len(b)
kpackets, kdrops = cap.kernel_stats()
cap.close()
print(json.dumps({"captured": n, "kernel_packets": kpackets, "kernel_drops": kdrops,
                  "wall": (last_wall - first_wall) if n else 0.0,
                  "span": (last_ts - first_ts) if n else 0.0, "rcvbuf": cap.rcvbuf}), flush=True)
"""

SENDER = r"""
import os, socket, sys, time
iface, frames_path, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
frames = open(frames_path, "rb").read().split(b"\0SPLIT\0")
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((iface, 0))
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
send = s.send
n = len(frames)
i = 0
while i < count:
    try:
        send(frames[i % n])
        i += 1
    except BlockingIOError:
        time.sleep(0)
"""


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=120)


def checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def frame(src_mac: bytes, dst_mac: bytes, src: str, dst: str, sport: int) -> bytes:
    udp = struct.pack("!HHHH", sport, DST_PORT, 8 + len(PAYLOAD), 0) + PAYLOAD
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0x4000, 64, IPPROTO_UDP, 0,
                     socket.inet_aton(src), socket.inet_aton(dst))
    ip = ip[:10] + struct.pack("!H", checksum(ip)) + ip[12:]
    return dst_mac + src_mac + struct.pack("!H", ETHERTYPE_IPV4) + ip + udp


class Pair:
    def __init__(self) -> None:
        pid = os.getpid()
        x = pid % 250 + 1
        self.tx, self.rx = f"anbench-{pid}-tx", f"anbench-{pid}-rx"
        self.tif, self.rif = f"abn{pid % 100000}t", f"abn{pid % 100000}r"
        self.tx_ip, self.rx_ip = f"10.76.{x}.1", f"10.76.{x}.2"

    def up(self) -> None:
        run("ip", "netns", "add", self.tx)
        run("ip", "netns", "add", self.rx)
        run("ip", "link", "add", self.tif, "netns", self.tx, "type", "veth", "peer", "name",
            self.rif, "netns", self.rx)
        for ns, dev, ip in ((self.tx, self.tif, self.tx_ip), (self.rx, self.rif, self.rx_ip)):
            run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            run("ip", "-n", ns, "link", "set", dev, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in (self.tx, self.rx):
            run("ip", "netns", "del", ns, check=False)

    def mac(self, ns: str, dev: str) -> bytes:
        info = json.loads(run("ip", "-n", ns, "-j", "link", "show", dev).stdout)
        return bytes.fromhex(info[0]["address"].replace(":", ""))

    def exec(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]


def write_pcap(path: str, frames: list[bytes], count: int) -> None:
    with open(path, "wb") as fh:
        fh.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
        n = len(frames)
        chunk = bytearray()
        for i in range(count):
            f = frames[i % n]
            chunk += struct.pack("<IIII", i // 1_000_000, i % 1_000_000, len(f), len(f)) + f
            if len(chunk) > 1 << 20:
                fh.write(chunk)
                chunk.clear()
        fh.write(chunk)


def send(pair: Pair, sender: str, workdir: str, frames: list[bytes], count: int,
         rate: int) -> dict[str, Any]:
    t0 = time.monotonic()
    if sender == "tcpreplay":
        pcap = os.path.join(workdir, "bench.pcap")
        if not os.path.exists(pcap):
            write_pcap(pcap, frames, count)
        speed = ["--topspeed"] if rate <= 0 else [f"--pps={rate}"]
        proc = run(*pair.exec(pair.tx, "tcpreplay", "-q", "--preload-pcap", *speed, "-i", pair.tif,
                              pcap), check=False)
        out = proc.stdout + proc.stderr
        return {"sender": "tcpreplay", "sent": count, "seconds": time.monotonic() - t0,
                "report": " ".join(line.strip() for line in out.splitlines()
                                   if "Rated" in line or "Actual" in line)}
    path = os.path.join(workdir, "frames.bin")
    with open(path, "wb") as fh:
        fh.write(b"\0SPLIT\0".join(frames))
    workers = max(1, min(4, (os.cpu_count() or 2) - 1))
    share = [count // workers + (1 if i < count % workers else 0) for i in range(workers)]
    procs = [subprocess.Popen(pair.exec(pair.tx, sys.executable, "-c", SENDER, pair.tif, path,
                                        str(n))) for n in share]
    for p in procs:
        p.wait()
    return {"sender": f"python x{workers} (rate not limited)", "sent": count,
            "seconds": time.monotonic() - t0, "report": ""}


def bench_source(pair: Pair, args: argparse.Namespace, sender: str, workdir: str,
                 frames: list[bytes]) -> dict[str, Any]:
    rx = subprocess.Popen(pair.exec(pair.rx, sys.executable, "-c", RECEIVER, pair.rif,
                                    str(args.packets), "2.0"),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert rx.stdout is not None
    if rx.stdout.readline().strip() != "READY":
        raise SystemExit(f"receiver failed: {rx.stderr.read() if rx.stderr else ''}")
    sent = send(pair, sender, workdir, frames, args.packets, args.rate)
    out, err = rx.communicate(timeout=600)
    if rx.returncode != 0:
        raise SystemExit(f"receiver failed: {err}")
    res = json.loads(out.strip().splitlines()[-1])
    return {"mode": "source", **sent, **res}


def bench_analyzer(pair: Pair, args: argparse.Namespace, sender: str, workdir: str,
                   frames: list[bytes]) -> dict[str, Any]:
    out_json = os.path.join(workdir, "result.json")
    shim = ("from analyzer.cli import main\n"
            "from analyzer.cli_capture import capture, interfaces\n"
            "main.commands.get('capture') or main.add_command(capture)\n"
            "main()\n")
    cmd = [sys.executable, "-c", shim, "capture", "-i", pair.rif, "--bpf", "udp",
           "--count", str(args.packets), "--duration", str(args.timeout), "-f", "json",
           "-o", out_json]
    rx = subprocess.Popen(pair.exec(pair.rx, *cmd), stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    assert rx.stderr is not None
    line = rx.stderr.readline()
    if "capturing on" not in line:
        raise SystemExit(f"analyzer capture failed: {line}{rx.stderr.read()}")
    t0 = time.monotonic()
    sent = send(pair, sender, workdir, frames, args.packets, args.rate)
    try:  # --count ends it; when packets were lost, Ctrl-C it after a grace period
        rx.wait(timeout=args.grace)
    except subprocess.TimeoutExpired:
        rx.send_signal(signal.SIGINT)
    rx.communicate(timeout=args.timeout + 120)
    wall = time.monotonic() - t0
    if rx.returncode != 0:
        raise SystemExit(f"analyzer capture exited with {rx.returncode}")
    with open(out_json, encoding="utf-8") as fh:
        doc = json.load(fh)
    inp = doc["inputs"][0]
    span = (inp["last_ts"] - inp["first_ts"]) if inp["first_ts"] is not None else 0.0
    # Processing wall time: from the sender's start until the capture has handled the N-th
    # packet (--count), finished its flows and written the report (an upper bound).
    return {"mode": "analyzer", **sent, "captured": inp["packets"],
            "kernel_drops": doc["stats"].get("kernel_drops"), "span": span,
            "wall": wall if inp["packets"] >= args.packets else None,
            "flows": doc["stats"]["flows"], "capture_seconds": doc["stats"]["seconds"],
            "send_seconds": sent["seconds"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=200_000, help="packets to send (default 200000)")
    ap.add_argument("--rate", type=int, default=0, help="packets/s to offer (0: top speed)")
    ap.add_argument("--flows", type=int, default=1000, help="distinct UDP source ports (flows)")
    ap.add_argument("--mode", choices=("source", "analyzer", "both"), default="both")
    ap.add_argument("--sender", choices=("auto", "tcpreplay", "python"), default="auto")
    ap.add_argument("--grace", type=float, default=10.0,
                    help="analyzer mode: seconds after the sender finished before the capture "
                         "is stopped with SIGINT when it has not seen every packet (default 10)")
    ap.add_argument("--timeout", type=float, default=600.0,
                    help="analyzer mode: --duration guard (default 600)")
    ap.add_argument("--json", help="also write the results as JSON to this file")
    args = ap.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("live_bench.py needs root (network namespaces, packet sockets)")
    sender = args.sender
    if sender == "auto":
        sender = "tcpreplay" if shutil.which("tcpreplay") else "python"
    if sender == "tcpreplay" and not shutil.which("tcpreplay"):
        raise SystemExit("tcpreplay is not installed (apt-get install tcpreplay); "
                         "use --sender python")
    pair = Pair()
    pair.down()
    results: list[dict[str, Any]] = []
    try:
        pair.up()
        src_mac, dst_mac = pair.mac(pair.tx, pair.tif), pair.mac(pair.rx, pair.rif)
        frames = [frame(src_mac, dst_mac, pair.tx_ip, pair.rx_ip, 20000 + i)
                  for i in range(max(1, args.flows))]
        with tempfile.TemporaryDirectory(prefix="live-bench-") as workdir:
            modes = ["source", "analyzer"] if args.mode == "both" else [args.mode]
            for mode in modes:
                fn = bench_source if mode == "source" else bench_analyzer
                r = fn(pair, args, sender, workdir, frames)
                results.append(r)
                report(r, args)
    finally:
        pair.down()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"args": vars(args), "cpus": os.cpu_count(), "results": results}, fh,
                      indent=2)


def report(r: dict[str, Any], args: argparse.Namespace) -> None:
    captured = r["captured"]
    span = r.get("span") or 0.0
    arrival = captured / span if span > 0 else 0.0
    wall: Optional[float] = r.get("wall")
    print(f"[{r['mode']}] offered {r['sent']:,} packets ({r['sender']}, "
          f"{'top speed' if args.rate <= 0 else f'{args.rate:,} pps'}; {r['report'] or 'n/a'})")
    line = (f"[{r['mode']}] captured {captured:,}  kernel drops {r.get('kernel_drops')}  "
            f"arrival {arrival:,.0f} pps")
    if wall:
        line += f"  processed {captured / wall:,.0f} pps"
    if r.get("flows") is not None:
        line += f"  flows {r['flows']:,}"
    if r.get("capture_seconds") is not None:
        line += f"  (capture ran {r['capture_seconds']:.2f}s, sender {r['send_seconds']:.2f}s)"
    print(line, flush=True)


if __name__ == "__main__":
    main()
