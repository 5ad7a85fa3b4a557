"""The genesis model: deterministic from (model architecture, seed), so every peer computes the same genesis
transaction and so the same PubSub topic without any coordination."""

from __future__ import annotations

import hashlib

import numpy as np

from peer.models.base import Model, Weights

GENESIS_AUTHOR = "genesis"


def genesis_weights(model: Model, seed: int) -> Weights:
    digest = hashlib.sha256(f"{model.architecture}/{seed}".encode()).digest()
    return model.init_weights(np.random.default_rng(int.from_bytes(digest[:8], "big")))


def topic_for(genesis_id: str) -> str:
    return f"learning-tangle/{genesis_id}"
