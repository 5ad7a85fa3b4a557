"""The network-intake half of issue 14: each test attacks two honest `tangle peer`s on real kubo nodes from
a third node, through the project's own wire format, and checks the defence (docs/peer.md, "Defences
against hostile peers: network intake") while the honest peers keep their no-attack rate.

The tests share one honest network (module scope) and run in file order.
"""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from integration.peers import run, wait_for

from .attacker import unreachable_cids
from .conftest import HonestNetwork

pytestmark = [pytest.mark.integration, pytest.mark.adversarial]


def test_unreachable_cid_costs_one_timeout_once(network: HonestNetwork) -> None:
    """Finding 1, the cost itself: one unreachable CID announced five times is fetched once (it lands in
    `unresolved` once) and the four repeats are answered from the negative cache."""
    peer = network.peers[0]
    before = peer.info()["unresolved"]
    skipped = peer.get("/healthz")["intake"]["skippedUnreachable"]
    cid = unreachable_cids(1)[0]
    run(network.attacker.announce_cids(cid))
    wait_for("the CID to be given up", lambda: peer.info()["unresolved"] == before + 1, timeout=30)
    for _ in range(4):
        run(network.attacker.announce_cids(None, [cid]))
    wait_for(
        "the repeats to be skipped",
        lambda: peer.get("/healthz")["intake"]["skippedUnreachable"] >= skipped + 4,
        timeout=30,
    )
    assert peer.info()["unresolved"] == before + 1


def test_intake_stall_is_bounded_and_reported(network: HonestNetwork) -> None:
    """Finding 1: announcements naming CIDs nobody serves, sent as fast as the attacker can and then again:
    one sender holds at most MAX_INTAKE_PER_SENDER announcements, a CID costs one TIMEOUT once and is then
    remembered, and /healthz says "degraded" (intake starved) while fetches keep timing out."""
    attacker = network.attacker
    seen: dict[str, dict] = {}

    async def attack(stop: threading.Event) -> None:
        named: list[list[str]] = []
        async with httpx.AsyncClient(trust_env=False, timeout=10) as http:
            while not stop.is_set():
                for _ in range(32):  # the reviewed attack: 32 messages of 17 unreachable CIDs
                    cids = unreachable_cids(17)
                    named.append(cids)
                    await attacker.announce_cids(cids[0], cids[1:])
                for cids in named[-64:]:  # and the same CIDs again: remembered, they cost nothing
                    await attacker.announce_cids(cids[0], cids[1:])
                for peer in network.peers:
                    health = (await http.get(f"{peer.url}/healthz")).json()
                    if health.get("status") == "degraded" and peer.name not in seen:
                        seen[peer.name] = health
                await asyncio.sleep(1)

    rates = network.during(attack)
    network.assert_rate_kept(rates)
    assert set(seen) == {p.name for p in network.peers}, f"/healthz never said degraded on some peer: {seen}"
    for health in seen.values():
        assert health["ok"] is True and health["intake"]["starved"], health
        assert any("timed out" in reason for reason in health["intake"]["reasons"]), health
    for peer in network.peers:
        info, health = peer.info(), peer.get("/healthz")
        assert info["rejected"].get("sender_busy", 0) > 0, info["rejected"]
        assert health["intake"]["skippedUnreachable"] > 0, health
