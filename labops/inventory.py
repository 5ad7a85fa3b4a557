"""The lab's hosts, read from the same Ansible inventory that `site.yml` uses, so there is one list of hosts.

`ansible-inventory --list` does the reading (group_vars, host_vars, children, as Ansible resolves them); this
module only picks the connection settings and our own per-host variables out of its JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


class InventoryError(Exception):
    """A one-line problem with the inventory or the hosts asked for."""


@dataclass(frozen=True)
class LabHost:
    name: str
    address: str
    port: int = 22
    user: str | None = None
    key_file: str | None = None
    groups: tuple[str, ...] = ()
    # Where the peer and kubo live when the host runs them outside k3s (a debug or test node);
    # with k3s the tasks find the pods on the node instead.
    peer_url: str | None = None
    kubo_api: str | None = None
    peer_log: str | None = None
    kubo_log: str | None = None
    extra: dict[str, object] = field(default_factory=dict, compare=False)


def default_inventories() -> list[Path]:
    """`$LT_INVENTORY` (comma-separated), else every `inventories/*/hosts.yml` of the checkout."""
    if os.environ.get("LT_INVENTORY"):
        return [Path(p) for p in os.environ["LT_INVENTORY"].split(",") if p]
    return sorted(p.parent for p in (ROOT / "inventories").glob("*/hosts.yml"))


def _ansible_inventory_json(sources: list[Path]) -> dict[str, object]:
    # the one installed beside this Python (a virtualenv's bin/ need not be on PATH), else the PATH's
    beside = Path(sys.executable).with_name("ansible-inventory")
    binary = str(beside) if beside.exists() else shutil.which("ansible-inventory")
    if binary is None:
        raise InventoryError(
            "ansible-inventory is not installed: pip install 'learning-tangle[dev]' (or ansible-core)"
        )
    missing = [str(s) for s in sources if not s.exists()]
    if missing:
        raise InventoryError(f"inventory not found: {', '.join(missing)}")
    argv = [binary, "--list"]
    for source in sources:
        argv += ["-i", str(source)]
    env = {**os.environ, "ANSIBLE_INVENTORY_UNPARSED_WARNING": "False", "ANSIBLE_NOCOLOR": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120, check=False)  # noqa: S603
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise InventoryError(f"ansible-inventory failed on {', '.join(map(str, sources))}: {last}")
    data: dict[str, object] = json.loads(done.stdout)
    return data


class Inventory:
    def __init__(self, sources: list[Path]) -> None:
        if not sources:
            raise InventoryError("no inventory: pass --inventory DIR or set LT_INVENTORY")
        self.sources = sources
        data = _ansible_inventory_json(sources)
        meta = data.get("_meta", {})
        self.hostvars: dict[str, dict[str, object]] = (
            meta.get("hostvars", {}) if isinstance(meta, dict) else {}
        )
        self.groups: dict[str, dict[str, list[str]]] = {
            name: value for name, value in data.items() if name != "_meta" and isinstance(value, dict)
        }

    def _group_hosts(self, group: str, seen: set[str] | None = None) -> list[str]:
        seen = set() if seen is None else seen
        if group in seen:
            return []
        seen.add(group)
        entry = self.groups.get(group, {})
        hosts = list(entry.get("hosts", []))
        for child in entry.get("children", []):
            hosts += self._group_hosts(child, seen)
        return hosts

    def _groups_of(self, host: str) -> tuple[str, ...]:
        return tuple(sorted(g for g in self.groups if g != "all" and host in self._group_hosts(g)))

    def host(self, name: str) -> LabHost:
        v = self.hostvars.get(name)
        if v is None:
            raise InventoryError(f"unknown host {name!r}")

        def text(key: str) -> str | None:
            value = v.get(key)
            return str(value) if value not in (None, "") else None

        return LabHost(
            name=name,
            address=text("ansible_host") or name,
            port=int(str(v.get("ansible_port") or 22)),
            user=text("ansible_user"),
            key_file=text("ansible_ssh_private_key_file"),
            groups=self._groups_of(name),
            peer_url=text("lt_peer_url"),
            kubo_api=text("lt_kubo_api"),
            peer_log=text("lt_peer_log"),
            kubo_log=text("lt_kubo_log"),
            extra=dict(v),
        )

    def select(self, names: str) -> list[LabHost]:
        """Hosts named by a comma-separated list of host and group names, in inventory order, each once."""
        wanted = [n.strip() for n in names.split(",") if n.strip()]
        if not wanted:
            raise InventoryError("no hosts given: use --on HOST|GROUP[,...] (or fab -H HOST)")
        chosen: list[str] = []
        unknown = []
        for name in wanted:
            if name in self.hostvars:
                members = [name]
            elif name in self.groups:
                members = self._group_hosts(name)
            else:
                unknown.append(name)
                continue
            chosen += [m for m in members if m not in chosen]
        if unknown:
            known = sorted(g for g in self.groups if g not in ("all", "ungrouped"))
            where = ", ".join(map(str, self.sources))
            names = ", ".join(map(repr, unknown))
            raise InventoryError(f"unknown host or group {names} in {where} (groups: {', '.join(known)})")
        return [self.host(h) for h in chosen]
