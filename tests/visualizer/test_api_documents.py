"""The API's documents are one definition (peer.api.schema) for producer and consumer: what the peer builds
and serves over HTTP is what the visualizer reads, field for field, and a document missing a field is refused
by the visualizer with the field named."""

from __future__ import annotations

import asyncio
import json
import math

import httpx
import pytest
from viz_synthetic import lab_like_tangle

from peer.api.app import create_app
from peer.api.schema import PEER_INFO, LabPeerInfo, PeerInfo, TransactionsDocument
from peer.api.transactions import transactions_document
from peer.lab.live import LabApiSource
from visualizer.sources import ApiSource, Page, SourceError


def _lab_source(transactions: int) -> LabApiSource:
    tangle = lab_like_tangle(transactions, peers=3)
    authors = sorted({tx.author for tx in tangle if tx.author != "genesis"})
    source = LabApiSource(tangle.genesis, authors, malicious={authors[-1]}, weight_horizon=None)
    source.tangle = tangle  # the rounds as the runner would have added them
    source.references = {a: [tangle.tips[0]] for a in authors}
    source.accuracy = {authors[0]: 0.75}
    source.round, source.rounds_total = 7, 20
    return source


def test_what_the_lab_serves_over_http_is_what_the_visualizer_reads() -> None:
    source = _lab_source(40)
    authors = source.peers()
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(source)), base_url="http://lab")
    reader = ApiSource(["http://lab"], client=client)

    async def read() -> tuple[list[Page], dict[str, object], dict[str, object]]:
        entries = await reader.entries()
        pages = [await reader.fetch(entry, since=5) for entry in entries]
        raw_peer = (await client.get("/api/peer", params={"peer": authors[0]})).json()
        health = (await client.get("/healthz")).json()
        await reader.aclose()
        return pages, raw_peer, health

    pages, raw_peer, health = asyncio.run(read())
    assert [p.peer for p in pages] == authors
    for page in pages:
        served = source.transactions(page.peer, 5)
        assert page.nodes == served.nodes  # every field of every node survives the wire
        assert (page.genesis, page.count, page.tips, page.reference) == (
            served.genesis,
            served.count,
            served.tips,
            served.reference,
        )
        assert isinstance(page.info, LabPeerInfo)
        assert page.info == source.peer_info(page.peer)
    assert [p.info.malicious for p in pages if isinstance(p.info, LabPeerInfo)] == [False, False, True]
    first = pages[0].info
    assert isinstance(first, LabPeerInfo)
    assert (first.round, first.rounds, first.reference_accuracy) == (7, 20, 0.75)
    # the wire keeps the original project's names (camelCase), whatever the Python names are
    assert {"referenceAccuracy", "lab", "round"} <= raw_peer.keys()
    assert "reference_accuracy" not in raw_peer
    assert health == {"ok": True, "round": 7}


def test_a_node_of_the_wire_has_the_original_project_fields_and_no_nan() -> None:
    tangle = lab_like_tangle(12)
    doc = transactions_document(tangle, peer="peer-000")
    doc.nodes[-1].loss = math.inf  # a random-weights model's loss overflows
    wire = json.loads(doc.json_bytes())  # strict JSON: json.loads of NaN/Infinity would pass, so check
    node = wire["nodes"][-1]
    assert {"name", "parents", "peer", "time", "timeCreated", "weights", "height", "tag"} <= node.keys()
    assert node["loss"] is None
    assert b"Infinity" not in doc.json_bytes()
    assert b"NaN" not in doc.json_bytes()
    back = TransactionsDocument.model_validate(wire)
    assert back.nodes[:-1] == doc.nodes[:-1]


def test_a_document_missing_a_field_is_refused_with_the_field_named() -> None:
    wire = json.loads(transactions_document(lab_like_tangle(12), peer="peer-000").json_bytes())
    broken = {**wire, "nodes": [{k: v for k, v in wire["nodes"][0].items() if k != "name"}]}
    with pytest.raises(SourceError, match=r"nodes\.0\.name"):
        Page.from_json(broken)
    with pytest.raises(SourceError, match=r"genesis: Field required"):
        Page.from_json({k: v for k, v in wire.items() if k != "genesis"})


def test_a_peer_info_is_a_lab_peer_only_when_it_says_so() -> None:
    daemon_like = {"peer": "p", "transactions": 3, "tips": 1, "referenceAccuracy": 0.5, "topic": "t"}
    info = PEER_INFO.validate_python(daemon_like)
    assert type(info) is PeerInfo
    assert info.reference_accuracy == 0.5
    lab = PEER_INFO.validate_python({**daemon_like, "lab": True, "round": 3})
    assert isinstance(lab, LabPeerInfo)
    assert lab.round == 3
    # a malformed /api/peer costs the page its extras, never the tangle
    wire = json.loads(transactions_document(lab_like_tangle(5), peer="p").json_bytes())
    assert Page.from_json(wire, {"peer": 42, "transactions": -1}).info is None
