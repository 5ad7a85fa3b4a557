"""The network-intake defences of issue 14 without processes or IPFS: canonical CIDs, field bounds, the
deadline and negative cache per CID, the per-sender rate, signatures however a transaction arrives, the API's
Host check, tampered weights. The same defences against real peers: tests/adversarial/."""

from __future__ import annotations

import asyncio
import hashlib

import libipld
import pytest
from starlette.testclient import TestClient

from peer.api.app import create_app, host_allowed
from peer.api.schema import Health
from peer.backends.base import Message
from peer.backends.memory import MemoryStorage
from peer.ipld import (
    CODEC_DAG_CBOR,
    CODEC_RAW,
    TRANSACTION_CODECS,
    BlockVerificationError,
    CidRejected,
    Link,
    canonical_cid,
    cid_for,
    encode_dag_cbor,
    varint,
)
from peer.learning.weights_source import WeightsSource, WeightsUnavailable
from peer.node.announcement import Announcement, decode_announcement
from peer.node.builder import RateLimit, TangleBuilder
from peer.node.guard import TangleGuard
from peer.tangle.dag import Tangle
from peer.tangle.transaction import InvalidTransaction, decode_transaction, encode_transaction

NOW = 1_800_000_000.0


def _genesis() -> tuple[str, bytes]:
    return encode_transaction(parents=[], weights=cid_for(b"w0"), model="m", author="genesis", created=0)


def _tx(parent: str, n: int, **changes: object) -> tuple[str, bytes]:
    fields: dict = {
        "parents": [parent],
        "weights": cid_for(b"w%d" % n),
        "model": "m",
        "author": "a",
        "created": NOW,
    }
    return encode_transaction(**(fields | changes))


def _raw(parent: str, **changes: object) -> tuple[str, bytes]:
    obj: dict = {
        "v": 1,
        "parents": [Link(parent)],
        "weights": Link(cid_for(b"w")),
        "model": "m",
        "author": "a",
        "created": int(NOW * 1000),
        "tag": "",
        "metrics": {},
    } | changes
    block = encode_dag_cbor(obj)
    return cid_for(block, CODEC_DAG_CBOR), block


# --- canonical CIDs (finding 6) -------------------------------------------------------------------
def test_one_spelling_per_transaction_cid() -> None:
    cid = cid_for(b"block", CODEC_DAG_CBOR)
    raw = libipld.decode_multibase(cid)[1]
    assert canonical_cid(libipld.encode_multibase("z", raw), TRANSACTION_CODECS) == cid  # base58btc
    assert canonical_cid(raw, TRANSACTION_CODECS) == cid  # binary, as inside a block
    digest = raw[4:]
    for other, reason in [
        (libipld.encode_cid(varint(1) + varint(CODEC_RAW) + raw[2:]), "bad_codec"),
        (libipld.encode_cid(varint(1) + varint(0x0129) + raw[2:]), "bad_codec"),  # dag-json
        (libipld.encode_cid(b"\x12\x20" + digest), "bad_codec"),  # CIDv0 (dag-pb)
        (
            libipld.encode_cid(
                varint(1) + varint(CODEC_DAG_CBOR) + b"\x13\x40" + hashlib.sha512(b"x").digest()
            ),
            "unsupported_hash",
        ),
        ("not-a-cid", "bad_cid"),
    ]:
        with pytest.raises(CidRejected) as caught:
            canonical_cid(other, TRANSACTION_CODECS)
        assert caught.value.reason == reason, other
        with pytest.raises(InvalidTransaction) as announced:
            decode_announcement(Announcement(None, (other,)).encode())
        assert announced.value.reason == reason


# --- field bounds (finding 7) ---------------------------------------------------------------------
@pytest.mark.parametrize(
    ("changes", "reason"),
    [
        ({"created": 2**64 - 1}, "bad_time"),
        ({"created": 253_402_300_799_000}, "bad_time"),  # 9999-12-31
        ({"metrics": {"accuracy": 1e308}}, "bad_metrics"),
        ({"metrics": {"loss": -1.0}}, "bad_metrics"),
        ({"metrics": {"other": -1e308}}, "bad_metrics"),
        ({"tag": "a\x07b"}, "bad_tag"),
        ({"tag": "<script>"}, "bad_tag"),
        ({"tag": "x" * 65}, "bad_tag"),
        ({"author": "<img src=x onerror=alert(1)>"}, "bad_author"),
        ({"author": "a\nb"}, "bad_author"),
    ],
)
def test_absurd_fields_are_refused(changes: dict, reason: str) -> None:
    genesis_id, _ = _genesis()
    cid, block = _raw(genesis_id, **changes)
    with pytest.raises(InvalidTransaction) as caught:
        decode_transaction(cid, block)
    assert caught.value.reason == reason


def test_deep_nesting_is_refused_not_left_unresolved() -> None:
    block = b"\x81" * 10_000 + b"\x01"
    with pytest.raises(InvalidTransaction) as caught:
        decode_transaction(cid_for(block, CODEC_DAG_CBOR), block)
    assert caught.value.reason == "too_deep"


# --- the builder: deadline, negative cache, rate, clock, signatures (findings 1, 5, 7, 9) ------------
class CountingStorage(MemoryStorage):
    """Counts fetches; `hang` CIDs never answer (a CID nobody serves, as kubo's block/get waits)."""

    def __init__(self, hang: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        super().__init__()
        self.hang = hang
        self.fetches: list[str] = []

    async def get_transaction(self, cid: str, *, max_bytes: int) -> bytes:
        self.fetches.append(cid)
        if cid in self.hang:
            await asyncio.Event().wait()
        return await super().get_transaction(cid, max_bytes=max_bytes)


def _builder(storage: MemoryStorage, **kwargs: object) -> tuple[TangleBuilder, Tangle, str]:
    genesis_id, genesis_block = _genesis()
    tangle = Tangle(decode_transaction(genesis_id, genesis_block))
    return TangleBuilder(TangleGuard(tangle), storage, architecture="m", **kwargs), tangle, genesis_id  # type: ignore[arg-type]


def test_an_unreachable_cid_costs_one_deadline_once() -> None:
    lost = cid_for(b"nobody has this", CODEC_DAG_CBOR)
    storage = CountingStorage({lost})
    builder, _, _ = _builder(storage, fetch_timeout=0.2)

    async def announce_five_times() -> None:
        for _ in range(5):
            await builder.on_message(Message("x", Announcement(None, (lost,)).encode()))

    asyncio.run(announce_five_times())
    assert storage.fetches == [lost]  # one fetch; not 3 attempts, not 5 announcements
    assert builder.unresolved == 1
    assert builder.skipped_unreachable == 4
    assert builder.recent_timeouts() == 1


def test_an_unreachable_cid_waits_longer_after_every_miss() -> None:
    lost = cid_for(b"gone", CODEC_DAG_CBOR)
    storage = CountingStorage({lost})
    now = [0.0]
    builder, _, _ = _builder(storage, fetch_timeout=0.01, attempts=1, monotonic=lambda: now[0])
    fetched_at = []
    for second in range(0, 80):
        now[0] = float(second)
        before = len(storage.fetches)
        asyncio.run(builder.on_message(Message("x", Announcement(None, (lost,)).encode())))
        if len(storage.fetches) > before:
            fetched_at.append(second)
    assert fetched_at == [0, 10, 30, 70]  # waits of 10, 20, 40 s (capped at 5 minutes)


def test_the_tips_of_one_announcement_resolve_side_by_side() -> None:
    lost = [cid_for(b"lost %d" % i, CODEC_DAG_CBOR) for i in range(16)]
    storage = CountingStorage(set(lost))
    builder, tangle, genesis_id = _builder(storage, fetch_timeout=0.3)
    good, block = _tx(genesis_id, 1)
    asyncio.run(storage.put_transaction(good, block))
    asyncio.run(builder.on_message(Message("x", Announcement(None, (*lost[:15], good)).encode())))
    assert good in tangle
    assert builder.unresolved == 15


def test_a_sender_over_its_rate_is_refused() -> None:
    now = [0.0]
    storage = MemoryStorage()
    builder, tangle, genesis_id = _builder(storage, rate_limit=RateLimit(1.0, 3.0, clock=lambda: now[0]))
    cids = []
    for n in range(6):
        cid, block = _tx(genesis_id, n)
        asyncio.run(storage.put_transaction(cid, block))
        cids.append(cid)

    def announce(cid: str, sender: str = "a") -> None:
        asyncio.run(builder.on_message(Message(sender, Announcement(cid, ()).encode())))

    for cid in cids[:4]:
        announce(cid)
    assert [c in tangle for c in cids[:4]] == [True, True, True, False]
    assert builder.rejected == {"rate_limited": 1}
    now[0] += 1.0  # one token back
    announce(cids[4])
    announce(cids[5])
    assert cids[4] in tangle
    assert cids[5] not in tangle
    asyncio.run(builder.on_message(Message("b", Announcement(None, (cids[3],)).encode())))
    assert cids[3] in tangle  # another sender (here naming it as a tip) has its own bucket


def test_recent_transactions_count_against_their_author_however_they_arrive() -> None:
    storage = MemoryStorage()
    now = [0.0]
    limit = RateLimit(1.0, 2.0, clock=lambda: now[0])
    builder, tangle, genesis_id = _builder(storage, rate_limit=limit, clock=lambda: NOW)
    flood, old = [], []
    for n in range(4):
        cid, block = _tx(genesis_id, n, author="flooder")  # recent
        asyncio.run(storage.put_transaction(cid, block))
        flood.append(cid)
        cid, block = _tx(genesis_id, 10 + n, author="flooder", created=NOW - 3600)  # history
        asyncio.run(storage.put_transaction(cid, block))
        old.append(cid)
    for i, cid in enumerate(flood + old):  # each relayed by another honest sender, as a tip
        asyncio.run(builder.on_message(Message(f"relay-{i}", Announcement(None, (cid,)).encode())))
    assert [c in tangle for c in flood] == [True, True, False, False]
    assert all(c in tangle for c in old)  # catching up on history is not throttled
    assert builder.rejected == {"rate_limited": 2}


def test_created_ahead_of_the_receivers_clock_is_refused() -> None:
    storage = MemoryStorage()
    builder, tangle, genesis_id = _builder(storage, clock=lambda: NOW)
    ok, ok_block = _tx(genesis_id, 1, created=NOW + 60)
    ahead, ahead_block = _tx(genesis_id, 2, created=NOW + 3600)
    for cid, block in [(ok, ok_block), (ahead, ahead_block)]:
        asyncio.run(storage.put_transaction(cid, block))
        asyncio.run(builder.on_message(Message("a", Announcement(cid, ()).encode())))
    assert ok in tangle
    assert ahead not in tangle
    assert builder.rejected == {"bad_time": 1}


def test_every_transaction_needs_its_authors_signature_however_it_arrives() -> None:
    storage = MemoryStorage()
    builder, tangle, genesis_id = _builder(storage)

    async def verify(author: str, signature: bytes, payload: bytes) -> bool:
        return signature == hashlib.sha512(author.encode() + payload).digest()  # a stand-in key per author

    builder.verify_signature = verify

    def signed(parent: str, n: int, author: str, signer: str) -> str:
        cid, unsigned = _tx(parent, n, author=author)
        cid, block = _tx(
            parent, n, author=author, signature=hashlib.sha512(signer.encode() + unsigned).digest()
        )
        asyncio.run(storage.put_transaction(cid, block))
        return cid

    spoofed = signed(genesis_id, 1, author="victim", signer="attacker")
    unsigned, block = _tx(genesis_id, 2, author="victim")
    asyncio.run(storage.put_transaction(unsigned, block))
    child = signed(spoofed, 3, author="attacker", signer="attacker")  # a valid child of a spoofed ancestor
    honest = signed(genesis_id, 4, author="victim", signer="victim")
    for cid in (spoofed, unsigned, child):
        asyncio.run(builder.on_message(Message("attacker", Announcement(None, (cid,)).encode())))
    asyncio.run(builder.on_message(Message("attacker", Announcement(None, (honest,)).encode())))
    assert builder.rejected == {"bad_signature": 3}
    assert [c in tangle for c in (spoofed, unsigned, child, honest)] == [False, False, False, True]


# --- the API's Host check (finding 10) ------------------------------------------------------------
class _Source:
    def health(self) -> Health:
        return Health(ok=True)


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("127.0.0.1:8000", True),
        ("[::1]:8000", True),
        ("localhost:8000", True),
        ("peer-0:8000", True),  # a compose service
        ("10.42.0.7:8000", True),  # Prometheus on k3s scrapes the pod IP
        ("rebind.attacker.example", False),
        ("localhost.attacker.example:8000", False),
        ("", False),
    ],
)
def test_host_header(host: str, allowed: bool) -> None:
    assert host_allowed(host) is allowed
    client = TestClient(create_app(_Source()))  # type: ignore[arg-type]
    response = client.get("/healthz", headers={"Host": host})
    assert response.status_code == (200 if allowed else 421)


# --- tampered weights (finding 10) ----------------------------------------------------------------
def test_weights_that_do_not_hash_to_their_cid_are_unusable_for_good() -> None:
    calls = []

    def fetch(weights_id: str) -> bytes:
        calls.append(weights_id)
        raise BlockVerificationError("hash_mismatch", "tampered")

    now = [0.0]
    source = WeightsSource(fetch, {"w": (1,)}, max_bytes=1024, retry_after=30.0, clock=lambda: now[0])
    for _ in range(3):
        with pytest.raises(WeightsUnavailable):
            source.get("x")
        now[0] += 31.0  # past the retry delay of an unreachable fetch
    assert calls == ["x"]
    assert source.unusable["x"].startswith("invalid")


# --- the pinned-bytes gauge (finding 10) ----------------------------------------------------------
class _PinClient:
    """kubo's pin calls as a stand-in: each yields to the loop, so pins and unpins of one CID interleave."""

    async def pin_add(self, cid: str, *, recursive: bool) -> list[str]:
        await asyncio.sleep(0)
        return [cid]

    async def pin_rm(self, cid: str, *, recursive: bool) -> list[str]:
        await asyncio.sleep(0)
        return [cid]

    async def file_size(self, cid: str) -> int:
        await asyncio.sleep(0)
        return 1000


def test_pinned_bytes_never_go_negative_under_interleaved_pins() -> None:
    import random

    from peer.backends.ipfs import IpfsStorage

    storage = IpfsStorage(_PinClient())  # type: ignore[arg-type]
    weights = [cid_for(b"w%d" % i) for i in range(5)]
    seen: list[int] = []
    rng = random.Random(14)

    async def churn() -> None:
        async def one() -> None:
            cid = rng.choice(weights)
            await storage.pin([cid])
            seen.append(storage.pinned_bytes)
            await storage.unpin([cid, rng.choice(weights)])  # also one that may not be pinned
            seen.append(storage.pinned_bytes)

        await asyncio.gather(*(one() for _ in range(300)))

    asyncio.run(churn())
    assert min(seen) >= 0
    assert storage.pinned_bytes == sum(storage.pinned_sizes.values()) == 1000 * len(storage.pinned_sizes)
