"""Container images and the compose lab, measured (podman; prints JSON):

- image sizes per architecture (the archives `make images` writes, and the unpacked size podman reports),
- per architecture, cold build (no layer cache; the stand-in base image already imported) against warm build
  (layer cache, after a one-line code change: a new one-line file in `peer/`) of the images,
- resident memory (VmRSS of each container's main process) of the peers and their kubo nodes (profile
  `lowpower`) after 10 training rounds of a 3-peer compose lab.

    .venv/bin/python benchmarks/images.py [--platforms linux/amd64,linux/arm64] [--images peer] [--skip-cold]
        [--skip-lab] [--rounds 10]

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
DEBIAN_ARCHES = {"amd64": "amd64", "arm64": "arm64", "armv7": "armhf"}
NATIVE = {"x86_64": "linux/amd64", "aarch64": "linux/arm64", "armv7l": "linux/arm/v7"}[os.uname().machine]


def build(platform: str, images: str, out: Path, *, cold: bool) -> float:
    environment = {
        **env(),
        "ENGINE": "podman",
        "STANDIN_BASE": "1",
        "OUT": str(out),
        "PLATFORMS": platform,
        "IMAGES": images,
    }
    if cold:
        # no layer cache: remove the images' intermediate layers by building with --no-cache
        environment["PODMAN_BUILD_EXTRA"] = "--no-cache"
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "scripts/build-images.sh")],
        check=True,
        env=environment,
        stdout=sys.stderr,  # the build log on stderr; stdout is the JSON result
        timeout=7200,
    )
    return round(time.monotonic() - started, 1)


def sizes(platform: str, images: list[str], out: Path) -> dict[str, float]:
    """The archive `make images` wrote and podman's unpacked size, per image of one architecture."""
    arch = ARCHES[platform]
    result: dict[str, float] = {}
    for name in images:
        archive = out / arch / f"learning-tangle-{name}-{VERSION}.tar"
        result[f"{name}_archive_mb"] = round(archive.stat().st_size / 1e6, 1)
        # scripts/build-images.sh: the native image has the plain tag, other architectures NAME:VERSION-ARCH
        tag = VERSION if platform == NATIVE else f"{VERSION}-{arch}"
        info = json.loads(podman("image", "inspect", f"localhost/learning-tangle/{name}:{tag}").stdout)[0]
        result[f"{name}_image_mb"] = round(info["Size"] / 1e6, 1)
    return result


def cold_and_warm(platform: str, images: str, out: Path, *, skip_cold: bool) -> dict[str, Any]:
    """Cold (--no-cache) then warm (layer cache, one-line code change) builds of one architecture."""
    result: dict[str, Any] = {"load_average_before": [round(x, 2) for x in os.getloadavg()]}
    if skip_cold:
        build(platform, images, out, cold=False)  # a layer cache to start from
    else:
        # only the base image beforehand (the debootstrap stand-in), so that the cold build times our layers
        subprocess.run(
            [str(ROOT / "scripts/standins/debian-base.sh"), DEBIAN_ARCHES[ARCHES[platform]]],
            check=True,
            env=env(),
            stdout=subprocess.DEVNULL,
            timeout=3600,
        )
        result["cold_build_s"] = build(platform, images, out, cold=True)
    marker = ROOT / "peer/_bench_marker.py"
    marker.write_text(f"# benchmarks/images.py: a one-line code change ({time.time()})\n")
    try:
        result["warm_build_s"] = build(platform, images, out, cold=False)
    finally:
        marker.unlink()
    if "cold_build_s" in result:
        result["cold_over_warm"] = round(result["cold_build_s"] / result["warm_build_s"], 1)
    result["load_average_after"] = [round(x, 2) for x in os.getloadavg()]
    result["sizes"] = sizes(platform, images.split(), out)
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
    parser.add_argument("--images", default="peer visualizer", help='e.g. "peer" (space-separated)')
    parser.add_argument("--skip-cold", action="store_true", help="only the warm build (saves minutes)")
    parser.add_argument("--skip-lab", action="store_true")
    parser.add_argument(
        "--skip-builds", action="store_true", help="only the lab, on the images already built (make images)"
    )
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    platforms = args.platforms.split(",")
    for platform in platforms:
        if platform not in ARCHES:
            parser.error(f"--platforms: unsupported platform '{platform}' (use {', '.join(ARCHES)})")
    result: dict[str, Any] = {
        "version": VERSION,
        "images": args.images.split(),
        "cpus": os.cpu_count(),
        "builds": {},
    }
    if not args.skip_builds:
        with tempfile.TemporaryDirectory(prefix="lt-images-bench-") as folder:
            for platform in platforms:
                result["builds"][ARCHES[platform]] = cold_and_warm(
                    platform, args.images, Path(folder), skip_cold=args.skip_cold
                )
    if not args.skip_lab:
        result["lab"] = lab_memory(args.rounds)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
