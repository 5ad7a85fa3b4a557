"""podman for the container tests: the project's settings (scripts/podman-env.sh), names lt-images-*."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import time
import tomllib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parents[2]
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
PEER_IMAGE = f"localhost/learning-tangle/peer:{VERSION}"
VISUALIZER_IMAGE = f"localhost/learning-tangle/visualizer:{VERSION}"
PREFIX = "lt-images-"
T = TypeVar("T")


def unavailable() -> str | None:
    """Why podman tests cannot run here, or None."""
    if shutil.which("podman") is None:
        return "podman is missing (apt-get install podman buildah runc)"
    return None


@functools.cache
def containers_conf() -> str:
    """CONTAINERS_CONF as scripts/podman-env.sh sets it (runc, lowered ulimits): read once per test run."""
    return subprocess.run(
        ["bash", "-c", f'. "{ROOT}/scripts/podman-env.sh" && printf %s "$CONTAINERS_CONF"'],
        check=True,
        capture_output=True,
        text=True,
    ).stdout


def env() -> dict[str, str]:
    """The environment for podman calls: this process's, with the project's CONTAINERS_CONF."""
    return {**os.environ, "CONTAINERS_CONF": containers_conf()}


def podman(*args: str, check: bool = True, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["podman", *args], check=check, capture_output=True, text=True, env=env(), timeout=timeout
    )


def unique(name: str) -> str:
    return f"{PREFIX}{name}-{uuid.uuid4().hex[:6]}"


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, interval: float = 1.0) -> T:
    """Poll `probe` until it returns something other than None/False; fail naming `what` at the deadline."""
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as error:  # a probe may fail while the thing starts
            value, last = None, error
        if value is not None and value is not False:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last error: {last})")


def leftovers(prefix: str) -> list[str]:
    """Containers, pods, networks and volumes whose names start with `prefix`."""
    found = []
    for kind, fmt in (
        ("ps", "{{.Names}}"),
        ("pod", "{{.Name}}"),
        ("network", "{{.Name}}"),
        ("volume", "{{.Name}}"),
    ):
        args = [kind, "ls", "--format", fmt] if kind != "ps" else ["ps", "-a", "--format", fmt]
        if kind == "pod":
            args = ["pod", "ps", "--format", fmt]
        out = podman(*args).stdout.split()
        found += [f"{kind}:{name}" for name in out if name.startswith(prefix)]
    return found


# the libraries the TFLite interpreters run in: ai-edge-litert's (amd64, arm64), tflite-runtime's (armv7)
TFLITE_LIBRARIES = ("libpywrap_litert_common.so", "_pywrap_tensorflow_interpreter_wrapper")


def tflite_loaded(container: str) -> bool:
    """Whether a process in the container has a TensorFlow Lite runtime's library mapped: a peer that runs
    MODEL=tflite for real (the API reports the layout, the same for a numpy peer)."""
    patterns = " ".join(f"-e {library}" for library in TFLITE_LIBRARIES)
    found = podman("exec", container, "sh", "-c", f"grep -l {patterns} /proc/[0-9]*/maps", check=False)
    return bool(found.stdout.strip())
