"""A compose lab (docker/lab.py) under podman-compose for the tests: stand-in images, free loopback ports,
names prefixed lt-images-, always brought down."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .podman import ROOT, env, podman

STANDINS = ROOT / "tests/containers/standins"


def lab_module() -> ModuleType:
    """docker/lab.py, imported from its path (docker/ is no package)."""
    spec = importlib.util.spec_from_file_location("compose_lab", ROOT / "docker/lab.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["compose_lab"] = module
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def podman_compose() -> str:
    found = shutil.which("podman-compose") or shutil.which(
        str(Path(sys.executable).parent / "podman-compose")
    )
    if found is None:
        raise AssertionError("podman-compose is missing: pip install '.[dev]'")
    return found


def build_standins() -> None:
    """The third-party images the lab names, built locally (the registries cannot be reached here)."""
    for script in ("kubo-image.sh", "prometheus-images.sh"):
        subprocess.run(
            [str(STANDINS / script)], check=True, env=env(), stdout=subprocess.DEVNULL, timeout=1800
        )


@dataclass
class Lab:
    project: str
    folder: Path
    peers: int
    viz_port: int
    prometheus_port: int

    def compose(self, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [podman_compose(), "-p", self.project, "-f", str(self.folder / "compose.yaml"), *args],
            check=True,
            capture_output=True,
            text=True,
            env=env(),
            timeout=timeout,
        )

    def container(self, service: str) -> str:
        return f"{self.project}_{service}_1"

    def peer_state(self, index: int) -> dict[str, Any]:
        return self.peer_api(index, "/api/peer")

    def peer_api(self, index: int, path: str) -> dict[str, Any]:
        """A document of peer `index`'s HTTP API, read inside its container (the port is not published)."""
        script = (
            "import json, urllib.request as u; "
            f"print(json.dumps(json.load(u.urlopen('http://127.0.0.1:8000{path}', timeout=5))))"
        )
        out = podman("exec", self.container(f"peer-{index}"), "python3", "-c", script).stdout
        return dict(json.loads(out))

    def ipfs(self, service: str, *args: str) -> str:
        return podman("exec", self.container(service), "ipfs", *args).stdout


def start_lab(folder: Path, peers: int, *, training_interval: float = 5.0, **options: Any) -> Lab:
    """`options`: more LabConfig fields (docker/lab.py), e.g. model="tflite", tflite_fraction=0.5."""
    lab = Lab(
        project=f"lt-images-lab-{uuid.uuid4().hex[:6]}",
        folder=folder,
        peers=peers,
        viz_port=free_port(),
        prometheus_port=free_port(),
    )
    module = lab_module()
    config = module.LabConfig(
        peers=peers,
        viz_port=lab.viz_port,
        prometheus_port=lab.prometheus_port,
        grafana=False,  # no Grafana image can be had here (no stand-in): its provisioning is checked as files
        training_interval=training_interval,
        **options,
    )
    module.write(config, folder)
    lab.compose("up", "-d")
    return lab
