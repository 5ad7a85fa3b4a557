"""Container images and the compose lab, measured (podman; prints JSON):

- image sizes per architecture (the archives `make images` writes, and the unpacked size podman reports),
- cold build (no layer cache) against warm build (layer cache, one source file changed) of both images,
- resident memory (VmRSS of each container's main process) of the peers and their kubo nodes (profile
  `lowpower`) after 10 training rounds of a 3-peer compose lab.

    .venv/bin/python benchmarks/images.py [--platforms linux/amd64,linux/arm64] [--skip-cold] [--rounds 10]

Foreign platforms build under qemu-user (binfmt_misc, see docs) and take 5-10x longer.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.containers.lab import Lab, build_standins, start_lab  # noqa: E402
from tests.containers.podman import VERSION, env, podman, wait_for  # noqa: E402

ARCHES = {"linux/amd64": "amd64", "linux/arm64": "arm64", "linux/arm/v7": "armv7"}


def build(platforms: str, out: Path, *, cold: bool) -> float:
    environment = {**env(), "ENGINE": "podman", "STANDIN_BASE": "1", "OUT": str(out), "PLATFORMS": platforms}
    if cold:
        # no layer cache: remove the images' intermediate layers by building with --no-cache
        environment["PODMAN_BUILD_EXTRA"] = "--no-cache"
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "scripts/build-images.sh")],
        check=True,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=7200,
    )
    return round(time.monotonic() - started, 1)


def sizes(platforms: list[str], out: Path) -> dict[str, dict[str, float]]:
    result: dict[str, dict[str, float]] = {}
    for platform in platforms:
        arch = ARCHES[platform]
        for name in ("peer", "visualizer"):
            archive = out / arch / f"learning-tangle-{name}-{VERSION}.tar"
            result.setdefault(arch, {})[f"{name}_archive_mb"] = round(archive.stat().st_size / 1e6, 1)
    for name in ("peer", "visualizer"):
        info = json.loads(podman("image", "inspect", f"localhost/learning-tangle/{name}:{VERSION}").stdout)[0]
        arch = {"amd64": "amd64", "arm64": "arm64", "arm": "armv7"}[info["Architecture"]]
        result.setdefault(arch, {})[f"{name}_image_mb"] = round(info["Size"] / 1e6, 1)
    return result


def rss_mb(container: str) -> float:
    status = podman("exec", container, "cat", "/proc/1/status").stdout
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    assert match, status
    return round(int(match.group(1)) / 1024, 1)


def lab_memory(rounds: int) -> dict[str, Any]:
    build_standins()
    with tempfile.TemporaryDirectory(prefix="lt-images-bench-") as folder:
        lab: Lab = start_lab(Path(folder), 3, training_interval=5.0)
        try:
            wait_for(
                f"{rounds} training rounds at every peer",
                lambda: all(lab.peer_state(i)["trainings"] >= rounds for i in range(lab.peers)),
                timeout=900,
                interval=3,
            )
            states = [lab.peer_state(i) for i in range(lab.peers)]
            peers = [rss_mb(lab.container(f"peer-{i}")) for i in range(lab.peers)]
            kubos = [rss_mb(lab.container(f"kubo-{i}")) for i in range(lab.peers)]
            return {
                "rounds": rounds,
                "transactions": [s["transactions"] for s in states],
                "reference_accuracy": [round(s["referenceAccuracy"], 3) for s in states],
                "peer_rss_mb": peers,
                "kubo_rss_mb": kubos,
                "kubo_profile": "lowpower",
                "bootstrap_rss_mb": rss_mb(lab.container("bootstrap")),
                "visualizer_rss_mb": rss_mb(lab.container("visualizer")),
                "targets_mb": {"peer_image_amd64": 250, "peer_rss": 150},
            }
        finally:
            lab.compose("down", "--volumes", timeout=300)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--platforms", default="linux/amd64")
    parser.add_argument("--skip-cold", action="store_true", help="only the warm build (saves minutes)")
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument(
        "--skip-builds", action="store_true", help="only the lab, on the images already built (make images)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    platforms = args.platforms.split(",")
    result: dict[str, Any] = {"version": VERSION, "platforms": platforms, "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory(prefix="lt-images-bench-") as folder:
        out = Path(folder)
        if args.skip_builds:
            args.platforms = ""
        else:
            build(args.platforms, out, cold=False)  # the base images and a cache to start from
        if not args.skip_cold and not args.skip_builds:
            result["cold_build_s"] = build(args.platforms, out, cold=True)
        if not args.skip_builds:
            marker = ROOT / "peer/_bench_marker.py"
            marker.write_text(f"# benchmarks/images.py: a changed source file ({time.time()})\n")
            try:
                result["warm_build_s"] = build(args.platforms, out, cold=False)
            finally:
                marker.unlink()
            if "cold_build_s" in result:
                result["cold_over_warm"] = round(result["cold_build_s"] / result["warm_build_s"], 1)
            result["sizes"] = sizes(platforms, out)
    if not args.skip_lab:
        result["lab"] = lab_memory(args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
