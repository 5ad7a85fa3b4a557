"""Run one task on many hosts at once and print each host's output as one block, in inventory order."""

from __future__ import annotations

import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from fabric import Connection
from invoke.exceptions import Exit

from labops.inventory import Inventory, InventoryError, LabHost, default_inventories
from labops.remote import HostError, connect

HostTask = Callable[[Connection, LabHost], str]
MAX_PARALLEL = 16


@dataclass(frozen=True)
class HostResult:
    host: LabHost
    output: str = ""
    error: str | None = None


def hosts_for(context: object, on: str, inventory: str) -> list[LabHost]:
    """The hosts a task was asked for: `--on` names or groups, or the host of `fab -H NAME` (a Connection)."""
    sources = [p for p in inventory.split(",") if p] if inventory else None
    try:
        inv = Inventory([Path(s) for s in sources] if sources else default_inventories())
        names = on or (getattr(context, "host", "") if isinstance(context, Connection) else "")
        return inv.select(names)
    except InventoryError as error:
        raise Exit(f"error: {error}", code=2) from None


def _one(host: LabHost, task: HostTask) -> HostResult:
    try:
        with connect(host) as conn:
            return HostResult(host, output=task(conn, host))
    except HostError as error:
        return HostResult(host, error=str(error))


def run_on(hosts: list[LabHost], task: HostTask) -> list[HostResult]:
    """Run `task` on every host in parallel; print one block per host; exit 1 if any host failed."""
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(hosts))) as pool:
        results = list(pool.map(lambda h: _one(h, task), hosts))
    for result in results:
        print(f"== {result.host.name} ({result.host.address}:{result.host.port})")
        if result.error:
            print(f"error: {result.error}")
        elif result.output:
            print(result.output.rstrip("\n"))
    sys.stdout.flush()
    failed = [r for r in results if r.error]
    if failed:
        raise Exit(
            f"{len(failed)} of {len(results)} hosts failed: {', '.join(r.host.name for r in failed)}", code=1
        )
    return results
