"""Every variable of the 2020 prototype's configuration table changes what a `tangle peer` does, one test each
(the prototype silently ignored TRAINING_INTERVAL, NUM_OF_TIPS and NUM_OF_SAMPLING_ROUND, and never read
LOGGER or LOGGING_LEVEL). Peers that need no network run on the memory backends, which start in seconds.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from peer.ipfs.client import IpfsClient
from peer.ipfs.testnet import IpfsTestnet, wait_for_pubsub_peers
from peer.ipld import cid_for
from peer.node.announcement import Announcement

from .peers import (
    TANGLE,
    Participant,
    PeerProcess,
    digits_genesis,
    peers_stopped,
    run,
    running_testnet,
    wait_for,
)

pytestmark = pytest.mark.integration

MEMORY = {
    "STORAGE": "memory",
    "MESSAGE_BROKER": "memory",
    "IPFS_API": "http://127.0.0.1:9",
    "PEER_INDEX": "0",
}


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[IpfsTestnet]:
    with running_testnet(tmp_path_factory.mktemp("settings-ipfs"), 2) as testnet:
        yield testnet


async def _subscribed(node: Any, topic: str, peer_id: str) -> None:
    """Wait until `node` sees `peer_id` subscribed to `topic` (publishing before that loses the message)."""
    async with node.client() as client:
        await wait_for_pubsub_peers(client, topic, [peer_id], within=30)


def _peers(tmp_path: Path, *envs: dict[str, str]) -> list[PeerProcess]:
    return [PeerProcess(tmp_path / f"p{i}", env, name=f"p{i}") for i, env in enumerate(envs)]


def _tangle(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TANGLE, "peer", *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{name}{{[^}}]*}} (\S+)$", text, re.M)
    assert match, name
    return float(match.group(1))


async def _subscriptions(api: str) -> list[str]:
    async with IpfsClient(api) as client:
        return await client.pubsub_ls()


async def _has_block(api: str, cid: str) -> bool:
    async with IpfsClient(api, timeout=3, retries=0) as client:
        return bool(await client.block_get(cid, max_bytes=1 << 16))


# --- STORAGE, MESSAGE_BROKER ----------------------------------------------------------------------
def test_storage(tmp_path: Path, net: IpfsTestnet) -> None:
    memory, ipfs = _peers(
        tmp_path,
        {**MEMORY, "TRAINING_INTERVAL": "0.5"},
        {**MEMORY, "STORAGE": "ipfs", "IPFS_API": net[0].api_url, "TRAINING_INTERVAL": "0.5"},
    )
    with peers_stopped([memory, ipfs]):
        memory.start()
        ipfs.start()
        for peer in (memory, ipfs):
            peer.wait_ready()
            wait_for("a publication", lambda p=peer: p.info()["published"] >= 1, timeout=30)
        published = [t for t, n in ipfs.transactions().items() if n["peer"] != "genesis"]
        assert run(_has_block(net[0].api_url, published[0]))  # STORAGE=ipfs: the block is in the node
        assert memory.info()["peer"] == "memory-peer-0"  # STORAGE=memory: no node was ever asked
    bad = _tangle(env={**MEMORY, "STORAGE": "s3"})
    assert bad.returncode == 2
    assert "STORAGE (--storage)" in bad.stderr


def test_message_broker(tmp_path: Path, net: IpfsTestnet) -> None:
    common = {**MEMORY, "STORAGE": "ipfs", "TRAINING_INTERVAL": "0.5"}
    pubsub, quiet = _peers(
        tmp_path,
        {**common, "MESSAGE_BROKER": "ipfs", "IPFS_API": net[0].api_url},
        {**common, "MESSAGE_BROKER": "memory", "IPFS_API": net[1].api_url},
    )
    with peers_stopped([pubsub, quiet]):
        for peer in (pubsub, quiet):
            peer.start().wait_ready()
            wait_for("a publication", lambda p=peer: p.info()["published"] >= 1, timeout=30)
        topic = pubsub.info()["topic"]
        assert topic in run(_subscriptions(net[0].api_url))
        assert topic not in run(_subscriptions(net[1].api_url))
        # the quiet peer's transactions never reach the one listening on PubSub: once a message sent over
        # PubSub after them has arrived, none of them has
        quiet_ids = {t for t, n in quiet.transactions().items() if n["peer"] != "genesis"}
        received = pubsub.info()["received"]
        run(_subscribed(net[1], topic, net[0].peer_id))
        run(Participant(net[1].api_url, digits_genesis()).announce(Announcement(None, ()).encode()))
        wait_for("a message over PubSub", lambda: pubsub.info()["received"] > received, timeout=30)
        assert quiet_ids
        assert not quiet_ids & set(pubsub.transactions())


# --- MODEL ----------------------------------------------------------------------------------------
def test_model(tmp_path: Path) -> None:
    cids = {}
    for model in ("mlp", "softmax", "no_tf", "femnist"):
        result = _tangle("--create-genesis", env={**MEMORY, "MODEL": model})
        assert result.returncode == 0, result.stderr
        cids[model] = result.stdout.splitlines()[0]  # the CID comes first; log lines may follow
    assert len(set(cids.values())) == 4, cids  # each architecture has its own genesis (and topic)
    assert cids["mlp"] == digits_genesis("mlp").transaction.id
    (peer,) = _peers(tmp_path, {**MEMORY, "MODEL": "softmax"})
    with peers_stopped([peer]):
        assert peer.start().wait_ready()
        assert peer.info()["model"].startswith("softmax-")
    assert "MODEL (--model)" in _tangle(env={**MEMORY, "MODEL": "resnet"}).stderr


# --- TIMEOUT --------------------------------------------------------------------------------------
def test_timeout(tmp_path: Path, net: IpfsTestnet) -> None:
    common = {"IPFS_API": net[0].api_url, "PEER_INDEX": "0", "TRAINING_INTERVAL": "30"}
    short, long = _peers(tmp_path, {**common, "TIMEOUT": "1"}, {**common, "TIMEOUT": "none"})
    with peers_stopped([short, long]):
        short.start()
        long.start()
        short.wait_ready()
        long.wait_ready()
        run(_subscribed(net[1], short.info()["topic"], net[0].peer_id))  # the message would be lost before
        participant = Participant(net[1].api_url, digits_genesis())
        run(participant.announce(Announcement(cid_for(os.urandom(32), 0x71), ()).encode()))
        # three attempts of one second each, plus backoff: dropped within seconds
        wait_for("the short timeout to give up", lambda: short.info()["unresolved"] == 1, timeout=30)
        assert long.info()["unresolved"] == 0  # still waiting for the block: no limit
        assert long.info()["settings"]["timeout"] is None
    assert "TIMEOUT (--timeout)" in _tangle(env={**MEMORY, "TIMEOUT": "-3"}).stderr


# --- TRAINING_INTERVAL, ACTIVE_QUOTA --------------------------------------------------------------
def test_training_interval(tmp_path: Path) -> None:
    fast, slow = _peers(
        tmp_path, {**MEMORY, "TRAINING_INTERVAL": "0.5"}, {**MEMORY, "TRAINING_INTERVAL": "5"}
    )
    with peers_stopped([fast, slow]):
        fast.start()
        slow.start()
        fast.wait_ready()
        slow.wait_ready()
        wait_for("5 ticks at 0.5 s", lambda: fast.info()["ticks"] >= 5, timeout=60)
        # a fixed-rate tick never comes early: ticks <= uptime / interval + 1, whatever the machine's load
        for peer, interval in ((fast, 0.5), (slow, 5.0)):
            ticks = peer.info()["ticks"]
            assert ticks <= peer.get("/healthz")["uptime"] / interval + 1


def test_active_quota(tmp_path: Path) -> None:
    always, rarely = _peers(
        tmp_path,
        {**MEMORY, "TRAINING_INTERVAL": "0.3", "ACTIVE_QUOTA": "1"},
        {**MEMORY, "TRAINING_INTERVAL": "0.3", "ACTIVE_QUOTA": "0.2"},
    )
    with peers_stopped([always, rarely]):
        always.start()
        rarely.start()
        for peer in (always, rarely):
            peer.wait_ready()
            wait_for("15 ticks", lambda p=peer: p.info()["ticks"] >= 15, timeout=30)
        a, r = always.info(), rarely.info()
        assert a["trainings"] >= a["ticks"] - 1  # every tick trains (one may be under way)
        assert 0 < r["trainings"] <= r["ticks"] // 2
    assert "ACTIVE_QUOTA (--active-quota)" in _tangle(env={**MEMORY, "ACTIVE_QUOTA": "1.5"}).stderr


# --- NUM_OF_TIPS, NUM_OF_SAMPLING_ROUND -----------------------------------------------------------
def test_num_of_tips(tmp_path: Path, net: IpfsTestnet) -> None:
    common = {
        "IPFS_API": net[0].api_url,
        "TRAINING_INTERVAL": "1",
        "PUBLISH_RULE": "always",
        "TIP_SAMPLE_SIZE": "30",
        # the participant's six tips carry the untrained genesis weights, which the plausibility margin (a
        # defence against exactly such tips) would walk around: this test is about how many tips are approved
        "PLAUSIBLE_MARGIN": "0",
    }
    one, three = _peers(
        tmp_path,
        {**common, "NUM_OF_TIPS": "1", "PEER_INDEX": "0", "TAG": "one"},
        {**common, "NUM_OF_TIPS": "3", "PEER_INDEX": "1", "TAG": "three"},
    )
    with peers_stopped([one, three]):
        one.start()
        three.start()
        one.wait_ready()
        three.wait_ready()
        participant = Participant(net[1].api_url, digits_genesis())
        for _ in range(6):  # six tips beside genesis' first approvers: room to approve three at once
            run(participant.transaction())

        def parents_of(peer: PeerProcess) -> list[int]:
            tag = peer.env["TAG"]  # both peers share a node, and so an author: tell them apart by tag
            return [len(n["parents"]) for n in peer.transactions().values() if n["tag"] == tag]

        wait_for("three-parent transactions", lambda: 3 in parents_of(three), timeout=60)
        wait_for("publications of the one-tip peer", lambda: len(parents_of(one)) >= 4, timeout=60)
        assert set(parents_of(one)) == {1}
        assert max(parents_of(three)) == 3


def test_num_of_sampling_round(tmp_path: Path) -> None:
    # walks from genesis along a growing chain: each sampling costs a walk of the chain's length
    common = {**MEMORY, "TRAINING_INTERVAL": "0.2", "PUBLISH_RULE": "always", "ENTRY": "genesis"}
    few, many = _peers(
        tmp_path,
        {**common, "NUM_OF_SAMPLING_ROUND": "1"},
        {**common, "NUM_OF_SAMPLING_ROUND": "5000"},
    )
    with peers_stopped([few, many]):
        few.start()
        many.start()
        for peer in (few, many):
            peer.wait_ready()
            wait_for("25 trainings", lambda p=peer: p.info()["trainings"] >= 25, timeout=60)
        cost = {}
        for name, peer in (("few", few), ("many", many)):
            text = peer.get("/metrics")
            total = _metric(text, "learning_tangle_consensus_duration_seconds_sum")
            count = _metric(text, "learning_tangle_consensus_duration_seconds_count")
            cost[name] = total / count
        # the reference is chosen from that many tip samplings: 5000 walks cost far more than one
        assert cost["many"] > 5 * cost["few"], cost
    assert "NUM_OF_SAMPLING_ROUND" in _tangle(env={**MEMORY, "NUM_OF_SAMPLING_ROUND": "0"}).stderr


# --- LOGGER, LOGGING_LEVEL ------------------------------------------------------------------------
def test_logger(tmp_path: Path) -> None:
    log_file = tmp_path / "logs" / "peer.log"
    to_file, to_stdout = _peers(
        tmp_path, {**MEMORY, "LOGGER": "file", "LOG_FILE": str(log_file)}, {**MEMORY, "LOGGER": "print"}
    )
    with peers_stopped([to_file, to_stdout]):
        to_file.start().wait_ready()
        to_stdout.start().wait_ready()
    assert "HTTP API on" in log_file.read_text()
    assert "HTTP API on" not in to_file.output()
    assert "HTTP API on" in to_stdout.output()


def test_logging_level(tmp_path: Path) -> None:
    info, warn = _peers(
        tmp_path,
        {**MEMORY, "LOGGING_LEVEL": "info", "TRAINING_INTERVAL": "0.5"},
        {**MEMORY, "LOGGING_LEVEL": "WARN", "TRAINING_INTERVAL": "0.5"},
    )
    with peers_stopped([info, warn]):
        for peer in (info, warn):
            peer.start().wait_ready()
            wait_for("two trainings", lambda p=peer: p.info()["trainings"] >= 2, timeout=30)
    assert " INFO peer.daemon: round 1:" in info.output()
    assert " INFO " not in warn.output()
    assert "LOGGING_LEVEL (--logging-level)" in _tangle(env={**MEMORY, "LOGGING_LEVEL": "loud"}).stderr


# --- the IPFS node's own settings, which the deployment applies to kubo ---------------------------
# (applied to a real kubo repository, together with the image's init script: test_kubo_init.py)
def test_bad_ipfs_values_name_the_variable() -> None:
    result = _tangle(
        "--print-kubo-config",
        env={**MEMORY, "IPFS_DATASTORE_STORAGEMAX": "lots", "CONNECTION_PRUNING_LOW": "-1"},
    )
    assert result.returncode == 2
    assert "IPFS_DATASTORE_STORAGEMAX (--ipfs-datastore-storagemax)" in result.stderr
    assert "CONNECTION_PRUNING_LOW (--connection-pruning-low)" in result.stderr
