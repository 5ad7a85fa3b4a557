#!/usr/bin/env python3
"""The containerized lab on one machine: N learning peers, each beside its own kubo node, a bootstrap kubo
node, the genesis step, the visualizer, Prometheus with the project's rules, Grafana with its provisioning,
and node-exporter, as one compose project that runs with `docker compose` and with `podman-compose`.

    python3 docker/lab.py up --peers 5        # writes runs/compose-lab/compose.yaml (and more), starts it
    python3 docker/lab.py up --model tflite --tflite-fraction 0.5   # half the peers on TensorFlow Lite
    python3 docker/lab.py password            # Grafana's admin password, generated at the first start
    python3 docker/lab.py down [--reset]      # stops it; --reset also deletes its volumes (repos, identities)
    python3 docker/lab.py generate --peers 3 --out docker   # what docker/compose.yaml is

Standard library only, so it runs with the system's python3 before anything is installed. Every bad option is
one line naming it, before anything starts. The peer index is the service's number (PEER_INDEX), never an IP.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_PEERS = 100  # each peer is two containers (a peer, about 60 MB, and a kubo node, about 100 MB)
VERSION: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]

# Third-party images, pinned by exact tag; the tests run stand-ins under these names (tests/containers).
KUBO_IMAGE = "docker.io/ipfs/kubo:v0.43.1"
PROMETHEUS_IMAGE = "docker.io/prom/prometheus:v2.53.4"
NODE_EXPORTER_IMAGE = "docker.io/prom/node-exporter:v1.9.1"
GRAFANA_IMAGE = "docker.io/grafana/grafana:12.0.2"
KUBO_INIT = ROOT / "docker/kubo/container-init.d/050-learning-tangle.sh"  # the project's kubo settings
LAB_INIT = ROOT / "docker/lab/kubo-init/060-lab.sh"
MONITORING = ROOT / "k3s/monitoring"
DEFAULT_STATE = ROOT / "runs/compose-lab"
DEFAULT_PROJECT = "learning-tangle-lab"
# MODEL and TFLITE_ARCH values of the peer (peer/config.py; this file imports nothing of the project)
NUMPY_MODELS = ("softmax", "mlp", "cnn", "femnist-cnn")
MODELS = (*NUMPY_MODELS, "fake", "tflite")


class LabError(ValueError):
    """A bad option: one line naming it."""


@dataclass(frozen=True)
class LabConfig:
    peers: int = 3
    bind: str = "127.0.0.1"
    viz_port: int = 9000
    prometheus_port: int = 9090
    grafana_port: int = 3000
    grafana: bool = True
    registry: str = ""
    version: str = VERSION
    training_interval: float = 20.0
    ipfs_profile: str = "lowpower"
    dataset_path: Path | None = None
    scrape_interval: str = "5s"
    model: str = ""  # MODEL of every peer; empty: the image's default (mlp)
    tflite_arch: str = "mlp"  # with model tflite: the numpy layout (TFLITE_ARCH) every peer trains
    tflite_fraction: float = 1.0  # with model tflite: share of peers on TensorFlow Lite, the others on numpy

    def validate(self) -> None:
        if not 1 <= self.peers <= MAX_PEERS:
            raise LabError(
                f"--peers must be between 1 and {MAX_PEERS} (got {self.peers}): each peer runs two containers"
            )
        for name in ("viz_port", "prometheus_port", "grafana_port"):
            port = getattr(self, name)
            if not 0 <= port <= 65535:
                raise LabError(f"--{name.replace('_', '-')} must be a port number 0-65535 (got {port})")
        if self.training_interval <= 0:
            raise LabError(f"--training-interval must be above 0 seconds (got {self.training_interval})")
        if self.model and self.model not in MODELS:
            raise LabError(f"--model must be one of {', '.join(MODELS)} (got {self.model!r})")
        if self.tflite_arch not in NUMPY_MODELS:
            choices = ", ".join(NUMPY_MODELS)
            raise LabError(f"--tflite-arch must be one of {choices} (got {self.tflite_arch!r})")
        if not 0 <= self.tflite_fraction <= 1:
            raise LabError(f"--tflite-fraction must be between 0 and 1 (got {self.tflite_fraction})")
        if self.dataset_path is not None and not self.dataset_path.exists():
            raise LabError(
                f"--dataset-path {self.dataset_path} does not exist: give a LEAF FEMNIST file or folder"
            )

    def image(self, name: str) -> str:
        return f"{self.registry}learning-tangle/{name}:{self.version}"

    def on_tflite(self, index: int) -> bool:
        """Whether peer `index` runs TensorFlow Lite: the rule of `tangle lab --tflite-fraction` (every peer
        whose share crosses a whole number, so they are spread evenly)."""
        f = self.tflite_fraction
        return self.model == "tflite" and int((index + 1) * f + 1e-9) > int(index * f + 1e-9)

    def model_env(self, index: int) -> dict[str, str]:
        """Peer `index`'s MODEL settings: tflite peers and their numpy twins share one layout and genesis."""
        if not self.model:
            return {}
        if self.model != "tflite":
            return {"MODEL": self.model}
        if self.on_tflite(index):
            return {"MODEL": "tflite", "TFLITE_ARCH": self.tflite_arch}
        return {"MODEL": self.tflite_arch}


def _rel(path: Path, base: Path) -> str:
    """Compose resolves relative paths against the compose file's folder: relative inside the checkout (so
    that docker/compose.yaml works from any clone), absolute for a folder elsewhere."""
    if not base.resolve().is_relative_to(ROOT):
        return str(path.resolve())
    text = os.path.relpath(path.resolve(), base.resolve())
    return text if text.startswith(".") else f"./{text}"


def prometheus_config(config: LabConfig) -> dict[str, object]:
    """Prometheus for the lab: the job names of k3s/monitoring (peer, kubo, node-exporter, prometheus), so the
    same rules and dashboards apply. kubo is scraped through each peer's read-only pass-through."""
    peers = [f"peer-{i}:8000" for i in range(config.peers)]

    def targets(path: str | None, job: str) -> dict[str, object]:
        entry: dict[str, object] = {
            "job_name": job,
            "static_configs": [{"targets": [t], "labels": {"pod": t.split(":")[0]}} for t in peers],
        }
        if path:
            entry["metrics_path"] = path
        return entry

    return {
        "global": {
            "scrape_interval": config.scrape_interval,
            "scrape_timeout": config.scrape_interval,
            "evaluation_interval": config.scrape_interval,
        },
        "rule_files": ["rules/*.yml"],
        "scrape_configs": [
            {"job_name": "prometheus", "static_configs": [{"targets": ["localhost:9090"]}]},
            targets(None, "peer"),
            targets("/metrics/ipfs", "kubo"),
            {"job_name": "node-exporter", "static_configs": [{"targets": ["node-exporter:9100"]}]},
        ],
    }


def compose(config: LabConfig, out: Path) -> dict[str, object]:
    """The compose project for `config`, with paths relative to the folder `out` it is written to."""
    config.validate()
    kubo_scripts = [f"{_rel(LAB_INIT, out)}:/container-init.d/060-lab.sh:ro"]
    if KUBO_INIT.exists():
        kubo_scripts.insert(0, f"{_rel(KUBO_INIT, out)}:/container-init.d/050-learning-tangle.sh:ro")
    kubo_command = ["daemon", "--migrate=true", "--agent-version-suffix=docker", "--enable-gc"]
    peer_urls = [f"http://peer-{i}:8000" for i in range(config.peers)]
    services: dict[str, object] = {}
    volumes: dict[str, object] = {"bootstrap-repo": {}, "lab-shared": {}, "prometheus-data": {}}

    # one-shot: the shared volume for the bootstrap address, and Grafana's admin password on the first start
    init_script = (
        "set -e; chown 1000:100 /lab; "
        "if [ ! -s /grafana/admin-password ]; then "
        "head -c 18 /dev/urandom | base64 | tr -d '/+=' > /grafana/admin-password; fi; "
        "chown 472:0 /grafana/admin-password; chmod 0400 /grafana/admin-password"
    )
    services["lab-init"] = {
        "image": KUBO_IMAGE,
        "user": "0:0",
        "entrypoint": ["/bin/sh", "-c", init_script],
        "volumes": ["lab-shared:/lab", "grafana-secret:/grafana"],
        "restart": "no",
    }
    volumes["grafana-secret"] = {}
    services["bootstrap"] = {
        "image": KUBO_IMAGE,
        "command": kubo_command,
        # kubo's default profile: a DHT server (the "server" profile would filter the lab's private addresses)
        "environment": {"LAB_ROLE": "bootstrap"},
        "volumes": ["bootstrap-repo:/data/ipfs", "lab-shared:/lab", *kubo_scripts],
        "depends_on": {"lab-init": {"condition": "service_completed_successfully"}},
        "restart": "unless-stopped",
    }
    for i in range(config.peers):
        volumes[f"ipfs-{i}"] = {}
        services[f"kubo-{i}"] = {
            "image": KUBO_IMAGE,
            "command": kubo_command,
            "environment": {"LAB_ROLE": "node", "IPFS_PROFILE": config.ipfs_profile},
            "volumes": [f"ipfs-{i}:/data/ipfs", "lab-shared:/lab:ro", *kubo_scripts],
            # the peer shares this network namespace (as a pod's containers do): peer-i names both
            "networks": {"default": {"aliases": [f"peer-{i}"]}},
            "depends_on": ["bootstrap"],
            "restart": "unless-stopped",
        }
    peer_env: dict[str, str] = {
        "PEERS": str(config.peers),
        "IPFS_API": "http://127.0.0.1:5001",
        "HTTP_HOST": "0.0.0.0",  # noqa: S104 (inside the container; nothing of it is published)
        "HTTP_PORT": "8000",
        "TRAINING_INTERVAL": f"{config.training_interval:g}",
        "TAG": "compose-lab",
    }
    data_volumes: list[str] = []
    if config.dataset_path is not None:
        peer_env |= {"DATASET": "femnist", "DATASET_PATH": "/data/femnist"}
        data_volumes = [f"{config.dataset_path.resolve()}:/data/femnist:ro"]
    hardening: dict[str, object] = {
        "read_only": True,
        "tmpfs": ["/tmp"],  # noqa: S108 (the container's own tmpfs)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
    }
    # the genesis step: publish and pin the deterministic genesis once, and print its CID in the logs. Peers
    # need not wait for it: each computes the same genesis CID and stores it in its own node at start-up.
    services["genesis"] = {
        "image": config.image("peer"),
        "command": ["peer", "--create-genesis"],
        "environment": {**peer_env, **config.model_env(0), "PEER_INDEX": "0"},
        "network_mode": "service:kubo-0",
        "depends_on": ["kubo-0"],
        "volumes": data_volumes,
        "restart": "on-failure",
        **hardening,
    }
    for i in range(config.peers):
        services[f"peer-{i}"] = {
            "image": config.image("peer"),
            "command": ["peer"],
            "environment": {**peer_env, **config.model_env(i), "PEER_INDEX": str(i)},
            "network_mode": f"service:kubo-{i}",
            # only its own node: a chain of dependencies (peer -> genesis -> kubo-0) breaks podman 4.3's start
            "depends_on": [f"kubo-{i}"],
            "volumes": data_volumes,
            "restart": "unless-stopped",
            **hardening,
        }
    origins = [f"{host}:{config.viz_port}" for host in ("127.0.0.1", "localhost")]
    services["visualizer"] = {
        "image": config.image("visualizer"),
        "command": ["viz"],
        "environment": {
            "VIZ_PEERS": json.dumps(peer_urls),
            "VIZ_ALLOW_ORIGIN": json.dumps(origins),
            "VIZ_HOST": "0.0.0.0",  # noqa: S104 (inside the container; published on --bind only)
            "VIZ_PORT": "9000",
        },
        "ports": [f"{config.bind}:{config.viz_port}:9000"],
        "restart": "unless-stopped",
        **hardening,
    }
    services["prometheus"] = {
        "image": PROMETHEUS_IMAGE,
        "command": [
            "--config.file=/etc/prometheus/prometheus.yml",
            "--storage.tsdb.path=/prometheus",
            "--storage.tsdb.retention.time=7d",
        ],
        "volumes": [
            "./prometheus.yml:/etc/prometheus/prometheus.yml:ro",
            f"{_rel(MONITORING / 'prometheus/rules', out)}:/etc/prometheus/rules:ro",
            "prometheus-data:/prometheus",
        ],
        "ports": [f"{config.bind}:{config.prometheus_port}:9090"],
        "restart": "unless-stopped",
        "read_only": True,
    }
    services["node-exporter"] = {
        "image": NODE_EXPORTER_IMAGE,
        "command": ["--path.procfs=/host/proc", "--path.sysfs=/host/sys"],
        "volumes": ["/proc:/host/proc:ro", "/sys:/host/sys:ro"],
        "pid": "host",
        "restart": "unless-stopped",
        "read_only": True,
    }
    if config.grafana:
        volumes["grafana-data"] = {}
        grafana = MONITORING / "grafana"
        services["grafana"] = {
            "image": GRAFANA_IMAGE,
            "environment": {
                # generated by lab-init on the first start, never admin/admin (`docker/lab.py password`)
                "GF_SECURITY_ADMIN_PASSWORD__FILE": "/run/lab/admin-password",
                "GF_AUTH_ANONYMOUS_ENABLED": "false",
                "GF_USERS_ALLOW_SIGN_UP": "false",
                "GF_ANALYTICS_REPORTING_ENABLED": "false",
                "GF_ANALYTICS_CHECK_FOR_UPDATES": "false",
            },
            "volumes": [
                "grafana-data:/var/lib/grafana",
                "grafana-secret:/run/lab:ro",
                f"{_rel(grafana / 'provisioning', out)}:/etc/grafana/provisioning:ro",
                f"{_rel(grafana / 'dashboards', out)}:/var/lib/grafana/dashboards/learning-tangle:ro",
            ],
            "ports": [f"{config.bind}:{config.grafana_port}:3000"],
            "depends_on": {
                "lab-init": {"condition": "service_completed_successfully"},
                "prometheus": {"condition": "service_started"},
            },
            "restart": "unless-stopped",
        }
    return {"services": services, "volumes": volumes}


HEADER = """\
# The one-machine lab ({peers} peers), GENERATED by `python3 docker/lab.py generate{args}`: edit that.
# Start: docker compose -f {path} up -d   (or podman-compose; `python3 docker/lab.py up` does both)
# Pages: visualizer http://{bind}:{viz}/  Prometheus http://{bind}:{prom}/  Grafana http://{bind}:{graf}/
"""


def write(config: LabConfig, out: Path) -> Path:
    """Write compose.yaml and prometheus.yml into `out` (JSON is YAML: no YAML library needed)."""
    project = compose(config, out)
    out.mkdir(parents=True, exist_ok=True)
    args = "" if config.peers == 3 else f" --peers {config.peers}"
    header = HEADER.format(
        peers=config.peers,
        args=args + (f" --out {_rel(out, ROOT)}" if out.resolve() != DEFAULT_STATE else ""),
        path=_rel(out / "compose.yaml", ROOT),
        bind=config.bind,
        viz=config.viz_port,
        prom=config.prometheus_port,
        graf=config.grafana_port,
    )
    (out / "compose.yaml").write_text(header + json.dumps(project, indent=2) + "\n")
    (out / "prometheus.yml").write_text(
        "# GENERATED by docker/lab.py: Prometheus for the compose lab\n"
        + json.dumps(prometheus_config(config), indent=2)
        + "\n"
    )
    return out / "compose.yaml"


def engine() -> list[str]:
    """`docker compose` where a Docker engine answers, else podman-compose."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "info"], capture_output=True).returncode == 0:  # noqa: S603
        return [docker, "compose"]
    found = shutil.which("podman-compose") or shutil.which(
        str(Path(sys.executable).parent / "podman-compose")
    )
    if found:
        return [found]
    raise LabError("no Docker engine answers and podman-compose is missing: pip install podman-compose")


def _config(args: argparse.Namespace) -> LabConfig:
    return LabConfig(
        peers=args.peers,
        bind=args.bind,
        viz_port=args.viz_port,
        prometheus_port=args.prometheus_port,
        grafana_port=args.grafana_port,
        grafana=not args.no_grafana,
        registry=args.registry,
        version=args.version,
        training_interval=args.training_interval,
        ipfs_profile=args.ipfs_profile,
        dataset_path=args.dataset_path,
        model=args.model,
        tflite_arch=args.tflite_arch,
        tflite_fraction=args.tflite_fraction,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="docker/lab.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("generate", "up"):
        p = sub.add_parser(name)
        p.add_argument("--peers", type=int, default=3, help="number of peers (each with its own kubo node)")
        p.add_argument("--out", type=Path, default=DEFAULT_STATE, help="folder for compose.yaml")
        p.add_argument("--bind", default="127.0.0.1", help="address the pages are published on")
        p.add_argument("--viz-port", type=int, default=9000)
        p.add_argument("--prometheus-port", type=int, default=9090)
        p.add_argument("--grafana-port", type=int, default=3000)
        p.add_argument("--no-grafana", action="store_true", help="leave Grafana out")
        p.add_argument("--registry", default="", help="image prefix of the project's images, ending in /")
        p.add_argument("--version", default=VERSION, help="tag of the project's images")
        p.add_argument("--training-interval", type=float, default=20.0, help="seconds between rounds")
        p.add_argument("--ipfs-profile", default="lowpower", help="kubo profile of the peers' nodes")
        p.add_argument("--dataset-path", type=Path, help="LEAF FEMNIST data for every peer (read-only)")
        p.add_argument("--model", default="", help=f"MODEL of the peers ({', '.join(MODELS)}; default mlp)")
        p.add_argument("--tflite-arch", default="mlp", help="with --model tflite: the layout (TFLITE_ARCH)")
        p.add_argument(
            "--tflite-fraction",
            type=float,
            default=1.0,
            help="with --model tflite: share of peers on TensorFlow Lite, spread evenly; the others train "
            "the same layout in numpy",
        )
        p.add_argument("--project", default=DEFAULT_PROJECT, help="compose project name")
    for name in ("down", "password"):
        p = sub.add_parser(name)
        p.add_argument("--out", type=Path, default=DEFAULT_STATE)
        p.add_argument("--project", default=DEFAULT_PROJECT)
        if name == "down":
            p.add_argument("--reset", action="store_true", help="also delete the volumes (a fresh lab)")
    images = sub.add_parser("images", help="print the image names the lab uses")
    images.add_argument("--monitoring", action="store_true", help="only Prometheus and node-exporter")
    args = parser.parse_args(argv)
    try:
        if args.command == "images":
            names = [PROMETHEUS_IMAGE, NODE_EXPORTER_IMAGE]
            if not args.monitoring:
                names = [KUBO_IMAGE, *names, GRAFANA_IMAGE]
            print(" ".join(names))
            return 0
        if args.command == "generate":
            print(write(_config(args), args.out))
            return 0
        compose_file = args.out / "compose.yaml"
        if args.command == "up":
            config = _config(args)
            write(config, args.out)
            base = [*engine(), "-p", args.project, "-f", str(compose_file)]
            subprocess.run([*base, "up", "-d"], check=True)  # noqa: S603 (our own command line)
            print(
                f"visualizer http://{config.bind}:{config.viz_port}/  "
                f"Prometheus http://{config.bind}:{config.prometheus_port}/"
                + (
                    f"  Grafana http://{config.bind}:{config.grafana_port}/ (admin; password: "
                    "python3 docker/lab.py password)"
                    if config.grafana
                    else ""
                )
            )
            return 0
        if not compose_file.is_file():
            raise LabError(
                f"{compose_file} does not exist: start the lab with `python3 docker/lab.py up` first"
            )
        base = [*engine(), "-p", args.project, "-f", str(compose_file)]
        if args.command == "password":
            run = subprocess.run(  # noqa: S603 (our own command line)
                [
                    *base,
                    "run",
                    "--rm",
                    "--no-deps",
                    "--entrypoint",
                    "cat",
                    "lab-init",
                    "/grafana/admin-password",
                ],
                check=True,
                capture_output=True,
                text=True,
            )
            print(run.stdout.strip().splitlines()[-1])
            return 0
        down = [*base, "down", "--remove-orphans"]
        if args.reset:
            down.append("--volumes")
        subprocess.run(down, check=True)  # noqa: S603 (our own command line)
        return 0
    except LabError as error:
        print(f"docker/lab.py: {error}", file=sys.stderr)
        return 2
    except subprocess.CalledProcessError as error:
        print(
            f"docker/lab.py: {' '.join(map(str, error.cmd[:4]))} ... exited with {error.returncode}",
            file=sys.stderr,
        )
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
