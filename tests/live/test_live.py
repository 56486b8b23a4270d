"""Live capture (issue #6): ``analyzer capture`` and ``analyzer interfaces``.

The ``live``-marked tests need root: they build two network namespaces joined by a veth pair
(``anlive-<pid>-c`` / ``anlive-<pid>-s``, 10.77.X.2 / 10.77.X.1), capture inside the client
namespace while real traffic flows, and inject forged packets with scapy from the server
namespace. Nothing touches the host's own interfaces; everything is deleted in ``finally``.

The other tests (BPF rewriting, the pcap/pcapng writer, incremental verdicts) run anywhere.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Optional

import pytest

from analyzer.config import Settings
from analyzer.sources.files import LINKTYPE_EN10MB, LINKTYPE_LINUX_SLL2, open_reader

ROOT = Path(__file__).resolve().parents[2]
IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
HAVE_IP = shutil.which("ip") is not None
needs_root = pytest.mark.skipif(not (IS_ROOT and HAVE_IP and sys.platform.startswith("linux")),
                                reason="live capture tests need root, Linux and iproute2")

SHIM = ("from analyzer.cli import main\n"
        "from analyzer.cli_capture import capture, interfaces\n"
        "for c in (capture, interfaces):\n"
        "    main.commands.get(c.name) or main.add_command(c)\n"
        "main()\n")


def analyzer_cmd() -> list[str]:
    """``python -m analyzer``, or a shim registering the live commands when cli.py does not
    (yet) register them."""
    from analyzer.cli import main

    if "capture" in main.commands and "interfaces" in main.commands:
        return [sys.executable, "-m", "analyzer"]
    return [sys.executable, "-c", SHIM]


# ----------------------------------------------------------------------------------------------
# Pure tests (no privileges)


def test_cooked_program_maps_sll2_fields_to_ancillary_loads() -> None:
    from analyzer.sources.live import (SKF_AD_IFINDEX, SKF_AD_OFF, SKF_AD_PKTTYPE,
                                       SKF_AD_PROTOCOL, CaptureUsageError, cooked_program)

    ldh, ldw, ldb = 0x28, 0x20, 0x30
    prog = [(ldh, 0, 0, 0), (ldw, 0, 0, 4), (ldb, 0, 0, 10), (ldb, 0, 0, 29), (0x06, 0, 0, 65535)]
    out = cooked_program(prog)
    assert [k for _c, _t, _f, k in out] == [
        (SKF_AD_OFF + SKF_AD_PROTOCOL) & 0xFFFFFFFF, (SKF_AD_OFF + SKF_AD_IFINDEX) & 0xFFFFFFFF,
        (SKF_AD_OFF + SKF_AD_PKTTYPE) & 0xFFFFFFFF, 9, 65535]
    with pytest.raises(CaptureUsageError):
        cooked_program([(ldh, 0, 0, 12)])  # the link-layer address: not available cooked


def test_compile_filter_reports_syntax_errors() -> None:
    from analyzer.sources.live import CaptureUsageError, compile_filter

    try:
        prog = compile_filter("udp port 53", LINKTYPE_EN10MB)
    except Exception as e:  # neither libpcap nor tcpdump here
        pytest.skip(f"no BPF compiler: {e}")
    assert prog and prog[-1][0] == 0x06  # ends in a ret
    with pytest.raises(CaptureUsageError, match="bad --bpf filter"):
        compile_filter("udp prot 53", LINKTYPE_EN10MB)


@pytest.mark.parametrize("name", ["out.pcap", "out.pcapng"])
def test_writer_round_trip(tmp_path: Path, name: str) -> None:
    from analyzer.sources.live import CaptureWriter, LiveBatch

    frames = [bytes(range(60)), b"\xff" * 14 + b"\x45" + bytes(45)]
    buf = frames[0] + bytes(4) + frames[1]
    ns = [1_700_000_000_123_456_789, 1_700_000_001_000_000_001]
    batch = LiveBatch(buf, 1, [0, 64], [60, 60], [60, 1500], [t / 1e9 for t in ns],
                      [LINKTYPE_EN10MB] * 2, ns)
    path = tmp_path / name
    w = CaptureWriter(str(path), LINKTYPE_EN10MB, 262144, "veth0", "tcp")
    w.write(batch)
    w.close()
    with open(path, "rb") as fh:
        reader = open_reader(fh, str(path))
        got = [b for b in reader.batches()]
    assert reader.format == ("pcapng" if name.endswith("pcapng") else "pcap")
    recs = [(b.buf[o:o + c], w_, t) for b in got
            for o, c, w_, t in zip(b.offsets, b.caplens, b.wirelens, b.ts)]
    assert [r[0] for r in recs] == frames
    assert [r[1] for r in recs] == [60, 1500]
    assert recs[0][2] == pytest.approx(ns[0] / 1e9, abs=1e-6)


def test_live_analysis_matches_offline(make_pcap: Any) -> None:
    """Verdicts decided incrementally (ticks between batches) equal the offline ones."""
    from analyzer.capture import LiveAnalysis
    from analyzer.model import InputInfo
    from analyzer.pipeline import analyze_files

    pkts = _rst_flow(1000.0, 40001) + _rst_flow(1060.0, 40002)
    path = make_pcap(pkts)
    offline = analyze_files([str(path)], Settings(strict=True))
    emitted = []
    live = LiveAnalysis(Settings(strict=True, idle_timeout=30), emit=emitted.append)
    live.begin(InputInfo(path=str(path), format="live"))
    with open(path, "rb") as fh:
        reader = open_reader(fh, str(path), batch_packets=2)
        for batch in reader.batches():
            live.feed(batch)
            live.tick(batch.ts[-1])
    first_wave = list(emitted)
    live.finish()
    assert first_wave, "the first flow's verdict should be decided before the end"
    key = [(v.id, v.technique, v.trigger, v.client, v.server) for v in offline.verdicts]
    assert [(v.id, v.technique, v.trigger, v.client, v.server) for v in live.result.verdicts] == key
    assert sorted(v.id for v in emitted) == sorted(v.id for v in offline.verdicts)


def _rst_flow(t0: float, sport: int) -> list[tuple[float, Any]]:
    """An HTTP request answered by a forged RST (TTL 110, window 16) racing the server's
    genuine reply (TTL 50)."""
    from scapy.all import IP, TCP, Raw

    c, s = "10.1.0.2", "10.9.0.1"

    def cli(flags: str, seq: int, ack: int) -> Any:
        return IP(src=c, dst=s, ttl=64) / TCP(sport=sport, dport=80, flags=flags, seq=seq, ack=ack)

    def srv(flags: str, seq: int, ack: int, ttl: int = 50, window: int = 8192) -> Any:
        return IP(src=s, dst=c, ttl=ttl) / TCP(sport=80, dport=sport, flags=flags, seq=seq,
                                               ack=ack, window=window)

    return [
        (t0, cli("S", 100, 0)),
        (t0 + .01, srv("SA", 500, 101)),
        (t0 + .02, cli("A", 101, 501)),
        (t0 + .03, cli("PA", 101, 501) / Raw(b"GET / HTTP/1.1\r\nHost: blocked.example\r\n\r\n")),
        (t0 + .04, srv("RA", 501, 141, ttl=110, window=16)),
        (t0 + .05, srv("PA", 501, 141) / Raw(b"HTTP/1.1 200 OK\r\n\r\n")),
    ]


@pytest.fixture
def fake_capture(make_pcap: Any, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Replace the AF_PACKET capture by one replaying a pcap (no privileges needed)."""
    import analyzer.capture as capture_mod
    from analyzer.sources.live import LiveBatch

    path: Path = make_pcap(_rst_flow(time.time() - 60, 40001))

    class FakeCapture:
        linktype = 101
        linktype_name = "RAW"
        snaplen = 262144

        def __init__(self, interface: str, bpf: Optional[str] = None) -> None:
            self.bpf = bpf
            self.packets = 0
            self._batches: list[LiveBatch] = []

        def open(self) -> None:
            with open(path, "rb") as fh:
                for b in open_reader(fh, str(path), batch_packets=2).batches():
                    offs, caps, wls, ts, lts = b.lists()
                    self._batches.append(LiveBatch(b.buf, b.first_frame, offs, caps, wls, ts,
                                                   lts, [round(t * 1e9) for t in ts]))

        def read_batch(self, timeout: float) -> Optional[LiveBatch]:
            if not self._batches:
                time.sleep(timeout)
                return None
            b = self._batches.pop(0)
            self.packets += len(b)
            return b

        def kernel_stats(self) -> tuple[int, int]:
            return self.packets, 0

        def close(self) -> None:
            pass

    monkeypatch.setattr(capture_mod, "LiveCapture", FakeCapture)
    return path


@pytest.mark.parametrize("fmt, to_file", [("jsonl", False), ("json", False), ("table", True),
                                          ("csv", False), ("jsonl", True)])
def test_capture_output_routing(fake_capture: Path, tmp_path: Path, fmt: str,
                                to_file: bool) -> None:
    """Verdicts are streamed once each; a one-document format keeps its stream clean."""
    from click.testing import CliRunner

    from analyzer.cli_capture import capture

    out = tmp_path / f"report.{fmt}"
    wpcap = tmp_path / "w.pcapng"
    args = ["-i", "fake0", "--count", "6", "-f", fmt, "-w", str(wpcap)]
    if to_file:
        args += ["-o", str(out)]
    res = CliRunner().invoke(capture, args)
    assert res.exit_code == 0, res.output
    assert "6 packets captured" in res.stderr
    if fmt == "jsonl" and not to_file:
        lines = [json.loads(x) for x in res.stdout.splitlines()]
        assert [x["type"] for x in lines] == ["verdict", "flow", "summary"]
        assert lines[0]["technique"] == "rst_injection"
    elif fmt == "json":
        doc = json.loads(res.stdout)
        assert [v["technique"] for v in doc["verdicts"]] == ["rst_injection"]
        assert doc["stats"]["kernel_drops"] == 0 and doc["flows"][0]["outcome"] == "interfered"
        streamed = [json.loads(x) for x in res.stderr.splitlines() if x.startswith("{")]
        assert [v["id"] for v in streamed] == [v["id"] for v in doc["verdicts"]]
    elif fmt == "csv":
        assert res.stdout.splitlines()[0].startswith(("id,", "technique,", "\ufeff"))
        assert "rst_injection/http_host" in res.stderr
        assert "rst_injection/http_host" not in res.stdout
    else:  # -o FILE: verdicts streamed on stdout, the whole report in FILE
        report = out.read_text()
        assert "rst_injection" in report
        if fmt == "jsonl":
            assert [json.loads(x)["type"] for x in res.stdout.splitlines()] == ["verdict"]
            types = [json.loads(x)["type"] for x in report.splitlines()]
            assert types == ["verdict", "flow", "summary"]
        else:
            assert res.stdout.count("rst_injection/http_host") == 1
    off = json.loads(CliRunner().invoke(_analyze(), [str(wpcap), "-f", "json"]).stdout)
    assert off["inputs"][0]["packets"] == 6 and off["verdicts"][0]["technique"] == "rst_injection"


def _analyze() -> Any:
    from analyzer.cli import main

    return main.commands["analyze"]


# ----------------------------------------------------------------------------------------------
# Namespaces


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, check=check, timeout=60)


class Pair:
    """Two namespaces joined by a veth pair: client 10.77.X.2 (``cif``), server 10.77.X.1."""

    def __init__(self) -> None:
        pid = os.getpid()
        x = pid % 250 + 1
        self.client_ns = f"anlive-{pid}-c"
        self.server_ns = f"anlive-{pid}-s"
        self.cif = f"alv{pid % 100000}c"
        self.sif = f"alv{pid % 100000}s"
        self.client_ip = f"10.77.{x}.2"
        self.server_ip = f"10.77.{x}.1"

    def up(self) -> None:
        _run("ip", "netns", "add", self.client_ns)
        _run("ip", "netns", "add", self.server_ns)
        _run("ip", "link", "add", self.cif, "netns", self.client_ns, "type", "veth",
             "peer", "name", self.sif, "netns", self.server_ns)
        for ns, dev, ip in ((self.client_ns, self.cif, self.client_ip),
                            (self.server_ns, self.sif, self.server_ip)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")

    def down(self) -> None:
        for ns in (self.client_ns, self.server_ns):
            _run("ip", "netns", "del", ns, check=False)

    def cmd(self, ns: str, *args: str) -> list[str]:
        return ["ip", "netns", "exec", ns, *args]


@pytest.fixture
def pair() -> Iterator[Pair]:
    p = Pair()
    p.down()  # leftovers of a crashed run with the same pid
    try:
        p.up()
        yield p
    finally:
        p.down()


def _wait_until(cond: Any, timeout: float) -> bool:
    """Poll ``cond()`` until it holds (True) or ``timeout`` seconds have passed (False)."""
    end = time.monotonic() + timeout
    while True:
        if cond():
            return True
        if time.monotonic() >= end:
            return False
        time.sleep(0.05)


class Lines:
    """Collects a stream's lines with their arrival time (monotonic) in a thread."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[tuple[float, str]] = []
        self._t = threading.Thread(target=self._read, args=(stream,), daemon=True)
        self._t.start()

    def _read(self, stream: Any) -> None:
        for line in iter(stream.readline, ""):
            self.lines.append((time.monotonic(), line.rstrip("\n")))

    def wait_for(self, text: str, timeout: float) -> bool:
        return self.wait_for_line(lambda line: text in line, timeout)

    def wait_for_line(self, pred: Any, timeout: float) -> bool:
        return _wait_until(lambda: any(pred(line) for _t, line in list(self.lines)), timeout)

    def join(self) -> None:
        self._t.join(timeout=10)

    def text(self) -> str:
        return "\n".join(line for _t, line in self.lines)


SERVER = textwrap.dedent("""
    # Server side, run inside the server namespace: a TCP server on :80 whose reply loses the
    # race against a forged RST, and a "resolver" whose genuine answer loses against a forged
    # one. Forged packets: TTL 30 (the server's stack uses 64), RST window 16.
    import socket, sys, threading, time
    from scapy.all import AsyncSniffer, DNS, DNSRR, IP, TCP, UDP, Raw, conf, send
    conf.verb = 0
    server_ip, iface = sys.argv[1], sys.argv[2]

    started, rst_sent = threading.Event(), threading.Event()

    def on_packet(p):
        if TCP in p and p[TCP].dport == 80 and len(p[TCP].payload) > 0:
            send(IP(src=server_ip, dst=p[IP].src, ttl=30) / TCP(
                sport=80, dport=p[TCP].sport, flags="RA", seq=p[TCP].ack,
                ack=p[TCP].seq + len(p[TCP].payload), window=16))
            rst_sent.set()
        elif UDP in p and p[UDP].dport == 53 and DNS in p and p[DNS].qr == 0:
            q = p[DNS]
            name = q.qd.qname
            for ttl, addr in ((30, "8.7.198.45"), (64, "93.184.216.34")):
                send(IP(src=server_ip, dst=p[IP].src, ttl=ttl) / UDP(sport=53, dport=p[UDP].sport)
                     / DNS(id=q.id, qr=1, rd=1, ra=1, qd=q.qd,
                           an=DNSRR(rrname=name, type="A", ttl=300, rdata=addr)))
                time.sleep(0.05)

    sniffer = AsyncSniffer(iface=iface, prn=on_packet, store=False, started_callback=started.set,
                           filter=f"dst host {server_ip} and (tcp dst port 80 or udp dst port 53)")
    sniffer.start()
    started.wait(15)  # the sniffer's socket is open (not a guess: a slow machine took longer)
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((server_ip, 80))
    srv.listen()
    time.sleep(0.2)
    print("READY", flush=True)
    conn, _ = srv.accept()
    conn.recv(4096)
    rst_sent.wait(10)  # the genuine reply comes after the forged RST, however slow send() is
    time.sleep(0.05)
    try:
        conn.sendall(b"HTTP/1.1 200 OK\\r\\nContent-Length: 2\\r\\n\\r\\nok")
        time.sleep(0.5)
    except OSError:
        pass
    conn.close()
    time.sleep(3.0)
    sniffer.stop()
""")

CLIENT = textwrap.dedent("""
    # Client side, run inside the client namespace: an HTTP request and a DNS query.
    import json, socket, struct, sys, time
    server_ip = sys.argv[1]
    out = {}
    s = socket.create_connection((server_ip, 80), timeout=5)
    out["tcp_port"] = s.getsockname()[1]
    s.sendall(b"GET / HTTP/1.1\\r\\nHost: blocked.example\\r\\n\\r\\n")
    try:
        out["tcp"] = repr(s.recv(4096))
    except OSError as e:
        out["tcp"] = type(e).__name__
    s.close()
    time.sleep(0.5)
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    u.settimeout(2)
    qname = b"".join(bytes([len(p)]) + p for p in b"blocked.example".split(b".")) + b"\\0"
    u.sendto(struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1),
             (server_ip, 53))
    out["udp_port"] = u.getsockname()[1]
    answers = 0
    try:
        for _ in range(2):
            u.recvfrom(2048)
            answers += 1
    except OSError:
        pass
    out["dns_answers"] = answers
    print(json.dumps(out), flush=True)
""")


def _pcap_records(path: Path) -> int:
    """Whole records in a classic pcap file that may still be growing (0 if not there yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return 0
    n, off = 0, 24
    while off + 16 <= len(data):
        caplen = int.from_bytes(data[off + 8:off + 12], "little")
        if off + 16 + caplen > len(data):
            break
        off += 16 + caplen
        n += 1
    return n


def _verdicts(lines: list[str]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        line = line.strip()
        if line.startswith("{"):
            obj = json.loads(line)
            if obj.get("type") == "verdict":
                out.append(obj)
    return out


def _key(v: dict[str, Any]) -> tuple[str, str, str, str]:
    return (v["technique"], v["trigger"], v["client"], v["server"])


@pytest.mark.live
@needs_root
def test_capture_sees_injection_live_and_offline(pair: Pair, tmp_path: Path) -> None:
    pytest.importorskip("scapy")
    server_py = tmp_path / "server.py"
    client_py = tmp_path / "client.py"
    server_py.write_text(SERVER)
    client_py.write_text(CLIENT)
    out_pcap = tmp_path / "out.pcap"
    any_pcapng = tmp_path / "any.pcapng"
    # -i IFACE is stopped with SIGINT once its verdicts are out; its --duration is only a
    # safety net. -i any stops by its --duration, which only has to cover the client's traffic.
    live_duration, any_duration = 60.0, 16.0
    an = analyzer_cmd()
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    procs: list[subprocess.Popen[str]] = []
    try:
        server = subprocess.Popen(pair.cmd(pair.server_ns, sys.executable, str(server_py),
                                           pair.server_ip, pair.sif),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  env=env)
        procs.append(server)
        srv_out = Lines(server.stdout)
        # the captures start once the server is ready (scapy's import is slow on a loaded
        # machine and would eat into -i any's --duration)
        assert srv_out.wait_for("READY", 30), server.stderr.read() if server.poll() else "server"
        cap_launched = time.monotonic()
        cap = subprocess.Popen(pair.cmd(pair.client_ns, *an, "capture", "-i", pair.cif,
                                        "-w", str(out_pcap), "-f", "jsonl",
                                        "--duration", str(live_duration)),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        procs.append(cap)
        cap_out, cap_err = Lines(cap.stdout), Lines(cap.stderr)
        # the same traffic through -i any (cooked SLL2 records, BPF rewritten for them)
        cap_any = subprocess.Popen(pair.cmd(pair.client_ns, *an, "capture", "-i", "any",
                                            "--bpf", "tcp port 80 or udp port 53",
                                            "-w", str(any_pcapng), "-f", "json", "-q",
                                            "--duration", str(any_duration)),
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   env=env)
        procs.append(cap_any)
        assert cap_err.wait_for("capturing on", 20), cap_err.text()
        # -i any prints no start line with -q; it creates its -w file (header flushed) right
        # after its socket is bound and filtered, so the file says it is capturing
        assert _wait_until(lambda: any_pcapng.exists() and any_pcapng.stat().st_size > 0, 20), \
            "-i any did not start" if cap_any.poll() is None else cap_any.communicate()[1]
        client = _run(*pair.cmd(pair.client_ns, sys.executable, str(client_py), pair.server_ip))
        info = json.loads(client.stdout.strip().splitlines()[-1])
        assert info["dns_answers"] == 2, info
        # live: each verdict is printed as soon as it is decided (a closed flow close_linger
        # = 5 s after its RST, a DNS transaction dns_timeout = 10 s after its last answer),
        # while the capture still runs: wait for both, then stop the capture
        for tech in ("rst_injection", "dns_injection"):
            assert cap_out.wait_for_line(
                lambda line, t=tech: line.startswith('{"type": "verdict"')
                and json.loads(line)["technique"] == t, 45), f"no {tech} verdict: {cap_out.text()}"
        assert cap.poll() is None and time.monotonic() - cap_launched < live_duration, \
            "the capture ended before its verdicts were printed"
        cap.send_signal(signal.SIGINT)
        any_out, any_err = cap_any.communicate(timeout=any_duration + 60)
        cap.wait(timeout=60)
        cap_out.join()
        cap_err.join()
        server.wait(timeout=30)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert cap.returncode == 0, cap_err.text()
    client_tcp = f"{pair.client_ip}:{info['tcp_port']}"
    client_udp = f"{pair.client_ip}:{info['udp_port']}"
    server_tcp = f"{pair.server_ip}:80"
    server_dns = f"{pair.server_ip}:53"

    # live: verdicts streamed as JSON lines while the capture ran (waited for above)
    live = _verdicts([line for _t, line in cap_out.lines])
    by_tech = {v["technique"]: v for v in live}
    assert "rst_injection" in by_tech and "dns_injection" in by_tech, cap_out.text()
    rst, dns = by_tech["rst_injection"], by_tech["dns_injection"]
    assert (rst["client"], rst["server"]) == (client_tcp, server_tcp)
    assert (dns["client"], dns["server"]) == (client_udp, server_dns)
    assert "ttl_mismatch" in rst["signals"] and "ttl_mismatch" in dns["signals"]
    assert dns["domain"] == "blocked.example"
    summary = json.loads(cap_out.lines[-1][1])
    assert summary["type"] == "summary" and summary["inputs"][0]["path"] == f"live:{pair.cif}"
    assert summary["inputs"][0]["linktype"] == "EN10MB"
    assert summary["stats"]["kernel_drops"] == 0
    assert "dropped by kernel" in cap_err.text()

    # offline: the saved capture gives the same verdicts
    off = _run(*an, "analyze", str(out_pcap), "-f", "json")
    doc = json.loads(off.stdout)
    wanted = {_key(v) for v in live if v["technique"] in ("rst_injection", "dns_injection")}
    offline = {_key(v) for v in doc["verdicts"]
               if v["technique"] in ("rst_injection", "dns_injection")}
    assert wanted == offline
    # flow outcomes follow the verdicts, live as offline
    live_flows = {(f["client"], f["server"]): f["outcome"] for _t, line in cap_out.lines
                  if line.startswith('{"type": "flow"') for f in [json.loads(line)]}
    off_flows = {(f["client"], f["server"]): f["outcome"] for f in doc["flows"]}
    assert live_flows[(client_tcp, server_tcp)] == "interfered"
    assert off_flows[(client_tcp, server_tcp)] == "interfered"
    # frame numbers of the live evidence are frame numbers in the -w file
    live_ids = {v["id"] for v in live if v["technique"] in ("rst_injection", "dns_injection")}
    assert live_ids <= {v["id"] for v in doc["verdicts"]}
    if shutil.which("tcpdump"):
        td = _run("tcpdump", "-nr", str(out_pcap), check=False)
        assert len(td.stdout.splitlines()) == doc["inputs"][0]["packets"], td.stderr

    # -i any: same verdicts, cooked records, one JSON document on stdout
    assert cap_any.returncode == 0, any_err
    any_doc = json.loads(any_out)
    assert any_doc["inputs"][0]["linktype"] == "LINUX_SLL2"
    assert {_key(v) for v in any_doc["verdicts"]} >= wanted
    with open(any_pcapng, "rb") as fh:
        reader = open_reader(fh, str(any_pcapng))
        lts = {lt for b in reader.batches() for lt in b.linktypes}
    assert lts == {LINKTYPE_LINUX_SLL2}
    any_off = json.loads(_run(*an, "analyze", str(any_pcapng), "-f", "json").stdout)
    assert {_key(v) for v in any_off["verdicts"]} >= wanted


@pytest.mark.live
@needs_root
def test_loopback_packets_are_seen_once(pair: Pair, tmp_path: Path) -> None:
    """lo hands every packet to packet sockets twice (outgoing + incoming); one is kept."""
    out = tmp_path / "lo.pcapng"
    an = analyzer_cmd()
    cap = subprocess.Popen(pair.cmd(pair.client_ns, *an, "capture", "-i", "lo", "--bpf", "icmp",
                                    "-w", str(out), "--count", "6", "--duration", "20", "-f",
                                    "json"), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True)
    try:
        err = Lines(cap.stderr)
        assert err.wait_for("capturing on", 20), err.text()
        _run(*pair.cmd(pair.client_ns, "ping", "-c", "3", "-i", "0.2", "127.0.0.1"))
        stdout, _ = cap.communicate(timeout=30)
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert cap.returncode == 0, err.text()
    doc = json.loads(stdout)
    assert doc["inputs"][0]["packets"] == 6  # 3 echo requests + 3 replies, each once
    off = json.loads(_run(*an, "analyze", str(out), "-f", "json").stdout)
    assert off["inputs"][0]["packets"] == 6 and off["inputs"][0]["linktype"] == "EN10MB"
    # --count 6 stops at 6 whatever happens: the 6 must be 6 different packets (kept twice,
    # they would be request 1, request 1, reply 1, reply 1, ...)
    import dpkt

    with out.open("rb") as f:
        seen = []
        for _ts, frame in dpkt.pcapng.Reader(f):
            icmp = dpkt.ethernet.Ethernet(frame).data.data
            seen.append((icmp.type, icmp.data.seq))
    assert len(seen) == 6 and len(set(seen)) == 6, seen
    assert sorted(t for t, _seq in seen) == [0, 0, 0, 8, 8, 8], seen


@pytest.mark.live
@needs_root
@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_signal_stops_capture_with_valid_file_and_report(pair: Pair, tmp_path: Path,
                                                         signame: str) -> None:
    out = tmp_path / "sig.pcap"
    # ``ip netns exec`` execs the command, so the signal reaches the analyzer itself
    cap = subprocess.Popen(pair.cmd(pair.client_ns, *analyzer_cmd(), "capture", "-i", "lo", "-w",
                                    str(out), "-f", "json"),
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        err = Lines(cap.stderr)
        assert err.wait_for("capturing on", 20), err.text()
        _run(*pair.cmd(pair.client_ns, "ping", "-c", "2", "-i", "0.2", "127.0.0.1"))
        # the -w file is flushed after every batch: once it holds the 4 packets, the capture
        # has read them, and the signal cannot outrun a capture that has not been scheduled yet
        assert _wait_until(lambda: _pcap_records(out) >= 4, 20), _pcap_records(out)
        cap.send_signal(getattr(signal, signame))
        stdout = cap.stdout.read() if cap.stdout else ""
        cap.wait(timeout=30)
        err.join()
    finally:
        if cap.poll() is None:
            cap.kill()
            cap.wait()
    assert cap.returncode == 0, err.text()
    assert "Traceback" not in err.text()
    doc = json.loads(stdout)
    assert doc["inputs"][0]["packets"] == 4
    off = json.loads(_run(*analyzer_cmd(), "analyze", str(out), "-f", "json").stdout)
    assert off["inputs"][0]["packets"] == 4 and "truncated_record" not in off["stats"]["skipped"]


def _unprivileged_prefix() -> Optional[list[str]]:
    """Run as nobody when that user can start this interpreter; else as root without
    CAP_NET_RAW/CAP_NET_ADMIN (the interpreter may live under a private home)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    nobody = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    probe = subprocess.run([*nobody, sys.executable, "-c", "import analyzer"],
                           capture_output=True, cwd="/", timeout=60)
    if probe.returncode == 0:
        return nobody
    return [setpriv, "--bounding-set=-net_raw,-net_admin", "--inh-caps=-net_raw,-net_admin"]


@pytest.mark.live
@needs_root
def test_without_permission_one_line_and_status_4(tmp_path: Path) -> None:
    prefix = _unprivileged_prefix()
    if prefix is None:
        pytest.skip("setpriv is not installed")
    proc = subprocess.run([*prefix, *analyzer_cmd(), "capture", "-i", "lo", "--duration", "1"],
                          capture_output=True, text=True, timeout=60, cwd="/")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.splitlines() == [
        "analyzer: error: live capture needs root or CAP_NET_RAW: run with sudo, or grant it: "
        "sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))"]
    assert "Traceback" not in proc.stderr and proc.stdout == ""


@pytest.mark.live
@needs_root
def test_unknown_interface_lists_interfaces() -> None:
    proc = subprocess.run([*analyzer_cmd(), "capture", "-i", "anlive-nope0", "--duration", "1"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    lines = proc.stderr.splitlines()
    assert len(lines) == 1 and "no such interface 'anlive-nope0'" in lines[0], proc.stderr
    listed = lines[0].split("interfaces here:", 1)[1]
    names = [n.strip() for n in listed.split(",")]
    assert "lo" in names and "any" in names


@pytest.mark.live
@needs_root
def test_bad_filter_is_a_usage_error(pair: Pair) -> None:
    proc = _run(*pair.cmd(pair.client_ns, *analyzer_cmd(), "capture", "-i", pair.cif, "--bpf",
                          "tcp prot 80", "--duration", "1"), check=False)
    assert proc.returncode == 2
    assert proc.stderr.startswith("analyzer: error: bad --bpf filter")
    assert "Traceback" not in proc.stderr


@pytest.mark.live
@needs_root
def test_interfaces_lists_lo(pair: Pair) -> None:
    proc = _run(*analyzer_cmd(), "interfaces")
    rows = [line.split() for line in proc.stdout.splitlines()]
    assert any(len(r) > 2 and r[1] == "lo" and r[2] == "loopback" for r in rows), proc.stdout
    inside = _run(*pair.cmd(pair.client_ns, *analyzer_cmd(), "interfaces")).stdout
    assert pair.cif in inside and pair.client_ip in inside and "any" in inside


def test_capture_help_explains_every_option() -> None:
    from click.testing import CliRunner

    from analyzer.cli_capture import capture

    res = CliRunner().invoke(capture, ["--help"])
    assert res.exit_code == 0
    for opt in ("--interface", "--bpf", "--duration", "--count", "--write", "--format",
                "--output", "--idle-timeout", "--quiet"):
        assert opt in res.output
    for param in capture.params:
        assert getattr(param, "help", None), param.name
