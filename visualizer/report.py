"""`report.html`: a lab run as one self-contained page (Bokeh's JavaScript inlined, so it opens offline).

The tangle as the live page draws it (hover included) and the accuracy curves of the tangle and FedAvg.
"""

from __future__ import annotations

import html
from pathlib import Path

REPORT_NAME = "report.html"


def write_lab_report(folder: Path, path: Path | None = None) -> Path | None:
    """Write the report of the lab output `folder`; None when Bokeh (the `viz` extra) is not installed."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    from bokeh.embed import file_html
    from bokeh.layouts import column
    from bokeh.models import Div, Range1d
    from bokeh.plotting import figure
    from bokeh.resources import INLINE

    from visualizer.graph import TangleGraph
    from visualizer.sources import load_lab_run
    from visualizer.view import TangleView

    run = load_lab_run(folder)
    view = TangleView(height=600, summary_x="round")
    graph = TangleGraph()
    graph.add_many(run.tangle["nodes"])
    view.reset(graph)
    view.set_reference(run.tangle.get("reference", []))
    view.show_until(len(graph))
    view.set_tips(run.tangle.get("tips", []))
    rounds = [m["round"] for m in run.metrics]
    accuracy = None
    if run.metrics:
        accuracy = run.metrics[-1].get("tangle_accuracy")
        view.set_samples(run.samples())
    view.set_header(str(run.tangle.get("peer", "lab")), len(view.tips.data["y"]), graph.depth, accuracy)

    curves = figure(
        title="accuracy on the peers' local test sets",
        height=320,
        sizing_mode="stretch_width",
        y_range=Range1d(0, 1),
        x_axis_label="round",
        y_axis_label="accuracy",
        tools="pan,wheel_zoom,reset,save,hover",
    )
    curves.line(rounds, [m.get("tangle_accuracy") for m in run.metrics], legend_label="tangle (reference)",
                line_width=2, color="#d62728")  # fmt: skip
    curves.scatter(rounds, [m.get("tangle_accuracy") for m in run.metrics], color="#d62728", size=4)
    if any(m.get("fedavg_accuracy") is not None for m in run.metrics):
        fedavg = [m.get("fedavg_accuracy") for m in run.metrics]
        curves.line(rounds, fedavg, legend_label="FedAvg", line_width=2, line_dash="dashed", color="#555555")
    curves.legend.location = "bottom_right"

    config = run.summary.get("config", {})
    described = ", ".join(
        f"{k} {config[k]}" for k in ("peers", "rounds", "model", "dataset", "seed") if k in config
    )
    title = f"Learning Tangle lab run: {described}" if described else "Learning Tangle lab run"
    intro = Div(
        text=f"<h2 style='margin:4px 0'>{html.escape(title)}</h2>"
        f"<p>{len(graph)} transactions. Hover one for its id, author, time, accuracy and parents.</p>",
        sizing_mode="stretch_width",
    )
    # the strip's own accuracy plot would repeat the big curves: the report shows only the tangle's growth
    view.strip.children = view.strip.children[:3]
    layout = column(intro, view.header, view.figure, curves, view.strip, sizing_mode="stretch_width")
    target = path or Path(folder) / REPORT_NAME
    target.write_text(file_html(layout, INLINE, title=title), encoding="utf-8")
    return target
