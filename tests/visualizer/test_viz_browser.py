"""The visualizer in a real headless Chromium, against a real `tangle lab` serving its live API.

Needs Debian's chromium and the playwright package; skipped without them only outside CI.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from viz_browser import (
    COLUMN_LENGTHS_JS,
    DRAWN_JS,
    NODE_POSITION_JS,
    chromium_page,
    model_text,
    until,
)
from viz_helpers import REPO, SteeredApi, free_port, wait_http
from viz_synthetic import LabLikeTangle

from peer.api.app import BackgroundServer, create_app

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("needs_chromium")]

ARTIFACTS = REPO / "test-artifacts"
TANGLE = str(Path(sys.executable).with_name("tangle"))
ROUNDS = 24


def test_live_page_follows_a_running_lab(processes: Callable[..., Any], tmp_path: Path) -> None:
    api_port, viz_port = free_port(), free_port()
    api = f"http://127.0.0.1:{api_port}"
    lab = processes(
        [TANGLE, "lab", "--peers", "4", "--rounds", str(ROUNDS), "--workers", "1", "--baseline", "none",
         "--poison", "labelflip", "--malicious-fraction", "0.25", "--poison-from", "3",
         "--api-port", str(api_port), "--round-delay", "1.0", "--linger", "300", "--progress", "false",
         "--out", str(tmp_path / "lab")],
        "lab",
    )  # fmt: skip
    viz = processes([TANGLE, "viz", "--peers", api, "--port", str(viz_port), "--poll-interval", "0.3"], "viz")
    wait_http(f"{api}/healthz", process=lab, timeout=180)  # generous: the test machine is shared
    wait_http(f"http://127.0.0.1:{viz_port}/", process=viz, timeout=180)

    def reported(peer: str) -> int:
        return int(
            httpx.get(f"{api}/api/transactions", params={"peer": peer, "since": 10**9}).json()["count"]
        )

    def lab_round() -> int:
        return int(httpx.get(f"{api}/api/peer").json()["round"])

    def history_rounds() -> list[float]:
        return list(page.evaluate("() => Bokeh.documents[0].get_model_by_name('history').data.round"))

    until(lambda: lab_round() >= 3, 60, "three rounds before the page opens")
    with chromium_page((1280, 720)) as (page, errors):
        page.goto(f"http://127.0.0.1:{viz_port}/")
        page.evaluate("() => { window.notReloaded = true }")
        first = until(lambda: page.evaluate(DRAWN_JS) > 0 and page.evaluate(DRAWN_JS), 30, "a first drawing")
        # new transactions appear without a reload
        until(lambda: page.evaluate(DRAWN_JS) > first, 30, f"new transactions (lab at round {lab_round()})")
        assert page.evaluate("() => window.notReloaded === true")

        # the run view holds the history from round 1, fetched when the page opened, by lab round
        until(lambda: history_rounds()[:3] == [1, 2, 3], 30, "the history before the page opened")
        run_header = model_text(page, "run_header")
        for shown in ("labelflip", "attack from round", "3 read as 8", "tip selector", "partition", "mlp"):
            assert shown in run_header, shown
        assert "FedAvg" not in run_header  # no baseline ran: no FedAvg column
        strips = page.evaluate(
            """() => { const m = n => Bokeh.documents[0].get_model_by_name(n);
                 return [m('strip_misread').visible, m('attack_start').visible, m('attack_start').location,
                         m('fedavg_accuracy_line').visible]; }"""
        )
        assert strips == [True, True, 3, False]  # 3-as-8 strip, the attack marker, no FedAvg legend line

        # a click: its cones, a caption in view on a 1280x720 screen, and a future cone that grows
        page.get_by_role("button", name="follow newest").click()  # hold the view still for the click
        # a transaction three rounds old: every new round approves it, directly or not
        x, y, name = page.evaluate(NODE_POSITION_JS, page.evaluate(DRAWN_JS) - 12)
        page.mouse.click(x, y)
        future = "() => Bokeh.documents[0].get_model_by_name('future_cone').data.y.length"
        until(lambda: name in model_text(page, "selection"), 10, "the caption of the click")
        caption = page.locator(".selection-caption").bounding_box()
        assert caption is not None
        assert caption["y"] + caption["height"] <= 720
        grown_from = page.evaluate(future)
        until(lambda: page.evaluate(future) > grown_from, 30, "the clicked cone growing with new rounds")

        # colour by accuracy with a transaction selected: every glyph of the nodes switches
        page.get_by_role("button", name="accuracy", exact=True).click()
        fields = (
            "() => { const r = Bokeh.documents[0].get_model_by_name('tangle').renderers.find("
            "x => x.data_source.name === 'nodes'); return [r.glyph, r.selection_glyph, r.nonselection_glyph]"
            ".map(g => g.fill_color.field) }"
        )
        until(lambda: page.evaluate(fields) == ["accuracy"] * 3, 10, "accuracy colours with a selection")
        page.get_by_role("button", name="author", exact=True).click()

        # the peer selector switches the view to another peer's tangle; the run history stays
        before = len(history_rounds())
        page.locator("select").select_option("lab-peer-002")
        until(lambda: 'data-peer="lab-peer-002"' in model_text(page, "header"), 15, "lab-peer-002")
        assert len(history_rounds()) >= before

        # once the lab has finished its rounds, the drawing holds exactly what the peer reports
        until(lambda: lab_round() == ROUNDS, 120, "the lab's last round")
        expected = reported("lab-peer-002")
        until(lambda: page.evaluate(DRAWN_JS) == expected, 15, f"{expected} transactions drawn")
        assert f'data-count="{expected}"' in model_text(page, "header")
        until(lambda: len(history_rounds()) == ROUNDS, 15, "every round in the run view")

        # hover over the newest transaction shows its id and author (in view: following it again)
        page.get_by_role("button", name="follow newest").click()
        page.evaluate("() => new Promise(r => setTimeout(() => requestAnimationFrame(r), 500))")
        x, y, name = page.evaluate(NODE_POSITION_JS, expected - 1)
        page.mouse.move(x, y)
        if (
            y > 700
        ):  # below a 1280x720 window (the lanes grow with the run's width): scroll to it, as a person would
            page.evaluate(f"() => window.scrollBy(0, {y - 360})")
            x, y, name = page.evaluate(NODE_POSITION_JS, expected - 1)
        page.mouse.move(x, y)
        tooltip = page.locator(".bk-tooltip-content").filter(has_text=name)
        tooltip.first.wait_for(state="visible", timeout=10_000)
        assert "author" in tooltip.first.inner_text()
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
    genesis = api.transactions("peer-000", 0).genesis
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
            until(lambda: page.evaluate(DRAWN_JS) == count, 30, f"{count} transactions drawn")
            for swing in range(6):
                # in one answer: a round of new transactions, and a cone of all rows or of the genesis only
                api.grow(4, reference=None if swing % 2 == 0 else [genesis])
                count = len(api.builder.tangle)
                until(lambda c=count: page.evaluate(DRAWN_JS) == c, 30, f"{count} transactions drawn")
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
            "--poison",
            "random",
            "--malicious-fraction",
            "0.25",
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
        until(lambda: page.evaluate(DRAWN_JS) == count, 30, f"{count} transactions drawn")
        assert "mean reference accuracy of the honest peers" in model_text(page, "header")
        # the report opens from disk, with no server and no network
        page.goto((out / "report.html").as_uri())
        until(lambda: page.evaluate(DRAWN_JS) == count, 30, "the report's tangle")
        legend = page.evaluate(
            "() => { const p = Bokeh.documents[0].get_model_by_name('tangle');"
            " return [...p.right, ...p.center].find(m => m.items != null).items.map(i => i.label.value) }"
        )
        assert "past cone of click" not in legend  # a report has no server to answer a click
        header = model_text(page, "header")
        assert "mean reference accuracy of the honest peers" in header
        assert "this peer's" not in header
        title = (out / "report.html").read_text().split("</title>")[0]
        assert "attack random" in title  # the title names the attack settings
        assert "malicious fraction 0.25" in title
        assert "accuracy alpha" not in title  # only the settings that apply
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "visualizer-report.png"), full_page=True)
        assert errors == []
