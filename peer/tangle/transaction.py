"""Transactions and their wire form: an IPLD dag-cbor object whose CID is the transaction's id.

Parents and weights are real CID links, so a node can export any transaction's whole past as one CAR file
and verify it by hash. Decoding validates the schema strictly: every byte of it came from the network.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import libipld

from peer.ipld import (
    CODEC_DAG_CBOR,
    CODEC_RAW,
    TRANSACTION_CODECS,
    WEIGHTS_CODECS,
    BlockVerificationError,
    CidRejected,
    Link,
    canonical_cid,
    cid_for,
    encode_dag_cbor,
    verify_block,
)

TRANSACTION_VERSION = 1
MAX_PARENTS = 8
MAX_TRANSACTION_BYTES = 16 * 1024
MAX_METRICS = 16
MAX_TEXT = 128
MAX_TAG = 64  # as the TAG setting allows
# Field bounds (finding 7 of the adversarial review): what no honest peer writes is refused at the door, so
# nothing downstream (the tangle, the API, the visualizer, Prometheus) meets 2^64 ms or 1e308.
MAX_CREATED_MS = 4_102_444_800_000  # 2100-01-01: the receiver's clock window is checked at intake
METRIC_BOUND = 1e6  # |value| of any metric; accuracy lies in [0, 1], loss is >= 0

__all__ = [
    "CODEC_DAG_CBOR",
    "CODEC_RAW",
    "MAX_PARENTS",
    "MAX_TRANSACTION_BYTES",
    "InvalidTransaction",
    "Transaction",
    "canonical_transaction_cid",
    "cid_bytes",
    "cid_for",
    "decode_transaction",
    "encode_transaction",
    "signed_payload",
]

SIGNATURE_BYTES = 64  # ed25519, the key type of every kubo identity since 0.13


class InvalidTransaction(ValueError):
    """A transaction that must be dropped; `reason` is a short stable label (counted in metrics)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"{reason}: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Transaction:
    id: str
    parents: tuple[str, ...]
    weights: str
    model: str
    author: str
    created: float  # unix seconds (the lab uses a logical clock)
    tag: str = ""
    metrics: Mapping[str, float] = field(default_factory=dict)
    version: int = TRANSACTION_VERSION
    # the author's libp2p key signed `signed_payload` (empty: unsigned, as in the lab and the genesis)
    signature: bytes = b""

    @property
    def is_genesis(self) -> bool:
        return not self.parents


def cid_bytes(cid: str) -> bytes:
    """Binary form of a CIDv1; raises InvalidTransaction for text that is not one."""
    try:
        if libipld.decode_cid(cid)["version"] != 1:
            raise InvalidTransaction("bad_cid", f"only CIDv1 links are used: {cid[:80]!r}")
        return libipld.decode_multibase(cid)[1]
    except (ValueError, TypeError) as error:
        raise InvalidTransaction("bad_cid", f"not a CID: {cid[:80]!r}") from error


def canonical_transaction_cid(cid: str) -> str:
    """A transaction CID from the network in its one canonical spelling (see :func:`canonical_cid`)."""
    try:
        return canonical_cid(cid, TRANSACTION_CODECS)
    except CidRejected as error:
        raise InvalidTransaction(error.reason, str(error)) from error


def signed_payload(tx: Transaction) -> bytes:
    """The bytes `tx.signature` must sign: its block without the signature, re-encoded canonically."""
    created_ms = round(tx.created * 1000)
    return encode_dag_cbor(_wire(tx.parents, tx.weights, tx.model, tx.author, created_ms, tx.tag, tx.metrics))


def encode_transaction(
    *,
    parents: tuple[str, ...] | list[str],
    weights: str,
    model: str,
    author: str,
    created: float,
    tag: str = "",
    metrics: Mapping[str, float] | None = None,
    signature: bytes = b"",
) -> tuple[str, bytes]:
    """Build the dag-cbor block of a new transaction; returns (cid, block). `signature`: the author's
    signature of the block built from the same fields without one (or none)."""
    for cid in (*parents, weights):
        cid_bytes(cid)  # only CIDv1 links
    created_ms = round(created * 1000)
    block = encode_dag_cbor(_wire(parents, weights, model, author, created_ms, tag, metrics, signature))
    cid = cid_for(block, CODEC_DAG_CBOR)
    # decoding our own block is cheap and guarantees that what we publish passes every peer's checks
    decode_transaction(cid, block)
    return cid, block


def _wire(
    parents: tuple[str, ...] | list[str],
    weights: str,
    model: str,
    author: str,
    created_ms: int,
    tag: str,
    metrics: Mapping[str, float] | None,
    signature: bytes = b"",
) -> dict[str, Any]:
    """The object as it is encoded: parents and weights are real links, so `ipfs dag export` follows them."""
    signed = {"sig": signature} if signature else {}
    return signed | {
        "v": TRANSACTION_VERSION,
        "parents": [Link(p) for p in parents],
        "weights": Link(weights),
        "model": model,
        "author": author,
        "created": created_ms,
        "tag": tag,
        "metrics": {k: float(v) for k, v in sorted((metrics or {}).items())},
    }


def decode_transaction(cid: str, block: bytes, *, verify: bool = True) -> Transaction:
    """Parse and validate a transaction block received from the network."""
    if len(block) > MAX_TRANSACTION_BYTES:
        raise InvalidTransaction("too_large", f"{len(block)} bytes > {MAX_TRANSACTION_BYTES}")
    if verify:
        try:
            verify_block(cid, block)
        except BlockVerificationError as error:
            raise InvalidTransaction(error.reason, str(error)) from error
    try:
        obj = libipld.decode_dag_cbor(block)
    except RecursionError as error:  # libipld's decoder gives up on deep nesting: a hostile block
        raise InvalidTransaction("too_deep", "dag-cbor nested too deeply") from error
    except (ValueError, TypeError) as error:
        raise InvalidTransaction("bad_encoding", f"not dag-cbor: {error}") from error
    if not isinstance(obj, dict):
        raise InvalidTransaction("bad_schema", "transaction is not a map")
    expected = {"v", "parents", "weights", "model", "author", "created", "tag", "metrics"}
    if set(obj) - {"sig"} != expected:
        raise InvalidTransaction("bad_schema", f"keys {sorted(obj)} != {sorted(expected)} (+ sig)")
    signature = obj.get("sig", b"")
    if "sig" in obj and (not isinstance(signature, bytes) or len(signature) != SIGNATURE_BYTES):
        raise InvalidTransaction("bad_schema", f"sig is not {SIGNATURE_BYTES} bytes")
    if obj["v"] != TRANSACTION_VERSION:
        raise InvalidTransaction("bad_version", f"version {obj['v']!r} is not {TRANSACTION_VERSION}")
    parents_raw = obj["parents"]
    if not isinstance(parents_raw, list):
        raise InvalidTransaction("bad_schema", "parents is not a list")
    if len(parents_raw) > MAX_PARENTS:
        raise InvalidTransaction("too_many_parents", f"{len(parents_raw)} parents > {MAX_PARENTS}")
    parents = tuple(_link(p, "parents", TRANSACTION_CODECS) for p in parents_raw)
    if len(set(parents)) != len(parents):
        raise InvalidTransaction("duplicate_parents", "a parent is listed twice")
    if cid in parents:
        raise InvalidTransaction("self_parent", "transaction lists itself as parent")
    weights = _link(obj["weights"], "weights", WEIGHTS_CODECS)
    model, author, tag = (_text(obj[k], k) for k in ("model", "author", "tag"))
    if not model or not author:
        raise InvalidTransaction("bad_schema", "model and author must not be empty")
    if not all(c.isascii() and (c.isalnum() or c in "._:-") for c in author):
        raise InvalidTransaction("bad_author", f"author {author[:40]!r} is not [A-Za-z0-9._:-]")
    if len(tag) > MAX_TAG or not tag.isprintable() or any(c in "<>&" for c in tag):
        raise InvalidTransaction("bad_tag", f"tag {tag[:40]!r} is not printable text of <= {MAX_TAG}")
    created = obj["created"]
    if not isinstance(created, int) or isinstance(created, bool) or created < 0:
        raise InvalidTransaction("bad_schema", "created is not a non-negative integer (ms)")
    if created > MAX_CREATED_MS:
        raise InvalidTransaction("bad_time", f"created {created} ms is after 2100")
    metrics_raw = obj["metrics"]
    if not isinstance(metrics_raw, dict) or len(metrics_raw) > MAX_METRICS:
        raise InvalidTransaction("bad_schema", "metrics is not a small map")
    metrics: dict[str, float] = {}
    for key, value in metrics_raw.items():
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value):
            raise InvalidTransaction("bad_schema", f"metric {key!r} is not a finite number")
        metrics[_text(key, "metrics key")] = float(value)
        _check_metric(key, float(value))
    # libipld decodes a link and a byte string alike: only the canonical encoding of what was read, with
    # real links, is accepted, so a transaction has exactly one block (and one CID)
    if encode_dag_cbor(_wire(parents, weights, model, author, created, tag, metrics_raw, signature)) != block:
        raise InvalidTransaction("bad_encoding", "not the canonical dag-cbor form (links must be tag 42)")
    return Transaction(
        id=cid,
        parents=parents,
        weights=weights,
        model=model,
        author=author,
        created=created / 1000,
        tag=tag,
        metrics=metrics,
        signature=signature,
    )


def _check_metric(key: str, value: float) -> None:
    low, high = {"accuracy": (0.0, 1.0), "loss": (0.0, METRIC_BOUND)}.get(key, (-METRIC_BOUND, METRIC_BOUND))
    if not low <= value <= high:
        raise InvalidTransaction("bad_metrics", f"metric {key!r} = {value:g} outside [{low:g}, {high:g}]")


def _link(value: object, name: str, codecs: frozenset[int]) -> str:
    if not isinstance(value, bytes):
        raise InvalidTransaction("bad_schema", f"{name} is not a CID link")
    try:
        return canonical_cid(value, codecs)
    except CidRejected as error:
        raise InvalidTransaction(error.reason, f"{name}: {error}") from error


def _text(value: object, name: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT:
        raise InvalidTransaction("bad_schema", f"{name} is not a string of at most {MAX_TEXT} characters")
    return value
