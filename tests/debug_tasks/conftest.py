"""The emulated lab node the Fabric tasks are tested against, over real SSH (see tests/emulated/hosts.py).

The node is the Ansible tests' Debian amd64 host (booted systemd, sshd, the `lab` user with sudo) running a
real kubo (the binary `scripts/build-kubo.sh` builds) and a real `tangle peer` on its own loopback, started by
the test. The peer runs from this checkout's virtualenv and Python, mounted read-only at the same paths inside
the container (the same Debian 12 userland), so no second install is needed: what is tested is Fabric over SSH
against a node where the peer really runs. k3s cannot be had here: the node has none, and the tests check that
the k3s parts say so.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from emulated.hosts import REPO, EmulatedHost, EmulatedLab, HostSpec, free_port

KUBO = "IPFS_PATH=/var/lib/ipfs ipfs --api=/ip4/127.0.0.1/tcp/5001"


def wait_for(what: str, predicate: Callable[[], Any], timeout: float = 300.0, every: float = 1.0) -> Any:
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as error:
            last = error
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}: last {last!r}")


def peer_api(node: EmulatedHost, path: str) -> Any:
    url = f"http://127.0.0.1:8000{path}"
    script = f"import urllib.request as u; print(u.urlopen('{url}', timeout=5).read().decode())"
    return json.loads(node.exec(f"python3 -c {json.dumps(script)}").stdout)


@pytest.fixture(scope="session")
def kubo_binary() -> Path:
    done = subprocess.run([str(REPO / "scripts/build-kubo.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"kubo could not be built: {done.stderr.strip().splitlines()[-1:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def fabric_lab(tmp_path_factory: pytest.TempPathFactory, kubo_binary: Path) -> Iterator[EmulatedLab]:
    mounts = [f"{kubo_binary}:/usr/local/bin/ipfs:ro"]
    mounts += [f"{p}:{p}:ro" for p in sorted({Path(sys.prefix), Path(sys.base_prefix), REPO}, key=str)]
    spec = HostSpec("lab-node-1", mounts=tuple(mounts))
    with EmulatedLab([spec], tmp_path_factory.mktemp("fabric-lab"), prefix="lt-fabric-") as lab:
        yield lab


@pytest.fixture(scope="session")
def running_peer(fabric_lab: EmulatedLab) -> EmulatedHost:
    """kubo and a `tangle peer` on the node, the peer having published a few transactions."""
    node = fabric_lab["lab-node-1"]
    offline = "IPFS_PATH=/var/lib/ipfs ipfs"
    node.exec(
        f"mkdir -p /var/log/lt && {offline} init --profile test >/dev/null && "
        f"{offline} config Addresses.API /ip4/127.0.0.1/tcp/5001 && "
        f"{offline} config --json Pubsub.Enabled true && "
        f"{offline} config --json Swarm.ConnMgr "
        '\'{"Type":"basic","LowWater":40,"HighWater":70,"GracePeriod":"60s"}\''
    )
    node.exec(
        "setsid sh -c 'IPFS_PATH=/var/lib/ipfs exec ipfs daemon --enable-gc >/var/log/lt/kubo.log 2>&1' &"
    )
    wait_for("kubo", lambda: "ID" in node.exec(f"{KUBO} id", check=False).stdout)
    env = {
        "IPFS_API": "http://127.0.0.1:5001",
        "PEER_INDEX": "0",
        "PEERS": "4",
        "TRAINING_INTERVAL": "2",
        "LOGGER": "file",
        "LOG_FILE": "/var/log/lt/peer.log",
        "HTTP_PORT": "8000",
        "OPENBLAS_NUM_THREADS": "1",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    node.exec(f"setsid sh -c 'exec env {exports} {sys.prefix}/bin/tangle peer >/var/log/lt/peer.out 2>&1' &")
    wait_for("the peer to publish 3 transactions", lambda: peer_api(node, "/api/peer")["published"] >= 3)
    return node


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory, fabric_lab: EmulatedLab) -> Path:
    """The lab's Ansible inventory, with the node's peer and kubo settings for the Fabric tasks, plus the same
    node seen as a host without a peer and a host whose SSH port is closed."""
    folder = tmp_path_factory.mktemp("inventory")
    data = fabric_lab.inventory()
    node = data["all"]["children"]["server"]["hosts"]["lab-node-1"]
    data["all"]["children"]["server"]["hosts"]["lab-node-1"] = {
        **node,
        "lt_peer_url": "http://127.0.0.1:8000",
        "lt_kubo_api": "/ip4/127.0.0.1/tcp/5001",
        "lt_peer_log": "/var/log/lt/peer.log",
        "lt_kubo_log": "/var/log/lt/kubo.log",
    }
    data["all"]["children"]["agents"] = {
        "hosts": {"bare-node": dict(node), "gone-node": {**node, "ansible_port": free_port()}}
    }
    (folder / "hosts.yml").write_text(yaml.safe_dump(data))
    return folder
