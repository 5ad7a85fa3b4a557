"""Fixtures for tests against real IPFS nodes: a shared 2-node kubo testnet and a factory for more.

The testnet object is not bound to an event loop, so the session-scoped testnet can be used from tests
that run in their own function-scoped loops. Nodes are always stopped at the end, also on failure
(``async with``), and killed at interpreter exit as a last resort (see ``IpfsTestnet``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from peer.ipfs import IpfsClient
from peer.ipfs.testnet import IpfsTestnet


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def ipfs_testnet(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[IpfsTestnet]:
    """Two connected kubo nodes for the whole session (about 1 s to start)."""
    async with IpfsTestnet(tmp_path_factory.mktemp("ipfs-testnet"), 2) as net:
        yield net


TestnetFactory = Callable[..., Awaitable[IpfsTestnet]]


@pytest_asyncio.fixture
async def ipfs_testnet_factory(tmp_path: Path) -> AsyncIterator[TestnetFactory]:
    """``await factory(size)`` starts a private testnet for one test; all are stopped afterwards."""
    nets: list[IpfsTestnet] = []

    async def make(size: int = 2, **kwargs: Any) -> IpfsTestnet:
        net = IpfsTestnet(tmp_path / f"testnet-{len(nets)}", size, **kwargs)
        nets.append(net)  # registered before starting, so a half-started net is stopped too
        await net.start_all()
        return net

    try:
        yield make
    finally:
        for net in nets:
            await net.close()


@pytest_asyncio.fixture
async def ipfs_a(ipfs_testnet: IpfsTestnet) -> AsyncIterator[IpfsClient]:
    async with ipfs_testnet[0].client() as client:
        yield client


@pytest_asyncio.fixture
async def ipfs_b(ipfs_testnet: IpfsTestnet) -> AsyncIterator[IpfsClient]:
    async with ipfs_testnet[1].client() as client:
        yield client
