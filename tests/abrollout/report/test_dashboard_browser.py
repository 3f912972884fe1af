"""The dashboard snapshot in a real browser (headless Chromium): string checks cannot tell whether the page parses,
whether its own Content-Security-Policy blocks its inline CSS, or whether the charts draw anything. The page has no
scripts, so any console message at all (a CSP refusal, an error) is a fault."""

from __future__ import annotations

import struct
import subprocess
import zlib
from pathlib import Path

import pytest

from abrollout.contracts.records import DecisionState
from abrollout.report.colors import STATE_COLORS
from abrollout.report.dashboard import render_dashboard
from tests.abrollout.report.test_dashboard import fourteen_days
from tests.support.system_tools import system_tool

HOW = "apt-get install chromium (Debian), then run pytest tests/abrollout/report/test_dashboard_browser.py"
TIMEOUT_SECONDS = 60
WIDTH, HEIGHT = 1280, 1400
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", f"--window-size={WIDTH},{HEIGHT}")
MIN_COLOURS = 64
"""A blank or unstyled page has a handful of colours; the charts' lines, bands and anti-aliased text give
thousands."""


@pytest.fixture(scope="module")
def chromium() -> str:
    return system_tool("chromium", "chromium", HOW)


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    html = render_dashboard(fourteen_days())
    path = tmp_path_factory.mktemp("dashboard") / "dashboard.html"
    path.write_text(html, encoding="utf-8")
    return path, html


def _open(chromium: str, page: Path, work: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """One headless run on a fresh profile, so no state from an earlier run (or a person's browser) leaks in."""
    done = subprocess.run([chromium, *FLAGS, f"--user-data-dir={work / 'profile'}", *args, page.as_uri()],
                          capture_output=True, text=True, timeout=TIMEOUT_SECONDS, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done


def _page_messages(stderr: str) -> list[str]:
    """What the page said on the console; Chromium's own noise (GPU, D-Bus, sandbox) is not the page's."""
    return [line for line in stderr.splitlines() if ":CONSOLE" in line or "Uncaught" in line]


def _pixels(png: bytes) -> tuple[int, int, set[bytes]]:
    """Width, height and distinct pixel values of an 8-bit, non-interlaced RGB(A) PNG, with the standard library."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    header, idat, position = b"", bytearray(), 8
    while position < len(png):
        length, kind = struct.unpack(">I4s", png[position:position + 8])
        body = png[position + 8:position + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            idat += body
        position += length + 12
    width, height, depth, colour_type, _, _, interlace = struct.unpack(">IIBBBBB", header)
    assert depth == 8 and colour_type in (2, 6) and interlace == 0, (depth, colour_type, interlace)
    step = 3 if colour_type == 2 else 4
    stride = width * step
    raw = zlib.decompress(bytes(idat))
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for y in range(height):
        start = y * (stride + 1)
        row = _unfilter(raw[start], bytearray(raw[start + 1:start + 1 + stride]), previous, step)
        line = bytes(row)
        colours.update(line[x:x + 3] for x in range(0, stride, step))
        previous = row
    return width, height, colours


def _unfilter(kind: int, row: bytearray, up: bytearray, step: int) -> bytearray:
    """Undo one scanline's PNG filter (None, Sub, Up, Average, Paeth)."""
    if kind == 2:
        return bytearray((a + b) & 0xFF for a, b in zip(row, up, strict=True))
    for i in range(len(row) if kind else 0):
        left = row[i - step] if i >= step else 0
        if kind == 1:
            row[i] = (row[i] + left) & 0xFF
        elif kind == 3:
            row[i] = (row[i] + ((left + up[i]) >> 1)) & 0xFF
        else:
            corner = up[i - step] if i >= step else 0
            estimate = left + up[i] - corner
            near_left, near_up, near_corner = abs(estimate - left), abs(estimate - up[i]), abs(estimate - corner)
            if near_left <= near_up and near_left <= near_corner:
                predictor = left
            elif near_up <= near_corner:
                predictor = up[i]
            else:
                predictor = corner
            row[i] = (row[i] + predictor) & 0xFF
    return row


def test_page_parses_with_every_chart(chromium: str, page: tuple[Path, str], tmp_path: Path) -> None:
    path, html = page
    done = _open(chromium, path, tmp_path, "--dump-dom")
    dom = done.stdout
    assert "</html>" in dom and "Receipts</h2>" in dom
    assert dom.count("<svg") == html.count("<svg") > 0
    assert dom.count("</svg>") == html.count("</svg>")
    assert _page_messages(done.stderr) == []


def test_page_draws_a_styled_picture(chromium: str, page: tuple[Path, str], tmp_path: Path) -> None:
    path, _ = page
    shot = tmp_path / "dashboard.png"
    done = _open(chromium, path, tmp_path, f"--screenshot={shot}")
    assert shot.is_file()
    width, height, colours = _pixels(shot.read_bytes())
    assert (width, height) == (WIDTH, HEIGHT)
    assert len(colours) >= MIN_COLOURS
    # the state badge is a solid block of the state's colour: it shows only if the inline CSS was applied
    assert bytes.fromhex(STATE_COLORS[DecisionState.guardrail_stop].lstrip("#")) in colours
    assert _page_messages(done.stderr) == []
