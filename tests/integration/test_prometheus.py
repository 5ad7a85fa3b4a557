"""The monitoring configuration against the real tools: promtool on the configs and rules, and a real
Prometheus scraping a running `tangle lab --metrics-port`, a node-exporter, and two `tangle peer` processes on
their own kubo nodes passing kubo's metrics through at /metrics/ipfs, queried for every expression of every
dashboard panel and every recording rule.

Needs Debian's `prometheus` (prometheus, promtool) and `prometheus-node-exporter`. Without them the tests
skip, except under CI (CI set), where a missing binary is a failure: the test setup must install them.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from peer.ipfs.testnet import IpfsTestnet

from .peers import PeerProcess, run

ROOT = Path(__file__).resolve().parents[2]
MONITORING = ROOT / "k3s" / "monitoring"
PROMETHEUS_DIR = MONITORING / "prometheus"
RULES = sorted((PROMETHEUS_DIR / "rules").glob("*.yml"))
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
APT_PACKAGES = "prometheus prometheus-node-exporter"

# A Raspberry Pi's SoC sensor as the kernel shows it (/sys/class/thermal/thermal_zone0): this machine has
# no sensor, so a second node-exporter reads this fixture and the temperature queries are checked too.
PI_THERMAL_ZONE = {"type": "cpu-thermal\n", "policy": "step_wise\n", "temp": "48900\n"}


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is not None:
        return path
    if os.environ.get("CI"):
        pytest.fail(f"{name} is missing: the test setup must install the Debian packages {APT_PACKAGES}")
    pytest.skip(f"{name} is not installed (apt-get install {APT_PACKAGES}); under CI this fails instead")


def _run(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, input=stdin, capture_output=True, text=True, timeout=60, check=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- promtool --------------------------------------------------------------------------------------------
def _without_kubernetes_sd(config: dict[str, Any]) -> int:
    """Debian's promtool is built without Kubernetes discovery: swap it for empty static configs."""
    swapped = 0
    for job in config["scrape_configs"]:
        if job.pop("kubernetes_sd_configs", None) is not None:
            job["static_configs"] = []
            swapped += 1
    return swapped


def test_promtool_checks_the_kubernetes_config(tmp_path: Path) -> None:
    promtool = _binary("promtool")
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus.yml").read_text())
    jobs = {job["job_name"] for job in config["scrape_configs"] if "kubernetes_sd_configs" in job}
    assert jobs == {"peer", "kubo", "node-exporter"}
    assert _without_kubernetes_sd(config) == 3
    config["rule_files"] = [str(PROMETHEUS_DIR / "rules" / "*.yml")]
    copy = tmp_path / "prometheus.yml"
    copy.write_text(yaml.safe_dump(config))
    result = _run(promtool, "check", "config", str(copy))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 rule files found" in result.stdout + result.stderr


def test_promtool_checks_the_lab_config() -> None:
    result = _run(_binary("promtool"), "check", "config", str(PROMETHEUS_DIR / "prometheus-lab.yml"))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_checks_the_rules() -> None:
    result = _run(_binary("promtool"), "check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_rule_unit_tests_pass() -> None:
    tests = sorted((PROMETHEUS_DIR / "tests").glob("*.yml"))
    assert tests
    result = _run(_binary("promtool"), "test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


# --- a live Prometheus against a running lab -------------------------------------------------------------
class Processes:
    def __init__(self, logs: Path) -> None:
        self.logs = logs
        self.started: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.peers: list[PeerProcess] = []
        self.nets: list[IpfsTestnet] = []

    def testnet(self, directory: Path, size: int) -> IpfsTestnet:
        net = IpfsTestnet(directory, size)
        self.nets.append(net)
        run(net.start_all())
        return net

    def start(self, name: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        log = (self.logs / f"{name}.log").open("wb")
        process = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=self.logs)
        self.started.append((name, process))
        return process

    def log(self, name: str) -> str:
        return (self.logs / f"{name}.log").read_text(errors="replace")[-3000:]

    def stop_all(self) -> None:
        for peer in self.peers:
            peer.stop()
        for net in self.nets:
            run(net.close())
        for _name, process in reversed(self.started):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for _name, process in reversed(self.started):
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    procs = Processes(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


def _wait_http(url: str, process: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"{url}: the process exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer in time")


def _dashboard_expressions() -> list[tuple[str, str]]:
    """(where, PromQL) for every panel target and every template variable's metric."""
    found = []
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        for panel in dashboard["panels"]:
            for target in panel["targets"]:
                found.append((f"{path.stem} / {panel['title']}", target["expr"]))
        for variable in dashboard["templating"]["list"]:
            metric, label = re.fullmatch(r"label_values\((.+), (\w+)\)", variable["definition"]).groups()
            found.append((f"{path.stem} / ${variable['name']}", f"count by ({label}) ({metric})"))
    return found


def _substitute(expr: str) -> str:
    return expr.replace("$peer", ".*").replace("$instance", ".*")


def _query(api: str, expr: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{api}/api/v1/query", params={"query": expr}, timeout=10)
    body = response.json()
    assert body["status"] == "success", f"{expr}: {body}"
    return body["data"]["result"]


def _rules(api: str) -> list[dict[str, Any]]:
    groups = httpx.get(f"{api}/api/v1/rules", timeout=10).json()["data"]["groups"]
    return [rule for group in groups for rule in group["rules"]]


def _start_lab(processes: Processes, port: int, out: Path) -> subprocess.Popen[bytes]:
    """4 peers in 2 worker processes (so the runner merges two snapshots), one of them label-flipping;
    more rounds than the test needs: it is stopped at the end."""
    return processes.start(
        "lab",
        sys.executable,
        "-m",
        "peer",
        "lab",
        "--peers=4",
        "--workers=2",
        "--rounds=500",
        "--round-delay=0.25",
        "--poison=labelflip",
        "--malicious-fraction=0.25",
        f"--metrics-port={port}",
        "--progress=false",
        f"--out={out}",
        env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )


def _prometheus_config(path: Path, ports: dict[str, int], pi_port: int, kubo_ports: list[int]) -> None:
    """prometheus-lab.yml with this test's ports, 1 s scrapes and rule evaluations, the Pi fixture's
    node-exporter as a second node, and every kubo peer's /metrics/ipfs."""
    config = yaml.safe_load((PROMETHEUS_DIR / "prometheus-lab.yml").read_text())
    config["global"].update(scrape_interval="1s", scrape_timeout="1s", evaluation_interval="1s")
    config["rule_files"] = [str(rules) for rules in RULES]
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert set(jobs) == set(ports), f"prometheus-lab.yml has jobs {sorted(jobs)}"
    for name, job in jobs.items():
        job["static_configs"] = [{"targets": [f"127.0.0.1:{ports[name]}"]}]
    jobs["node-exporter"]["static_configs"].append({"targets": [f"127.0.0.1:{pi_port}"], "labels": {}})
    jobs["kubo"]["static_configs"] = [{"targets": [f"127.0.0.1:{port}" for port in kubo_ports]}]
    path.write_text(yaml.safe_dump(config))


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_every_dashboard_and_recording_rule_expression_returns_data(
    tmp_path: Path, processes: Processes
) -> None:
    prometheus = _binary("prometheus")
    node_exporter = _binary("prometheus-node-exporter")
    promtool = _binary("promtool")
    ports = {"peer": _free_port(), "prometheus": _free_port(), "node-exporter": _free_port()}
    # two peers on two kubo nodes that exchange blocks: real kubo data for the kubo panels
    net = processes.testnet(tmp_path / "ipfs", 2)
    kubo_peers = [
        PeerProcess(
            tmp_path / f"kubo-peer-{i}", {"IPFS_API": net[i].api_url, "PEER_INDEX": str(i)}, name=f"kubo-{i}"
        ).start()
        for i in range(2)
    ]
    processes.peers.extend(kubo_peers)
    ports["kubo"] = kubo_peers[0].port
    lab_url = f"http://127.0.0.1:{ports['peer']}/metrics"
    exporter_url = f"http://127.0.0.1:{ports['node-exporter']}/metrics"
    api = f"http://127.0.0.1:{ports['prometheus']}"

    exporter = processes.start(
        "node-exporter",
        node_exporter,
        f"--web.listen-address=127.0.0.1:{ports['node-exporter']}",
        "--no-collector.systemd",  # no systemd (and no D-Bus) in a container
    )
    zone = tmp_path / "pi-sysfs" / "class" / "thermal" / "thermal_zone0"
    zone.mkdir(parents=True)
    for name, content in PI_THERMAL_ZONE.items():
        (zone / name).write_text(content)
    pi_port = _free_port()
    pi_exporter = processes.start(
        "pi-node-exporter",
        node_exporter,
        f"--web.listen-address=127.0.0.1:{pi_port}",
        "--collector.disable-defaults",
        "--collector.thermal_zone",
        f"--path.sysfs={tmp_path / 'pi-sysfs'}",
    )
    lab = _start_lab(processes, ports["peer"], tmp_path / "lab")
    _prometheus_config(tmp_path / "prometheus.yml", ports, pi_port, [p.port for p in kubo_peers])
    server = processes.start(
        "prometheus",
        prometheus,
        f"--config.file={tmp_path / 'prometheus.yml'}",
        f"--storage.tsdb.path={tmp_path / 'data'}",
        f"--web.listen-address=127.0.0.1:{ports['prometheus']}",
    )
    started = time.monotonic()
    pi_url = f"http://127.0.0.1:{pi_port}/metrics"
    waits = [(f"{api}/-/ready", server), (exporter_url, exporter), (pi_url, pi_exporter), (lab_url, lab)]
    waits += [(f"{p.url}/metrics/ipfs", p.process) for p in kubo_peers if p.process is not None]
    try:
        for url, process in waits:
            _wait_http(url, process, started + 60)
    except AssertionError as error:
        raise AssertionError(f"{error}\n{processes.log('lab')}\n{processes.log('prometheus')}") from None

    # the lab's exposition passes promtool's lint (names, units, suffixes, help texts)
    lint = _run(promtool, "check", "metrics", stdin=httpx.get(lab_url, timeout=5).text)
    assert lint.returncode == 0, lint.stdout + lint.stderr

    assert 'node_thermal_zone_temp{type="cpu-thermal",zone="0"} 48.9' in httpx.get(pi_url, timeout=5).text
    recording = [rule for rule in _rules(api) if rule["type"] == "recording"]
    in_files = [r for path in RULES for g in yaml.safe_load(path.read_text())["groups"] for r in g["rules"]]
    assert len(recording) == sum("record" in r for r in in_files), "Prometheus did not load every rule"
    expressions = _dashboard_expressions()
    expressions += [(f"rule {rule['name']}", rule["query"]) for rule in recording]
    expressions += [(f"recorded {rule['name']}", rule["name"]) for rule in recording]

    # a few scrapes first; then every expression must return data
    missing: dict[str, str] = {}
    only_nan: dict[str, str] = {}
    while time.monotonic() < started + 120:
        assert lab.poll() is None, f"the lab exited early:\n{processes.log('lab')}"
        scrapes = _query(api, 'count_over_time(up{job="peer"}[1m])')
        if scrapes and float(scrapes[0]["value"][1]) >= 5:
            missing, only_nan = {}, {}
            for where, expr in expressions:
                result = _query(api, _substitute(expr))
                if not result:
                    missing[expr] = where
                elif all(sample["value"][1] == "NaN" for sample in result):
                    only_nan[expr] = where
            if not missing:
                break
        time.sleep(1)
    assert not missing, "expressions without data:\n" + "\n".join(f"{w}: {e}" for e, w in missing.items())
    # the lab makes no IPFS requests (memory backend): its IPFS series exist at 0, so only ratios and
    # quantiles over them may be NaN; anything else NaN-only would be a histogram nobody observes
    unexplained = {e: w for e, w in only_nan.items() if "learning_tangle_ipfs_request" not in e}
    assert not unexplained, f"expressions that are NaN only: {unexplained}"
    unhealthy = [(rule["name"], rule.get("lastError")) for rule in _rules(api) if rule["health"] != "ok"]
    assert not unhealthy, unhealthy
    print(f"\n{len(expressions)} expressions returned data ({len(only_nan)} NaN: idle IPFS)")

    # the runner served both workers' peers as one target; the poisoning peer is flagged
    assert float(_query(api, "count(learning_tangle_build_info)")[0]["value"][1]) == 4
    assert float(_query(api, "job:learning_tangle_peer_malicious:sum")[0]["value"][1]) == 1
    # both kubo nodes were scraped through their peers, and they moved blocks to each other over Bitswap
    assert float(_query(api, 'job:up:sum{job="kubo"}')[0]["value"][1]) == 2
    received = _query(api, 'max(ipfs_bitswap_recv_all_blocks_bytes_sum{job="kubo"})')
    assert float(received[0]["value"][1]) > 0
