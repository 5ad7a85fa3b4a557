"""The lab at 10, 100 and 1,000 peers, side by side in one run: wall time per peer-training and peak memory
per peer (fake model, where the data cannot be split 1,000 ways), and the tangle's accuracy against FedAvg
(MLP on digits, iid; with a LEAF FEMNIST file also split by writer), with its scale settings and without.

    python benchmarks/lab_scale.py [--peers 10 100 1000] [--rounds 20] [--fake-params 20000]
                                   [--active-peers N | --active-quota Q] [--accuracy-peers 100]
                                   [--accuracy-rounds 30]
                                   [--leaf FILE_OR_DIR] [--skip-cost] [--skip-accuracy]

Cost runs: the fake model (`--fake-params` float32 parameters) on a FEMNIST-like synthetic set of 10
samples per writer and one writer per peer (the fake model ignores the pixels, so per-peer work is the same
at every size), 2 worker processes, no baseline. Peak memory is the largest sum of the resident sets of the
runner and its workers, sampled every 0.1 s; per peer it is that divided by the peers. `--active-peers N`
caps the trainings per round at about N (active quota N / peers) where the machine is too busy for
1,000 trainings a round; every peer still exists, holds its data and takes in every transaction;
`--active-quota Q` makes Q of the peers active at every size (the papers: 15 of hundreds, about 0.15). Time is
reported as wall seconds and as CPU seconds of the runner and its workers (what the lab itself used, whatever
else loads the machine), each per peer-training, with the load average; "rounds_" figures leave out start-up
and round 1 (process start, imports, the data split), which weigh most in the smallest lab.

Accuracy runs: each lab trains FedAvg beside the tangle on the same split, active peers and local work;
"attack" runs make the last 20% of the peers publish random weights from round 1. Every lab runs in its own
process, one at a time (so memory and time are not shared between them).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from peer.data import femnist

PROBE = """
import json, os, resource, sys, threading, time
import multiprocessing
from peer.config import LabSettings, parse
from peer.lab.runner import run_lab

def rss(pid):
    try:
        with open(f"/proc/{pid}/status") as status:
            return next(int(l.split()[1]) * 1024 for l in status if l.startswith("VmRSS"))
    except (OSError, StopIteration):
        return 0

peak = [0]
done = threading.Event()
def sample():
    while not done.is_set():
        total = rss(os.getpid()) + sum(rss(c.pid) for c in multiprocessing.active_children())
        peak[0] = max(peak[0], total)
        done.wait(0.1)

TICK = os.sysconf("SC_CLK_TCK")
def tree_cpu():
    # CPU seconds of this process and its live workers so far
    usage = resource.getrusage(resource.RUSAGE_SELF)
    total = usage.ru_utime + usage.ru_stime
    for child in multiprocessing.active_children():
        try:
            with open(f"/proc/{child.pid}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK  # utime, stime
        except OSError:
            pass
    return total

after_round = {}
def on_round(record):
    after_round[record.round] = (tree_cpu(), time.perf_counter())

if __name__ == "__main__":
    settings = parse(LabSettings, env=False, progress=False, **json.loads(sys.argv[1]))
    threading.Thread(target=sample, daemon=True).start()
    started = time.perf_counter()
    result = run_lab(settings, on_round=on_round)
    seconds = time.perf_counter() - started
    done.set()
    # this process and its (joined) workers: what the lab cost, whatever else runs on the machine
    cpu = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    summary = result.summary()
    print(json.dumps({
        "seconds": seconds,
        "cpu_seconds": cpu,
        # rounds 2..last only: no start-up (processes, imports, data), which weighs most in the smallest lab
        "rounds_cpu_seconds": after_round[settings.rounds][0] - after_round[1][0],
        "rounds_seconds": after_round[settings.rounds][1] - after_round[1][1],
        "rounds_trainings": sum(r.active for r in result.rounds[1:]),
        "load_average": os.getloadavg(),
        "trainings": result.trainings,
        "peak_rss_bytes": peak[0],
        "tangle": summary["tangle"]["accuracy"],
        "fedavg": summary.get("fedavg", {}).get("accuracy"),
        "transactions": summary["tangle"]["transactions"],
    }))
"""

# the learning-at-scale settings (README: "The lab at 100 peers and more")
SCALE: dict[str, Any] = {"num_of_tips": 4, "tip_sample_size": 8, "reference_depth": 3}


def synthetic_femnist(path: Path, writers: int, per_writer: int = 10) -> Path:
    """A converted-FEMNIST archive of random pixels: `writers` writers of `per_writer` samples each."""
    rng = np.random.default_rng(0)
    n = writers * per_writer
    np.savez_compressed(
        path,
        x=rng.integers(0, 256, (n, 28, 28), dtype=np.uint8),
        y=rng.integers(0, 62, n).astype(np.uint8),
        writers=np.repeat(np.arange(writers, dtype=np.int32), per_writer),
        writer_names=np.array([f"synthetic_{i:05d}" for i in range(writers)]),
        format_version=np.int32(femnist._FORMAT_VERSION),  # what convert_leaf writes
    )
    return path


def probe(settings: dict[str, Any]) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as out:
        settings = {"out": out, **settings}
        done = subprocess.run(
            [sys.executable, "-c", PROBE, json.dumps(settings)], capture_output=True, text=True
        )
    if done.returncode != 0:
        raise SystemExit(f"lab {settings} failed:\n{done.stderr[-3000:]}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps({"settings": settings, **measured}), file=sys.stderr)
    return measured


def cost(
    peers: list[int], rounds: int, fake_params: int, folder: Path, quota: Callable[[int], float]
) -> dict[str, Any]:
    load_before = os.getloadavg()
    rows = []
    for count in peers:
        data = synthetic_femnist(folder / f"synthetic-{count}.npz", count)
        measured = probe(
            {
                "peers": count,
                "rounds": rounds,
                "model": "fake",
                "fake_params": fake_params,
                "dataset": "femnist",
                "dataset_path": str(data),
                "partition": "writer",
                "baseline": "none",
                "workers": 2,
                "active_quota": quota(count),
            }
        )
        rows.append(
            {
                "peers": count,
                "rounds": rounds,
                "active_quota": quota(count),
                "trainings": measured["trainings"],
                "transactions": measured["transactions"],
                "seconds": round(measured["seconds"], 1),
                "seconds_per_training": measured["seconds"] / measured["trainings"],
                "cpu_seconds": round(measured["cpu_seconds"], 1),
                "cpu_seconds_per_training": measured["cpu_seconds"] / measured["trainings"],
                "rounds_cpu_seconds_per_training": measured["rounds_cpu_seconds"]
                / measured["rounds_trainings"],
                "rounds_seconds_per_training": measured["rounds_seconds"] / measured["rounds_trainings"],
                "load_average_after": measured["load_average"],
                "peak_rss_bytes": measured["peak_rss_bytes"],
                "peak_rss_bytes_per_peer": measured["peak_rss_bytes"] / count,
            }
        )
    base = rows[0]
    for row in rows:
        row["time_ratio"] = round(row["seconds_per_training"] / base["seconds_per_training"], 3)
        row["cpu_ratio"] = round(row["cpu_seconds_per_training"] / base["cpu_seconds_per_training"], 3)
        row["rounds_cpu_ratio"] = round(
            row["rounds_cpu_seconds_per_training"] / base["rounds_cpu_seconds_per_training"], 3
        )
        row["memory_ratio"] = round(row["peak_rss_bytes_per_peer"] / base["peak_rss_bytes_per_peer"], 3)
    return {"fake_params": fake_params, "load_average_before": load_before, "rows": rows}


def accuracy(peers: int, rounds: int, leaf: Path | None) -> list[dict[str, Any]]:
    setups: list[tuple[str, dict[str, Any]]] = [
        ("10 peers, digits dirichlet 0.5 (the README's defaults)", {"peers": 10}),
        (f"{peers} peers, digits iid", {"peers": peers, "partition": "iid"}),
    ]
    if leaf is not None:
        setups.append(
            (
                f"{peers} peers, FEMNIST by writer",
                {"peers": peers, "dataset": "femnist", "dataset_path": str(leaf), "partition": "writer"},
            )
        )
    rows = []
    for name, base in setups:
        base = {"rounds": rounds, "seed": 1, "workers": 2, "model": "mlp", **base}
        variants: list[tuple[str, dict[str, Any]]] = [("defaults", {})]
        if SCALE:
            variants.append(("scale settings", SCALE))
        for label, extra in variants:
            clean = probe({**base, **extra})
            attacked = probe({**base, **extra, "poison": "random", "malicious_fraction": 0.2})
            rows.append(
                {
                    "setup": name,
                    "settings": label,
                    "tangle": round(clean["tangle"], 4),
                    "fedavg": round(clean["fedavg"], 4),
                    "gap": round(clean["fedavg"] - clean["tangle"], 4),
                    "tangle_random_20pct": round(attacked["tangle"], 4),
                    "fedavg_random_20pct": round(attacked["fedavg"], 4),
                    "attack_cost": round(clean["tangle"] - attacked["tangle"], 4),
                    "seconds": round(clean["seconds"], 1),
                }
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", type=int, nargs="+", default=[10, 100, 1000])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--fake-params", type=int, default=20_000)
    parser.add_argument("--active-peers", type=int, default=None)
    parser.add_argument("--active-quota", type=float, default=None, help="the same quota at every size")
    parser.add_argument("--accuracy-peers", type=int, default=100)
    parser.add_argument("--accuracy-rounds", type=int, default=30)
    parser.add_argument("--leaf", type=Path, default=None, help="LEAF FEMNIST JSON file/folder or .npz")
    parser.add_argument("--skip-cost", action="store_true")
    parser.add_argument("--skip-accuracy", action="store_true")
    args = parser.parse_args()
    if args.leaf is not None and not args.leaf.exists():
        raise SystemExit(f"--leaf: {args.leaf} does not exist")
    if args.active_quota is not None and not 0 < args.active_quota <= 1:
        raise SystemExit(f"--active-quota: {args.active_quota} is not in (0, 1]")
    if args.active_peers is not None and args.active_peers < 1:
        raise SystemExit(f"--active-peers: {args.active_peers} is not a positive number")

    def quota(count: int) -> float:
        if args.active_quota is not None:
            return float(args.active_quota)
        return 1.0 if args.active_peers is None else min(1.0, args.active_peers / count)

    started = time.perf_counter()
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as folder:
        if not args.skip_cost:
            out["cost"] = cost(args.peers, args.rounds, args.fake_params, Path(folder), quota)
    if not args.skip_accuracy:
        out["accuracy"] = accuracy(args.accuracy_peers, args.accuracy_rounds, args.leaf)
    out["benchmark_seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
