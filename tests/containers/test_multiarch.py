"""On demand (make images-multiarch-test; LT_MULTIARCH=1): the peer image for arm64 and armv7, built with
podman under qemu-user from the stand-in Debian base of that architecture, runs a 3-round lab inside it.
Writes the measured build time and sizes to test-artifacts/multiarch-<arch>.json (the README's table).

The lab is mixed (`--model tflite --tflite-fraction 0.5`): its peers on TensorFlow Lite run the image's
tflite-runtime 2.14.0 with Debian's numpy 1.24 (on arm64 too: ai-edge-litert's aarch64 wheels crash in
training under qemu-user; README, "TensorFlow Lite")."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest

from .podman import ROOT, VERSION, env, podman

pytestmark = [pytest.mark.containers, pytest.mark.multiarch]

PLATFORMS = {
    "linux/arm64": ("arm64", ["--arch", "arm64"], "aarch64"),
    "linux/arm/v7": ("armv7", ["--arch", "arm", "--variant", "v7"], "armv7l"),
}
# the lab's options per platform: half the peers on the image's TFLite runtime
LAB_MODEL = {
    "linux/arm64": ["--model", "tflite", "--tflite-fraction", "0.5"],
    "linux/arm/v7": ["--model", "tflite", "--tflite-fraction", "0.5"],
}


@pytest.mark.timeout(7200)  # debootstrap and the build run under qemu: tens of minutes on 2 cores
@pytest.mark.parametrize("platform", list(PLATFORMS))
def test_peer_image_builds_and_runs_a_lab_under_qemu(platform: str, tmp_path: Path) -> None:
    arch, run_arch, machine = PLATFORMS[platform]
    started = time.monotonic()
    subprocess.run(
        [str(ROOT / "scripts/build-images.sh")],
        cwd=ROOT,
        check=True,
        env={
            **env(),
            "ENGINE": "podman",
            "STANDIN_BASE": "1",
            "OUT": str(tmp_path),
            "PLATFORMS": platform,
            "IMAGES": "peer",
        },
        timeout=7200,
    )
    build_s = time.monotonic() - started
    image = f"localhost/learning-tangle/peer:{VERSION}-{arch}"
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    assert info["Architecture"] == run_arch[1]
    assert podman("run", "--rm", *run_arch, "--entrypoint", "uname", image, "-m").stdout.strip() == machine
    started = time.monotonic()
    lab = podman(
        "run",
        "--rm",
        "--read-only",
        *run_arch,
        image,
        "lab",
        "--peers",
        "3",
        "--rounds",
        "3",
        "--workers",
        "1",
        "--out",
        "/tmp/lab",
        "--progress",
        "false",
        *LAB_MODEL[platform],
        timeout=3600,
    )
    lab_s = time.monotonic() - started
    assert "summary.json" in lab.stdout
    archive = tmp_path / arch / f"learning-tangle-peer-{VERSION}.tar"
    measured = {
        "platform": platform,
        "build_s": round(build_s, 1),
        "image_mb": round(info["Size"] / 1e6, 1),
        "archive_mb": round(archive.stat().st_size / 1e6, 1),
        "lab_3_peers_3_rounds_s": round(lab_s, 1),
        "lab_model": " ".join(LAB_MODEL[platform]) or "mlp (numpy)",
    }
    out = ROOT / "test-artifacts"
    out.mkdir(exist_ok=True)
    (out / f"multiarch-{arch}.json").write_text(json.dumps(measured, indent=2) + "\n")
    print(json.dumps(measured))
    assert os.path.getsize(archive) > 0
