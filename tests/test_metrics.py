"""Peer metrics: correct values after real lab rounds, Prometheus naming, the lab's merged /metrics, docs."""

from __future__ import annotations

import asyncio
import pickle
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import peer as peer_package
from peer.config import LabSettings
from peer.lab.runner import RUNTIME_ONLY, run_lab
from peer.lab.worker import LabWorker, author_name
from peer.learning.weights_source import WeightsUnavailable
from peer.metrics import (
    CONFIRMATION_BUCKETS,
    INTERVAL_BUCKETS,
    IPFS_ERRORS,
    REJECT_REASONS,
    TRAINING_BUCKETS,
    LabMetrics,
    PeerInstruments,
    PeerMetrics,
    SnapshotCollector,
    snapshot,
)

ROOT = Path(__file__).resolve().parents[1]
LABELS = {"peer", "reason", "operation", "error", "version", "model"}  # every label name, all bounded


def _samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Parsed from the text exposition, as Prometheus would read it."""
    text = generate_latest(registry).decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples: dict, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _settings(**overrides: object) -> LabSettings:
    values = {
        "peers": 3,
        "rounds": 3,
        "model": "softmax",
        "baseline": "none",
        "progress": False,
        "workers": 1,
        "num_of_sampling_round": 5,
        "poison": "labelflip",
        "malicious_fraction": 0.34,
    }
    return LabSettings(**(values | overrides))


@pytest.fixture(scope="module")
def lab_rounds() -> Iterator[tuple[LabWorker, dict[int, dict[str, Any]]]]:
    """Three peers (the last one label-flipping) after three synchronous rounds in one worker, with the
    lab's last evaluation of each."""
    # per-peer intake metrics are kept when the lab serves metrics (--metrics-port; the worker binds nothing)
    worker = LabWorker(_settings(metrics_port=65535), [0, 1, 2])
    evaluation: dict[int, dict[str, Any]] = {}
    for round_index in (1, 2, 3):
        _results, blocks, announcements = worker.train(round_index, [0, 1, 2])
        worker.deliver(blocks, announcements)
        evaluation = worker.evaluate(round_index)
    yield worker, evaluation
    worker.close()


@pytest.fixture(scope="module")
def lab_worker(lab_rounds: tuple[LabWorker, dict]) -> LabWorker:
    return lab_rounds[0]


def test_metrics_match_the_peers_state_after_lab_rounds(lab_rounds: tuple[LabWorker, dict]) -> None:
    lab_worker, evaluations = lab_rounds
    samples = _samples(lab_worker.metrics.registry)
    for index, peer in lab_worker.peers.items():
        name = author_name(index)
        evaluation = evaluations[index]

        def value(metric: str, _name: str = name, **labels: str) -> float:
            return _value(samples, f"learning_tangle_{metric}", peer=_name, **labels)

        published = len(peer.published)
        assert value("trainings_total") == 3
        assert value("transactions_published_total") == published
        assert value("publish_skipped_total") == 3 - published
        # everything in the tangle but genesis and its own came in through the intake
        assert value("transactions_received_total") == len(peer.tangle) - 1 - published
        assert value("announcements_received_total") == peer.builder.received
        assert value("transactions_rejected_total", reason="bad_cid") == 0
        assert value("transactions_unresolved_total") == 0
        assert value("transactions") == len(peer.tangle)
        assert value("tips") == len(peer.tangle.tips)
        assert value("depth") == peer.tangle.max_height > 0
        assert value("window_transactions") == len(peer.tangle)  # at most 3 heights: all in the window
        assert value("weights_cache_hits_total") == peer.weights.hits > 0
        assert value("weights_cache_misses_total") == peer.weights.misses
        assert value("weights_fetched_bytes_total") == peer.weights.fetched_bytes
        weights = asyncio.run(_sizes(peer))
        assert value("weights_published_bytes_total") == sum(weights) > 0
        # the reference the lab evaluated last, as fractions
        assert value("reference_accuracy_ratio") == evaluation.accuracy
        assert 0 <= value("reference_accuracy_ratio") <= 1
        assert value("reference_loss") == evaluation.loss
        assert value("test_threes") == evaluation.confusion[3].sum()
        assert value("reference_threes_as_eight") == evaluation.confusion[3, 8]
        assert 0 <= value("new_model_accuracy_ratio") <= 1
        assert value("training_duration_seconds_count") == 3
        assert value("training_interval_seconds_count") == 2
        assert value("tip_selection_duration_seconds_count") == 3
        assert value("consensus_duration_seconds_count") == 6  # a reference per training and per evaluation
        assert value("confirmation_latency_seconds_count") > 0
        assert value("peer_malicious") == (1 if index == 2 else 0)
        assert value("pubsub_reconnects_total") == 0
        assert value("ipfs_request_duration_seconds_count", operation="block/get") == 0
        version, model = peer_package.__version__, lab_worker.model.architecture
        assert value("build_info", version=version, model=model) == 1


async def _sizes(peer) -> list[int]:  # type: ignore[no-untyped-def]
    return [len(await peer.storage.get_weights(tx.weights, max_bytes=1 << 30)) for tx in peer.published]


def test_names_units_and_labels_follow_prometheus_conventions(lab_worker: LabWorker) -> None:
    families = [*lab_worker.metrics.registry.collect(), *LabMetrics().registry.collect()]
    assert len({f.name for f in families}) == len(families)
    for family in families:
        name = family.name
        assert name.startswith("learning_tangle_"), name
        assert family.documentation.strip(), f"{name} has no help text"
        assert not re.search(r"percent|millis|_ms\b|kilo|mega", name), name
        if family.type == "histogram":
            assert name.endswith(("_seconds", "_bytes")), name
        if name.endswith(("_accuracy", "_share")):
            raise AssertionError(f"{name}: fractions are named _ratio")
        for sample in family.samples:
            assert set(sample.labels) <= LABELS | {"le"}, sample
            if family.type == "counter" and not sample.name.endswith("_created"):
                assert sample.name.endswith("_total"), sample.name


def test_histogram_buckets_span_milliseconds_to_minutes() -> None:
    for buckets in (TRAINING_BUCKETS, INTERVAL_BUCKETS, CONFIRMATION_BUCKETS):
        assert buckets[0] <= 1
        assert buckets[-1] >= 1800
        assert list(buckets) == sorted(buckets)
    assert TRAINING_BUCKETS[0] <= 0.01  # a small numpy model trains in milliseconds


def test_a_failed_training_is_counted_by_bounded_reason() -> None:
    instruments = PeerInstruments.detached("p")
    for error in (WeightsUnavailable("w", "gone"), TimeoutError(), KeyError("x")):
        with pytest.raises(type(error)), instruments.training_round():
            raise error
    with instruments.training_round():
        pass
    samples = _samples(instruments.families.registry)
    assert _value(samples, "learning_tangle_trainings_total", peer="p") == 4
    for reason, count in [("weights_unavailable", 1), ("timeout", 1), ("error", 1), ("no_usable_tips", 0)]:
        assert _value(samples, "learning_tangle_training_failures_total", peer="p", reason=reason) == count
    assert _value(samples, "learning_tangle_training_duration_seconds_count", peer="p") == 1
    assert _value(samples, "learning_tangle_training_interval_seconds_count", peer="p") == 3


def test_ipfs_requests_are_timed_and_failures_counted_by_operation_and_kind() -> None:
    from peer.ipfs.errors import IpfsTimeout

    instruments = PeerInstruments.detached("p")
    with instruments.ipfs_request("block/get"):
        pass
    with pytest.raises(IpfsTimeout), instruments.ipfs_request("block/get"):
        raise IpfsTimeout("no answer")
    with pytest.raises(LookupError), instruments.ipfs_request("name/publish"):  # not a peer operation
        raise LookupError
    instruments.pubsub_reconnected()
    instruments.set_pinned_bytes(1234)
    samples = _samples(instruments.families.registry)
    count = "learning_tangle_ipfs_request_duration_seconds_count"
    errors = "learning_tangle_ipfs_request_errors_total"
    assert _value(samples, count, peer="p", operation="block/get") == 2
    assert _value(samples, count, peer="p", operation="other") == 1
    assert _value(samples, errors, peer="p", operation="block/get", error="timeout") == 1
    assert _value(samples, errors, peer="p", operation="other", error="other") == 1
    assert _value(samples, "learning_tangle_pubsub_reconnects_total", peer="p") == 1
    assert _value(samples, "learning_tangle_pinned_bytes", peer="p") == 1234


def test_every_ipfs_client_error_has_an_error_kind() -> None:
    from peer.ipfs import errors

    classes = [c for c in vars(errors).values() if isinstance(c, type) and issubclass(c, errors.IpfsError)]
    for cls in classes:
        if cls is not errors.IpfsError:
            assert cls in IPFS_ERRORS, f"{cls.__name__} would be counted as error=other"


def test_every_rejection_reason_in_the_source_is_known() -> None:
    """A reason added to the intake should also be pre-declared (and documented in docs/metrics.md)."""
    pattern = re.compile(r'(?:InvalidTransaction\(|_reject\()\s*"(\w+)"')
    found = {m for path in (ROOT / "peer").rglob("*.py") for m in pattern.findall(path.read_text())}
    assert found, "the pattern no longer finds the intake's reasons"
    assert found <= set(REJECT_REASONS), found - set(REJECT_REASONS)


def test_snapshots_cross_processes_and_merge_into_one_exposition() -> None:
    collector = SnapshotCollector()
    for source, peers in enumerate([["a", "b"], ["c"]]):
        metrics = PeerMetrics()
        for name in peers:
            instruments = metrics.peer(name)
            instruments.published(SimpleNamespace(id=f"tx-{name}", parents=()), 100)
            instruments.training_duration.observe(0.2)
        # through pickle, as over the lab's pipes
        collector.update(source, pickle.loads(pickle.dumps(snapshot(metrics.registry))))
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    assert "_created" not in text
    helps = re.findall(r"^# HELP (\S+)", text, re.M)
    assert len(helps) == len(set(helps)), "a family was named twice"
    samples = _samples(registry)
    for name in "abc":
        assert _value(samples, "learning_tangle_transactions_published_total", peer=name) == 1
        assert _value(samples, "learning_tangle_training_duration_seconds_count", peer=name) == 1


def test_confirmation_latency_is_observed_once_per_first_approval() -> None:
    instruments = PeerInstruments.detached("p")
    instruments.published(SimpleNamespace(id="a", parents=("genesis",)), 10)
    instruments.inserted(SimpleNamespace(id="b", parents=("a",)))
    instruments.inserted(SimpleNamespace(id="c", parents=("a", "b")))  # a was confirmed already
    samples = _samples(instruments.families.registry)
    assert _value(samples, "learning_tangle_confirmation_latency_seconds_count", peer="p") == 2
    assert _value(samples, "learning_tangle_transactions_received_total", peer="p") == 2


@pytest.mark.timeout(120)
@pytest.mark.parametrize("shared", [True, False], ids=["metrics-on-api-port", "separate-ports"])
def test_lab_serves_every_peer_at_metrics_while_it_runs(tmp_path: Path, shared: bool) -> None:
    api_port = _free_port()
    metrics_port = api_port if shared else _free_port()
    # two worker processes when the ports differ: the runner merges their snapshots
    settings = _settings(
        rounds=2,
        workers=1 if shared else 2,
        out=tmp_path,
        api_port=api_port,
        metrics_port=metrics_port,
        baseline="fedavg",
    )
    seen: list[dict] = []

    def on_round(record) -> None:  # type: ignore[no-untyped-def]
        text = httpx.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        api = httpx.get(f"http://127.0.0.1:{api_port}/metrics", timeout=5)
        seen.append({"round": record.round, "text": text, "api": api.status_code})

    result = run_lab(settings, on_round=on_round)
    assert [s["round"] for s in seen] == [1, 2]
    assert seen[-1]["api"] == (200 if shared else 404)
    families = {f.name: f for f in text_string_to_metric_families(seen[-1]["text"])}
    peers = {s.labels["peer"] for s in families["learning_tangle_build_info"].samples}
    assert peers == {author_name(i) for i in range(3)}
    assert families["learning_tangle_lab_round"].samples[0].value == 2
    fedavg = families["learning_tangle_lab_fedavg_accuracy_ratio"].samples[0].value
    assert fedavg == pytest.approx(result.rounds[-1].fedavg_accuracy)
    trainings = {s.labels["peer"]: s.value for s in families["learning_tangle_trainings"].samples}
    assert trainings == {author_name(i): 2 for i in range(3)}
    assert "metrics_port" in RUNTIME_ONLY
    assert "metrics_port" not in result.summary()["config"]


def test_docs_table_names_every_metric_with_its_type(lab_worker: LabWorker) -> None:
    families = [*lab_worker.metrics.registry.collect(), *LabMetrics().registry.collect()]
    exposed = {(f.name + "_total" if f.type == "counter" else f.name): f.type for f in families}
    rows = re.findall(
        r"^\| `(learning_tangle_\w+)` \| (\w+) \|", (ROOT / "docs/metrics.md").read_text(), re.M
    )
    documented = dict(rows)
    assert len(rows) == len(documented), "a metric is listed twice"
    assert documented == exposed
