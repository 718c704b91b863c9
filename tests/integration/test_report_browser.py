"""The HTML report as a browser shows it: Debian's headless Chromium renders the page built from
the recorded failing run (against the passing one as baseline); the verdict, the fallback
matrix and every plot must be there, each plot with a non-empty box. A screenshot is kept.

The page itself has no script; the test renders a copy with a probe script appended that
writes what the browser laid out into the DOM, which `chromium --dump-dom` prints.
"""

from __future__ import annotations

import json
import re
import shutil
import struct
import subprocess
from pathlib import Path
from typing import Any

import pytest

from hil.measure import virtio
from hil.results import report

pytestmark = pytest.mark.browser

DATA = Path(__file__).resolve().parents[1] / "data" / "results"

PROBE = """
<script>
window.addEventListener('load', () => {
  const box = r => ({w: r.width, h: r.height});
  const plots = [...document.querySelectorAll('svg[data-plot]')].map(svg => {
    const title = svg.querySelector(':scope > title');
    const bars = [...svg.querySelectorAll('rect.bar')].map(b => box(b.getBBox()));
    return {plot: svg.dataset.plot, title: title ? title.textContent : null,
            rect: box(svg.getBoundingClientRect()), content: box(svg.getBBox()), bars: bars};
  });
  const matrix = [...document.querySelectorAll('table.fallback-matrix tbody tr')].map(
    tr => [...tr.cells].map(td => td.textContent.trim()));
  const out = {verdict: document.getElementById('overall-verdict').textContent,
               boardVerdicts: [...document.querySelectorAll('[data-board-verdict]')].map(
                 e => e.textContent),
               matrix: matrix, plots: plots, height: document.documentElement.scrollHeight};
  const pre = document.createElement('pre');
  pre.id = 'probe';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>
"""


@pytest.fixture(scope="session")
def chromium() -> str:
    from hil.firmware.apt import ensure_host_packages

    if shutil.which("chromium") is None:
        ensure_host_packages({"chromium": None})
    path = shutil.which("chromium")
    assert path, "Debian's chromium did not install"
    return path


def run_chromium(binary: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [binary, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
         "--no-first-run", "--disable-dev-shm-usage", *args],
        capture_output=True, text=True, timeout=120, check=True)


def png_size(path: Path) -> tuple[int, int]:
    head = path.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n"
    w, h = struct.unpack(">II", head[16:24])
    return w, h


def probe(binary: str, page: Path, tmp: Path) -> dict[str, Any]:
    probed = tmp / "probed.html"
    probed.write_text(page.read_text().replace("</body>", PROBE + "</body>"))
    dom = run_chromium(binary, "--virtual-time-budget=5000", "--dump-dom",
                       probed.as_uri()).stdout
    m = re.search(r'<pre id="probe">(.*?)</pre>', dom, re.S)
    assert m, dom[-2000:]
    data: dict[str, Any] = json.loads(m.group(1).replace("&lt;", "<").replace("&gt;", ">")
                                      .replace("&quot;", '"').replace("&amp;", "&"))
    return data


def test_the_report_renders_its_verdict_matrix_and_every_plot(chromium, tmp_path,
                                                              record_property):
    built = report.build(DATA / "fail", DATA / "pass")
    page, _ = report.write(built, tmp_path)
    seen = probe(chromium, page, tmp_path)

    assert seen["verdict"] == "do not ship"
    assert seen["boardVerdicts"] == ["do not ship"]

    assert len(seen["matrix"]) == len(virtio.FALLBACK_MATRIX)
    for row, cell in zip(seen["matrix"], virtio.FALLBACK_MATRIX, strict=True):
        guest, vmm, lines, pairs, expected, mode_seen, status, _ = row
        assert (guest, vmm, int(lines), int(pairs), expected) == (
            cell.guest, cell.vmm, cell.lines, cell.pairs, cell.mode)
        assert status == ("as documented" if mode_seen == expected else "differs")
    assert [r[6] for r in seen["matrix"]].count("differs") == 1

    # Every plot the page has, each laid out with a box, a title and visible bars.
    plots = {p["plot"]: p for p in seen["plots"]}
    assert set(plots) == {"affinity", "affinity-multiqueue", "throughput", "irqfd"}
    for p in seen["plots"]:
        assert p["title"], p
        assert p["rect"]["w"] > 100 and p["rect"]["h"] > 100, p
        assert p["content"]["w"] > 0 and p["content"]["h"] > 0, p
        assert p["bars"] and all(b["w"] > 0 and b["h"] > 0 for b in p["bars"]), p
    assert len(plots["throughput"]["bars"]) == len(built.boards[0].samples)

    shot = tmp_path / "report.png"
    height = min(int(seen["height"]) + 20, 16000)
    run_chromium(chromium, f"--window-size=1280,{height}", f"--screenshot={shot}", page.as_uri())
    assert png_size(shot) == (1280, height)
    assert shot.stat().st_size > 50_000  # a page of text, tables and plots, not a blank one
    record_property("screenshot", str(shot))
    print(f"screenshot: {shot}")
