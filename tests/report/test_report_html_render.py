"""The HTML report rendered by a real browser (headless Debian chromium; skipped if absent).

Set ``REPORT_SCREENSHOT=/some/path.png`` to keep the screenshot for a look.
"""
from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from analyzer.report.html import render_html

GOLDEN = Path(__file__).with_name("golden")
CHROMIUM = shutil.which("chromium")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def screenshot(html_path: Path, png_path: Path, profile: Path) -> None:
    assert CHROMIUM is not None
    subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={profile}", f"--screenshot={png_path}",
         "--window-size=1280,2000", html_path.as_uri()],
        capture_output=True, timeout=180, check=False)


def png_rows(path: Path, limit: int) -> tuple[int, int, list[bytes]]:
    """Width, bytes per pixel and the first ``limit`` unfiltered rows of an 8-bit PNG."""
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    pos, idat = 8, b""
    width = height = bpp = 0
    while pos < len(data):
        length, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
            assert depth == 8 and colour in (2, 6)
            bpp = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
    raw = zlib.decompressobj().decompress(idat, (width * bpp + 1) * limit)
    stride = width * bpp
    rows, prev = [], bytearray(stride)
    for y in range(min(limit, height, len(raw) // (stride + 1))):
        kind = raw[y * (stride + 1)]
        line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for x in range(stride):
            a = line[x - bpp] if x >= bpp else 0
            b = prev[x]
            c = prev[x - bpp] if x >= bpp else 0
            if kind == 1:
                line[x] = (line[x] + a) & 0xFF
            elif kind == 2:
                line[x] = (line[x] + b) & 0xFF
            elif kind == 3:
                line[x] = (line[x] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[x] = (line[x] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        rows.append(bytes(line))
        prev = line
    return width, bpp, rows


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed")
@pytest.mark.slow
def test_chromium_renders_the_report(tmp_path: Path) -> None:
    doc = json.loads((GOLDEN / "input.json").read_text(encoding="utf-8"))
    page = tmp_path / "report.html"
    page.write_text(render_html(doc), encoding="utf-8")
    png = tmp_path / "report.png"
    screenshot(page, png, tmp_path / "profile")
    assert png.exists(), "chromium wrote no screenshot"
    assert png.stat().st_size > 50_000  # a flat page compresses to a few kilobytes
    if os.environ.get("REPORT_SCREENSHOT"):
        shutil.copyfile(png, os.environ["REPORT_SCREENSHOT"])

    width, bpp, rows = png_rows(png, 420)  # the header band and the top of the page
    assert width == 1280
    colours = {row[x:x + 3] for row in rows[::7] for x in range(0, width * bpp, bpp * 5)}
    assert len(colours) > 20, "the screenshot looks like a flat colour"
    header, body = rows[40][:3], rows[300][:3]
    assert sum(header) < sum(body) - 200  # dark header band over a light page
