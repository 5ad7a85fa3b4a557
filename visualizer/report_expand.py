"""The bands of a static report expand on zoom too. No server answers a range change there, so the banded
transactions travel in the file as compact columns (numbers as typed arrays, ids shortened) and a CustomJS
callback on the x range draws those a narrow view shows into the view's expanded sources, as
`TangleView.expand` does on a server: narrower than EXPAND_SPAN heights, at most EXPAND_LIMIT transactions,
the bands fading behind them; zooming out again collapses them."""

from __future__ import annotations

import numpy as np
from bokeh.models import ColumnDataSource, CustomJS

from visualizer import style
from visualizer.view import EXPAND_LIMIT, EXPAND_SPAN, TangleView

# same rules as TangleView.expand (logical x: a report has no x-mode switch)
EXPAND_JS = """
const x0 = x_range.start, x1 = x_range.end;
const d = store.data, n = d.height.length;
const state = store.__expand || (store.__expand = {window: null, parents: null});
const show = (on) => {
  xnode_renderer.visible = on;
  xedge_renderer.visible = on;
  band_renderer.glyph.fill_alpha = on ? 0.12 : 0.55;
  band_hover.renderers = on ? [] : [band_renderer];
};
if (n === 0 || x1 - x0 > span || x1 < d.height[0]) {
  if (state.window !== null) {
    state.window = null;
    xnodes.data = Object.fromEntries(Object.keys(xnodes.data).map(k => [k, []]));
    xedges.data = Object.fromEntries(Object.keys(xedges.data).map(k => [k, []]));
    show(false);
  }
  return;
}
if (state.window !== null && state.window[0] <= x0 && x1 <= state.window[1]) return;
const margin = (x1 - x0) * 0.25, low = x0 - margin, high = x1 + margin;
state.window = [low, high];
if (state.parents === null) {
  state.parents = Array.from({length: n}, () => []);
  const e = edges.data;
  for (let i = 0; i < e.child.length; i++) state.parents[e.child[i]].push(e.parent[i]);
}
let rows = [];
for (let i = 0; i < n; i++) if (d.height[i] >= low && d.height[i] <= high) rows.push(i);
rows = rows.slice(-limit);
const chosen = new Set(rows);
const nan = () => NaN;
xnodes.data = {
  index: rows,
  name: rows.map(i => d.short[i]),
  short: rows.map(i => d.short[i]),
  author: rows.map(i => authors[d.author[i]]),
  parents_txt: rows.map(i => state.parents[i].map(p => d.short[p]).join(', ') || '-'),
  color: rows.map(i => colors[d.author[i]]),
  marker: rows.map(i => d.malicious[i] ? 'triangle' : 'circle'),
  xl: rows.map(i => d.height[i]),
  xt: rows.map(i => d.created[i]),
  y: rows.map(i => d.lane[i]),
  height: rows.map(i => d.height[i]),
  created: rows.map(i => d.created[i]),
  accuracy: rows.map(i => d.accuracy[i]),
  loss: rows.map(i => d.loss[i]),
  weight: rows.map(nan),
  malicious: rows.map(i => d.malicious[i] ? 'yes' : 'no'),
};
const pairs = [];
for (const c of rows) for (const p of state.parents[c]) pairs.push([c, p]);
xedges.data = {
  x0l: pairs.map(([c, _]) => d.height[c]), x0t: pairs.map(([c, _]) => d.created[c]),
  y0: pairs.map(([c, _]) => d.lane[c]),
  x1l: pairs.map(([_, p]) => d.height[p]), x1t: pairs.map(([_, p]) => d.created[p]),
  y1: pairs.map(([_, p]) => d.lane[p]),
  child: pairs.map(([c, _]) => c), parent: pairs.map(([_, p]) => p),
};
show(true);
"""


def attach(view: TangleView) -> int:
    """Embed the banded transactions of `view` and expand them on zoom; returns how many were embedded."""
    graph, count = view.graph, view.detail_start
    if not count:
        return 0
    banded = graph.nodes[:count]
    authors = list(graph.authors)  # in order of first appearance, as the colours are given
    store = ColumnDataSource(
        {
            "height": np.array([n.height for n in banded], dtype=np.int32),
            "lane": np.array([n.lane for n in banded], dtype=np.int32),
            "created": np.array([n.created for n in banded], dtype=np.float64),
            "author": np.array([graph.authors[n.author] for n in banded], dtype=np.uint16),
            "accuracy": np.array([np.nan if n.accuracy is None else n.accuracy for n in banded], np.float32),
            "loss": np.array([np.nan if n.loss is None else n.loss for n in banded], dtype=np.float32),
            "malicious": np.array([n.malicious for n in banded], dtype=np.uint8),
            "short": [style.short(n.name) for n in banded],
        },
        name="banded_store",
    )
    pairs = style.edge_pairs(banded)
    edges = ColumnDataSource(
        {
            "child": np.array([c for c, _p in pairs], dtype=np.int32),
            "parent": np.array([p for _c, p in pairs], dtype=np.int32),
        },
        name="banded_edges",
    )
    callback = CustomJS(
        args={
            "x_range": view.figure.x_range,
            "store": store,
            "edges": edges,
            "authors": authors,
            "colors": [style.author_color(order, author) for order, author in enumerate(authors)],
            "xnodes": view.xnodes,
            "xedges": view.xedges,
            "xnode_renderer": view.xnode_renderer,
            "xedge_renderer": view.xedge_renderer,
            "band_renderer": view.band_renderer,
            "band_hover": view.band_hover,
            "span": EXPAND_SPAN,
            "limit": EXPAND_LIMIT,
        },
        code=EXPAND_JS,
    )
    view.figure.x_range.js_on_change("start", callback)
    view.figure.x_range.js_on_change("end", callback)
    return count
