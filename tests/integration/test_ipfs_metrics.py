"""`/metrics/ipfs`: a peer passes kubo's own Prometheus metrics through its HTTP port, read-only and bounded,
so Prometheus never needs kubo's RPC port (an admin API)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from peer.api import app as api_app
from peer.api.schema import Health, PeerInfo, TransactionsDocument
from peer.ipfs.errors import IpfsConnectionError, IpfsTooLarge

from .peers import PeerProcess, peers_stopped, run, running_testnet, wait_for


class _NoSource:
    def peers(self) -> list[str]:
        return []

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument:
        raise api_app.UnknownPeer(peer or "")

    def peer_info(self, peer: str | None) -> PeerInfo:
        raise api_app.UnknownPeer(peer or "")

    def health(self) -> Health:
        return Health(ok=True)


def _client(fetch: api_app.IpfsMetrics) -> httpx.AsyncClient:
    app = api_app.create_app(_NoSource(), ipfs_metrics=fetch)
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://peer")


async def test_only_get_of_the_one_path_is_passed_through() -> None:
    asked: list[tuple[int, float]] = []

    async def fetch(max_bytes: int, seconds: float) -> bytes:
        asked.append((max_bytes, seconds))
        return b"# kubo\nipfs_up 1\n"

    client = _client(fetch)
    response = await client.get("/metrics/ipfs")
    assert response.status_code == 200
    assert response.text == "# kubo\nipfs_up 1\n"
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert asked == [(api_app.IPFS_METRICS_MAX_BYTES, api_app.IPFS_METRICS_TIMEOUT)]
    assert (await client.post("/metrics/ipfs")).status_code == 405
    for path in (
        "/metrics/ipfs/api/v0/config/show",
        "/metrics/ipfs/../api/v0/id",
        "/debug/metrics/prometheus",
    ):
        assert (await client.get(path)).status_code == 404, path
    assert len(asked) == 1


async def test_kubo_too_slow_is_504_and_too_large_or_down_is_502(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api_app, "IPFS_METRICS_TIMEOUT", 0.2)

    async def slow(max_bytes: int, seconds: float) -> bytes:
        await asyncio.sleep(30)
        return b""

    async def huge(max_bytes: int, seconds: float) -> bytes:
        raise IpfsTooLarge(max_bytes, "kubo metrics")

    async def down(max_bytes: int, seconds: float) -> bytes:
        raise IpfsConnectionError("connection refused")

    response = await _client(slow).get("/metrics/ipfs")
    assert response.status_code == 504
    assert "within 0.2 s" in response.text
    response = await _client(huge).get("/metrics/ipfs")
    assert response.status_code == 502
    assert "exceed" in response.text
    response = await _client(down).get("/metrics/ipfs")
    assert response.status_code == 502
    assert "connection refused" in response.text


@pytest.mark.integration
def test_a_peer_serves_its_kubo_metrics_and_says_when_kubo_is_down(tmp_path: Path) -> None:
    with running_testnet(tmp_path / "ipfs", 1) as net:
        peer = PeerProcess(tmp_path / "peer", {"IPFS_API": net[0].api_url, "PEER_INDEX": "0"})
        with peers_stopped([peer]):
            peer.start().wait_ready()
            url = f"{peer.url}/metrics/ipfs"
            response = httpx.get(url, timeout=10)
            assert response.status_code == 200
            # kubo's own series, among them the RPC calls the peer made (id, pubsub/sub, block/put, add)
            assert "ipfs_http_requests_total" in response.text
            assert "libp2p_rcmgr_connections" in response.text

            run(net.stop(0))
            response = httpx.get(url, timeout=10)
            assert response.status_code == 502
            assert response.text.startswith("kubo is unreachable")

            run(net.start(0))
            wait_for(
                "kubo's metrics again", lambda: httpx.get(url, timeout=10).status_code == 200, timeout=30
            )
