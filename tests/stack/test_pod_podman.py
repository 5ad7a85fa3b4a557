"""The peer pod for real: the rendered stack's pod templates run with `podman kube play` on the local images.

The bootstrap Deployment's and the peer StatefulSet's pod templates (peer + kubo sidecar, the ConfigMaps they
use, the generated Secret) run as podman pods on one podman network: the bootstrap node takes the identity of
the generated Secret, a first peer becomes healthy and publishes, a second peer joins through the bootstrap
node, and the two tangles converge. The conversions podman needs are listed in tests/stack/pods.py.

What this cannot exercise: scheduling (topology spread, requests), Services and their DNS names, the
NetworkPolicies, PVC binding, the probes (podman 4.3 turns them into health checks it runs only under
systemd), the LoadBalancer, RBAC. The manifest tests check those as data.

Needs podman; builds the peer image with scripts/build-images.sh (what `make images` runs) and the local
stand-in for `docker.io/ipfs/kubo:v0.43.1` with tests/containers/standins/kubo-image.sh, reusing their caches.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from containers.podman import containers_conf, tflite_loaded

from .pods import pod_document
from .render import ROOT, Manifest, build, copy_stack, documents, kustomize, one, set_peer_config, set_peers

pytestmark = [pytest.mark.integration, pytest.mark.containers]

PEER_IMAGE = "localhost/learning-tangle/peer:0.1.0"
KUBO_IMAGE = "docker.io/ipfs/kubo:v0.43.1"
T = TypeVar("T")


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *args], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"podman {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def _podman_env() -> None:
    """The project's podman settings (scripts/podman-env.sh): runc and lowered ulimits."""
    os.environ["CONTAINERS_CONF"] = containers_conf()


def _image_exists(image: str) -> bool:
    return _podman("image", "exists", image, check=False).returncode == 0


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The peer image as `make images` builds it without Docker (podman, the stand-in Debian base), and the
    local stand-in for the kubo image; both reuse podman's layer cache and scripts/build-kubo.sh's binary."""
    if shutil.which("podman") is None:
        if os.environ.get("CI"):
            pytest.fail("podman is missing: scripts/install-test-deps.sh installs it")
        pytest.skip("podman is missing")
    _podman_env()
    out = tmp_path_factory.mktemp("images")
    build = {"ENGINE": "podman", "STANDIN_BASE": "1", "IMAGES": "peer", "OUT": str(out), "PLATFORMS": ""}
    subprocess.run([ROOT / "scripts" / "build-images.sh"], cwd=ROOT, check=True, env={**os.environ, **build})
    subprocess.run(
        [ROOT / "tests" / "containers" / "standins" / "kubo-image.sh"], check=True, capture_output=True
    )
    for image in (PEER_IMAGE, KUBO_IMAGE):
        assert _image_exists(image), image


def _wait(what: str, probe: Callable[[], T | None], timeout: float, on_timeout: Callable[[], str]) -> T:
    start = time.monotonic()
    deadline = start + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None:
            print(f"{what}: {time.monotonic() - start:.1f} s")
            return value
        time.sleep(1)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{on_timeout()}")


class Lab:
    """Pods, volumes and one network of this test, all named lt-k3s-<random>-..., removed at the end."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.prefix = f"lt-k3s-{secrets.token_hex(3)}"
        self.network = f"{self.prefix}-net"
        self.files: list[Path] = []
        self.volumes: list[str] = []
        _podman("network", "create", self.network)

    def play(self, name: str, document: str) -> None:
        path = self.tmp / f"{name}.yaml"
        path.write_text(document)
        self.files.append(path)
        _podman("kube", "play", "--network", self.network, str(path))

    def volume(self, name: str) -> str:
        full = f"{self.prefix}-{name}"
        _podman("volume", "create", full)
        self.volumes.append(full)
        return full

    def ip(self, pod: str) -> str:
        infra = json.loads(_podman("pod", "inspect", pod).stdout)
        infra = infra[0] if isinstance(infra, list) else infra
        details = json.loads(_podman("inspect", infra["InfraContainerID"]).stdout)[0]
        address: str = details["NetworkSettings"]["Networks"][self.network]["IPAddress"]
        return address

    def logs(self, container: str) -> str:
        result = _podman("logs", "--tail", "40", container, check=False)
        return f"--- {container}\n{result.stdout}{result.stderr}"

    def close(self) -> None:
        for path in reversed(self.files):
            _podman("kube", "down", str(path), check=False)
        for volume in self.volumes:
            _podman("volume", "rm", "-f", volume, check=False)
        _podman("network", "rm", "-f", self.network, check=False)


@pytest.fixture
def lab(images: None, tmp_path: Path) -> Iterator[Lab]:
    lab = Lab(tmp_path)
    try:
        yield lab
    finally:
        lab.close()


def _get(url: str) -> Any | None:
    try:
        response = httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None
    return response.json() if response.status_code == 200 else None


def _memory_mib(container: str) -> float:
    stats = json.loads(_podman("stats", "--no-stream", "--format", "json", container).stdout)
    usage = stats[0]["mem_usage"].split("/")[0].strip()  # e.g. "123.4MB"
    units = {"kB": 1e3, "MB": 1e6, "GB": 1e9, "B": 1.0}
    for unit, factor in units.items():
        if usage.endswith(unit):
            return float(usage[: -len(unit)]) * factor / 2**20
    raise AssertionError(f"unexpected podman stats memory {usage!r}")


def _peer_env_value(objects: list[Manifest], name: str) -> str:
    data: dict[str, str] = one(objects, "ConfigMap", "peer-config")["data"]
    return data[name]


# x64 with the default numpy MLP, and the Raspberry Pi overlay in a private swarm (lowpower kubo, the Pi's
# limits, the swarm key) with MODEL=tflite set in the overlay as docs/k3s.md says (the image's TFLite runtime)
@pytest.mark.parametrize(
    ("overlay_name", "sized", "model"), [("x64", "x64", "mlp"), ("pi-lab-private", "pi-lab", "tflite")]
)
def test_peer_pods_join_through_the_bootstrap_pod_and_converge(
    lab: Lab, tmp_path: Path, overlay_name: str, sized: str, model: str
) -> None:
    stack = copy_stack(tmp_path / "stack")
    overlay = stack / "overlays" / sized  # where the number of peers and the settings live
    set_peers(overlay, 2)
    # a training every 5 s instead of 60 s: the one value an experiment changes here
    settings = {"TRAINING_INTERVAL": "5"} | ({"MODEL": model} if model != "mlp" else {})
    set_peer_config(overlay, **settings)
    objects: list[Manifest] = documents(build(kustomize(), stack / "overlays" / overlay_name))
    assert _peer_env_value(objects, "TRAINING_INTERVAL") == "5"
    assert _peer_env_value(objects, "MODEL") == model
    images = {
        c["image"]
        for o in objects
        if o["kind"] in {"StatefulSet", "Deployment"}
        for c in o["spec"]["template"]["spec"]["containers"]
    }
    assert {"learning-tangle/peer:0.1.0", KUBO_IMAGE} <= images
    bootstrap_id = (stack / "secrets" / "bootstrap-peer-id").read_text()

    # the bootstrap node, with the identity of the generated Secret
    bootstrap = f"{lab.prefix}-bootstrap"
    lab.play("bootstrap", pod_document(one(objects, "Deployment", "bootstrap"), objects, name=bootstrap))

    def online_id() -> str | None:
        # `ipfs swarm peers` answers only once the daemon runs (after every /container-init.d script)
        if _podman("exec", f"{bootstrap}-kubo", "ipfs", "swarm", "peers", check=False).returncode != 0:
            return None
        return _podman("exec", f"{bootstrap}-kubo", "ipfs", "id", "-f", "<id>").stdout.strip()

    assert (
        _wait("the bootstrap node's kubo", online_id, 300, lambda: lab.logs(f"{bootstrap}-kubo"))
        == bootstrap_id
    )
    bootstrap_addr = f"/ip4/{lab.ip(bootstrap)}/tcp/4001"

    peer_set = one(objects, "StatefulSet", "peer")
    pods = [f"{lab.prefix}-peer-{i}" for i in range(2)]

    def play_peer(index: int) -> str:
        name = pods[index]
        document = pod_document(
            peer_set,
            objects,
            name=name,
            labels={"apps.kubernetes.io/pod-index": str(index)},
            volumes={"ipfs": lab.volume(f"ipfs-peer-{index}")},
            bootstrap_addr=bootstrap_addr,
        )
        lab.play(f"peer-{index}", document)
        return f"http://{lab.ip(name)}:8000"

    def logs() -> str:
        return "".join(lab.logs(f"{pod}-{c}") for pod in pods for c in ("peer", "kubo")) + lab.logs(
            f"{bootstrap}-kubo"
        )

    # the first peer becomes healthy and publishes
    first = play_peer(0)
    _wait("peer 0's /healthz", lambda: _get(f"{first}/healthz"), 180, logs)
    info = _wait(
        "peer 0 to publish",
        lambda: p if (p := _get(f"{first}/api/peer")) and p["published"] >= 1 else None,
        180,
        logs,
    )
    assert info["peerIndex"] == 0

    # the second joins through the bootstrap node; both tangles converge on each other's transactions
    second = play_peer(1)
    _wait("peer 1's /healthz", lambda: _get(f"{second}/healthz"), 180, logs)

    def converged() -> tuple[set[str], dict[str, Any], dict[str, Any]] | None:
        a, b = _get(f"{first}/api/transactions"), _get(f"{second}/api/transactions")
        if not a or not b:
            return None
        names_a, names_b = {n["name"] for n in a["nodes"]}, {n["name"] for n in b["nodes"]}
        authors = {n["peer"] for n in a["nodes"]}
        published = [_get(f"{url}/api/peer") for url in (first, second)]
        if names_a == names_b and len(authors) >= 3 and all(p and p["published"] >= 2 for p in published):
            return names_a, published[0] or {}, published[1] or {}
        return None

    names, peer_a, peer_b = _wait("the two tangles to converge", converged, 300, logs)
    assert peer_b["peerIndex"] == 1
    assert {peer_a["peer"], peer_b["peer"]} <= {n["peer"] for n in _get(f"{first}/api/transactions")["nodes"]}  # type: ignore[index]
    # peer 1's kubo knew only the bootstrap node's address: it is connected to it and, through it, to peer 0
    swarm = _podman("exec", f"{pods[1]}-kubo", "ipfs", "swarm", "peers").stdout
    assert bootstrap_id in swarm
    assert peer_a["peer"] in swarm

    # as the manifests say: non-root, read-only root filesystem, RPC on the pod's loopback only
    assert _podman("exec", f"{pods[0]}-peer", "id", "-u").stdout.strip() == "10001"
    assert _podman("exec", f"{pods[0]}-peer", "touch", "/probe", check=False).returncode != 0
    assert (
        _podman("exec", f"{pods[0]}-kubo", "ipfs", "config", "Addresses.API").stdout.strip()
        == "/ip4/127.0.0.1/tcp/5001"
    )
    with pytest.raises(httpx.HTTPError):
        httpx.post(f"http://{lab.ip(pods[0])}:5001/api/v0/id", timeout=3)
    # MODEL=tflite trains on the image's TensorFlow Lite runtime (its library mapped in the peer process)
    assert [tflite_loaded(f"{pod}-peer") for pod in pods] == [model == "tflite"] * 2
    private = overlay_name.endswith("-private")
    key = _podman("exec", f"{pods[1]}-kubo", "cat", "/data/ipfs/swarm.key", check=False)
    assert (key.returncode == 0) == private
    if private:
        assert key.stdout == (stack / "secrets" / "swarm.key").read_text()
        assert "Swarm is limited to private network" in _podman("logs", f"{pods[1]}-kubo").stdout

    memory = {f"{c}": round(_memory_mib(f"{pods[0]}-{c}"), 1) for c in ("peer", "kubo")}
    memory["bootstrap-kubo"] = round(_memory_mib(f"{bootstrap}-kubo"), 1)
    print(f"\nmemory (MiB), {len(names)} transactions, {peer_a['trainings']} trainings: {json.dumps(memory)}")


def test_genesis_job_prints_the_genesis_every_peer_computes(lab: Lab, tmp_path: Path) -> None:
    stack = copy_stack(tmp_path / "stack")
    objects = documents(build(kustomize(), stack / "overlays" / "x64"))
    name = f"{lab.prefix}-genesis"
    lab.play("genesis", pod_document(one(objects, "Job", "genesis"), objects, name=name))
    container = f"{name}-genesis"

    def exited() -> str | None:
        state = _podman(
            "inspect", "--format", "{{.State.Status}} {{.State.ExitCode}}", container
        ).stdout.split()
        return state[1] if state[0] == "exited" else None

    assert _wait("the genesis Job", exited, 120, lambda: lab.logs(container)) == "0"
    cid = _podman("logs", container).stdout.split()[0]
    # the same CID a peer computes from the same MODEL and SEED (peer/learning/genesis.py, no node needed)
    result = subprocess.run(
        [Path(sys.executable).parent / "tangle", "peer", "--create-genesis"],
        env={**os.environ, "STORAGE": "memory", "MESSAGE_BROKER": "memory", "MODEL": "mlp", "SEED": "0"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert cid == result.stdout.split()[0]
    assert cid.startswith("bafy")
