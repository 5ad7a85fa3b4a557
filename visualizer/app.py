"""The Bokeh documents: live (peers over HTTP) and replay (a lab output folder). One per browser session."""

from __future__ import annotations

import asyncio
import math
import time
from functools import partial
from typing import Any

from bokeh.document import Document, without_document_lock
from bokeh.layouts import column, row
from bokeh.models import Div, RadioButtonGroup, Select, Slider, Toggle

from visualizer.config import VizSettings
from visualizer.graph import TangleGraph
from visualizer.sources import ApiSource, Entry, LabRun, Page, SourceError, load_lab_run
from visualizer.view import LOGICAL, WALL, TangleView, Timing, stats_text

PAGE_CSS = """<style>
.tangle-header { font-size: 14px; padding: 2px 4px; }
</style>"""


def build_document(doc: Document, settings: VizSettings) -> None:
    if settings.lab is not None:
        ReplayApp(doc, load_lab_run(settings.lab))
    else:
        LiveApp(doc, settings)


class _Controls:
    """The widgets both apps share, laid out around the view."""

    def __init__(self, doc: Document, view: TangleView, *extra: Any) -> None:
        self.view = view
        self.peer = Select(title="peer", options=[], name="peer_select", width=280)
        self.x_mode = RadioButtonGroup(labels=["logical time", "wall clock"], active=0, name="x_mode")
        self.color_mode = RadioButtonGroup(labels=["colour: author", "colour: accuracy"], active=0)
        self.status = Div(name="status", text="")
        self.selection = Div(name="selection", text="click a transaction to see its past and future cones")
        self.stats = Div(name="stats", text="{}", visible=False)  # timings, for the benchmark
        self.x_mode.on_change("active", lambda _a, _o, new: view.set_x_mode(LOGICAL if new == 0 else WALL))
        self.color_mode.on_change(
            "active", lambda _a, _o, new: view.set_color_mode("author" if new == 0 else "accuracy")
        )
        view.nodes.selected.on_change("indices", self._on_tap)
        bar = row(
            self.peer,
            *extra,
            column(Div(text="x axis"), self.x_mode),
            column(Div(text="&nbsp;"), self.color_mode),
        )
        doc.add_root(
            column(
                Div(text=PAGE_CSS + "<h3 style='margin:4px 0'>Learning Tangle</h3>"),
                bar,
                self.status,
                view.header,
                view.figure,
                view.strip,
                self.selection,
                self.stats,
                sizing_mode="stretch_width",
            )
        )
        doc.title = "Learning Tangle"

    def _on_tap(self, _attr: str, _old: list[int], new: list[int]) -> None:
        index = new[-1] if new else None
        past, future = self.view.select(index)
        if index is None or index >= self.view.shown:
            self.selection.text = "click a transaction to see its past and future cones"
            return
        node = self.view.graph.nodes[index]
        self.selection.text = (
            f"<b>{node.name}</b> by {node.author}, height {node.height}: approves {past} transactions "
            f"(past cone), approved by {future} (future cone)"
        )


class LiveApp:
    """Polls the selected peer for what is new and streams it; looks for peers again every few seconds."""

    def __init__(self, doc: Document, settings: VizSettings) -> None:
        self.doc = doc
        self.settings = settings
        self.source = ApiSource(
            settings.peer_urls, dns=settings.dns, dns_port=settings.dns_port, timeout=settings.timeout
        )
        self.view = TangleView(webgl=settings.webgl)
        self.controls = _Controls(doc, self.view)
        self.entries: dict[str, Entry] = {}
        self.entry: Entry | None = None
        self.generation = 0  # bumped on a peer switch: a poll answer for the previous peer is dropped
        self.busy = False
        self.started = time.monotonic()
        self.last_sample: tuple[Any, ...] | None = None
        self.controls.peer.on_change("value", self._on_peer)
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
            self.doc.add_next_tick_callback(partial(self._show_status, str(error)))
            return
        self.doc.add_next_tick_callback(partial(self._set_entries, entries))

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
        self.last_sample = None
        self.started = time.monotonic()
        self.view.reset()
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
            self.doc.add_next_tick_callback(partial(self._failed, generation, str(error)))
            return
        fetch_ms = (time.perf_counter() - started) * 1000
        self.doc.add_next_tick_callback(partial(self._apply, generation, page, fetch_ms))

    def _failed(self, generation: int, message: str) -> None:
        if generation == self.generation:
            self.busy = False
            self._show_status(message)

    def _apply(self, generation: int, page: Page, fetch_ms: float) -> None:
        if generation != self.generation:
            return
        self.busy = False
        # All of one poll's changes happen here, under the document lock; each is serialized into its
        # message as it is made, and the messages are written together when this callback returns. No
        # `doc.hold`: it would not merge them into one message (Bokeh sends one per event anyway), only
        # serialize them at `unhold`, after later changes to the same sources.
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
        accuracy = self._reference_accuracy(page)
        view.set_header(page.peer or self.controls.peer.value, len(page.tips), page.depth, accuracy)
        sample = (len(graph), len(page.tips), page.depth, accuracy)
        if sample != self.last_sample:
            self.last_sample = sample
            view.add_sample(
                {
                    "t": time.monotonic() - self.started,
                    "size": len(graph),
                    "tips": len(page.tips),
                    "depth": page.depth,
                    "accuracy": accuracy,
                }
            )
        if self.controls.status.text:
            self.controls.status.text = ""
        return len(added), timing

    def _reference_accuracy(self, page: Page) -> float | None:
        """The peer's own figure if it has one, else the mean self-reported accuracy of the reference."""
        reported = page.info.get("referenceAccuracy")
        if isinstance(reported, int | float) and math.isfinite(reported):
            return float(reported)
        graph = self.view.graph
        values = [a for i in graph.indices(page.reference) if (a := graph.nodes[i].accuracy) is not None]
        return sum(values) / len(values) if values else None

    def _show_status(self, message: str) -> None:
        self.controls.status.text = f"<span style='color:#b00020'>{message}</span>"

    def _on_closed(self, _context: Any) -> None:
        asyncio.get_running_loop().create_task(self.source.aclose())


class ReplayApp:
    """A finished lab run with a slider over rounds: moving forward streams, moving back redraws."""

    def __init__(self, doc: Document, run: LabRun) -> None:
        self.doc = doc
        self.run = run
        self.view = TangleView(summary_x="round")
        graph = TangleGraph()
        graph.add_many(run.tangle["nodes"])
        self.view.reset(graph)
        self.rounds = run.rounds
        self.slider = Slider(
            start=0, end=max(1, self.rounds), value=self.rounds, step=1, title="round", name="round_slider"
        )
        self.play = Toggle(label="▶ play", width=80, name="play")
        self.controls = _Controls(doc, self.view, self.slider, self.play)
        peer = str(run.tangle.get("peer", "lab"))
        self.controls.peer.options = [peer]
        self.controls.peer.value = peer
        self.samples = run.samples()
        self.slider.on_change("value", lambda _a, _o, new: self.show_round(int(new)))
        self.play.on_change("active", self._on_play)
        self.player: Any = None
        self.show_round(self.rounds)

    def show_round(self, round_index: int) -> None:
        view = self.view
        count = self.run.prefix(round_index)
        # tangle.json holds the reporting peer's reference at the end of the run only
        view.set_reference(self.run.tangle.get("reference", []) if round_index >= self.rounds else [])
        view.show_until(count)
        shown = view.graph.nodes[:count]
        has_child = {p for n in shown for p in n.parents}
        view.set_tip_indices([n.index for n in shown if n.index not in has_child])
        samples = [s for s in self.samples if (s["t"] or 0) <= round_index]
        view.set_samples(samples)
        accuracy = samples[-1]["accuracy"] if samples else None
        depth = max((n.height for n in shown), default=0)
        view.set_header(
            str(self.run.tangle.get("peer", "lab")),
            len(view.tips.data["y"]),
            depth,
            accuracy,
            f"round {round_index} of {self.rounds}",
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
