"""An emulated lab node for the Fabric tasks: a podman container with sshd, reached over real SSH on 127.0.0.1.

The node runs a real kubo (the binary `scripts/build-kubo.sh` builds) and a real `tangle peer` on its own
loopback, started by the test. The peer runs from this checkout's virtualenv and Python, mounted read-only at the
same paths inside the container (the same Debian 12 userland), so no second install is needed; what is tested is
Fabric over SSH against a node where the peer really runs. k3s cannot be had here: the node has none, and the tests
check that the k3s parts say so.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
HOST_PACKAGES = "openssh-server,python3,sudo,iproute2,procps"
IMAGE = "localhost/learning-tangle-test/ssh-host:bookworm"


def podman_env() -> dict[str, str]:
    out = subprocess.run(
        ["bash", "-c", f". {ROOT}/scripts/podman-env.sh && echo $CONTAINERS_CONF"],
        capture_output=True, text=True, check=True,
    ).stdout.strip()
    return {**os.environ, "CONTAINERS_CONF": out}


def podman(*args: str, check: bool = True) -> str:
    done = subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()}")
    return done.stdout.strip()


def wait_for(what: str, predicate, timeout: float = 120.0, every: float = 0.5):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    last: object = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except Exception as error:  # noqa: BLE001 (keep polling until the deadline)
            last = error
        time.sleep(every)
    raise TimeoutError(f"timed out waiting for {what}: last {last!r}")


@dataclass
class SshNode:
    container: str
    port: int
    key: Path

    def exec(self, command: str, *, detach: bool = False) -> str:
        return podman("exec", *(["-d"] if detach else []), self.container, "sh", "-c", command)

    def inventory_vars(self) -> dict[str, object]:
        return {
            "ansible_host": "127.0.0.1",
            "ansible_port": self.port,
            "ansible_user": "root",
            "ansible_ssh_private_key_file": str(self.key),
        }


@pytest.fixture(scope="session")
def kubo_binary() -> Path:
    done = subprocess.run([str(ROOT / "scripts/build-kubo.sh")], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.fail(f"kubo could not be built: {done.stderr.strip().splitlines()[-1:]}")
    return Path(done.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="session")
def ssh_node(tmp_path_factory: pytest.TempPathFactory, kubo_binary: Path) -> Iterator[SshNode]:
    if shutil.which("podman") is None:
        pytest.fail("podman is missing: make test installs it (scripts/install-test-deps.sh)")
    subprocess.run([str(ROOT / "scripts/rootfs-image.sh"), IMAGE, "amd64", HOST_PACKAGES], check=True,
                   capture_output=True)
    keys = tmp_path_factory.mktemp("ssh")
    key = keys / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    name = f"lt-fabric-node-{uuid.uuid4().hex[:8]}"
    venv, base, repo = Path(sys.prefix), Path(sys.base_prefix), ROOT
    mounts = [f"{key}.pub:/root/.ssh/authorized_keys:ro", f"{kubo_binary}:/usr/local/bin/ipfs:ro"]
    mounts += [f"{p}:{p}:ro" for p in sorted({venv, base, repo}, key=str)]
    podman(
        "run", "-d", "--name", name, "--hostname", "lab-node-1", "-p", "127.0.0.1::22",
        *[a for m in mounts for a in ("-v", m)],
        IMAGE, "sh", "-c", "mkdir -p /run/sshd /var/log/lt && ssh-keygen -A && exec /usr/sbin/sshd -D -e",
    )
    try:
        port = int(podman("port", name, "22/tcp").rsplit(":", 1)[1])
        node = SshNode(name, port, key)
        wait_for("sshd", lambda: subprocess.run(
            ["ssh", "-i", str(key), "-p", str(port), "-o", "StrictHostKeyChecking=no", "-o", "BatchMode=yes",
             "-o", "UserKnownHostsFile=/dev/null", "root@127.0.0.1", "true"], capture_output=True).returncode == 0)
        yield node
    finally:
        podman("rm", "-f", "-t", "2", name, check=False)


@pytest.fixture(scope="session")
def running_peer(ssh_node: SshNode) -> SshNode:
    """kubo and a `tangle peer` on the node, the peer having published a few transactions."""
    ipfs = "IPFS_PATH=/var/lib/ipfs ipfs"
    ssh_node.exec(
        f"{ipfs} init --profile test >/dev/null && {ipfs} config Addresses.API /ip4/127.0.0.1/tcp/5001 && "
        f"{ipfs} config --json Pubsub.Enabled true && "
        f"{ipfs} config --json Swarm.ConnMgr '{{\"Type\":\"basic\",\"LowWater\":40,\"HighWater\":70,\"GracePeriod\":\"60s\"}}'"
    )
    ssh_node.exec(f"{ipfs} daemon --enable-gc >/var/log/lt/kubo.log 2>&1", detach=True)
    wait_for("kubo", lambda: "ID" in ssh_node.exec(f"{ipfs} --api=/ip4/127.0.0.1/tcp/5001 id"))
    env = {
        "IPFS_API": "http://127.0.0.1:5001", "PEER_INDEX": "0", "PEERS": "4", "TRAINING_INTERVAL": "2",
        "REANNOUNCE_INTERVAL": "5", "LOGGER": "file", "LOG_FILE": "/var/log/lt/peer.log", "HTTP_PORT": "8000",
        "OPENBLAS_NUM_THREADS": "1",
    }
    exports = " ".join(f"{k}={v}" for k, v in env.items())
    ssh_node.exec(f"env {exports} {sys.prefix}/bin/tangle peer >/var/log/lt/peer.out 2>&1", detach=True)

    def published() -> bool:
        out = ssh_node.exec("python3 -c \"import urllib.request as u; "
                            "print(u.urlopen('http://127.0.0.1:8000/api/peer', timeout=5).read().decode())\"")
        return json.loads(out)["published"] >= 3

    wait_for("the peer to publish 3 transactions", published, timeout=300, every=1)
    return ssh_node


@pytest.fixture(scope="session")
def inventory(tmp_path_factory: pytest.TempPathFactory, ssh_node: SshNode) -> Path:
    """An Ansible inventory of the emulated lab: the node with its peer, the same node seen as a host
    without a peer, and a host whose SSH port is closed."""
    folder = tmp_path_factory.mktemp("inventory")
    closed = _closed_port()
    hosts = {
        "all": {
            "children": {
                "servers": {"hosts": {"node-1": {
                    **ssh_node.inventory_vars(),
                    "lt_peer_url": "http://127.0.0.1:8000",
                    "lt_kubo_api": "/ip4/127.0.0.1/tcp/5001",
                    "lt_peer_log": "/var/log/lt/peer.log",
                    "lt_kubo_log": "/var/log/lt/kubo.log",
                }}},
                "agents": {"hosts": {
                    "bare-node": ssh_node.inventory_vars(),
                    "gone-node": {**ssh_node.inventory_vars(), "ansible_port": closed},
                }},
            }
        }
    }
    (folder / "hosts.yml").write_text(yaml.safe_dump(hosts))
    return folder


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # closed again when the socket closes: nothing listens there
