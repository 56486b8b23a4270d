"""The optional C extension (analyzer/_speedups.c) must give exactly what the numpy code gives.

Both stages it replaces are compared array by array (dtype and every value; timestamps bit for
bit): the pcap record walk (``PcapReader.batches``) and the header gather
(``decode.fast.extract``), on the lab captures, the format fixtures, a generated capture and
hostile inputs (mutated headers, every truncation point, lying record lengths, random bytes,
random frame tables). Then whole result documents with and without ``ANALYZER_PURE_PYTHON=1``.
"""
from __future__ import annotations

import io
import json
import os
import random
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest

import analyzer
import analyzer.sources.files as files
from analyzer import speedups
from analyzer.decode.fast import Fields, extract, extract_numpy
from analyzer.sources.files import MAX_RECORD_LEN, Batch, open_reader

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "tests" / "data"
PUBLIC = ROOT.parent / "shared" / "captures-public"

try:
    from analyzer import _speedups as ext
except ImportError:  # pragma: no cover - built without a compiler
    ext = None  # type: ignore[assignment]

needs_ext = pytest.mark.skipif(ext is None, reason="analyzer._speedups not built")

LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 276, -1, 2, 1 << 40)
BATCH_SIZES = (7, 65_536)


def test_extension_built_in_ci() -> None:
    if os.environ.get("CI") != "true":
        pytest.skip("only enforced in CI")
    import analyzer._speedups  # noqa: F401  (CI must not silently fall back to numpy)

    if os.environ.get(speedups.PURE_PYTHON_ENV) != "1":
        assert speedups.native is not None


# -- helpers --------------------------------------------------------------------------------

def _same_array(a: Any, b: Any, what: str) -> None:
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} != {b.dtype}"
    assert a.shape == b.shape, f"{what}: shape {a.shape} != {b.shape}"
    if a.dtype == np.float64:  # bit for bit, not merely ==
        a, b = a.view(np.int64), b.view(np.int64)
    assert np.array_equal(a, b), f"{what}: first difference at {int(np.flatnonzero(a != b)[0])}"


def _same_fields(c: Fields, ref: Fields, what: str) -> None:
    for name in Fields.__slots__:
        _same_array(getattr(c, name), getattr(ref, name), f"{what}: {name}")


def _with_native(native: Any, fn: Any, *args: Any) -> Any:
    saved = speedups.native
    speedups.native = native
    try:
        return fn(*args)
    finally:
        speedups.native = saved


def _read(data: bytes, batch_packets: int) -> tuple[list[Batch], dict[str, int], int, str]:
    """Every batch of a capture held in memory, the reader's skips, frame count and format."""
    try:
        reader = open_reader(io.BytesIO(data), "x", batch_packets)
    except Exception as e:  # the same refusal on both paths
        return [], {"raised": 1}, 0, type(e).__name__ + str(e)
    out = list(reader.batches())
    return out, reader.skips, reader.frames, reader.format


def _same_batches(data: bytes, what: str, batch_packets: int = 65_536) -> list[Batch]:
    c = _with_native(ext, _read, data, batch_packets)
    ref = _with_native(None, _read, data, batch_packets)
    assert c[1:] == ref[1:], f"{what}: skips/frames/format differ: {c[1:]} != {ref[1:]}"
    assert len(c[0]) == len(ref[0]), what
    for k, (x, y) in enumerate(zip(c[0], ref[0])):
        assert x.buf == y.buf and x.first_frame == y.first_frame, f"{what} batch {k}"
        for name in ("offsets", "caplens", "wirelens", "ts", "linktypes"):
            _same_array(getattr(x, name), getattr(y, name), f"{what} batch {k} {name}")
    return c[0]


def _same_extract(batch: Batch, what: str, chunk: int = 16_384) -> None:
    offs, caps, _wl, _ts, lts = batch.arrays()
    n = len(batch)
    for start in range(0, max(n, 1), chunk):
        end = min(n, start + chunk)
        c = _with_native(ext, extract, batch.buf, offs, caps, lts, start, end)
        ref = extract_numpy(batch.buf, offs, caps, lts, start, end)
        _same_fields(c, ref, f"{what} frames {start}..{end}")


def _same_everything(data: bytes, what: str) -> None:
    for bp in BATCH_SIZES:
        for batch in _same_batches(data, what, bp):
            _same_extract(batch, what, 997 if bp > 997 else bp)


def _records(data: bytes) -> Iterator[tuple[int, int]]:
    """(record offset, captured length) of a little-endian classic pcap."""
    off = 24
    while off + 16 <= len(data):
        incl = struct.unpack_from("<I", data, off + 8)[0]
        yield off, incl
        off += 16 + incl


def _pcap_fixtures() -> list[Path]:
    return sorted(DATA.glob("*.pcap")) + sorted((ROOT / "captures").glob("*.pcap"))


# -- (a) C vs numpy, stage by stage ---------------------------------------------------------

@needs_ext
@pytest.mark.parametrize("path", sorted(DATA.glob("*.pcap*")) + sorted((ROOT / "captures").glob("*.pcap")),
                         ids=lambda p: p.name)
def test_captures_identical(path: Path) -> None:
    _same_everything(path.read_bytes(), path.name)


@needs_ext
def test_generated_capture_identical(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    p = tmp_path / "gen.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "20000", "-o", str(p),
                    "--seed", "3", "-q"], check=True)
    data = p.read_bytes()
    _same_everything(data, "generated")
    # records straddling chunk boundaries (pending bytes carried into the next chunk)
    monkeypatch.setattr(files, "CHUNK_BYTES", 65_521)
    batches = _same_batches(data, "generated, small chunks", 4096)
    assert sum(len(b) for b in batches) == 20_000


@needs_ext
def test_small_chunks_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    for chunk in (1, 17, 100, 1000):
        monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
        for path in sorted(DATA.glob("*.pcap")):
            _same_batches(path.read_bytes(), f"{path.name} chunk={chunk}", 3)


@needs_ext
def test_every_truncation_identical() -> None:
    for path in sorted(DATA.glob("*.pcap")):
        data = path.read_bytes()
        for cut in range(len(data) + 1):  # (a prefix adds no new frame to extract)
            _same_batches(data[:cut], f"{path.name}[:{cut}]", 3)


@needs_ext
def test_lying_record_lengths_identical() -> None:
    data = (DATA / "en10mb.pcap").read_bytes()
    recs = list(_records(data))
    for off, _incl in recs:
        for value in (0, 1, 13, 16, 1500, MAX_RECORD_LEN - 1, MAX_RECORD_LEN, MAX_RECORD_LEN + 1,
                      0x7FFFFFFF, 0xFFFFFFFF):
            bad = bytearray(data)
            struct.pack_into("<I", bad, off + 8, value)
            for batch in _same_batches(bytes(bad), f"incl={value} at {off}", 2):
                _same_extract(batch, f"incl={value} at {off}")
    skips = _read(bytes(data[:recs[1][0] + 8]) + b"\xff\xff\xff\xff" + bytes(8), 9)[1]
    assert skips == {"corrupt_record_length": 1}


@needs_ext
def test_big_endian_and_nanosecond_identical() -> None:
    """Byte order and resolution variants, with timestamps that need every fraction bit."""
    rnd = random.Random(7)
    for endian, magic in (("<", 0xA1B2C3D4), (">", 0xA1B2C3D4), ("<", 0xA1B23C4D), (">", 0xA1B23C4D)):
        out = bytearray(struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, 65535, 1))
        for _ in range(500):
            frame = bytes(rnd.randrange(256) for _ in range(rnd.randrange(80)))
            sec, frac = rnd.randrange(1 << 32), rnd.randrange(1 << 32)
            out += struct.pack(endian + "IIII", sec, frac, len(frame), rnd.randrange(1 << 32)) + frame
        batches = _same_batches(bytes(out), f"{endian}{magic:x}", 64)
        assert sum(len(b) for b in batches) == 500


@needs_ext
def test_mutated_captures_identical() -> None:
    """Random bytes in link/IP/TCP headers and in record headers of the lab captures."""
    rnd = random.Random(20261129)
    sources = _pcap_fixtures()
    for it in range(60):
        src = rnd.choice(sources)
        data = bytearray(src.read_bytes())
        recs = list(_records(bytes(data)))
        if not recs:
            continue
        for _ in range(rnd.randint(1, 60)):
            o, n = rnd.choice(recs)
            if n:
                data[o + 16 + rnd.randrange(min(n, 80))] = rnd.randrange(256)
        if it % 3 == 0:  # a record header too (lengths and timestamps)
            o, _n = rnd.choice(recs)
            data[o + rnd.randrange(16)] = rnd.randrange(256)
        _same_everything(bytes(data), f"mutation {it} of {src.name}")


@needs_ext
def test_random_bytes_after_header_identical() -> None:
    rnd = random.Random(3)
    for it in range(200):
        head = struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, rnd.choice(LINKTYPES[:10]))
        body = bytearray(rnd.randrange(256) for _ in range(rnd.randrange(400)))
        # mostly small record lengths so that the walk gets somewhere
        for o in range(0, len(body) - 12, rnd.randint(20, 80)):
            struct.pack_into("<I", body, o + 8, rnd.randrange(64))
        _same_everything(head + bytes(body), f"random {it}")


def _header_soup(rnd: random.Random, size: int) -> bytes:
    """Random bytes salted with the values the link/IP/TCP decoders branch on."""
    b = bytearray(rnd.randrange(256) for _ in range(size))
    words = (b"\x08\x00", b"\x86\xdd", b"\x81\x00", b"\x88\xa8", b"\x91\x00", b"\x45", b"\x46",
             b"\x4f", b"\x60", b"\x06", b"\x11", b"\x00\x35", b"\x02\x00\x00\x00",
             b"\x00\x00\x00\x02", b"\x1e\x00\x00\x00", b"\x00\x00\x00\x18", b"\xff\xff\x00\x00",
             b"\x00\x00\x01\x00", b"\x00\x07", b"\x00\x08", b"\x50", b"\xf1", b"\x00\x00")
    for _ in range(size // 3):
        w = rnd.choice(words)
        o = rnd.randrange(max(1, size - len(w)))
        b[o:o + len(w)] = w
    return bytes(b[:size])


@needs_ext
def test_random_frame_tables_identical() -> None:
    """extract() alone on random buffers and frame tables: offsets past the end of the buffer,
    negative and huge captured lengths, every link type (and unknown ones)."""
    rnd = random.Random(11)
    for it in range(300):
        size = rnd.choice((1, 2, 7, 40, 64, 200, 3000))
        buf = _header_soup(rnd, size)
        n = rnd.randrange(1, 300)
        offs = np.array([rnd.choice((0, rnd.randrange(size), size - 1, size, size + rnd.randrange(100),
                                     rnd.randrange(-50, 0))) for _ in range(n)], dtype=np.int64)
        caps = np.array([rnd.choice((0, rnd.randrange(100), rnd.randrange(3000), -rnd.randrange(50),
                                     1 << 33)) for _ in range(n)], dtype=np.int64)
        lts = np.array([rnd.choice(LINKTYPES) for _ in range(n)], dtype=np.int64)
        start = rnd.randrange(n)
        end = rnd.randrange(start, n + 1)
        c = _with_native(ext, extract, buf, offs, caps, lts, start, end)
        _same_fields(c, extract_numpy(buf, offs, caps, lts, start, end), f"table {it}")
        c = _with_native(ext, extract, buf, offs, caps, lts, 0, n)
        ref = extract_numpy(buf, offs, caps, lts, 0, n)
        _same_fields(c, ref, f"table {it} whole")
        if it == 0:
            assert ref.keyable.dtype == np.bool_


def _crafted_frame(rnd: random.Random) -> tuple[int, bytes]:
    """(link type, frame): link, IP and TCP/UDP headers whose fields are drawn from the values
    at the edges of the decoder's checks (lengths, versions, fragment bits, ports, flags)."""
    def pick(*values: int) -> int:
        return rnd.choice(values)

    ver = rnd.choice((4, 4, 4, 6, 6, 6, 5, 0))
    et = pick(0x0800, 0x86DD, 0x0806) if rnd.random() < 0.2 else (0x86DD if ver == 6 else 0x0800)
    lt = rnd.choice(LINKTYPES[:10] + (1, 1, 101))
    if lt == 1:
        tags = b"".join(struct.pack("!HH", pick(0x8100, 0x88A8, 0x9100), 5)
                        for _ in range(pick(0, 0, 1, 2, 3)))
        link = bytes(12) + tags[:2] + (tags[2:] + struct.pack("!H", et) if tags else struct.pack("!H", et))
    elif lt == 113:
        link = bytes(14) + struct.pack("!H", et)
    elif lt == 276:
        link = struct.pack("!H", et) + bytes(18)
    elif lt in (0, 108):
        fam = pick(2, 10, 24, 28, 30, 0xFFFF, 0x10000, 7) if rnd.random() < 0.5 else (2 if ver == 4 else 30)
        link = struct.pack(rnd.choice("<>") + "I", fam)
    else:
        link = b""
    sport, dport = (pick(53, 443, 0, 65535) for _ in range(2))
    body = bytes(rnd.randrange(256) for _ in range(pick(0, 1, 7, 12, 30)))
    proto = pick(6, 6, 17, 17, 1, 0, 44)
    if proto == 6:
        doff = pick(5, 5, 5, 4, 6, 15, 0)
        l4 = struct.pack("!HHIIBBHHH", sport, dport, rnd.randrange(1 << 32), rnd.randrange(1 << 32),
                         (doff << 4) | pick(0, 1), pick(0x10, 0x18, 0x02, 0x12, 0x01, 0x04, 0x00, 0xFF),
                         rnd.randrange(65536), 0, 0)
        l4 += bytes(max(0, doff * 4 - 20) if rnd.random() < 0.8 else 0)
    else:
        l4 = struct.pack("!HHHH", sport, dport, pick(0, 7, 8, 9, 8 + len(body), 1000), 0)
    l4 += body
    if ver == 6 or (ver != 4 and rnd.random() < 0.5):
        plen = pick(len(l4), len(l4), 0, 7, 8, 20, len(l4) + 5, 65535)
        ip = struct.pack("!IHBB", ver << 28, plen, proto, rnd.randrange(256))
        ip += bytes(rnd.randrange(256) for _ in range(32))
    else:
        ihl = pick(5, 5, 5, 4, 6, 15, 0)
        opts = bytes(max(0, ihl * 4 - 20))
        total = pick(0, ihl * 4 - 1, ihl * 4, ihl * 4 + 8, 20 + len(opts) + len(l4), 65535)
        frag = pick(0, 0, 0x4000, 0x2000, 0x0001, 0x2001, 0x1FFF, 0x8000)
        ip = struct.pack("!BBHHHBBH", (ver << 4) | ihl, 0, total & 0xFFFF, rnd.randrange(65536), frag,
                         rnd.randrange(256), proto, 0) + bytes(rnd.randrange(256) for _ in range(8)) + opts
    return lt, link + ip + l4


@needs_ext
def test_crafted_frames_identical() -> None:
    """extract() on frames whose header fields sit on the edges of every check, captured whole
    or cut at each interesting length."""
    rnd = random.Random(17)
    for it in range(60):
        buf, offs, caps, lts = bytearray(), [], [], []
        for _ in range(400):
            lt, frame = _crafted_frame(rnd)
            cut = rnd.choice((len(frame), len(frame), rnd.randrange(len(frame) + 1), len(frame) + 3))
            offs.append(len(buf))
            caps.append(cut)
            lts.append(lt)
            buf += frame + bytes(rnd.randrange(256) for _ in range(rnd.randrange(4)))
        o, c, lt_ = (np.array(x, dtype=np.int64) for x in (offs, caps, lts))
        ref = extract_numpy(bytes(buf), o, c, lt_, 0, len(o))
        _same_fields(_with_native(ext, extract, bytes(buf), o, c, lt_, 0, len(o)), ref, f"crafted {it}")
        if it == 0:  # the generator reaches the fast path's interesting cases
            assert ref.keyable.sum() > 20 and ref.candidate.sum() > 5 and ref.v6.sum() > 5


@needs_ext
def test_absurd_positions_fall_back_to_numpy() -> None:
    buf = _header_soup(random.Random(5), 100)
    offs = np.array([0, 1 << 62, -(1 << 62)], dtype=np.int64)
    caps = np.array([60, 60, 1 << 62], dtype=np.int64)
    lts = np.array([1, 1, 101], dtype=np.int64)
    assert ext.extract(buf, offs, caps, lts) is None
    c = _with_native(ext, extract, buf, offs, caps, lts, 0, 3)
    _same_fields(c, extract_numpy(buf, offs, caps, lts, 0, 3), "absurd")
    with pytest.raises(TypeError):
        ext.extract(buf, offs.astype(np.int32), caps, lts)
    with pytest.raises(ValueError):
        ext.extract(buf, offs, caps[:2], lts)


@needs_ext
def test_batches_contiguous_and_strided_extract() -> None:
    """Both readers give contiguous batch arrays (consumers in C rely on it); extract() still
    takes strided arrays (the C path copies them)."""
    data = (DATA / "vlan.pcap").read_bytes()
    for native in (ext, None):
        for batch in _with_native(native, _read, data, 3)[0]:
            for name in ("offsets", "caplens", "wirelens", "ts", "linktypes"):
                col = getattr(batch, name)  # typed memoryviews (C scan) or numpy arrays
                assert col.c_contiguous if isinstance(col, memoryview) else col.flags.c_contiguous, name
    batch = _same_batches(data, "vlan", 65_536)[0]
    offs, caps, _wl, _ts, lts = batch.arrays()
    n = len(batch)
    wide = np.zeros((n, 3), dtype=np.int64)
    wide[:, 0], wide[:, 1], wide[:, 2] = offs, caps, lts
    assert not wide[:, 1].flags.c_contiguous
    c = _with_native(ext, extract, batch.buf, wide[:, 0], wide[:, 1], wide[:, 2], 0, n)
    _same_fields(c, extract_numpy(batch.buf, offs, caps, lts, 0, n), "strided")


# -- (b) whole documents ----------------------------------------------------------------------

def _cli_doc(path: Path | list[Path], pure: bool) -> tuple[int, dict[str, Any]]:
    """The JSON document of ``analyzer analyze``: everything built and used, or (pure) the
    Python source interpreted without any extension."""
    env = dict(os.environ)
    env.pop(speedups.PURE_PYTHON_ENV, None)
    if pure:
        env[speedups.PURE_PYTHON_ENV] = "1"
    code = ("import sys, analyzer; from analyzer import speedups; from analyzer.cli import main; "
            f"assert (speedups.native is None) == {pure}; "
            f"assert not ({pure} and analyzer.compiled()); "
            "sys.argv = ['analyzer'] + sys.argv[1:]; main()")
    paths = path if isinstance(path, list) else [path]
    r = subprocess.run([sys.executable, "-c", code, "analyze", *map(str, paths), "-f", "json"],
                       capture_output=True, text=True, env=env)
    assert "Traceback" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    doc["stats"].pop("seconds")
    return r.returncode, doc


@needs_ext
def test_whole_document_identical(tmp_path: Path) -> None:
    gen = tmp_path / "gen.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "20000", "-o", str(gen),
                    "--seed", "3", "-q"], check=True)
    for path in (gen, ROOT / "captures" / "rst-injection-whatsapp-sni.pcap", DATA / "en10mb-be.pcap"):
        c = _cli_doc(path, pure=False)
        ref = _cli_doc(path, pure=True)
        assert c == ref, path.name


@pytest.mark.skipif(not analyzer.compiled(), reason="not compiled by mypyc (setup.py)")
def test_compiled_analysis_is_the_source_analysis(tmp_path: Path) -> None:
    # the modules compiled by mypyc against their own source, interpreted: every lab capture
    # (each detector fires on some), a generated mix, and the public captures when present
    gen = tmp_path / "gen.pcap"
    subprocess.run([sys.executable, str(ROOT / "bench" / "gen_capture.py"), "-n", "30000", "-o", str(gen),
                    "--seed", "11", "-q"], check=True)
    paths = sorted((ROOT / "captures").glob("*.pcap")) + [gen]
    if PUBLIC.is_dir():
        paths += sorted(PUBLIC.glob("*.pcap*"))
    compiled = _cli_doc(paths, pure=False)
    assert compiled[1]["verdicts"] and compiled[1]["stats"]["flows"] > 500
    assert compiled == _cli_doc(paths, pure=True)


def _pcapng_corpus() -> list[bytes]:
    """Real pcapng files plus built ones with every block kind, both byte orders, options."""
    from tests.core.test_pcapng_blocks import _frames, epb, idb, pb, shb, spb

    out = [p.read_bytes() for p in sorted(DATA.glob("*.pcapng"))]
    f = _frames()
    out.append(shb("<") + idb("<", 1, tsresol=9) + epb("<", 0, 1_700_000_000_123_456_789, f[0])
               + spb("<", f[1]) + pb("<", 0, 5, f[2]) + shb(">") + idb(">", 101, tsoffset=1000)
               + idb(">", 1, tsresol=0x80 | 20) + epb(">", 1, 7, f[3]) + epb(">", 5, 7, f[0]))
    out.append(shb("<") + spb("<", f[0]) + epb("<", 0, 1, f[1]) + idb("<", 1) + epb("<", 0, 2, f[2]))
    return out


@needs_ext
def test_pcapng_walk_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """The C block walk against the Python one: files, every truncation, mutations, chunk
    sizes that split blocks, batch sizes."""
    import random

    from analyzer.sources import files

    corpus = _pcapng_corpus()
    rnd = random.Random(20261128)
    for k, data in enumerate(corpus):
        for bp in (1, 7, 65_536):
            _same_batches(data, f"pcapng {k} batch {bp}", bp)
        for cut in range(0, min(len(data), 1200) + 1, 3):
            _same_batches(data[:cut], f"pcapng {k} cut {cut}")
        for _ in range(150):
            m = bytearray(data)
            for _j in range(rnd.randint(1, 8)):
                m[rnd.randrange(len(m))] = rnd.choice([0, 0xFF, 1, 2, 3, 6, 0x0A, 0x4D, rnd.randrange(256)])
            _same_batches(bytes(m), f"pcapng {k} mutated")
    for chunk in (13, 100, 4096):
        monkeypatch.setattr(files, "CHUNK_BYTES", chunk)
        for k, data in enumerate(corpus):
            _same_batches(data, f"pcapng {k} chunk {chunk}")
