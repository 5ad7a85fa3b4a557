"""The network-intake half of issue 14: each test attacks two honest `tangle peer`s on real kubo nodes from
a third node, through the project's own wire format, and checks the defence (docs/peer.md, "Defences
against hostile peers: network intake") while the honest peers keep their no-attack rate.

The tests share one honest network (module scope) and run in file order.
"""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

import httpx
import libipld
import pytest
from integration.peers import run, wait_for

from peer.ipld import CODEC_DAG_CBOR, Link, varint
from peer.node.announcement import MAX_ANNOUNCED_TIPS
from peer.node.builder import RateLimit

from .attacker import announcement, spellings, unreachable_cids
from .conftest import HonestNetwork

pytestmark = [pytest.mark.integration, pytest.mark.adversarial]
T = TypeVar("T")


def test_unreachable_cid_costs_one_deadline_once(network: HonestNetwork) -> None:
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


def _attacked(network: HonestNetwork, send: Callable[[], Awaitable[T]]) -> T:
    """Run the attack `send` at the start of a measured window; the honest rate over it must hold."""
    result: list[T] = []

    async def attack(_stop: threading.Event) -> None:
        result.append(await send())

    network.assert_rate_kept(network.during(attack))
    return result[0]


def _absent(network: HonestNetwork, cids: list[str] | set[str]) -> None:
    for peer in network.peers:
        present = set(cids) & set(peer.transactions())
        assert not present, f"{peer.name} inserted {present}"


def _honest_transaction(network: HonestNetwork) -> str:
    honest = set(network.authors.values())
    nodes = network.peers[0].transactions()
    return next(cid for cid, node in nodes.items() if node["peer"] in honest)


def test_other_spellings_of_a_cid_are_not_duplicates(network: HonestNetwork) -> None:
    """Finding 6: an honest transaction re-announced as base58btc text, under the raw codec and under the
    dag-json codec. The first is the same CID once normalised (nothing fetched, nothing added); the other
    two name other codecs and are refused before any lookup (bad_codec)."""
    target = _honest_transaction(network)
    names = spellings(target)
    counts = {p.name: len(p.transactions()) for p in network.peers}
    before = {p.name: network.rejected(p).get("bad_codec", 0) for p in network.peers}

    async def send() -> None:
        for name in names.values():
            await network.attacker.announce_cids(None, [name])
            await network.attacker.announce_cids(name)

    _attacked(network, send)
    network.wait_rejected("bad_codec", min(before.values()) + 4)
    for peer in network.peers:
        nodes = peer.transactions()
        assert not set(names.values()) & set(nodes)
        assert sum(1 for cid in nodes if cid == target) == 1
        assert network.rejected(peer)["bad_codec"] == before[peer.name] + 4
        # only honest publications were added meanwhile: each one is by an honest author
        honest = set(network.authors.values()) | {"genesis"}
        assert {n["peer"] for n in nodes.values()} <= honest, counts


def test_absurd_fields_are_rejected(network: HonestNetwork) -> None:
    """Finding 7: `created` of 2^64-1 ms, of year 9999 and an hour ahead of the receivers' clocks, metrics
    of +-1e308, control characters and HTML in the tag, HTML as author: each refused by reason."""
    attacker = network.attacker
    now_ms = int(time.time() * 1000)
    cases = {
        "bad_time": [
            {"created": 2**64 - 1},
            {"created": 253_402_300_799_000},
            {"created": now_ms + 3_600_000},
        ],
        "bad_metrics": [{"metrics": {"accuracy": 1e308, "loss": 1.0}}, {"metrics": {"loss": -1e308}}],
        "bad_tag": [{"tag": "bell\x07"}, {"tag": "<b>x</b>"}],
        "bad_author": [{"author": "<img src=x onerror=alert(1)>"}],
    }
    before = {p.name: network.rejected(p) for p in network.peers}

    async def send() -> list[str]:
        return [await attacker.crafted(**changes) for changed in cases.values() for changes in changed]

    sent = _attacked(network, send)
    for reason, changed in cases.items():
        count = len(changed)
        for peer in network.peers:
            wait_for(
                f"{peer.name} to count {reason}",
                lambda p=peer, r=reason, n=count: (
                    network.rejected(p).get(r, 0) >= before[p.name].get(r, 0) + n
                ),
                timeout=60,
            )
    _absent(network, sent)


def test_spoofed_authors_are_rejected_however_they_arrive(network: HonestNetwork) -> None:
    """Finding 5: a transaction claiming an honest author, announced first-hand (author_mismatch), then the
    same one as a tip, one signed by the attacker as a tip, and one as the ancestor of the attacker's own
    valid transaction (bad_signature each); the attacker's own signed transaction is accepted (control)."""
    attacker = network.attacker
    victim = network.authors["peer-0"]
    before = {p.name: network.rejected(p) for p in network.peers}
    mismatches = min(b.get("author_mismatch", 0) for b in before.values()) + 1

    async def send() -> tuple[str, ...]:
        unsigned = await attacker.crafted(author=victim, sign=False, tag="spoof-1")
        await asyncio.to_thread(network.wait_rejected, "author_mismatch", mismatches)
        await attacker.announce_cids(None, [unsigned])  # the reviewed bypass: the same CID as a tip
        signed_by_attacker = await attacker.crafted(author=victim, announce=False, tag="spoof-2")
        await attacker.announce_cids(None, [signed_by_attacker])
        ancestor = await attacker.crafted(author=victim, announce=False, tag="spoof-3")
        child = await attacker.crafted(parents=[Link(ancestor)], announce=False, tag="spoof-child")
        await attacker.announce_cids(child)
        control = await attacker.crafted(tag="control")
        return unsigned, signed_by_attacker, ancestor, child, control

    unsigned, signed_by_attacker, ancestor, child, control = _attacked(network, send)
    for peer in network.peers:
        wait_for(
            f"{peer.name} to count 3 bad signatures",
            lambda p=peer: (
                network.rejected(p).get("bad_signature", 0) >= before[p.name].get("bad_signature", 0) + 3
            ),
            timeout=60,
        )
        wait_for(f"{peer.name} to accept the control", lambda p=peer: control in p.transactions(), timeout=60)
    _absent(network, [unsigned, signed_by_attacker, ancestor, child])
    for peer in network.peers:
        assert peer.transactions()[control]["peer"] == run(attacker.peer_id())


def test_smaller_findings(network: HonestNetwork) -> None:
    """Finding 10: a Host header of another name is refused (DNS rebinding); deep CBOR nesting is too_deep;
    a sha2-512 CID is unsupported_hash before any lookup; the pinned-bytes gauge is never negative; weights
    whose bytes do not give their CID are marked unusable (not retried every 30 s)."""
    attacker = network.attacker
    peer = network.peers[0]
    evil = httpx.get(f"{peer.url}/api/peer", headers={"Host": "rebind.attacker.example"}, trust_env=False)
    assert evil.status_code == 421
    assert (
        httpx.get(f"{peer.url}/api/peer", headers={"Host": "localhost"}, trust_env=False).status_code == 200
    )

    before = {p.name: network.rejected(p) for p in network.peers}
    digest = hashlib.sha512(b"any block").digest()
    sha512 = libipld.encode_cid(varint(1) + varint(CODEC_DAG_CBOR) + varint(0x13) + varint(64) + digest)
    tips = peer.get("/api/transactions")["tips"]

    async def send() -> str:
        deep = await attacker.put_block(b"\x81" * 10_000 + b"\x01")
        await attacker.announce_cids(deep)
        await attacker.announce_cids(sha512)
        await attacker.send(announcement(None, unreachable_cids(MAX_ANNOUNCED_TIPS + 1)))  # too many tips
        # a valid file under a CID its bytes do not give, on top of the honest tips where walks find it
        weights = await attacker.add_rechunked(attacker.genesis.weights_bytes)
        await attacker.crafted(weights=weights, parents=[Link(t) for t in tips], tag="rechunked")
        return weights

    tampered = _attacked(network, send)
    for reason in ("too_deep", "unsupported_hash", "bad_announcement"):
        for p in network.peers:
            wait_for(
                f"{p.name} to count {reason}",
                lambda p=p, r=reason: network.rejected(p).get(r, 0) > before[p.name].get(r, 0),
                timeout=60,
            )
    for p in network.peers:
        assert network.rejected(p).get("hash_mismatch", 0) == before[p.name].get("hash_mismatch", 0)
        gauge = [
            float(line.rsplit(" ", 1)[1])
            for line in p.get("/metrics").splitlines()
            if line.startswith("learning_tangle_pinned_bytes{")
        ]
        assert gauge, "no pinned-bytes gauge"
        assert min(gauge) >= 0, gauge

    def marked() -> dict[str, str] | None:
        found = {p.name: p.info()["unusableWeights"].get(tampered) for p in network.peers}
        return found if any(found.values()) else None

    reasons = wait_for("the tampered weights to be marked unusable", marked, timeout=120)
    assert all(r.startswith("invalid") for r in reasons.values() if r), reasons


def test_intake_stall_is_bounded_and_reported(network: HonestNetwork) -> None:
    """Finding 1: announcements naming CIDs nobody serves, sent as fast as the attacker can and then again:
    one sender holds at most MAX_INTAKE_PER_SENDER announcements, a CID costs one deadline and is then
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
        assert health["ok"] is True, health
        assert health["intake"]["starved"], health
        assert any("timed out" in reason for reason in health["intake"]["reasons"]), health
    for peer in network.peers:
        info, health = peer.info(), peer.get("/healthz")
        assert info["rejected"].get("sender_busy", 0) > 0, info["rejected"]
        assert health["intake"]["skippedUnreachable"] > 0, health


def test_one_sender_cannot_flood(network: HonestNetwork) -> None:
    """Finding 9: one sender publishing well-formed, signed transactions as fast as its node allows gets at
    most its bucket (RateLimit: burst, then per_second) into the honest tangles; the rest is rate_limited."""
    attacker = network.attacker
    flooded: list[str] = []
    started: list[float] = []

    async def attack(stop: threading.Event) -> None:
        started.append(time.monotonic())
        while not stop.is_set() and len(flooded) < 600:
            flooded.extend(await attacker.flood(25))

    rates = network.during(attack)
    network.assert_rate_kept(rates)
    network.wait_rejected("rate_limited")
    me = run(attacker.peer_id())
    limit = RateLimit()
    for peer in network.peers:
        accepted = [
            c for c, n in peer.transactions().items() if n["peer"] == me and n["tag"].startswith("flood-")
        ]
        bound = limit.burst + limit.per_second * (time.monotonic() - started[0])
        print(f"{peer.name}: {len(accepted)} of {len(flooded)} flooded accepted (bound {bound:.0f})")
        assert len(flooded) > bound, f"the attacker sent only {len(flooded)}: no flood"
        assert len(accepted) <= bound, (
            f"{peer.name} accepted {len(accepted)} of {len(flooded)} (> {bound:.0f})"
        )
