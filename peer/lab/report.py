"""The lab's output folder and its end-of-run summary table."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

from rich.console import Console
from rich.table import Table

from peer.lab.runner import LabResult, PeerRound, RoundRecord
from peer.plugins import LabOutputWriter, lab_output_writers


def write_outputs(
    result: LabResult, out: Path, writers: dict[str, LabOutputWriter] | None = None
) -> dict[str, Path]:
    """The output folder; `writers` add files after these (default: the registered ones, i.e. the
    visualizer's report.html when it is installed)."""
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
    paths["tangle"].write_text(json.dumps(result.tangle, separators=(",", ":")) + "\n")
    if result.backend:  # over IPFS: the whole tangle as a CAR file, written while the testnet ran
        paths["car"] = out / result.backend["car"]
    plot_accuracy(result, paths["plot"])
    for name, write in (lab_output_writers() if writers is None else writers).items():
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


def plot_accuracy(result: LabResult, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rounds = [r.round for r in result.rounds]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=110)
    ax.plot(rounds, [r.tangle_accuracy for r in result.rounds], label="tangle (reference model)", marker=".")
    if result.rounds and result.rounds[0].fedavg_accuracy is not None:
        ax.plot(
            rounds, [r.fedavg_accuracy for r in result.rounds], label="FedAvg", marker=".", linestyle="--"
        )
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
    keys = [("accuracy", "{:.3f}"), ("loss", "{:.3f}")]
    if result.settings.poison == "labelflip":
        keys.append(("misclassification_3_as_8", "{:.1%}"))
    for key, fmt in keys:
        row = [key.replace("_", " "), fmt.format(summary["tangle"][key])]
        if has_baseline:
            row.append(fmt.format(summary["fedavg"][key]))
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
