"""A finished experiment is never lost: `tangle lab` writes its outputs when the last round ends (before
--linger), and Ctrl-C during the rounds or the linger leaves a folder that `tangle viz --lab` opens.

Ctrl-C is sent as a terminal sends it: SIGINT to the lab's whole process group (the worker processes too).
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from viz_browser import until
from viz_helpers import REPO, free_port, wait_http

TANGLE = str(Path(sys.executable).with_name("tangle"))


@pytest.fixture
def group() -> Iterator[list[subprocess.Popen[bytes]]]:
    """Processes started in their own process group (as a shell job is), always stopped at the end."""
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def _as_a_terminal_job() -> None:
    # a job a terminal starts gets SIGINT's default action; a test run started in the background by a shell
    # without job control (`make test &`, CI wrappers) ignores SIGINT, and the child would inherit that
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _start(group: list[subprocess.Popen[bytes]], args: list[str], log: Path) -> subprocess.Popen[bytes]:
    process = subprocess.Popen(
        args,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        cwd=REPO,
        start_new_session=True,
        preexec_fn=_as_a_terminal_job,
    )
    group.append(process)
    return process


def _lab_round(api: str) -> int:
    try:
        return int(httpx.get(f"{api}/api/peer", timeout=5).json()["round"])
    except (httpx.HTTPError, ValueError, KeyError):
        return 0


def _opens_in_viz(group: list[subprocess.Popen[bytes]], out: Path, tmp_path: Path) -> None:
    """`tangle viz --lab` serves the folder: the page's document builds (a failure would be HTTP 500)."""
    port = free_port()
    viz = _start(group, [TANGLE, "viz", "--lab", str(out), "--port", str(port)], tmp_path / "viz.log")
    page = wait_http(f"http://127.0.0.1:{port}/", process=viz)
    assert "Bokeh" in page.text
    os.killpg(viz.pid, signal.SIGTERM)
    viz.wait(timeout=20)


def _ctrl_c(process: subprocess.Popen[bytes]) -> int:
    os.killpg(process.pid, signal.SIGINT)
    return process.wait(timeout=120)


def test_ctrl_c_during_the_rounds_writes_the_rounds_so_far(
    group: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    out, port = tmp_path / "lab", free_port()
    api = f"http://127.0.0.1:{port}"
    lab = _start(
        group,
        [TANGLE, "lab", "--peers", "4", "--rounds", "200", "--workers", "2", "--api-port", str(port),
         "--round-delay", "0.2", "--progress", "false", "--out", str(out)],
        tmp_path / "lab.log",
    )  # fmt: skip
    wait_http(f"{api}/healthz", process=lab)
    until(lambda: _lab_round(api) >= 3, 120, "three rounds served")
    assert _ctrl_c(lab) == 130
    log = (tmp_path / "lab.log").read_text()
    assert "Traceback" not in log
    assert "interrupted after" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False
    done = summary["rounds_completed"]
    assert 2 <= done < 200  # the round being served may still have been finishing its metrics
    with (out / "metrics.csv").open() as handle:
        assert [int(r["round"]) for r in csv.DictReader(handle)] == list(range(1, done + 1))
    with (out / "peers.csv").open() as handle:
        assert len(list(csv.DictReader(handle))) == 4 * done  # every peer's reference, every round
    assert json.loads((out / "tangle.json").read_text())["count"] >= 1 + 4 * 2
    assert (out / "report.html").is_file()
    _opens_in_viz(group, out, tmp_path)


def test_outputs_are_written_before_the_linger_and_survive_ctrl_c(
    group: list[subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    out, port = tmp_path / "lab", free_port()
    lab = _start(
        group,
        [TANGLE, "lab", "--peers", "3", "--rounds", "2", "--workers", "1", "--api-port", str(port),
         "--linger", "600", "--progress", "false", "--out", str(out)],
        tmp_path / "lab.log",
    )  # fmt: skip
    # the outputs appear while the lab still lingers (it would linger for 10 minutes)
    until(lambda: (out / "report.html").is_file(), 120, "the outputs, before the linger ends")
    assert lab.poll() is None
    wait_http(f"http://127.0.0.1:{port}/healthz", process=lab)
    assert _ctrl_c(lab) == 130
    log = (tmp_path / "lab.log").read_text()
    assert "Traceback" not in log
    assert "while lingering" in log
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True
    assert summary["rounds_completed"] == 2
    _opens_in_viz(group, out, tmp_path)
