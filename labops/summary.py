"""Readable summaries of what a node reports: pure functions from the probe's and the peer's JSON to text."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

# Raspberry Pi firmware `get_throttled` bits: now (0-3) and since boot (16-19).
THROTTLE_BITS = {
    0: "under-voltage now",
    1: "ARM frequency capped now",
    2: "throttled now",
    3: "soft temperature limit now",
    16: "under-voltage occurred",
    17: "frequency capping occurred",
    18: "throttling occurred",
    19: "soft temperature limit occurred",
}

KEY_METRICS = (
    "learning_tangle_transactions",
    "learning_tangle_tips",
    "learning_tangle_depth",
    "learning_tangle_transactions_published_total",
    "learning_tangle_transactions_received_total",
    "learning_tangle_transactions_rejected_total",
    "learning_tangle_transactions_unresolved_total",
    "learning_tangle_trainings_total",
    "learning_tangle_training_failures_total",
    "learning_tangle_reference_accuracy_ratio",
    "learning_tangle_reference_loss",
    "learning_tangle_pinned_bytes",
    "learning_tangle_weights_cache_hits_total",
    "learning_tangle_weights_cache_misses_total",
    "learning_tangle_ipfs_request_errors_total",
    "learning_tangle_pubsub_reconnects_total",
)


def size(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    days, rest = divmod(int(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    return f"{days} d {hours} h {rest // 60} min" if days else f"{hours} h {rest // 60} min"


def throttling(flags: str | None) -> str:
    if flags is None:
        return "throttling: no vcgencmd (not a Raspberry Pi OS host)"
    value = int(flags, 16)
    found = [text for bit, text in THROTTLE_BITS.items() if value & (1 << bit)]
    return f"throttling: {flags} ({', '.join(found) if found else 'ok'})"


def status(doc: dict[str, Any]) -> str:
    s, k = doc["system"], doc["k3s"]
    mem, disk = s["memory"], s["disk"]
    model = f" ({s['model']})" if s.get("model") else ""
    used = disk["used"] / disk["total"]
    lines = [
        f"host {s['hostname']}{model}, up {duration(s['uptimeSeconds'])}",
        f"load {' '.join(f'{x:.2f}' for x in s['load'])}",
        f"memory {size(mem['available'])} available of {size(mem['total'])}",
        f"disk / {size(disk['free'])} free of {size(disk['total'])} ({used:.0%} used)",
    ]
    temps = s.get("temperatures") or []
    lines.append(
        "temperature " + ", ".join(f"{t['type'] or t['zone']} {t['celsius']:.1f} °C" for t in temps)
        if temps
        else "temperature: no thermal zone"
    )
    lines.append(throttling(s.get("throttled")))
    if not k["installed"] or "error" in k:
        lines.append(f"k3s: {k['error']}")
    else:
        lines.append(f"k3s node {k['node']}: Ready={k['ready']}")
        pods = k.get("pods") or []
        lines.append(f"pods on this node: {len(pods)}")
        lines += [f"  {p['name']:<28} {p['phase']:<10} restarts {p['restarts']}" for p in pods]
    return "\n".join(lines)


def tangle(peer: dict[str, Any], transactions: dict[str, Any]) -> str:
    nodes = transactions.get("nodes", [])
    last = max(nodes, key=lambda n: n.get("timeCreated") or 0, default=None)
    accuracy = peer.get("referenceAccuracy")
    rejected = peer.get("rejected") or {}
    lines = [
        f"peer {peer.get('peer')} (index {peer.get('peerIndex')}, model {peer.get('model')})",
        f"transactions {len(nodes)}, tips {len(transactions.get('tips', []))}, "
        f"depth {transactions.get('depth')}",
        f"published {peer.get('published')}, trainings {peer.get('trainings')}",
        "last transaction "
        + (f"{last['name']} by {last.get('peer')} (height {last.get('height')})" if last else "none"),
        f"reference accuracy {accuracy:.3f}"
        if isinstance(accuracy, int | float)
        else "reference accuracy: none yet",
        "rejected "
        + (
            ", ".join(f"{reason} {count}" for reason, count in sorted(rejected.items()))
            if rejected
            else "none"
        )
        + f"; unresolved {peer.get('unresolved', 0)}",
    ]
    return "\n".join(lines)


def metrics(text: str, names: Iterable[str] = KEY_METRICS) -> str:
    wanted = set(names)
    rows = []
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name not in wanted:
                continue
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()) if k != "peer")
            rows.append((sample.name + (f"{{{labels}}}" if labels else ""), sample.value))
    if not rows:
        return "no learning_tangle metrics in the peer's /metrics"
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value:g}" for name, value in rows)


def ipfs(doc: dict[str, Any]) -> str:
    repo = doc.get("repo") or {}
    conn = doc.get("connMgr") or {}
    lines = [
        f"kubo {doc.get('agent')} id {doc.get('id')}",
        f"connected peers {doc.get('connectedPeers')}",
        "connection manager "
        + (
            f"low {conn.get('LowWater')} high {conn.get('HighWater')} grace {conn.get('GracePeriod')}"
            if conn
            else "?"
        ),
        f"repo {size(repo.get('RepoSize'))} of {size(repo.get('StorageMax'))}, "
        f"{repo.get('NumObjects')} objects",
        f"pins: {doc.get('recursivePins')} recursive, {doc.get('directPins')} direct",
    ]
    if doc.get("topic"):
        lines.append(f"pubsub peers on {doc['topic']}: {doc.get('pubsubPeers')}")
    return "\n".join(lines)
