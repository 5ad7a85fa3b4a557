"""The visualizer in a real headless Chromium, against a real `tangle lab` serving its live API.

Needs Debian's chromium and the playwright package; skipped without them only outside CI.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from viz_browser import COLUMN_LENGTHS_JS, DRAWN_JS, NODE_POSITION_JS, chromium_page, unavailable
from viz_helpers import REPO, SteeredApi, free_port, wait_http
from viz_synthetic import LabLikeTangle

from peer.api.app import BackgroundServer, create_app

pytestmark = pytest.mark.browser

ARTIFACTS = REPO / "test-artifacts"
TANGLE = str(Path(sys.executable).with_name("tangle"))
ROUNDS = 14


@pytest.fixture(autouse=True)
def _needs_chromium() -> None:
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)


def _until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_live_page_follows_a_running_lab(processes: Callable[..., Any], tmp_path: Path) -> None:
    api_port, viz_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    lab = processes(
        [TANGLE, "lab", "--peers", "4", "--rounds", str(ROUNDS), "--workers", "1", "--baseline", "none",
         "--api-port", str(api_port), "--round-delay", "1.0", "--linger", "300", "--progress", "false",
         "--out", str(tmp_path / "lab")],
        "lab",
    )  # fmt: skip
    viz = processes([TANGLE, "viz", "--peers", api, "--port", str(viz_port), "--poll-interval", "0.3"], "viz")
    wait_http(f"{api}/healthz", process=lab)
    wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)

    def reported(peer: str) -> int:
        return int(
            httpx.get(f"{api}/api/transactions", params={"peer": peer, "since": 10**9}).json()["count"]
        )

    with chromium_page() as (page, errors):
        page.goto(f"http://127.0.0.1:{viz_port}/")
        page.evaluate("() => { window.notReloaded = true }")
        first = _until(lambda: page.evaluate(DRAWN_JS) > 0 and page.evaluate(DRAWN_JS), 30, "a first drawing")

        # new transactions appear without a reload
        _until(lambda: page.evaluate(DRAWN_JS) > first, 30, "new transactions")
        assert page.evaluate("() => window.notReloaded === true")

        # the peer selector switches the view to another peer's tangle
        page.locator("select").select_option("lab-peer-002")
        header = page.locator(".tangle-header")
        _until(lambda: header.get_attribute("data-peer") == "lab-peer-002", 15, "the header of lab-peer-002")

        # once the lab has finished its rounds, the drawing holds exactly what the peer reports
        _until(lambda: httpx.get(f"{api}/api/peer").json()["round"] == ROUNDS, 120, "the lab's last round")
        expected = reported("lab-peer-002")
        _until(lambda: page.evaluate(DRAWN_JS) == expected, 15, f"{expected} transactions drawn")
        assert int(header.get_attribute("data-count") or -1) == expected

        # hover over the newest transaction shows its id and author
        x, y, name = page.evaluate(NODE_POSITION_JS, expected - 1)
        page.mouse.move(x, y)
        tooltip = page.locator(".bk-tooltip-content").filter(has_text=name)
        tooltip.first.wait_for(state="visible", timeout=10_000)
        assert "author" in tooltip.first.inner_text()

        # a click highlights its past cone (all the way down to genesis)
        x, y, name = page.evaluate(NODE_POSITION_JS, expected // 2)
        page.mouse.click(x, y)
        past = "() => Bokeh.documents[0].get_model_by_name('past_cone').data.y.length"
        _until(lambda: page.evaluate(past) > 1, 10, "the past cone of a click")
        page.mouse.move(5, 5)
        time.sleep(0.5)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "visualizer-live.png"), full_page=True)
        assert errors == []


def test_live_page_stays_consistent_when_the_reference_cone_swings(
    processes: Callable[..., Any],
) -> None:
    """A poll that brings new transactions and moves the reference's past cone over most drawn rows.

    The restyle of all rows and the stream of the new ones go out in the same update; the browser must end
    with columns of one length (else BokehJS throws "Size mismatch" at every paint). A real lab does this
    in its first rounds, so the live test above hit it only when the page opened early, i.e. under load.
    """
    api = SteeredApi(LabLikeTangle(peers=4, seed=3), ["peer-000", "peer-001"])
    api.grow(40)
    genesis = api.transactions("peer-000", 0)["genesis"]
    api.reference = [genesis]  # a cone of one row
    api_port, viz_port = free_port(), free_port()
    server = BackgroundServer(create_app(api), port=api_port)
    server.start()
    try:
        viz = processes(
            [TANGLE, "viz", "--peers", f"http://127.0.0.1:{api_port}", "--port", str(viz_port),
             "--poll-interval", "0.2"],
            "viz",
        )  # fmt: skip
        wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
        with chromium_page() as (page, errors):
            page.goto(f"http://127.0.0.1:{viz_port}/")
            count = len(api.builder.tangle)
            _until(lambda: page.evaluate(DRAWN_JS) == count, 30, f"{count} transactions drawn")
            for swing in range(6):
                # in one answer: a round of new transactions, and a cone of all rows or of the genesis only
                api.grow(4, reference=None if swing % 2 == 0 else [genesis])
                count = len(api.builder.tangle)
                _until(lambda c=count: page.evaluate(DRAWN_JS) == c, 30, f"{count} transactions drawn")
            page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
            lengths = page.evaluate(COLUMN_LENGTHS_JS)
            assert errors == []
            assert lengths == {"nodes": [count], "edges": [len(api.edges())]}
    finally:
        server.stop()


def test_replay_and_report_of_a_lab_run(processes: Callable[..., Any], tmp_path: Path) -> None:
    out = tmp_path / "lab"
    lab = processes(
        [
            TANGLE,
            "lab",
            "--peers",
            "4",
            "--rounds",
            "6",
            "--workers",
            "1",
            "--progress",
            "false",
            "--out",
            str(out),
        ],
        "lab",
    )
    assert lab.wait(timeout=120) == 0
    count = len(json.loads((out / "tangle.json").read_text())["nodes"])
    viz_port = free_port()
    viz = processes([TANGLE, "viz", "--lab", str(out), "--port", str(viz_port)], "viz")
    wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
    with chromium_page() as (page, errors):
        page.goto(f"http://127.0.0.1:{viz_port}/")
        _until(lambda: page.evaluate(DRAWN_JS) == count, 30, f"{count} transactions drawn")
        # the report opens from disk, with no server and no network
        page.goto((out / "report.html").as_uri())
        _until(lambda: page.evaluate(DRAWN_JS) == count, 30, "the report's tangle")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "visualizer-report.png"), full_page=True)
        assert errors == []
