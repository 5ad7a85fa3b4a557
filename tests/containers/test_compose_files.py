"""The compose lab's files, without containers: docker/compose.yaml is what the generator writes, Grafana
gets the project's provisioning and a generated password (Grafana has no stand-in here, so this part is
checked as files), and the ports are published on loopback only."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from .lab import lab_module
from .podman import ROOT

COMPOSE = ROOT / "docker/compose.yaml"


def _committed() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text()))


def test_docker_compose_yaml_is_the_generators_output() -> None:
    lab = lab_module()
    assert _committed() == json.loads(json.dumps(lab.compose(lab.LabConfig(), COMPOSE.parent)))
    generated = yaml.safe_load((ROOT / "docker/prometheus.yml").read_text())
    assert generated == lab.prometheus_config(lab.LabConfig())


def test_every_mounted_file_exists() -> None:
    for name, service in _committed()["services"].items():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: {source}"


def test_grafana_gets_the_provisioning_and_a_generated_password() -> None:
    services = _committed()["services"]
    grafana = services["grafana"]
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment  # never admin/admin, never a password in the file
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == "/run/lab/admin-password"
    assert "grafana-secret:/run/lab:ro" in grafana["volumes"]
    assert "/grafana/admin-password" in services["lab-init"]["entrypoint"][-1]
    assert "/dev/urandom" in services["lab-init"]["entrypoint"][-1]
    mounts = {
        v.split(":")[1]: COMPOSE.parent / v.split(":")[0] for v in grafana["volumes"] if v.startswith(".")
    }
    provisioning = mounts["/etc/grafana/provisioning"]
    datasource = yaml.safe_load((provisioning / "datasources/prometheus.yml").read_text())["datasources"][0]
    assert datasource["url"] == "http://prometheus:9090"  # the compose service of that name
    provider = yaml.safe_load((provisioning / "dashboards/learning-tangle.yml").read_text())["providers"][0]
    dashboards = mounts[provider["options"]["path"]]
    assert sorted(p.name for p in dashboards.glob("*.json"))


def test_published_ports_are_loopback_and_admin_apis_stay_inside() -> None:
    services = _committed()["services"]
    published = {name: s["ports"] for name, s in services.items() if "ports" in s}
    assert set(published) == {"visualizer", "prometheus", "grafana"}
    for ports in published.values():
        assert all(port.startswith("127.0.0.1:") for port in ports)
    for i in range(3):
        # the peer shares its kubo's network namespace: the RPC (an admin API) stays on 127.0.0.1 there
        assert services[f"peer-{i}"]["network_mode"] == f"service:kubo-{i}"
        assert services[f"peer-{i}"]["environment"]["PEER_INDEX"] == str(i)
        assert services[f"peer-{i}"]["read_only"] is True


def test_a_bigger_lab_is_one_number(tmp_path: Path) -> None:
    lab = lab_module()
    project = lab.compose(lab.LabConfig(peers=7), tmp_path)
    peers = [name for name in project["services"] if name.startswith("peer-")]
    assert len(peers) == 7
    assert {s["environment"]["PEERS"] for n, s in project["services"].items() if n.startswith("peer-")} == {
        "7"
    }
    assert len(lab.prometheus_config(lab.LabConfig(peers=7))["scrape_configs"][1]["static_configs"]) == 7
