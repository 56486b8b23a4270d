"""Evidence export to an annotated pcapng (evidence.py)."""
from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import dpkt
import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.l2 import Ether
from scapy.utils import wrpcap

from analyzer.report.evidence import write_evidence_pcapng

T0 = 1700000000


def make_pcap(path: Path) -> list[bytes]:
    """Five TCP packets, microsecond timestamps T0 + n + 0.25."""
    packets = []
    for n in range(1, 6):
        pkt = (Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02")
               / IP(src="10.0.0.2", dst="157.240.1.53", ttl=60 + n, id=n)
               / TCP(sport=51234, dport=443, flags="R" if n in (2, 4) else "A", seq=n))
        pkt.time = T0 + n + 0.25
        packets.append(pkt)
    wrpcap(str(path), packets)
    return [bytes(p) for p in packets]


def verdict(vid: str, technique: str, evidence: list[tuple[int, str]],
            input_index: int = 0) -> dict[str, Any]:
    return {"id": vid, "technique": technique, "trigger": "sni", "target": "whatsapp",
            "evidence": [{"frame": f, "ts": 0.0, "input": input_index, "reason": r}
                         for f, r in evidence]}


def evidence_doc(*paths: Path, verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schema": "analyzer.report/1", "tool": {"name": "analyzer", "version": "0.1.0"},
            "inputs": [{"path": str(p)} for p in paths], "verdicts": verdicts}


def read_blocks(path: Path) -> list[tuple[int, bytes]]:
    data = path.read_bytes()
    blocks, pos = [], 0
    while pos < len(data):
        block_type, length = struct.unpack("<II", data[pos:pos + 8])
        assert length % 4 == 0 and data[pos + length - 4:pos + length] == data[pos + 4:pos + 8]
        blocks.append((block_type, data[pos:pos + length]))
        pos += length
    return blocks


def epb_comments(path: Path) -> list[str]:
    comments = []
    for block_type, raw in read_blocks(path):
        if block_type == 6:
            epb = dpkt.pcapng.EnhancedPacketBlockLE(raw)
            comments.append(b"".join(o.data for o in epb.opts if o.code == 1).decode())
    return comments


def tshark_comments(path: Path) -> list[str]:
    for field in ("frame.comment", "pkt_comment"):
        run = subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-e", field],
                             capture_output=True, text=True, timeout=60, check=False)
        if run.returncode == 0 and run.stdout.strip():
            return run.stdout.splitlines()
    pytest.fail(f"tshark could not read comments: {run.stderr}")


def test_pcap_evidence_round_trip(tmp_path: Path) -> None:
    capture = tmp_path / "in.pcap"
    raw = make_pcap(capture)
    doc = evidence_doc(capture, verdicts=[
        verdict("v-1", "rst_injection", [(2, "RST TTL 62 vs server's 47"), (4, "second RST")]),
        verdict("v-2", "rst_injection", [(4, "IP-ID 4 out of sequence")]),
    ])
    out = tmp_path / "evidence.pcapng"
    assert write_evidence_pcapng(doc, str(out)) == 2

    with out.open("rb") as fh:
        read = list(dpkt.pcapng.Reader(fh))
    assert [buf for _, buf in read] == [raw[1], raw[3]]
    assert [round(ts, 6) for ts, _ in read] == [T0 + 2.25, T0 + 4.25]
    assert epb_comments(out) == [
        "rst_injection/sni v-1: RST TTL 62 vs server's 47",
        "rst_injection/sni v-1: second RST | rst_injection/sni v-2: IP-ID 4 out of sequence",
    ]
    kinds = [block_type for block_type, _ in read_blocks(out)]
    assert kinds == [0x0A0D0D0A, 1, 6, 6]

    if shutil.which("tshark"):
        assert tshark_comments(out) == epb_comments(out)


def _option(code: int, value: bytes) -> bytes:
    return struct.pack("<HH", code, len(value)) + value + b"\0" * (-len(value) % 4)


def _block(block_type: int, body: bytes) -> bytes:
    return struct.pack("<II", block_type, 12 + len(body)) + body + struct.pack("<I", 12 + len(body))


def make_pcapng(path: Path) -> list[bytes]:
    """Two sections; nanosecond and microsecond interfaces; non-packet blocks in between.

    Packet blocks, in Wireshark frame order: 1 EPB(if0, ns), 2 SPB, 3 EPB(if1, raw IP, us),
    [new section] 4 EPB(if0 of section 2, Ethernet, ns).
    """
    payloads = [bytes([n]) * (20 + n) for n in range(1, 5)]
    shb = _block(0x0A0D0D0A, struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1) + _option(0, b""))
    idb_ns = _block(1, struct.pack("<HHI", 1, 0, 65535) + _option(9, b"\x09") + _option(0, b""))
    idb_raw = _block(1, struct.pack("<HHI", 101, 0, 65535) + _option(0, b""))

    def epb(iface: int, ts: int, data: bytes) -> bytes:
        body = struct.pack("<IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), len(data))
        return _block(6, body + data + b"\0" * (-len(data) % 4))

    spb = _block(3, struct.pack("<I", len(payloads[1])) + payloads[1]
                 + b"\0" * (-len(payloads[1]) % 4))
    nrb = _block(4, _option(0, b""))  # name resolution block: not a frame
    isb = _block(5, struct.pack("<III", 0, 0, 0))  # interface statistics: not a frame
    path.write_bytes(
        shb + idb_ns + idb_raw
        + epb(0, T0 * 10**9 + 123456789, payloads[0]) + nrb + spb
        + epb(1, T0 * 10**6 + 500000, payloads[2]) + isb
        + shb + idb_ns + epb(0, (T0 + 1) * 10**9 + 1, payloads[3]))
    return payloads


def test_pcapng_inputs_frames_interfaces_and_resolution(tmp_path: Path) -> None:
    capture = tmp_path / "in.pcapng"
    payloads = make_pcapng(capture)
    other = tmp_path / "other.pcap"
    raw = make_pcap(other)
    doc = evidence_doc(capture, other, verdicts=[
        verdict("v-1", "drop", [(1, "a"), (3, "c"), (4, "d")]),
        verdict("v-2", "dns_injection", [(2, "b")]),
        verdict("v-3", "blockpage", [(5, "other capture")], input_index=1),
    ])
    out = tmp_path / "evidence.pcapng"
    assert write_evidence_pcapng(doc, str(out)) == 5

    blocks = read_blocks(out)
    idbs = [dpkt.pcapng.InterfaceDescriptionBlockLE(raw_block)
            for kind, raw_block in blocks if kind == 1]
    # (input 0, Ethernet, ns) (input 0, raw IP, us) (input 1, Ethernet, us): the identical
    # interface of the second section shares the first one's IDB.
    assert [(i.linktype, [o.data for o in i.opts if o.code == 9]) for i in idbs] == [
        (1, [b"\x09"]), (101, [b"\x06"]), (1, [b"\x06"])]
    epbs = [dpkt.pcapng.EnhancedPacketBlockLE(raw_block)
            for kind, raw_block in blocks if kind == 6]
    assert [e.pkt_data for e in epbs] == [*payloads, raw[4]]
    assert [e.iface_id for e in epbs] == [0, 0, 1, 0, 2]
    assert ((epbs[0].ts_high << 32) | epbs[0].ts_low) == T0 * 10**9 + 123456789
    assert ((epbs[3].ts_high << 32) | epbs[3].ts_low) == (T0 + 1) * 10**9 + 1
    assert epb_comments(out) == ["drop/sni v-1: a", "dns_injection/sni v-2: b",
                                 "drop/sni v-1: c", "drop/sni v-1: d",
                                 "blockpage/sni v-3: other capture"]

    if shutil.which("tshark"):
        assert tshark_comments(out) == epb_comments(out)
        run = subprocess.run(["tshark", "-r", str(out), "-T", "fields", "-e",
                              "frame.time_epoch"], capture_output=True, text=True, timeout=60,
                             check=True)
        assert run.stdout.split()[0] == f"{T0}.123456789"


def test_hostile_reason_is_made_visible(tmp_path: Path) -> None:
    capture = tmp_path / "in.pcap"
    make_pcap(capture)
    doc = evidence_doc(capture, verdicts=[verdict("v-1", "rst_injection",
                                                  [(1, "\x1b[2Jgone \u202eevil" + "x" * 70000)])])
    out = tmp_path / "evidence.pcapng"
    assert write_evidence_pcapng(doc, str(out)) == 1
    (comment,) = epb_comments(out)
    assert comment.startswith("rst_injection/sni v-1: \\x1b[2Jgone \\u202eevil")
    assert len(comment.encode()) == 0xFFFF  # cut to the option's length limit


def test_missing_capture_is_a_clear_error(tmp_path: Path) -> None:
    doc = evidence_doc(tmp_path / "nowhere.pcap",
                       verdicts=[verdict("v-1", "drop", [(1, "x")])])
    with pytest.raises(FileNotFoundError, match="nowhere.pcap"):
        write_evidence_pcapng(doc, str(tmp_path / "out.pcapng"))
    stdin_doc = {"inputs": [{"path": "-"}], "verdicts": [verdict("v-1", "drop", [(1, "x")])]}
    with pytest.raises(FileNotFoundError, match="stdin"):
        write_evidence_pcapng(stdin_doc, str(tmp_path / "out.pcapng"))


def test_relative_path_found_under_base_dir(tmp_path: Path) -> None:
    make_pcap(tmp_path / "in.pcap")
    doc = {"inputs": [{"path": "in.pcap"}], "verdicts": [verdict("v-1", "drop", [(3, "x")])]}
    out = tmp_path / "out.pcapng"
    assert write_evidence_pcapng(doc, str(out), base_dir=str(tmp_path)) == 1


def test_frame_beyond_capture_or_unknown_input_is_an_error(tmp_path: Path) -> None:
    capture = tmp_path / "in.pcap"
    make_pcap(capture)
    doc = evidence_doc(capture, verdicts=[verdict("v-1", "drop", [(6, "x")])])
    with pytest.raises(ValueError, match="frame"):
        write_evidence_pcapng(doc, str(tmp_path / "out.pcapng"))
    doc = evidence_doc(capture, verdicts=[verdict("v-1", "drop", [(1, "x")], input_index=3)])
    with pytest.raises(ValueError, match="input #3"):
        write_evidence_pcapng(doc, str(tmp_path / "out.pcapng"))
    junk = tmp_path / "junk.pcap"
    junk.write_bytes(b"not a capture at all")
    doc = evidence_doc(junk, verdicts=[verdict("v-1", "drop", [(1, "x")])])
    with pytest.raises(ValueError, match="not a pcap"):
        write_evidence_pcapng(doc, str(tmp_path / "out.pcapng"))


def test_no_evidence_writes_an_empty_capture(tmp_path: Path) -> None:
    out = tmp_path / "out.pcapng"
    assert write_evidence_pcapng({"inputs": [], "verdicts": []}, str(out)) == 0
    assert [kind for kind, _ in read_blocks(out)] == [0x0A0D0D0A]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")
def test_wireshark_filter_selects_exactly_the_evidence(tmp_path: Path) -> None:
    from analyzer.report.merge import read_view, wireshark_filters

    capture = tmp_path / "in.pcap"
    make_pcap(capture)
    doc = evidence_doc(capture, verdicts=[verdict("v-1", "rst_injection",
                                                  [(4, "b"), (2, "a"), (4, "c")])])
    ((index, expression),) = wireshark_filters(read_view(doc).verdicts[0])
    assert (index, expression) == (0, "frame.number in {2, 4}")
    run = subprocess.run(["tshark", "-r", str(capture), "-Y", expression, "-T", "fields",
                          "-e", "frame.number"], capture_output=True, text=True, timeout=60,
                         check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["2", "4"]
