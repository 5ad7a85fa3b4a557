"""The run view: an experiment's settings, its final metrics and its curves by lab round; and several runs
compared. The same models serve the live page (history from the lab's `/api/lab`), the replay of a folder
and the static report; only the data differs (`peer.api.schema.LabHistory` in every case).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from bokeh.layouts import column, gridplot, row
from bokeh.models import Button, ColumnDataSource, CustomJS, Div, HoverTool, Range1d, Span
from bokeh.palettes import Category10_10

from peer.api.schema import LabHistory

# the settings a researcher reads first, in this order (the rest follow under "all settings")
KEY_SETTINGS = (
    ("poison", "attack"),
    ("malicious_fraction", "malicious fraction"),
    ("poison_from", "attack from round"),
    ("tip_selector", "tip selector"),
    ("alpha", "alpha"),
    ("accuracy_alpha", "accuracy alpha"),
    ("model", "model"),
    ("dataset", "data"),
    ("partition", "partition"),
    ("dirichlet_alpha", "Dirichlet alpha"),
    ("peers", "peers"),
    ("rounds", "rounds"),
    ("seed", "seed"),
)
HISTORY_COLUMNS = (
    "round", "tangle_accuracy", "tangle_loss", "tangle_3as8", "fedavg_accuracy", "fedavg_loss", "fedavg_3as8",
    "peers_min", "peers_max", "transactions", "tips",
)  # fmt: skip
FINAL_ROWS = (
    ("accuracy", "accuracy", "{:.3f}"),
    ("loss", "loss", "{:.3f}"),
    ("misclassification_3_as_8", "3 read as 8", "{:.1%}"),
)
# CSV of the history source, downloaded by the browser (works in the static report too)
CSV_JS = """
const data = source.data;
const lines = [columns.join(',')];
for (let i = 0; i < data['round'].length; i++) {
  const cells = columns.map(c => data[c][i]);
  lines.push(cells.map(v => (v == null || Number.isNaN(v)) ? '' : v).join(','));
}
const blob = new Blob([lines.join('\\n') + '\\n'], {type: 'text/csv'});
const link = document.createElement('a');
link.href = URL.createObjectURL(blob);
link.download = filename;
link.click();
setTimeout(() => URL.revokeObjectURL(link.href), 1000);
"""
TABLE_CSS = """<style>
table.run { border-collapse: collapse; font-size: 12px; margin: 2px 12px 2px 0; }
table.run td, table.run th { border: 1px solid #ddd; padding: 1px 6px; text-align: left; }
table.run th { background: #f3f3f3; }
details.run summary { cursor: pointer; font-size: 12px; }
</style>"""


def attacked(config: dict[str, Any]) -> bool:
    return str(config.get("poison", "none")) not in ("none", "None", "")


def history_columns(history: LabHistory) -> dict[str, list[Any]]:
    """One row a round: the tangle's (mean over honest peers) and FedAvg's metrics, the peers' band."""
    honest = set(history.malicious_peers)
    by_round: dict[int, list[float]] = {}
    for record in history.peers:
        accuracy = _number(record.get("accuracy"))
        round_index = _number(record.get("round"))
        if accuracy is None or round_index is None or str(record.get("peer")) in honest:
            continue
        by_round.setdefault(int(round_index), []).append(accuracy)
    columns: dict[str, list[Any]] = {c: [] for c in HISTORY_COLUMNS}
    for record in history.metrics:
        round_index = _number(record.get("round"))
        if round_index is None:
            continue
        band = by_round.get(int(round_index), [])
        values = {
            "round": round_index,
            "tangle_accuracy": record.get("tangle_accuracy"),
            "tangle_loss": record.get("tangle_loss"),
            "tangle_3as8": record.get("tangle_misclassification_3_as_8"),
            "fedavg_accuracy": record.get("fedavg_accuracy"),
            "fedavg_loss": record.get("fedavg_loss"),
            "fedavg_3as8": record.get("fedavg_misclassification_3_as_8"),
            "peers_min": min(band) if band else record.get("tangle_accuracy"),
            "peers_max": max(band) if band else record.get("tangle_accuracy"),
            "transactions": record.get("transactions"),
            "tips": record.get("tips"),
        }
        for key, value in values.items():
            number = _number(value)
            columns[key].append(math.nan if number is None else number)
    return columns


def final_metrics(history: LabHistory) -> dict[str, dict[str, float | None]]:
    """The last round's tangle and FedAvg accuracy, loss and 3-as-8 rate."""
    last = history.metrics[-1] if history.metrics else {}
    out: dict[str, dict[str, float | None]] = {"tangle": {}, "fedavg": {}}
    for side in out:
        for key, _label, _fmt in FINAL_ROWS:
            out[side][key] = _number(last.get(f"{side}_{key}"))
    return out


def config_html(config: dict[str, Any], *, complete: bool = True, rounds_done: int | None = None) -> str:
    """The key settings as one table row, every setting under a fold (all escaped)."""
    if not config:
        return "<p class='run-config'>no experiment settings (not a lab, or summary.json missing)</p>"
    cells = "".join(
        f"<th>{html.escape(label)}</th>"
        for key, label in KEY_SETTINGS
        if key in config and shown_setting(key, config)
    )
    values = "".join(
        f"<td>{html.escape(_fmt(config[key]))}</td>"
        for key, _l in KEY_SETTINGS
        if key in config and shown_setting(key, config)
    )
    everything = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_fmt(v))}</td></tr>"
        for k, v in sorted(config.items())
    )
    state = ""
    if not complete:
        state = (
            f"<p class='incomplete' style='color:#b00020'>incomplete run: interrupted after {rounds_done} "
            f"of {html.escape(_fmt(config.get('rounds', '?')))} rounds</p>"
        )
    return (
        f"{state}<table class='run run-config'><tr>{cells}</tr><tr>{values}</tr></table>"
        "<details class='run'><summary>all settings</summary>"
        f"<table class='run'>{everything}</table></details>"
    )


def final_html(final: dict[str, dict[str, float | None]], *, title: str = "final metrics") -> str:
    has_fedavg = any(v is not None for v in final["fedavg"].values())
    head = "<th></th><th>tangle</th>" + ("<th>FedAvg</th>" if has_fedavg else "")
    rows = []
    for key, label, fmt in FINAL_ROWS:
        cells = [f"<td>{html.escape(label)}</td>", f"<td>{_metric(final['tangle'][key], fmt)}</td>"]
        if has_fedavg:
            cells.append(f"<td>{_metric(final['fedavg'][key], fmt)}</td>")
        rows.append(f"<tr>{''.join(cells)}</tr>")
    return f"<table class='run run-final' title='{html.escape(title)}'><tr>{head}</tr>{''.join(rows)}</table>"


class RunPanel:
    """Header (settings, final metrics) and strip panels by lab round, updated from a LabHistory."""

    def __init__(self, *, filename: str = "metrics.csv") -> None:
        self.source = ColumnDataSource({c: [] for c in HISTORY_COLUMNS}, name="history")
        self.header = Div(name="run_header", text="", sizing_mode="stretch_width")
        self.attack = Span(
            name="attack_start",
            location=0,
            dimension="height",
            line_color="#b00020",
            line_dash="dashed",
            visible=False,
        )
        common: dict[str, Any] = {"height": 190, "toolbar_location": None, "x_axis_label": "lab round"}
        self.accuracy = _strip("reference accuracy of every peer (band: min-max of honest peers)", common)
        self.accuracy.y_range = Range1d(0, 1.02)
        self.accuracy.varea(
            "round", "peers_min", "peers_max", source=self.source, fill_color="#d62728", fill_alpha=0.18,
            legend_label="peers (min-max)",
        )  # fmt: skip
        self.accuracy.line("round", "tangle_accuracy", source=self.source, line_width=2, color="#d62728",
                           legend_label="tangle (mean)")  # fmt: skip
        self.fedavg_line = self.accuracy.line(
            "round", "fedavg_accuracy", source=self.source, line_width=2, color="#555555", line_dash="dashed",
            legend_label="FedAvg", name="fedavg_accuracy_line",
        )  # fmt: skip
        self.loss = _strip("loss (mean of honest peers)", common)
        self.loss.line(
            "round", "tangle_loss", source=self.source, line_width=2, color="#d62728", legend_label="tangle"
        )
        self.fedavg_loss = self.loss.line(
            "round", "fedavg_loss", source=self.source, line_width=2, color="#555555", line_dash="dashed",
            legend_label="FedAvg",
        )  # fmt: skip
        self.misread = _strip("3 read as 8", common, name="strip_misread")
        self.misread.y_range = Range1d(0, 1)
        self.misread.line(
            "round", "tangle_3as8", source=self.source, line_width=2, color="#d62728", legend_label="tangle"
        )
        self.fedavg_misread = self.misread.line(
            "round", "fedavg_3as8", source=self.source, line_width=2, color="#555555", line_dash="dashed",
            legend_label="FedAvg",
        )  # fmt: skip
        self.growth = _strip("transactions", common)
        self.growth.line("round", "transactions", source=self.source, line_width=2, color="#1f77b4")
        for strip in (self.accuracy, self.loss, self.misread):
            strip.legend.location = "bottom_right" if strip is self.accuracy else "top_right"
            strip.legend.label_text_font_size = "8pt"
            strip.legend.padding = 2
            strip.legend.spacing = 0
            strip.legend.background_fill_alpha = 0.6
        for strip in (self.accuracy, self.loss, self.misread, self.growth):
            strip.add_layout(self.attack)
            tooltips = [("round", "@round"), ("tangle", "@tangle_accuracy{0.000}")]
            strip.add_tools(
                HoverTool(tooltips=[*tooltips, ("FedAvg", "@fedavg_accuracy{0.000}")], mode="vline")
            )
        self.misread.visible = False
        # the shared toolbar's save tool exports all strips as one PNG
        self.strips = gridplot(
            [[self.accuracy, self.loss, self.misread, self.growth]],
            sizing_mode="stretch_width",
            toolbar_location="right",
            merge_tools=True,
        )
        self.csv = Button(label="export CSV", width=110, name="export_csv")
        self.csv.js_on_click(
            CustomJS(
                args={"source": self.source, "columns": list(HISTORY_COLUMNS), "filename": filename},
                code=CSV_JS,
            )
        )
        self.note = Div(text="PNG: the strips' save tool", styles={"font-size": "11px", "color": "#666"})
        # the header goes above the tangle, these below it (a model is laid out in one place only)
        self.layout = column(
            self.strips, row(self.csv, self.note), sizing_mode="stretch_width", name="run_view"
        )
        self.rounds_shown = -1

    def update(self, history: LabHistory, *, complete: bool = True, until: int | None = None) -> None:
        """Draw the history (up to round `until`, for a replay's slider)."""
        columns = history_columns(history)
        if until is not None:
            keep = [i for i, r in enumerate(columns["round"]) if r <= until]
            columns = {k: [v[i] for i in keep] for k, v in columns.items()}
        self.source.data = columns
        config = history.config
        has_fedavg = any(not math.isnan(v) for v in columns["fedavg_accuracy"])
        for renderer in (self.fedavg_line, self.fedavg_loss, self.fedavg_misread):
            renderer.visible = has_fedavg  # no legend entry without a line
        self.misread.visible = attacked(config)
        start = _number(config.get("poison_from"))
        self.attack.visible = attacked(config) and start is not None
        if start is not None:
            self.attack.location = start
        rounds_done = len(history.metrics)
        self.header.text = (
            TABLE_CSS
            + "<div class='run-header' style='display:flex;flex-wrap:wrap;align-items:flex-start'>"
            + f"<div>{config_html(config, complete=complete, rounds_done=rounds_done)}</div>"
            + f"<div>{final_html(final_metrics(history))}</div></div>"
        )
        self.rounds_shown = rounds_done


def compare_layout(runs: Sequence[tuple[str, LabHistory, bool]]) -> Any:
    """Several runs on one chart each for accuracy, loss and 3-as-8, the settings that differ and the final
    metrics of each: `runs` are (label, history, complete)."""
    from bokeh.plotting import figure

    common: dict[str, Any] = {"height": 300, "sizing_mode": "stretch_width", "x_axis_label": "lab round",
                              "tools": "pan,wheel_zoom,box_zoom,reset,save"}  # fmt: skip
    accuracy = figure(title="reference accuracy (tangle: solid, FedAvg: dashed)", name="compare_accuracy",
                      y_range=Range1d(0, 1.02), **common)  # fmt: skip
    loss = figure(title="loss (tangle: solid, FedAvg: dashed)", name="compare_loss", **common)
    misread = figure(title="3 read as 8", name="compare_misread", y_range=Range1d(0, 1), **common)
    any_attack = any(attacked(h.config) for _l, h, _c in runs)
    sources = []
    for number, (label, history, _complete) in enumerate(runs):
        color = Category10_10[number % 10]
        source = ColumnDataSource(history_columns(history), name=f"compare_{number}")
        sources.append(source)
        for fig, field in ((accuracy, "accuracy"), (loss, "loss"), (misread, "3as8")):
            fig.line("round", f"tangle_{field}", source=source, color=color, line_width=2, legend_label=label)
            if any(not math.isnan(v) for v in source.data[f"fedavg_{field}"]):
                fig.line("round", f"fedavg_{field}", source=source, color=color, line_width=1.5,
                         line_dash="dashed", legend_label=f"{label} FedAvg")  # fmt: skip
        start = _number(history.config.get("poison_from"))
        if attacked(history.config) and start is not None:
            for fig in (accuracy, loss, misread):
                fig.add_layout(Span(location=start, dimension="height", line_color=color, line_dash="dotted"))
    for fig in (accuracy, loss, misread):
        fig.legend.location = "bottom_right" if fig is accuracy else "top_right"
        fig.legend.label_text_font_size = "8pt"
        fig.legend.click_policy = "hide"
    misread.visible = any_attack
    return column(
        Div(text=TABLE_CSS + compare_html(runs), name="compare_tables", sizing_mode="stretch_width"),
        accuracy,
        row(loss, misread, sizing_mode="stretch_width"),
        sizing_mode="stretch_width",
        name="compare",
    )


def compare_html(runs: Sequence[tuple[str, LabHistory, bool]]) -> str:
    """The settings that differ between the runs, and each run's final metrics (all escaped)."""
    configs = [h.config for _l, h, _c in runs]
    keys = sorted({k for c in configs for k in c})
    differing = [k for k in keys if len({_fmt(c.get(k, "-")) for c in configs}) > 1]
    head = "<th>run</th>" + "".join(f"<th>{html.escape(k)}</th>" for k in differing)
    rows = "".join(
        f"<tr><td>{html.escape(label)}</td>"
        + "".join(f"<td>{html.escape(_fmt(history.config.get(k, '-')))}</td>" for k in differing)
        + "</tr>"
        for label, history, _c in runs
    )
    diff = (
        f"<table class='run compare-diff'><tr>{head}</tr>{rows}</table>"
        if differing
        else "<p>the runs' settings are the same</p>"
    )
    final_head = "<th>run</th><th>complete</th>" + "".join(
        f"<th>{side} {html.escape(label)}</th>"
        for side in ("tangle", "FedAvg")
        for _k, label, _f in FINAL_ROWS
    )
    final_rows = ""
    for label, history, complete in runs:
        final = final_metrics(history)
        cells = "".join(
            f"<td>{_metric(final[side][key], fmt)}</td>"
            for side in ("tangle", "fedavg")
            for key, _l, fmt in FINAL_ROWS
        )
        final_rows += f"<tr><td>{html.escape(label)}</td><td>{'yes' if complete else 'no'}</td>{cells}</tr>"
    return (
        "<h4 style='margin:4px 0'>settings that differ</h4>" + diff
        + "<h4 style='margin:4px 0'>final metrics</h4>"
        + f"<table class='run compare-final'><tr>{final_head}</tr>{final_rows}</table>"
    )  # fmt: skip


def _strip(title: str, common: dict[str, Any], name: str | None = None) -> Any:
    from bokeh.plotting import figure

    tools = "pan,wheel_zoom,reset,save"
    fig = figure(title=title, name=name, sizing_mode="stretch_width", tools=tools, **common)
    fig.title.text_font_size = "9pt"
    fig.xaxis.axis_label_text_font_size = "8pt"
    fig.xaxis.major_label_text_font_size = "8pt"
    fig.yaxis.major_label_text_font_size = "8pt"
    return fig


def shown_setting(key: str, config: dict[str, Any]) -> bool:
    """Attack details only with an attack; the Dirichlet alpha only with that partition."""
    if key in ("malicious_fraction", "poison_from"):
        return attacked(config)
    if key == "dirichlet_alpha":
        return config.get("partition") == "dirichlet"
    if key == "accuracy_alpha":
        return config.get("tip_selector") == "accuracy"
    return True


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if value is None:
        return "-"
    return str(value)


def _metric(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None
