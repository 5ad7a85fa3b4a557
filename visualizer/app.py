"""The Bokeh documents: live (peers over HTTP), replay (one lab output folder) and compare (several folders).
One per browser session. Everything the page shows that comes from elsewhere (peer names, authors, ids, error
messages, settings) is escaped before it goes into HTML."""

from __future__ import annotations

import asyncio
import html
import math
import time
from functools import partial
from typing import Any

from bokeh.document import Document, without_document_lock
from bokeh.events import RangesUpdate
from bokeh.layouts import column, row
from bokeh.models import Button, Div, RadioButtonGroup, Select, Slider, TextInput, Toggle

from peer.api.schema import LabHistory, LabPeerInfo
from visualizer.config import VizSettings
from visualizer.graph import TangleGraph
from visualizer.runview import RunPanel, compare_layout
from visualizer.sources import ApiSource, Entry, LabRun, Page, SourceError, load_lab_run
from visualizer.view import COLOR_MODES, LOGICAL, WALL, TangleView, Timing, stats_text

PAGE_CSS = """<style>
.tangle-header { font-size: 14px; padding: 2px 4px; }
.selection-caption { font-size: 13px; min-height: 18px; }
</style>"""
CLICK_HINT = "click a transaction to see its past and future cones, or jump to one by its id"


def build_document(doc: Document, settings: VizSettings) -> None:
    if len(settings.lab) > 1:
        CompareApp(doc, [load_lab_run(folder) for folder in settings.lab])
    elif settings.lab:
        ReplayApp(doc, load_lab_run(settings.lab[0]))
    else:
        LiveApp(doc, settings)


def html_text(text: str) -> str:
    return html.escape(text, quote=True)


class _Controls:
    """The widgets both tangle apps share, laid out around the view and the run panel."""

    def __init__(self, doc: Document, view: TangleView, run: RunPanel, *extra: Any, follow: bool) -> None:
        self.view = view
        self.peer = Select(title="peer", options=[], name="peer_select", width=240)
        self.x_mode = RadioButtonGroup(labels=["logical time", "wall clock"], active=0, name="x_mode")
        self.color_mode = RadioButtonGroup(
            labels=["author", "accuracy", "loss", "cum. weight"], active=0, name="color_mode"
        )
        self.cone = Toggle(label="reference cone", active=view.cone_on, width=130, name="cone_toggle")
        self.follow = Toggle(label="follow newest", active=follow, width=120, name="follow")
        self.show_all = Button(label="show all", width=80, name="show_all")
        self.jump = TextInput(placeholder="jump to transaction id", width=220, name="jump")
        self.status = Div(name="status", text="")
        self.selection = Div(name="selection", text=CLICK_HINT, css_classes=["selection-caption"])
        self.stats = Div(name="stats", text="{}", visible=False)  # timings, for the benchmark
        self.x_mode.on_change("active", lambda _a, _o, new: self._x_mode(new))
        self.color_mode.on_change("active", lambda _a, _o, new: view.set_color_mode(COLOR_MODES[new]))
        self.cone.on_change("active", lambda _a, _o, new: view.set_cone(bool(new)))
        self.follow.on_change("active", lambda _a, _o, new: view.follow() if new else None)
        self.show_all.on_click(self._show_all)
        self.jump.on_change("value", lambda _a, _o, new: self._jump(new))
        for source in (view.nodes, view.xnodes):
            source.selected.on_change("indices", partial(self._on_tap, source))
        view.figure.on_event(RangesUpdate, self._on_ranges)
        bar = row(
            self.peer,
            *extra,
            column(Div(text="x axis"), self.x_mode),
            column(Div(text="colour"), self.color_mode),
            column(Div(text="&nbsp;"), row(self.cone, self.follow, self.show_all)),
            column(Div(text="&nbsp;"), self.jump),
        )
        # Separate roots, in page order: BokehJS lays a root out again whenever a Div in it changes its
        # text, repainting every plot in it; the header changes with every update, the figure should not.
        for root in (
            column(
                Div(text=PAGE_CSS + "<h3 style='margin:4px 0'>Learning Tangle</h3>"),
                bar,
                self.status,
                self.selection,
                run.header,
                sizing_mode="stretch_width",
            ),
            column(view.header, sizing_mode="stretch_width"),
            view.figure,
            run.layout,
            column(self.stats),
        ):
            doc.add_root(root)
        doc.title = "Learning Tangle"

    def after_update(self) -> None:
        """New transactions drawn: keep the newest in view while following, refresh the overlays."""
        view = self.view
        view.refresh()
        view.update_color_range()
        if self.follow.active:
            view.follow()
        if self.cone.active != view.cone_on:
            self.cone.active = view.cone_on  # the automatic choice flips once the tangle grows large

    def _x_mode(self, active: int) -> None:
        self.follow.active = False
        self.view.set_x_mode(LOGICAL if active == 0 else WALL)

    def _show_all(self) -> None:
        self.follow.active = False
        self.view.show_all()

    def _on_ranges(self, event: RangesUpdate) -> None:
        """The user panned or zoomed: stop following, and draw the banded transactions a narrow view shows."""
        if self.follow.active:
            self.follow.active = False
        if event.x0 is not None and event.x1 is not None:
            self.view.expand(float(event.x0), float(event.x1))

    def _jump(self, query: str) -> None:
        if not query.strip():
            return
        index = self.view.find(query)
        if index is None:
            self.selection.text = (
                f"no transaction (or more than one) matches <b>{html_text(query.strip())}</b>"
            )
            return
        self.follow.active = False
        self.view.focus(index)
        rows = [i for i, value in enumerate(self.view.nodes.data["index"]) if value == index]
        source = self.view.nodes
        if not rows:
            source = self.view.xnodes
            rows = [i for i, value in enumerate(source.data["index"]) if value == index]
        if rows:
            source.selected.indices = rows  # highlights it; the tap handler shows its cones
        else:
            self._describe(index)

    def _on_tap(self, source: Any, _attr: str, _old: list[int], new: list[int]) -> None:
        rows = source.data["index"]
        index = int(rows[new[-1]]) if new and new[-1] < len(rows) else None
        if index is None:
            if source is self.view.nodes and self.view.selected is not None:
                self.view.select(None)
                self.selection.text = CLICK_HINT
            return
        self._describe(index)

    def _describe(self, index: int) -> None:
        past, future = self.view.select(index)
        if self.view.selected is None:
            self.selection.text = CLICK_HINT
            return
        node = self.view.graph.nodes[index]
        self.selection.text = (
            f"<b>{html_text(node.name)}</b> by {html_text(node.author)}, height {node.height}: approves "
            f"{past} transactions (past cone), approved by {future} (future cone)"
        )


class LiveApp:
    """Polls the selected peer for what is new and streams it; looks for peers again every few seconds.
    A lab's live API also serves its history (`/api/lab`), drawn by the run panel by lab round."""

    def __init__(self, doc: Document, settings: VizSettings) -> None:
        self.doc = doc
        self.settings = settings
        self.source = ApiSource(
            settings.peer_urls, dns=settings.dns, dns_port=settings.dns_port, timeout=settings.timeout
        )
        self.view = TangleView(webgl=settings.webgl)
        self.run = RunPanel()
        self.run.layout.visible = False  # until a lab answers /api/lab
        self.controls = _Controls(doc, self.view, self.run, follow=True)
        self.entries: dict[str, Entry] = {}
        self.entry: Entry | None = None
        self.generation = 0  # bumped on a peer switch: a poll answer for the previous peer is dropped
        self.busy = False
        self.history_round: int | None = None
        self.closed = False  # the session ended: a poll in flight must not touch the document
        self.controls.peer.on_change("value", self._on_peer)
        self.view.set_header("", 0, 0, None, "looking for peers…")
        doc.add_next_tick_callback(self._discover)
        doc.add_periodic_callback(self._poll, round(settings.poll_interval * 1000))
        doc.add_periodic_callback(self._discover, round(settings.dns_interval * 1000))
        doc.on_session_destroyed(self._on_closed)

    # --- peers -------------------------------------------------------------------------------------------
    @without_document_lock
    async def _discover(self) -> None:
        try:
            entries = await self.source.entries()
        except SourceError as error:
            self._next_tick(partial(self._show_status, str(error)))
            return
        self._next_tick(partial(self._set_entries, entries))

    def _next_tick(self, callback: Any) -> None:
        if not self.closed:
            self.doc.add_next_tick_callback(callback)

    def _set_entries(self, entries: list[Entry]) -> None:
        if not entries:
            self._show_status("no peers found yet")
            return
        self.entries = {e.label: e for e in entries}
        labels = list(self.entries)
        if self.controls.peer.options != labels:
            self.controls.peer.options = labels
        if self.controls.peer.value not in self.entries:
            wanted = self._requested_peer()
            self.controls.peer.value = wanted if wanted in self.entries else labels[0]

    def _requested_peer(self) -> str | None:
        """`?peer=NAME` in the page's URL picks the first peer shown."""
        context = self.doc.session_context
        if context is None or context.request is None:
            return None
        values = context.request.arguments.get("peer") or []
        return values[0].decode() if values else None

    def _on_peer(self, _attr: str, _old: str, new: str) -> None:
        self.entry = self.entries.get(new)
        self.generation += 1
        self.busy = False
        self.view.reset()
        self.controls.selection.text = CLICK_HINT
        self.view.set_header(new, 0, 0, None, "loading…")
        self.doc.add_next_tick_callback(self._poll)

    # --- polling -----------------------------------------------------------------------------------------
    @without_document_lock
    async def _poll(self) -> None:
        entry = self.entry
        if entry is None or self.busy:
            return
        self.busy = True
        generation, since = self.generation, len(self.view.graph)
        started = time.perf_counter()
        try:
            page = await self.source.fetch(entry, since)
        except SourceError as error:
            self._next_tick(partial(self._failed, generation, str(error)))
            return
        fetch_ms = (time.perf_counter() - started) * 1000
        history = None
        lab_round = page.info.round if isinstance(page.info, LabPeerInfo) else None
        if lab_round is not None and lab_round != self.history_round:
            history = await self.source.lab_history(entry)  # the run's history: on open, then each round
        self._next_tick(partial(self._apply, generation, page, fetch_ms, history))

    def _failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self.busy = False
            self._show_status(message)
            if not len(self.view.graph):  # never "loading…" forever: say what went wrong
                label = self.controls.peer.value or ""
                self.view.set_header(label, 0, 0, None, "no answer from this peer (see the message above)")

    def _apply(self, generation: int, page: Page, fetch_ms: float, history: LabHistory | None = None) -> None:
        if generation != self.generation:
            return
        self.busy = False
        if history is not None:
            self.history_round = history.round
            self.run.update(history)
            self.run.layout.visible = True
        # All of one poll's changes happen here, under the document lock; each is serialized into its
        # message as it is made, and the messages are written together when this callback returns.
        added, timing = self._update(page)
        if added:
            self.controls.stats.text = stats_text(
                {
                    "nodes": len(self.view.graph),
                    "added": added,
                    "fetch_ms": round(fetch_ms, 2),
                    "build_ms": round(timing.build_ms, 2),
                    "push_ms": round(timing.push_ms, 2),
                    "server_ms": round(fetch_ms + timing.build_ms + timing.push_ms, 2),
                }
            )

    def _update(self, page: Page) -> tuple[int, Timing]:
        graph, view = self.view.graph, self.view
        restarted = page.count < len(graph) or (len(graph) and graph.nodes[0].name != page.genesis)
        if restarted or page.since != len(graph):
            view.reset()  # the peer started over (or answered for another cursor): fetch all again
            self.doc.add_next_tick_callback(self._poll)
            return 0, Timing()
        timing = Timing()
        started = time.perf_counter()
        added = graph.add_many(page.nodes)
        timing.build_ms += (time.perf_counter() - started) * 1000
        view.set_reference(page.reference, timing)
        view.show_until(len(graph), timing)
        view.set_tips(page.tips)
        if added:
            self.controls.after_update()
        accuracy = self._reference_accuracy(page)
        view.set_header(page.peer or self.controls.peer.value, len(page.tips), page.depth, accuracy)
        if self.controls.status.text:
            self.controls.status.text = ""
        return len(added), timing

    def _reference_accuracy(self, page: Page) -> float | None:
        """The peer's own figure if it has one, else the mean self-reported accuracy of the reference."""
        reported = page.info.reference_accuracy if page.info is not None else None
        if reported is not None and math.isfinite(reported):
            return reported
        graph = self.view.graph
        values = [a for i in graph.indices(page.reference) if (a := graph.nodes[i].accuracy) is not None]
        return sum(values) / len(values) if values else None

    def _show_status(self, message: str) -> None:
        self.controls.status.text = f"<span style='color:#b00020'>{html_text(message)}</span>"

    def _on_closed(self, _context: Any) -> None:
        self.closed = True
        asyncio.get_running_loop().create_task(self.source.aclose())


class ReplayApp:
    """A finished (or interrupted) lab run with a slider over rounds: forward streams, back redraws."""

    def __init__(self, doc: Document, run: LabRun) -> None:
        self.doc = doc
        self.run = run
        self.view = TangleView()
        graph = TangleGraph()
        graph.add_many(run.tangle.nodes)
        self.view.reset(graph)
        self.rounds = run.rounds
        self.history = run.history()
        self.panel = RunPanel(filename=f"{run.name}-metrics.csv")
        self.slider = Slider(
            start=0, end=max(1, self.rounds), value=self.rounds, step=1, title="round", name="round_slider"
        )
        self.play = Toggle(label="▶ play", width=80, name="play")
        self.controls = _Controls(doc, self.view, self.panel, self.slider, self.play, follow=False)
        self.peer_name = run.tangle.peer or "lab"
        self.controls.peer.options = [self.peer_name]
        self.controls.peer.value = self.peer_name
        self.slider.on_change("value", lambda _a, _o, new: self.show_round(int(new)))
        self.play.on_change("active", self._on_play)
        self.player: Any = None
        self.show_round(self.rounds)
        self.view.show_all()

    def show_round(self, round_index: int) -> None:
        view = self.view
        count = self.run.prefix(round_index)
        # tangle.json holds the reporting peer's reference at the end of the run only
        view.set_reference(self.run.tangle.reference if round_index >= self.rounds else [])
        view.show_until(count)
        shown = view.graph.nodes[:count]
        has_child = {p for n in shown for p in n.parents}
        view.set_tip_indices([n.index for n in shown if n.index not in has_child])
        self.controls.after_update()
        self.panel.update(self.history, complete=self.run.complete, until=round_index)
        metrics = [m for m in self.run.metrics if (m.get("round") or 0) <= round_index]
        accuracy = metrics[-1].get("tangle_accuracy") if metrics else None
        depth = max((n.height for n in shown), default=0)
        view.set_header(
            f"tangle as {self.peer_name} holds it",
            len(view.tips.data["y"]),
            depth,
            accuracy,
            f"round {round_index} of {self.rounds}",
            accuracy_label="mean reference accuracy of the honest peers",
        )

    def _on_play(self, _attr: str, _old: bool, active: bool) -> None:
        if active:
            if self.slider.value >= self.rounds:
                self.slider.value = 0
            self.player = self.doc.add_periodic_callback(self._step, 400)
        elif self.player is not None:
            self.doc.remove_periodic_callback(self.player)
            self.player = None

    def _step(self) -> None:
        if self.slider.value >= self.rounds:
            self.play.active = False
            return
        self.slider.value = self.slider.value + 1


class CompareApp:
    """Several lab runs: their curves on one chart each, the settings that differ, the final metrics."""

    def __init__(self, doc: Document, runs: list[LabRun]) -> None:
        labels = run_labels(runs)
        doc.add_root(
            column(
                Div(
                    text=PAGE_CSS
                    + f"<h3 style='margin:4px 0'>Learning Tangle: {len(runs)} runs compared</h3>"
                ),
                compare_layout(
                    [(label, r.history(), r.complete) for label, r in zip(labels, runs, strict=True)]
                ),
                sizing_mode="stretch_width",
            )
        )
        doc.title = "Learning Tangle: runs compared"


def run_labels(runs: list[LabRun]) -> list[str]:
    """Folder names; with the parent folder too where two runs share a name."""
    names = [r.name for r in runs]
    if len(set(names)) == len(names):
        return names
    return [f"{r.folder.resolve().parent.name}/{r.name}" for r in runs]
