"""A local IPFS testnet of js-ipfs 0.66.1 nodes, all on 127.0.0.1, for integration tests and the lab.

kubo cannot be fetched on our machines, js-ipfs can (npm ``ipfs@0.66.1`` with the overrides pinned in
``ipfs-testnet/package.json``) and speaks the same RPC wire format. Each node gets a fresh repo
(``jsipfs init --profile test``: no bootstrap peers, no MDNS), its API and swarm on free 127.0.0.1
ports, PubSub enabled, and a log file next to its repo; every pair of nodes is connected explicitly.

The object is not tied to an event loop (plain ``subprocess.Popen`` plus polling with short-lived HTTP
clients), so a session-scoped fixture can share one testnet with tests that run in their own loops.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Coroutine, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self

import httpx

from peer.ipfs.client import IpfsClient

log = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTNET_DIR = REPO_ROOT / "ipfs-testnet"
JSIPFS_CLI = TESTNET_DIR / "node_modules" / "ipfs" / "src" / "cli.js"
MIN_NODE_MAJOR = 18


class IpfsTestnetError(RuntimeError):
    """The testnet could not be installed, started or stopped."""


def _node_binary() -> str:
    node = shutil.which("node")
    if node is None:
        raise IpfsTestnetError(
            "the js-ipfs testnet needs Node.js >= 18 and npm on PATH (Debian: apt-get install nodejs npm)"
        )
    return node


def ensure_installed(*, timeout: float = 900.0) -> Path:
    """Install js-ipfs into ``ipfs-testnet/node_modules`` unless present; return the CLI script path.

    Uses ``npm install`` (not ``npm ci``): with the overrides it is the form known to resolve cleanly.
    Takes 2-4 minutes and about 300 MB the first time.
    """
    node = _node_binary()
    # S603: every argv here is our own fixed command line, nothing comes from outside.
    version = subprocess.run(  # noqa: S603
        [node, "--version"], capture_output=True, text=True, check=True
    ).stdout.strip()
    major = int(version.lstrip("v").split(".")[0])
    if major < MIN_NODE_MAJOR:
        raise IpfsTestnetError(f"Node.js {version} is too old for js-ipfs 0.66.1 (need >= {MIN_NODE_MAJOR})")
    if JSIPFS_CLI.exists():
        return JSIPFS_CLI
    npm = shutil.which("npm")
    if npm is None:
        raise IpfsTestnetError("npm is missing: it is needed once to install js-ipfs (apt-get install npm)")
    # Two test sessions starting at once must not run npm install into the same tree.
    lock_path = Path(tempfile.gettempdir()) / f"learning-tangle-npm-{os.getuid()}.lock"
    with lock_path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not JSIPFS_CLI.exists():
            log.info("installing js-ipfs into %s (npm install, a few minutes)", TESTNET_DIR)
            result = subprocess.run(  # noqa: S603
                [npm, "install", "--no-audit", "--no-fund"],
                cwd=TESTNET_DIR,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
            if result.returncode != 0 or not JSIPFS_CLI.exists():
                raise IpfsTestnetError(
                    f"npm install in {TESTNET_DIR} failed:\n{result.stdout[-2000:]}{result.stderr[-4000:]}"
                )
    return JSIPFS_CLI


def _free_ports(count: int) -> list[int]:
    """Distinct free TCP ports on 127.0.0.1 (held open together so they differ; racy only vs others)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _tail(path: Path, limit: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-limit:]
    except OSError:
        return ""


@dataclass
class IpfsNode:
    """One js-ipfs daemon of a testnet. Ports and repo stay the same across stop/start."""

    index: int
    directory: Path
    api_port: int
    swarm_port: int
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
    """N js-ipfs nodes on 127.0.0.1, fully connected. ``async with IpfsTestnet(dir, 2) as net: ...``"""

    def __init__(
        self,
        base_dir: str | os.PathLike[str],
        size: int = 2,
        *,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        connect: bool = True,
    ) -> None:
        if size < 1:
            raise ValueError("a testnet needs at least one node")
        self.base_dir = Path(base_dir)
        self.size = size
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.connect = connect
        self.nodes: list[IpfsNode] = []
        self._node = _node_binary()
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

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start_all(self) -> None:
        """Create, initialise and start every node concurrently, then connect each pair."""
        cli = await asyncio.to_thread(ensure_installed)  # may run npm install for minutes
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ports = _free_ports(2 * self.size)
        self.nodes = [
            IpfsNode(
                index=i,
                directory=self.base_dir / f"node-{i}",
                api_port=ports[2 * i],
                swarm_port=ports[2 * i + 1],
            )
            for i in range(self.size)
        ]
        started = time.monotonic()
        await _all_or_raise([self._init(node, cli) for node in self.nodes])
        await _all_or_raise([self._start_with_port_retry(node) for node in self.nodes])
        if self.connect:
            await self.connect_all()
        log.info("testnet of %d js-ipfs nodes ready in %.1f s", self.size, time.monotonic() - started)

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
        """Stop one node with SIGTERM (SIGKILL only if it ignores that for ``stop_timeout`` seconds)."""
        node = self.nodes[index]
        process = node.process
        if process is not None and process.poll() is None:
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
        return {**os.environ, "IPFS_PATH": str(node.repo)}

    async def _init(self, node: IpfsNode, cli: Path) -> None:
        if node.repo.exists():
            raise IpfsTestnetError(f"{node.repo} already exists: a testnet needs fresh repos")
        node.directory.mkdir(parents=True, exist_ok=True)
        with node.log_path.open("ab") as log_file:
            process = subprocess.Popen(  # noqa: S603, ASYNC220 - polled, never waited on blockingly
                [self._node, str(cli), "init", "--profile", "test"],
                env=self._env(node),
                cwd=node.directory,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
        self._processes.append(process)
        if not await self._wait_exit(process, self.start_timeout) or process.returncode != 0:
            process.kill()
            raise IpfsTestnetError(f"jsipfs init of node {node.index} failed:\n{_tail(node.log_path)}")
        self._configure(node)

    def _configure(self, node: IpfsNode) -> None:
        # Editing the JSON is one atomic step; `jsipfs config` would start a node-process per key.
        config_path = node.repo / "config"
        config = json.loads(config_path.read_text())
        addresses = config.setdefault("Addresses", {})
        addresses["API"] = f"/ip4/127.0.0.1/tcp/{node.api_port}"
        addresses["Swarm"] = [f"/ip4/127.0.0.1/tcp/{node.swarm_port}"]
        # Gateway and gRPC get a port from the OS: nothing uses them, and the test profile's fixed
        # gRPC port 5003 would collide between nodes.
        addresses["Gateway"] = "/ip4/127.0.0.1/tcp/0"
        addresses["RPC"] = "/ip4/127.0.0.1/tcp/0"
        addresses["Announce"] = []
        addresses["Delegates"] = []
        config["Bootstrap"] = []
        config.setdefault("Discovery", {}).setdefault("MDNS", {})["Enabled"] = False
        config.setdefault("Pubsub", {})["Enabled"] = True
        config["Pubsub"]["Router"] = "gossipsub"
        config_path.write_text(json.dumps(config, indent=2))
        node.peer_id = config["Identity"]["PeerID"]

    async def _start_with_port_retry(self, node: IpfsNode, attempts: int = 3) -> None:
        # Another process may take a port between our probe and the daemon's bind: pick new ones.
        for attempt in range(attempts):
            try:
                await self._start(node)
                return
            except IpfsTestnetError:
                if attempt + 1 >= attempts or "EADDRINUSE" not in _tail(node.log_path, 20000):
                    raise
                node.api_port, node.swarm_port = _free_ports(2)
                self._configure(node)
                log.warning(
                    "node %d: port taken, retrying on %d/%d", node.index, node.api_port, node.swarm_port
                )

    async def _start(self, node: IpfsNode) -> None:
        lock = node.repo / "repo.lock"
        if lock.exists():
            # Only our own daemon uses this repo and it is not running: a lock left by a killed one.
            if lock.is_dir():
                shutil.rmtree(lock, ignore_errors=True)
            else:
                lock.unlink(missing_ok=True)
        node._log_file = node.log_path.open("ab")
        started = time.monotonic()
        process = subprocess.Popen(  # noqa: S603, ASYNC220 - polled, see _wait_ready
            [self._node, str(JSIPFS_CLI), "daemon"],
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
        except BaseException:
            await self.stop(node.index)
            raise
        node.ready_seconds = time.monotonic() - started
        log.info(
            "node %d (%s) up on %s in %.1f s", node.index, node.peer_id, node.api_url, node.ready_seconds
        )

    async def _wait_ready(self, node: IpfsNode) -> None:
        deadline = time.monotonic() + self.start_timeout
        async with httpx.AsyncClient(timeout=2.0, trust_env=False) as http:
            while True:
                if not node.running:
                    raise IpfsTestnetError(f"node {node.index} exited during start:\n{_tail(node.log_path)}")
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
                await asyncio.sleep(0.2)

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
