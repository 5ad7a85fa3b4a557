"""Fabric tasks for debugging one node (or a few) of a Learning Tangle lab.

Hosts come from the Ansible inventory (`inventories/*/hosts.yml`, or `--inventory DIR`, or `$LT_INVENTORY`):
`fab status --on pi-3`, `fab logs --on agents`, or Fabric's own `fab -H pi-3 status`. Every task runs on its
hosts in parallel and prints one block per host; a host that fails says why in one line and the task exits 1
after the others have finished. The work is in `labops/`; each task here only wires it to the command line.
"""

from __future__ import annotations

from pathlib import Path

from fabric import task
from invoke.exceptions import Exit

from labops import tasks
from labops.parallel import hosts_for, run_on

HOSTS = {
    "on": "hosts or Ansible groups, comma-separated",
    "inventory": "inventory folder(s), comma-separated",
}


@task(help=HOSTS)
def status(c, on="", inventory=""):  # type: ignore[no-untyped-def]
    """Uptime, load, memory, disk, temperature and Pi throttling, k3s node state and this node's pods."""
    run_on(hosts_for(c, on, inventory), tasks.status)


@task(
    help={
        **HOSTS,
        "container": "peer or kubo",
        "lines": "how many lines",
        "follow": "keep following (one host)",
    }
)
def logs(c, on="", inventory="", container="peer", lines=100, follow=False):  # type: ignore[no-untyped-def]
    """The last lines (or a follow) of the peer or kubo container of the pods on the node."""
    hosts = hosts_for(c, on, inventory)
    if follow:
        if len(hosts) != 1:
            raise Exit("error: --follow works on one host at a time", code=2)
        tasks.follow_logs_on(hosts[0], container, int(lines))
        return
    run_on(hosts, lambda conn, host: tasks.logs(conn, host, container, int(lines)))


@task(
    help={**HOSTS, "k3s": "restart the k3s service instead of the peer pods", "yes": "do not ask to confirm"}
)
def restart(c, on="", inventory="", k3s=False, yes=False):  # type: ignore[no-untyped-def]
    """Restart the peer pods on the node (or, with --k3s, the k3s service after a confirmation)."""
    hosts = hosts_for(c, on, inventory)
    if not k3s:
        run_on(hosts, tasks.restart_pods)
        return
    if not yes:
        answer = input(f"restart the k3s service on {', '.join(h.name for h in hosts)}? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            raise Exit("not confirmed: nothing restarted", code=1)
    run_on(hosts, tasks.restart_k3s)


@task(help=HOSTS)
def ipfs(c, on="", inventory=""):  # type: ignore[no-untyped-def]
    """kubo: identity, connected peers, connection manager, repo size and pins, PubSub peers on the topic."""
    run_on(hosts_for(c, on, inventory), tasks.ipfs)


@task(help=HOSTS)
def tangle(c, on="", inventory=""):  # type: ignore[no-untyped-def]
    """The peer's tangle: size, tips, depth, last transaction, reference accuracy, rejected by reason."""
    run_on(hosts_for(c, on, inventory), tasks.tangle)


@task(help=HOSTS)
def metrics(c, on="", inventory=""):  # type: ignore[no-untyped-def]
    """A snapshot of the peer's key Prometheus metrics."""
    run_on(hosts_for(c, on, inventory), tasks.metrics)


@task(help={**HOSTS, "out": "local folder for the archive", "lines": "log lines to keep"})
def collect(c, on="", inventory="", out="collected", lines=2000):  # type: ignore[no-untyped-def]
    """Fetch logs, the tangle as a CAR file and a metrics snapshot into OUT/<host>-<time>/."""
    run_on(hosts_for(c, on, inventory), lambda conn, host: tasks.collect(conn, host, Path(out), int(lines)))
