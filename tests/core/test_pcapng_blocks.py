"""pcapng block kinds beyond EPB, written byte by byte (pcapng spec, draft-ietf-opsawg-pcapng):
Simple Packet Blocks, the obsolete Packet Block, a second section in the other byte order,
if_tsresol/if_tsoffset options, and blocks the reader must skip (NRB, ISB, custom)."""
from __future__ import annotations

import struct
from pathlib import Path
from typing import Any, Callable

DATA = Path(__file__).resolve().parents[1] / "data"


def _frames() -> list[bytes]:
    """The 8 Ethernet frames of the en10mb.pcap fixture."""
    raw = (DATA / "en10mb.pcap").read_bytes()
    out, off = [], 24
    while off + 16 <= len(raw):
        incl = struct.unpack_from("<I", raw, off + 8)[0]
        out.append(raw[off + 16: off + 16 + incl])
        off += 16 + incl
    return out


def _block(e: str, btype: int, body: bytes) -> bytes:
    pad = (-len(body)) % 4
    total = 12 + len(body) + pad
    return struct.pack(e + "II", btype, total) + body + b"\0" * pad + struct.pack(e + "I", total)


def _opt(e: str, code: int, value: bytes) -> bytes:
    return struct.pack(e + "HH", code, len(value)) + value + b"\0" * ((-len(value)) % 4)


def shb(e: str) -> bytes:
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def idb(e: str, linktype: int, tsresol: int | None = None, tsoffset: int = 0) -> bytes:
    opts = b""
    if tsresol is not None:
        opts += _opt(e, 9, bytes([tsresol]))
    if tsoffset:
        opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += _opt(e, 0, b"")
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, 0) + opts)


def epb(e: str, ifid: int, ticks: int, frame: bytes) -> bytes:
    return _block(e, 6, struct.pack(e + "IIIII", ifid, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)


def spb(e: str, frame: bytes) -> bytes:
    return _block(e, 3, struct.pack(e + "I", len(frame)) + frame)


def pb(e: str, ifid: int, ticks: int, frame: bytes) -> bytes:
    return _block(e, 2, struct.pack(e + "HHIIII", ifid, 0, ticks >> 32, ticks & 0xFFFFFFFF, len(frame), len(frame)) + frame)


def test_spb_pb_and_a_big_endian_second_section(tmp_path: Path, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    fr = _frames()
    t0 = 1_700_000_000
    parts = [shb("<"), idb("<", 1, tsresol=3, tsoffset=t0)]  # milliseconds since t0
    parts += [epb("<", 0, 0, fr[0]), _block("<", 4, b"\x00" * 8), epb("<", 0, 50, fr[1])]
    parts += [pb("<", 0, 51, fr[2]), epb("<", 0, 52, fr[3])]
    # a second section, big-endian, microseconds: the interface list starts again
    parts += [shb(">"), idb(">", 1), epb(">", 0, (t0 * 1_000_000) + 70_000, fr[4])]
    parts += [_block(">", 5, b"\x00" * 8)]  # interface statistics block: skipped
    parts += [epb(">", 0, (t0 * 1_000_000) + 101_000, fr[5]), epb(">", 0, (t0 * 1_000_000) + 102_000, fr[6]),
              epb(">", 0, (t0 * 1_000_000) + 103_000, fr[7])]
    p = tmp_path / "blocks.pcapng"
    p.write_bytes(b"".join(parts))
    doc = analyze_doc(p)
    assert doc["stats"]["packets"] == 8 and doc["stats"]["decoded"] == 8
    [v] = doc["verdicts"]
    assert (v["technique"], v["trigger"]) == ("rst_injection", "http_host")
    assert [q["frame"] for q in v["packets"] if q["forged"]] == [5]
    assert doc["inputs"][0]["first_ts"] == 1_700_000_000.0


def test_simple_packet_blocks_use_interface_zero(tmp_path: Path, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    fr = _frames()
    p = tmp_path / "spb.pcapng"
    p.write_bytes(shb("<") + idb("<", 1) + b"".join(spb("<", f) for f in fr))
    doc = analyze_doc(p)
    assert doc["stats"]["packets"] == 8 and doc["stats"]["decoded"] == 8
    assert doc["flows"][0]["packets"] == 8


def test_packet_block_for_a_missing_interface_keeps_frame_numbers(tmp_path: Path, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    fr = _frames()
    p = tmp_path / "badif.pcapng"
    # frame 2 names interface 7, which does not exist: counted, and later frames keep their numbers
    p.write_bytes(shb("<") + idb("<", 1) + epb("<", 0, 0, fr[0]) + epb("<", 7, 1, fr[1])
                  + b"".join(epb("<", 0, 2 + i, f) for i, f in enumerate(fr[2:])))
    doc = analyze_doc(p)
    assert doc["stats"]["packets"] == 8
    assert doc["stats"]["skipped"] == {"unknown_interface": 1}
    assert [q["frame"] for v in doc["verdicts"] for q in v["packets"] if q["forged"]] == [5]


def test_damaged_pcapng_is_counted_not_raised(tmp_path: Path, analyze_doc: Callable[..., dict[str, Any]]) -> None:
    good = (DATA / "multi-if.pcapng").read_bytes()
    for cut in range(40, len(good), 97):  # every kind of truncation point
        p = tmp_path / f"cut{cut}.pcapng"
        p.write_bytes(good[:cut])
        doc = analyze_doc(p)
        assert doc["stats"]["packets"] <= 24
    # a block whose length field lies
    bad = bytearray(good)
    first_epb = bad.find(struct.pack("<I", 6))
    struct.pack_into("<I", bad, first_epb + 4, 0x7FFFFFF0)
    p = tmp_path / "liar.pcapng"
    p.write_bytes(bytes(bad))
    doc = analyze_doc(p)
    assert "corrupt_block_length" in doc["stats"]["skipped"]
