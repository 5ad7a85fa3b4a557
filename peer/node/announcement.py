"""Announcements on PubSub: a transaction CID plus the author's current tips, never weights."""

from __future__ import annotations

import json
from dataclasses import dataclass

from peer.tangle.transaction import InvalidTransaction, canonical_transaction_cid

MAX_ANNOUNCEMENT_BYTES = 4096
MAX_ANNOUNCED_TIPS = 16


@dataclass(frozen=True)
class Announcement:
    transaction: str | None  # a new transaction of the sender's own (first-hand); None for a tips refresh
    tips: tuple[str, ...] = ()

    def encode(self) -> bytes:
        return json.dumps(
            {"v": 1, "tx": self.transaction, "tips": list(self.tips)}, separators=(",", ":")
        ).encode()


def decode_announcement(data: bytes) -> Announcement:
    if len(data) > MAX_ANNOUNCEMENT_BYTES:
        raise InvalidTransaction("announcement_too_large", f"{len(data)} bytes")
    try:
        obj = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InvalidTransaction("bad_announcement", f"not JSON: {error}") from None
    if not isinstance(obj, dict) or obj.get("v") != 1 or set(obj) != {"v", "tx", "tips"}:
        raise InvalidTransaction("bad_announcement", "not a version 1 announcement")
    tx, tips = obj["tx"], obj["tips"]
    if tx is not None and not isinstance(tx, str):
        raise InvalidTransaction("bad_announcement", "tx is not a CID string")
    if (
        not isinstance(tips, list)
        or len(tips) > MAX_ANNOUNCED_TIPS
        or not all(isinstance(t, str) for t in tips)
    ):
        raise InvalidTransaction(
            "bad_announcement", f"tips is not a list of at most {MAX_ANNOUNCED_TIPS} CIDs"
        )
    # one spelling per transaction before any lookup: other spellings of a known CID are the same CID, other
    # codecs or hashes over its bytes are refused (bad_codec, unsupported_hash, bad_cid)
    transaction = canonical_transaction_cid(tx) if tx is not None else None
    canonical = tuple(dict.fromkeys(canonical_transaction_cid(t) for t in tips))
    return Announcement(transaction=transaction, tips=canonical)
