"""`tangle peer`: one peer as a long-running process beside its own IPFS node.

Tasks on one event loop: intake (PubSub -> tangle builder, many announcements at once so one unreachable
CID never stalls the others), training every TRAINING_INTERVAL with probability ACTIVE_QUOTA (the learning
itself on a worker thread, see `Peer.train_once`), periodic re-announcement of the tips (late joiners and
peers that missed a message rebuild from them), the pinning window, and the HTTP API. SIGTERM stops new
rounds, lets a running round finish and publish (up to SHUTDOWN_GRACE seconds), announces the tips once
more and exits 0: a transaction that was stored is also announced and pinned.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import sys
import time
from collections import deque
from collections.abc import Iterator
from typing import Any

import numpy as np
import uvicorn

from peer.api.app import create_app
from peer.api.schema import (
    DaemonHealth,
    DaemonPeerInfo,
    IntakeHealth,
    PubsubHealth,
    PubsubInfo,
    RoundInfo,
    SettingsInfo,
    TransactionsDocument,
    WeightsCacheInfo,
)
from peer.api.transactions import transactions_document
from peer.backends.base import Broker, Message, Storage
from peer.backends.ipfs import IpfsBroker, IpfsStorage, SubscriptionState
from peer.backends.memory import MemoryBroker, MemoryStorage
from peer.config import PeerSettings
from peer.data import load_dataset, peer_data
from peer.ipfs.client import IpfsClient
from peer.ipfs.errors import IpfsError
from peer.learning.learner import Reference
from peer.memory import release_memory
from peer.metrics import PeerMetrics
from peer.models import Model
from peer.node.announcement import MAX_ANNOUNCED_TIPS, Announcement
from peer.node.peer import Genesis, Peer, make_genesis, store_genesis
from peer.node.pinning import PinWindow
from peer.retry import Backoff, retry

log = logging.getLogger("peer.daemon")

ACTIVITY, TRAIN = 3, 0  # purposes of the random streams (as in the lab)
MAX_CONCURRENT_INTAKE = 32  # announcements resolving at once
MAX_INTAKE_PER_SENDER = 4  # of which one PubSub sender may hold; more from it are dropped (sender_busy)
MAX_CONCURRENT_FETCHES = 128  # fetches at once: > MAX_INTAKE_PER_SENDER x (1 + MAX_ANNOUNCED_TIPS)
STARVED_TIMEOUTS = 8  # fetch timeouts in a minute from which /healthz says the intake is starved
READY_BACKOFF = Backoff(0.5, 10.0)  # waiting for the IPFS node beside us at start-up
RECENT_ROUNDS = 100  # rounds shown in /api/peer: publishing per round, not per wall-clock second
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(settings: PeerSettings) -> None:
    """LOGGER=print: standard output; LOGGER=file: LOG_FILE. LOGGING_LEVEL applies to both."""
    handler: logging.Handler
    if settings.logger == "file":
        settings.log_file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(settings.log_file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(settings.log_level)
    # httpx logs every request at INFO: thousands of lines an hour of nothing a peer's operator needs
    logging.getLogger("httpx").setLevel(max(logging.WARNING, root.level))


class _Server(uvicorn.Server):
    """uvicorn inside the daemon's loop; the daemon handles SIGTERM itself (uvicorn would take it over)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class PeerDaemon:
    def __init__(self, settings: PeerSettings, *, hostname: str | None = None) -> None:
        self.settings = settings
        host = hostname if hostname is not None else socket.gethostname()
        # the genesis is the same for every peer: publishing it needs no shard
        self.index = 0 if settings.create_genesis else settings.resolved_peer_index(host)
        self.stop = asyncio.Event()
        self.started = time.monotonic()
        self.ticks = 0
        self.trainings = 0
        self.last_round: RoundInfo | None = None
        self.recent_rounds: deque[RoundInfo] = deque(maxlen=RECENT_ROUNDS)
        self.reference: Reference | None = None
        self.client: IpfsClient | None = None
        self.author = ""
        self.peer: Peer | None = None
        self.window: PinWindow | None = None
        self.broker: Broker | None = None
        self.http_port: int | None = None
        self._round: asyncio.Future[None] | None = None
        self.intake_per_sender: dict[str, int] = {}  # announcements in flight by PubSub sender
        self.intake_waiting_since: float | None = None  # monotonic time the intake began waiting for a slot

    # --- set-up ------------------------------------------------------------------------------------------
    async def _connect(self) -> tuple[Storage, Broker, PeerMetrics]:
        s = self.settings
        if "ipfs" in (s.storage, s.message_broker):
            self.client = IpfsClient(s.ipfs_api, timeout=s.timeout)
            self.author = await self._until_ready("the IPFS node", self._peer_id)
        else:
            self.author = f"memory-peer-{self.index}"
        metrics = PeerMetrics()
        instruments = metrics.peer(self.author)
        storage: Storage
        broker: Broker
        storage = IpfsStorage(self._ipfs(), instruments) if s.storage == "ipfs" else MemoryStorage()
        if s.message_broker == "ipfs":
            broker = IpfsBroker(self._ipfs(), instruments)
        else:
            broker = MemoryBroker().connect(self.author)
        return storage, broker, metrics

    def _ipfs(self) -> IpfsClient:
        if self.client is None:
            raise RuntimeError("no IPFS client: neither STORAGE nor MESSAGE_BROKER is ipfs")
        return self.client

    async def _peer_id(self) -> str:
        return (await self._ipfs().id()).peer_id

    async def _until_ready(self, what: str, call: Any) -> Any:
        """Retry `call` with backoff until it works (a node starting beside us) or SIGTERM."""

        def told(error: BaseException, delay: float) -> None:
            log.warning("%s is not ready (%s); retrying in %.1f s", what, error, delay)

        async def sleep_unless_stopped(delay: float) -> None:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), delay)
            if self.stop.is_set():
                raise asyncio.CancelledError

        return await retry(
            call,
            backoff=READY_BACKOFF,
            retry_on=(IpfsError, OSError),
            on_retry=told,
            sleep=sleep_unless_stopped,
        )

    async def _genesis(self) -> tuple[Any, Model, Genesis]:
        s = self.settings
        dataset = await asyncio.to_thread(load_dataset, s.dataset, s.dataset_path)
        # one model for the genesis and the peer: a tflite model holds an interpreter
        model = s.create_model(dataset.input_shape, dataset.num_classes)
        return dataset, model, await asyncio.to_thread(make_genesis, model, s.seed)

    # --- the daemon --------------------------------------------------------------------------------------
    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.stop.set)
        try:
            return await self._run()
        except asyncio.CancelledError:
            log.info("stopped before start-up finished")
            return 0
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
            if self.client is not None:
                await self.client.aclose()

    async def _run(self) -> int:
        s = self.settings
        # the model first: a bad model file or a missing runtime fails at once, not after IPFS is up
        dataset, model, genesis = await self._genesis()
        storage, broker, metrics = await self._connect()
        await self._until_ready("storing the genesis", lambda: store_genesis(storage, genesis))
        if s.create_genesis:
            await storage.pin([genesis.transaction.id, genesis.transaction.weights])
            print(genesis.transaction.id, flush=True)
            log.info("genesis %s published (model %s, seed %d)", genesis.transaction.id, s.model, s.seed)
            return 0
        data = await asyncio.to_thread(
            peer_data,
            dataset,
            self.index,
            s.peers,
            scheme=s.partition,
            alpha=s.dirichlet_alpha,
            seed=s.seed,
            test_fraction=s.test_fraction,
        )
        instruments = metrics.peer(self.author)
        peer = Peer(
            author=self.author,
            model=model,
            data=data,
            settings=s,
            storage=storage,
            broker=broker,
            genesis=genesis,
            clock=time.time,
            malicious=s.malicious,
            tag=s.tag,
            cache_bytes=s.weights_cache_bytes,
            metrics=instruments,
        )
        self.peer, self.broker = peer, broker
        window = self.window = PinWindow(
            peer.tangle, storage, s.pin_depth, vet=peer.usable_weights, top=lambda: peer.learner.last_top
        )

        def inserted(tx: Any) -> None:
            instruments.inserted(tx)
            window.changed()

        peer.builder.on_insert = inserted
        verify = None
        if self.client is not None and s.storage == "ipfs":
            # every transaction carries its author's signature by the author's kubo key (docs/peer.md)
            peer.signer = self.client.key_sign
            verify = self.client.key_verify
        peer.builder.open_network(
            fetch_timeout=s.timeout,
            clock=time.time,
            max_concurrency=MAX_CONCURRENT_FETCHES,
            verify_signature=verify,
        )
        log.info(
            "peer %d (%s) on %s: model %r, genesis %s, topic %s",
            self.index,
            self.author,
            s.ipfs_api if self.client else "memory",
            peer.model,  # its layout, and for tflite the file in use
            genesis.transaction.id,
            peer.topic,
        )
        server = await self._serve_http(metrics)
        await asyncio.to_thread(self._release, model)  # start-up's pages and buffers until the first round
        tasks = [
            asyncio.create_task(self._intake(peer), name="intake"),
            asyncio.create_task(window.run(), name="pinning"),
            asyncio.create_task(self._reannounce(peer), name="reannounce"),
        ]
        training = asyncio.create_task(self._training(peer), name="training")
        await self.stop.wait()
        log.info("stopping: waiting for a running round to publish (up to %.0f s)", s.shutdown_grace)
        await self._shutdown(peer, window, training, tasks, server)
        return 0

    async def _shutdown(
        self,
        peer: Peer,
        window: PinWindow,
        training: asyncio.Task[None],
        tasks: list[asyncio.Task[Any]],
        server: _Server | None,
    ) -> None:
        if self._round is not None and not self._round.done():
            try:
                await asyncio.wait_for(asyncio.shield(self._round), self.settings.shutdown_grace)
            except TimeoutError:
                log.warning("a training round was still running after %.0f s", self.settings.shutdown_grace)
        training.cancel()
        # the two steps SIGTERM promises: a failure is logged (the operator must know what was not pinned or
        # announced), and shutdown goes on
        try:
            await asyncio.wait_for(window.update(), 10)
        except Exception as error:
            log.error("stopping: the last pin update failed: %s: %s", type(error).__name__, error)
        try:
            await asyncio.wait_for(self._announce_tips(peer), 5)
        except Exception as error:
            log.error("stopping: the final tip announcement failed: %s: %s", type(error).__name__, error)
        for task in tasks:
            task.cancel()
        await asyncio.gather(training, *tasks, return_exceptions=True)
        if server is not None:
            server.should_exit = True
            await self._server_task
        log.info(
            "stopped: %d transactions, %d published by this peer", len(peer.tangle), peer.published_count
        )

    async def _serve_http(self, metrics: PeerMetrics) -> _Server | None:
        s = self.settings
        ipfs_metrics = None
        if self.client is not None:
            client = self.client

            async def ipfs_metrics(max_bytes: int, seconds: float) -> bytes:
                return await client.prometheus_metrics(max_bytes=max_bytes, request_timeout=seconds)

        app = create_app(DaemonApiSource(self), metrics=metrics.registry, ipfs_metrics=ipfs_metrics)
        config = uvicorn.Config(
            app, host=s.http_host, port=s.http_port, log_level="warning", access_log=False, lifespan="off"
        )
        server = _Server(config)
        self._server_task = asyncio.create_task(server.serve(), name="http")
        while not server.started:
            if self._server_task.done():
                self._server_task.result()  # raises what stopped it
                raise RuntimeError(f"the HTTP API could not bind {s.http_host}:{s.http_port}")
            await asyncio.sleep(0.02)
        self.http_port = server.servers[0].sockets[0].getsockname()[1]
        log.info("HTTP API on http://%s:%d", s.http_host, self.http_port)
        return server

    # --- intake ------------------------------------------------------------------------------------------
    async def _intake(self, peer: Peer) -> None:
        slots = asyncio.Semaphore(MAX_CONCURRENT_INTAKE)
        running: set[asyncio.Task[None]] = set()
        per_sender = self.intake_per_sender

        async def handle(message: Message) -> None:
            try:
                await peer.builder.on_message(message)
            except Exception:  # the builder counts what it rejects; anything else is a bug to log, not die of
                log.exception("intake failed on a message from %s", message.sender)
            finally:
                slots.release()
                per_sender[message.sender] -= 1
                if not per_sender[message.sender]:
                    del per_sender[message.sender]

        async for message in peer.broker.subscribe(peer.topic):
            if per_sender.get(message.sender, 0) >= MAX_INTAKE_PER_SENDER:
                # one sender cannot take every slot: the rest of its burst is dropped (announcements repeat)
                peer.builder.received += 1
                peer.builder.rejected["sender_busy"] += 1
                continue
            per_sender[message.sender] = per_sender.get(message.sender, 0) + 1
            if slots.locked():
                self.intake_waiting_since = time.monotonic()
            await slots.acquire()  # backpressure: at most this many announcements resolve at once
            self.intake_waiting_since = None
            task = asyncio.create_task(handle(message))
            running.add(task)
            task.add_done_callback(running.discard)

    def intake_state(self) -> IntakeHealth:
        """What /healthz shows of the intake: starved when every slot has been busy for longer than TIMEOUT
        or fetches keep timing out (CIDs nobody serves hold the slots: an attack or a partitioned node)."""
        builder = self.peer.builder if self.peer is not None else None
        timeouts = builder.recent_timeouts() if builder is not None else 0
        waiting = time.monotonic() - self.intake_waiting_since if self.intake_waiting_since else 0.0
        reasons = []
        if waiting > (self.settings.timeout or 30.0):
            reasons.append(f"every intake slot busy for {waiting:.0f} s")
        if timeouts >= STARVED_TIMEOUTS:
            reasons.append(f"{timeouts} fetches timed out in the last minute")
        return IntakeHealth(
            starved=bool(reasons),
            reasons=reasons,
            busy=sum(self.intake_per_sender.values()),
            slots=MAX_CONCURRENT_INTAKE,
            waiting=round(waiting, 1),
            timeouts=timeouts,
            skipped_unreachable=builder.skipped_unreachable if builder is not None else 0,
        )

    # --- training ----------------------------------------------------------------------------------------
    async def _training(self, peer: Peer) -> None:
        s = self.settings
        loop = asyncio.get_running_loop()
        next_tick = loop.time() + s.training_interval
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop.wait(), max(0.0, next_tick - loop.time()))
            if self.stop.is_set():
                return
            # fixed rate: an overlong round shifts the next tick instead of piling rounds up
            next_tick = max(next_tick + s.training_interval, loop.time())
            self.ticks += 1
            active = np.random.default_rng([s.seed, self.index, self.ticks, ACTIVITY]).random()
            if active >= s.active_quota:
                continue
            # shielded: cancelling the loop (shutdown) never cuts a round between storing and announcing
            self._round = asyncio.ensure_future(self._train(peer, self.ticks))
            await asyncio.shield(self._round)

    @staticmethod
    def _release(model: Model) -> None:
        model.release()
        release_memory()

    async def _train(self, peer: Peer, tick: int) -> None:
        s = self.settings
        self.trainings += 1
        rng = np.random.default_rng([s.seed, self.index, tick, TRAIN, int(self.started)])
        attacking = s.malicious and tick >= s.poison_from
        started = time.monotonic()
        peer.forget_below_window()  # no round is running: the learner's ratings are ours to change
        try:
            outcome = await peer.train_once(rng, attacking=attacking)
        except Exception as error:
            log.warning("training round %d failed: %s: %s", tick, type(error).__name__, error)
            self.last_round = RoundInfo(tick=tick, error=f"{type(error).__name__}: {error}")
            self.recent_rounds.append(self.last_round)
            return
        finally:
            # a round frees weight-sized blocks (copies, gradients, activations) that glibc would keep, and
            # leaves library pages mapped that the next round may not need; a tflite model drops its
            # interpreter (its arenas) until the next round
            await asyncio.to_thread(self._release, peer.model)
        self.reference = outcome.reference
        published = peer.published[-1].id if outcome.publish and peer.published else None
        self.last_round = RoundInfo(
            tick=tick,
            seconds=round(time.monotonic() - started, 3),
            tips=list(outcome.tips),
            published=published,
            reason=outcome.reason,
            accuracy=outcome.metrics.accuracy if outcome.metrics else None,
            reference_accuracy=outcome.reference.metrics.accuracy,
        )
        self.recent_rounds.append(self.last_round)
        log.info(
            "round %d: reference accuracy %.3f, %s (%s)",
            tick,
            outcome.reference.metrics.accuracy,
            f"published {published}" if published else "not published",
            outcome.reason,
        )
        if published and self.window is not None:
            await self.window.update()  # pinned right away, not at the next window pass

    # --- re-announcements ---------------------------------------------------------------------------------
    async def _reannounce(self, peer: Peer) -> None:
        while True:
            await asyncio.sleep(self.settings.reannounce_interval)
            try:
                await self._announce_tips(peer)
            except Exception as error:  # the node may be restarting: next time
                log.info("re-announcing tips failed: %s", error)

    async def _announce_tips(self, peer: Peer) -> None:
        tips = [t for t in peer.tangle.tips if t != peer.genesis.transaction.id][-MAX_ANNOUNCED_TIPS:]
        if tips:
            await peer.broker.publish(peer.topic, Announcement(None, tuple(tips)).encode())

    # --- state for the API ---------------------------------------------------------------------------------
    def subscription(self) -> SubscriptionState:
        if isinstance(self.broker, IpfsBroker):
            return self.broker.state
        return SubscriptionState(connected=self.peer is not None, since=self.started)


class DaemonApiSource:
    """The daemon's one peer for `peer.api.app.create_app`."""

    def __init__(self, daemon: PeerDaemon) -> None:
        self.daemon = daemon

    def _peer(self, name: str | None) -> Peer:
        from peer.api.app import UnknownPeer

        peer = self.daemon.peer
        if peer is None or (name is not None and name != peer.author):
            raise UnknownPeer(name or "(starting)")
        return peer

    def peers(self) -> list[str]:
        return [self.daemon.author] if self.daemon.peer is not None else []

    def transactions(self, peer: str | None, since: int) -> TransactionsDocument:
        p = self._peer(peer)
        reference = self.daemon.reference.transactions if self.daemon.reference else ()
        return transactions_document(p.tangle, peer=p.author, since=since, reference=reference)

    def peer_info(self, peer: str | None) -> DaemonPeerInfo:
        p = self._peer(peer)
        d, s = self.daemon, self.daemon.settings
        sub = d.subscription()
        window = d.window
        return DaemonPeerInfo(
            peer=p.author,
            peer_index=d.index,
            model=p.model.architecture,
            genesis=p.genesis.transaction.id,
            topic=p.topic,
            transactions=len(p.tangle),
            tips=len(p.tangle.tips),
            depth=p.tangle.max_height,
            published=p.published_count,
            ticks=d.ticks,
            trainings=d.trainings,
            last_round=d.last_round,
            recent_rounds=list(d.recent_rounds),
            reference_accuracy=d.reference.metrics.accuracy if d.reference else None,
            reference=d.reference.transactions if d.reference else [],
            received=p.builder.received,
            rejected=dict(p.builder.rejected),
            unresolved=p.builder.unresolved,
            weights_cache=WeightsCacheInfo(
                hits=p.weights.hits,
                misses=p.weights.misses,
                fetched_bytes=p.weights.fetched_bytes,
                cached_bytes=p.weights.cached_bytes,
            ),
            pinned_weights=len(window.weights) if window else 0,
            unusable_weights=p.weights.unusable,
            pubsub=PubsubInfo(connected=sub.connected, reconnects=sub.reconnects),
            settings=SettingsInfo(
                storage=s.storage,
                message_broker=s.message_broker,
                timeout=s.timeout,
                training_interval=s.training_interval,
                num_of_tips=s.num_of_tips,
                num_of_sampling_round=s.num_of_sampling_round,
                active_quota=s.active_quota,
                tip_selector=s.tip_selector,
                publish_rule=s.publish_rule,
                malicious=s.malicious,
            ),
        )

    def health(self) -> DaemonHealth:
        d = self.daemon
        sub = d.subscription()
        intake = d.intake_state()
        ok = d.peer is not None and sub.connected
        return DaemonHealth(
            ok=ok,
            peer=d.author,
            started=d.peer is not None,
            uptime=round(time.monotonic() - d.started, 1),
            pubsub=PubsubHealth(
                connected=sub.connected,
                reconnects=sub.reconnects,
                last_error=sub.last_error,
                for_seconds=round(time.monotonic() - sub.since, 1),
            ),
            # degraded is not down: a restart would not help, so the status code stays 200 (docs/peer.md)
            status="down" if not ok else "degraded" if intake.starved else "ok",
            intake=intake,
        )


def run_daemon(settings: PeerSettings) -> int:
    setup_logging(settings)
    return asyncio.run(PeerDaemon(settings).run())
