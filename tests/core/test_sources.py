"""Reader + link-layer decoder on real bytes of every supported format and link type."""
from __future__ import annotations

import io
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any, Callable

import pytest

from analyzer.sources.files import open_reader
from analyzer.status import InputError

DATA = Path(__file__).resolve().parents[1] / "data"

SINGLE = ["en10mb.pcap", "en10mb-be.pcap", "en10mb-ns.pcap", "vlan.pcap", "sll.pcap", "sll2.pcap",
          "raw.pcap", "ipv4.pcap", "null.pcap", "loop.pcap", "ipv6-ext.pcap", "ipv6-raw.pcap",
          "null-ipv6.pcap", "en10mb.pcapng", "en10mb-ns.pcapng"]
LINKTYPES = {"en10mb.pcap": "EN10MB", "vlan.pcap": "EN10MB", "sll.pcap": "LINUX_SLL",
             "sll2.pcap": "LINUX_SLL2", "raw.pcap": "RAW", "ipv4.pcap": "IPV4", "null.pcap": "NULL",
             "loop.pcap": "LOOP", "ipv6-raw.pcap": "IPV6", "en10mb.pcapng": "EN10MB"}


@pytest.mark.parametrize("name", SINGLE)
def test_every_format_decodes_and_finds_the_forged_rst(name: str, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    doc = analyze_doc(DATA / name)
    st = doc["stats"]
    assert st["packets"] == 8 and st["decoded"] == 8, st
    assert st["skipped"] == {}
    if name in LINKTYPES:
        assert doc["inputs"][0]["linktype"] == LINKTYPES[name]
    [v] = doc["verdicts"]
    assert (v["technique"], v["trigger"]) == ("rst_injection", "http_host")
    assert v["domain"] == "blocked.example"
    forged = [p["frame"] for p in v["packets"] if p["forged"]]
    assert forged == [5]
    assert "ttl_mismatch" in v["signals"] and "data_after_rst" in v["signals"]
    assert doc["inputs"][0]["first_ts"] == pytest.approx(1_700_000_000.0, abs=1e-6)


def test_nanosecond_timestamps_are_kept() -> None:
    for name in ("en10mb-ns.pcap", "en10mb-ns.pcapng"):
        with open(DATA / name, "rb") as fh:
            r = open_reader(fh, name)
            ts = [t for b in r.batches() for t in b.ts]
        # float seconds near 1.7e9 resolve ~0.24 us; the JSON carries microseconds
        assert ts[1] - ts[0] == pytest.approx(0.050, abs=1e-6)
        assert ts[2] - ts[1] == pytest.approx(0.001, abs=1e-6)


def test_multi_interface_pcapng_frame_numbers_match_tshark(analyze_doc: Callable[..., dict[str, Any]]) -> None:
    doc = analyze_doc(DATA / "multi-if.pcapng")
    assert doc["stats"]["packets"] == 24 and doc["stats"]["decoded"] == 24
    assert doc["inputs"][0]["linktype"] == "EN10MB,LINUX_SLL,IPV6"
    frames = sorted(p["frame"] for v in doc["verdicts"] for p in v["packets"] if p["forged"])
    # the IPv4 connection seen on two interfaces (EN10MB and SLL, as with `-i any`) is one flow
    assert len(doc["verdicts"]) == 2
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed")
    out = subprocess.run([tshark, "-r", str(DATA / "multi-if.pcapng"), "-Y",
                          "tcp.flags.reset == 1 && (ip.ttl == 99 || ipv6.hlim == 99)",
                          "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
    assert frames == sorted(int(x) for x in out.stdout.split())


def test_tshark_agrees_on_every_fixture_frame_of_the_forged_rst() -> None:
    tshark = shutil.which("tshark")
    if tshark is None:
        pytest.skip("tshark not installed")
    for name in SINGLE:
        out = subprocess.run([tshark, "-r", str(DATA / name), "-Y", "tcp.flags.reset == 1 && tcp.window_size_value == 16",
                              "-T", "fields", "-e", "frame.number"], capture_output=True, text=True, check=True)
        assert out.stdout.split() == ["5"], name


def _pcap_header(linktype: int = 1) -> bytes:
    return struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, linktype)


@pytest.mark.parametrize("data,msg", [
    (b"", "empty file"),
    (b"\x01\x02", "too short"),
    (b"hello world, this is not a capture file", "not a pcap or pcapng"),
    (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated pcap header"),
    (b"\x0a\x0d\x0d\x0a\x1c\x00\x00\x00XXXX", "damaged pcapng"),
])
def test_non_captures_are_one_line_errors(data: bytes, msg: str) -> None:
    with pytest.raises(InputError, match=msg):
        open_reader(io.BytesIO(data), "x")


def test_damage_inside_a_file_is_counted_not_raised(analyze_doc: Callable[..., dict[str, Any]], tmp_path: Path) -> None:
    good = (DATA / "en10mb.pcap").read_bytes()
    # cut in the middle of the last record
    p = tmp_path / "cut.pcap"
    p.write_bytes(good[:-10])
    doc = analyze_doc(p)
    assert doc["stats"]["packets"] == 7
    assert doc["stats"]["skipped"] == {"truncated_record": 1}
    # a record with an absurd length: reading stops there, counted
    bad = bytearray(good)
    struct.pack_into("<I", bad, 24 + 8, 0x7FFFFFFF)
    p2 = tmp_path / "corrupt.pcap"
    p2.write_bytes(bytes(bad))
    doc = analyze_doc(p2)
    assert doc["stats"]["packets"] == 0
    assert doc["stats"]["skipped"] == {"corrupt_record_length": 1}
    # a frame whose IP header is garbage, among good ones
    frames = bytearray(_pcap_header(101))
    for payload in (b"\x45\x00\x00\x14" + b"\x00" * 4, b"\x60" + b"\x00" * 10, b"\x99" * 30):
        frames += struct.pack("<IIII", 1, 0, len(payload), len(payload)) + payload
    p3 = tmp_path / "garbage.pcap"
    p3.write_bytes(bytes(frames))
    doc = analyze_doc(p3)
    assert doc["stats"]["packets"] == 3 and doc["stats"]["decoded"] == 0
    assert sum(doc["stats"]["skipped"].values()) == 3


def test_hostile_frames_never_raise(tmp_path: Path, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    import random

    from analyzer.config import Settings

    rnd = random.Random(1234)
    base = [ (DATA / n).read_bytes() for n in ("en10mb.pcap", "ipv6-ext.pcap", "vlan.pcap") ]
    frames = bytearray(_pcap_header(1))
    for _ in range(3000):
        src = rnd.choice(base)
        start = 24 + 16
        pkt = bytearray(src[start:start + 120])
        for _ in range(rnd.randint(1, 8)):
            pkt[rnd.randrange(len(pkt))] = rnd.randrange(256)
        pkt = pkt[: rnd.randint(0, len(pkt))]
        frames += struct.pack("<IIII", 1, 0, len(pkt), len(pkt)) + pkt
    p = tmp_path / "fuzz.pcap"
    p.write_bytes(bytes(frames))
    doc = analyze_doc(p, settings=Settings(strict=False))
    assert doc["stats"]["packets"] == 3000
    assert "decoder_error" not in doc["stats"]["skipped"]


class _Pipe(io.RawIOBase):
    """A non-seekable stream (stdin, a pipe) over bytes, returning short reads."""

    def __init__(self, data: bytes) -> None:
        self._data = io.BytesIO(data)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return False

    def readinto(self, b: Any) -> int:
        chunk = self._data.read(min(len(b), 777))
        b[: len(chunk)] = chunk
        return len(chunk)


def _records(stream: Any) -> tuple[list[tuple[bytes, float, int]], dict[str, int]]:
    reader = open_reader(stream, "x")
    out = []
    for batch in reader.batches():
        offs, caps, wls, tss, _lt = batch.arrays()
        for o, c, w, t in zip(offs.tolist(), caps.tolist(), wls.tolist(), tss.tolist()):
            out.append((bytes(batch.buf[o:o + c]), t, w))
    return out, dict(reader.skips)


@pytest.mark.parametrize("chunk", [5, 100, 4096, 4 << 20])
def test_seekable_and_piped_reads_give_the_same_records(chunk: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # regular files are re-read from the first incomplete record; pipes join the pieces
    from analyzer.sources import files

    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    data = (DATA / "en10mb.pcap").read_bytes()
    total = len(_records(io.BytesIO(data))[0])
    assert total > 5
    for blob, records, skips in ((data, total, {}), (data[:-7], total - 1, {"truncated_record": 1}),
                                 (data[:24], 0, {}), (data[:30], 0, {"truncated_record": 1})):
        seek = _records(io.BytesIO(blob))
        pipe = _records(io.BufferedReader(_Pipe(blob)))
        assert seek == pipe
        assert len(seek[0]) == records and seek[1] == skips


@pytest.mark.parametrize("chunk", [5, 100, 4096, 4 << 20])
@pytest.mark.parametrize("walk", ["c", "python"])
def test_pcapng_seekable_and_piped_reads_give_the_same_records(
        chunk: int, walk: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from analyzer import speedups
    from analyzer.sources import files

    if walk == "python":
        monkeypatch.setattr(speedups, "native", None)
    elif speedups.native is None:
        pytest.skip("analyzer._speedups is not built")
    monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
    for name in ("en10mb.pcapng", "multi-if.pcapng"):
        data = (DATA / name).read_bytes()
        total = len(_records(io.BytesIO(data))[0])
        assert total > 3
        for blob in (data, data[:-5], data[:40], data[:len(data) // 2]):
            seek = _records(io.BytesIO(blob))
            pipe = _records(io.BufferedReader(_Pipe(blob)))
            assert seek == pipe, (name, len(blob))
        assert _records(io.BytesIO(data[:-5]))[1] == {"truncated_block": 1}
