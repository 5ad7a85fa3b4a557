"""The monitoring files, checked without Prometheus or Grafana: dashboards up to date with their generator
and well formed, every metric or recorded series they name exists, every alert has firing and silent cases."""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

from peer.config import LabSettings
from peer.lab.worker import LabWorker
from peer.metrics import LabMetrics

ROOT = Path(__file__).resolve().parents[1]
MONITORING = ROOT / "k3s" / "monitoring"
RULES = MONITORING / "prometheus" / "rules"
DASHBOARDS = sorted((MONITORING / "grafana" / "dashboards").glob("*.json"))
# metrics of others the rules and dashboards may name (kubo's and node-exporter's own, Prometheus' up)
FOREIGN = re.compile(r"^(up|node_\w+|ipfs_\w+|libp2p_\w+|process_\w+)$")
PROMQL_WORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless", "bool", "offset",
    "sum", "avg", "min", "max", "count", "rate", "increase", "histogram_quantile", "max_over_time",
    "predict_linear", "label_values", "le", "inf", "nan",
}  # fmt: skip


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("dashboards", MONITORING / "dashboards.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)
    return module


def _rules() -> list[dict[str, Any]]:
    return [rule for path in sorted(RULES.glob("*.yml")) for g in yaml.safe_load(path.read_text())["groups"]
            for rule in g["rules"]]  # fmt: skip


def _our_series() -> set[str]:
    """Every sample name a lab peer and the lab runner export (with _total, _bucket, _sum, _count)."""
    worker = LabWorker(LabSettings(peers=1, model="softmax", baseline="none", workers=1), [0])
    try:
        worker.metrics.ipfs_errors.labels("p", "add", "timeout").inc()  # no series until a first error
        registries = (worker.metrics.registry, LabMetrics().registry)
        return {sample.name for registry in registries for f in registry.collect() for sample in f.samples}
    finally:
        worker.close()


def _names_in(expr: str) -> set[str]:
    """Metric and recorded-series names in a PromQL expression (label matchers and strings removed)."""
    expr = re.sub(r'"[^"]*"', "", expr)
    expr = re.sub(r"\{[^}]*\}", "", expr)
    expr = re.sub(r"\[[^\]]*\]", "", expr)
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    tokens = set(re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr))
    return {t for t in tokens if t.lower() not in PROMQL_WORDS}


def _panels() -> list[tuple[str, dict[str, Any]]]:
    return [(path.stem, panel) for path in DASHBOARDS for panel in json.loads(path.read_text())["panels"]]


def test_committed_dashboards_are_the_generators_output() -> None:
    assert _load_generator().main(["--check"]) == 0, "run: python k3s/monitoring/dashboards.py"
    assert [p.stem for p in DASHBOARDS] == sorted(
        [
            "learning-tangle-learning",
            "learning-tangle-tangle",
            "learning-tangle-peers",
            "learning-tangle-cluster",
        ]
    )


def test_every_panel_has_a_unit_a_description_and_the_provisioned_datasource() -> None:
    datasources = yaml.safe_load((MONITORING / "grafana/provisioning/datasources/prometheus.yml").read_text())
    uid = datasources["datasources"][0]["uid"]
    for dashboard, panel in _panels():
        where = f"{dashboard} / {panel['title']}"
        assert panel["description"].strip(), where
        assert panel["fieldConfig"]["defaults"]["unit"], where
        assert panel["datasource"]["uid"] == uid, where
        assert panel["targets"], where
        assert all(t["datasource"]["uid"] == uid for t in panel["targets"]), where
        assert len({t["refId"] for t in panel["targets"]}) == len(panel["targets"]), where
        if panel["fieldConfig"]["defaults"]["unit"] == "percentunit":
            assert panel["fieldConfig"]["defaults"].get("max", 1) == 1, f"{where}: ratios are fractions"


def test_dashboards_are_well_formed() -> None:
    uids = set()
    for path in DASHBOARDS:
        dashboard = json.loads(path.read_text())
        uids.add(dashboard["uid"])
        assert dashboard["title"].startswith("Learning Tangle / ")
        ids = [panel["id"] for panel in dashboard["panels"]]
        assert len(ids) == len(set(ids)), path.name
        cells: set[tuple[int, int]] = set()
        for panel in dashboard["panels"]:
            grid = panel["gridPos"]
            assert grid["x"] >= 0, panel["title"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]
            area = {
                (x, y)
                for x in range(grid["x"], grid["x"] + grid["w"])
                for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & area, f"{panel['title']} overlaps another panel"
            cells |= area
        variables = {v["name"] for v in dashboard["templating"]["list"]}
        used = {
            m for p in dashboard["panels"] for t in p["targets"] for m in re.findall(r"\$(\w+)", t["expr"])
        }
        assert used <= variables, f"{path.name}: undefined variables {used - variables}"
    assert len(uids) == len(DASHBOARDS)


def test_every_series_a_panel_or_rule_names_exists() -> None:
    """The 2020 dashboards queried a metric that did not exist; here every name must be exported by the peers,
    recorded by a rule, or belong to kubo, node-exporter or Prometheus."""
    ours = _our_series()
    recorded = {rule["record"] for rule in _rules() if "record" in rule}
    expressions = [(f"{d} / {p['title']}", t["expr"]) for d, p in _panels() for t in p["targets"]]
    expressions += [(rule.get("record") or rule["alert"], str(rule["expr"])) for rule in _rules()]
    for path in DASHBOARDS:
        for variable in json.loads(path.read_text())["templating"]["list"]:
            metric = re.fullmatch(r"label_values\((.+), \w+\)", variable["definition"]).group(1)
            expressions.append((f"{path.stem} ${variable['name']}", metric))
    for where, expr in expressions:
        for name in _names_in(expr):
            if name.startswith("learning_tangle_"):
                assert name in ours, f"{where}: {name} is not exported"
            elif ":" in name:
                assert name in recorded, f"{where}: {name} is not recorded"
            else:
                assert FOREIGN.match(name), f"{where}: unknown series {name}"


def test_recording_rules_follow_level_metric_operation_naming() -> None:
    for rule in _rules():
        if "record" in rule:
            level, metric, operation = rule["record"].split(":")
            assert level in {"job", "peer", "instance"}, rule["record"]
            assert metric, rule["record"]
            assert operation, rule["record"]


def test_every_alert_has_a_firing_and_a_silent_test_case() -> None:
    alerts = {rule["alert"] for rule in _rules() if "alert" in rule}
    assert alerts == {
        "PeerDown",
        "NoNewTransactions",
        "ReferenceAccuracyFalling",
        "NodeDiskFillingUp",
        "NodeDiskAlmostFull",
        "IpfsErrorsRising",
        "NodeTemperatureHigh",
    }
    tests = yaml.safe_load((MONITORING / "prometheus/tests/alerts_test.yml").read_text())["tests"]
    checks = [check for test in tests for check in test.get("alert_rule_test", [])]
    for alert in alerts:
        outcomes = {bool(check["exp_alerts"]) for check in checks if check["alertname"] == alert}
        assert outcomes == {True, False}, f"{alert}: needs a firing and a not-firing case"
    for alert in (rule for rule in _rules() if "alert" in rule):
        assert alert["labels"]["severity"] in {"warning", "critical"}
        assert alert["annotations"]["summary"]
        assert alert["annotations"]["description"]


def test_kubernetes_config_scrapes_by_annotation_and_the_lab_config_by_static_targets() -> None:
    k8s = yaml.safe_load((MONITORING / "prometheus/prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in k8s["scrape_configs"]}
    # kubo through the peer's port: its RPC (an admin API) is never scraped
    assert jobs["kubo"]["metrics_path"] == "/metrics/ipfs"
    assert "5001" not in yaml.safe_dump(jobs["kubo"])
    kubo_ports = [r for r in jobs["kubo"]["relabel_configs"] if r.get("target_label") == "__address__"]
    assert [r["replacement"] for r in kubo_ports] == ["$1:8000", "$1:$2"]
    assert kubo_ports[1]["source_labels"][1].endswith("_peer_port")
    for name, annotation in [("peer", "peer"), ("kubo", "kubo"), ("node-exporter", "node_exporter")]:
        relabel = jobs[name]["relabel_configs"]
        keep = relabel[0]
        assert keep["action"] == "keep"
        assert keep["source_labels"] == [
            f"__meta_kubernetes_pod_annotation_learning_tangle_io_scrape_{annotation}"
        ]
        # pod IP only: reachable from inside the cluster
        assert any(r.get("source_labels") == ["__meta_kubernetes_pod_ip"] for r in relabel)
    lab = yaml.safe_load((MONITORING / "prometheus/prometheus-lab.yml").read_text())
    assert {job["job_name"] for job in lab["scrape_configs"]} == {
        "prometheus",
        "peer",
        "node-exporter",
        "kubo",
    }
    assert {job["job_name"]: job.get("metrics_path") for job in lab["scrape_configs"]}[
        "kubo"
    ] == "/metrics/ipfs"
    assert lab["rule_files"] == k8s["rule_files"] == ["rules/*.yml"]


@pytest.mark.parametrize("expr", ["sum by (job) (rate(x_total[5m]))", 'a{b="c"} / on (d) e'])
def test_name_extraction_ignores_labels_and_keywords(expr: str) -> None:
    assert _names_in(expr) in ({"x_total"}, {"a", "e"})
