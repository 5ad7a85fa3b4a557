#!/usr/bin/env python3
"""k3s STAND-IN for the emulated lab (no k3s binary can be obtained here). NOT k3s.

Installed by the Ansible roles at k3s's airgap path /usr/local/bin/k3s from the test's airgap folder, under
the release file names (k3s, k3s-arm64, k3s-armhf), so the test sees which one each node got. It records every
call (argument vectors only) in /var/log/k3s-standin.jsonl and does, for the files around it, what k3s would:

- ``k3s server``: writes the node token and server token from /etc/rancher/k3s/config.yaml's token, and the
  kubeconfig /etc/rancher/k3s/k3s.yaml; tells systemd it is ready (Type=notify); runs until stopped.
- ``k3s agent``: tells systemd it is ready; runs until stopped.
- ``k3s ctr images import FILE``: reads the archive's manifest.json (RepoTags) and config (architecture) and
  remembers the images; ``k3s ctr images ls -q`` lists them.
- ``k3s kubectl ...``: records the call and succeeds (``diff`` reports no difference).

Standard library only: the hosts have python3 but no extra modules.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import signal
import socket
import sys
import tarfile
import time
from pathlib import Path

STANDIN_NAME = "k3s"  # replaced by the test with the release file name it is installed as
RECORD = Path("/var/log/k3s-standin.jsonl")
IMAGES = Path("/var/lib/rancher/k3s/agent/containerd/standin-images.json")
CONFIG = Path("/etc/rancher/k3s/config.yaml")
VERSION = "v1.34.1+k3s1"


def record(argv: list[str]) -> None:
    with RECORD.open("a") as out:
        out.write(json.dumps({"binary": STANDIN_NAME, "argv": argv, "time": time.time()}) + "\n")


def write_private(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(0o600)


def notify_ready() -> None:
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.connect(address)
        sock.sendall(b"READY=1")


def run_forever() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    notify_ready()
    while True:
        time.sleep(3600)


def server() -> int:
    match = re.search(r"^token:\s*['\"]?([^'\"\n]+)['\"]?\s*$", CONFIG.read_text(), re.MULTILINE)
    if not match:
        print("k3s stand-in: no token in /etc/rancher/k3s/config.yaml", file=sys.stderr)
        return 1
    token = match.group(1)
    ca_hash = hashlib.sha256(b"stand-in cluster CA").hexdigest()
    write_private(Path("/var/lib/rancher/k3s/server/token"), f"K10{ca_hash}::server:{token}\n")
    write_private(Path("/var/lib/rancher/k3s/server/node-token"), f"K10{ca_hash}::server:{token}\n")
    write_private(
        Path("/etc/rancher/k3s/k3s.yaml"),
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: c3RhbmQtaW4=\n"
        "    server: https://127.0.0.1:6443\n  name: default\ncontexts:\n- context:\n    cluster: default\n"
        "    user: default\n  name: default\ncurrent-context: default\nusers:\n- name: default\n  user:\n"
        "    client-certificate-data: c3RhbmQtaW4=\n    client-key-data: c3RhbmQtaW4=\n",
    )
    return run_forever()


def images(args: list[str]) -> int:
    known: dict[str, dict[str, str]] = json.loads(IMAGES.read_text()) if IMAGES.exists() else {}
    if args[:1] == ["import"] and len(args) >= 2:
        archive = args[-1]
        with tarfile.open(archive) as tar:
            manifest = json.load(tar.extractfile("manifest.json"))  # type: ignore[arg-type]
            for entry in manifest:
                config = json.load(tar.extractfile(entry["Config"]))  # type: ignore[arg-type]
                for tag in entry["RepoTags"]:
                    ref = tag if "." in tag.split("/")[0] else f"docker.io/{tag}"
                    digest = hashlib.sha256(Path(archive).read_bytes()).hexdigest()
                    known[ref] = {
                        "archive": archive,
                        "architecture": config["architecture"],
                        "sha256": digest,
                    }
                    print(f"unpacking {ref} (sha256:{digest})...done")
        IMAGES.parent.mkdir(parents=True, exist_ok=True)
        IMAGES.write_text(json.dumps(known, indent=1))
        return 0
    if args[:1] in (["ls"], ["list"]):
        print("\n".join(sorted(known)))
        return 0
    print(f"k3s stand-in: ctr images {' '.join(args)} is not emulated", file=sys.stderr)
    return 1


def main(argv: list[str]) -> int:
    record(argv)
    if not argv or argv[0] in ("--version", "-v", "version"):
        print(f"k3s version {VERSION} (stand-in {STANDIN_NAME})")
        return 0
    command, rest = argv[0], argv[1:]
    if command == "server":
        return server()
    if command == "agent":
        return run_forever()
    if command == "ctr":
        words = [a for a in rest if not a.startswith("-")]
        if words and words[0] in ("images", "image", "i"):
            return images(words[1:])
        return 0
    if command == "kubectl":
        return 0
    print(f"k3s stand-in: '{command}' is not emulated", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
