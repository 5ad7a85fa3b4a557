"""Headless Debian Chromium driven by Playwright, for the visualizer's browser tests and benchmark.

Never downloads a browser: it runs the `chromium` found on PATH, as scripts/install-test-deps.sh checks it
(apt-get install chromium), or the one $CHROMIUM names.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path(os.environ.get("CHROMIUM") or shutil.which("chromium") or "chromium")
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


def unavailable() -> str | None:
    """Why the browser tests cannot run here, or None. In CI (CI set) a missing browser is a failure."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is missing (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is missing (pip install playwright)"
    return None


@contextmanager
def chromium_page(viewport: tuple[int, int] = (1400, 1000)) -> Iterator[tuple[Any, list[str]]]:
    """A page in a fresh profile, and the list its JavaScript errors (console errors, page errors) go to."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile, sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            profile,
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": viewport[0], "height": viewport[1]},
        )
        try:
            page = context.new_page()
            page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(f"pageerror: {e}"))
            yield page, errors
        finally:
            context.close()


NODE_POSITION_JS = """(i) => {
  const doc = Bokeh.documents[0];
  const plot = doc.get_model_by_name('tangle');
  const view = Bokeh.index.find_one(plot);
  const nodes = doc.get_model_by_name('nodes');
  const renderer = plot.renderers.find(r => r.data_source === nodes);
  const x = nodes.data[renderer.glyph.x.field][i], y = nodes.data.y[i];
  const box = view.canvas_view.el.getBoundingClientRect();
  const sx = view.frame.x_scale.compute(x), sy = view.frame.y_scale.compute(y);
  return [box.left + sx, box.top + sy, nodes.data.name[i]];
}"""

DRAWN_JS = (
    "() => Bokeh.documents.length ? Bokeh.documents[0].get_model_by_name('nodes').data.name.length : -1"
)

# the distinct column lengths of the big sources: one each when the page's copy is consistent
COLUMN_LENGTHS_JS = """() => {
  const doc = Bokeh.documents[0];
  const lengths = name => [...new Set(Object.values(doc.get_model_by_name(name).data).map(c => c.length))];
  return {nodes: lengths('nodes'), edges: lengths('edges')};
}"""

# the tangle figure's plotting area in page coordinates: left, top, width, height
FRAME_JS = """() => {
  const view = Bokeh.index.find_one(Bokeh.documents[0].get_model_by_name('tangle'));
  const box = view.canvas_view.el.getBoundingClientRect();
  const frame = view.frame.bbox;
  return [box.left + frame.left, box.top + frame.top, frame.width, frame.height];
}"""

# the header's transaction count (its Div renders inside a shadow root: read the model's text)
HEADER_COUNT_JS = """() => {
  if (!Bokeh.documents.length) return -1;
  const header = Bokeh.documents[0].get_model_by_name('header');
  const found = header ? header.text.match(/data-count="([0-9]+)"/) : null;
  return found ? Number(found[1]) : -1;
}"""


def visible_tooltips(page: Any) -> list[str]:
    """The texts of the hover tooltips on screen."""
    tips = page.locator(".bk-tooltip-content")
    return [tips.nth(i).inner_text() for i in range(tips.count()) if tips.nth(i).is_visible()]


def colour_pixels(
    png: bytes, colours: dict[str, str], alpha: float = 1.0, tolerance: int = 10
) -> dict[str, int]:
    """How many pixels of a screenshot have each colour (drawn with `alpha` over white)."""
    import io

    import numpy as np
    from PIL import Image

    image = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    counts = {}
    for name, colour in colours.items():
        rgb = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)])
        expected = np.round(alpha * rgb + (1 - alpha) * 255)
        counts[name] = int((np.abs(image - expected).max(axis=2) <= tolerance).sum())
    return counts


def model_text(page: Any, name: str) -> str:
    """The HTML text of a named Div model (Divs render in shadow roots)."""
    return str(
        page.evaluate(
            "(n) => { const d = window.Bokeh && Bokeh.documents[0]; const m = d && d.get_model_by_name(n);"
            " return m ? m.text : '' }",
            name,
        )
    )


def until(check: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll `check` until it returns something truthy (returned), or fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")
