"""The API's documents are one type for producer and consumer: what the peer builds validates as what the
visualizer reads, and a document missing a field is refused by the visualizer with the field named."""

from __future__ import annotations

import pytest
from viz_synthetic import lab_like_tangle

from peer.api.documents import TRANSACTIONS_DOCUMENT
from peer.api.transactions import transactions_document
from visualizer.sources import Page, SourceError


def test_what_the_peer_serves_is_what_the_visualizer_reads() -> None:
    tangle = lab_like_tangle(60)
    doc = transactions_document(tangle, peer="peer-000", since=10, reference=[tangle.tips[0]])
    assert TRANSACTIONS_DOCUMENT.validate_python(doc) == doc
    page = Page.from_json(doc)
    assert page.count == len(tangle)
    assert len(page.nodes) == len(tangle) - 10
    broken = {**doc, "nodes": [{k: v for k, v in doc["nodes"][0].items() if k != "name"}]}
    with pytest.raises(SourceError, match=r"nodes\.0\.name"):
        Page.from_json(broken)
