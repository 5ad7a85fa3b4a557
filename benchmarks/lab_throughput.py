"""Peer-trainings per second of `tangle lab` (MLP on digits) and its peak memory, with one worker process
and with two, side by side in one run.

    python benchmarks/lab_throughput.py [--peers 10] [--rounds 10]

Peak memory is the largest resident set of the runner and of any worker process (getrusage ru_maxrss),
and per peer the workers' peak divided by the peers they host.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROBE = """
import json, resource, sys, time
from peer.config import LabSettings, parse
from peer.lab.runner import run_lab
settings = parse(LabSettings, env=False, peers={peers}, rounds={rounds}, workers={workers}, seed=0,
                 baseline="none", progress=False, out={out!r})
started = time.perf_counter()
result = run_lab(settings)
seconds = time.perf_counter() - started
print(json.dumps({{
    "trainings": result.trainings,
    "seconds": seconds,
    "self_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
    "children_kib": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss,
    "accuracy": result.summary()["tangle"]["accuracy"],
}}))
"""


def run(peers: int, rounds: int, workers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as out:
        code = PROBE.format(peers=peers, rounds=rounds, workers=workers, out=str(Path(out)))
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    worker_kib = measured["children_kib"] if workers > 1 else measured["self_kib"]
    return {
        "workers": workers,
        "peers": peers,
        "rounds": rounds,
        "trainings": measured["trainings"],
        "seconds": measured["seconds"],
        "trainings_per_second": measured["trainings"] / measured["seconds"],
        "peak_rss_bytes": max(measured["self_kib"], measured["children_kib"]) * 1024,
        "peak_rss_bytes_per_peer": worker_kib * 1024 / (peers / workers),
        "accuracy": measured["accuracy"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--peers", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=30)
    args = parser.parse_args()
    started = time.perf_counter()
    one = run(args.peers, args.rounds, 1)
    two = run(args.peers, args.rounds, 2)
    print(
        json.dumps(
            {
                "results": [one, two],
                "speedup_two_workers": two["trainings_per_second"] / one["trainings_per_second"],
                "same_accuracy": one["accuracy"] == two["accuracy"],
                "benchmark_seconds": time.perf_counter() - started,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
