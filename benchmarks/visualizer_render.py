"""The visualizer on a 10,000-transaction tangle in headless Chromium, today's implementation against the one
before the level-of-detail view (the `visualizer/` package of commit OLD_COMMIT, checked out from git into a
temporary folder and served the same way), in the same run. Prints one JSON object.

    .venv/bin/python benchmarks/visualizer_render.py [--transactions 10000] [--updates 5] [--batch 10]

For each implementation, on identical synthetic lab-like tangles (real `peer.tangle` classes, served by the
real peer API):
- first render: page opened to all transactions drawn and two animation frames later;
- update: the tangle grows by one round (`--batch` transactions); from the first WebSocket message of the
  update to the second animation frame after the node source streamed (the frame is painted by then);
- zoom: a mouse-wheel zoom in the middle of the whole-tangle view, to the second animation frame after it
  (and, for the new view, until the banded transactions it shows are drawn);
- blocked: while the tangle grows by `--batch` transactions a second for `--grow-seconds`, the share of
  that time the page's main thread spent in long tasks (>= 50 ms, the browser's Long Tasks API), and beside
  it the share spent in any task (Chrome's `TaskDuration` from the DevTools protocol's Performance.getMetrics)
  and the number of paints of the tangle figure.
Each implementation draws with its own default backend (`--webgl default`: the old one WebGL, the new one a
2D canvas), or both with the one `--webgl true|false` names.
Targets (issue 15): an update paints in at most half the old time; blocked at most 20%.

Two cores shared with other work starve the browser: run it at a higher priority, which the browser and both
servers inherit, and read the load average it prints, e.g. `nice -n -10 .venv/bin/python benchmarks/...`.
Needs Debian's chromium and the playwright package, and git (for the old implementation).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from io import BytesIO
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "visualizer"))

from viz_browser import FRAME_JS, chromium_page, unavailable  # noqa: E402
from viz_helpers import free_port, wait_http  # noqa: E402
from viz_synthetic import LabLikeTangle, SyntheticApi  # noqa: E402

from peer.api.app import BackgroundServer, create_app  # noqa: E402

# the visualizer before issue 15 (every transaction drawn, the reference cone as thick outlines)
OLD_COMMIT = "0a776fae4233c83fa765f88108d6674edaa6f28f"
# the backend each draws with by default: the old view WebGL, the new one a 2D canvas
DEFAULT_WEBGL = {"old": "true", "new": "false"}

# records when each WebSocket message arrives (before Bokeh handles it) and every long task
INIT_JS = """
window.__ws = [];
window.__long = [];
const Native = window.WebSocket;
window.WebSocket = class extends Native {
  constructor(...args) {
    super(...args);
    this.addEventListener('message', () => window.__ws.push(performance.now()));
  }
};
new PerformanceObserver(list => list.getEntries().forEach(e => window.__long.push([e.startTime, e.duration])))
  .observe({type: 'longtask', buffered: true});
"""
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
# arms a wheel listener: resolves two frames after the wheel event, and (new view) after the expansion
ZOOM_ARM_JS = """() => {
  const doc = Bokeh.documents[0];
  const expanded = doc.get_model_by_name('expanded_nodes');
  const frames = () => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)));
  window.__zoom = new Promise(resolve => {
    document.addEventListener('wheel', async () => {
      const start = performance.now();
      await frames();
      const painted = performance.now() - start;
      if (expanded == null) { resolve({painted, expanded: null}); return; }
      const until = Date.now() + 20000;
      while (expanded.data.name.length === 0 && Date.now() < until) await new Promise(r => setTimeout(r, 5));
      await frames();
      resolve({painted, expanded: performance.now() - start, expanded_rows: expanded.data.name.length});
    }, {once: true, capture: true});
  });
}"""
# counts the paints of the tangle figure (BokehJS coalesces requests into at most one a frame)
COUNT_PAINTS_JS = """() => {
  window.__paints = 0;
  const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('tangle'));
  const paint = view.paint.bind(view);
  view.paint = (...args) => { window.__paints += 1; return paint(...args); };
}"""
STATS_JS = "() => JSON.parse(Bokeh.documents[0].get_model_by_name('stats').text)"
DRAWN_ALL_JS = """(total) => {
  if (!Bokeh.documents.length) return false;
  const header = Bokeh.documents[0].get_model_by_name('header');
  const found = header ? header.text.match(/data-count="([0-9]+)"/) : null;
  return found != null && Number(found[1]) === total;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transactions", type=int, default=10_000)
    parser.add_argument("--updates", type=int, default=5)
    parser.add_argument("--batch", type=int, default=10, help="transactions per update (one lab round)")
    parser.add_argument("--grow-seconds", type=float, default=20.0)
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also take a CPU profile of the page while it grows and print the functions that took longest "
        "(slows the page: its growth numbers are then not comparable)",
    )
    parser.add_argument(
        "--webgl", choices=["default", "true", "false"], default="default", help="the backend of both views"
    )
    args = parser.parse_args()
    reason = unavailable()
    if reason:
        raise SystemExit(f"visualizer_render: {reason}")
    result: dict[str, Any] = {
        "transactions": args.transactions,
        "niceness": os.nice(0),
        "load_average_at_start": os.getloadavg(),
    }
    with tempfile.TemporaryDirectory(prefix="viz-old-") as old:
        _checkout_old(Path(old))
        for name, code in (("old", Path(old)), ("new", REPO)):
            webgl = args.webgl if args.webgl != "default" else DEFAULT_WEBGL[name]
            result[name] = {"webgl": webgl == "true", **_run(name, code, webgl, args)}
    old_update = result["old"]["update_median"]["browser_render_ms"]
    new_update = result["new"]["update_median"]["browser_render_ms"]
    result["ratios_new_over_old"] = {
        "first_render": round(result["new"]["first_render_s"] / result["old"]["first_render_s"], 3),
        "update_render": round(new_update / old_update, 3),
        "zoom_painted": round(result["new"]["zoom"]["painted"] / result["old"]["zoom"]["painted"], 3),
    }
    result["targets"] = {
        "update_at_most_half_the_old_time": new_update <= 0.5 * old_update,
        "blocked_at_most_20_percent": result["new"]["growing"]["blocked_share"] <= 0.2,
    }
    result["load_average_at_end"] = os.getloadavg()
    print(json.dumps(result, indent=2))


def _checkout_old(folder: Path) -> None:
    """The old `visualizer/` package from git, without touching the working tree."""
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", "--format=tar", OLD_COMMIT, "visualizer"],
        check=True,
        capture_output=True,
    ).stdout
    with tarfile.open(fileobj=BytesIO(archive)) as tar:
        tar.extractall(folder, filter="data")


def _serve(code: Path, api_port: int, viz_port: int, webgl: str, log: Any) -> subprocess.Popen[bytes]:
    """`tangle viz --peers ...` of the given implementation (its package folder first on the path)."""
    script = (
        "import sys; sys.path.insert(0, sys.argv[1]); import visualizer; "
        "assert visualizer.__file__.startswith(sys.argv[1]), visualizer.__file__; "
        "from visualizer.config import VizSettings; from visualizer.server import serve; "
        "serve(VizSettings(peers=[sys.argv[2]], port=int(sys.argv[3]), poll_interval=0.25, "
        "webgl=sys.argv[4] == 'true'))"
    )
    return subprocess.Popen(
        [sys.executable, "-c", script, str(code), f"http://127.0.0.1:{api_port}", str(viz_port), webgl],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tempfile.gettempdir(),  # not the repository: its visualizer/ would shadow the old one
    )


def _run(name: str, code: Path, webgl: str, args: argparse.Namespace) -> dict[str, Any]:
    api = SyntheticApi(LabLikeTangle(peers=args.batch, seed=11), ["peer-000"])
    api.grow(args.transactions - 1)
    api_port, viz_port = free_port(), free_port()
    server = BackgroundServer(create_app(api), port=api_port)
    server.start()
    try:
        with tempfile.TemporaryFile() as log:
            viz = _serve(code, api_port, viz_port, webgl, log)
            try:
                wait_http(f"http://127.0.0.1:{viz_port}/", process=viz)
                return _measure(name, api, viz_port, args)
            except Exception:
                log.seek(0)
                sys.stderr.write(log.read().decode(errors="replace")[-3000:])
                raise
            finally:
                viz.terminate()
                viz.wait(timeout=20)
    finally:
        server.stop()


def _measure(name: str, api: SyntheticApi, viz_port: int, args: argparse.Namespace) -> dict[str, Any]:
    total = len(api.builder.tangle)
    drawn = DRAWN_ALL_JS if name == "new" else "(t) => Bokeh.documents.length > 0 && "
    drawn += "" if name == "new" else "Bokeh.documents[0].get_model_by_name('nodes').data.name.length === t"
    with chromium_page((1400, 1000)) as (page, errors):
        page.add_init_script(INIT_JS)
        opened = time.perf_counter()
        page.goto(f"http://127.0.0.1:{viz_port}/")
        _until(lambda: page.evaluate(drawn, total), 180)
        page.evaluate("() => new Promise(r => requestAnimationFrame(() => requestAnimationFrame(r)))")
        first_render_s = time.perf_counter() - opened
        initial = page.evaluate(STATS_JS)
        updates = []
        for _ in range(args.updates):
            page.evaluate(ARM_JS)
            api.grow(args.batch)
            total += args.batch
            times = page.evaluate(MEASURE_JS)
            _until(lambda total=total: page.evaluate(STATS_JS).get("nodes") == total, 60)
            stats = page.evaluate(STATS_JS)
            updates.append(
                {
                    "server_ms": stats["fetch_ms"] + stats["build_ms"] + stats["push_ms"],
                    "browser_render_ms": round(times["painted"] - times["first_message"], 2),
                }
            )
            time.sleep(0.3)
        # the page main thread while the tangle grows by one round a second
        cdp = page.context.new_cdp_session(page)
        cdp.send("Performance.enable")
        page.evaluate(COUNT_PAINTS_JS)
        page.evaluate("() => { window.__long = []; window.__since = performance.now(); }")
        tasks_before = _task_seconds(cdp)
        if args.profile:
            cdp.send("Profiler.enable")
            cdp.send("Profiler.setSamplingInterval", {"interval": 500})
            cdp.send("Profiler.start")
        started = time.monotonic()
        grown = 0
        while time.monotonic() - started < args.grow_seconds:
            tick = time.monotonic()
            api.grow(args.batch)
            grown += args.batch
            time.sleep(max(0.0, 1.0 - (time.monotonic() - tick)))
        total += grown
        _until(lambda total=total: page.evaluate(STATS_JS).get("nodes") == total, 300)
        long_tasks = page.evaluate(
            "() => ({elapsed: performance.now() - window.__since,"
            " tasks: window.__long.filter(([s, _d]) => s >= window.__since)})"
        )
        busy = _task_seconds(cdp) - tasks_before
        profile = _self_time(cdp.send("Profiler.stop")["profile"]) if args.profile else None
        paints = page.evaluate("() => window.__paints")
        blocked = sum(d for _s, d in long_tasks["tasks"])
        # the zoom, from the whole tangle (the old page shows it all; the new one follows the newest)
        if name == "new":
            page.get_by_role("button", name="show all").click()
            time.sleep(1.5)
        left, top, width, height = page.evaluate(FRAME_JS)
        page.mouse.move(left + width * 0.4, top + height / 2)
        page.evaluate(ZOOM_ARM_JS)
        page.mouse.wheel(0, -2400)  # one strong notch: from ~1,000 heights to well under 150
        zoom = page.evaluate("() => window.__zoom")
    return {
        "first_render_s": round(first_render_s, 3),
        "initial_server_ms": {k: initial.get(k) for k in ("fetch_ms", "build_ms", "push_ms")},
        "update_median": {k: round(statistics.median(u[k] for u in updates), 2) for k in updates[0]},
        "update_max": {k: round(max(u[k] for u in updates), 2) for k in updates[0]},
        "growing": {
            "seconds": round(long_tasks["elapsed"] / 1000, 2),
            "transactions_added": grown,
            "long_tasks": len(long_tasks["tasks"]),
            "blocked_ms": round(blocked, 1),
            "blocked_share": round(blocked / long_tasks["elapsed"], 3),
            "busy_share": round(busy * 1000 / long_tasks["elapsed"], 3),
            "figure_paints": paints,
        },
        "zoom": {k: (round(v, 2) if isinstance(v, float) else v) for k, v in zoom.items()},
        **({"profile_self_ms": profile} if profile is not None else {}),
        "javascript_errors": errors,
    }


def _self_time(profile: dict[str, Any], top: int = 15) -> dict[str, float]:
    """The functions of a DevTools CPU profile with the most self time (ms), named `function:line`."""
    frames = {node["id"]: node["callFrame"] for node in profile["nodes"]}
    spent: dict[str, float] = {}
    for node, delta in zip(profile["samples"], profile["timeDeltas"], strict=True):
        frame = frames[node]
        name = f"{frame['functionName'] or '(anonymous)'}:{frame['lineNumber']}"
        spent[name] = spent.get(name, 0.0) + delta / 1000
    ranked = [item for item in sorted(spent.items(), key=lambda item: -item[1]) if item[0] != "(idle):-1"]
    return {name: round(ms, 1) for name, ms in ranked[:top]}


def _task_seconds(cdp: Any) -> float:
    """Seconds the page's main thread has spent in tasks so far (Chrome's TaskDuration)."""
    metrics = cdp.send("Performance.getMetrics")["metrics"]
    return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))


def _until(check: Any, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("the page did not catch up")
        time.sleep(0.05)


if __name__ == "__main__":
    main()
