"""The one-machine lab (docker/lab.py) with 3 peers under podman-compose, on the images `make images` builds
and stand-ins for kubo, Prometheus and node-exporter: the peers find each other through the bootstrap node,
the tangle grows with rising reference accuracy, Prometheus scrapes every peer and kubo, the visualizer's
page loads in Chromium without errors, and `down` leaves nothing behind. Grafana has no stand-in: its part
is checked as files (test_compose_files.py).

The lab is mixed (`--model tflite --tflite-fraction 0.5`): peer-1 trains on the image's TensorFlow Lite
runtime, peer-0 and peer-2 the same MLP layout in numpy, in one tangle."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .lab import Lab, build_standins, start_lab
from .podman import ROOT, env, leftovers, tflite_loaded, wait_for

pytestmark = [pytest.mark.containers, pytest.mark.timeout(2400)]  # image builds: minutes
PEERS = 3
TFLITE_FRACTION = 0.5  # of 3 peers: peer-1 (the rule of `tangle lab --tflite-fraction`)


@pytest.fixture(scope="module")
def lab(image_archives: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    build_standins()
    running = start_lab(
        tmp_path_factory.mktemp("compose-lab"), PEERS, model="tflite", tflite_fraction=TFLITE_FRACTION
    )
    try:
        yield running
    finally:
        # idempotent: the last test brings it down itself and checks that nothing is left
        with contextlib.suppress(subprocess.SubprocessError):
            running.compose("down", "--volumes", timeout=300)


def test_peers_find_each_other_through_the_bootstrap_node(lab: Lab) -> None:
    """mDNS is off: every node knows only the bootstrap address, and ends up connected to every other node."""
    ids = {f"kubo-{i}": lab.ipfs(f"kubo-{i}", "id", "-f", "<id>").strip() for i in range(lab.peers)}
    bootstrap = lab.ipfs("bootstrap", "id", "-f", "<id>").strip()
    for service in ids:
        assert lab.ipfs(service, "bootstrap", "list").split() == [f"/dns4/bootstrap/tcp/4001/p2p/{bootstrap}"]
        assert lab.ipfs(service, "config", "Discovery.MDNS.Enabled").strip() == "false"

    def connected() -> bool:
        for service in ids:
            peers = lab.ipfs(service, "swarm", "peers")
            others = [peer_id for name, peer_id in ids.items() if name != service]
            if not all(peer_id in peers for peer_id in [*others, bootstrap]):
                return False
        return True

    wait_for("every node to connect to every other", connected, timeout=180, interval=3)


def test_tangle_grows_with_rising_reference_accuracy(lab: Lab) -> None:
    first: dict[int, float] = {}

    def grown() -> list[dict[str, Any]] | None:
        states = [lab.peer_state(i) for i in range(lab.peers)]
        for i, state in enumerate(states):
            if state["referenceAccuracy"] is not None:
                first.setdefault(i, state["referenceAccuracy"])
        if all(state["transactions"] > 30 for state in states) and len(first) == lab.peers:
            return states
        return None

    states = wait_for("every peer to hold more than 30 transactions", grown, timeout=600, interval=3)
    for i, state in enumerate(states):
        # the others' transactions reached this peer, and the consensus model got better than the first one
        assert state["published"] >= 1
        assert state["transactions"] > state["published"] + 1
        assert state["referenceAccuracy"] > first[i]
        assert state["pubsub"]["connected"]
        assert state["rejected"] == {}


def test_tflite_and_numpy_peers_share_the_tangle(lab: Lab) -> None:
    """peer-1 runs on the image's TensorFlow Lite runtime (its library is mapped in the peer process), the
    others on numpy; all three train the same layout from the same genesis, and each builds on the others'
    transactions: a numpy peer's transaction approves a tflite one and the other way round."""
    assert {i for i in range(lab.peers) if tflite_loaded(lab.container(f"peer-{i}"))} == {1}
    states = [lab.peer_state(i) for i in range(lab.peers)]
    assert len({state["model"] for state in states}) == 1
    assert len({state["genesis"] for state in states}) == 1
    tflite_author = states[1]["peer"]
    numpy_authors = {states[0]["peer"], states[2]["peer"]}

    def approvals() -> tuple[int, int] | None:
        nodes = lab.peer_api(0, "/api/transactions")["nodes"]
        author = {node["name"]: node["peer"] for node in nodes}
        edges = [(node["peer"], author.get(parent)) for node in nodes for parent in node["parents"]]
        numpy_on_tflite = sum(a in numpy_authors and b == tflite_author for a, b in edges)
        tflite_on_numpy = sum(a == tflite_author and b in numpy_authors for a, b in edges)
        return (numpy_on_tflite, tflite_on_numpy) if numpy_on_tflite and tflite_on_numpy else None

    wait_for("numpy and tflite transactions approving each other", approvals, timeout=300, interval=3)


def test_prometheus_scrapes_every_peer_and_kubo(lab: Lab) -> None:
    def targets() -> list[dict[str, Any]] | None:
        url = f"http://127.0.0.1:{lab.prometheus_port}/api/v1/targets"
        with urllib.request.urlopen(url, timeout=5) as response:
            active = json.load(response)["data"]["activeTargets"]
        return active if active and all(t["health"] == "up" for t in active) else None

    active = wait_for("every Prometheus target to be up", targets, timeout=180, interval=3)
    jobs: dict[str, set[str]] = {}
    for target in active:
        jobs.setdefault(target["labels"]["job"], set()).add(target["labels"].get("pod", ""))
    expected = {f"peer-{i}" for i in range(lab.peers)}
    assert jobs["peer"] == expected
    assert jobs["kubo"] == expected  # kubo's metrics through each peer's /metrics/ipfs pass-through
    assert "node-exporter" in jobs

    def kubo_series() -> bool:
        query = urllib.parse.quote("count(ipfs_p2p_peers_total) by (pod)")
        url = f"http://127.0.0.1:{lab.prometheus_port}/api/v1/query?query={query}"
        with urllib.request.urlopen(url, timeout=5) as response:
            return len(json.load(response)["data"]["result"]) == lab.peers

    wait_for("kubo's own metrics from every node", kubo_series, timeout=120, interval=3)


@pytest.mark.browser
def test_visualizer_page_loads_without_errors(lab: Lab) -> None:
    sys.path.insert(0, str(ROOT / "tests/visualizer"))
    from viz_browser import chromium_page, unavailable  # type: ignore[import-not-found]

    reason = unavailable()
    if reason:
        pytest.skip(reason)
    url = f"http://127.0.0.1:{lab.viz_port}/"
    wait_for(
        "the visualizer to serve its page", lambda: urllib.request.urlopen(url, timeout=5).status == 200, 120
    )
    with chromium_page() as (page, errors):
        page.goto(url, wait_until="load")
        page.wait_for_function("() => window.Bokeh && Bokeh.documents.length > 0", timeout=60_000)
        page.wait_for_timeout(3000)  # a few polls of the peers: errors would show up in the console
        assert errors == []


def test_grafana_password_was_generated_at_first_start(lab: Lab) -> None:
    """Grafana itself cannot run here, but the password it would read was generated by lab-init."""
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "docker/lab.py"),
            "password",
            "--out",
            str(lab.folder),
            "--project",
            lab.project,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**env(), "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"},
    )
    assert result.returncode == 0, result.stderr
    password = result.stdout.strip()
    assert len(password) >= 20
    assert password.isalnum()
    assert password != "admin"


def test_down_leaves_nothing_behind(lab: Lab) -> None:
    assert leftovers(lab.project)
    lab.compose("down", "--volumes", timeout=300)
    assert leftovers(lab.project) == []


def test_bad_peer_counts_and_a_missing_data_path_fail_before_starting(tmp_path: Path) -> None:
    script = str(ROOT / "docker/lab.py")
    cases = [
        (["--peers", "0"], "--peers must be between 1 and 100 (got 0)"),
        (["--peers", "1000000"], "--peers must be between 1 and 100 (got 1000000)"),
        (["--dataset-path", str(tmp_path / "missing")], "--dataset-path"),
    ]
    for args, message in cases:
        project = "lt-images-bad-" + args[1][-6:].replace("/", "")
        result = subprocess.run(
            [sys.executable, script, "up", "--out", str(tmp_path / "lab"), "--project", project, *args],
            capture_output=True,
            text=True,
        )
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert message in lines[0]
        assert not (tmp_path / "lab/compose.yaml").exists()
        assert leftovers(project) == []
