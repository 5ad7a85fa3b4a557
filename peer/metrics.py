"""Prometheus metrics of learning peers: one module for the daemon (one peer) and the lab (many peers).

Every peer metric carries a `peer` label, so one registry can hold one peer (the daemon's `/metrics`) or
all the peers of a lab worker process. Names follow Prometheus conventions: base units (seconds, bytes,
ratios in [0, 1], never percent), `_total` on counters, and bounded label values only (peer names, a fixed
list of reasons, IPFS operations and error kinds).

Two kinds of sources feed a registry:

- instruments (counters, gauges, histograms) updated where things happen: training, publishing,
  insertion, IPFS requests;
- a collector that reads, at scrape time, what the peer already keeps: the tangle's size, the builder's
  counters, the weights cache's counters. Nothing is counted twice, and those objects stay free of metrics.

Lab peers live in worker processes. A worker hands `snapshot(registry)` (plain picklable metric families)
to the runner after each round; the runner's `SnapshotCollector` serves the latest snapshot of every worker
as one exposition. Series never collide because every worker holds different peers.

The names and units are documented in docs/metrics.md (a test keeps that table in step with this module).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

import peer as peer_package
from peer.ipfs.errors import (
    IpfsApiError,
    IpfsConnectionError,
    IpfsTimeout,
    IpfsTooLarge,
    IpfsVerificationError,
)
from peer.learning.weights_source import WeightsUnavailable
from peer.tangle.tip_selection import NoUsableTips

PREFIX = "learning_tangle_"

# Training a small numpy model on digits takes milliseconds, the LEAF CNN about 7 s per epoch, a Pi several
# times that; the buckets span 5 ms to 30 min so both the lab and a Pi cluster land inside them.
TRAINING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800)
# time between two trainings: the lab's rounds (seconds) up to TRAINING_INTERVAL ticks on a cluster (minutes)
INTERVAL_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)
# tip selection and consensus are walks over a bounded window: milliseconds, seconds on a Pi
SELECTION_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# IPFS RPC: a local block is milliseconds; the 2020 prototype saw averages grow to 3.7 s
IPFS_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
# first approval of a transaction: one lab round (seconds) to many training intervals (an hour)
CONFIRMATION_BUCKETS = (0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)

# Rejection reasons the intake (peer/node/builder.py, peer/tangle/transaction.py) reports. They are
# exposed at 0 from the start so that rate() sees the first rejection; a reason missing here is still
# exported when it happens (tests/test_metrics.py checks this list against the source).
REJECT_REASONS = (
    "announcement_too_large",
    "author_mismatch",
    "bad_announcement",
    "bad_author",
    "bad_cid",
    "bad_codec",
    "bad_encoding",
    "bad_metrics",
    "bad_schema",
    "bad_signature",
    "bad_tag",
    "bad_time",
    "bad_version",
    "duplicate_parents",
    "foreign_genesis",
    "hash_mismatch",
    "rate_limited",
    "self_parent",
    "sender_busy",
    "too_deep",
    "too_large",
    "too_many_parents",
    "unknown_model",
    "unsupported_hash",
)
# why a training round failed, by exception class (anything else is "error")
TRAINING_FAILURES: dict[type[BaseException], str] = {
    WeightsUnavailable: "weights_unavailable",
    NoUsableTips: "no_usable_tips",
    TimeoutError: "timeout",
}
TRAINING_FAILURE_REASONS = (*sorted(set(TRAINING_FAILURES.values())), "error")

# kubo RPC commands a peer uses (label `operation`); any other command is counted as "other"
IPFS_OPERATIONS = (
    "add",
    "cat",
    "block/get",
    "block/put",
    "dag/put",
    "pin/add",
    "pin/rm",
    "files/stat",
    "pubsub/pub",
    "pubsub/sub",
    "repo/stat",
    "other",
)
# operations a peer makes in every experiment: exposed at 0 from the start (see PeerMetrics.peer)
IPFS_CORE_OPERATIONS = ("add", "cat", "block/get", "dag/put", "pin/add", "pin/rm", "pubsub/pub", "pubsub/sub")
# IPFS error kinds (label `error`), by exception class: peer/ipfs/errors.py
IPFS_ERRORS: dict[type[BaseException], str] = {
    IpfsTimeout: "timeout",
    TimeoutError: "timeout",
    IpfsConnectionError: "connection",
    IpfsApiError: "api",
    IpfsTooLarge: "too_large",
    IpfsVerificationError: "verification",
}
# a transaction never approved stops being tracked for confirmation latency after this many newer ones
MAX_UNCONFIRMED = 10_000


def _kind(error: BaseException, kinds: Mapping[type[BaseException], str], default: str) -> str:
    """A bounded label value for an exception: that of the first class in its MRO that `kinds` holds."""
    for cls in type(error).__mro__:
        if cls in kinds:
            return kinds[cls]
    return default


class WatchedPeer(Protocol):
    """What the scrape-time collector reads from a peer (peer.node.peer.Peer has all of it)."""

    author: str
    tangle: Any  # peer.tangle.dag.Tangle
    builder: Any  # peer.node.builder.TangleBuilder: received, rejected, unresolved
    weights: Any  # peer.learning.weights_source.WeightsSource: hits, misses, fetched_bytes
    settings: Any  # peer.config.LearningSettings


class PeerMetrics:
    """The metric families of the peers on one registry; `peer(name)` gives one peer's instruments."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        r, p = self.registry, PREFIX
        peer = ["peer"]
        self.transactions_received = Counter(
            f"{p}transactions_received_total",
            "Transactions from other peers inserted into this peer's tangle (announced ones and the "
            "ancestors fetched with them).",
            peer,
            registry=r,
        )
        self.transactions_published = Counter(
            f"{p}transactions_published_total", "Transactions this peer published.", peer, registry=r
        )
        self.trainings = Counter(
            f"{p}trainings_total", "Training rounds started (failed ones included).", peer, registry=r
        )
        self.training_failures = Counter(
            f"{p}training_failures_total",
            "Training rounds that raised, by reason.",
            ["peer", "reason"],
            registry=r,
        )
        self.publish_skipped = Counter(
            f"{p}publish_skipped_total",
            "Trained models not published because they did not beat the publish rule's bar.",
            peer,
            registry=r,
        )
        self.weights_published_bytes = Counter(
            f"{p}weights_published_bytes_total",
            "Bytes of encoded weights this peer stored for its own transactions.",
            peer,
            registry=r,
        )
        self.ipfs_errors = Counter(
            f"{p}ipfs_request_errors_total",
            "IPFS RPC requests that failed, by operation and error kind.",
            ["peer", "operation", "error"],
            registry=r,
        )
        self.pubsub_reconnects = Counter(
            f"{p}pubsub_reconnects_total",
            "Times the PubSub subscription was lost and opened again.",
            peer,
            registry=r,
        )
        self.training_duration = Histogram(
            f"{p}training_duration_seconds",
            "Duration of a successful training round: reference, tip selection, training, evaluation "
            "(publishing excluded: see the IPFS request durations).",
            peer,
            buckets=TRAINING_BUCKETS,
            registry=r,
        )
        self.training_interval = Histogram(
            f"{p}training_interval_seconds",
            "Time between the starts of two consecutive training rounds of a peer.",
            peer,
            buckets=INTERVAL_BUCKETS,
            registry=r,
        )
        self.tip_selection_duration = Histogram(
            f"{p}tip_selection_duration_seconds",
            "Duration of one tip selection (all walks of it).",
            peer,
            buckets=SELECTION_BUCKETS,
            registry=r,
        )
        self.consensus_duration = Histogram(
            f"{p}consensus_duration_seconds",
            "Duration of choosing the reference (consensus) transactions: tip samplings and scoring.",
            peer,
            buckets=SELECTION_BUCKETS,
            registry=r,
        )
        self.confirmation_latency = Histogram(
            f"{p}confirmation_latency_seconds",
            "Time from a transaction's arrival in this peer's tangle (or its publication) to the "
            "arrival of its first approver.",
            peer,
            buckets=CONFIRMATION_BUCKETS,
            registry=r,
        )
        self.ipfs_duration = Histogram(
            f"{p}ipfs_request_duration_seconds",
            "Duration of IPFS RPC requests, failed ones included, by operation.",
            ["peer", "operation"],
            buckets=IPFS_BUCKETS,
            registry=r,
        )
        self.reference_accuracy = Gauge(
            f"{p}reference_accuracy_ratio",
            "Accuracy (0-1) of the peer's current reference model on its local test set.",
            peer,
            registry=r,
        )
        self.reference_loss = Gauge(
            f"{p}reference_loss",
            "Cross-entropy loss (nats per sample) of the reference model on the local test set.",
            peer,
            registry=r,
        )
        self.new_model_accuracy = Gauge(
            f"{p}new_model_accuracy_ratio",
            "Accuracy (0-1) of the model trained in the peer's last training round, on its local test set.",
            peer,
            registry=r,
        )
        self.new_model_loss = Gauge(
            f"{p}new_model_loss",
            "Cross-entropy loss (nats per sample) of the last trained model on the local test set.",
            peer,
            registry=r,
        )
        self.test_threes = Gauge(
            f"{p}test_threes",
            "Samples of class 3 in the peer's local test set (denominator of the 3-as-8 misclassification).",
            peer,
            registry=r,
        )
        self.reference_threes_as_eight = Gauge(
            f"{p}reference_threes_as_eight",
            "Local test samples of class 3 that the reference model predicts as 8 (label-flip success).",
            peer,
            registry=r,
        )
        self.pinned_bytes = Gauge(
            f"{p}pinned_bytes",
            "Bytes of transactions and weights this peer keeps pinned (its recent window).",
            peer,
            registry=r,
        )
        self.malicious = Gauge(
            f"{p}peer_malicious",
            "1 if this peer runs a poisoning behaviour in this experiment, else 0.",
            peer,
            registry=r,
        )
        self.build_info = Gauge(
            f"{p}build_info",
            "Always 1; labels name the peer software version and the model architecture.",
            ["peer", "version", "model"],
            registry=r,
        )
        self._state = _StateCollector()
        r.register(self._state)

    def peer(self, name: str) -> PeerInstruments:
        return PeerInstruments(self, name)


class PeerInstruments:
    """One peer's view of the families: what the peer code calls when something happens."""

    def __init__(self, families: PeerMetrics, name: str) -> None:
        self.families = families
        self.name = name
        f = families
        self.received = f.transactions_received.labels(name)
        self.published_count = f.transactions_published.labels(name)
        self.trainings = f.trainings.labels(name)
        self.skipped = f.publish_skipped.labels(name)
        self.published_bytes = f.weights_published_bytes.labels(name)
        self.reconnects = f.pubsub_reconnects.labels(name)
        self.training_duration = f.training_duration.labels(name)
        self.training_interval = f.training_interval.labels(name)
        self.tip_selection_duration = f.tip_selection_duration.labels(name)
        self.consensus_duration = f.consensus_duration.labels(name)
        self.confirmation_latency = f.confirmation_latency.labels(name)
        self.reference_accuracy = f.reference_accuracy.labels(name)
        self.reference_loss = f.reference_loss.labels(name)
        self.new_model_accuracy = f.new_model_accuracy.labels(name)
        self.new_model_loss = f.new_model_loss.labels(name)
        self.test_threes = f.test_threes.labels(name)
        self.threes_as_eight = f.reference_threes_as_eight.labels(name)
        self.pinned_bytes = f.pinned_bytes.labels(name)
        # series that rate() and error ratios need before the first event: exposed at 0 from the start
        for reason in TRAINING_FAILURE_REASONS:
            f.training_failures.labels(name, reason)
        for operation in IPFS_CORE_OPERATIONS:
            f.ipfs_duration.labels(name, operation)
        self._last_training: float | None = None
        self._unconfirmed: dict[str, float] = {}
        self._lock = threading.Lock()

    @classmethod
    def detached(cls, name: str = "detached") -> PeerInstruments:
        """Instruments on a private registry nobody scrapes: for a peer or learner made without metrics."""
        return PeerMetrics(CollectorRegistry()).peer(name)

    # --- identity and scrape-time state ----------------------------------------------------------------
    def attach(self, peer: WatchedPeer, *, model: str, malicious: bool = False) -> None:
        """Identify the peer and read its tangle, intake and cache counters at every scrape."""
        self.families.build_info.labels(self.name, peer_package.__version__, model).set(1)
        self.families.malicious.labels(self.name).set(1 if malicious else 0)
        self.families._state.watch(self.name, peer)

    # --- training --------------------------------------------------------------------------------------
    @contextmanager
    def training_round(self) -> Iterator[None]:
        """Around one training round: counts it, times it, and counts a failure by reason if it raises."""
        now = time.monotonic()
        if self._last_training is not None:
            self.training_interval.observe(now - self._last_training)
        self._last_training = now
        self.trainings.inc()
        started = time.perf_counter()
        try:
            yield
        except Exception as error:
            reason = _kind(error, TRAINING_FAILURES, "error")
            self.families.training_failures.labels(self.name, reason).inc()
            raise
        self.training_duration.observe(time.perf_counter() - started)

    def trained(self, outcome: Any) -> None:
        """After a training round (a peer.learning.learner.RoundOutcome)."""
        self.observe_reference(outcome.reference)
        if outcome.metrics is not None:
            self.new_model_accuracy.set(outcome.metrics.accuracy)
            self.new_model_loss.set(outcome.metrics.loss)
        if not outcome.publish:
            self.skipped.inc()

    def observe_reference(self, reference: Any) -> None:
        """The peer's current reference model (a peer.learning.learner.Reference)."""
        self.reference_accuracy.set(reference.metrics.accuracy)
        self.reference_loss.set(reference.metrics.loss)
        self.test_threes.set(reference.threes)
        self.threes_as_eight.set(reference.threes_as_eight)

    # --- the tangle ------------------------------------------------------------------------------------
    def published(self, tx: Any, weights_bytes: int) -> None:
        """This peer published `tx` (a Transaction) with `weights_bytes` of encoded weights."""
        self.published_count.inc()
        self.published_bytes.inc(weights_bytes)
        self._arrived(tx)

    def inserted(self, tx: Any) -> None:
        """The intake inserted a transaction from another peer (TangleBuilder's on_insert)."""
        self.received.inc()
        self._arrived(tx)

    def _arrived(self, tx: Any) -> None:
        now = time.monotonic()
        with self._lock:
            for parent in tx.parents:
                since = self._unconfirmed.pop(parent, None)
                if since is not None:
                    self.confirmation_latency.observe(now - since)
            self._unconfirmed[tx.id] = now
            while len(self._unconfirmed) > MAX_UNCONFIRMED:  # bounded: the oldest never-approved go first
                del self._unconfirmed[next(iter(self._unconfirmed))]

    # --- IPFS (observed by the IPFS backend) -----------------------------------------------------------
    @contextmanager
    def ipfs_request(self, operation: str) -> Iterator[None]:
        """Around one kubo RPC request: its duration, and its failure by error kind.

        For a streaming request (pubsub/sub) wrap only the opening of the stream, not its whole life.
        """
        operation = operation if operation in IPFS_OPERATIONS else "other"
        started = time.perf_counter()
        try:
            yield
        except Exception as error:  # a cancelled request (BaseException) is not an IPFS error
            self.families.ipfs_errors.labels(self.name, operation, _kind(error, IPFS_ERRORS, "other")).inc()
            raise
        finally:
            self.families.ipfs_duration.labels(self.name, operation).observe(time.perf_counter() - started)

    def pubsub_reconnected(self) -> None:
        self.reconnects.inc()

    def set_pinned_bytes(self, nbytes: int) -> None:
        self.pinned_bytes.set(nbytes)


class _StateCollector(Collector):
    """Reads what the peers keep anyway, at scrape time (the lab: between rounds, on the worker's thread)."""

    def __init__(self) -> None:
        self._peers: dict[str, WatchedPeer] = {}
        self._lock = threading.Lock()

    def watch(self, name: str, peer: WatchedPeer) -> None:
        with self._lock:
            self._peers[name] = peer

    def describe(self) -> Iterable[Metric]:
        return []  # the families depend on the peers watched; nothing to check at registration

    def collect(self) -> Iterable[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        p = PREFIX
        announcements = CounterMetricFamily(
            f"{p}announcements_received",
            "PubSub announcements handed to this peer's intake (its own included).",
            labels=["peer"],
        )
        rejected = CounterMetricFamily(
            f"{p}transactions_rejected",
            "Announcements or transactions the intake rejected, by reason.",
            labels=["peer", "reason"],
        )
        unresolved = CounterMetricFamily(
            f"{p}transactions_unresolved",
            "Announced transactions dropped because they or an ancestor could not be fetched.",
            labels=["peer"],
        )
        hits = CounterMetricFamily(
            f"{p}weights_cache_hits", "Weights served from the peer's LRU cache.", labels=["peer"]
        )
        misses = CounterMetricFamily(
            f"{p}weights_cache_misses",
            "Weights not in the cache (fetched, or known to be unusable).",
            labels=["peer"],
        )
        fetched = CounterMetricFamily(
            f"{p}weights_fetched_bytes", "Bytes of weights fetched from storage.", labels=["peer"]
        )
        size = GaugeMetricFamily(
            f"{p}transactions", "Transactions in this peer's tangle, genesis included.", labels=["peer"]
        )
        tips = GaugeMetricFamily(
            f"{p}tips", "Tips (transactions nobody approves yet) in this peer's tangle.", labels=["peer"]
        )
        depth = GaugeMetricFamily(
            f"{p}depth", "Height of the highest tip above genesis (longest path).", labels=["peer"]
        )
        window = GaugeMetricFamily(
            f"{p}window_transactions",
            "Transactions inside the walk window (the whole tangle when walks start at genesis).",
            labels=["peer"],
        )
        with self._lock:
            peers = list(self._peers.items())
        for name, peer in peers:
            builder, weights, tangle = peer.builder, peer.weights, peer.tangle
            announcements.add_metric([name], builder.received)
            reasons = dict.fromkeys(REJECT_REASONS, 0) | dict(builder.rejected)
            for reason, count in sorted(reasons.items()):
                rejected.add_metric([name, reason], count)
            unresolved.add_metric([name], builder.unresolved)
            hits.add_metric([name], weights.hits)
            misses.add_metric([name], weights.misses)
            fetched.add_metric([name], weights.fetched_bytes)
            size.add_metric([name], len(tangle))
            tips.add_metric([name], len(tangle.tips))
            depth.add_metric([name], tangle.max_height)
            window_depth = peer.settings.walk_config().window_depth
            in_window = len(tangle) if window_depth is None else len(tangle.window(window_depth))
            window.add_metric([name], in_window)
        yield from (announcements, rejected, unresolved, hits, misses, fetched, size, tips, depth, window)


# --- the lab: several processes, one exposition ----------------------------------------------------------
def snapshot(registry: CollectorRegistry) -> list[Metric]:
    """The registry's families as plain data (picklable: they cross the lab's process pipes)."""
    families = []
    for family in registry.collect():
        copy = Metric(family.name, family.documentation, family.type)
        # `_created` series double the series count and Prometheus does not use them in the text format
        copy.samples = [s for s in family.samples if not s.name.endswith("_created")]
        families.append(copy)
    return families


class SnapshotCollector(Collector):
    """Serves the latest snapshot of each source (a lab worker) as one exposition.

    Families of the same name from several sources are merged into one, since an exposition must name
    each family once; their series differ by the `peer` label.
    """

    def __init__(self) -> None:
        self._snapshots: dict[Any, list[Metric]] = {}
        self._lock = threading.Lock()

    def update(self, source: Any, families: list[Metric]) -> None:
        with self._lock:
            self._snapshots[source] = families

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        with self._lock:
            snapshots = list(self._snapshots.values())
        merged: dict[str, Metric] = {}
        for families in snapshots:
            for family in families:
                target = merged.get(family.name)
                if target is None:
                    target = merged[family.name] = Metric(family.name, family.documentation, family.type)
                target.samples.extend(family.samples)
        return list(merged.values())


class LabMetrics:
    """The runner's registry: every worker's peers, plus the lab's own progress and baseline."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.workers = SnapshotCollector()
        self.registry.register(self.workers)
        self.round = Gauge(
            f"{PREFIX}lab_round",
            "Last completed round of the running lab experiment.",
            registry=self.registry,
        )
        self.fedavg_accuracy = Gauge(
            f"{PREFIX}lab_fedavg_accuracy_ratio",
            "Accuracy (0-1) of the lab's FedAvg baseline over the honest peers' test sets.",
            registry=self.registry,
        )
        self.fedavg_loss = Gauge(
            f"{PREFIX}lab_fedavg_loss",
            "Cross-entropy loss (nats per sample) of the lab's FedAvg baseline over the honest peers.",
            registry=self.registry,
        )

    def update(self, snapshots: list[list[Metric]], record: Any | None = None) -> None:
        """After a round: each worker's snapshot, and the round's record (peer.lab.runner.RoundRecord)."""
        for index, families in enumerate(snapshots):
            self.workers.update(index, families)
        if record is None:
            return
        self.round.set(record.round)
        if record.fedavg_accuracy is not None:
            self.fedavg_accuracy.set(record.fedavg_accuracy)
            self.fedavg_loss.set(record.fedavg_loss)


def metrics_app(registry: CollectorRegistry) -> Any:
    """A Starlette app serving only `/metrics` (the lab's --metrics-port when it differs from --api-port)."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def metrics(_request: Request) -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return Starlette(routes=[Route("/metrics", metrics)])
