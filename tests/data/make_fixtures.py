"""Generate the link-type / file-format fixtures in tests/data/ (committed; rerun to refresh).

    python tests/data/make_fixtures.py

One small scenario — a TCP connection whose HTTP request (Host: blocked.example) is answered by
a forged RST (TTL 99 instead of the server's 52) while the server's data still arrives — is
written in every link type and file format the reader supports. Classic pcap variants are
written here byte by byte; the pcapng files are produced by Wireshark's own tools (editcap,
mergecap) when they are installed, so they carry what real captures carry (SHB/IDB options,
several interfaces, comments).
"""
from __future__ import annotations

import shutil
import struct
import subprocess
import sys
from pathlib import Path

from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop
from scapy.layers.l2 import Dot1Q, Ether
from scapy.packet import Raw

HERE = Path(__file__).resolve().parent
T0 = 1_700_000_000.0
CLIENT, SERVER = "10.0.0.2", "93.184.216.34"
CLIENT6, SERVER6 = "2001:db8::2", "2001:db8:1::34"
REQUEST = b"GET / HTTP/1.1\r\nHost: blocked.example\r\nUser-Agent: fixture\r\n\r\n"


def scenario_l3(v6: bool = False, ext: bool = False) -> list[tuple[float, bytes]]:
    """Network-layer packets of the scenario with timestamps."""
    def ip(src: str, dst: str, ttl: int, ipid: int) -> object:
        if v6:
            base = IPv6(src=src, dst=dst, hlim=ttl)
            if ext:
                return base / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt()
            return base
        return IP(src=src, dst=dst, ttl=ttl, id=ipid, flags="DF")

    c, s = (CLIENT6, SERVER6) if v6 else (CLIENT, SERVER)
    cs, ss = 1000, 5000
    n = len(REQUEST)
    pkts = [
        (0.000, ip(c, s, 64, 100) / TCP(sport=40000, dport=80, flags="S", seq=cs, window=64240)),
        (0.050, ip(s, c, 52, 7000) / TCP(sport=80, dport=40000, flags="SA", seq=ss, ack=cs + 1, window=65160)),
        (0.051, ip(c, s, 64, 101) / TCP(sport=40000, dport=80, flags="A", seq=cs + 1, ack=ss + 1, window=502)),
        (0.052, ip(c, s, 64, 102) / TCP(sport=40000, dport=80, flags="PA", seq=cs + 1, ack=ss + 1, window=502) / Raw(REQUEST)),
        # forged: TTL 99, IP-ID unrelated, fixed window, seq at the server's next byte
        (0.070, ip(s, c, 99, 31337) / TCP(sport=80, dport=40000, flags="RA", seq=ss + 1, ack=cs + 1 + n, window=16)),
        # the genuine server still answers
        (0.101, ip(s, c, 52, 7001) / TCP(sport=80, dport=40000, flags="A", seq=ss + 1, ack=cs + 1 + n, window=509)),
        (0.102, ip(s, c, 52, 7002) / TCP(sport=80, dport=40000, flags="PA", seq=ss + 1, ack=cs + 1 + n, window=509)
         / Raw(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")),
        (0.103, ip(c, s, 64, 103) / TCP(sport=40000, dport=80, flags="R", seq=cs + 1 + n, window=0)),
    ]
    return [(T0 + t, bytes(p)) for t, p in pkts]  # type: ignore[arg-type]


def ether(l3: bytes, v6: bool, vlans: int = 0) -> bytes:
    etype = 0x86DD if v6 else 0x0800
    if not vlans:
        return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02", type=etype)) + l3
    frame = Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
    for i in range(vlans):
        frame = frame / Dot1Q(vlan=100 + i)
    b = bytearray(bytes(frame))
    struct.pack_into("!H", b, len(b) - 2, etype)
    return bytes(b) + l3


def sll(l3: bytes, v6: bool) -> bytes:
    return struct.pack("!HHH8sH", 0, 1, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00", 0x86DD if v6 else 0x0800) + l3


def sll2(l3: bytes, v6: bool) -> bytes:
    return struct.pack("!HHIHBB8s", 0x86DD if v6 else 0x0800, 0, 2, 1, 0, 6, b"\x02\x00\x00\x00\x00\x01\x00\x00") + l3


def null(l3: bytes, v6: bool, loop: bool) -> bytes:
    fam = 30 if v6 else 2  # BSD AF_INET6 (macOS) / AF_INET
    return struct.pack("!I" if loop else "<I", fam) + l3


def write_pcap(path: Path, linktype: int, frames: list[tuple[float, bytes]], endian: str = "<",
               nano: bool = False) -> None:
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = bytearray(struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 262144, linktype))
    for ts, data in frames:
        sec = int(ts)
        frac = round((ts - sec) * (1e9 if nano else 1e6))
        out += struct.pack(endian + "IIII", sec, frac, len(data), len(data)) + data
    path.write_bytes(bytes(out))


def main() -> None:
    v4 = scenario_l3()
    v6 = scenario_l3(v6=True, ext=True)
    write_pcap(HERE / "en10mb.pcap", 1, [(t, ether(p, False)) for t, p in v4])
    write_pcap(HERE / "en10mb-be.pcap", 1, [(t, ether(p, False)) for t, p in v4], endian=">")
    write_pcap(HERE / "en10mb-ns.pcap", 1, [(t, ether(p, False)) for t, p in v4], nano=True)
    write_pcap(HERE / "vlan.pcap", 1, [(t, ether(p, False, vlans=2)) for t, p in v4])
    write_pcap(HERE / "sll.pcap", 113, [(t, sll(p, False)) for t, p in v4])
    write_pcap(HERE / "sll2.pcap", 276, [(t, sll2(p, False)) for t, p in v4])
    write_pcap(HERE / "raw.pcap", 101, v4)
    write_pcap(HERE / "ipv4.pcap", 228, v4)
    write_pcap(HERE / "null.pcap", 0, [(t, null(p, False, False)) for t, p in v4])
    write_pcap(HERE / "loop.pcap", 108, [(t, null(p, False, True)) for t, p in v4])
    write_pcap(HERE / "ipv6-ext.pcap", 1, [(t, ether(p, True)) for t, p in v6])
    write_pcap(HERE / "ipv6-raw.pcap", 229, v6)
    write_pcap(HERE / "null-ipv6.pcap", 0, [(t, null(p, True, False)) for t, p in v6])
    editcap, mergecap = shutil.which("editcap"), shutil.which("mergecap")
    if not (editcap and mergecap):
        print("editcap/mergecap not found: pcapng fixtures not refreshed", file=sys.stderr)
        return
    tmp = HERE / "_tmp.pcapng"
    # pcapng with a packet comment, written by editcap
    subprocess.run([editcap, "-F", "pcapng", "-a", "5:forged RST (fixture)", str(HERE / "en10mb.pcap"),
                    str(HERE / "en10mb.pcapng")], check=True)
    # nanosecond pcapng
    subprocess.run([editcap, "-F", "pcapng", "--set-tsresol", "9", str(HERE / "en10mb-ns.pcap"),
                    str(HERE / "en10mb-ns.pcapng")], check=False)
    if not (HERE / "en10mb-ns.pcapng").exists():
        subprocess.run([editcap, "-F", "pcapng", str(HERE / "en10mb-ns.pcap"), str(HERE / "en10mb-ns.pcapng")], check=True)
    # several interfaces (EN10MB + LINUX_SLL + RAW IPv6) in one pcapng, interleaved by time
    shifted = HERE / "_sll_shifted.pcap"
    subprocess.run([editcap, "-t", "0.0005", str(HERE / "sll.pcap"), str(shifted)], check=True)
    subprocess.run([mergecap, "-F", "pcapng", "-w", str(tmp), str(HERE / "en10mb.pcap"), str(shifted),
                    str(HERE / "ipv6-raw.pcap")], check=True)
    subprocess.run([editcap, "-a", "1:first packet, interface 0", str(tmp), str(HERE / "multi-if.pcapng")], check=True)
    tmp.unlink()
    shifted.unlink()
    print("fixtures written to", HERE)


if __name__ == "__main__":
    main()
