"""The visualizer on a 10,000-transaction tangle, in headless Chromium: how long the server takes to build
and push an update, and how long the browser takes to render it. Prints one JSON object.

    .venv/bin/python benchmarks/visualizer_render.py [--transactions 10000] [--updates 5] [--batch 10]

A synthetic lab-like tangle (real `peer.tangle` classes) is served by the real peer API; `tangle viz` polls
it; the page is opened, then the tangle grows by one round (`--batch` transactions) `--updates` times.
Server times come from the app's own stats (fetch over HTTP, build = parse + lanes + columns, push =
serializing the stream/patch messages); the browser time runs from the first WebSocket message of an
update to the second animation frame after the node source has streamed (the frame is painted by then).
Needs Debian's chromium and the playwright package.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "visualizer"))

from viz_browser import DRAWN_JS, chromium_page, unavailable  # noqa: E402
from viz_helpers import free_port, wait_http  # noqa: E402
from viz_synthetic import LabLikeTangle, SyntheticApi  # noqa: E402

from peer.api.app import BackgroundServer, create_app  # noqa: E402

# records when each WebSocket message arrives, before Bokeh handles it
WS_HOOK = """
window.__ws = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', () => window.__ws.push(performance.now()));
  }
};
"""
# resolves when the node source has streamed and two animation frames (a paint) have passed
ARM_JS = """() => {
  window.__ws = [];
  const nodes = Bokeh.documents[0].get_model_by_name('nodes');
  window.__painted = new Promise(resolve => {
    const once = () => {
      nodes.streaming.disconnect(once);
      const streamed = performance.now();
      requestAnimationFrame(() => requestAnimationFrame(() => resolve([streamed, performance.now()])));
    };
    nodes.streaming.connect(once);
  });
}"""
MEASURE_JS = """async () => {
  const [streamed, painted] = await window.__painted;
  return {first_message: window.__ws[0], streamed, painted};
}"""
STATS_JS = "() => JSON.parse(Bokeh.documents[0].get_model_by_name('stats').text)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="transactions per update (one lab round)")
    parser.add_argument("--backend", choices=["webgl", "canvas", "both"], default="both")
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"visualizer_render: {reason}")

    started = time.perf_counter()
    api = SyntheticApi(LabLikeTangle(peers=args.batch), ["peer-000", "peer-001"])
    api.grow(args.transactions - 1)
    build_tangle_s = time.perf_counter() - started
    api_port = free_port()
    server = BackgroundServer(create_app(api), port=api_port)
    server.start()
    backends = ["webgl", "canvas"] if args.backend == "both" else [args.backend]
    result: dict[str, Any] = {"transactions": args.transactions, "build_tangle_s": round(build_tangle_s, 3)}
    try:
        for backend in backends:
            result[backend] = _run(api, api_port, backend, args)
            args.transactions = len(api.builder.tangle)  # the next run starts from the grown tangle
    finally:
        server.stop()
    print(json.dumps(result, indent=2))


def _run(api: SyntheticApi, api_port: int, backend: str, args: argparse.Namespace) -> dict[str, Any]:
    viz_port = free_port()
    tangle = str(Path(sys.executable).with_name("tangle"))
    with tempfile.TemporaryFile() as log:
        viz = subprocess.Popen(
            [tangle, "viz", "--peers", f"http://127.0.0.1:{api_port}", "--port", str(viz_port),
             "--poll-interval", "0.25", "--webgl", str(backend == "webgl").lower()],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
            return _measure(api, viz_port, args)
        finally:
            viz.terminate()
            viz.wait(timeout=10)


def _measure(api: SyntheticApi, viz_port: int, args: argparse.Namespace) -> dict[str, Any]:
    total = args.transactions
    with chromium_page() as (page, errors):
        page.add_init_script(WS_HOOK)
        opened = time.perf_counter()
        page.goto(f"http://127.0.0.1:{viz_port}/")
        _until(lambda: page.evaluate(DRAWN_JS) == total, 120)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        first_render_s = time.perf_counter() - opened
        initial = page.evaluate(STATS_JS)
        updates = []
        for _ in range(args.updates):
            page.evaluate(ARM_JS)
            api.grow(args.batch)
            total += args.batch
            times = page.evaluate(MEASURE_JS)
            _until(lambda total=total: page.evaluate(STATS_JS)["nodes"] == total, 30)
            stats = page.evaluate(STATS_JS)
            updates.append(
                {
                    "server_fetch_ms": stats["fetch_ms"],
                    "server_build_ms": stats["build_ms"],
                    "server_push_ms": stats["push_ms"],
                    "browser_render_ms": round(times["painted"] - times["first_message"], 2),
                    "browser_apply_ms": round(times["streamed"] - times["first_message"], 2),
                }
            )
            time.sleep(0.3)
        # one more: how the page reacts to a hover-free pan, i.e. redrawing all 10,000 on the GPU path
        redraw_ms = page.evaluate(
            """() => new Promise(resolve => {
                 const plot = Bokeh.documents[0].get_model_by_name('tangle');
                 const t0 = performance.now();
                 plot.x_range.start = plot.x_range.start + 1;
                 requestAnimationFrame(() => requestAnimationFrame(() => resolve(performance.now() - t0)));
               })"""
        )
        webgl = page.evaluate(
            "() => Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('tangle'))"
            ".canvas_view.webgl != null"
        )
    keys = updates[0].keys()
    return {
        "transactions_at_open": args.transactions,
        "update_batch": args.batch,
        "updates": len(updates),
        "initial": {
            "server_fetch_ms": initial["fetch_ms"],
            "server_build_ms": initial["build_ms"],
            "server_push_ms": initial["push_ms"],
            "page_open_to_rendered_s": round(first_render_s, 3),
        },
        "update_median": {k: round(statistics.median(u[k] for u in updates), 2) for k in keys},
        "update_max": {k: round(max(u[k] for u in updates), 2) for k in keys},
        "full_redraw_ms": round(redraw_ms, 2),
        "webgl": webgl,
        "javascript_errors": errors,
    }


def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not catch up")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
