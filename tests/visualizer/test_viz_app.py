"""The documents: live updates are streams and patches (no full redraw), replay, colour and x modes."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
from bokeh.core.serialization import Deserializer
from bokeh.document import Document
from bokeh.document.events import (
    ColumnDataChangedEvent,
    ColumnsPatchedEvent,
    ColumnsStreamedEvent,
    DocumentChangedEvent,
    DocumentPatchedEvent,
    ModelChangedEvent,
)
from bokeh.models import ColumnDataSource
from bokeh.protocol import Protocol
from viz_helpers import SteeredApi, tangle_nodes
from viz_synthetic import LabLikeTangle, SyntheticApi

from visualizer import style
from visualizer.app import LiveApp, ReplayApp
from visualizer.config import VizSettings
from visualizer.sources import Entry, Page, load_lab_run
from visualizer.view import TangleView


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


class PageMirror:
    """The column data a connected browser holds.

    Every change is serialized into a PATCH-DOC message when the server session would send it (at the
    change, or at `unhold` under a document hold) and applied the way BokehJS applies it: a ColumnDataChanged
    with `cols` replaces only those columns, a stream appends, a patch writes rows that must exist. BokehJS
    throws "Size mismatch" when it paints a source whose columns differ in length, so that is checked after
    every message.
    """

    def __init__(self, doc: Document) -> None:
        self.client = Document.from_json(doc.to_json(deferred=False))
        self.columns: dict[str, dict[str, list[Any]]] = {
            m.id: {k: list(v) for k, v in m.data.items()}
            for m in self.client.models
            if isinstance(m, ColumnDataSource)
        }
        self.names = {m.id: m.name or m.id for m in self.client.models}
        self.problems: list[str] = []
        self.protocol = Protocol()
        doc.on_change(self._sent)

    def _sent(self, event: DocumentChangedEvent) -> None:
        if not isinstance(event, DocumentPatchedEvent):
            return
        message = self.protocol.create("PATCH-DOC", [event])  # serialized now, as ServerSession does
        for rep in Deserializer(list(self.client.models)).deserialize(message.payload)["events"]:
            model = rep.get("model")
            if isinstance(model, ColumnDataSource) and rep.get("attr") == "data":
                self._apply(rep["kind"], model.id, rep)

    def _apply(self, kind: str, source: str, rep: dict[str, Any]) -> None:
        name, columns = self.names[source], self.columns[source]
        if kind == "ModelChanged":
            self.columns[source] = {k: list(v) for k, v in rep["new"].items()}
        elif kind == "ColumnDataChanged":
            data = {k: list(v) for k, v in rep["data"].items()}
            if rep["cols"] is None:
                self.columns[source] = data
            else:
                columns.update({c: data[c] for c in rep["cols"]})
        elif kind == "ColumnsStreamed":
            if set(rep["data"]) != set(columns):
                self.problems.append(f"{name}: stream of {sorted(rep['data'])}, page has {sorted(columns)}")
            for k, values in rep["data"].items():
                columns.setdefault(k, []).extend(list(values))
        elif kind == "ColumnsPatched":
            for k, patch in rep["patches"].items():
                column = columns[k]
                for index, value in patch:
                    end = index.stop if isinstance(index, slice) else index + 1
                    if end is None or end > len(column):
                        self.problems.append(f"{name}: patch of {k}[{index}] past its {len(column)} rows")
                        continue
                    column[index] = list(value) if isinstance(index, slice) else value
        lengths = {k: len(v) for k, v in self.columns[source].items()}
        if len(set(lengths.values())) > 1:
            self.problems.append(f"{name}: after {kind}, column lengths {lengths}")

    def assert_matches(self, doc: Document) -> None:
        """No problem on the way, and the page's columns are the server's."""
        assert self.problems == []
        for model in doc.models:
            if isinstance(model, ColumnDataSource) and model.id in self.columns:
                page = self.columns[model.id]
                assert sorted(page) == sorted(model.data), model.name
                for k, values in model.data.items():
                    np.testing.assert_array_equal(
                        np.asarray(page[k]), np.asarray(values), err_msg=f"{model.name}.{k}"
                    )


def _page(api: SyntheticApi, peer: str, since: int) -> Page:
    return Page.from_json(api.transactions(peer, since), api.peer_info(peer))


def _live(api: SyntheticApi) -> tuple[LiveApp, Document, Recorder]:
    doc = Document()
    app = LiveApp(doc, VizSettings(peers=["http://peer"]))
    app._set_entries([Entry(label=name, url="http://peer", peer=name) for name in api.peers()])
    return app, doc, Recorder(doc)


def test_live_updates_are_streams_and_the_cone_is_a_faint_overlay() -> None:
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
    # above CONE_AUTO_LIMIT transactions the reference cone starts switched off: nothing of it is sent
    assert not app.view.cone_on
    assert not app.controls.cone.active
    assert len(app.view.cone.data["y"]) == 0
    legend = app.view.legend.text  # beside the figure, listing every author and the encodings
    for label in ("peer-000", "peer-004", "reference model", "past cone of click", "band per author"):
        assert label in legend
    app.controls.cone.active = True
    cone = app.view.graph.past_cone(app.view.reference)
    assert sorted(app.view.cone.data["y"]) == sorted(app.view.graph.nodes[i].lane for i in cone)
    assert app.view.cone_renderer.glyph.fill_color is None  # an outline only
    for _ in range(3):
        api.grow(5)
        app._apply(app.generation, _page(api, "peer-000", len(app.view.graph)), 1.0)
        sent = recorder.take()
        assert sent[("ColumnsStreamedEvent", "nodes")] == 1
        assert sent[("ColumnsStreamedEvent", "edges")] == 1
        assert not any(kind == "ColumnDataChangedEvent" and name in ("nodes", "edges") for kind, name in sent)
        assert not any(kind == "ColumnsPatchedEvent" for kind, _name in sent)
    assert app.view.legend.text is legend  # no new author: the legend is not sent again
    assert len(app.view.nodes.data["name"]) == 316 == api.transactions("peer-000", 0).count
    cone = app.view.graph.past_cone(app.view.reference)
    assert len(app.view.cone.data["y"]) == len(cone)  # the cone follows the moving reference
    assert set(app.view.nodes.data["color"]) <= set(style.AUTHOR_PALETTE) | {style.GENESIS_COLOR}
    assert app.view.header.text.count('data-count="316"') == 1


def test_the_legend_lists_a_new_author_escaped_and_a_report_offers_no_click() -> None:
    nodes = tangle_nodes(30, peers=3)
    view = TangleView()
    view.graph.add_many(nodes)
    view.show_until(len(view.graph))
    before = view.legend.text
    assert "peer-002" in before
    assert "<b>" not in before
    hostile = nodes[-1].model_copy(update={"name": "new", "peer": "<b>eve</b>", "parents": [nodes[-1].name]})
    view.graph.add_many([hostile])
    view.show_until(len(view.graph))
    assert "&lt;b&gt;eve&lt;/b&gt;" in view.legend.text
    assert "<b>eve" not in view.legend.text
    assert "past cone of click" not in TangleView(interactive=False).legend.text


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
    assert app.view.graph.nodes[0].name == other.transactions(None, 0).genesis


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
    renderer = app.view.node_renderer
    for glyph in (renderer.glyph, renderer.selection_glyph, renderer.nonselection_glyph):
        assert glyph.fill_color.field == "accuracy"  # a selection must not freeze the author colours
    assert app.view.color_bar.visible
    # auto-ranged to the data (not 0-1) and labelled so
    mapper = app.view.colorings["accuracy"].mapper
    accuracies = [n.accuracy for n in app.view.graph.nodes if n.accuracy is not None]
    assert min(accuracies) <= mapper.low < mapper.high <= max(accuracies)
    assert "accuracy" in app.view.color_bar.title
    assert "auto-ranged" in app.view.color_bar.title
    app.controls.color_mode.active = 2
    assert renderer.glyph.fill_color.field == "loss"
    assert "loss" in app.view.color_bar.title
    app.controls.color_mode.active = 3  # cumulative weight: computed now, sent as one patch
    weights = app.view.graph.cumulative_weights()
    assert list(app.view.nodes.data["weight"]) == weights
    assert weights[0] == len(app.view.graph)  # everything approves the genesis
    assert renderer.nonselection_glyph.fill_color.field == "weight"


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
    assert len(shown) == len(run.tangle.nodes)
    app.slider.value = 3
    assert len(app.view.nodes.data["name"]) == run.prefix(3)
    assert list(app.panel.source.data["round"]) == [1, 2, 3]
    recorder.take()
    app.slider.value = 5  # forward: a stream
    sent = recorder.take()
    assert sent[("ColumnsStreamedEvent", "nodes")] == 1
    assert len(app.view.nodes.data["name"]) == run.prefix(5)
    assert len(app.view.references.data["y"]) == 0  # the reference is known for the last round only
    app.slider.value = app.rounds
    assert len(app.view.references.data["y"]) == 2


def _steered_page(api: SteeredApi, peer: str, since: int) -> Page:
    return Page.from_json(api.transactions(peer, since), api.peer_info(peer))


def test_the_page_copy_stays_consistent_through_cone_swings_restarts_and_peer_switches() -> None:
    """Interleaved updates: a poll that streams new rows and restyles most old ones, answers that arrive
    after a peer switch, a peer that starts over, clicks and x-mode switches between polls."""
    api = SteeredApi(LabLikeTangle(peers=4, seed=5), ["peer-000", "peer-001"])
    genesis = api.transactions(None, 0).genesis
    app, doc, _recorder = _live(api)
    mirror = PageMirror(doc)
    app._apply(app.generation, _steered_page(api, "peer-000", 0), 1.0)  # the genesis alone, as a lab starts
    for swing in range(8):
        # in one answer: a round of new transactions and the cone of every row, or of the genesis only
        api.grow(4, reference=None if swing % 2 == 0 else [genesis])
        in_flight = _steered_page(api, "peer-000", len(app.view.graph))
        app._apply(app.generation, in_flight, 1.0)
        if swing == 3:
            app.view.nodes.selected.indices = [len(app.view.graph) // 2]
            app.controls.x_mode.active = 1
        mirror.assert_matches(doc)
    # a poll for peer-000 is in flight when the user picks peer-001: its answer lands after the switch
    old_generation = app.generation
    api.grow(4, reference=[genesis])
    stale = _steered_page(api, "peer-000", len(app.view.graph))
    app.controls.peer.value = "peer-001"
    app._apply(old_generation, stale, 1.0)
    mirror.assert_matches(doc)
    assert len(app.view.nodes.data["name"]) == 0
    app._apply(app.generation, _steered_page(api, "peer-001", 0), 1.0)
    for swing in range(4):
        api.grow(4, reference=None if swing % 2 else [genesis])
        app._apply(app.generation, _steered_page(api, "peer-001", len(app.view.graph)), 1.0)
        mirror.assert_matches(doc)
    assert len(mirror.columns[app.view.nodes.id]["name"]) == len(api.builder.tangle)
    # the peer started over (another genesis): a redraw, then the new tangle
    other = SteeredApi(LabLikeTangle(peers=4, seed=6), ["peer-000", "peer-001"])
    other.grow(12)
    app._apply(app.generation, _steered_page(other, "peer-001", len(app.view.graph)), 1.0)
    app._apply(app.generation, _steered_page(other, "peer-001", 0), 1.0)
    other.grow(4, reference=[other.transactions(None, 0).genesis])
    app._apply(app.generation, _steered_page(other, "peer-001", len(app.view.graph)), 1.0)
    mirror.assert_matches(doc)
    assert len(mirror.columns[app.view.nodes.id]["name"]) == len(other.builder.tangle)


def test_view_updates_stay_consistent_under_a_document_hold() -> None:
    """Held events are serialized at `unhold`, after every later change: each event must carry its own
    values (a column replacement read at `unhold` would already hold the rows streamed after it)."""
    api = SteeredApi(LabLikeTangle(peers=4, seed=7))
    doc = Document()
    view = TangleView()
    doc.add_root(view.figure)
    mirror = PageMirror(doc)
    genesis = api.transactions(None, 0).genesis
    api.reference = [genesis]
    for swing in range(6):
        page = _steered_page(api, "peer-000", len(view.graph))
        doc.hold("combine")
        view.graph.add_many(page.nodes)
        view.set_reference(page.reference)
        view.show_until(len(view.graph))
        view.set_tips(page.tips)
        doc.unhold()
        mirror.assert_matches(doc)
        api.grow(4, reference=None if swing % 2 == 0 else [genesis])


def test_a_large_tangle_is_bands_plus_the_newest_and_a_zoom_expands() -> None:
    from visualizer.view import DETAIL_KEEP, DETAIL_MAX

    api = SyntheticApi(LabLikeTangle(peers=10, seed=9))
    api.grow(3_000)
    app, _doc, recorder = _live(api)
    app._apply(app.generation, _page(api, "peer-000", 0), 1.0)
    view = app.view
    assert len(view.nodes.data["name"]) == DETAIL_KEEP
    assert view.detail_start == 3_001 - DETAIL_KEEP
    bands = view.bands.data
    assert sum(c for c, t in zip(bands["count"], bands["total"], strict=True)) == view.detail_start
    assert len(set(bands["author"])) == 11  # ten peers and the genesis: the overview keeps author colours
    assert app.controls.follow.active
    recorder.take()
    for _ in range(DETAIL_MAX - DETAIL_KEEP):  # one round at a time: streams, then one slide
        api.grow(1)
        app._apply(app.generation, _page(api, "peer-000", len(view.graph)), 1.0)
    assert len(view.nodes.data["name"]) == DETAIL_MAX
    api.grow(1)
    app._apply(app.generation, _page(api, "peer-000", len(view.graph)), 1.0)
    assert len(view.nodes.data["name"]) == DETAIL_KEEP  # slid forward in one step
    # following: the x range ends at the newest transaction
    assert view.figure.x_range.end >= view.graph.depth
    # a narrow view over the bands draws their transactions; a wide one drops them again
    old = view.graph.nodes[500]
    assert view.expand(old.height - 10, old.height + 10)
    assert old.name in view.xnodes.data["name"]
    assert view.xnode_renderer.visible
    assert view.expand(0, view.graph.depth)
    assert len(view.xnodes.data["name"]) == 0
    # jump by a part of an id
    app.controls.jump.value = old.name[-10:]
    assert view.selected == old.index
    assert old.name in app.controls.selection.text
    assert not app.controls.follow.active
