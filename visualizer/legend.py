"""The tangle figure's legend as HTML beside the figure, not a Bokeh Legend inside it.

A Legend is part of the figure's canvas: every paint (each update, pan or hover) drew its items again, made a
canvas layer for them and measured their text, about a fifth of the page's paint time while a tangle grows.
This Div changes only when a new author appears. Author names come from peers: escaped.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

from visualizer import style

SIZE = 14
LEGEND_STYLE = (
    "font-size:12px;line-height:16px;max-height:540px;overflow-y:auto;padding:4px 6px;"
    "border:1px solid #e5e5e5;background:#fff"
)


def _svg(shape: str) -> str:
    return (
        f"<svg width='{SIZE}' height='{SIZE}' viewBox='0 0 {SIZE} {SIZE}' "
        f"style='vertical-align:middle;margin-right:5px'>{shape}</svg>"
    )


def _circle(fill: str, stroke: str, width: float, radius: float = 5.0) -> str:
    shape = f"<circle cx='7' cy='7' r='{radius}' fill='{fill}' stroke='{stroke}' stroke-width='{width}'/>"
    return _svg(shape)


SWATCHES = {
    "tip": _circle("none", "#222222", 1.5),
    "reference model": _svg(
        "<polygon points='7,0.8 8.8,5 13.3,5.2 9.8,8.1 11,12.6 7,10.1 3,12.6 4.2,8.1 0.7,5.2 5.2,5' "
        f"fill='{style.REFERENCE_COLOR}' stroke='#000' stroke-width='0.8'/>"
    ),
    "reference's past cone (toggle)": _circle("none", style.REFERENCE_COLOR, 1.5, 5.5),
    "malicious (lab)": _svg("<polygon points='7,1.5 12.8,12 1.2,12' fill='#888888' stroke='#fff'/>"),
    "older rounds: band per author": _svg(
        "<rect x='1' y='2' width='12' height='10' fill='#9e9e9e' fill-opacity='0.55'/>"
    ),
    "past cone of click": _circle("none", style.PAST_COLOR, 2.5, 5.0),
    "future cone of click": _circle("none", style.FUTURE_COLOR, 2.5, 5.0),
}
# a click shows cones only where a server answers it (not in a report)
CLICK_ONLY = ("past cone of click", "future cone of click")


def legend_html(authors: Sequence[str], *, interactive: bool) -> str:
    """One row per author (in order of first appearance, as the colours are given), then the encodings."""
    rows = [
        f"<div class='legend-author'>{_circle(style.author_color(order, a), style.OUTLINE_COLOR, 0.6)}"
        f"{html.escape(a, quote=False)}</div>"
        for order, a in enumerate(authors)
    ]
    rows += [
        f"<div class='legend-key'>{swatch}{html.escape(label, quote=False)}</div>"
        for label, swatch in SWATCHES.items()
        if interactive or label not in CLICK_ONLY
    ]
    return f"<div class='tangle-legend' style=\"{LEGEND_STYLE}\">{''.join(rows)}</div>"
