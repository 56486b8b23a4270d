"""Network-namespace topology for the censorship lab.

::

    client ns            censor ns (router, ip_forward=1)          server ns
    10.99.1.2 ---------- 10.99.1.1   10.99.2.1 -------------------- 10.99.2.2
    (eth0)               (to-cli)    (to-srv)                       157.240.1.53 157.240.2.53
                                     10.99.3.1 ---- resolver ns     203.0.113.80
                                     (to-dns)       10.99.3.53
                                     198.51.100.1 - vpn ns
                                     (to-vpn)       198.51.100.20

Every address lives only inside namespaces created here; the router has no default route
and nothing is connected to the host's interfaces.  Namespaces are named
``anlab-<pid>-<n>-<role>``; stale ones (owner pid gone) are removed on start.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]

CLIENT_IP = "10.99.1.2"
ROUTER_CLIENT_IP = "10.99.1.1"
ROUTER_SERVER_IP = "10.99.2.1"
SERVER_LINK_IP = "10.99.2.2"
ROUTER_DNS_IP = "10.99.3.1"
RESOLVER_IP = "10.99.3.53"
ROUTER_VPN_IP = "198.51.100.1"
VPN_IP = "198.51.100.20"
WA_IP1 = "157.240.1.53"   # "g.whatsapp.net" (Meta AS32934 range, only inside the lab)
WA_IP2 = "157.240.2.53"   # second WhatsApp edge
OTHER_IP = "203.0.113.80"  # TEST-NET-3, an unrelated site
SERVER_ADDRS = [WA_IP1, WA_IP2, OTHER_IP]

# default IP TTL per host, so that TTLs seen by the client look like real distances
HOST_TTL = {"client": 64, "censor": 64, "server": 53, "resolver": 64, "vpn": 58}

NS_PREFIX = "anlab-"
_counter = 0
_counter_lock = threading.Lock()


class LabError(RuntimeError):
    pass


def have_lab_prereqs() -> str | None:
    """None when the lab can run here, else the reason it cannot."""
    if os.geteuid() != 0:
        return "needs root"
    for tool in ("ip", "tcpdump", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} not installed"
    return None


def _run(cmd: Sequence[str], check: bool = True, timeout: float = 30,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    cp = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    if check and cp.returncode != 0:
        raise LabError(f"command failed ({cp.returncode}): {' '.join(cmd)}\n{cp.stderr.strip()}")
    return cp


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    cp = _run(["ip", "netns", "list"], check=False)
    return [line.split()[0] for line in cp.stdout.splitlines() if line.strip()]


def _kill_ns_processes(ns: str) -> None:
    cp = _run(["ip", "netns", "pids", ns], check=False)
    pids = [int(p) for p in cp.stdout.split() if p.isdigit()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = []
        for pid in pids:
            try:
                os.kill(pid, sig)
                alive.append(pid)
            except ProcessLookupError:
                pass
        if not alive:
            break
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and any(_pid_alive(p) for p in alive):
            time.sleep(0.05)
        pids = [p for p in alive if _pid_alive(p)]


def cleanup_stale() -> list[str]:
    """Delete ``anlab-<pid>-...`` namespaces whose creating process is gone."""
    removed = []
    for ns in list_namespaces():
        m = re.match(rf"{NS_PREFIX}(\d+)-", ns)
        if not m or _pid_alive(int(m.group(1))):
            continue
        _kill_ns_processes(ns)
        _run(["ip", "netns", "del", ns], check=False)
        removed.append(ns)
    wgdir = Path("/var/run/wireguard")
    if wgdir.is_dir():
        for sock in wgdir.glob("wl*.sock"):
            m = re.match(r"wl([0-9a-f]+)x", sock.stem)
            if m and not _pid_alive(int(m.group(1), 16)):
                sock.unlink(missing_ok=True)
    return removed


class Capture:
    """tcpdump in a namespace writing a pcap (``-U -s 0``), stopped with SIGINT."""

    def __init__(self, lab: Lab, host: str, path: Path, iface: str = "eth0",
                 bpf: str | None = None) -> None:
        self.lab, self.host, self.path, self.iface, self.bpf = lab, host, Path(path), iface, bpf
        self.proc: subprocess.Popen[str] | None = None
        self.stats = ""

    def start(self) -> Capture:
        cmd = ["tcpdump", "-i", self.iface, "-U", "--immediate-mode", "-s", "0", "-n", "-Z", "root",
               "-w", str(self.path)]
        if self.bpf:
            cmd.append(self.bpf)
        self.proc = self.lab.popen(self.host, cmd, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE)
        assert self.proc.stderr is not None
        # wait until tcpdump says it is listening (the socket is then open)
        deadline = time.monotonic() + 10
        buf = ""
        while time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line:
                break
            buf += line
            if "listening on" in line:
                time.sleep(0.05)
                return self
        raise LabError(f"tcpdump did not start in {self.host}: {buf}")

    def stop(self, settle: float = 0.3) -> str:
        if self.proc is None:
            return self.stats
        time.sleep(settle)  # let in-flight packets arrive
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        try:
            _out, err = self.proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        self.stats = (err or "").strip()
        self.proc = None
        return self.stats

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class Lab:
    """Context manager that builds the namespaces and tears everything down."""

    ROLES = ("client", "censor", "server", "resolver", "vpn")

    def __init__(self, workdir: Path | str, tag: str | None = None) -> None:
        global _counter
        with _counter_lock:
            _counter += 1
            n = _counter
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.run_id = f"{os.getpid()}-{n}"
        self.ns = {r: f"{NS_PREFIX}{self.run_id}-{r[:3]}" for r in self.ROLES}
        self.tag = tag or "lab"
        self.procs: list[subprocess.Popen[Any]] = []
        self.cleanups: list[Any] = []
        self.wg_prefix = f"wl{os.getpid():x}x{n}"  # wireguard-go UAPI socket names are global
        self._built: list[str] = []

    # ----------------------------------------------------------- build / teardown
    def __enter__(self) -> Lab:
        cleanup_stale()
        try:
            self._build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.teardown()

    def sysctl(self, host: str, key: str, value: Any) -> None:
        self.run(host, ["sysctl", "-q", "-w", f"{key}={value}"], check=False)

    def _build(self) -> None:
        for role in self.ROLES:
            _run(["ip", "netns", "add", self.ns[role]])
            self._built.append(self.ns[role])
            self.run(role, ["ip", "link", "set", "lo", "up"])
            self.sysctl(role, "net.ipv6.conf.all.disable_ipv6", 1)
            self.sysctl(role, "net.ipv6.conf.default.disable_ipv6", 1)
            self.sysctl(role, "net.ipv4.conf.all.rp_filter", 0)
            self.sysctl(role, "net.ipv4.conf.default.rp_filter", 0)
            self.sysctl(role, "net.ipv4.ip_default_ttl", HOST_TTL[role])
        self.sysctl("censor", "net.ipv4.ip_forward", 1)
        links = [("client", "eth0", f"{CLIENT_IP}/24", "to-cli", f"{ROUTER_CLIENT_IP}/24"),
                 ("server", "eth0", f"{SERVER_LINK_IP}/24", "to-srv", f"{ROUTER_SERVER_IP}/24"),
                 ("resolver", "eth0", f"{RESOLVER_IP}/24", "to-dns", f"{ROUTER_DNS_IP}/24"),
                 ("vpn", "eth0", f"{VPN_IP}/24", "to-vpn", f"{ROUTER_VPN_IP}/24")]
        have_ethtool = shutil.which("ethtool") is not None
        for host, hif, haddr, rif, raddr in links:
            # created directly inside the namespaces: never visible in the host namespace
            _run(["ip", "-n", self.ns["censor"], "link", "add", rif, "type", "veth",
                  "peer", "name", hif, "netns", self.ns[host]])
            for h, ifname, addr in ((host, hif, haddr), ("censor", rif, raddr)):
                self.sysctl(h, f"net.ipv6.conf.{ifname}.disable_ipv6", 1)
                if have_ethtool:  # real checksums and MTU-sized frames in the pcaps
                    self.run(h, ["ethtool", "-K", ifname, "tx", "off", "rx", "off", "tso", "off",
                                 "gso", "off", "gro", "off", "sg", "off"], check=False)
                self.run(h, ["ip", "addr", "add", addr, "dev", ifname])
                self.run(h, ["ip", "link", "set", ifname, "up"])
        for a in SERVER_ADDRS:
            self.run("server", ["ip", "addr", "add", f"{a}/32", "dev", "eth0"])
        self.run("client", ["ip", "route", "add", "default", "via", ROUTER_CLIENT_IP])
        self.run("server", ["ip", "route", "add", "default", "via", ROUTER_SERVER_IP])
        self.run("resolver", ["ip", "route", "add", "default", "via", ROUTER_DNS_IP])
        self.run("vpn", ["ip", "route", "add", "default", "via", ROUTER_VPN_IP])
        for net in ("157.240.0.0/16", "203.0.113.0/24"):
            self.run("censor", ["ip", "route", "add", net, "via", SERVER_LINK_IP])

    def teardown(self) -> None:
        for fn in reversed(self.cleanups):
            try:
                fn()
            except Exception:
                pass
        self.cleanups.clear()
        for p in reversed(self.procs):
            self._terminate(p)
        self.procs.clear()
        for ns in reversed(self._built):
            _kill_ns_processes(ns)
            _run(["ip", "netns", "del", ns], check=False)
        self._built.clear()

    @staticmethod
    def _terminate(p: subprocess.Popen[Any], timeout: float = 3.0) -> None:
        if p.poll() is not None:
            return
        try:
            p.terminate()
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            try:
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                pass
        except ProcessLookupError:
            pass

    # ---------------------------------------------------------------- commands
    def _wrap(self, host: str, cmd: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns[host], *map(str, cmd)]

    def env(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ)
        env["PYTHONPATH"] = str(REPO_ROOT) + (os.pathsep + env["PYTHONPATH"]
                                              if env.get("PYTHONPATH") else "")
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        if extra:
            env.update(extra)
        return env

    def run(self, host: str, cmd: Sequence[Any], check: bool = True, timeout: float = 30,
            env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
        full = self._wrap(host, cmd)
        try:
            cp = subprocess.run(full, capture_output=True, text=True, timeout=timeout,
                                env=self.env(env), cwd=str(REPO_ROOT))
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"timeout in {host}: {' '.join(full)}") from exc
        if check and cp.returncode != 0:
            raise LabError(f"command failed in {host} ({cp.returncode}): {' '.join(map(str, cmd))}"
                           f"\n{cp.stdout.strip()}\n{cp.stderr.strip()}")
        return cp

    def popen(self, host: str, cmd: Sequence[Any], env: dict[str, str] | None = None,
              **kw: Any) -> subprocess.Popen[Any]:
        kw.setdefault("stdout", subprocess.PIPE)
        kw.setdefault("stderr", subprocess.PIPE)
        kw.setdefault("text", True)
        p = subprocess.Popen(self._wrap(host, cmd), env=self.env(env), cwd=str(REPO_ROOT), **kw)
        self.procs.append(p)
        return p

    def py(self, host: str, module: str, *args: Any, timeout: float = 60,
           check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(host, [sys.executable, "-m", module, *args], timeout=timeout, check=check)

    def py_popen(self, host: str, module: str, *args: Any, **kw: Any) -> subprocess.Popen[Any]:
        return self.popen(host, [sys.executable, "-m", module, *args], **kw)

    def stop(self, p: subprocess.Popen[Any], sig: int = signal.SIGTERM,
             timeout: float = 5.0) -> tuple[str, str]:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
        try:
            out, err = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        return out or "", err or ""

    # ----------------------------------------------------------------- helpers
    def capture(self, host: str, path: Path | str, iface: str = "eth0",
                bpf: str | None = None) -> Capture:
        return Capture(self, host, Path(path), iface=iface, bpf=bpf)

    def tbf(self, host: str, iface: str, rate: str, burst: str = "16kb",
            latency: str = "100ms") -> None:
        """Rate-limit egress of ``iface`` in ``host`` with a token bucket (tc tbf)."""
        self.run(host, ["tc", "qdisc", "replace", "dev", iface, "root", "tbf", "rate", rate,
                        "burst", burst, "latency", latency])

    def iptables(self, host: str, *args: str) -> None:
        self.run(host, ["iptables", *args])

    def wait_line(self, p: subprocess.Popen[str], needle: str, timeout: float = 10.0,
                  stream: str = "stdout") -> str:
        """Read ``p``'s stream until a line containing ``needle`` (returns what was read)."""
        f = p.stdout if stream == "stdout" else p.stderr
        assert f is not None
        buf: list[str] = []
        result: dict[str, bool] = {}

        def reader() -> None:
            for line in f:
                buf.append(line)
                if needle in line:
                    result["ok"] = True
                    return

        t = threading.Thread(target=reader, daemon=True)
        t.start()
        t.join(timeout)
        if not result.get("ok"):
            raise LabError(f"did not see {needle!r} within {timeout}s: {''.join(buf)[-2000:]}")
        return "".join(buf)
