"""What each Fabric task does on one host; `fabfile.py` wires them to the command line, in parallel."""

from __future__ import annotations

import json
import shlex
import time
from pathlib import Path
from typing import Any

from fabric import Connection

from labops import summary
from labops.inventory import LabHost
from labops.remote import HostError, probe, run

NAMESPACE = "learning-tangle"
CONTAINERS = ("peer", "kubo")
KUBECTL = "sudo -n k3s kubectl"


def _peer_documents(conn: Connection, host: LabHost, path: str) -> list[dict[str, Any]]:
    doc = probe(conn, host, "peer", path)
    if "error" in doc:
        raise HostError(doc["error"])
    answers: list[dict[str, Any]] = doc["peers"]
    for answer in answers:
        if "error" in answer:
            raise HostError(answer["error"])
        if answer["status"] != 200:
            raise HostError(f"peer {answer['name']} answered HTTP {answer['status']} for {path}")
    return answers


def _pods(conn: Connection, host: LabHost) -> list[dict[str, Any]]:
    doc = probe(conn, host, "pods")
    if not doc["installed"]:
        raise HostError("k3s is not installed on this host")
    pods: list[dict[str, Any]] = doc["pods"]
    return pods


def status(conn: Connection, host: LabHost) -> str:
    return summary.status(probe(conn, host, "status"))


def tangle(conn: Connection, host: LabHost) -> str:
    peers = _peer_documents(conn, host, "/api/peer")
    transactions = _peer_documents(conn, host, "/api/transactions")
    return "\n".join(summary.tangle(p["json"], t["json"]) for p, t in zip(peers, transactions, strict=True))


def metrics(conn: Connection, host: LabHost) -> str:
    return "\n".join(summary.metrics(answer["text"]) for answer in _peer_documents(conn, host, "/metrics"))


def ipfs(conn: Connection, host: LabHost) -> str:
    try:
        topic = _peer_documents(conn, host, "/api/peer")[0]["json"].get("topic")
    except HostError:
        topic = None  # kubo can be inspected without its peer
    doc = probe(conn, host, "ipfs", *([topic] if topic else []))
    if "error" in doc:
        raise HostError(doc["error"])
    return summary.ipfs(doc)


def _log_command(conn: Connection, host: LabHost, container: str, lines: int, follow: bool) -> list[str]:
    """Shell commands printing the container's log on this host: from its pods under k3s, else a log file."""
    if container not in CONTAINERS:
        raise HostError(f"unknown container {container!r}: use one of {', '.join(CONTAINERS)}")
    log_file = host.peer_log if container == "peer" else host.kubo_log
    if log_file:
        return [f"tail -n {lines} {'-F ' if follow else ''}{shlex.quote(log_file)}"]
    try:
        pods = [p for p in _pods(conn, host) if container in p["containers"]]
    except HostError:
        raise HostError(
            f"no {container} log: k3s is not installed on this host and no log file is configured"
        ) from None
    if not pods:
        raise HostError(f"no pod with a {container} container on this node")
    tail = f"-c {container} --tail {lines}{' -f' if follow else ''}"
    return [f"{KUBECTL} logs -n {NAMESPACE} {shlex.quote(p['name'])} {tail}" for p in pods]


def logs(conn: Connection, host: LabHost, container: str, lines: int) -> str:
    return "\n".join(
        run(conn, host, command) for command in _log_command(conn, host, container, lines, False)
    )


def follow_logs(conn: Connection, host: LabHost, container: str, lines: int) -> None:
    commands = _log_command(conn, host, container, lines, True)
    conn.run(commands[0], hide=False, warn=True, pty=False)


def restart_pods(conn: Connection, host: LabHost) -> str:
    peers = [p for p in _pods(conn, host) if "peer" in p["containers"]]
    if not peers:
        raise HostError("no peer pod on this node")
    names = " ".join(shlex.quote(p["name"]) for p in peers)
    run(conn, host, f"{KUBECTL} delete pod -n {NAMESPACE} --wait=false {names}")
    return f"deleted {len(peers)} peer pods (their StatefulSet starts them again): {names}"


def restart_k3s(conn: Connection, host: LabHost) -> str:
    units = run(conn, host, "systemctl list-unit-files --no-legend 'k3s*.service' || true")
    unit = next(
        (u.split()[0] for u in units.splitlines() if u.split()[0] in ("k3s.service", "k3s-agent.service")), ""
    )
    if not unit:
        raise HostError("k3s is not installed on this host (no k3s or k3s-agent service)")
    run(conn, host, f"sudo -n systemctl restart {unit}")
    return f"restarted {unit}"


def collect(conn: Connection, host: LabHost, out: Path, lines: int) -> str:
    """Logs, the peer's tangle as a CAR, the metrics and the API documents into OUT/<host>-<UTC time>/."""
    folder = out / f"{host.name}-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    folder.mkdir(parents=True, exist_ok=True)
    peer = _peer_documents(conn, host, "/api/peer")[0]["json"]
    transactions = _peer_documents(conn, host, "/api/transactions")[0]["json"]
    (folder / "api-peer.json").write_text(json.dumps(peer, indent=1))
    (folder / "api-transactions.json").write_text(json.dumps(transactions, indent=1))
    (folder / "metrics.prom").write_text(_peer_documents(conn, host, "/metrics")[0]["text"])
    written = ["api-peer.json", "api-transactions.json", "metrics.prom"]
    for container in CONTAINERS:
        try:
            (folder / f"{container}.log").write_text(logs(conn, host, container, lines))
            written.append(f"{container}.log")
        except HostError as error:
            (folder / f"{container}.log.missing").write_text(str(error) + "\n")
    tips = transactions.get("tips") or [transactions["genesis"]]
    remote = f"/tmp/learning-tangle-{host.name}-{time.time_ns()}.car"  # noqa: S108 (removed right after)
    car = probe(conn, host, "car", remote, *tips)
    if "error" in car:
        raise HostError(car["error"])
    try:
        conn.get(remote, str(folder / "tangle.car"))
    finally:
        run(conn, host, f"rm -f {shlex.quote(remote)}")
    (folder / "tangle.car.json").write_text(json.dumps({"root": car["root"], "tips": tips}, indent=1))
    written.append(f"tangle.car ({summary.size(car['bytes'])}, root {car['root']}, {len(tips)} tips)")
    return f"collected into {folder}: " + ", ".join(written)


def follow_logs_on(host: LabHost, container: str, lines: int) -> None:
    from labops.remote import connect

    try:
        with connect(host) as conn:
            follow_logs(conn, host, container, lines)
    except HostError as error:
        from invoke.exceptions import Exit

        raise Exit(f"error: {host.name}: {error}", code=1) from None
