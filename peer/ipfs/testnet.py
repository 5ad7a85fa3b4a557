"""A local IPFS testnet of kubo nodes, all on 127.0.0.1, for integration tests, the lab and the benchmarks.

kubo is built once from the Go module proxy by ``scripts/build-kubo.sh`` and cached by version outside the
checkout (:func:`kubo_binary`). Each node gets a fresh repo (``ipfs init --profile test``: no bootstrap
peers, no MDNS, API, gateway and swarm on 127.0.0.1), PubSub enabled, and a log file next to its repo.
The first start lets the OS pick the ports (port 0, so no other process can take them between a probe and
the bind); they are then written into the repo, so a restarted node keeps its API URL and swarm address.
Nodes are started with ``--enable-gc`` when asked (kubo then runs GC every ``Datastore.GCPeriod`` and
when the repo passes ``Datastore.StorageMax``), connected pairwise, and stopped by PID (SIGTERM, then wait).

The object is not tied to an event loop (plain ``subprocess.Popen`` plus polling with short-lived HTTP
clients), so a session-scoped fixture can share one testnet with tests that run in their own loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import functools
import json
import logging
import os
import shutil
import signal
import subprocess
import tempfile
import time
import weakref
from collections.abc import Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from peer.ipfs.client import IpfsClient

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-kubo.sh"
KUBO_VERSION = "v0.43.1"


class IpfsTestnetError(RuntimeError):
    """The testnet could not be built, started or stopped."""


@functools.cache
def kubo_binary() -> Path:
    """The kubo binary: ``$KUBO_BINARY`` if set, else the one ``scripts/build-kubo.sh`` builds (once, cached
    by version in ~/.cache/learning-tangle; minutes of CPU the first time), else ``ipfs`` on PATH."""
    override = os.environ.get("KUBO_BINARY")
    if override:
        return Path(override)
    if BUILD_SCRIPT.exists():
        # two test sessions (or lab runs) starting at once must not build into the same folder
        lock_path = Path(tempfile.gettempdir()) / f"learning-tangle-kubo-build-{os.getuid()}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            log.info("kubo %s: %s (builds it the first time, a few minutes)", KUBO_VERSION, BUILD_SCRIPT)
            result = subprocess.run(  # noqa: S603 - our own script, fixed arguments
                [str(BUILD_SCRIPT), KUBO_VERSION], capture_output=True, text=True, check=False, timeout=3600
            )
        if result.returncode != 0:
            raise IpfsTestnetError(f"scripts/build-kubo.sh failed: {result.stderr.strip()[-3000:]}")
        return Path(result.stdout.strip().splitlines()[-1])
    found = shutil.which("ipfs")
    if found is None:
        raise IpfsTestnetError("no kubo: set KUBO_BINARY, or run from a checkout (scripts/build-kubo.sh)")
    return Path(found)


def kubo_version(binary: Path | None = None) -> str:
    """``kubo/0.43.1``: what the lab records in summary.json's ``config.ipfs``."""
    out = subprocess.run(  # noqa: S603
        [str(binary or kubo_binary()), "version", "--number"], capture_output=True, text=True, check=True
    ).stdout.strip()
    return f"kubo/{out}"


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


def _port(multiaddr: str) -> int:
    parts = multiaddr.strip().split("/")
    return int(parts[parts.index("tcp") + 1])


@dataclass
class IpfsNode:
    """One kubo daemon of a testnet. Ports and repo stay the same across stop/start."""

    index: int
    directory: Path
    api_port: int = 0  # 0 until the first start
    swarm_port: int = 0
    peer_id: str = ""
    process: subprocess.Popen[bytes] | None = None
    ready_seconds: float = 0.0  # how long the last start took until the API answered
    _log_file: IO[bytes] | None = field(default=None, repr=False)

    @property
    def repo(self) -> Path:
        return self.directory / "repo"

    @property
    def log_path(self) -> Path:
        return self.directory / "daemon.log"

    @property
    def api_url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}"

    @property
    def api_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.api_port}"

    @property
    def swarm_multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.swarm_port}/p2p/{self.peer_id}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.running and self.process is not None else None

    def client(self, **kwargs: Any) -> IpfsClient:
        """A new client for this node (the caller closes it); kwargs go to :class:`IpfsClient`."""
        return IpfsClient(self.api_url, **kwargs)


def _kill_leftovers(processes: list[subprocess.Popen[bytes]]) -> None:
    # Last resort at interpreter exit, when close() was never awaited: no daemon may outlive us.
    for process in processes:
        if process.poll() is None:
            process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=10)


async def _all_or_raise(coroutines: list[Coroutine[Any, Any, None]]) -> None:
    # Unlike a bare gather, let every task finish before raising, so that no node comes up after
    # the caller has already cleaned up because of another node's failure.
    results = await asyncio.gather(*coroutines, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


class IpfsTestnet:
    """N kubo nodes on 127.0.0.1, fully connected. ``async with IpfsTestnet(dir, 2) as net: ...``

    ``enable_gc`` starts the daemons with ``--enable-gc``; ``config`` sets further keys in every repo
    (dotted kubo keys, e.g. ``{"Datastore.GCPeriod": "1m", "Datastore.StorageMax": "50MB"}``).
    """

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        size: int = 2,
        *,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        connect: bool = True,
        enable_gc: bool = False,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        if size < 1:
            raise ValueError("a testnet needs at least one node")
        self.base_dir = Path(base_dir)
        self.size = size
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.connect = connect
        self.enable_gc = enable_gc
        self.config = dict(config or {})
        self.nodes: list[IpfsNode] = []
        self.binary: Path | None = None
        self._processes: list[subprocess.Popen[bytes]] = []
        self._finalizer = weakref.finalize(self, _kill_leftovers, self._processes)

    def __getitem__(self, index: int) -> IpfsNode:
        return self.nodes[index]

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[IpfsNode]:
        return iter(self.nodes)

    async def __aenter__(self) -> Self:
        try:
            await self.start_all()
        except BaseException:
            await self.close()
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    @property
    def implementation(self) -> str:
        """``kubo/0.43.1``"""
        return kubo_version(self.binary)

    def _kubo(self) -> Path:
        if self.binary is None:
            raise IpfsTestnetError("the testnet has not been started (start_all)")
        return self.binary

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start_all(self) -> None:
        """Create, initialise and start every node concurrently, then connect each pair."""
        self.binary = await asyncio.to_thread(kubo_binary)  # may build kubo for minutes, once
        self.base_dir.mkdir(parents=True, exist_ok=True)
        self.nodes = [IpfsNode(index=i, directory=self.base_dir / f"node-{i}") for i in range(self.size)]
        started = time.monotonic()
        await _all_or_raise([self._init(node) for node in self.nodes])
        await _all_or_raise([self._start(node) for node in self.nodes])
        if self.connect:
            await self.connect_all()
        log.info("testnet of %d kubo nodes ready in %.1f s", self.size, time.monotonic() - started)

    async def start(self, index: int) -> None:
        """(Re)start one node with its existing repo and ports, and reconnect it to the running others."""
        node = self.nodes[index]
        if node.running:
            return
        await self._start(node)
        if self.connect:
            others = [other for other in self.nodes if other is not node and other.running]
            async with node.client(retries=0) as client:
                for other in others:
                    await client.swarm_connect(other.swarm_multiaddr)

    async def stop(self, index: int) -> None:
        """Stop one node by its PID: SIGTERM, again after 2 s, SIGKILL only after ``stop_timeout`` s more."""
        node = self.nodes[index]
        process = node.process
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            # kubo waits for open HTTP streams (a pubsub/sub never ends) before it exits; a second signal
            # is its documented forced shutdown, which still closes the repo cleanly
            if not await self._wait_exit(process, min(2.0, self.stop_timeout)):
                process.send_signal(signal.SIGTERM)
            if not await self._wait_exit(process, self.stop_timeout):
                log.warning("node %d ignored SIGTERM for %.0f s; killing it", index, self.stop_timeout)
                process.kill()
                await self._wait_exit(process, 10.0)
        if node._log_file is not None:
            node._log_file.close()
            node._log_file = None

    async def close(self) -> None:
        """Stop every node (concurrently). Idempotent."""
        await asyncio.gather(*(self.stop(node.index) for node in self.nodes), return_exceptions=True)
        self._processes.clear()

    async def connect_all(self) -> None:
        """Connect every pair of running nodes (swarm/connect from the lower index to the higher)."""
        for node in self.nodes:
            if not node.running:
                continue
            async with node.client(retries=0) as client:
                for other in self.nodes[node.index + 1 :]:
                    if other.running:
                        await client.swarm_connect(other.swarm_multiaddr)

    # -- internals ---------------------------------------------------------------------------------

    def _env(self, node: IpfsNode) -> dict[str, str]:
        # GOMAXPROCS=1: N daemons and the peers share a few cores; each kubo would run a thread per core
        return {**os.environ, "IPFS_PATH": str(node.repo), "GOMAXPROCS": os.environ.get("GOMAXPROCS", "1")}

    async def _init(self, node: IpfsNode) -> None:
        if node.repo.exists():
            raise IpfsTestnetError(f"{node.repo} already exists: a testnet needs fresh repos")
        binary = self._kubo()
        node.directory.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - polled, never waited on blockingly
                [str(binary), "init", "--profile", "test"],
                env=self._env(node),
                cwd=node.directory,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        if not await self._wait_exit(process, self.start_timeout) or process.returncode != 0:
            process.kill()
            raise IpfsTestnetError(f"ipfs init of node {node.index} failed:\n{_tail(node.log_path)}")
        self._configure(node)

    def _configure(self, node: IpfsNode) -> None:
        # Editing the JSON is one atomic step; `ipfs config` would start a process per key. The test profile
        # already has no bootstrap peers, MDNS off and 127.0.0.1 addresses on port 0.
        config_path = node.repo / "config"
        config = json.loads(config_path.read_text())
        addresses = config.setdefault("Addresses", {})
        addresses["API"] = f"/ip4/127.0.0.1/tcp/{node.api_port}"
        addresses["Swarm"] = [f"/ip4/127.0.0.1/tcp/{node.swarm_port}"]
        addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"  # nothing uses it
        config["Bootstrap"] = []
        config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
        config.setdefault("Pubsub", {})["Enabled"] = True
        for key, value in self.config.items():
            *path, last = key.split(".")
            target = config
            for part in path:
                target = target.setdefault(part, {})
            target[last] = value
        config_path.write_text(json.dumps(config, indent=2))
        node.peer_id = config["Identity"]["PeerID"]

    async def _start(self, node: IpfsNode) -> None:
        binary = self._kubo()
        (node.repo / "api").unlink(missing_ok=True)  # written anew by the daemon once its API listens
        node._log_file = node.log_path.open("ab")
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603, ASYNC220 - polled, see _wait_ready
            [str(binary), "daemon", *(["--enable-gc"] if self.enable_gc else [])],
            env=self._env(node),
            cwd=node.directory,
            stdin=subprocess.DEVNULL,
            stdout=node._log_file,
            stderr=subprocess.STDOUT,
        )
        node.process = process
        self._processes.append(process)
        try:
            await self._wait_ready(node)
            if not node.swarm_port:
                await self._keep_ports(node)
        except BaseException:
            await self.stop(node.index)
            raise
        node.ready_seconds = time.monotonic() - started
        log.info(
            "node %d (%s) up on %s in %.1f s", node.index, node.peer_id, node.api_url, node.ready_seconds
        )

    async def _keep_ports(self, node: IpfsNode) -> None:
        """After the first start on port 0: learn the swarm port and write both ports into the repo."""
        async with node.client(retries=0) as client:
            ident = await client.id()
            swarm = [a for a in ident.addresses if a.startswith("/ip4/127.0.0.1/tcp/")]
            if not swarm:
                raise IpfsTestnetError(f"node {node.index} has no 127.0.0.1 TCP address: {ident.addresses}")
            node.swarm_port = _port(swarm[0])
            await client.config_set("Addresses.API", node.api_multiaddr)
            await client.config_set("Addresses.Swarm", [f"/ip4/127.0.0.1/tcp/{node.swarm_port}"])

    async def _wait_ready(self, node: IpfsNode) -> None:
        deadline = time.monotonic() + self.start_timeout
        api_file = node.repo / "api"
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            while True:
                if not node.running:
                    raise IpfsTestnetError(f"node {node.index} exited during start:\n{_tail(node.log_path)}")
                with contextlib.suppress(OSError, ValueError, IndexError):
                    node.api_port = _port(api_file.read_text())
                if node.api_port:
                    try:
                        response = await http.post(f"{node.api_url}/api/v0/id")
                        if response.status_code == 200 and response.json().get("ID") == node.peer_id:
                            return
                    except (httpx.HTTPError, ValueError):
                        pass  # not listening yet
                if time.monotonic() > deadline:
                    raise IpfsTestnetError(
                        f"node {node.index} not ready after {self.start_timeout} s:\n{_tail(node.log_path)}"
                    )
                await asyncio.sleep(0.1)

    @staticmethod
    async def _wait_exit(process: subprocess.Popen[bytes], within: float) -> bool:
        deadline = time.monotonic() + within
        while process.poll() is None:
            if time.monotonic() > deadline:
                return False
            await asyncio.sleep(0.05)
        return True


async def wait_for_pubsub_peers(
    client: IpfsClient, topic: str, peer_ids: Sequence[str], *, within: float = 10.0
) -> None:
    """Wait until ``client``'s node sees every one of ``peer_ids`` subscribed to ``topic``.

    Gossipsub learns remote subscriptions asynchronously; publishing before that loses the message.
    """
    deadline = time.monotonic() + within
    wanted = set(peer_ids)
    while True:
        seen = set(await client.pubsub_peers(topic))
        if wanted <= seen:
            return
        if time.monotonic() > deadline:
            raise IpfsTestnetError(
                f"peers {sorted(wanted - seen)} not subscribed to {topic!r} after {within} s"
            )
        await asyncio.sleep(0.1)
