"""Peak memory of converting one LEAF FEMNIST file the size of a real one (about 172 MB of JSON, 22,600
samples), streamed as `tangle convert-femnist` does it, against reading it whole with `json.load` (what the
converter did before), side by side in one run.

    python benchmarks/femnist_convert.py [--samples 22600] [--writers 226]

The file is generated (LEAF's layout; pixels like LEAF's: background 1.0, ink as float32 reprs), since LEAF's
data cannot be downloaded here. Each reading runs in a fresh process; its peak is getrusage's ru_maxrss.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

STREAMED = """
import resource, sys, time
from pathlib import Path
from peer.data.femnist import convert_leaf
started = time.perf_counter()
convert_leaf(Path(sys.argv[1]), Path(sys.argv[2]))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started)
"""
WHOLE = """
import json, resource, sys, time
started = time.perf_counter()
with open(sys.argv[1], "rb") as handle:
    doc = json.load(handle)
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, time.perf_counter() - started)
"""


def write_leaf(path: Path, samples: int, writers: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    per_writer = np.full(writers, samples // writers)
    per_writer[: samples % writers] += 1
    names = [f"f{i:04d}_{i % 100:02d}" for i in range(writers)]
    with path.open("w") as out:
        out.write(json.dumps({"users": names, "num_samples": per_writer.tolist()})[:-1])
        out.write(', "user_data": {')
        for w, (name, count) in enumerate(zip(names, per_writer, strict=True)):
            out.write(("" if w == 0 else ", ") + json.dumps(name) + ': {"x": [')
            for s in range(count):
                pixels = np.ones(784, dtype=np.float32)
                ink = rng.random(784) < 0.31  # about 7.6 KB of JSON a sample, as in LEAF
                pixels[ink] = rng.random(int(ink.sum()), dtype=np.float32)
                out.write(("" if s == 0 else ", ") + "[" + ", ".join(map(repr, pixels.tolist())) + "]")
            labels = rng.integers(0, 62, size=count).tolist()
            out.write('], "y": ' + json.dumps(labels) + "}")
        out.write("}}")


def peak(script: str, *args: str) -> tuple[float, float]:
    result = subprocess.run(
        [sys.executable, "-c", script, *args], capture_output=True, text=True, check=True, timeout=1800
    )
    kib, seconds = result.stdout.split()
    return int(kib) / 1024, float(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=22_600)
    parser.add_argument("--writers", type=int, default=226)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        leaf = Path(folder) / "all_data_0.json"
        write_leaf(leaf, args.samples, args.writers)
        streamed_mb, streamed_s = peak(STREAMED, str(leaf), str(Path(folder) / "femnist.npz"))
        whole_mb, whole_s = peak(WHOLE, str(leaf))
        report = {
            "json_mb": round(leaf.stat().st_size / 1e6, 1),
            "samples": args.samples,
            "npz_mb": round((Path(folder) / "femnist.npz").stat().st_size / 1e6, 1),
            "streamed_convert": {"peak_rss_mib": round(streamed_mb), "seconds": round(streamed_s, 1)},
            "json_load_only": {"peak_rss_mib": round(whole_mb), "seconds": round(whole_s, 1)},
            "peak_ratio_streamed_vs_json_load": round(streamed_mb / whole_mb, 3),
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
