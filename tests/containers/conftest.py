"""Fixtures for the container tests: the images, built once per session through `scripts/build-images.sh`."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from .podman import ROOT, env, unavailable


@pytest.fixture(scope="session")
def image_archives(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Builds both images for this machine's architecture with podman from the stand-in Debian base (what
    `make images` does without a Docker engine) and returns the archive folder (dist/images layout)."""
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("images")
    subprocess.run(
        ["scripts/build-images.sh"],
        cwd=ROOT,
        check=True,
        env={**env(), "ENGINE": "podman", "STANDIN_BASE": "1", "OUT": str(out), "PLATFORMS": ""},
        timeout=1800,
    )
    return out


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LT_MULTIARCH") == "1":
        return
    skip = pytest.mark.skip(reason="on demand: make images-multiarch-test (LT_MULTIARCH=1)")
    for item in items:
        if "multiarch" in item.keywords:
            item.add_marker(skip)
