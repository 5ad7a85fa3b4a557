"""Helpers for tests that run real `tangle peer` processes: start and stop them, poll their HTTP API, and
talk to their IPFS nodes the way another (honest or hostile) network participant would."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import httpx

from peer.data import load_dataset
from peer.ipfs.client import IpfsClient
from peer.ipfs.testnet import IpfsTestnet
from peer.learning.genesis import topic_for
from peer.models import create_model, encode_weights
from peer.node.announcement import Announcement
from peer.node.peer import Genesis, make_genesis
from peer.tangle.transaction import encode_transaction

T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
TANGLE = [sys.executable, "-m", "peer"]
# small, quick and deterministic: the peers' defaults are tuned for a cluster, not for a test
FAST = {
    "TRAINING_INTERVAL": "2",
    "TIMEOUT": "5",
    "REANNOUNCE_INTERVAL": "3",
    "PEERS": "4",
    "MODEL": "mlp",
    "LOGGING_LEVEL": "info",
    "OPENBLAS_NUM_THREADS": "1",
    "SHUTDOWN_GRACE": "20",
}


def run(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run async IPFS calls from a synchronous test (the testnet object is not bound to a loop)."""
    return asyncio.run(coroutine)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(what: str, check: Callable[[], T | None], *, timeout: float, interval: float = 0.5) -> T:
    """Poll `check` until it returns something truthy (and return it), or fail naming `what`."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            result = check()
            if result:
                return result
        except (httpx.HTTPError, KeyError, ValueError) as error:
            last_error = error
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what} (last error: {last_error!r})")


class PeerProcess:
    """One `tangle peer` subprocess with its own HTTP port and log file."""

    def __init__(self, directory: Path, env: dict[str, str], *, name: str = "peer") -> None:
        self.directory = directory
        self.name = name
        self.port = free_port()
        self.env = {**os.environ, **FAST, **env, "HTTP_PORT": str(self.port)}
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def stdout_path(self) -> Path:
        return self.directory / f"{self.name}-{self.starts}.out"

    def start(self, *args: str) -> PeerProcess:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        with self.stdout_path.open("wb") as out:
            self.process = subprocess.Popen(
                [*TANGLE, "peer", *args],
                env=self.env,
                cwd=self.directory,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        return self

    def output(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str, **params: Any) -> Any:
        response = httpx.get(f"{self.url}{path}", params=params, timeout=10, trust_env=False)
        if path == "/healthz":
            return response.json()
        response.raise_for_status()
        return response.text if path == "/metrics" else response.json()

    def info(self) -> dict[str, Any]:
        return self.get("/api/peer")

    def transactions(self) -> dict[str, dict[str, Any]]:
        return {node["name"]: node for node in self.get("/api/transactions")["nodes"]}

    def wait_ready(self, timeout: float = 60) -> dict[str, Any]:
        def ready() -> dict[str, Any] | None:
            if not self.alive():
                raise AssertionError(f"{self.name} exited:\n{self.output()[-3000:]}")
            health = self.get("/healthz")
            return health if health.get("ok") else None

        return wait_for(f"{self.name} to be ready", ready, timeout=timeout)

    def signal(self, sig: int) -> None:
        assert self.process is not None
        self.process.send_signal(sig)

    def wait(self, timeout: float = 60) -> int:
        assert self.process is not None
        return self.process.wait(timeout)

    def stop(self) -> None:
        if self.alive():
            self.signal(signal.SIGTERM)
            try:
                self.wait(40)
            except subprocess.TimeoutExpired:
                assert self.process is not None
                self.process.kill()
                self.process.wait(10)


@contextmanager
def peers_stopped(peers: list[PeerProcess]) -> Iterator[list[PeerProcess]]:
    try:
        yield peers
    finally:
        for peer in peers:
            peer.stop()


@contextmanager
def running_testnet(directory: Path, size: int, **kwargs: Any) -> Iterator[IpfsTestnet]:
    """A kubo testnet for synchronous tests; kwargs go to :class:`IpfsTestnet` (enable_gc, config)."""
    net = IpfsTestnet(directory, size, **kwargs)
    try:
        run(net.start_all())
        yield net
    finally:
        run(net.close())


def digits_genesis(model: str = "mlp", seed: int = 0) -> Genesis:
    dataset = load_dataset("digits")
    return make_genesis(create_model(model, dataset.input_shape, dataset.num_classes), seed)


class Participant:
    """Another node on the network: publishes weights, transaction blocks and announcements as it likes."""

    def __init__(self, api_url: str, genesis: Genesis) -> None:
        self.api_url = api_url
        self.genesis = genesis
        self.topic = topic_for(genesis.transaction.id)

    async def _client(self) -> IpfsClient:
        return IpfsClient(self.api_url, timeout=20)

    async def peer_id(self) -> str:
        async with IpfsClient(self.api_url) as client:
            return (await client.id()).peer_id

    async def sign(self, data: bytes) -> bytes:
        """This node's key's signature of `data` (what a peer puts into its transactions)."""
        async with IpfsClient(self.api_url) as client:
            return await client.key_sign(data)

    async def announce(self, data: bytes) -> None:
        async with IpfsClient(self.api_url) as client:
            await client.pubsub_pub(self.topic, data)

    async def put_block(self, block: bytes, codec: str = "dag-cbor") -> str:
        async with IpfsClient(self.api_url) as client:
            return await client.block_put(block, codec=codec)  # type: ignore[arg-type]

    async def add(self, data: bytes) -> str:
        async with IpfsClient(self.api_url) as client:
            return await client.add(data)

    async def transaction(
        self,
        *,
        parents: list[str] | None = None,
        weights: bytes | None = None,
        author: str | None = None,
        model: str | None = None,
        announce: bool = True,
        metrics: dict[str, float] | None = None,
    ) -> str:
        """Store a (structurally valid) transaction and, by default, announce it first-hand."""
        tx = self.genesis.transaction
        weights_cid = await self.add(weights if weights is not None else self.genesis.weights_bytes)
        make = functools.partial(
            encode_transaction,
            parents=parents if parents is not None else [tx.id],
            weights=weights_cid,
            model=model or tx.model,
            author=author or await self.peer_id(),
            created=time.time(),
            tag="test",
            metrics=metrics or {"accuracy": 0.1, "loss": 2.3},
        )
        # signed by this node's key, as a peer signs its own (with another author: a signature that fails)
        cid, block = make(signature=await self.sign(make()[1]))
        assert await self.put_block(block) == cid
        if announce:
            await self.announce(Announcement(cid, ()).encode())
        return cid


def weights_bytes(tensors: dict[str, Any]) -> bytes:
    return encode_weights(tensors)
