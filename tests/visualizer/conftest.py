"""Fixtures of the visualizer tests: small tangles, lab output folders, free ports and processes."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from viz_browser import unavailable
from viz_helpers import REPO, write_lab_folder


@pytest.fixture
def needs_chromium() -> None:
    """The browser tests' guard: a missing Chromium or Playwright fails in CI, is a skip with its reason
    elsewhere (and a failure again under make test, see tests/conftest.py)."""
    reason = unavailable()
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"browser tests must run in CI: {reason}")
        pytest.skip(reason)


@pytest.fixture
def lab_folder(tmp_path: Path) -> Path:
    return write_lab_folder(tmp_path / "lab")


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start processes that are always stopped (SIGTERM, then SIGKILL) when the test ends."""
    started: list[subprocess.Popen[bytes]] = []

    def start(args: list[str], name: str) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"{name}.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, cwd=REPO)
        started.append(process)
        return process

    yield start
    for process in started:
        process.terminate()
    for process in started:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
