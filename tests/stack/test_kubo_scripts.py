"""The stack's kubo init scripts (k3s/base/kubo) against a real kubo: the private swarm and leaving it.

The bootstrap identity script runs for real in test_pod_podman.py (the bootstrap pod takes the generated id).
Here 060-k3s.sh configures a fresh repository as the private-swarm component does, kubo starts in the private
network without an error line, and running the script again without the key leaves the private network.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from .render import ROOT

pytestmark = pytest.mark.integration
SCRIPT = ROOT / "k3s" / "base" / "kubo" / "060-k3s.sh"


def _kubo() -> str:
    result = subprocess.run([ROOT / "scripts" / "build-kubo.sh"], capture_output=True, text=True, check=True)
    return result.stdout.strip().splitlines()[-1]


def _run(kubo: str, repo: Path, *args: str, env: dict[str, str] | None = None) -> str:
    environment = {"PATH": f"{Path(kubo).parent}:/usr/bin:/bin", "IPFS_PATH": str(repo), **(env or {})}
    result = subprocess.run(args, capture_output=True, text=True, env=environment)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def test_private_swarm_and_back(tmp_path: Path) -> None:
    kubo = _kubo()
    repo = tmp_path / "repo"
    _run(kubo, repo, kubo, "init", "--profile", "test")
    secrets = tmp_path / "secrets"
    subprocess.run([ROOT / "k3s" / "generate-secrets.sh", secrets], capture_output=True, check=True)
    peer_id = (secrets / "bootstrap-peer-id").read_text()

    out = _run(
        kubo,
        repo,
        "sh",
        str(SCRIPT),
        env={
            "BOOTSTRAP_ADDR": "/ip4/127.0.0.1/tcp/4001",
            "BOOTSTRAP_PEER_ID": peer_id,
            "SWARM_KEY_FILE": str(secrets / "swarm.key"),
        },
    )
    assert "private swarm" in out
    assert _run(kubo, repo, kubo, "bootstrap", "list").split() == [f"/ip4/127.0.0.1/tcp/4001/p2p/{peer_id}"]
    assert (repo / "swarm.key").read_text() == (secrets / "swarm.key").read_text()
    assert _run(kubo, repo, kubo, "config", "Routing.Type").strip() == "dht"
    assert _run(kubo, repo, kubo, "config", "AutoConf.Enabled").strip() == "false"

    # kubo starts in the private network, and logs no error about the configuration
    log = tmp_path / "daemon.log"
    environment = {
        "PATH": f"{Path(kubo).parent}:/usr/bin:/bin",
        "IPFS_PATH": str(repo),
        "LIBP2P_FORCE_PNET": "1",
    }
    with log.open("w") as output:
        daemon = subprocess.Popen(
            [kubo, "daemon", "--enable-gc"], stdout=output, stderr=output, env=environment
        )
    try:
        deadline = time.monotonic() + 60
        while "Daemon is ready" not in log.read_text():
            assert daemon.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
    finally:
        daemon.send_signal(signal.SIGINT)
        daemon.wait(timeout=30)
    text = log.read_text()
    assert "Swarm is limited to private network of peers with the swarm key" in text
    assert "ERROR" not in text, text

    # without the key: public again
    out = _run(kubo, repo, "sh", str(SCRIPT))
    assert "public swarm" in out
    assert not (repo / "swarm.key").exists()
    assert _run(kubo, repo, kubo, "bootstrap", "list").split() == []
    assert "false" not in _run(kubo, repo, kubo, "config", "AutoConf.Enabled")


def test_the_scripts_refuse_bad_input(tmp_path: Path) -> None:
    kubo = _kubo()
    repo = tmp_path / "repo"
    _run(kubo, repo, kubo, "init", "--profile", "test")
    env = {"PATH": f"{Path(kubo).parent}:/usr/bin:/bin", "IPFS_PATH": str(repo)}
    missing_id = subprocess.run(
        ["sh", str(SCRIPT)],
        capture_output=True,
        text=True,
        env={**env, "BOOTSTRAP_ADDR": "/dns4/bootstrap/tcp/4001"},
    )
    assert missing_id.returncode == 1
    assert missing_id.stderr.strip() == "060-k3s: BOOTSTRAP_ADDR is set but BOOTSTRAP_PEER_ID is empty"
    identity = subprocess.run(
        ["sh", str(ROOT / "k3s" / "base" / "kubo" / "010-bootstrap-identity.sh")],
        capture_output=True,
        text=True,
        env={**env, "BOOTSTRAP_IDENTITY_DIR": str(tmp_path / "nowhere")},
    )
    assert identity.returncode == 1
    assert identity.stderr.strip() == f"010-bootstrap-identity: cannot read {tmp_path}/nowhere/peer-id"
    # without BOOTSTRAP_IDENTITY_DIR (every peer) it does nothing
    assert (
        subprocess.run(
            ["sh", str(ROOT / "k3s" / "base" / "kubo" / "010-bootstrap-identity.sh")], env=env
        ).returncode
        == 0
    )
