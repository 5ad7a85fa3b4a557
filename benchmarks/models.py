"""Local training, numpy against TensorFlow Lite, side by side: seconds per epoch and peak memory.

Each (model, backend) runs in a fresh child process, so its peak resident memory (ru_maxrss) is its own:
the child imports the backend, builds the model, makes the data, trains a warm-up epoch and then times
`--epochs` epochs, in CPU seconds of the process (both backends run on one thread, so CPU time is the work
done, and other load on a shared machine disturbs it far less than wall time, which is also listed).
"rss_before_mb" is the memory after set-up (imports, model, data, weights); the peak is
the process's peak up to the end of training (the loss on 200 samples is computed after it). Both backends
train the same steps (the same permutation, batch 10, SGD); the tflite runtime runs on one thread, numpy
with OPENBLAS_NUM_THREADS=1 (the Makefile's and the lab's setting).

Inputs: the MLP and the small CNN on the UCI digits (real data) and on FEMNIST-shaped data; the LEAF CNN on
FEMNIST-shaped data only. No package ships FEMNIST, so FEMNIST-shaped data is uniform noise in [0, 1] with
random labels (28x28, 62 classes): training time does not depend on the pixel values.

    python benchmarks/models.py [--samples 1000] [--epochs 1] [--only mlp-femnist ...]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from typing import Any

CASES = {
    # name: (numpy MODEL / TFLITE_ARCH, dataset)
    "mlp-digits": ("mlp", "digits"),
    "cnn-digits": ("cnn", "digits"),
    "mlp-femnist": ("mlp", "femnist"),
    "cnn-femnist": ("cnn", "femnist"),
    "femnist-cnn": ("femnist-cnn", "femnist"),
}


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def child(case: str, backend: str, samples: int, epochs: int) -> dict[str, Any]:
    import numpy as np

    from peer.data import load_dataset
    from peer.models import TrainParams, create_model

    arch, dataset = CASES[case]
    if dataset == "digits":
        data = load_dataset("digits", None)
        x, y, shape, classes = data.x[:samples], data.y[:samples], data.input_shape, data.num_classes
    else:
        rng = np.random.default_rng(0)
        shape, classes = (28, 28, 1), 62
        x = rng.uniform(0, 1, (samples, *shape)).astype(np.float32)
        y = rng.integers(0, classes, samples)
    model = (
        create_model(backend, shape, classes, tflite_arch=arch)
        if backend == "tflite"
        else create_model(arch, shape, classes)
    )
    weights = model.init_weights(np.random.default_rng(0))
    params = TrainParams(learning_rate=0.05, batch_size=10, epochs=1)
    before = rss_mb()
    weights = model.train(weights, x, y, params, np.random.default_rng(1))  # warm-up
    started, cpu_started = time.perf_counter(), time.process_time()
    for epoch in range(epochs):
        weights = model.train(weights, x, y, params, np.random.default_rng(2 + epoch))
    seconds = (time.perf_counter() - started) / epochs
    cpu_seconds = (time.process_time() - cpu_started) / epochs
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # training's peak, before evaluation
    loss = model.evaluate(weights, x[:200], y[:200]).loss
    return {
        "architecture": model.architecture,
        "samples": len(y),
        "seconds_per_epoch": round(seconds, 4),
        "cpu_seconds_per_epoch": round(cpu_seconds, 4),
        "rss_before_mb": round(before, 1),
        "peak_rss_mb": round(peak, 1),
        "train_loss_after": round(loss, 4),
    }


def run_child(case: str, backend: str, samples: int, epochs: int) -> dict[str, Any]:
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    args = [
        sys.executable,
        __file__,
        "--child",
        case,
        backend,
        "--samples",
        str(samples),
        "--epochs",
        str(epochs),
    ]
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def fastest(runs: list[dict[str, Any]]) -> dict[str, Any]:
    best = dict(min(runs, key=lambda run: float(run["cpu_seconds_per_epoch"])))
    best["cpu_seconds_per_epoch_runs"] = [run["cpu_seconds_per_epoch"] for run in runs]
    best["peak_rss_mb"] = max(float(run["peak_rss_mb"]) for run in runs)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="runs per backend, alternating")
    parser.add_argument("--only", nargs="*", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--child", nargs=2, metavar=("CASE", "BACKEND"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child[0], args.child[1], args.samples, args.epochs)))
        return
    results = {}
    for case in args.only:
        # numpy and tflite alternate, and each keeps its least CPU time: other load on a shared machine only
        # ever slows a run down (cache and frequency), so the minimum is the least disturbed (all are listed)
        runs: dict[str, list[dict[str, Any]]] = {"numpy": [], "tflite": []}
        for _ in range(args.repeats):
            for backend in runs:
                runs[backend].append(run_child(case, backend, args.samples, args.epochs))
        numpy_run, tflite_run = (fastest(runs[backend]) for backend in ("numpy", "tflite"))
        results[case] = {
            "numpy": numpy_run,
            "tflite": tflite_run,
            "tflite_cpu_time_ratio": round(
                float(tflite_run["cpu_seconds_per_epoch"]) / float(numpy_run["cpu_seconds_per_epoch"]), 2
            ),
            "tflite_peak_ratio": round(float(tflite_run["peak_rss_mb"]) / float(numpy_run["peak_rss_mb"]), 2),
        }
        print(json.dumps({case: results[case]}), file=sys.stderr, flush=True)
    print(
        json.dumps(
            {
                "benchmark": "models",
                "samples": args.samples,
                "batch_size": 10,
                "repeats": args.repeats,
                "load_average_1m": round(os.getloadavg()[0], 1),
                "results": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
