"""Fixtures for tests over real SSH into emulated lab hosts (see hosts.py).

``emulated_amd64`` (session scope) is one Debian amd64 host with a booted systemd, in every ``make test``.
The arm hosts (Raspberry Pi OS-like arm64 and armhf under qemu) are behind the ``qemu`` marker and run only
with ``LEARNING_TANGLE_QEMU=1`` (``make test-qemu``): their root filesystems take minutes to build once.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from .hosts import EmulatedLab, HostSpec, podman_available


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("LEARNING_TANGLE_QEMU") == "1":
        return
    skip = pytest.mark.skip(reason="qemu lab: run with LEARNING_TANGLE_QEMU=1 (make test-qemu)")
    for item in items:
        if "qemu" in item.keywords:
            item.add_marker(skip)


def _require_podman() -> None:
    for tool in ("podman", "ssh", "ssh-keygen", "debootstrap"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: run scripts/install-test-deps.sh")
    reason = podman_available()
    if reason:
        pytest.fail(reason)


@pytest.fixture(scope="session")
def emulated_amd64(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatedLab]:
    """One Debian bookworm amd64 host, `server1`, in groups `server` and `k3s_cluster`-style `all`."""
    _require_podman()
    with EmulatedLab([HostSpec("server1")], Path(tmp_path_factory.mktemp("emulated-amd64"))) as lab:
        yield lab
