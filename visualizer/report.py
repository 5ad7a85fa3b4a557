"""Self-contained HTML (Bokeh's JavaScript inlined, so it opens offline): one lab run's report (its settings,
final metrics, curves by round and the tangle with hover), or several runs compared.

`write_lab_report` is registered as a lab output (`learning_tangle.lab_outputs`), so every `tangle lab` writes
`report.html` when Bokeh is installed; `tangle report RUN... -o FILE` calls `write_report`.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from visualizer.sources import LabRun

REPORT_NAME = "report.html"


def write_lab_report(folder: Path, path: Path | None = None) -> Path | None:
    """Write the report of the lab output `folder`; None when Bokeh (the `viz` extra) is not installed."""
    try:
        import bokeh  # noqa: F401
    except ImportError:
        return None
    return write_report([Path(folder)], path or Path(folder) / REPORT_NAME)


def write_report(folders: Sequence[Path], out: Path) -> Path:
    """One run: its report; several: the comparison. Raises SourceError for a folder it cannot read."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    from visualizer.sources import load_lab_run

    runs = [load_lab_run(folder) for folder in folders]
    if len(runs) == 1:
        layout, title = _run_layout(runs[0])
    else:
        from bokeh.layouts import column
        from bokeh.models import Div

        from visualizer.app import run_labels
        from visualizer.runview import compare_layout

        labels = run_labels(runs)
        title = f"Learning Tangle: {len(runs)} runs compared ({', '.join(labels)})"
        layout = column(
            Div(text=f"<h2 style='margin:4px 0'>{html.escape(title)}</h2>", sizing_mode="stretch_width"),
            compare_layout([(label, r.history(), r.complete) for label, r in zip(labels, runs, strict=True)]),
            sizing_mode="stretch_width",
        )
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(file_html(layout, INLINE, title=title), encoding="utf-8")
    return out


def _run_layout(run: LabRun) -> tuple[object, str]:
    from bokeh.layouts import column
    from bokeh.models import Div

    from visualizer import report_expand
    from visualizer.graph import TangleGraph
    from visualizer.runview import KEY_SETTINGS, RunPanel, shown_setting
    from visualizer.view import TangleView

    view = TangleView(height=600, interactive=False)
    graph = TangleGraph()
    graph.add_many(run.tangle.nodes)
    view.reset(graph)
    view.set_reference(run.tangle.reference)
    view.show_until(len(graph))
    view.set_tips(run.tangle.tips)
    view.refresh()
    view.show_all()
    banded = report_expand.attach(view)  # the bands expand on zoom without a server
    panel = RunPanel(filename=f"{run.name}-metrics.csv")
    panel.update(run.history(), complete=run.complete)
    accuracy = run.metrics[-1].get("tangle_accuracy") if run.metrics else None
    view.set_header(
        f"tangle as {run.tangle.peer or 'lab'} holds it",
        len(view.tips.data["y"]),
        graph.depth,
        accuracy,
        accuracy_label="mean reference accuracy of the honest peers",
    )
    config = run.config
    described = ", ".join(
        f"{label} {config[key]}"
        for key, label in KEY_SETTINGS
        if key in config and shown_setting(key, config)
    )
    title = f"Learning Tangle lab run: {described}" if described else "Learning Tangle lab run"
    if not run.complete:
        title += " (incomplete)"
    intro = Div(
        text=f"<h2 style='margin:4px 0'>{html.escape(title)}</h2>"
        f"<p>{len(graph)} transactions. Hover one for its id, author, time, accuracy and parents."
        + (
            " Older rounds are bands (hover: count, authors, mean accuracy); zoom in with the mouse wheel to "
            "fewer than 150 heights to see their transactions (ids shortened there)."
            if banded
            else ""
        )
        + "</p>",
        sizing_mode="stretch_width",
    )
    layout = column(intro, panel.header, view.header, view.layout, panel.layout, sizing_mode="stretch_width")
    return layout, title
