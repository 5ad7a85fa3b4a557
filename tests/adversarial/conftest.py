"""One honest network per test module: two `tangle peer` processes on their own kubo nodes and an attacker
on a third node, all on one kubo testnet; plus the measurements every adversarial test asserts on.

A module may set ``HONEST_ENV`` (a dict of peer settings) to change the honest peers' settings. Rates are
compared with a no-attack window measured in the same run (``network.baseline``), never with wall-clock
numbers: ticks are the peers' own training rounds, so a loaded machine slows both windows alike.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pytest
from integration.peers import PeerProcess, digits_genesis, peers_stopped, running_testnet, wait_for

from peer.ipfs.testnet import IpfsTestnet

from .attacker import Attacker

# publish every round (PUBLISH_RULE=always): the rate intake must keep up with is then one transaction per
# peer per tick, whatever the models learn; short timeouts keep an unreachable CID's cost small in time
HONEST_DEFAULTS = {
    "PUBLISH_RULE": "always",
    "TRAINING_INTERVAL": "2",
    "TIMEOUT": "3",
    "REANNOUNCE_INTERVAL": "3",
    "PEERS": "2",
}
WINDOW_TICKS = 12  # training ticks per measured window (one tick more or less is 8%)
RATE_TOLERANCE = 0.2  # an attacked window keeps at least 80% of the baseline rate
# how long the other peers' transactions of a window may take to arrive once it ends: a tips re-announcement
# and a fetch deadline (3 x TIMEOUT); what has not arrived by then counts as lost
ARRIVAL_GRACE = 2 * float(HONEST_DEFAULTS["REANNOUNCE_INTERVAL"]) + 3 * float(HONEST_DEFAULTS["TIMEOUT"])


@dataclass(frozen=True)
class Rates:
    """Per honest peer over one window: its own publications per tick, and the share of the other honest
    peers' publications of the window that reached it (what a stalled intake loses)."""

    published: dict[str, float]
    arrived: dict[str, float]
    ticks: dict[str, int]


class HonestNetwork:
    def __init__(self, net: IpfsTestnet, peers: list[PeerProcess], attacker: Attacker) -> None:
        self.net = net
        self.peers = peers
        self.attacker = attacker
        self.authors = {peer.name: peer.info()["peer"] for peer in peers}

    # --- observations ------------------------------------------------------------------------------------
    def transactions(self, peer: PeerProcess) -> dict[str, dict[str, Any]]:
        return peer.transactions()

    def rejected(self, peer: PeerProcess) -> dict[str, int]:
        return dict(peer.info()["rejected"])

    def wait_rejected(self, reason: str, at_least: int = 1, *, timeout: float = 60) -> None:
        """Until every honest peer counted `at_least` rejections for `reason`."""
        for peer in self.peers:
            wait_for(
                f"{peer.name} to count {at_least} x {reason}",
                lambda p=peer: self.rejected(p).get(reason, 0) >= at_least,
                timeout=timeout,
            )

    def own(self, peer: PeerProcess, since: float, until: float) -> set[str]:
        """The transactions `peer` published (created) in [since, until), from its own tangle."""
        me = self.authors[peer.name]
        return {
            cid
            for cid, node in peer.transactions().items()
            if node["peer"] == me and since <= node["timeCreated"] < until
        }

    def window(self, ticks: int = WINDOW_TICKS) -> Rates:
        """Rates over the next `ticks` training ticks of every honest peer (waits on the ticks themselves)."""
        start = {p.name: p.info()["ticks"] for p in self.peers}
        since = time.time()

        def ticked() -> bool:
            return all(p.info()["ticks"] >= start[p.name] + ticks for p in self.peers)

        wait_for(f"{ticks} training ticks", ticked, timeout=ticks * 20)
        until = time.time()
        elapsed = {p.name: p.info()["ticks"] - start[p.name] for p in self.peers}
        own = {p.name: self.own(p, since, until) for p in self.peers}
        arrived = {}
        for observer in self.peers:
            expected = set().union(*(own[p.name] for p in self.peers if p is not observer))
            deadline = time.monotonic() + ARRIVAL_GRACE
            while not expected <= set(observer.transactions()) and time.monotonic() < deadline:
                time.sleep(0.5)
            got = expected & set(observer.transactions())
            arrived[observer.name] = len(got) / len(expected) if expected else 0.0
        return Rates(
            published={n: len(own[n]) / elapsed[n] for n in elapsed},
            arrived=arrived,
            ticks=elapsed,
        )

    @cached_property
    def baseline(self) -> Rates:
        """The no-attack window of this run (measured once, on first use)."""
        rates = self.window()
        assert all(r > 0 for r in rates.arrived.values()), f"no honest traffic before any attack: {rates}"
        return rates

    def assert_rate_kept(self, attacked: Rates, tolerance: float = RATE_TOLERANCE) -> None:
        base = self.baseline
        print(f"rates without attack: {base}\nrates under attack:    {attacked}")  # shown with -s or -rP
        for name in attacked.published:
            for what, now, before in (
                ("published", attacked.published[name], base.published[name]),
                ("arrived", attacked.arrived[name], base.arrived[name]),
            ):
                assert now >= (1 - tolerance) * before, (
                    f"{name}: {what} {now:.2f}/tick under attack, < {1 - tolerance:.0%} of {before:.2f}"
                )

    def during(self, attack: Callable[[threading.Event], Awaitable[Any]], ticks: int = WINDOW_TICKS) -> Rates:
        """Measure a window while `attack(stop)` runs on its own event loop in a thread; the attack should
        return soon after `stop` is set. Its exception, if any, fails the test."""
        self.baseline  # noqa: B018  (measured before the first attack)
        stop = threading.Event()
        errors: list[BaseException] = []

        def body() -> None:
            try:
                asyncio.run(attack(stop))  # type: ignore[arg-type]
            except BaseException as error:  # reported in the test's thread
                errors.append(error)

        thread = threading.Thread(target=body, name="attacker", daemon=True)
        thread.start()
        try:
            rates = self.window(ticks)
        finally:
            stop.set()
            thread.join(60)
        if errors:
            raise errors[0]
        return rates

    def settle(self) -> None:
        """Wait until both honest peers have published again (after an attack, before the next test)."""
        before = {p.name: p.info()["published"] for p in self.peers}
        for peer in self.peers:
            wait_for(
                f"{peer.name} to publish", lambda p=peer: p.info()["published"] > before[p.name], timeout=60
            )


def start_honest_network(directory: Path, env: dict[str, str] | None = None) -> Iterator[HonestNetwork]:
    """Three kubo nodes: 0 and 1 carry the honest peers, 2 the attacker."""
    settings = {**HONEST_DEFAULTS, **(env or {})}
    with running_testnet(directory / "ipfs", 3) as net:
        peers = [
            PeerProcess(
                directory / f"peer-{i}",
                {"IPFS_API": net[i].api_url, "PEER_INDEX": str(i), **settings},
                name=f"peer-{i}",
            )
            for i in range(2)
        ]
        with peers_stopped(peers):
            for peer in peers:
                peer.start()
            for peer in peers:
                peer.wait_ready(timeout=120)
            attacker = Attacker(net[2].api_url, digits_genesis())
            network = HonestNetwork(net, peers, attacker)
            # both peers know each other's transactions before anything is measured
            for peer in peers:
                wait_for(
                    f"{peer.name} to receive the other peer's transactions",
                    lambda p=peer: len({n["peer"] for n in p.transactions().values()}) >= 3,
                    timeout=120,
                )
            yield network


@pytest.fixture(scope="module")
def network(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[HonestNetwork]:
    env = getattr(request.module, "HONEST_ENV", None)
    yield from start_honest_network(tmp_path_factory.mktemp("adversarial"), env)
