"""The tangle figure and the summary strip, and the incremental operations on them.

Every change after the first draw is a `stream` (new nodes and edges), a `patch` (rows whose style
changes: the reference's past cone) or a replacement of a small overlay (tips, references, a cone the user
clicked). Only switching to another peer replaces the big sources. Used by the live app and, without
callbacks, by the static report.
"""

from __future__ import annotations

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
    Div,
    HoverTool,
    Legend,
    LegendItem,
    LinearColorMapper,
    Range1d,
    TapTool,
)
from bokeh.palettes import Viridis256
from bokeh.plotting import figure

from visualizer import style
from visualizer.graph import TangleGraph

LOGICAL, WALL = "logical", "wall"
# the wall-clock axis shows clock time when creation times look like unix time (the lab counts rounds)
UNIX_TIME = 1e9
SUMMARY_COLUMNS = ("t", "size", "tips", "depth", "accuracy", "fedavg")
# above this share of the shown rows, one column replacement is cheaper than a patch of each row
PATCH_LIMIT = 0.3


def _empty(columns: Iterable[str]) -> dict[str, list[Any]]:
    return {c: [] for c in columns}


@dataclass(slots=True)
class Timing:
    build_ms: float = 0.0
    push_ms: float = 0.0


class TangleView:
    def __init__(
        self, *, webgl: bool = True, height: int = 560, title: str = "", summary_x: str = "seconds watched"
    ) -> None:
        self.graph = TangleGraph()
        self.shown = 0
        self.edge_start: list[int] = []  # first edge row of each shown node (its edges are contiguous)
        self.edge_rows = 0
        self.reference: list[int] = []
        self.reference_cone: set[int] = set()
        self.tip_indices: list[int] = []
        self.selected: int | None = None
        self.x_mode = LOGICAL

        self.nodes = ColumnDataSource(_empty(style.NODE_COLUMNS), name="nodes")
        self.edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="edges")
        self.tips = ColumnDataSource(_empty(["xl", "xt", "y", "short"]), name="tips")
        self.references = ColumnDataSource(_empty(["xl", "xt", "y", "short"]), name="references")
        self.past = ColumnDataSource(_empty(["xl", "xt", "y", "short"]), name="past_cone")
        self.future = ColumnDataSource(_empty(["xl", "xt", "y", "short"]), name="future_cone")
        self.past_edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="past_edges")
        self.future_edges = ColumnDataSource(_empty(style.EDGE_COLUMNS), name="future_edges")
        self.summary = ColumnDataSource(_empty(SUMMARY_COLUMNS), name="summary")

        self.figure = self._tangle_figure(webgl, height, title)
        self.strip = self._summary_strip(summary_x)
        self.header = Div(name="header", text="", sizing_mode="stretch_width")

    # --- building ------------------------------------------------------------------------------------------
    def _tangle_figure(self, webgl: bool, height: int, title: str) -> Any:
        fig = figure(
            name="tangle",
            title=title or None,
            height=height,
            sizing_mode="stretch_width",
            output_backend="webgl" if webgl else "canvas",
            tools="pan,wheel_zoom,box_zoom,reset,save",
            active_scroll="wheel_zoom",
            x_axis_label="height (logical time)",
            y_axis_label="lane",
        )
        fig.grid.grid_line_alpha = 0.25
        fig.yaxis.minor_tick_line_color = None
        fig.yaxis.ticker.min_interval = 1  # lanes are whole numbers
        self.edge_renderer = fig.segment(
            x0="x0l", y0="y0", x1="x1l", y1="y1", source=self.edges,
            line_color="color", line_width="width", line_alpha=0.7,
        )  # fmt: skip
        cone_edges = {"line_width": 2.2, "line_alpha": 0.9}
        self.past_edge_renderer = fig.segment(
            x0="x0l", y0="y0", x1="x1l", y1="y1", source=self.past_edges, line_color=style.PAST_COLOR,
            **cone_edges,
        )  # fmt: skip
        self.future_edge_renderer = fig.segment(
            x0="x0l", y0="y0", x1="x1l", y1="y1", source=self.future_edges, line_color=style.FUTURE_COLOR,
            **cone_edges,
        )  # fmt: skip
        self.node_renderer = fig.scatter(
            x="xl", y="y", source=self.nodes, size=11, marker="marker",
            fill_color="color", line_color="outline", line_width="width",
            nonselection_fill_alpha=0.45, nonselection_line_alpha=0.45,
            selection_fill_alpha=1.0, selection_line_color="#000000", selection_line_width=3,
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
        # legend-only glyphs for encodings that live in the columns of the big sources
        # Legend-only glyphs, for encodings that live in columns or in overlays that are often empty: a legend
        # draws a glyph from its first row, so each holds one point (far outside the tangle; the ranges follow
        # only the tangle). They are never painted: with WebGL every painted renderer costs a copy of the
        # whole GL canvas, which dominated the render time of an update in software GL.
        far = [-1e9]
        cone_key = fig.segment(
            x0=far, y0=far, x1=far, y1=far, line_color=style.REFERENCE_COLOR, line_width=2.5
        )
        malicious_key = fig.scatter(x=far, y=far, marker="triangle", size=10, fill_color="#888888")
        past_key, future_key = (
            fig.scatter(x=far, y=far, size=13, fill_color=None, line_color=color, line_width=2.5)
            for color in (style.PAST_COLOR, style.FUTURE_COLOR)
        )
        fig.x_range.renderers = fig.y_range.renderers = [self.edge_renderer, self.node_renderer]
        for renderer in (cone_key, malicious_key, past_key, future_key):
            renderer.visible = False
        self.cone_renderers = [
            self.past_edge_renderer, self.future_edge_renderer, self.past_renderer, self.future_renderer,
        ]  # fmt: skip
        for renderer in self.cone_renderers:
            renderer.visible = False  # until a click
        self.coloring = LinearColorMapper(palette=Viridis256, low=0, high=1)
        self.color_bar = ColorBar(
            color_mapper=self.coloring, title="self-reported accuracy", visible=False, width=12
        )
        fig.add_layout(self.color_bar, "right")
        legend = Legend(
            items=[
                LegendItem(label={"field": "author"}, renderers=[self.node_renderer]),
                LegendItem(label="tip", renderers=[self.tip_renderer]),
                LegendItem(label="reference model", renderers=[self.reference_renderer]),
                LegendItem(label="reference's past cone", renderers=[cone_key]),
                LegendItem(label="malicious (lab)", renderers=[malicious_key]),
                LegendItem(label="past cone of click", renderers=[past_key]),
                LegendItem(label="future cone of click", renderers=[future_key]),
            ],
            label_text_font_size="9pt",
            inactive_fill_alpha=0,  # the legend-only renderers are hidden, but their keys must not look it
            glyph_height=14,
            spacing=0,
        )
        fig.add_layout(legend, "right")
        hover = HoverTool(
            renderers=[self.node_renderer],
            tooltips=[
                ("id", "@name"),
                ("author", "@author"),
                ("height", "@height"),
                ("created", "@created{0.[000]}"),
                ("accuracy", "@accuracy{0.000}"),
                ("parents", "@parents_txt"),
                ("malicious", "@malicious"),
            ],
        )
        fig.add_tools(hover, TapTool(renderers=[self.node_renderer]))
        self.time_formatter = CustomJSTickFormatter(
            code="return new Date(tick * 1000).toISOString().replace('T', ' ').slice(0, 19)"
        )
        self.number_formatter = fig.xaxis[0].formatter
        return fig

    def _summary_strip(self, x_label: str) -> Any:
        common = {"height": 150, "sizing_mode": "stretch_width", "toolbar_location": None}
        plots = []
        for column, title, color in (
            ("size", "transactions", "#1f77b4"),
            ("tips", "tips", "#ff7f0e"),
            ("depth", "depth (max height)", "#2ca02c"),
        ):
            p = figure(title=title, name=f"summary_{column}", **common)
            p.line("t", column, source=self.summary, line_width=2, color=color)
            p.scatter("t", column, source=self.summary, size=3, color=color)  # a lone sample shows too
            plots.append(p)
        acc = figure(title="reference accuracy", name="summary_accuracy", y_range=Range1d(0, 1), **common)
        acc.line("t", "accuracy", source=self.summary, line_width=2, color="#d62728", legend_label="tangle")
        acc.scatter("t", "accuracy", source=self.summary, size=3, color="#d62728")
        acc.line(
            "t", "fedavg", source=self.summary, line_width=2, color="#555555", line_dash="dashed",
            legend_label="FedAvg",
        )  # fmt: skip
        acc.legend.location = "bottom_right"
        acc.legend.label_text_font_size = "8pt"
        acc.legend.padding = 2
        acc.legend.spacing = 0
        plots.append(acc)
        for p in plots:
            p.xaxis.axis_label = x_label
            p.xaxis.axis_label_text_font_size = "8pt"
            p.title.text_font_size = "9pt"
            p.xaxis.major_label_text_font_size = "8pt"
            p.yaxis.major_label_text_font_size = "8pt"
        self.summary_plots = plots
        return row(*plots, sizing_mode="stretch_width")

    # --- incremental operations ----------------------------------------------------------------------------
    def reset(self, graph: TangleGraph | None = None) -> None:
        """Start over (another peer, or a peer whose tangle restarted): the only full redraw."""
        self.graph = graph or TangleGraph()
        self.shown = 0
        self.edge_start = []
        self.edge_rows = 0
        self.reference = []
        self.reference_cone = set()
        self.tip_indices = []
        self.selected = None
        self.nodes.selected.indices = []
        for source, columns in (
            (self.nodes, style.NODE_COLUMNS),
            (self.edges, style.EDGE_COLUMNS),
            (self.past_edges, style.EDGE_COLUMNS),
            (self.future_edges, style.EDGE_COLUMNS),
            (self.summary, SUMMARY_COLUMNS),
        ):
            source.data = _empty(columns)
        for source in (self.tips, self.references, self.past, self.future):
            source.data = _empty(["xl", "xt", "y", "short"])

    def show_until(self, count: int, timing: Timing | None = None) -> None:
        """Draw graph nodes up to `count` (in the graph's order): one stream of the new nodes and edges."""
        count = min(count, len(self.graph))
        if count < self.shown:  # going back (replay): redraw, keeping the reference
            reference, cone = self.reference, self.reference_cone
            self.reset(self.graph)
            self.reference, self.reference_cone = reference, cone
            self.references.data = style.point_columns(self.graph, reference)
        if count == self.shown:
            return
        timing = timing if timing is not None else Timing()
        start = _now()
        new = self.graph.nodes[self.shown : count]
        pairs = style.edge_pairs(new)
        for node in new:
            self.edge_start.append(self.edge_rows)
            self.edge_rows += len(node.parents)
        node_rows = style.node_columns(self.graph, new, self.reference_cone)
        edge_rows = style.edge_columns(self.graph, pairs, self.reference_cone)
        built = _now()
        first = self.shown == 0
        if first:
            self.nodes.data = node_rows
            self.edges.data = edge_rows
        else:
            if self.graph.genesis_moved:  # the genesis found its wall-clock place after it was drawn
                self.nodes.patch({"xt": [(0, self.graph.nodes[0].wall)]})
            self.nodes.stream(node_rows)
            if pairs:
                self.edges.stream(edge_rows)
        self.graph.genesis_moved = False
        self.shown = count
        timing.build_ms += (built - start) * 1000
        timing.push_ms += (_now() - built) * 1000

    def set_tips(self, names: Iterable[str]) -> None:
        self.set_tip_indices(self._shown_indices(names))

    def set_tip_indices(self, indices: Sequence[int]) -> None:
        indices = [i for i in indices if i < self.shown]
        if indices != self.tip_indices:  # most polls bring nothing new: send nothing then
            self.tip_indices = indices
            self.tips.data = style.point_columns(self.graph, indices)

    def set_reference(self, names: Iterable[str], timing: Timing | None = None) -> None:
        """Mark the reference model and restyle only the drawn rows whose membership of its past cone changed.

        Call it before `show_until` with the same graph: rows drawn later are built with the new cone."""
        indices = self.graph.indices(names)
        if indices == self.reference:
            return
        start = _now()
        self.reference = indices
        self.references.data = style.point_columns(self.graph, indices)
        cone = self.graph.past_cone(indices)
        changed = sorted(i for i in cone ^ self.reference_cone if i < self.shown)
        self.reference_cone = cone
        if changed:
            self._restyle(changed)
        if timing is not None:
            timing.push_ms += (_now() - start) * 1000

    def _restyle(self, changed: list[int]) -> None:
        cone = self.reference_cone
        if len(changed) > PATCH_LIMIT * self.shown:
            # All drawn rows, as one slice per column. A patch carries its values; `data.update` would not:
            # its ColumnDataChanged message reads the columns when it is serialized, which under a document
            # hold is after the stream of this update's new rows, and the page then held longer style
            # columns than the others (BokehJS: "Size mismatch" at every paint).
            inside = [i in cone for i in range(self.shown)]
            edge_inside = [c in cone for c, _p in style.edge_pairs(self.graph.nodes[: self.shown])]
            drawn, edges = slice(0, self.shown), slice(0, self.edge_rows)
            outline = [style.REFERENCE_COLOR if c else style.OUTLINE_COLOR for c in inside]
            width = np.array([style.REF_NODE_WIDTH if c else style.NODE_WIDTH for c in inside])
            self.nodes.patch({"outline": [(drawn, outline)], "width": [(drawn, width)]})
            if edge_inside:
                edge_color = [style.REFERENCE_COLOR if c else style.EDGE_COLOR for c in edge_inside]
                edge_width = np.array([style.REF_EDGE_WIDTH if c else style.EDGE_WIDTH for c in edge_inside])
                self.edges.patch({"color": [(edges, edge_color)], "width": [(edges, edge_width)]})
            return
        # per-row patches (distinct names: the branch above binds whole-column values)
        outlines: list[tuple[int, str]] = []
        widths: list[tuple[int, float]] = []
        edge_colors: list[tuple[int, str]] = []
        edge_widths: list[tuple[int, float]] = []
        for i in changed:
            in_cone = i in cone
            outlines.append((i, style.REFERENCE_COLOR if in_cone else style.OUTLINE_COLOR))
            widths.append((i, style.REF_NODE_WIDTH if in_cone else style.NODE_WIDTH))
            first = self.edge_start[i]
            for row_index in range(first, first + len(self.graph.nodes[i].parents)):
                edge_colors.append((row_index, style.REFERENCE_COLOR if in_cone else style.EDGE_COLOR))
                edge_widths.append((row_index, style.REF_EDGE_WIDTH if in_cone else style.EDGE_WIDTH))
        self.nodes.patch({"outline": outlines, "width": widths})
        if edge_colors:
            self.edges.patch({"color": edge_colors, "width": edge_widths})

    def select(self, index: int | None) -> tuple[int, int]:
        """Highlight the past and future cones of one node; returns their sizes (without the node)."""
        self.selected = index
        for renderer in self.cone_renderers:
            renderer.visible = index is not None and index < self.shown
        if index is None or index >= self.shown:
            for source in (self.past, self.future):
                source.data = _empty(["xl", "xt", "y", "short"])
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
        self.past_edges.data = style.edge_columns(self.graph, past_pairs, set())
        self.future_edges.data = style.edge_columns(self.graph, future_pairs, set())
        return len(past) - 1, len(future) - 1

    def set_x_mode(self, mode: str) -> None:
        """Logical time (height) or wall clock: switches which columns the glyphs read, no data is sent."""
        self.x_mode = mode
        suffix = "l" if mode == LOGICAL else "t"
        for renderer in (self.edge_renderer, self.past_edge_renderer, self.future_edge_renderer):
            renderer.glyph.x0 = f"x0{suffix}"
            renderer.glyph.x1 = f"x1{suffix}"
        for renderer in (
            self.node_renderer, self.past_renderer, self.future_renderer, self.tip_renderer,
            self.reference_renderer,
        ):  # fmt: skip
            renderer.glyph.x = f"x{suffix}"
        axis = self.figure.xaxis[0]
        if mode == LOGICAL:
            axis.axis_label = "height (logical time)"
            axis.formatter = self.number_formatter
        else:
            clock = any(n.created > UNIX_TIME for n in self.graph.nodes[-1:])
            axis.axis_label = "created (UTC)" if clock else "created (lab round)"
            axis.formatter = self.time_formatter if clock else self.number_formatter

    def set_color_mode(self, mode: str) -> None:
        self.node_renderer.glyph.fill_color = "acc_color" if mode == "accuracy" else "color"
        self.color_bar.visible = mode == "accuracy"

    def add_sample(self, sample: dict[str, float | None]) -> None:
        self.summary.stream({k: [_nan(sample.get(k))] for k in SUMMARY_COLUMNS})

    def set_samples(self, samples: Sequence[dict[str, float | None]]) -> None:
        self.summary.data = {k: [_nan(s.get(k)) for s in samples] for k in SUMMARY_COLUMNS}

    def set_header(self, peer: str, tips: int, depth: int, accuracy: float | None, note: str = "") -> None:
        """The numbers at a glance; data-* attributes let tests and scripts read them."""
        acc = "-" if accuracy is None else f"{accuracy:.3f}"
        self.header.text = (
            f'<div class="tangle-header" data-peer="{_attr(peer)}" data-count="{self.shown}" '
            f'data-tips="{tips}" data-depth="{depth}">'
            f"<b>{_html(peer)}</b> &nbsp; {self.shown} transactions &nbsp;·&nbsp; {tips} tips "
            f"&nbsp;·&nbsp; depth {depth} &nbsp;·&nbsp; reference accuracy {acc}"
            f"{' &nbsp;·&nbsp; ' + _html(note) if note else ''}</div>"
        )

    def _shown_indices(self, names: Iterable[str]) -> list[int]:
        return [i for i in self.graph.indices(names) if i < self.shown]


def stats_text(values: dict[str, Any]) -> str:
    return json.dumps(values, separators=(",", ":"))


def _nan(value: float | None) -> float:
    return math.nan if value is None else float(value)


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _attr(text: str) -> str:
    return _html(text).replace('"', "&quot;")


def _now() -> float:
    return time.perf_counter()
