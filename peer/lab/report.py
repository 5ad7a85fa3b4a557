"""The lab's output folder and its end-of-run summary table."""

from __future__ import annotations

import csv
import dataclasses
import json
from collections.abc import Callable, Mapping
from pathlib import Path

from rich.console import Console
from rich.table import Table

from peer.lab.runner import LabResult, PeerRound, RoundRecord

# writes a report of a lab output folder, returns its path (or None when it cannot be made): the command line
# passes the visualizer's report.html here, so that the peer never imports the visualizer
ReportWriter = Callable[[Path], Path | None]


def write_outputs(
    result: LabResult, out: Path, reports: Mapping[str, ReportWriter] | None = None
) -> dict[str, Path]:
    """The output folder; `reports` add files after these (the command line passes the visualizer's
    report.html)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary": out / "summary.json",
        "metrics": out / "metrics.csv",
        "peers": out / "peers.csv",
        "tangle": out / "tangle.json",
        "plot": out / "accuracy.png",
    }
    paths["summary"].write_text(json.dumps(result.summary(), indent=2, sort_keys=True) + "\n")
    _write_csv(paths["metrics"], RoundRecord, result.rounds)
    _write_csv(paths["peers"], PeerRound, result.peer_rounds)
    paths["tangle"].write_bytes(result.tangle.json_bytes() + b"\n")
    if result.backend:  # over IPFS: the whole tangle as a CAR file, written while the testnet ran
        paths["car"] = out / result.backend["car"]
    if not plot_accuracy(result, paths["plot"]):
        del paths["plot"]  # no matplotlib (the lab extra): the peer image runs labs without plots
    for name, write in (reports or {}).items():
        written = write(out)  # None: the writer has nothing to add (e.g. Bokeh missing)
        if written is not None:
            paths[name] = written
    return paths


def _write_csv(path: Path, kind: type, rows: list) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=[f.name for f in dataclasses.fields(kind)])
        writer.writeheader()
        for row in rows:
            writer.writerow(dataclasses.asdict(row))


def plot_accuracy(result: LabResult, path: Path) -> bool:
    try:
        import matplotlib
    except ImportError:
        return False

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in result.rounds]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(rounds, [r.tangle_accuracy for r in result.rounds], label="tangle (reference model)", marker=".")
    fedavg = [r.fedavg_accuracy for r in result.rounds]
    if all(a is not None for a in fedavg):
        ax.plot(rounds, fedavg, label="FedAvg", marker=".", linestyle="--")  # type: ignore[arg-type]
    if result.settings.poison == "labelflip":
        ax.plot(
            rounds, [r.tangle_misclassification_3_as_8 for r in result.rounds], label="tangle: 3 read as 8"
        )
    s = result.settings
    ax.set(
        xlabel="round",
        ylabel="accuracy on the peers' local test sets",
        ylim=(0, 1),
        title=f"{s.peers} peers, {s.model}, {s.dataset} ({s.partition}), seed {s.seed}",
    )
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def print_summary(result: LabResult, paths: dict[str, Path], console: Console) -> None:
    summary = result.summary()
    if not result.rounds:
        console.print("no round completed; outputs: " + ", ".join(str(p) for p in paths.values()))
        return
    table = Table(title="Learning Tangle lab", show_lines=False)
    table.add_column("")
    table.add_column("tangle", justify="right")
    has_baseline = "fedavg" in summary
    if has_baseline:
        table.add_column("FedAvg", justify="right")
    for key in ("accuracy", "loss"):
        row = [key, f"{summary['tangle'][key]:.3f}"]
        if has_baseline:
            row.append(f"{summary['fedavg'][key]:.3f}")
        table.add_row(*row)
    for cell in summary["tangle"].get("watch", {}):  # --watch, or the attack's own cells (3:8 for labelflip)
        true, predicted = cell.split(":")
        row = [f"{true} read as {predicted}", f"{summary['tangle']['watch'][cell]:.1%}"]
        if has_baseline:
            row.append(f"{summary['fedavg']['watch'][cell]:.1%}")
        table.add_row(*row)
    console.print(table)
    t = summary["tangle"]
    console.print(
        f"{t['transactions']} transactions, {t['tips']} tips, {t['published']} of {t['trainings']} trainings "
        f"published; {result.trainings / max(result.seconds, 1e-9):.1f} peer-trainings/s over "
        f"{result.seconds:.1f} s"
    )
    if result.rejected:
        console.print(f"rejected by peers: {result.rejected}")
    console.print("outputs: " + ", ".join(str(p) for p in paths.values()))
