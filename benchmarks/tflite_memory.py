"""Where a TensorFlow Lite model's memory goes, signature by signature (the profile behind peer_footprint.py).

One fresh process per model: the resident memory (VmRSS) after importing numpy, the peer's model package and
the runtime, after building the TFLiteModel (the interpreter and the CALL_ONCE init of the variables, whose
initial values are then dropped from the mapped file), after numpy's initial weights, and after the first
call of each signature. Every signature has its own arena, allocated at its first call and kept: set_weights
holds one input tensor per weight, get_weights one output per weight, infer and train a READ_VARIABLE copy
of every weight they use (and BATCH_MATMUL a transposed copy of a variable kernel), train its gradients and
updates besides. "weights_mb" is one weight set, the unit these steps are counted in. Freed heap pages are
returned before every reading (as the daemon does after every round).

    python benchmarks/tflite_memory.py [--only mlp-digits cnn-digits femnist-cnn]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from typing import Any

CASES = {
    "mlp-digits": ("mlp", (8, 8, 1), 10),
    "cnn-digits": ("cnn", (8, 8, 1), 10),
    "femnist-cnn": ("femnist-cnn", (28, 28, 1), 62),
}


def child(case: str) -> dict[str, Any]:
    from peer.memory import release_freed_memory, resident_kb

    steps: dict[str, float] = {}

    def step(name: str) -> None:
        release_freed_memory()  # what is held, not what glibc keeps for reuse
        steps[name] = round(resident_kb() / 1024, 1)

    step("python")
    import numpy as np

    step("numpy")
    from peer.models import TrainParams, create_model
    from peer.models.tflite import TFLiteModel, load_interpreter_class

    step("peer_models")

    load_interpreter_class()
    step("runtime_imported")
    arch, shape, classes = CASES[case]
    model = create_model("tflite", shape, classes, tflite_arch=arch)
    assert isinstance(model, TFLiteModel)
    step("model_built")
    rng = np.random.default_rng(0)
    weights = model.init_weights(rng)
    step("weights_in_numpy")
    model._set_weights(weights)
    step("set_weights")
    trained = model._get_weights()
    del trained
    step("get_weights")
    x = rng.uniform(0, 1, (model.train_batch, *shape)).astype(np.float32)
    y = rng.integers(0, classes, model.train_batch)
    model.train(weights, x, y, TrainParams(learning_rate=0.05), rng)
    step("train")
    model.predict(weights, x)
    step("infer")
    return {
        "architecture": model.architecture,
        "weights_mb": round(sum(a.nbytes for a in weights.values()) / 2**20, 1),
        "model_file_mb": round(model.path.stat().st_size / 2**20, 1),
        "rss_mb_after": steps,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="*", choices=list(CASES), default=list(CASES))
    parser.add_argument("--child", choices=list(CASES), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1", "TF_CPP_MIN_LOG_LEVEL": "3"}
    results = {}
    for case in args.only:
        done = subprocess.run(
            [sys.executable, __file__, "--child", case], env=env, capture_output=True, text=True, check=True
        )
        results[case] = json.loads(done.stdout.strip().splitlines()[-1])
        print(json.dumps({case: results[case]}), file=sys.stderr, flush=True)
    load = round(os.getloadavg()[0], 1)
    print(json.dumps({"benchmark": "tflite_memory", "load_average_1m": load, "results": results}, indent=2))


if __name__ == "__main__":
    main()
