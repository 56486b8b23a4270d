"""Live capture from a Linux ``AF_PACKET`` socket, read in batches of raw records.

Nothing here dissects a packet: records are received straight into one preallocated buffer
(``recvmsg_into``), their offsets, lengths and time stamps collected in the parallel lists of a
:class:`~analyzer.sources.files.Batch`, exactly like the file readers do.

Framing
    Ethernet and loopback interfaces (``ARPHRD_ETHER``, ``ARPHRD_LOOPBACK``: Linux gives
    loopback frames a 14-byte Ethernet header with zero MACs) are read with a ``SOCK_RAW``
    socket bound to the interface: records are the frames as they are, LINKTYPE_EN10MB.
    ``any`` and interfaces without Ethernet framing (tun, ppp, GRE, ...) are read "cooked"
    (``SOCK_DGRAM``: the kernel strips the link header) and every record gets a
    LINKTYPE_LINUX_SLL2 header built from the address the kernel returns with it (protocol,
    interface index, ARPHRD type, packet type, link-layer source address), as libpcap does.

Kernel filter (STYLE rule 11)
    A ``--bpf`` expression is compiled to classic BPF by libpcap (``pcap_open_dead`` +
    ``pcap_compile`` through ctypes, for the capture's link type), or, when libpcap cannot be
    loaded, by ``tcpdump -y LINKTYPE -ddd``. For cooked sockets the link-header offsets are
    rewritten to the kernel's ancillary loads (``SKF_AD_PROTOCOL`` / ``SKF_AD_IFINDEX`` /
    ``SKF_AD_PKTTYPE``) the way libpcap's ``fix_offset`` does. On ``lo`` (and on ``any``, for
    the loopback interface) a short prefix drops ``PACKET_OUTGOING`` copies, which the kernel
    delivers a second time as incoming. The program is attached with ``SO_ATTACH_FILTER``
    *before* the socket is bound to ``ETH_P_ALL``, so no unfiltered packet is ever queued.

Time stamps
    Kernel time stamps (``SO_TIMESTAMPNS`` ancillary data, ``CLOCK_REALTIME``, nanoseconds),
    taken when the packet reached the socket, so they stay right when the reader lags behind
    and packets wait in the socket buffer. ``Batch.ts`` holds them as float seconds; the
    integer nanoseconds are kept in :attr:`LiveBatch.ts_ns` for the capture writer.

Drops
    ``SO_RCVBUF`` is raised to ``DEFAULT_RCVBUF`` (with ``SO_RCVBUFFORCE`` when allowed, so
    ``net.core.rmem_max`` does not cap it); ``PACKET_STATISTICS`` (``tp_packets``,
    ``tp_drops``; reset by every read) is summed in :meth:`LiveCapture.kernel_stats`.

Limitations: VLAN tags stripped by the NIC are not re-inserted (libpcap does it from
``PACKET_AUXDATA``); on ``any`` a forwarded packet is seen once per interface it crosses;
packets longer than the snap length are cut (``caplen < wirelen``).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import fcntl
import json
import os
import select
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass, field
from typing import BinaryIO, Optional

from analyzer import __version__
from analyzer.sources.files import (
    LINKTYPE_EN10MB,
    LINKTYPE_LINUX_SLL2,
    PCAP_MAGIC_USEC,
    PCAPNG_BYTE_ORDER_MAGIC,
    PCAPNG_EPB,
    PCAPNG_IDB,
    PCAPNG_SHB,
    Batch,
    linktype_name,
)
from analyzer.status import AnalyzerError, CapturePermissionError, ExitStatus

# --- Linux wire/ABI constants (linux/if_ether.h, if_packet.h, if_arp.h, filter.h, socket.h) ---
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_ADD_MEMBERSHIP = 1
PACKET_MR_PROMISC = 1
PACKET_STATISTICS = 6
PACKET_OUTGOING = 4
SO_ATTACH_FILTER = 26
SO_RCVBUFFORCE = 33
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SIOCGIFFLAGS = 0x8913
SIOCGIFHWADDR = 0x8927
SIOCGIFMTU = 0x8921
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_RUNNING = 0x40
IFNAMSIZ = 16
ARPHRD_ETHER = 1
ARPHRD_LOOPBACK = 772
ARPHRD_NAMES = {1: "ethernet", 772: "loopback", 65534: "none (tun)", 512: "ppp", 768: "ipip",
                769: "ip6ip6", 776: "sit", 778: "gre", 823: "ip6gre", 801: "wlan", 803: "radiotap",
                280: "can", 65535: "void"}
# protocol, reserved, ifindex, hatype, pkttype, halen, addr
SLL2_HEADER = struct.Struct(">HHIHBB8s")
SLL2_HEADER_LEN = SLL2_HEADER.size  # 20
SLL_HEADER_LEN = 16
TIMESPEC = struct.Struct("@qq")  # struct timespec on 64-bit Linux
TPACKET_STATS = struct.Struct("@II")  # tp_packets, tp_drops
PACKET_MREQ = struct.Struct("@iHH8s")  # mr_ifindex, mr_type, mr_alen, mr_address
# sll_family, sll_protocol (network order), sll_ifindex, sll_hatype, sll_pkttype, sll_halen,
# sll_addr
SOCKADDR_LL = struct.Struct("@HHiHBB8s")

# classic BPF (linux/bpf_common.h)
BPF_LD, BPF_LDX, BPF_JMP, BPF_RET = 0x00, 0x01, 0x05, 0x06
BPF_W, BPF_H, BPF_B = 0x00, 0x08, 0x10
BPF_ABS, BPF_IND, BPF_MSH = 0x20, 0x40, 0xA0
BPF_JEQ, BPF_K = 0x10, 0x00
SKF_AD_OFF = -0x1000
SKF_AD_PROTOCOL = 0
SKF_AD_PKTTYPE = 4
SKF_AD_IFINDEX = 8
BPF_MAXINSNS = 4096
BpfInsn = tuple[int, int, int, int]  # code, jt, jf, k

ANY = "any"
DEFAULT_SNAPLEN = 262_144  # tcpdump's default: whole packets, also GRO/TSO super-frames
DEFAULT_RCVBUF = 32 << 20
BATCH_PACKETS = 1024
BATCH_SECONDS = 0.1
BUFFER_BYTES = 8 << 20  # one batch's records; a batch ends before a record could overflow it
ANC_SIZE = socket.CMSG_SPACE(TIMESPEC.size)
NS = 1_000_000_000

PERMISSION_MESSAGE = ("live capture needs root or CAP_NET_RAW: run with sudo, or grant it: "
                      "sudo setcap cap_net_raw,cap_net_admin=eip $(readlink -f $(which python3))")


class CaptureError(AnalyzerError):
    """The capture cannot start or cannot go on (one-line message)."""

    status = ExitStatus.ERROR


class CaptureUsageError(CaptureError):
    """Bad interface name or filter expression."""

    status = ExitStatus.USAGE


# --------------------------------------------------------------------------------------------
# Interfaces


@dataclass(frozen=True, slots=True)
class Interface:
    name: str
    index: int
    hatype: int  # ARPHRD_*; -1 when unknown
    up: bool
    running: bool
    mtu: int
    mac: str
    addresses: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return ARPHRD_NAMES.get(self.hatype, f"arphrd {self.hatype}")

    @property
    def linktype(self) -> int:
        if self.hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            return LINKTYPE_EN10MB
        return LINKTYPE_LINUX_SLL2


def _ifreq(name: str) -> bytes:
    raw = name.encode("utf-8", "surrogateescape")[:IFNAMSIZ - 1]
    return struct.pack(f"{IFNAMSIZ}s{IFNAMSIZ + 8}x", raw)


def _interface_details(sock: socket.socket, name: str, index: int) -> Interface:
    hatype, mac, up, running, mtu = -1, "", False, False, 0
    try:
        res = fcntl.ioctl(sock.fileno(), SIOCGIFHWADDR, _ifreq(name))
        hatype = struct.unpack_from("@H", res, IFNAMSIZ)[0]
        mac = ":".join(f"{b:02x}" for b in res[IFNAMSIZ + 2:IFNAMSIZ + 8])
        res = fcntl.ioctl(sock.fileno(), SIOCGIFFLAGS, _ifreq(name))
        flags = struct.unpack_from("@H", res, IFNAMSIZ)[0]
        up, running = bool(flags & IFF_UP), bool(flags & IFF_RUNNING)
        res = fcntl.ioctl(sock.fileno(), SIOCGIFMTU, _ifreq(name))
        mtu = struct.unpack_from("@i", res, IFNAMSIZ)[0]
    except OSError:
        pass
    return Interface(name=name, index=index, hatype=hatype, up=up, running=running, mtu=mtu,
                     mac=mac)


def _addresses() -> dict[str, tuple[str, ...]]:
    """Addresses per interface from ``ip -j addr`` (iproute2); empty when unavailable."""
    ip = shutil.which("ip")
    if ip is None:
        return {}
    try:
        out = subprocess.run([ip, "-j", "addr", "show"], capture_output=True, timeout=5,
                             check=False).stdout
        data = json.loads(out or b"[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return {}
    result: dict[str, tuple[str, ...]] = {}
    if not isinstance(data, list):
        return result
    for entry in data:
        if not isinstance(entry, dict) or not isinstance(entry.get("ifname"), str):
            continue
        addrs = []
        for a in entry.get("addr_info") or []:
            if isinstance(a, dict) and "local" in a:
                addrs.append(f"{a['local']}/{a.get('prefixlen', '?')}")
        result[entry["ifname"]] = tuple(addrs)
    return result


def list_interfaces(with_addresses: bool = False) -> list[Interface]:
    """The interfaces of the current network namespace (``socket.if_nameindex``), by index."""
    out: list[Interface] = []
    addrs = _addresses() if with_addresses else {}
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        for index, name in sorted(socket.if_nameindex()):
            iface = _interface_details(sock, name, index)
            if addrs:
                iface = Interface(iface.name, iface.index, iface.hatype, iface.up, iface.running,
                                  iface.mtu, iface.mac, addrs.get(name, ()))
            out.append(iface)
    return out


def find_interface(name: str) -> Optional[Interface]:
    """The interface called ``name`` (``any``: None), or raise :class:`CaptureUsageError`
    listing the interfaces that exist."""
    if name == ANY:
        return None
    for iface in list_interfaces():
        if iface.name == name:
            return iface
    names = ", ".join([i.name for i in list_interfaces()] + [ANY])
    raise CaptureUsageError(f"no such interface {name!r}; interfaces here: {names}")


# --------------------------------------------------------------------------------------------
# Kernel filter


class _BpfInsnC(ctypes.Structure):
    _fields_ = [("code", ctypes.c_ushort), ("jt", ctypes.c_ubyte), ("jf", ctypes.c_ubyte),
                ("k", ctypes.c_uint32)]


class _BpfProgramC(ctypes.Structure):
    _fields_ = [("bf_len", ctypes.c_uint), ("bf_insns", ctypes.POINTER(_BpfInsnC))]


def _compile_libpcap(expr: str, linktype: int, snaplen: int) -> Optional[list[BpfInsn]]:
    """Compile with libpcap through ctypes; None when libpcap cannot be loaded."""
    name = ctypes.util.find_library("pcap")
    if name is None:
        return None
    try:
        lib = ctypes.CDLL(name)
        lib.pcap_open_dead.restype = ctypes.c_void_p
        lib.pcap_open_dead.argtypes = [ctypes.c_int, ctypes.c_int]
        lib.pcap_compile.restype = ctypes.c_int
        lib.pcap_compile.argtypes = [ctypes.c_void_p, ctypes.POINTER(_BpfProgramC), ctypes.c_char_p,
                                     ctypes.c_int, ctypes.c_uint32]
        lib.pcap_geterr.restype = ctypes.c_char_p
        lib.pcap_geterr.argtypes = [ctypes.c_void_p]
        lib.pcap_freecode.argtypes = [ctypes.POINTER(_BpfProgramC)]
        lib.pcap_close.argtypes = [ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    handle = lib.pcap_open_dead(linktype, snaplen)
    if not handle:
        return None
    try:
        prog = _BpfProgramC()
        netmask_unknown = 0xFFFFFFFF  # PCAP_NETMASK_UNKNOWN
        rc = lib.pcap_compile(handle, ctypes.byref(prog), expr.encode("utf-8"), 1, netmask_unknown)
        if rc != 0:
            err = (lib.pcap_geterr(handle) or b"syntax error").decode("utf-8", "replace")
            raise CaptureUsageError(f"bad --bpf filter {expr!r}: {err}")
        try:
            return [(prog.bf_insns[i].code, prog.bf_insns[i].jt, prog.bf_insns[i].jf,
                     prog.bf_insns[i].k) for i in range(prog.bf_len)]
        finally:
            lib.pcap_freecode(ctypes.byref(prog))
    finally:
        lib.pcap_close(handle)


def _compile_tcpdump(expr: str, linktype: int) -> list[BpfInsn]:
    tcpdump = shutil.which("tcpdump")
    if tcpdump is None:
        raise CaptureError("cannot compile the --bpf filter: "
                           "neither libpcap nor tcpdump is installed")
    try:
        proc = subprocess.run([tcpdump, "-y", linktype_name(linktype), "-ddd", expr],
                              capture_output=True, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise CaptureError(f"cannot compile the --bpf filter with tcpdump: {e}") from None
    if proc.returncode != 0:
        msg = proc.stderr.decode("utf-8", "replace").strip().splitlines()
        why = msg[-1] if msg else "tcpdump failed"
        raise CaptureUsageError(f"bad --bpf filter {expr!r}: {why}")
    try:
        numbers = [int(x) for x in proc.stdout.split()]
    except ValueError:
        raise CaptureError("cannot read tcpdump -ddd output") from None
    count = numbers[0] if numbers else 0
    if len(numbers) != 1 + 4 * count:
        raise CaptureError("cannot read tcpdump -ddd output")
    return [(numbers[1 + 4 * i], numbers[2 + 4 * i], numbers[3 + 4 * i], numbers[4 + 4 * i])
            for i in range(count)]


def compile_filter(expr: str, linktype: int, snaplen: int = DEFAULT_SNAPLEN) -> list[BpfInsn]:
    """Classic BPF for ``expr`` on records of ``linktype`` (raises CaptureUsageError)."""
    prog = _compile_libpcap(expr, linktype, snaplen)
    if prog is None:
        prog = _compile_tcpdump(expr, linktype)
    return prog


def _u32(k: int) -> int:
    return k & 0xFFFFFFFF


def cooked_program(prog: list[BpfInsn]) -> list[BpfInsn]:
    """Rewrite a LINUX_SLL2 program for a ``SOCK_DGRAM`` socket, whose data starts at the
    network header: loads past the SLL2 header move down by its length, loads of its protocol,
    interface index and packet type become ancillary loads (libpcap's ``fix_offset``)."""
    out: list[BpfInsn] = []
    for code, jt, jf, k in prog:
        cls = code & 0x07
        mode = code & 0xE0
        if cls in (BPF_LD, BPF_LDX) and mode in (BPF_ABS, BPF_IND, BPF_MSH):
            if k >= SLL2_HEADER_LEN:
                k -= SLL2_HEADER_LEN
            elif mode == BPF_ABS and k == 0:
                k = _u32(SKF_AD_OFF + SKF_AD_PROTOCOL)
            elif mode == BPF_ABS and k == 4:
                k = _u32(SKF_AD_OFF + SKF_AD_IFINDEX)
            elif mode == BPF_ABS and k == 10:
                k = _u32(SKF_AD_OFF + SKF_AD_PKTTYPE)
            else:
                raise CaptureUsageError(
                    "this --bpf filter reads link-layer header fields that a cooked capture "
                    "(any, or a non-Ethernet interface) cannot filter on in the kernel")
        out.append((code, jt, jf, k))
    return out


def loopback_prefix(lo_index: Optional[int]) -> list[BpfInsn]:
    """Drop the PACKET_OUTGOING copy of loopback packets (each is seen again as incoming).
    ``lo_index`` None: the socket is bound to lo itself; else the ``any`` case."""
    ld_pkttype = (BPF_LD | BPF_B | BPF_ABS, 0, 0, _u32(SKF_AD_OFF + SKF_AD_PKTTYPE))
    ld_ifindex = (BPF_LD | BPF_W | BPF_ABS, 0, 0, _u32(SKF_AD_OFF + SKF_AD_IFINDEX))
    jeq = BPF_JMP | BPF_JEQ | BPF_K
    reject = (BPF_RET | BPF_K, 0, 0, 0)
    if lo_index is None:
        return [ld_pkttype, (jeq, 0, 1, PACKET_OUTGOING), reject]
    return [ld_pkttype, (jeq, 0, 3, PACKET_OUTGOING), ld_ifindex, (jeq, 0, 1, lo_index), reject]


def _attach(sock: socket.socket, prog: list[BpfInsn]) -> None:
    if len(prog) > BPF_MAXINSNS:
        raise CaptureUsageError(f"the --bpf filter compiles to {len(prog)} instructions; "
                                f"the kernel accepts at most {BPF_MAXINSNS}")
    insns = (_BpfInsnC * len(prog))(*[_BpfInsnC(c, jt, jf, k) for c, jt, jf, k in prog])
    fprog = struct.pack("@HP", len(prog), ctypes.addressof(insns))
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    except OSError as e:
        raise CaptureError(f"the kernel refused the --bpf filter: {e.strerror}") from None


def _bind(sock: socket.socket, ifindex: int) -> None:
    """bind() to ``ifindex`` (0: every interface) for ETH_P_ALL. Python's own bind() for
    AF_PACKET takes an interface *name* and cannot express "all interfaces", so libc's is
    called with a ``struct sockaddr_ll``."""
    libc = ctypes.CDLL(None, use_errno=True)
    addr = SOCKADDR_LL.pack(socket.AF_PACKET, socket.htons(ETH_P_ALL), ifindex, 0, 0, 0, b"")
    if libc.bind(sock.fileno(), ctypes.c_char_p(addr), ctypes.c_uint(len(addr))) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


# --------------------------------------------------------------------------------------------
# The capture


@dataclass(slots=True)
class LiveBatch(Batch):
    """A :class:`Batch` that also keeps the kernel time stamps in integer nanoseconds."""

    ts_ns: list[int] = field(default_factory=list)


class LiveCapture:
    """One ``AF_PACKET`` capture. ``open()``, then ``read_batch()`` until done, ``close()``."""

    def __init__(self, interface: str, bpf: Optional[str] = None, *,
                 snaplen: int = DEFAULT_SNAPLEN, rcvbuf: int = DEFAULT_RCVBUF,
                 batch_packets: int = BATCH_PACKETS, batch_seconds: float = BATCH_SECONDS,
                 promiscuous: bool = True) -> None:
        self.interface = interface
        self.bpf = bpf.strip() if bpf and bpf.strip() else None
        self.snaplen = snaplen
        self.rcvbuf_wanted = rcvbuf
        self.rcvbuf = 0
        self.batch_packets = batch_packets
        self.batch_seconds = batch_seconds
        self.promiscuous = promiscuous
        self.iface: Optional[Interface] = None
        self.linktype = LINKTYPE_LINUX_SLL2
        self.cooked = True
        self.packets = 0  # records handed out
        self._kernel_packets = 0
        self._kernel_drops = 0
        self._sock: Optional[socket.socket] = None
        self._poll = select.poll()
        self._buf = bytearray(BUFFER_BYTES)
        self._view = memoryview(self._buf)
        self._ifindex: dict[str, int] = {}

    @property
    def linktype_name(self) -> str:
        return linktype_name(self.linktype)

    # -- setup --------------------------------------------------------------------------------
    def open(self) -> None:
        """Raise CaptureUsageError (bad interface / filter), CapturePermissionError or
        CaptureError."""
        self.iface = find_interface(self.interface)
        if self.iface is not None and self.iface.hatype in (ARPHRD_ETHER, ARPHRD_LOOPBACK):
            self.cooked = False
            self.linktype = LINKTYPE_EN10MB
        prog: list[BpfInsn] = []
        if self.bpf:
            prog = compile_filter(self.bpf, self.linktype, self.snaplen)
            if self.cooked:
                prog = cooked_program(prog)
        prefix = self._loopback_prefix()
        if prefix:
            prog = prefix + (prog or [(BPF_RET | BPF_K, 0, 0, self.snaplen)])
        kind = socket.SOCK_DGRAM if self.cooked else socket.SOCK_RAW
        try:
            # Protocol 0: the socket receives nothing until bind() below, so the filter is in
            # place before the first packet is queued.
            sock = socket.socket(socket.AF_PACKET, kind, 0)
        except PermissionError:
            raise CapturePermissionError(PERMISSION_MESSAGE) from None
        except OSError as e:
            raise CaptureError(f"cannot open a packet socket: {e.strerror}") from None
        try:
            self._setup(sock, prog)
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._poll.register(sock, select.POLLIN)

    def _loopback_prefix(self) -> list[BpfInsn]:
        if self.iface is not None:
            return loopback_prefix(None) if self.iface.hatype == ARPHRD_LOOPBACK else []
        for iface in list_interfaces():
            if iface.hatype == ARPHRD_LOOPBACK:
                return loopback_prefix(iface.index)
        return []

    def _setup(self, sock: socket.socket, prog: list[BpfInsn]) -> None:
        try:
            sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, self.rcvbuf_wanted)
        except OSError:
            try:  # without CAP_NET_ADMIN: capped at net.core.rmem_max
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf_wanted)
            except OSError:
                pass
        self.rcvbuf = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        if prog:
            _attach(sock, prog)
        try:
            _bind(sock, self.iface.index if self.iface else 0)
        except PermissionError:
            raise CapturePermissionError(PERMISSION_MESSAGE) from None
        except OSError as e:
            raise CaptureError(f"cannot capture on {self.interface}: {e.strerror}") from None
        if self.promiscuous and self.iface is not None and self.iface.hatype == ARPHRD_ETHER:
            mreq = PACKET_MREQ.pack(self.iface.index, PACKET_MR_PROMISC, 0, b"")
            try:  # the membership ends with the socket; the interface flag is untouched
                sock.setsockopt(SOL_PACKET, PACKET_ADD_MEMBERSHIP, mreq)
            except OSError:
                pass
        sock.setblocking(False)

    def fileno(self) -> int:
        return self._sock.fileno() if self._sock is not None else -1

    # -- reading ------------------------------------------------------------------------------
    def read_batch(self, timeout: float) -> Optional[LiveBatch]:
        """Wait up to ``timeout`` seconds for a packet; then collect records until the batch
        is full (``batch_packets``, or the buffer) or ``batch_seconds`` have passed.
        Returns None when nothing arrived."""
        sock = self._sock
        if sock is None:
            raise CaptureError("capture is not open")
        if not self._wait(timeout):
            return None
        recv = sock.recvmsg_into
        view = self._view
        snap = self.snaplen
        cooked = self.cooked
        hdr = SLL2_HEADER_LEN if cooked else 0
        limit = len(self._buf) - snap - hdr
        maxn = self.batch_packets
        unpack_ts = TIMESPEC.unpack
        trunc = socket.MSG_TRUNC
        offsets: list[int] = []
        caplens: list[int] = []
        wirelens: list[int] = []
        ts_ns: list[int] = []
        linktype = self.linktype
        pack_sll2 = SLL2_HEADER.pack_into
        ifindex = self._ifindex
        buf = self._buf
        off = 0
        deadline = time.monotonic() + self.batch_seconds
        while len(offsets) < maxn and off <= limit:
            try:
                got, anc, _flags, addr = recv([view[off + hdr:off + hdr + snap]], ANC_SIZE, trunc)
            except BlockingIOError:
                left = deadline - time.monotonic()
                if left <= 0 or not self._wait(left):
                    break
                continue
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                if e.errno == errno.ENETDOWN:
                    raise CaptureError(f"{self.interface}: the interface went down") from None
                raise CaptureError(f"{self.interface}: capture failed: {e.strerror}") from None
            caplen = got if got < snap else snap
            if anc:
                sec, nsec = unpack_ts(anc[0][2])
                ns = sec * NS + nsec
            else:
                ns = time.time_ns()
            if cooked:
                name, proto, pkttype, hatype, lladdr = addr
                idx = ifindex.get(name)
                if idx is None:
                    idx = self._lookup_index(name)
                pack_sll2(buf, off, proto, 0, idx, hatype, pkttype, min(len(lladdr), 8), lladdr)
                caplen += hdr
                got += hdr
            offsets.append(off)
            caplens.append(caplen)
            wirelens.append(got)
            ts_ns.append(ns)
            off += (caplen + 7) & ~7
        if not offsets:
            return None
        batch = LiveBatch(bytes(view[:off]), self.packets + 1, offsets, caplens, wirelens,
                          [t / NS for t in ts_ns], [linktype] * len(offsets), ts_ns)
        self.packets += len(offsets)
        return batch

    def _wait(self, timeout: float) -> bool:
        try:
            return bool(self._poll.poll(max(0, int(timeout * 1000))))
        except InterruptedError:  # pragma: no cover - PEP 475 retries poll()
            return False

    def _lookup_index(self, name: str) -> int:
        try:
            idx = socket.if_nametoindex(name) if name else 0
        except OSError:
            idx = 0
        self._ifindex[name] = idx
        return idx

    # -- statistics and end -------------------------------------------------------------------
    def kernel_stats(self) -> tuple[int, int]:
        """(packets that passed the filter, packets the kernel dropped) since open()."""
        if self._sock is not None:
            try:
                raw = self._sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, TPACKET_STATS.size)
                packets, drops = TPACKET_STATS.unpack(raw)
                self._kernel_packets += packets  # tp_packets already includes tp_drops
                self._kernel_drops += drops
            except OSError:
                pass
        return self._kernel_packets, self._kernel_drops

    def close(self) -> None:
        if self._sock is not None:
            self.kernel_stats()
            try:
                self._poll.unregister(self._sock)
            except (KeyError, ValueError):
                pass
            self._sock.close()
            self._sock = None

    def __enter__(self) -> "LiveCapture":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------------------------
# Writing what was captured (-w)

PCAPNG_OPT_ENDOFOPT = 0
PCAPNG_OPT_IF_NAME = 2
PCAPNG_OPT_IF_FILTER = 11
PCAPNG_OPT_IF_TSRESOL = 9
PCAPNG_OPT_SHB_USERAPPL = 4
PCAPNG_TSRESOL_NS = 9


class CaptureWriter:
    """Writes records as they arrive: classic pcap (microseconds) or pcapng (nanoseconds, by
    the ``.pcapng`` extension). Every batch is written with whole records and flushed, so the
    file is a valid capture at any moment between batches; :meth:`close` flushes the rest."""

    def __init__(self, path: str, linktype: int, snaplen: int, interface: str = "",
                 bpf: Optional[str] = None) -> None:
        self.path = path
        self.linktype = linktype
        self.snaplen = snaplen
        self.pcapng = path.lower().endswith((".pcapng", ".ntar"))
        self.packets = 0
        try:
            self._fh: Optional[BinaryIO] = open(path, "wb")
        except OSError as e:
            raise CaptureError(f"cannot write {path}: {e.strerror}") from None
        self._write(self._header(interface, bpf))

    def _header(self, interface: str, bpf: Optional[str]) -> bytes:
        if not self.pcapng:
            return struct.pack("<IHHiIII", PCAP_MAGIC_USEC, 2, 4, 0, 0, self.snaplen, self.linktype)
        shb_opts = _opt(PCAPNG_OPT_SHB_USERAPPL, f"analyzer {__version__}".encode()) + _opt_end()
        shb = _block(PCAPNG_SHB, struct.pack("<IHHq", PCAPNG_BYTE_ORDER_MAGIC, 1, 0, -1) + shb_opts)
        idb_opts = _opt(PCAPNG_OPT_IF_TSRESOL, bytes([PCAPNG_TSRESOL_NS]))
        if interface:
            idb_opts += _opt(PCAPNG_OPT_IF_NAME, interface.encode("utf-8", "backslashreplace"))
        if bpf:
            # if_filter: a type byte (0: a libpcap filter string), then the expression
            idb_opts += _opt(PCAPNG_OPT_IF_FILTER,
                             b"\x00" + bpf.encode("utf-8", "backslashreplace"))
        idb = _block(PCAPNG_IDB, struct.pack("<HHI", self.linktype, 0, self.snaplen) + idb_opts
                     + _opt_end())
        return shb + idb

    def write(self, batch: LiveBatch) -> None:
        buf = batch.buf
        parts: list[bytes] = []
        if self.pcapng:
            head = struct.Struct("<IIIIIII")
            for off, caplen, wirelen, ns in zip(batch.offsets, batch.caplens, batch.wirelens,
                                               batch.ts_ns):
                pad = -caplen % 4
                blen = 32 + caplen + pad
                parts.append(head.pack(PCAPNG_EPB, blen, 0, ns >> 32, ns & 0xFFFFFFFF, caplen,
                                       wirelen))
                parts.append(buf[off:off + caplen])
                parts.append(b"\0" * pad + struct.pack("<I", blen))
        else:
            rec = struct.Struct("<IIII")
            for off, caplen, wirelen, ns in zip(batch.offsets, batch.caplens, batch.wirelens,
                                               batch.ts_ns):
                usec = (ns + 500) // 1000
                parts.append(rec.pack(usec // 1_000_000, usec % 1_000_000, caplen, wirelen))
                parts.append(buf[off:off + caplen])
        self._write(b"".join(parts))
        self.packets += len(batch.offsets)

    def _write(self, data: bytes) -> None:
        if self._fh is None:
            return
        try:
            self._fh.write(data)
            self._fh.flush()
        except OSError as e:
            raise CaptureError(f"cannot write {self.path}: {e.strerror}") from None

    def close(self) -> None:
        if self._fh is not None:
            try:
                self._fh.flush()
                os.fsync(self._fh.fileno())
            except OSError:
                pass
            finally:
                self._fh.close()
                self._fh = None


def _opt(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _opt_end() -> bytes:
    return struct.pack("<HH", PCAPNG_OPT_ENDOFOPT, 0)


def _block(btype: int, body: bytes) -> bytes:
    blen = 12 + len(body)
    return struct.pack("<II", btype, blen) + body + struct.pack("<I", blen)


__all__ = ["ANY", "CaptureError", "CaptureUsageError", "CaptureWriter", "Interface", "LiveBatch",
           "LiveCapture", "compile_filter", "cooked_program", "find_interface", "list_interfaces",
           "loopback_prefix", "PERMISSION_MESSAGE"]
