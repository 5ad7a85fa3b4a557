"""`tangle lab`: a whole decentralized-learning experiment on one machine, FedAvg beside it.

Peers are spread over worker processes (both cores by default); the runner drives synchronous rounds,
carries every round's blocks and announcements to every worker, trains the baseline meanwhile, and
writes the results folder.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from peer.api.app import BackgroundServer, create_app
from peer.api.schema import TransactionsDocument
from peer.config import LabSettings
from peer.data import Dataset, load_dataset, peer_data, split_indices
from peer.lab.fedavg import FedAvg
from peer.lab.live import LabApiSource
from peer.lab.results import Announced, Evaluation, PeerEvaluation, TrainResult
from peer.lab.worker import LabWorker, author_name, serve
from peer.learning import poisoning
from peer.learning.genesis import genesis_weights
from peer.metrics import LabMetrics, metrics_app
from peer.models import Model
from peer.node.peer import make_genesis

BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
ACTIVITY = 3  # purpose index of the random stream that picks active peers
# settings that change how a run is watched, not what it computes: kept out of summary.json
RUNTIME_ONLY = {
    "progress",
    "workers",
    "out",
    "api_port",
    "api_host",
    "round_delay",
    "linger",
    "metrics_port",
    "ipfs_apis",
}


class LabError(RuntimeError):
    """The lab cannot go on: a worker failed or died. The message is one line for the command line."""


class WorkerHandle:
    """The same calls on a LabWorker in this process or in a child process."""

    def __init__(self, settings: LabSettings, peers: list[int], *, in_process: bool) -> None:
        self.peers = peers
        self._local: LabWorker | None = None
        if in_process:
            try:
                self._local = LabWorker(settings, peers)
            except Exception as error:  # the same one line as from a worker process
                raise LabError(f"lab worker failed: {type(error).__name__}: {error}") from error
            return
        # numpy is imported before any code of the child runs, so the thread limit must be in the environment
        # the child inherits: the peers' matrices are small, and BLAS threads in every worker only fight over
        # the cores (measured: two workers ran at half the speed of one without this)
        for variable in BLAS_THREADS:
            os.environ.setdefault(variable, "1")
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(
            target=serve, args=(child, settings.model_dump_json(), peers), daemon=True
        )
        # Ctrl-C goes to the whole process group: the workers ignore it (inherited through exec), so the
        # runner can still export the tangle and write what the interrupted lab has
        with _sigint_ignored():
            self._process.start()
        # the child holds its own copy: with the parent's closed, a dead child is an EOF here, not a hang
        child.close()
        self._pending = True
        self._expect()

    def start(self, method: str, *args: Any) -> None:
        if self._local is not None:
            self._result = getattr(self._local, method)(*args)
            return
        try:
            self._conn.send((method, args))
        except OSError:  # the worker is gone (its end of the pipe closed)
            raise self._died() from None
        self._pending = True

    def settle(self, timeout: float = 60.0) -> None:
        """After an interruption: take the answer of a call still in flight, so the next call gets its own.
        The abandoned call's outcome is dropped, an error too: what matters now is what the next call says."""
        if self._local is None and self._pending and self._conn.poll(timeout):
            with contextlib.suppress(LabError):
                self._expect()

    def result(self) -> Any:
        if self._local is not None:
            return self._result
        return self._expect()

    def call(self, method: str, *args: Any) -> Any:
        self.start(method, *args)
        return self.result()

    def close(self) -> None:
        if self._local is not None:
            self._local.close()
            return
        try:
            if self._process.is_alive():
                self.settle(timeout=10)  # an answer still in flight is not the answer to "close"
                self.call("close")
        except (LabError, OSError):
            pass  # already reported by the call that met it; the process is ended below
        finally:
            self._conn.close()
            self._process.join(timeout=10)
            if self._process.is_alive():
                self._process.kill()

    def _expect(self) -> Any:
        try:
            status, value = self._conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        self._pending = False
        if status == "error":
            raise LabError(f"lab worker failed: {value}")
        return value

    def _died(self) -> LabError:
        self._process.join(timeout=5)
        return LabError(f"a lab worker died (exit code {self._process.exitcode})")


@dataclass
class RoundRecord:
    round: int
    active: int
    published: int
    transactions: int
    tips: int
    tangle_accuracy: float
    tangle_loss: float
    tangle_misclassification_3_as_8: float
    fedavg_accuracy: float | None = None
    fedavg_loss: float | None = None
    fedavg_misclassification_3_as_8: float | None = None


@dataclass
class PeerRound:
    """One peer's reference model at the end of a round (the run view's band of every peer)."""

    round: int
    peer: str
    malicious: bool
    accuracy: float
    loss: float
    misclassification_3_as_8: float | None


@dataclass
class LabResult:
    settings: LabSettings
    rounds: list[RoundRecord]
    tangle: TransactionsDocument  # the reporting peer's /api/transactions document
    malicious: list[int]
    seconds: float
    trainings: int
    rejected: dict[str, int] = field(default_factory=dict)
    backend: dict[str, Any] = field(default_factory=dict)  # over IPFS: nodes, peers per node, tangle.car
    # the last round's evaluations (honest peers' test sets): the tangle's reference models and FedAvg's
    tangle_evaluation: Evaluation | None = None
    fedavg_evaluation: Evaluation | None = None
    peer_rounds: list[PeerRound] = field(default_factory=list)
    complete: bool = True  # False: interrupted (Ctrl-C) after len(rounds) rounds

    def summary(self) -> dict[str, Any]:
        """Deterministic for a given configuration: no wall-clock values in here."""
        out: dict[str, Any] = {
            "complete": self.complete,
            "rounds_completed": len(self.rounds),
            "config": self.settings.model_dump(mode="json", exclude=RUNTIME_ONLY),
            "malicious_peers": [author_name(i) for i in self.malicious],
        }
        if not self.rounds:  # interrupted before the first round ended
            return out
        last = self.rounds[-1]
        watched = self.settings.watched
        tangle = self.tangle_evaluation.report(watched) if self.tangle_evaluation else {}
        out |= {
            "tangle": {
                "accuracy": last.tangle_accuracy,
                "loss": last.tangle_loss,
                "misclassification_3_as_8": last.tangle_misclassification_3_as_8,
                **{k: v for k, v in tangle.items() if k in ("watch", "recall", "confusion")},
                "transactions": last.transactions,
                "tips": last.tips,
                "published": sum(r.published for r in self.rounds),
                "trainings": self.trainings,
            },
        }
        if self.backend:
            out["ipfs"] = self.backend
            # which IPFS node ran the experiment, beside the flags that defined it
            out["config"]["ipfs"] = {
                k: self.backend[k] for k in ("implementation", "version") if k in self.backend
            }
        if self.fedavg_evaluation is not None:
            out["fedavg"] = self.fedavg_evaluation.report(watched)
        return out


class LabInterrupted(Exception):
    """Ctrl-C (or SIGTERM) during the rounds or the linger; `result` holds the rounds completed by then."""

    def __init__(self, result: LabResult, *, lingering: bool) -> None:
        super().__init__(f"interrupted after {len(result.rounds)} rounds")
        self.result = result
        self.lingering = lingering


def run_lab(
    settings: LabSettings,
    *,
    on_round: Callable[[RoundRecord], None] | None = None,
    on_finished: Callable[[LabResult], None] | None = None,
) -> LabResult:
    """Run the experiment; with `backend == "ipfs"` over a local kubo testnet started and stopped here.

    `on_finished` gets the result when the last round ends (or the run is interrupted), before `--linger`:
    that is where the outputs are written, so a finished experiment is never lost. An interruption raises
    LabInterrupted after `on_finished` has run."""
    if settings.backend == "memory":
        return _run(settings, on_round, on_finished)
    from peer.lab.ipfs import ipfs_testnet

    def restored(result: LabResult) -> None:
        result.settings = settings
        if on_finished is not None:
            on_finished(result)

    with ipfs_testnet(settings) as (net_settings, finish):
        result = _run(net_settings, on_round, restored, finish)
    return result


def _run(
    settings: LabSettings,
    on_round: Callable[[RoundRecord], None] | None,
    on_finished: Callable[[LabResult], None] | None = None,
    finish: Callable[[TransactionsDocument], dict[str, Any]] | None = None,
) -> LabResult:
    started = time.perf_counter()
    workers = min(settings.workers, settings.peers)
    assignment = [list(range(w, settings.peers, workers)) for w in range(workers)]
    # the runner's own copy of the data and model, for the baseline and the live API (workers load their own);
    # made before the workers start, so a bad model file fails here, in one line
    dataset = load_dataset(settings.dataset, settings.dataset_path)
    model = settings.create_model(dataset.input_shape, dataset.num_classes)
    handles = _start_workers(settings, assignment)
    malicious = settings.malicious_peers
    honest = [i for i in range(settings.peers) if i not in set(malicious)]
    fedavg = _baseline(settings, dataset, model)
    records: list[RoundRecord] = []
    peer_rounds: list[PeerRound] = []
    evaluations: dict[int, PeerEvaluation] = {}
    interrupted = False
    trainings = 0
    tangle_evaluation: Evaluation | None = None
    fedavg_evaluation: Evaluation | None = None
    lab_metrics = LabMetrics() if settings.metrics_port is not None else None
    live, server = _live_api(settings, model, lab_metrics)
    metrics_server = _metrics_server(settings, lab_metrics)
    try:
        if lab_metrics is not None:  # the peers are scrapeable (at zero) before the first round ends
            lab_metrics.update([handle.call("metrics_snapshot") for handle in handles])
        try:
            for round_index in range(1, settings.rounds + 1):
                active = _active_peers(settings, round_index)
                trainings += len(active)
                for handle in handles:
                    handle.start("train", round_index, [i for i in active if i in handle.peers])
                if fedavg is not None:
                    fedavg.round(round_index, active)  # overlaps with the workers' training
                results: list[TrainResult] = []
                blocks: dict[str, bytes] = {}
                announcements: list[Announced] = []
                for handle in handles:
                    worker_results, worker_blocks, worker_announcements = handle.result()
                    results.extend(worker_results)
                    blocks.update(worker_blocks)
                    announcements.extend(worker_announcements)
                # peer order, not worker order: the same run whatever the number of workers
                order = {author_name(i): i for i in range(settings.peers)}
                announcements.sort(key=lambda a: order.get(a[1], -1))
                for handle in handles:
                    handle.start("deliver", blocks, announcements)
                for handle in handles:
                    handle.result()
                evaluated = _evaluated_peers(settings, round_index, active)
                for handle in handles:
                    handle.start(
                        "evaluate",
                        round_index,
                        None if evaluated is None else [i for i in evaluated if i in handle.peers],
                    )
                evaluations = {}
                for handle in handles:
                    evaluations.update(handle.result())
                if live is not None:
                    live.add_round(
                        round_index,
                        blocks,
                        announcements,
                        {author_name(i): e.reference for i, e in evaluations.items()},
                        {author_name(i): e.accuracy for i, e in evaluations.items()},
                    )
                record, tangle_evaluation = _record(round_index, active, results, evaluations, honest)
                if fedavg is not None:
                    fedavg_evaluation = fedavg.evaluate(honest)
                    record.fedavg_accuracy = fedavg_evaluation.accuracy
                    record.fedavg_loss = fedavg_evaluation.loss
                    record.fedavg_misclassification_3_as_8 = fedavg_evaluation.misclassification_3_as_8
                if lab_metrics is not None:
                    lab_metrics.update([handle.call("metrics_snapshot") for handle in handles], record)
                records.append(record)
                peer_rounds.extend(_peer_rounds(round_index, evaluations, settings.malicious_peers))
                if live is not None:  # the run view's history, fetched when a page opens
                    live.add_record(asdict(record), [asdict(p) for p in peer_rounds[-len(evaluations) :]])
                if on_round is not None:
                    on_round(record)
                if settings.round_delay:
                    time.sleep(settings.round_delay)
        except KeyboardInterrupt:
            interrupted = True
        reporter = honest[0] if honest else 0
        reporting = next(h for h in handles if reporter in h.peers)
        if interrupted:
            # every worker may have an answer in flight: each next call must get its own
            for handle in handles:
                handle.settle()
        tangle = reporting.call("export", reporter)
        # an interrupted IPFS run's testnet got the Ctrl-C too: no tangle.car then
        backend = finish(tangle) if finish is not None and not interrupted else {}
        rejected: dict[str, int] = {}
        for evaluation in evaluations.values():
            for reason, count in evaluation.rejected.items():
                rejected[reason] = rejected.get(reason, 0) + count
        result = LabResult(
            settings=settings,
            rounds=records,
            tangle=tangle,
            malicious=malicious,
            seconds=time.perf_counter() - started,
            trainings=trainings,
            rejected=rejected,
            backend=backend,
            tangle_evaluation=tangle_evaluation,
            fedavg_evaluation=fedavg_evaluation,
            peer_rounds=peer_rounds,
            complete=not interrupted,
        )
        if on_finished is not None:
            on_finished(result)  # the outputs: written now, not after the linger
        if interrupted:
            raise LabInterrupted(result, lingering=False)
        if (server is not None or metrics_server is not None) and settings.linger:
            try:
                time.sleep(settings.linger)
            except KeyboardInterrupt:
                raise LabInterrupted(result, lingering=True) from None
    finally:
        for handle in handles:
            handle.close()
        if server is not None:
            server.stop()
        if metrics_server is not None:
            metrics_server.stop()
    return result


@contextmanager
def _sigint_ignored() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread; a thread gets no Ctrl-C anyway
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _misread(confusion: np.ndarray, true: int, predicted: int) -> float | None:
    total = confusion[true].sum() if confusion.shape[0] > max(true, predicted) else 0
    return float(confusion[true, predicted] / total) if total else None


def _peer_rounds(
    round_index: int, evaluations: dict[int, PeerEvaluation], malicious: list[int]
) -> list[PeerRound]:
    return [
        PeerRound(
            round=round_index,
            peer=author_name(i),
            malicious=i in malicious,
            accuracy=float(e.accuracy),
            loss=float(e.loss),
            misclassification_3_as_8=_misread(e.confusion, 3, 8),
        )
        for i, e in sorted(evaluations.items())
    ]


def _start_workers(settings: LabSettings, assignment: list[list[int]]) -> list[WorkerHandle]:
    """One worker per share of the peers; if one fails to start, the ones already started are stopped."""
    handles: list[WorkerHandle] = []
    try:
        for peers in assignment:
            handles.append(WorkerHandle(settings, peers, in_process=len(assignment) == 1))
    except BaseException:
        for handle in handles:
            handle.close()
        raise
    return handles


def _live_api(
    settings: LabSettings, model: Model, lab_metrics: LabMetrics | None = None
) -> tuple[LabApiSource | None, BackgroundServer | None]:
    if settings.api_port is None:
        return None, None
    source = LabApiSource(
        make_genesis(model, settings.seed).transaction,
        [author_name(i) for i in range(settings.peers)],
        {author_name(i) for i in settings.malicious_peers},
        settings.weight_horizon,
    )
    source.rounds_total = settings.rounds
    source.config = settings.model_dump(mode="json", exclude=RUNTIME_ONLY)
    # one server for both when --metrics-port equals --api-port
    shared = lab_metrics.registry if lab_metrics and settings.metrics_port == settings.api_port else None
    server = BackgroundServer(
        create_app(source, metrics=shared), host=settings.api_host, port=settings.api_port
    )
    server.start()
    return source, server


def _metrics_server(settings: LabSettings, lab_metrics: LabMetrics | None) -> BackgroundServer | None:
    if lab_metrics is None or settings.metrics_port is None or settings.metrics_port == settings.api_port:
        return None
    server = BackgroundServer(
        metrics_app(lab_metrics.registry), host=settings.api_host, port=settings.metrics_port
    )
    server.start()
    return server


def _active_peers(settings: LabSettings, round_index: int) -> list[int]:
    if settings.active_quota >= 1:
        return list(range(settings.peers))
    rng = np.random.default_rng([settings.seed, round_index, ACTIVITY])
    active = [i for i in range(settings.peers) if rng.random() < settings.active_quota]
    return active or [int(rng.integers(settings.peers))]


def _evaluated_peers(settings: LabSettings, round_index: int, active: list[int]) -> list[int] | None:
    """Whose reference is evaluated this round (None: every peer). Evaluation is measurement, not the peers'
    work: with a tenth of 1,000 peers active, evaluating all of them cost ten evaluations per training. Active
    peers are a random sample of the peers, so the round's mean stays an unbiased estimate; the last round,
    which summary.json reports, evaluates every peer."""
    if settings.evaluate_peers == "all" or round_index == settings.rounds:
        return None
    return active


def _baseline(settings: LabSettings, dataset: Dataset, model: Model) -> FedAvg | None:
    if settings.baseline == "none":
        return None
    shards = split_indices(
        dataset, settings.peers, settings.partition, settings.dirichlet_alpha, settings.seed
    )
    data = [
        peer_data(
            dataset,
            i,
            settings.peers,
            scheme=settings.partition,
            alpha=settings.dirichlet_alpha,
            seed=settings.seed,
            test_fraction=settings.test_fraction,
            shards=shards,
        )
        for i in range(settings.peers)
    ]
    # FedAvg starts from the tangle's genesis model
    return FedAvg(model, data, settings, genesis_weights(model, settings.seed))


def _record(
    round_index: int,
    active: list[int],
    results: list[TrainResult],
    evaluations: dict[int, PeerEvaluation],
    honest: list[int],
) -> tuple[RoundRecord, Evaluation]:
    counted = [i for i in honest if i in evaluations] or list(evaluations)
    evaluation = Evaluation(
        accuracy=float(np.mean([evaluations[i].accuracy for i in counted])),
        loss=float(np.mean([evaluations[i].loss for i in counted])),
        confusion=poisoning.pooled([evaluations[i].confusion for i in counted]),
    )
    record = RoundRecord(
        round=round_index,
        active=len(active),
        published=sum(1 for r in results if r.published),
        transactions=max(e.transactions for e in evaluations.values()),
        tips=evaluations[counted[0]].tips,
        tangle_accuracy=evaluation.accuracy,
        tangle_loss=evaluation.loss,
        tangle_misclassification_3_as_8=evaluation.misclassification_3_as_8,
    )
    return record, evaluation
