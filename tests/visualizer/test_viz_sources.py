"""Sources: peers' HTTP APIs polled incrementally, DNS discovery, lab output folders."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from viz_helpers import free_port
from viz_synthetic import LabLikeTangle, SyntheticApi

from peer.api.app import BackgroundServer, create_app
from peer.api.schema import LabPeerInfo
from visualizer.graph import TangleGraph
from visualizer.sources import ApiSource, SourceError, load_lab_run, resolve_peer_urls


def _client(api: SyntheticApi, log: list[httpx.Request]) -> httpx.AsyncClient:
    async def record(request: httpx.Request) -> None:
        log.append(request)

    transport = httpx.ASGITransport(app=create_app(api))
    return httpx.AsyncClient(transport=transport, base_url="http://peer", event_hooks={"request": [record]})


async def test_polls_fetch_only_what_is_new() -> None:
    builder = LabLikeTangle(peers=4)
    builder.grow(40)
    api = SyntheticApi(builder, ["peer-000", "peer-001"])
    log: list[httpx.Request] = []
    source = ApiSource(["http://peer"], client=_client(api, log))
    entries = await source.entries()
    assert [e.label for e in entries] == ["peer-000", "peer-001"]
    graph = TangleGraph()
    page = await source.fetch(entries[1], 0)
    assert page.peer == "peer-001"
    assert page.count == len(page.nodes) == 41
    graph.add_many(page.nodes)
    api.grow(8)
    page = await source.fetch(entries[1], len(graph))
    assert page.since == 41
    assert len(page.nodes) == 8  # only the new ones travel
    graph.add_many(page.nodes)
    assert [n.name for n in graph.nodes] == [tx.id for tx in builder.tangle]
    since = [r.url.params.get("since") for r in log if r.url.path == "/api/transactions"]
    assert since == ["0", "41"]
    assert isinstance(page.info, LabPeerInfo)
    assert page.info.round == builder.round
    await source.aclose()


async def test_a_url_without_api_peers_is_one_entry_and_errors_are_source_errors() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(404 if request.url.path == "/api/peers" else 500)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    source = ApiSource(["http://a:8000", "http://b:8000"], client=client)
    entries = await source.entries()
    assert [(e.label, e.peer) for e in entries] == [("a:8000", None), ("b:8000", None)]
    with pytest.raises(SourceError, match="http://a:8000"):
        await source.fetch(entries[0], 0)


async def test_same_peer_name_at_two_urls_is_told_apart() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"peers": ["peer-0"]})

    source = ApiSource(
        ["http://a:1", "http://b:1"], client=httpx.AsyncClient(transport=httpx.MockTransport(handler))
    )
    assert [e.label for e in await source.entries()] == ["peer-0 @ a:1", "peer-0 @ b:1"]


async def test_dns_discovery_finds_a_real_peer_api() -> None:
    assert await resolve_peer_urls("localhost", 8123) == ["http://127.0.0.1:8123"]
    with pytest.raises(SourceError, match="cannot resolve"):
        await resolve_peer_urls("no-such-host.invalid", 8000)
    port = free_port()
    builder = LabLikeTangle(peers=3)
    builder.grow(10)
    server = BackgroundServer(create_app(SyntheticApi(builder, ["peer-7"])), port=port)
    server.start()
    try:
        source = ApiSource(dns="localhost", dns_port=port)
        entries = await source.entries()
        assert [(e.label, e.url) for e in entries] == [("peer-7", f"http://127.0.0.1:{port}")]
        page = await source.fetch(entries[0], 0)
        assert page.count == 11
        await source.aclose()
    finally:
        server.stop()


def test_lab_run_rounds_and_prefixes(lab_folder: Path) -> None:
    run = load_lab_run(lab_folder)
    nodes = run.tangle.nodes
    assert run.rounds == 12  # 60 transactions, 5 a round, plus genesis: the last round has 4
    assert run.prefix(0) == 1
    assert run.prefix(1) == 6
    assert run.prefix(run.rounds) == len(nodes)
    # a prefix holds every parent of what it holds
    for r in range(run.rounds + 1):
        names = {n.name for n in nodes[: run.prefix(r)]}
        assert all(p in names for n in nodes[: run.prefix(r)] for p in n.parents)
    assert [m["round"] for m in run.history().metrics][:3] == [1, 2, 3]


def test_a_folder_without_tangle_json_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match=r"tangle\.json"):
        load_lab_run(tmp_path)
