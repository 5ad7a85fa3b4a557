"""The visualizer in headless Chromium: a 10,000-transaction tangle, runs compared, a hostile author string,
and bad input (each one line on the page or the command line, no traceback, no HTTP 500).

Needs Debian's chromium and the playwright package; skipped without them only outside CI.
"""

from __future__ import annotations

import html
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from viz_browser import (
    FRAME_JS,
    HEADER_COUNT_JS,
    chromium_page,
    colour_pixels,
    model_text,
    until,
    visible_tooltips,
)
from viz_helpers import REPO, free_port, wait_http, write_lab_folder
from viz_synthetic import LabLikeTangle, SyntheticApi

from peer.api.app import BackgroundServer, create_app
from visualizer.style import REFERENCE_COLOR

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]

ARTIFACTS = REPO / "test-artifacts"
TANGLE = str(Path(sys.executable).with_name("tangle"))
HOSTILE = '<img src=x onerror="window.__xss=1">'
ESCAPED = html.escape(HOSTILE, quote=True)
LOCAL = ("file:", "data:", "blob:")
SOURCE_LENGTH_JS = """(name) => {
  const data = Bokeh.documents[0].get_model_by_name(name).data;
  return data[Object.keys(data)[0]].length;
}"""


# the screen position of a row of the nodes source (a marker) or of the bands source (a band's centre)
CENTRE_JS = """([name, i]) => {
  const doc = Bokeh.documents[0];
  const view = Bokeh.index.find_one(doc.get_model_by_name('tangle'));
  const d = doc.get_model_by_name(name).data;
  const band = name === 'bands';
  const x = band ? (d.ll[i] + d.rl[i]) / 2 : d.xl[i];
  const y = band ? (d.bottom[i] + d.top[i]) / 2 : d.y[i];
  const box = view.canvas_view.el.getBoundingClientRect();
  return [box.left + view.frame.x_scale.compute(x), box.top + view.frame.y_scale.compute(y)];
}"""


def _frame_png(page: Any) -> bytes:
    left, top, width, height = page.evaluate(FRAME_JS)
    return page.screenshot(clip={"x": left, "y": top, "width": width, "height": height})


def _author_colours(page: Any) -> dict[str, str]:
    return page.evaluate(
        """() => { const d = Bokeh.documents[0].get_model_by_name('nodes').data; const out = {};
                   d.author.forEach((a, i) => { if (a !== 'genesis') out[a] = d.color[i]; }); return out; }"""
    )


def test_ten_thousand_transactions_are_readable(processes: Callable[..., Any]) -> None:
    api = SyntheticApi(LabLikeTangle(peers=10, seed=4), ["peer-000"])
    api.grow(9_999)
    api_port, viz_port = free_port(), free_port()
    server = BackgroundServer(create_app(api), port=api_port)
    server.start()
    try:
        viz = processes(
            [TANGLE, "viz", "--peers", f"http://127.0.0.1:{api_port}", "--port", str(viz_port),
             "--poll-interval", "0.3"],
            "viz",
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
        with chromium_page((1280, 720)) as (page, errors):
            page.goto(f"http://127.0.0.1:{viz_port}/")
            until(lambda: page.evaluate(HEADER_COUNT_JS) == 10_000, 120, "10,000 transactions")
            ARTIFACTS.mkdir(exist_ok=True)
            authors = _author_colours(page)
            assert len(authors) == 10

            # the live view follows the newest rounds: every author's colour at full strength
            follow = _frame_png(page)
            counts = colour_pixels(follow, authors)
            assert sum(1 for c in counts.values() if c >= 30) >= 9, counts

            # the overview: older rounds are bands, stacked by author; no gold cone drowns them
            page.get_by_role("button", name="show all").click()
            until(lambda: page.evaluate("() => !Bokeh.documents[0].get_model_by_name('follow').active"), 10,
                   "follow paused")  # fmt: skip
            assert page.evaluate(SOURCE_LENGTH_JS, "bands") > 100
            time.sleep(1.0)  # the range change is painted in the next frames
            overview = _frame_png(page)
            (ARTIFACTS / "visualizer-10k-overview.png").write_bytes(overview)
            banded = colour_pixels(overview, authors, alpha=0.55)
            assert sum(1 for c in banded.values() if c >= 200) >= 9, banded
            gold = colour_pixels(overview, {"gold": REFERENCE_COLOR})["gold"]
            assert gold < 0.01 * len(overview) / 3  # far below 1% of the area (bytes / 3 > pixels)
            page.screenshot(path=str(ARTIFACTS / "visualizer-10k.png"))

            # hover shows one transaction, in the dense newest part and on a band
            drawn = page.evaluate(SOURCE_LENGTH_JS, "nodes")
            bands = page.evaluate(SOURCE_LENGTH_JS, "bands")
            for source, row in (("nodes", drawn - 5), ("nodes", drawn // 2), ("bands", bands // 2)):
                x, y = page.evaluate(CENTRE_JS, [source, row])
                page.mouse.move(x, y)
                shown = until(lambda: visible_tooltips(page), 5, f"a tooltip over {source} row {row}")
                assert len(shown) == 1, shown
                assert shown[0].count("id:") + shown[0].count("band:") == 1, shown
                page.mouse.move(2, 2)
                until(lambda: not visible_tooltips(page), 5, "the tooltip gone")

            # jump to an old transaction by id: it is drawn (the banded part expands) and described
            old = api.transactions(None, 0).nodes[500]
            page.get_by_placeholder("jump to transaction id").fill(old.name[-12:])
            page.keyboard.press("Enter")
            until(
                lambda: old.name in model_text(page, "selection"),
                10,
                "the jumped-to transaction described",
            )
            assert page.evaluate(SOURCE_LENGTH_JS, "expanded_nodes") > 0
            x_range = page.evaluate(
                "() => { const r = Bokeh.documents[0].get_model_by_name('tangle').x_range;"
                " return [r.start, r.end] }"
            )
            assert x_range[0] < old.height < x_range[1]

            # following again: ten more transactions arrive and the view moves to them
            page.get_by_role("button", name="follow newest").click()
            api.grow(10)
            until(lambda: page.evaluate(HEADER_COUNT_JS) == 10_010, 30, "10 more transactions")
            depth = api.transactions(None, 10**9).depth
            until(
                lambda: (
                    page.evaluate("() => Bokeh.documents[0].get_model_by_name('tangle').x_range.end") >= depth
                ),
                10,
                "the view following the newest",
            )
            assert errors == []
    finally:
        server.stop()


def _lab_folder(folder: Path, *, poison: str = "none", author: str | None = None) -> Path:
    write_lab_folder(folder)
    summary = json.loads((folder / "summary.json").read_text())
    attack = poison != "none"
    summary["config"] |= {
        "poison": poison,
        "malicious_fraction": 0.2 if attack else 0.0,
        "poison_from": 4 if attack else 0,
        "model": "mlp",
        "tip_selector": "weighted",
    }
    (folder / "summary.json").write_text(json.dumps(summary))
    if author is not None:
        tangle = json.loads((folder / "tangle.json").read_text())
        for node in tangle["nodes"][1:6]:
            node["peer"] = author
        (folder / "tangle.json").write_text(json.dumps(tangle))
    return folder


def test_runs_compared_live_and_as_one_file(processes: Callable[..., Any], tmp_path: Path) -> None:
    clean = _lab_folder(tmp_path / "clean")
    attacked = _lab_folder(tmp_path / "labelflip", poison="labelflip")
    viz_port = free_port()
    viz = processes(
        [TANGLE, "viz", "--lab", str(clean), "--lab", str(attacked), "--port", str(viz_port)], "viz"
    )
    wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
    out = tmp_path / "compare.html"
    done = subprocess.run(
        [TANGLE, "report", str(clean), str(attacked), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    with chromium_page((1280, 900)) as (page, errors):
        requests: list[str] = []
        for url in (f"http://127.0.0.1:{viz_port}/", out.as_uri()):
            page.goto(url)
            tables = page.locator(".compare-diff")
            tables.first.wait_for(timeout=30_000)
            diff = tables.first.inner_text()
            assert "poison" in diff
            assert "labelflip" in diff
            assert "clean" in diff
            final = page.locator(".compare-final").first.inner_text()
            assert final.count("\n") >= 2  # a header and a row per run
            lines = page.evaluate(
                "() => Bokeh.documents[0].get_model_by_name('compare_accuracy').renderers.length"
            )
            assert lines == 4  # tangle and FedAvg of each run
            if url.startswith("file:"):
                page.on("request", lambda r: None if r.url.startswith(LOCAL) else requests.append(r.url))
                page.reload()
                page.locator(".compare-diff").first.wait_for(timeout=30_000)
                ARTIFACTS.mkdir(exist_ok=True)
                page.screenshot(path=str(ARTIFACTS / "visualizer-compare.png"), full_page=True)
        assert requests == []
        assert errors == []


def test_a_hostile_author_string_is_shown_as_text(processes: Callable[..., Any], tmp_path: Path) -> None:
    folder = _lab_folder(tmp_path / "lab", author=HOSTILE)
    viz_port = free_port()
    viz = processes([TANGLE, "viz", "--lab", str(folder), "--port", str(viz_port)], "viz")
    wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
    report = tmp_path / "report.html"
    subprocess.run([TANGLE, "report", str(folder), "-o", str(report)], check=True, capture_output=True)
    hostile_id = json.loads((folder / "tangle.json").read_text())["nodes"][3]["name"]
    with chromium_page() as (page, errors):
        for url in (f"http://127.0.0.1:{viz_port}/", report.as_uri()):
            page.goto(url)
            until(lambda: page.evaluate(HEADER_COUNT_JS) > 0, 30, "the tangle")
            # hover every transaction of the hostile author: the tooltip shows the string as text
            for row in range(1, 6):
                x, y = page.evaluate(CENTRE_JS, ["nodes", row])
                page.mouse.move(x, y)
                time.sleep(0.2)
            assert any(HOSTILE in text for text in visible_tooltips(page)) or url.startswith("file:")
            if url.startswith("http"):
                page.get_by_placeholder("jump to transaction id").fill(hostile_id)
                page.keyboard.press("Enter")
                until(
                    lambda: ESCAPED in model_text(page, "selection"), 10, "the author escaped in the caption"
                )
                assert page.get_by_text(HOSTILE).count() >= 1  # shown as text on the page
            assert page.evaluate("() => window.__xss === undefined")
            assert page.locator('img[src="x"]').count() == 0
    assert errors == []


def test_bad_input_is_one_line(processes: Callable[..., Any], tmp_path: Path) -> None:
    def viz_fails(*args: str) -> str:
        done = subprocess.run([TANGLE, "viz", *args], capture_output=True, text=True, timeout=60)
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        assert len(done.stderr.strip().splitlines()) <= 2, done.stderr  # "invalid configuration" + the line
        return done.stderr

    truncated = write_lab_folder(tmp_path / "truncated")
    text = (truncated / "tangle.json").read_text()
    (truncated / "tangle.json").write_text(text[: len(text) // 2])
    assert "not valid JSON" in viz_fails("--lab", str(truncated))
    shaped = write_lab_folder(tmp_path / "shaped")
    (shaped / "tangle.json").write_text(json.dumps({"genesis": "g", "count": 2, "nodes": [1, 2]}))
    assert "nodes.0" in viz_fails("--lab", str(shaped))
    assert viz_fails("--lab", str(tmp_path / "nowhere")).startswith("tangle: invalid configuration\n--lab:")
    done = subprocess.run(
        [TANGLE, "report", str(truncated), "-o", str(tmp_path / "r.html")], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1
    assert "Traceback" not in done.stderr

    # a parent the tangle lacks: drawn without that edge, and said on the page
    missing = write_lab_folder(tmp_path / "missing")
    tangle = json.loads((missing / "tangle.json").read_text())
    tangle["nodes"][7]["parents"].append("bafy-not-here")
    (missing / "tangle.json").write_text(json.dumps(tangle))
    lab_port, dead_port, viz_port = free_port(), free_port(), free_port()
    lab = processes([TANGLE, "viz", "--lab", str(missing), "--port", str(lab_port)], "viz-lab")
    dead = processes(
        [
            TANGLE,
            "viz",
            "--peers",
            f"http://127.0.0.1:{dead_port}",
            "--port",
            str(viz_port),
            "--timeout",
            "2",
        ],
        "viz-dead",
    )
    wait_http(f"http://127.0.0.1:{lab_port}/", process=lab)
    wait_http(f"http://127.0.0.1:{viz_port}/", process=dead)
    with chromium_page() as (page, errors):
        response = page.goto(f"http://127.0.0.1:{lab_port}/")
        assert response is not None
        assert response.status == 200
        until(lambda: 'data-missing="1"' in model_text(page, "header"), 30, "the missing parent counted")
        assert "1 parents missing" in model_text(page, "header")
        # an unreachable peer: the page says so instead of "loading…" forever
        page.goto(f"http://127.0.0.1:{viz_port}/")
        until(lambda: "no answer" in model_text(page, "header"), 30, "no answer")
        assert f"127.0.0.1:{dead_port}" in model_text(page, "status")
        assert errors == []
