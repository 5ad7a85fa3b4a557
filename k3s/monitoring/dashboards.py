#!/usr/bin/env python3
"""Grafana dashboards as code: writes k3s/monitoring/grafana/dashboards/*.json.

    python k3s/monitoring/dashboards.py          # write the JSON files
    python k3s/monitoring/dashboards.py --check  # exit 1 if the committed JSON differs (the tests run this)

Why plain JSON from a small script rather than grafanalib or grafana-foundation-sdk: Grafana provisioning
reads plain JSON, so the committed files are exactly what Grafana loads and what the integration test reads
to query every panel against a live Prometheus; the script needs only the standard library (no dependency
to pin against Grafana's moving panel schema; grafanalib trails it, the foundation SDK is versioned per
Grafana release); and the one thing that matters here, that every panel has a unit, a description and a
query over metrics that exist, is enforced by this script and the tests rather than by a type system.

Computed queries (rates, quantiles, aggregations) refer to recording rules in
prometheus/rules/recording.yml; raw per-peer gauges are queried directly.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parent / "grafana" / "dashboards"
DATASOURCE = {"type": "prometheus", "uid": "prometheus"}  # provisioning/datasources/prometheus.yml
TAGS = ["learning-tangle"]
SCHEMA_VERSION = 39  # Grafana 10.4 / 11
# Grafana unit ids used here ("suffix:<text>" is Grafana's custom-unit syntax)
UNITS = {"percentunit", "s", "bytes", "Bps", "short", "none", "celsius", "reqps"}
GRID_WIDTH = 24


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass
class Panel:
    title: str
    unit: str
    description: str
    queries: list[Query]
    kind: str = "timeseries"
    width: int = 12
    height: int = 8
    min: float | None = None
    max: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.description.strip():
            raise ValueError(f"panel {self.title!r} has no description")
        if self.unit not in UNITS and not self.unit.startswith("suffix:"):
            raise ValueError(f"panel {self.title!r} has an unknown unit {self.unit!r}")
        if not self.queries:
            raise ValueError(f"panel {self.title!r} has no query")


def ts(title: str, unit: str, description: str, *queries: Query, **options: Any) -> Panel:
    return Panel(title, unit, description, list(queries), **options)


def stat(title: str, unit: str, description: str, *queries: Query, **options: Any) -> Panel:
    options.setdefault("width", 6)
    options.setdefault("height", 4)
    return Panel(title, unit, description, list(queries), kind="stat", **options)


def ratio(title: str, description: str, *queries: Query, **options: Any) -> Panel:
    """A 0-1 quantity shown in percent (the metrics stay fractions)."""
    return ts(title, "percentunit", description, *queries, min=0, max=1, **options)


Q = Query
PEER = 'peer=~"$peer"'
INSTANCE = 'instance=~"$instance"'
RATE = "suffix: /s"


# --- Learning ------------------------------------------------------------------------------------------
LEARNING = [
    stat(
        "Reference accuracy (honest peers)",
        "percentunit",
        "Mean accuracy of the honest peers' reference (consensus) models on their own test sets, now.",
        Q("job:learning_tangle_reference_accuracy_ratio:avg_honest", "{{job}}"),
    ),
    stat(
        "3-as-8 misclassification (honest)",
        "percentunit",
        "Share of the honest peers' test samples of class 3 that their reference models predict as 8, "
        "pooled over peers: the label-flip attack's success.",
        Q("job:learning_tangle_reference_misclassification_3_as_8:ratio_honest", "{{job}}"),
    ),
    stat(
        "Peers reporting",
        "short",
        "Peers whose metrics Prometheus currently has (one build-info series each).",
        Q("job:learning_tangle_peers:count", "{{job}}"),
    ),
    stat(
        "Malicious peers",
        "short",
        "Peers running a poisoning behaviour in this experiment (0 outside poisoning experiments).",
        Q("job:learning_tangle_peer_malicious:sum", "{{job}}"),
    ),
    ratio(
        "Reference accuracy, overall",
        "Mean and worst accuracy of the honest peers' reference models on their own test sets. In the lab "
        "the FedAvg baseline, trained side by side on the same data, is drawn too.",
        Q("job:learning_tangle_reference_accuracy_ratio:avg_honest", "mean (honest)"),
        Q("job:learning_tangle_reference_accuracy_ratio:min_honest", "worst honest peer"),
        Q("learning_tangle_lab_fedavg_accuracy_ratio", "FedAvg baseline (lab)"),
    ),
    ratio(
        "Reference accuracy per peer",
        "Accuracy of each peer's reference (consensus) model on that peer's own test set.",
        Q(f"learning_tangle_reference_accuracy_ratio{{{PEER}}}", "{{peer}}"),
    ),
    ts(
        "Reference loss, overall",
        "none",
        "Mean cross-entropy loss (nats per sample) of the honest peers' reference models on their own "
        "test sets; the lab's FedAvg baseline beside it.",
        Q("job:learning_tangle_reference_loss:avg_honest", "mean (honest)"),
        Q("learning_tangle_lab_fedavg_loss", "FedAvg baseline (lab)"),
        min=0,
    ),
    ts(
        "Reference loss per peer",
        "none",
        "Cross-entropy loss (nats per sample) of each peer's reference model on its own test set.",
        Q(f"learning_tangle_reference_loss{{{PEER}}}", "{{peer}}"),
        min=0,
    ),
    ratio(
        "New model accuracy",
        "Accuracy of the model each peer trained in its last round, on its own test set, before the "
        "publish decision; the mean over honest peers is drawn too.",
        Q(f"learning_tangle_new_model_accuracy_ratio{{{PEER}}}", "{{peer}}"),
        Q("job:learning_tangle_new_model_accuracy_ratio:avg_honest", "mean (honest)"),
    ),
    ts(
        "New model loss",
        "none",
        "Cross-entropy loss (nats per sample) of each peer's last trained model on its own test set; the "
        "mean over honest peers is drawn too.",
        Q(f"learning_tangle_new_model_loss{{{PEER}}}", "{{peer}}"),
        Q("job:learning_tangle_new_model_loss:avg_honest", "mean (honest)"),
        min=0,
    ),
    ratio(
        "Poisoning: 3-as-8 misclassification",
        "Share of test samples of class 3 that the reference model predicts as 8 (the label-flip attack "
        "relabels 3 as 8): pooled over honest peers, and per peer (peers without 3s in their test set "
        "are left out).",
        Q("job:learning_tangle_reference_misclassification_3_as_8:ratio_honest", "pooled (honest)"),
        Q(f"peer:learning_tangle_reference_misclassification_3_as_8:ratio{{{PEER}}}", "{{peer}}"),
        width=24,
    ),
]

# --- Tangle --------------------------------------------------------------------------------------------
TANGLE = [
    stat(
        "Transactions",
        "short",
        "Transactions in the largest tangle any peer holds, genesis included.",
        Q("job:learning_tangle_transactions:max", "{{job}}"),
    ),
    stat(
        "Tips",
        "short",
        "Mean number of tips (transactions nobody approves yet) over the peers' tangles.",
        Q("job:learning_tangle_tips:avg", "{{job}}"),
    ),
    stat(
        "Depth",
        "short",
        "Height of the highest tip above genesis, over all peers.",
        Q("job:learning_tangle_depth:max", "{{job}}"),
    ),
    stat(
        "Views apart",
        "short",
        "Transactions the peer furthest behind lacks compared with the peer furthest ahead (0: every "
        "peer holds the same tangle).",
        Q("job:learning_tangle_transactions:max_minus_min", "{{job}}"),
    ),
    ts(
        "New transactions",
        "suffix: tx/s",
        "Transactions published per second by all peers together (5-minute rate).",
        Q("job:learning_tangle_transactions_published:rate5m", "published ({{job}})"),
    ),
    ts(
        "Transactions received per peer",
        "suffix: tx/s",
        "Transactions from other peers inserted into each peer's tangle per second, fetched ancestors "
        "included (5-minute rate).",
        Q(f"peer:learning_tangle_transactions_received:rate5m{{{PEER}}}", "{{peer}}"),
    ),
    ts(
        "Tangle size per peer",
        "short",
        "Transactions in each peer's tangle, genesis included.",
        Q(f"learning_tangle_transactions{{{PEER}}}", "{{peer}}"),
    ),
    ts(
        "Walk window",
        "short",
        "Transactions inside each peer's walk window (particles' depth below the tips; the whole tangle "
        "for walks from genesis): what a training round works on, bounded however long the tangle grows.",
        Q(f"learning_tangle_window_transactions{{{PEER}}}", "{{peer}}"),
        Q("job:learning_tangle_window_transactions:avg", "mean"),
    ),
    ts(
        "Tips per peer",
        "short",
        "Tips (transactions nobody approves yet) in each peer's tangle.",
        Q(f"learning_tangle_tips{{{PEER}}}", "{{peer}}"),
    ),
    ts(
        "Depth per peer",
        "short",
        "Height of the highest tip above genesis in each peer's tangle.",
        Q(f"learning_tangle_depth{{{PEER}}}", "{{peer}}"),
    ),
    ts(
        "Confirmation latency",
        "s",
        "Time from a transaction's arrival at a peer (or its publication) to the arrival of its first "
        "approver there: median and 90th percentile over all peers (5-minute window).",
        Q("job:learning_tangle_confirmation_latency_seconds:p50_5m", "p50"),
        Q("job:learning_tangle_confirmation_latency_seconds:p90_5m", "p90"),
        min=0,
    ),
    ts(
        "Rejected and unresolved",
        RATE,
        "Announcements or transactions the peers' intake rejected per second, by reason, and announced "
        "transactions dropped because they or an ancestor could not be fetched (5-minute rates).",
        Q("job:learning_tangle_transactions_rejected:rate5m", "{{reason}}"),
        Q("job:learning_tangle_transactions_unresolved:rate5m", "unresolved"),
        min=0,
    ),
]

# --- Peers and IPFS ------------------------------------------------------------------------------------
PEERS = [
    stat(
        "Peers up",
        "short",
        "Peer targets Prometheus scraped successfully at the last scrape (the lab is one target).",
        Q('job:up:sum{job="peer"}', "peers"),
    ),
    stat(
        "kubo nodes up",
        "short",
        "kubo sidecars Prometheus scraped successfully at the last scrape (none in the lab).",
        Q('job:up:sum{job="kubo"}', "kubo"),
    ),
    stat(
        "Trainings",
        RATE,
        "Training rounds started per second by all peers (5-minute rate).",
        Q("job:learning_tangle_trainings:rate5m", "{{job}}"),
    ),
    stat(
        "Weights cache hit ratio",
        "percentunit",
        "Share of weights lookups served by the peers' LRU caches (5-minute rates).",
        Q("job:learning_tangle_weights_cache_hits:ratio_rate5m", "{{job}}"),
    ),
    ts(
        "Training duration",
        "s",
        "Duration of a training round (reference, tip selection, training, evaluation; publishing "
        "excluded): median and 90th percentile over all peers, and each peer's mean (5-minute window).",
        Q("job:learning_tangle_training_duration_seconds:p50_5m", "p50"),
        Q("job:learning_tangle_training_duration_seconds:p90_5m", "p90"),
        Q(f"peer:learning_tangle_training_duration_seconds:avg5m{{{PEER}}}", "mean {{peer}}"),
        min=0,
    ),
    ts(
        "Time between trainings",
        "s",
        "Time between the starts of two consecutive training rounds of a peer (TRAINING_INTERVAL as it "
        "really is): median and 90th percentile (5-minute window).",
        Q("job:learning_tangle_training_interval_seconds:p50_5m", "p50"),
        Q("job:learning_tangle_training_interval_seconds:p90_5m", "p90"),
        min=0,
    ),
    ts(
        "Tip selection and consensus",
        "s",
        "90th percentile of the duration of one tip selection and of choosing the reference (consensus) "
        "transactions: both walk a bounded window, so they must stay flat as the tangle grows.",
        Q("job:learning_tangle_tip_selection_duration_seconds:p90_5m", "tip selection p90"),
        Q("job:learning_tangle_consensus_duration_seconds:p90_5m", "consensus p90"),
        min=0,
    ),
    ts(
        "Training failures",
        RATE,
        "Training rounds that failed per second, by reason (weights unavailable, no usable tips, timeout, "
        "other error), 5-minute rates.",
        Q("job:learning_tangle_training_failures:rate5m", "{{reason}}"),
        min=0,
    ),
    ratio(
        "Publications skipped",
        "Share of training rounds whose model was not published because it did not beat the publish "
        "rule's bar (the reference's or the parents' loss).",
        Q("job:learning_tangle_publish_skipped:ratio_rate5m", "{{job}}"),
    ),
    ts(
        "Transactions published per peer",
        "suffix: tx/s",
        "Transactions each peer published per second (5-minute rate).",
        Q(f"peer:learning_tangle_transactions_published:rate5m{{{PEER}}}", "{{peer}}"),
        min=0,
    ),
    ts(
        "Weights fetched",
        "Bps",
        "Bytes of weights each peer fetched from storage per second (cache misses only; 5-minute rate).",
        Q(f"peer:learning_tangle_weights_fetched_bytes:rate5m{{{PEER}}}", "{{peer}}"),
        min=0,
    ),
    ts(
        "Weights published",
        "Bps",
        "Bytes of encoded weights each peer stored for its own transactions per second (5-minute rate).",
        Q(f"peer:learning_tangle_weights_published_bytes:rate5m{{{PEER}}}", "{{peer}}"),
        min=0,
    ),
    ts(
        "Pinned",
        "bytes",
        "Bytes of transactions and weights each peer keeps pinned (its recent window), and the total.",
        Q(f"learning_tangle_pinned_bytes{{{PEER}}}", "{{peer}}"),
        Q("job:learning_tangle_pinned_bytes:sum", "total"),
        min=0,
    ),
    ts(
        "PubSub reconnects",
        "short",
        "Times the peers' PubSub subscriptions were lost and opened again in the last hour.",
        Q("job:learning_tangle_pubsub_reconnects:increase1h", "{{job}}"),
        min=0,
    ),
    ts(
        "IPFS request latency",
        "s",
        "90th percentile duration of the peers' kubo RPC requests, by operation (5-minute window). The "
        "2020 prototype's averages grew from 0.1 s to 3.7 s.",
        Q("job:learning_tangle_ipfs_request_duration_seconds:p90_5m", "{{operation}}"),
        min=0,
    ),
    ts(
        "IPFS requests",
        "reqps",
        "kubo RPC requests the peers make per second, by operation (5-minute rate).",
        Q("job:learning_tangle_ipfs_requests:rate5m", "{{operation}}"),
        min=0,
    ),
    ts(
        "IPFS errors",
        "reqps",
        "Failed kubo RPC requests per second, by operation (5-minute rate; 0 for operations with "
        "requests but no error).",
        Q("job:learning_tangle_ipfs_request_errors:rate5m", "{{operation}}"),
        min=0,
    ),
    ratio(
        "IPFS error ratio",
        "Share of kubo RPC requests that failed, by operation (5-minute rates); the IpfsErrorsRising alert "
        "fires above 5%.",
        Q("job:learning_tangle_ipfs_request_errors:ratio_rate5m", "{{operation}}"),
    ),
    ts(
        "kubo connections",
        "short",
        "Open libp2p connections of each kubo sidecar (resource manager, system scope).",
        Q("instance:libp2p_rcmgr_connections:sum", "{{instance}}"),
        min=0,
    ),
    ts(
        "kubo Bitswap traffic",
        "Bps",
        "Bytes of blocks each kubo sidecar received and sent over Bitswap per second (5-minute rates).",
        Q("instance:ipfs_bitswap_recv_all_blocks_bytes:rate5m", "received {{instance}}"),
        Q("instance:ipfs_bitswap_sent_all_blocks_bytes:rate5m", "sent {{instance}}"),
        min=0,
    ),
    ts(
        "kubo memory",
        "bytes",
        "Resident memory of each kubo sidecar process.",
        Q('process_resident_memory_bytes{job="kubo"}', "{{instance}}"),
        min=0,
    ),
    ts(
        "kubo RPC latency (kubo's view)",
        "s",
        "Mean duration of RPC requests as each kubo sidecar measures them (5-minute window); compare with "
        "the peers' own IPFS request latency to tell network from daemon delays.",
        Q("instance:ipfs_http_request_duration_seconds:avg5m", "{{instance}}"),
        min=0,
    ),
]

# --- Cluster -------------------------------------------------------------------------------------------
CLUSTER = [
    stat(
        "Nodes up",
        "short",
        "node-exporter targets Prometheus scraped successfully at the last scrape.",
        Q('job:up:sum{job="node-exporter"}', "nodes"),
    ),
    stat(
        "Hottest node",
        "celsius",
        "Highest temperature reported by any node's sensors (Raspberry Pi SoC; x64 hosts may have none).",
        Q("job:node_temperature_celsius:max", "max"),
    ),
    stat(
        "Least free disk",
        "percentunit",
        "The smallest share of free space on any node's data filesystems.",
        Q("job:node_filesystem_avail:min_ratio", "min"),
    ),
    stat(
        "Busiest CPU",
        "percentunit",
        "Busy share of the CPUs of the busiest node (5-minute window).",
        Q("job:node_cpu_utilisation:max_rate5m", "max"),
    ),
    ratio(
        "CPU utilisation",
        "Busy share of each node's CPUs (iowait and steal count as idle; 5-minute window).",
        Q(f"instance:node_cpu_utilisation:rate5m{{{INSTANCE}}}", "{{instance}}"),
    ),
    ts(
        "Load per CPU",
        "short",
        "1-minute load average divided by the number of CPUs: above 1 work waits for a CPU.",
        Q(f"instance:node_load1_per_cpu:ratio{{{INSTANCE}}}", "{{instance}}"),
        min=0,
    ),
    ratio(
        "Memory utilisation",
        "Share of each node's memory not available to new processes (1 - MemAvailable / MemTotal).",
        Q(f"instance:node_memory_utilisation:ratio{{{INSTANCE}}}", "{{instance}}"),
    ),
    ratio(
        "Free disk space",
        "Share of free space on each node's data filesystems (ext4, xfs, btrfs, f2fs, zfs).",
        Q(f"instance:node_filesystem_avail:ratio{{{INSTANCE}}}", "{{instance}} {{mountpoint}}"),
    ),
    ts(
        "Network",
        "Bps",
        "Bytes per second each node received and sent on its physical interfaces (loopback, veth, CNI "
        "and bridges left out; 5-minute rates).",
        Q(f"instance:node_network_receive_bytes:rate5m{{{INSTANCE}}}", "received {{instance}}"),
        Q(f"instance:node_network_transmit_bytes:rate5m{{{INSTANCE}}}", "sent {{instance}}"),
        min=0,
    ),
    ts(
        "Temperature",
        "celsius",
        "Hottest sensor of each node (a Raspberry Pi's SoC). A Pi throttles from 80 °C; the "
        "NodeTemperatureHigh alert fires above 75 °C.",
        Q(f"instance:node_temperature_celsius:max{{{INSTANCE}}}", "{{instance}}"),
        extra={"thresholds": [(None, "green"), (75, "orange"), (80, "red")]},
    ),
]


@dataclass(frozen=True)
class Variable:
    name: str
    label: str
    metric: str
    description: str

    @property
    def query(self) -> str:
        return f"label_values({self.metric}, {self.name})"


PEER_VARIABLE = Variable("peer", "Peer", "learning_tangle_build_info", "Peers to show in per-peer panels.")
INSTANCE_VARIABLE = Variable(
    "instance", "Node", 'node_uname_info{job="node-exporter"}', "Nodes to show in per-node panels."
)

DASHBOARDS: list[tuple[str, str, str, list[Panel], list[Variable]]] = [
    (
        "learning-tangle-learning",
        "Learning Tangle / Learning",
        "Accuracy and loss of the peers' reference and newly trained models, and poisoning.",
        LEARNING,
        [PEER_VARIABLE],
    ),
    (
        "learning-tangle-tangle",
        "Learning Tangle / Tangle",
        "Growth and shape of the tangle: transaction rate, size, tips, depth, confirmation latency.",
        TANGLE,
        [PEER_VARIABLE],
    ),
    (
        "learning-tangle-peers",
        "Learning Tangle / Peers and IPFS",
        "Training time and failures, IPFS latency and errors, bytes moved, caches, pins, kubo's metrics.",
        PEERS,
        [PEER_VARIABLE],
    ),
    (
        "learning-tangle-cluster",
        "Learning Tangle / Cluster",
        "CPU, memory, disk, network and temperature of the nodes, from node-exporter.",
        CLUSTER,
        [INSTANCE_VARIABLE],
    ),
]


def _panel_json(panel: Panel, panel_id: int, x: int, y: int) -> dict[str, Any]:
    defaults: dict[str, Any] = {"unit": panel.unit}
    if panel.min is not None:
        defaults["min"] = panel.min
    if panel.max is not None:
        defaults["max"] = panel.max
    steps = panel.extra.get("thresholds", [(None, "green")])
    defaults["thresholds"] = {"mode": "absolute", "steps": [{"color": c, "value": v} for v, c in steps]}
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 0, "showPoints": "never"}
        if "thresholds" in panel.extra:  # draw the alert's threshold on the graph
            defaults["custom"]["thresholdsStyle"] = {"mode": "line"}
        options: dict[str, Any] = {
            "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
            "tooltip": {"mode": "multi", "sort": "desc"},
        }
    else:
        options = {
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        }
    return {
        "id": panel_id,
        "type": panel.kind,
        "title": panel.title,
        "description": panel.description,
        "datasource": DATASOURCE,
        "gridPos": {"h": panel.height, "w": panel.width, "x": x, "y": y},
        "fieldConfig": {"defaults": defaults, "overrides": []},
        "options": options,
        "targets": [
            {
                "refId": chr(ord("A") + i),
                "datasource": DATASOURCE,
                "expr": query.expr,
                "legendFormat": query.legend or "__auto",
                "range": True,
            }
            for i, query in enumerate(panel.queries)
        ],
    }


def _variable_json(variable: Variable) -> dict[str, Any]:
    return {
        "name": variable.name,
        "label": variable.label,
        "description": variable.description,
        "type": "query",
        "datasource": DATASOURCE,
        "definition": variable.query,
        "query": {"query": variable.query, "refId": "PrometheusVariableQueryEditor-VariableQuery"},
        "refresh": 2,  # on time range change: peers come and go
        "multi": True,
        "includeAll": True,
        "allValue": ".*",
        "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
        "sort": 1,
    }


def build(uid: str, title: str, description: str, panels: list[Panel], variables: list[Variable]) -> dict:
    """Panels flow left to right in rows of 24 grid units."""
    laid_out, x, y, row_height = [], 0, 0, 0
    for panel_id, panel in enumerate(panels, start=1):
        if x + panel.width > GRID_WIDTH:
            x, y, row_height = 0, y + row_height, 0
        laid_out.append(_panel_json(panel, panel_id, x, y))
        x += panel.width
        row_height = max(row_height, panel.height)
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": TAGS,
        "timezone": "browser",
        "editable": False,
        "graphTooltip": 1,
        "schemaVersion": SCHEMA_VERSION,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-1h", "to": "now"},
        "links": [
            {"type": "dashboards", "tags": TAGS, "asDropdown": True, "title": "Learning Tangle", "icon": ""}
        ],
        "annotations": {"list": []},
        "templating": {"list": [_variable_json(v) for v in variables]},
        "panels": laid_out,
    }


def render() -> dict[Path, str]:
    files = {}
    for uid, title, description, panels, variables in DASHBOARDS:
        document = build(uid, title, description, panels, variables)
        files[OUT / f"{uid}.json"] = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--check", action="store_true", help="fail if the committed JSON is out of date")
    args = parser.parse_args(argv)
    files = render()
    if args.check:
        stale = [p for p, text in files.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
        extra = sorted(set(OUT.glob("*.json")) - set(files))
        for path in [*stale, *extra]:
            print(f"out of date: {path} (run python {Path(__file__).name})", file=sys.stderr)
        return 1 if stale or extra else 0
    OUT.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
