"""What the Fabric tasks run on a lab node: one stdlib-only script, sent to the node's python3 over SSH.

Every node Ansible manages has python3, so the probe needs nothing else there (no curl, no jq). It prints one
JSON document on standard output and exits 0; a component that is missing is reported in the document, not by
failing, so the caller can say in one line what is absent. On the node: ``python3 probe.py COMMAND [ARGS...]``
(`labops.remote` sends it inside the command line, with ``python3 -c``).
Commands: ``status``, ``peer PATH``, ``ipfs TOPIC?``, ``pods``, ``car``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

NAMESPACE = os.environ.get("LT_NAMESPACE", "learning-tangle")
PEER_URL = os.environ.get("LT_PEER_URL", "")  # local mode: the peer's HTTP API on this node
KUBO_API = os.environ.get("LT_KUBO_API", "")  # local mode: kubo's RPC multiaddr on this node
HTTP_TIMEOUT = 10.0
MAX_BODY = 64 * 1024 * 1024


def run(argv: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)  # noqa: S603
    except FileNotFoundError:
        return 127, "", f"{argv[0]}: not found"
    except subprocess.TimeoutExpired:
        return 124, "", f"{' '.join(argv[:3])}: timed out after {timeout:.0f} s"
    return done.returncode, done.stdout, done.stderr.strip()


def read(path: str) -> str | None:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError:
        return None


def kubectl() -> list[str] | None:
    """k3s's kubectl, without a password prompt: as root, or through `sudo -n`."""
    if shutil.which("k3s") is None:
        return None
    prefix = [] if os.geteuid() == 0 else ["sudo", "-n"]
    return [*prefix, "k3s", "kubectl"]


def node_name() -> str:
    return os.uname().nodename


def system() -> dict[str, Any]:
    meminfo = {}
    for line in (read("/proc/meminfo") or "").splitlines():
        key, _, value = line.partition(":")
        meminfo[key] = int(value.split()[0]) * 1024 if value.split() else 0
    disk = shutil.disk_usage("/")
    temps = []
    for zone in sorted(os.listdir("/sys/class/thermal")) if os.path.isdir("/sys/class/thermal") else []:
        raw = read(f"/sys/class/thermal/{zone}/temp")
        if raw and raw.lstrip("-").isdigit():
            temps.append(
                {"zone": zone, "type": read(f"/sys/class/thermal/{zone}/type"), "celsius": int(raw) / 1000}
            )
    throttled = None
    if shutil.which("vcgencmd"):
        code, out, _ = run(["vcgencmd", "get_throttled"])
        if code == 0 and "=" in out:
            throttled = out.strip().split("=", 1)[1]
    model = read("/proc/device-tree/model") or read(
        os.environ.get("LT_PI_MODEL_FILE", "/proc/device-tree/model")
    )
    uptime = read("/proc/uptime")
    return {
        "hostname": node_name(),
        "uptimeSeconds": float(uptime.split()[0]) if uptime else None,
        "load": [float(x) for x in (read("/proc/loadavg") or "0 0 0").split()[:3]],
        "memory": {"total": meminfo.get("MemTotal"), "available": meminfo.get("MemAvailable")},
        "disk": {"total": disk.total, "used": disk.used, "free": disk.free},
        "temperatures": temps,
        "throttled": throttled,
        "model": model.replace("\x00", "") if model else None,
    }


def k3s_state() -> dict[str, Any]:
    kc = kubectl()
    if kc is None:
        return {"installed": False, "error": "k3s is not installed on this host"}
    code, out, err = run([*kc, "get", "node", node_name(), "-o", "json"])
    if code != 0:
        return {
            "installed": True,
            "error": f"k3s kubectl get node failed: {err.splitlines()[-1] if err else code}",
        }
    node = json.loads(out)
    ready = next(
        (c["status"] for c in node["status"].get("conditions", []) if c["type"] == "Ready"), "Unknown"
    )
    return {"installed": True, "node": node_name(), "ready": ready, "pods": pods(kc)}


def pods(kc: list[str]) -> list[dict[str, Any]]:
    code, out, _ = run(
        [
            *kc,
            "get",
            "pods",
            "-n",
            NAMESPACE,
            "-o",
            "json",
            "--field-selector",
            f"spec.nodeName={node_name()}",
        ]
    )
    if code != 0:
        return []
    result = []
    for item in json.loads(out).get("items", []):
        statuses = item["status"].get("containerStatuses", [])
        result.append(
            {
                "name": item["metadata"]["name"],
                "app": item["metadata"].get("labels", {}).get("app.kubernetes.io/name", ""),
                "phase": item["status"].get("phase"),
                "ip": item["status"].get("podIP"),
                "containers": [c["name"] for c in item["spec"]["containers"]],
                "restarts": sum(c.get("restartCount", 0) for c in statuses),
            }
        )
    return result


def peer_pods() -> list[dict[str, Any]]:
    kc = kubectl()
    if kc is None:
        return []
    return [p for p in pods(kc) if "peer" in p["containers"]]


def http_get(url: str) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers={"Host": "127.0.0.1"})  # noqa: S310 (node-local URL)
    try:
        with urllib.request.urlopen(request, timeout=HTTP_TIMEOUT) as response:  # noqa: S310
            return response.status, response.read(MAX_BODY)
    except urllib.error.HTTPError as error:
        return error.code, error.read(MAX_BODY)


def peer_get(path: str) -> dict[str, Any]:
    """GET a path of every peer on this node: the local one (LT_PEER_URL) or the peer pods' (k3s)."""
    targets = (
        [{"name": "local", "url": PEER_URL}]
        if PEER_URL
        else [{"name": p["name"], "url": f"http://{p['ip']}:8000"} for p in peer_pods() if p.get("ip")]
    )
    if not targets:
        return {"error": "no peer on this host (no LT_PEER_URL and no peer pod on this node)"}
    answers = []
    for target in targets:
        try:
            status, body = http_get(target["url"] + path)
        except OSError as error:
            answers.append({"name": target["name"], "error": f"peer at {target['url']} unreachable: {error}"})
            continue
        text = body.decode("utf-8", "replace")
        entry: dict[str, Any] = {"name": target["name"], "status": status}
        if path.startswith("/metrics"):
            entry["text"] = text
        else:
            try:
                entry["json"] = json.loads(text)
            except ValueError:
                entry["error"] = f"peer at {target['url']} answered {status} with no JSON"
        answers.append(entry)
    return {"peers": answers}


def ipfs(args: list[str], timeout: float = 30.0) -> tuple[int, str, str]:
    """Run the kubo CLI against this node's kubo: the local RPC (LT_KUBO_API) or the kubo sidecar of a pod."""
    if KUBO_API:
        return run(["ipfs", f"--api={KUBO_API}", *args], timeout)
    kc = kubectl()
    peers = peer_pods()
    if kc is None or not peers:
        return (
            127,
            "",
            "no kubo on this host (no LT_KUBO_API and no peer pod with a kubo sidecar on this node)",
        )
    return run([*kc, "exec", "-n", NAMESPACE, peers[0]["name"], "-c", "kubo", "--", "ipfs", *args], timeout)


def ipfs_state(topic: str | None) -> dict[str, Any]:
    code, out, err = ipfs(["id"])
    if code != 0:
        return {"error": err or f"ipfs id failed ({code})"}
    ident = json.loads(out)
    state: dict[str, Any] = {
        "id": ident.get("ID"),
        "agent": ident.get("AgentVersion"),
        "addresses": ident.get("Addresses") or [],
    }
    _, out, _ = ipfs(["swarm", "peers"])
    state["connectedPeers"] = len([line for line in out.splitlines() if line.strip()])
    _, out, _ = ipfs(["config", "Swarm.ConnMgr"])
    try:
        state["connMgr"] = json.loads(out)
    except ValueError:
        state["connMgr"] = None
    code, out, _ = ipfs(["repo", "stat", "--enc=json"])
    state["repo"] = json.loads(out) if code == 0 else None
    _, out, _ = ipfs(["pin", "ls", "--type=recursive", "--quiet"], timeout=60)
    state["recursivePins"] = len(out.split())
    _, out, _ = ipfs(["pin", "ls", "--type=direct", "--quiet"], timeout=60)
    state["directPins"] = len(out.split())
    if topic:
        _, out, _ = ipfs(["pubsub", "peers", topic])
        state["topic"] = topic
        state["pubsubPeers"] = len(out.split())
    return state


def car(tips: list[str], destination: str) -> dict[str, Any]:
    """The whole tangle as one CAR: `dag export` of a small dag-cbor root that links every tip."""
    root_doc = json.dumps({"learning-tangle-tips": [{"/": tip} for tip in tips]})
    if KUBO_API:
        argv = ["ipfs", f"--api={KUBO_API}"]
    else:
        kc, peers = kubectl(), peer_pods()
        if kc is None or not peers:
            return {"error": "no kubo on this host"}
        argv = [*kc, "exec", "-i", "-n", NAMESPACE, peers[0]["name"], "-c", "kubo", "--", "ipfs"]
    put = subprocess.run(  # noqa: S603
        [*argv, "dag", "put", "--store-codec=dag-cbor", "--input-codec=dag-json", "--pin=false"],
        input=root_doc,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if put.returncode != 0:
        return {"error": f"ipfs dag put failed: {put.stderr.strip()}"}
    root = put.stdout.strip()
    with open(destination, "wb") as out:
        export = subprocess.run(  # noqa: S603 (argv built here, no shell)
            [*argv, "dag", "export", root],
            stdout=out,
            stderr=subprocess.PIPE,
            timeout=600,
            check=False,
        )
    if export.returncode != 0:
        return {"error": f"ipfs dag export failed: {export.stderr.decode(errors='replace').strip()}"}
    return {"root": root, "path": destination, "bytes": os.path.getsize(destination)}


def main(argv: list[str]) -> dict[str, Any]:
    command, args = argv[0], argv[1:]
    if command == "status":
        return {"system": system(), "k3s": k3s_state()}
    if command == "peer":
        return peer_get(args[0])
    if command == "ipfs":
        return ipfs_state(args[0] if args else None)
    if command == "pods":
        kc = kubectl()
        return {"installed": kc is not None, "pods": pods(kc) if kc else []}
    if command == "car":
        return car(args[1:], args[0])
    return {"error": f"unknown probe command {command}"}


if __name__ == "__main__":
    print(json.dumps(main(sys.argv[1:])))
