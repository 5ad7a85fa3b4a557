"""The tangle figure and the incremental operations on it, readable from ten to 10,000+ transactions.

Level of detail: the newest transactions (at most DETAIL_MAX, at least DETAIL_KEEP once the tangle is larger)
are drawn one by one with their edges; everything older is aggregated into bands of a few heights, one
segment per author stacked by share (count, authors, mean accuracy in the hover). Zooming into the banded
part draws its transactions again (`expand`). An update is a `stream` of the new rows; once the detailed
part outgrows DETAIL_MAX it slides forward in one step (a replacement of the detail and band sources).

Overlays are small sources replaced whole: tips, the reference models (stars), the reference's past cone
(a toggle, faint rings; off by default above CONE_AUTO_LIMIT transactions, where it covers nearly all of
them) and the cones of a clicked transaction (recomputed on every update, so a clicked cone grows).

Colour by author (a column), or by accuracy, loss or cumulative weight: numeric columns coloured in the
browser by colour mappers whose range follows the data (2nd-98th percentile), named in the colour bar.
Switching modes sends no rows (except the cumulative weights, computed when that mode is first chosen).
"""

from __future__ import annotations

import html
import json
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from bokeh.layouts import row
from bokeh.models import (
    ColorBar,
    ColumnDataSource,
    CustomJSTickFormatter,
    DataRange1d,
    Div,
    HoverTool,
    LinearColorMapper,
    LogColorMapper,
    Range1d,
    TapTool,
)
from bokeh.palettes import Cividis256, Inferno256, Viridis256
from bokeh.plotting import figure

from visualizer import style
from visualizer.graph import TangleGraph
from visualizer.legend import legend_html

LOGICAL, WALL = "logical", "wall"
COLOR_MODES = ("author", "accuracy", "loss", "weight")
# the wall-clock axis shows clock time when creation times look like unix time (the lab counts rounds)
UNIX_TIME = 1e9
# level of detail: transactions drawn one by one, and how many stay so after a slide
DETAIL_MAX, DETAIL_KEEP = 1500, 1000
BAND_LIMIT = 120  # bands of the aggregated part at most (each a few heights wide when there are many)
EXPAND_SPAN = 150.0  # a zoom narrower than this many heights draws the banded transactions it shows
EXPAND_LIMIT = 3000
CONE_AUTO_LIMIT = 300  # the reference cone is shown by default up to this many transactions
FOLLOW_TX = 200  # auto-follow shows the newest this many transactions


def _empty(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {c: [] for c in columns}


@dataclass(slots=True)
class Timing:
    build_ms: float = 0.0
    push_ms: float = 0.0


@dataclass(frozen=True, slots=True)
class Coloring:
    title: str
    mapper: Any


class TangleView:
    def __init__(
        self, *, webgl: bool = False, height: int = 560, title: str = "", interactive: bool = True
    ) -> None:
        self.interactive = interactive
        self.graph = TangleGraph()
        self.shown = 0
        self.detail_start = 0  # nodes below this index are drawn as bands
        self.edge_start: list[int] = []  # first edge row (over all shown nodes) of each node
        self.edge_rows = 0
        self.band_width = 1
        self.reference: list[int] = []
        self.cone_choice: bool | None = None  # None: automatic (by size)
        self.tip_indices: list[int] = []
        self.selected: int | None = None
        self.expanded: tuple[float, float] | None = None
        self.x_mode = LOGICAL
        self.color_mode = "author"
        self.weights: list[float] | None = None

        self.nodes = ColumnDataSource(_empty(style.NODE_COLUMNS), name="nodes")
        self.edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="edges")
        self.xnodes = ColumnDataSource(_empty(style.NODE_COLUMNS), name="expanded_nodes")
        self.xedges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="expanded_edges")
        self.bands = ColumnDataSource(_empty(style.BAND_COLUMNS), name="bands")
        self.tips = ColumnDataSource(_empty(style.POINT_COLUMNS), name="tips")
        self.references = ColumnDataSource(_empty(style.POINT_COLUMNS), name="references")
        self.cone = ColumnDataSource(_empty(style.POINT_COLUMNS), name="reference_cone")
        self.past = ColumnDataSource(_empty(style.POINT_COLUMNS), name="past_cone")
        self.future = ColumnDataSource(_empty(style.POINT_COLUMNS), name="future_cone")
        self.past_edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="past_edges")
        self.future_edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="future_edges")

        self.colorings = {
            "accuracy": Coloring("accuracy (self-reported)", LinearColorMapper(palette=Viridis256)),
            "loss": Coloring("loss (self-reported)", LinearColorMapper(palette=Inferno256[::-1])),
            "weight": Coloring("cumulative weight", LogColorMapper(palette=Cividis256, low=1, high=2)),
        }
        for name in ("accuracy", "loss"):
            self.colorings[name].mapper.update(low=0, high=1)
        for coloring in self.colorings.values():
            coloring.mapper.nan_color = "#c8c8c8"
        self.figure = self._tangle_figure(webgl, height, title)
        self.header = Div(name="header", text="", sizing_mode="stretch_width")
        self.legend = Div(name="legend", text="", width=230)
        self.legend_authors = -1  # how many authors the legend lists
        self._update_legend()
        self.layout = row(self.figure, self.legend, sizing_mode="stretch_width")

    # --- building ------------------------------------------------------------------------------------------
    def _tangle_figure(self, webgl: bool, height: int, title: str) -> Any:
        # the wheel zooms along x only: the lanes stay in view (the y range follows the data)
        tools = "xpan,xwheel_zoom,box_zoom,reset,save"
        fig = figure(
            name="tangle",
            title=title or None,
            height=height,
            sizing_mode="stretch_width",
            output_backend="webgl" if webgl else "canvas",
            tools=tools,
            active_scroll="xwheel_zoom",
            x_axis_label="height (logical time)",
            y_axis_label="lane",
            x_range=Range1d(-1, 1),
            y_range=DataRange1d(),
        )
        fig.grid.grid_line_alpha = 0.25
        fig.yaxis.minor_tick_line_color = None
        fig.yaxis.ticker.min_interval = 1  # lanes are whole numbers
        self.band_renderer = fig.quad(
            left="ll", right="rl", bottom="bottom", top="top", source=self.bands,
            fill_color="color", fill_alpha=0.55, line_color=None,
        )  # fmt: skip
        segment = {"x0": "x0l", "y0": "y0", "x1": "x1l", "y1": "y1"}
        self.edge_renderer = fig.segment(
            **segment, source=self.edges, line_color=style.EDGE_COLOR, line_width=0.7, line_alpha=0.7
        )
        self.xedge_renderer = fig.segment(
            **segment, source=self.xedges, line_color=style.EDGE_COLOR, line_width=0.7, line_alpha=0.7
        )
        cone_edges = {"line_width": 2.2, "line_alpha": 0.9}
        self.past_edge_renderer = fig.segment(
            **segment, source=self.past_edges, line_color=style.PAST_COLOR, **cone_edges
        )
        self.future_edge_renderer = fig.segment(
            **segment, source=self.future_edges, line_color=style.FUTURE_COLOR, **cone_edges
        )
        node_style = {
            "size": 11, "marker": "marker", "fill_color": "color",
            "line_color": style.OUTLINE_COLOR, "line_width": 0.6,
            "nonselection_fill_alpha": 0.45, "nonselection_line_alpha": 0.45,
            "selection_fill_alpha": 1.0, "selection_line_color": "#000000", "selection_line_width": 3,
        }  # fmt: skip
        self.node_renderer = fig.scatter(x="xl", y="y", source=self.nodes, **node_style)
        self.xnode_renderer = fig.scatter(x="xl", y="y", source=self.xnodes, **node_style)
        self.cone_renderer = fig.scatter(
            x="xl", y="y", source=self.cone, size=15, fill_color=None,
            line_color=style.REFERENCE_COLOR, line_alpha=0.6, line_width=1.3,
        )  # fmt: skip
        halo = {"size": 18, "fill_color": None, "line_width": 2.5}
        self.past_renderer = fig.scatter(x="xl", y="y", source=self.past, line_color=style.PAST_COLOR, **halo)
        self.future_renderer = fig.scatter(
            x="xl", y="y", source=self.future, line_color=style.FUTURE_COLOR, **halo
        )
        self.tip_renderer = fig.scatter(
            x="xl", y="y", source=self.tips, size=15, fill_color=None, line_color="#222222", line_width=1.5
        )
        self.reference_renderer = fig.scatter(
            x="xl", y="y", source=self.references, marker="star", size=20,
            fill_color=style.REFERENCE_COLOR, line_color="#000000", line_width=1,
        )  # fmt: skip
        # the y range follows the tangle only (not the overlays' larger markers)
        fig.y_range.renderers = [self.band_renderer, self.node_renderer, self.xnode_renderer]
        self.cone_renderers = [
            self.past_edge_renderer, self.future_edge_renderer, self.past_renderer, self.future_renderer,
        ]  # fmt: skip
        for renderer in (*self.cone_renderers, self.cone_renderer, self.xnode_renderer, self.xedge_renderer):
            renderer.visible = False  # until a click, the cone toggle, or a zoom into the bands
        self.color_bar = ColorBar(
            color_mapper=self.colorings["accuracy"].mapper, title="", visible=False, width=12
        )
        fig.add_layout(self.color_bar, "right")
        # one transaction per hover (limit): at any zoom several markers can overlap
        node_hover = HoverTool(
            renderers=[self.node_renderer, self.xnode_renderer],
            tooltips=[
                ("id", "@name"),
                ("author", "@author"),
                ("height", "@height"),
                ("created", "@created{0.[000]}"),
                ("accuracy", "@accuracy{0.000}"),
                ("loss", "@loss{0.000}"),
                ("parents", "@parents_txt"),
                ("malicious", "@malicious"),
            ],
            limit=1,
        )
        self.band_hover = band_hover = HoverTool(
            renderers=[self.band_renderer],
            tooltips=[
                ("band", "@span_txt"),
                ("transactions", "@total"),
                ("authors", "@authors_txt"),
                ("mean accuracy", "@accuracy{0.000}"),
            ],
            limit=1,
        )
        fig.add_tools(node_hover, band_hover)
        if self.interactive:
            fig.add_tools(TapTool(renderers=[self.node_renderer, self.xnode_renderer]))
        self.time_formatter = CustomJSTickFormatter(
            code="return new Date(tick * 1000).toISOString().replace('T', ' ').slice(0, 19)"
        )
        self.number_formatter = fig.xaxis[0].formatter
        return fig

    # --- the big sources -----------------------------------------------------------------------------------
    def reset(self, graph: TangleGraph | None = None) -> None:
        """Start over (another peer, or a peer whose tangle restarted): the only full redraw."""
        self.graph = graph or TangleGraph()
        self.shown = 0
        self.detail_start = 0
        self.edge_start = []
        self.edge_rows = 0
        self.reference = []
        self.tip_indices = []
        self.selected = None
        self.expanded = None
        self._bands_behind(False)
        self.weights = None
        self.nodes.selected.indices = []
        self.xnodes.selected.indices = []
        for source, columns in (
            (self.nodes, style.NODE_COLUMNS),
            (self.xnodes, style.NODE_COLUMNS),
            (self.edges, style.EDGE_COLUMNS),
            (self.xedges, style.EDGE_COLUMNS),
            (self.past_edges, style.EDGE_COLUMNS),
            (self.future_edges, style.EDGE_COLUMNS),
            (self.bands, style.BAND_COLUMNS),
        ):
            source.data = _empty(columns)
        for source in (self.tips, self.references, self.cone, self.past, self.future):
            source.data = _empty(style.POINT_COLUMNS)
        for renderer in self.cone_renderers:
            renderer.visible = False
        self._update_legend()

    def _update_legend(self) -> None:
        """The legend lists every author of the graph: rewritten only when a new one appears."""
        if len(self.graph.authors) != self.legend_authors:
            self.legend_authors = len(self.graph.authors)
            self.legend.text = legend_html(list(self.graph.authors), interactive=self.interactive)

    def show_until(self, count: int, timing: Timing | None = None) -> None:
        """Draw graph nodes up to `count` (in the graph's order): one stream of the new nodes and edges."""
        count = min(count, len(self.graph))
        if count < self.shown:  # going back (replay): redraw, keeping the reference
            reference = self.reference
            self.reset(self.graph)
            self.reference = reference
        if count == self.shown:
            return
        timing = timing if timing is not None else Timing()
        start = _now()
        self._update_legend()
        new = self.graph.nodes[self.shown : count]
        for node in new:
            self.edge_start.append(self.edge_rows)
            self.edge_rows += len(node.parents)
        if self.color_mode == "weight":
            self.weights = self.graph.cumulative_weights()
        if self.shown == 0 or count - self.detail_start > DETAIL_MAX:
            self.shown = count
            self._slide(max(0, count - DETAIL_KEEP) if count > DETAIL_MAX else 0)
            timing.build_ms += (_now() - start) * 1000
            return
        node_rows = style.node_columns(self.graph, new, self.weights)
        edge_rows = style.edge_columns(self.graph, style.edge_pairs(new))
        built = _now()
        if self.graph.genesis_moved and self.detail_start == 0:
            # the genesis found its wall-clock place after it was drawn
            self.nodes.patch({"xt": [(0, self.graph.nodes[0].wall)]})
        self.graph.genesis_moved = False
        self.nodes.stream(node_rows)
        if len(edge_rows["child"]):
            self.edges.stream(edge_rows)
        if self.color_mode == "weight":
            self._patch_weights()
        self.shown = count
        timing.build_ms += (built - start) * 1000
        timing.push_ms += (_now() - built) * 1000

    def _slide(self, detail_start: int) -> None:
        """Draw nodes [detail_start, shown) one by one and aggregate the older ones into bands."""
        self.detail_start = detail_start
        self.graph.genesis_moved = False
        detail = self.graph.nodes[detail_start : self.shown]
        self.nodes.selected.indices = []
        self.nodes.data = style.node_columns(self.graph, detail, self.weights)
        self.edges.data = style.edge_columns(self.graph, style.edge_pairs(detail))
        old_depth = max((n.height for n in self.graph.nodes[:detail_start]), default=0)
        self.band_width = max(1, math.ceil((old_depth + 1) / BAND_LIMIT))
        self.bands.data = (
            style.band_columns(self.graph, detail_start, self.band_width, self.weights)
            if detail_start
            else _empty(style.BAND_COLUMNS)
        )

    def _patch_weights(self) -> None:
        if self.weights is None:
            raise RuntimeError("cumulative weights are patched before they were computed")
        drawn = len(self.nodes.data["index"])
        values = np.array(self.weights[self.detail_start : self.detail_start + drawn])
        self.nodes.patch({"weight": [(slice(0, drawn), values)]})

    # --- expanding the banded part on zoom, following the newest ------------------------------------------
    def expand(self, x0: float, x1: float) -> bool:
        """The visible x range changed: draw the banded transactions in it when it is narrow enough.
        Returns whether the expanded sources changed."""
        if not self.detail_start or x1 - x0 > self._expand_span() or x1 < self._band_x(0)[0]:
            if self.expanded is None:
                return False
            self._collapse()
            return True
        margin = (x1 - x0) * 0.25
        low, high = x0 - margin, x1 + margin
        if self.expanded is not None and self.expanded[0] <= x0 and x1 <= self.expanded[1]:
            return False
        column = "height" if self.x_mode == LOGICAL else "wall"
        chosen = [n for n in self.graph.nodes[: self.detail_start] if low <= getattr(n, column) <= high][
            -EXPAND_LIMIT:
        ]
        self.expanded = (low, high)
        self.xnodes.selected.indices = []
        self.xnodes.data = style.node_columns(self.graph, chosen, self.weights)
        self.xedges.data = style.edge_columns(self.graph, style.edge_pairs(chosen))
        self._bands_behind(True)
        self._show_cone()
        return True

    def _collapse(self) -> None:
        self.expanded = None
        self.xnodes.data = _empty(style.NODE_COLUMNS)
        self.xedges.data = _empty(style.EDGE_COLUMNS)
        self._bands_behind(False)

    def _bands_behind(self, expanded: bool) -> None:
        """With the banded transactions drawn, the bands only tint the background and have no hover.
        The expanded renderers are hidden while empty: with WebGL every painted renderer costs a copy."""
        if self.xnode_renderer.visible != expanded:
            self.xnode_renderer.visible = self.xedge_renderer.visible = expanded
        alpha = 0.12 if expanded else 0.55
        if self.band_renderer.glyph.fill_alpha != alpha:
            self.band_renderer.glyph.fill_alpha = alpha
            self.band_hover.renderers = [] if expanded else [self.band_renderer]

    def _expand_span(self) -> float:
        if self.x_mode == LOGICAL:
            return EXPAND_SPAN
        nodes = self.graph.nodes
        heights = max(1, nodes[-1].height - nodes[0].height) if nodes else 1
        return EXPAND_SPAN * max(1e-9, nodes[-1].wall - nodes[0].wall) / heights if nodes else EXPAND_SPAN

    def _band_x(self, index: int) -> tuple[float, float]:
        node = self.graph.nodes[index]
        return (node.height, node.height) if self.x_mode == LOGICAL else (node.wall, node.wall)

    def follow(self) -> None:
        """Show the newest FOLLOW_TX transactions (auto-follow)."""
        if not self.shown:
            return
        newest = self.graph.nodes[max(0, self.shown - FOLLOW_TX) : self.shown]
        xs = [n.height if self.x_mode == LOGICAL else n.wall for n in newest]
        self._set_x(min(xs) - 1, max(xs) + 1.5)

    def show_all(self) -> None:
        if not self.shown:
            return
        xs = [self._band_x(0)[0], *(self._band_x(i)[0] for i in range(max(0, self.shown - 50), self.shown))]
        self._set_x(min(xs) - 1, max(xs) + 1.5)
        self.expand(self.figure.x_range.start, self.figure.x_range.end)

    def focus(self, index: int) -> None:
        """Centre the view on one transaction (jump to it), drawing it if it lies in the banded part."""
        x = self._band_x(index)[0]
        span = 12.0 if self.x_mode == LOGICAL else 12.0 * self._expand_span() / EXPAND_SPAN
        self._set_x(x - span, x + span)
        self.expand(x - span, x + span)

    def _set_x(self, start: float, end: float) -> None:
        x_range = self.figure.x_range
        if (x_range.start, x_range.end) != (start, end):
            x_range.update(start=start, end=end)
        whole = (self._band_x(0)[0] - 1, self._band_x(self.shown - 1)[0] + 1.5) if self.shown else (-1, 1)
        if (x_range.reset_start, x_range.reset_end) != whole:  # the reset tool shows the whole tangle
            x_range.update(reset_start=whole[0], reset_end=whole[1])

    # --- overlays ------------------------------------------------------------------------------------------
    def set_tips(self, names: Iterable[str]) -> None:
        self.set_tip_indices(self._shown_indices(names))

    def set_tip_indices(self, indices: Sequence[int]) -> None:
        indices = [i for i in indices if i < self.shown]
        if indices != self.tip_indices:  # most polls bring nothing new: send nothing then
            self.tip_indices = indices
            self.tips.data = style.point_columns(self.graph, indices)

    def set_reference(self, names: Iterable[str], timing: Timing | None = None) -> None:
        """Mark the reference models; their past cone is drawn when the cone is on."""
        indices = self.graph.indices(names)
        if indices == self.reference:
            return
        start = _now()
        self.reference = indices
        self.references.data = style.point_columns(self.graph, [i for i in indices if i < self.shown])
        self._show_cone()
        if timing is not None:
            timing.push_ms += (_now() - start) * 1000

    @property
    def cone_on(self) -> bool:
        if self.cone_choice is not None:
            return self.cone_choice
        return len(self.graph) <= CONE_AUTO_LIMIT

    def set_cone(self, on: bool | None) -> None:
        """The reference's past cone: on, off, or None (automatic: on for small tangles only)."""
        self.cone_choice = on
        self._show_cone()

    def refresh(self) -> None:
        """After an update: overlays that depend on what is drawn (the references, the reference cone, a
        clicked transaction's cones, which grow as new transactions approve it)."""
        drawn = [i for i in self.reference if i < self.shown]
        if len(drawn) != len(self.references.data["y"]):
            self.references.data = style.point_columns(self.graph, drawn)
        self._show_cone()
        if self.selected is not None:
            self.select(self.selected)

    def _show_cone(self) -> None:
        on = self.cone_on and bool(self.reference)
        self.cone_renderer.visible = on
        if not on:
            if len(self.cone.data["y"]):
                self.cone.data = _empty(style.POINT_COLUMNS)
            return
        cone = self.graph.past_cone([i for i in self.reference if i < self.shown])
        drawn = [i for i in sorted(cone) if i >= self.detail_start and i < self.shown]
        if self.expanded is not None:
            drawn = [int(i) for i in self.xnodes.data["index"] if i in cone] + drawn
        self.cone.data = style.point_columns(self.graph, drawn)

    def select(self, index: int | None) -> tuple[int, int]:
        """Highlight the past and future cones of one node; returns their sizes (without the node)."""
        self.selected = index
        for renderer in self.cone_renderers:
            renderer.visible = index is not None and index < self.shown
        if index is None or index >= self.shown:
            self.selected = None
            for source in (self.past, self.future):
                source.data = _empty(style.POINT_COLUMNS)
            for source in (self.past_edges, self.future_edges):
                source.data = _empty(style.EDGE_COLUMNS)
            return 0, 0
        past = sorted(self.graph.past_cone([index]))
        future = sorted(i for i in self.graph.future_cone([index]) if i < self.shown)
        future_set = set(future)
        self.past.data = style.point_columns(self.graph, past)
        self.future.data = style.point_columns(self.graph, future)
        past_pairs = style.edge_pairs([self.graph.nodes[i] for i in past])
        future_pairs = [
            (c, p) for c, p in style.edge_pairs([self.graph.nodes[i] for i in future]) if p in future_set
        ]
        self.past_edges.data = style.edge_columns(self.graph, past_pairs)
        self.future_edges.data = style.edge_columns(self.graph, future_pairs)
        return len(past) - 1, len(future) - 1

    def find(self, query: str) -> int | None:
        """A transaction by its id, or by a part of it that only one id contains."""
        query = query.strip()
        if not query:
            return None
        if query in self.graph.index:
            return self.graph.index[query]
        found = [n.index for n in self.graph.nodes[: self.shown] if query in n.name]
        return found[0] if len(found) == 1 else None

    # --- modes ---------------------------------------------------------------------------------------------
    def set_x_mode(self, mode: str) -> None:
        """Logical time (height) or wall clock: switches which columns the glyphs read, no data is sent."""
        self.x_mode = mode
        suffix = "l" if mode == LOGICAL else "t"
        for renderer in (
            self.edge_renderer, self.xedge_renderer, self.past_edge_renderer, self.future_edge_renderer,
        ):  # fmt: skip
            renderer.glyph.x0 = f"x0{suffix}"
            renderer.glyph.x1 = f"x1{suffix}"
        for renderer in (
            self.node_renderer, self.xnode_renderer, self.past_renderer, self.future_renderer,
            self.tip_renderer, self.reference_renderer, self.cone_renderer,
        ):  # fmt: skip
            renderer.glyph.x = f"x{suffix}"
        self.band_renderer.glyph.left = f"l{suffix}"
        self.band_renderer.glyph.right = f"r{suffix}"
        axis = self.figure.xaxis[0]
        if mode == LOGICAL:
            axis.axis_label = "height (logical time)"
            axis.formatter = self.number_formatter
        else:
            clock = any(n.created > UNIX_TIME for n in self.graph.nodes[-1:])
            axis.axis_label = "created (UTC)" if clock else "created (lab round)"
            axis.formatter = self.time_formatter if clock else self.number_formatter
        if self.expanded is not None:
            self._collapse()
        self.show_all()

    def set_color_mode(self, mode: str) -> None:
        """Author colours, or a numeric column through its colour mapper, on every glyph that shows nodes
        (the selection and non-selection glyphs too: a selected transaction must not freeze the colours)."""
        self.color_mode = mode
        if mode == "weight" and self.shown:
            self.weights = self.graph.cumulative_weights()
            self._patch_weights()
            if self.expanded is not None:
                drawn = len(self.xnodes.data["index"])
                values = [self.weights[int(i)] for i in self.xnodes.data["index"]]
                self.xnodes.patch({"weight": [(slice(0, drawn), np.array(values))]})
            if self.detail_start:
                self.bands.data = style.band_columns(
                    self.graph, self.detail_start, self.band_width, self.weights
                )
        fill: Any = "color" if mode == "author" else {"field": mode, "transform": self.colorings[mode].mapper}
        for renderer in (self.node_renderer, self.xnode_renderer, self.band_renderer):
            for glyph in (renderer.glyph, renderer.selection_glyph, renderer.nonselection_glyph):
                if glyph is not None and glyph != "auto":
                    glyph.fill_color = fill
        self.color_bar.visible = mode != "author"
        self.update_color_range()

    def update_color_range(self) -> None:
        """Fit the colour mapper of the current mode to the data, and say so in the colour bar's title."""
        if self.color_mode == "author" or not self.shown:
            return
        coloring = self.colorings[self.color_mode]
        nodes = self.graph.nodes[: self.shown]
        if self.color_mode == "weight":
            values: Any = self.weights or []
        else:
            values = [getattr(n, self.color_mode) for n in nodes]
            values = [math.nan if v is None else v for v in values]
        fitted = style.auto_range(values)
        if fitted is None:
            title = f"{coloring.title}: no values"
        else:
            low, high = fitted
            if self.color_mode == "weight":
                low, high = max(1.0, low), max(2.0, high)
            mapper = coloring.mapper
            if abs(mapper.low - low) > 1e-3 * abs(high - low) or abs(mapper.high - high) > 1e-3 * abs(
                high - low
            ):
                mapper.update(low=low, high=high)
            title = f"{coloring.title}, auto-ranged {_num(low)}-{_num(high)}"
        if self.color_bar.color_mapper is not coloring.mapper:
            self.color_bar.color_mapper = coloring.mapper
        if self.color_bar.title != title:
            self.color_bar.title = title

    def set_header(
        self,
        peer: str,
        tips: int,
        depth: int,
        accuracy: float | None,
        note: str = "",
        accuracy_label: str = "this peer's reference accuracy",
    ) -> None:
        """The numbers at a glance; data-* attributes let tests and scripts read them."""
        acc = "-" if accuracy is None else f"{accuracy:.3f}"
        missing = self.graph.missing_parents
        warning = (
            f" &nbsp;·&nbsp; <span class='warning' style='color:#b00020'>{missing} parents missing (drawn "
            "without those edges)</span>"
            if missing
            else ""
        )
        self.header.text = (
            f'<div class="tangle-header" data-peer="{_attr(peer)}" data-count="{self.shown}" '
            f'data-tips="{tips}" data-depth="{depth}" data-missing="{missing}">'
            f"<b>{_html(peer)}</b> &nbsp; {self.shown} transactions &nbsp;·&nbsp; {tips} tips "
            f"&nbsp;·&nbsp; depth {depth} &nbsp;·&nbsp; {_html(accuracy_label)} {acc}"
            f"{' &nbsp;·&nbsp; ' + _html(note) if note else ''}{warning}</div>"
        )

    def _shown_indices(self, names: Iterable[str]) -> list[int]:
        return [i for i in self.graph.indices(names) if i < self.shown]


def stats_text(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"))


def _num(value: float) -> str:
    return f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"


def _html(text: str) -> str:
    return html.escape(text, quote=False)


def _attr(text: str) -> str:
    return html.escape(text, quote=True)


def _now() -> float:
    return time.perf_counter()
