"""Every Fabric task over real SSH against an emulated lab node running a real kubo and a real peer."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from emulated.hosts import REPO as ROOT
from emulated.hosts import EmulatedHost

from .conftest import KUBO, peer_api

pytestmark = pytest.mark.integration

FAB = str(Path(sys.prefix) / "bin" / "fab")


def fab(inventory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [FAB, *args[:1], "--inventory", str(inventory), *args[1:]],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def block(output: str, host: str) -> str:
    """The lines a task printed for one host."""
    lines, inside = [], False
    for line in output.splitlines():
        if line.startswith("== "):
            inside = line.startswith(f"== {host} ")
        elif inside:
            lines.append(line)
    return "\n".join(lines)


def test_fab_list_describes_every_task() -> None:
    out = subprocess.run([FAB, "--list"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    for name in ("status", "logs", "restart", "ipfs", "tangle", "metrics", "collect"):
        line = next((x for x in out.splitlines() if x.strip().startswith(name + " ")), "")
        assert len(line.split()) > 3, f"{name} has no description in fab --list:\n{out}"


def test_status_reports_the_node_and_that_k3s_is_absent(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "status", "--on", "lab-node-1")
    assert done.returncode == 0, done.stderr
    text = block(done.stdout, "lab-node-1")
    assert "host lab-node-1" in text
    assert "memory" in text
    assert "available of" in text
    assert "disk /" in text
    assert "load " in text
    assert "throttling: no vcgencmd" in text
    assert "k3s: k3s is not installed on this host" in text


def test_tangle_summarises_the_peers_tangle(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "tangle", "--on", "server")
    assert done.returncode == 0, done.stderr
    text = block(done.stdout, "lab-node-1")
    api = peer_api(running_peer, "/api/peer")
    assert f"peer {api['peer']} (index 0, model {api['model']})" in text
    transactions = int(text.split("transactions ", 1)[1].split(",")[0])
    assert transactions >= 4  # genesis and at least 3 published
    assert "reference accuracy 0." in text
    assert "rejected none; unresolved 0" in text


def test_metrics_snapshot_has_the_key_metrics(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "metrics", "--on", "lab-node-1")
    assert done.returncode == 0, done.stderr
    text = block(done.stdout, "lab-node-1")
    values = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()}
    assert values["learning_tangle_transactions_published_total"] >= 3
    assert values["learning_tangle_transactions"] >= 4
    assert 0 < values["learning_tangle_reference_accuracy_ratio"] <= 1


def test_ipfs_reports_the_kubo_node(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "ipfs", "--on", "lab-node-1")
    assert done.returncode == 0, done.stderr
    text = block(done.stdout, "lab-node-1")
    ident = json.loads(running_peer.exec(f"{KUBO} id").stdout)
    assert f"id {ident['ID']}" in text
    assert "kubo/0.43.1" in text
    assert "connection manager low 40 high 70 grace 60s" in text
    assert "pins: " in text
    assert "pubsub peers on learning-tangle/" in text


def test_logs_of_peer_and_kubo(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "logs", "--on", "lab-node-1", "--lines", "5")
    assert done.returncode == 0, done.stderr
    assert 0 < len(block(done.stdout, "lab-node-1").splitlines()) <= 5
    done = fab(inventory, "logs", "--on", "lab-node-1", "--container", "kubo", "--lines", "50")
    assert done.returncode == 0, done.stderr
    assert "Daemon is ready" in block(done.stdout, "lab-node-1")


def test_collect_fetches_a_car_that_imports_with_the_tangles_roots(
    inventory: Path, running_peer: EmulatedHost, kubo_binary: Path, tmp_path: Path
) -> None:
    done = fab(inventory, "collect", "--on", "lab-node-1", "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("lab-node-1-")
    for name in (
        "api-peer.json",
        "api-transactions.json",
        "metrics.prom",
        "peer.log",
        "kubo.log",
        "tangle.car",
    ):
        assert (folder / name).stat().st_size > 0, name
    meta = json.loads((folder / "tangle.car.json").read_text())
    transactions = json.loads((folder / "api-transactions.json").read_text())
    assert meta["tips"] == transactions["tips"]
    with tempfile.TemporaryDirectory() as repo:
        env = {"IPFS_PATH": repo, "PATH": "/usr/bin:/bin"}
        subprocess.run(
            [str(kubo_binary), "init", "--profile", "test"], env=env, check=True, capture_output=True
        )
        imported = subprocess.run(
            [str(kubo_binary), "dag", "import", "--stats", "--enc=json", str(folder / "tangle.car")],
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        roots = [json.loads(line)["Root"]["Cid"]["/"] for line in imported.splitlines() if '"Root"' in line]
        assert roots == [meta["root"]]
        root = json.loads(
            subprocess.run(
                [str(kubo_binary), "dag", "get", meta["root"]],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout
        )
        assert [link["/"] for link in root["learning-tangle-tips"]] == transactions["tips"]
        for node in transactions["nodes"]:  # every transaction of the tangle is in the CAR, offline
            subprocess.run(
                [str(kubo_binary), "dag", "get", "--offline", node["name"]],
                env=env,
                check=True,
                capture_output=True,
                timeout=30,
            )


def test_restart_without_k3s_says_so(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "restart", "--on", "lab-node-1")
    assert done.returncode == 1
    assert "error: k3s is not installed on this host" in block(done.stdout, "lab-node-1")
    done = fab(inventory, "restart", "--on", "lab-node-1", "--k3s", "--yes")
    assert done.returncode == 1
    assert "error: k3s is not installed on this host" in block(done.stdout, "lab-node-1")


def test_unknown_host_or_group_is_one_line(inventory: Path) -> None:
    done = fab(inventory, "status", "--on", "nosuch")
    assert done.returncode != 0
    assert done.stderr.strip().count("\n") == 0
    assert "unknown host or group 'nosuch'" in done.stderr


def test_bad_hosts_fail_alone_and_the_others_complete(inventory: Path, running_peer: EmulatedHost) -> None:
    done = fab(inventory, "tangle", "--on", "lab-node-1,agents")
    assert done.returncode == 1
    assert "reference accuracy" in block(done.stdout, "lab-node-1")
    assert block(done.stdout, "gone-node").startswith("error: unreachable")
    assert block(done.stdout, "bare-node") == (
        "error: no peer on this host (no LT_PEER_URL and no peer pod on this node)"
    )
    assert "2 of 3 hosts failed: bare-node, gone-node" in done.stderr
    assert "Traceback" not in done.stdout + done.stderr
