"""The documents: live updates are streams and patches (no full redraw), replay, colour and x modes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from bokeh.document import Document
from bokeh.document.events import (
    ColumnDataChangedEvent,
    ColumnsPatchedEvent,
    ColumnsStreamedEvent,
    DocumentChangedEvent,
    ModelChangedEvent,
)

from visualizer.app import LiveApp, ReplayApp
from visualizer.config import VizSettings
from visualizer.sources import Entry, Page, load_lab_run
from visualizer.synthetic import LabLikeTangle, SyntheticApi


class Recorder:
    def __init__(self, doc: Document) -> None:
        self.events: list[DocumentChangedEvent] = []
        doc.on_change(self.events.append)

    def take(self) -> Counter[tuple[str, str]]:
        """(event kind, source name or model attribute) of what was sent since the last call."""
        kinds: Counter[tuple[str, str]] = Counter()
        for event in self.events:
            if isinstance(event, ColumnsStreamedEvent | ColumnsPatchedEvent | ColumnDataChangedEvent):
                kinds[(type(event).__name__, event.model.name or "?")] += 1
            elif isinstance(event, ModelChangedEvent):
                kinds[("ModelChangedEvent", event.attr)] += 1
        self.events.clear()
        return kinds


def _page(api: SyntheticApi, peer: str, since: int) -> Page:
    return Page.from_json(api.transactions(peer, since), api.peer_info(peer))


def _live(api: SyntheticApi) -> tuple[LiveApp, Document, Recorder]:
    doc = Document()
    app = LiveApp(doc, VizSettings(peers=["http://peer"]))
    app._set_entries([Entry(label=name, url="http://peer", peer=name) for name in api.peers()])
    return app, doc, Recorder(doc)


def test_live_updates_stream_new_rows_and_patch_only_the_changed_cone() -> None:
    builder = LabLikeTangle(peers=5)
    builder.grow(300)
    api = SyntheticApi(builder, ["peer-000", "peer-001"])
    app, _doc, recorder = _live(api)
    assert app.entry is not None
    assert app.entry.peer == "peer-000"
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    first = recorder.take()
    assert first[("ColumnDataChangedEvent", "nodes")] == 1  # the first draw sends everything once
    assert len(app.view.nodes.data["name"]) == 301
    for _ in range(3):
        api.grow(5)
        app._apply(app.generation, _page(api, "peer-000", len(app.view.graph)), 1.0)
        sent = recorder.take()
        assert sent[("ColumnsStreamedEvent", "nodes")] == 1
        assert sent[("ColumnsStreamedEvent", "edges")] == 1
        assert not any(kind == "ColumnDataChangedEvent" and name in ("nodes", "edges") for kind, name in sent)
        # the reference moved to a new tip: only the rows whose cone membership changed are patched
        patched = [e for e in recorder.events if isinstance(e, ColumnsPatchedEvent)]
        assert all(len(p.patches["outline"]) < 50 for p in patched)
    assert len(app.view.nodes.data["name"]) == 316 == api.transactions("peer-000", 0)["count"]
    cone = app.view.graph.past_cone(app.view.reference)
    outline = app.view.nodes.data["outline"]
    assert [i for i, c in enumerate(outline) if c != "#ffffff"] == sorted(cone)
    assert app.view.header.text.count('data-count="316"') == 1


def test_switching_peer_restarts_and_a_stale_answer_is_dropped() -> None:
    builder = LabLikeTangle(peers=3)
    builder.grow(30)
    api = SyntheticApi(builder, ["peer-000", "peer-001"])
    app, _doc, _recorder = _live(api)
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    old_generation = app.generation
    app.controls.peer.value = "peer-001"
    assert app.entry is not None
    assert app.entry.peer == "peer-001"
    assert len(app.view.nodes.data["name"]) == 0
    app._apply(old_generation, _page(api, "peer-000", 0), 1.0)  # arrives late, for the old peer
    assert len(app.view.graph) == 0
    app._apply(app.generation, _page(api, "peer-001", 0), 1.0)
    assert len(app.view.nodes.data["name"]) == 31
    assert 'data-peer="peer-001"' in app.view.header.text


def test_a_restarted_peer_is_fetched_again() -> None:
    api = SyntheticApi(LabLikeTangle(peers=3, seed=1))
    api.grow(20)
    app, _doc, _recorder = _live(api)
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    other = SyntheticApi(LabLikeTangle(peers=3, seed=2))  # another genesis: the peer started over
    other.grow(25)
    app._apply(app.generation, _page(other, "peer-000", len(app.view.graph)), 1.0)
    assert len(app.view.graph) == 0
    app._apply(app.generation, _page(other, "peer-000", 0), 1.0)
    assert app.view.graph.nodes[0].name == other.transactions(None, 0)["genesis"]


def test_modes_switch_fields_without_sending_data() -> None:
    api = SyntheticApi(LabLikeTangle(peers=3))
    api.grow(20)
    app, _doc, recorder = _live(api)
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    recorder.take()
    app.controls.x_mode.active = 1
    app.controls.color_mode.active = 1
    sent = recorder.take()
    assert not any(kind.startswith("Column") for kind, _name in sent)
    assert app.view.node_renderer.glyph.x == "xt"
    assert app.view.node_renderer.glyph.fill_color == "acc_color"
    assert app.view.color_bar.visible


def test_click_shows_both_cones() -> None:
    api = SyntheticApi(LabLikeTangle(peers=4))
    api.grow(80)
    app, _doc, _recorder = _live(api)
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    middle = 40
    app.view.nodes.selected.indices = [middle]
    graph = app.view.graph
    assert len(app.view.past.data["y"]) == len(graph.past_cone([middle]))
    assert len(app.view.future.data["y"]) == len(graph.future_cone([middle]))
    assert "past cone" in app.controls.selection.text
    app.view.nodes.selected.indices = []
    assert len(app.view.past.data["y"]) == 0


def test_replay_moves_through_rounds(lab_folder: Path) -> None:
    doc = Document()
    run = load_lab_run(lab_folder)
    app = ReplayApp(doc, run)
    recorder = Recorder(doc)
    shown: Any = app.view.nodes.data["name"]
    assert len(shown) == len(run.tangle["nodes"])
    app.slider.value = 3
    assert len(app.view.nodes.data["name"]) == run.prefix(3)
    assert len(app.view.summary.data["t"]) == 3
    recorder.take()
    app.slider.value = 5  # forward: a stream
    sent = recorder.take()
    assert sent[("ColumnsStreamedEvent", "nodes")] == 1
    assert len(app.view.nodes.data["name"]) == run.prefix(5)
    assert len(app.view.references.data["y"]) == 0  # the reference is known for the last round only
    app.slider.value = app.rounds
    assert len(app.view.references.data["y"]) == 2
