"""Poisoning behaviours for robustness experiments (Schmid et al. 2020)."""

from __future__ import annotations

import numpy as np

from peer.models.base import Weights

FLIP_FROM, FLIP_TO = 3, 8


def random_weights(template: Weights, rng: np.random.Generator) -> Weights:
    """Weights ~ N(0, 1) of the template's names and shapes."""
    return {name: rng.standard_normal(w.shape).astype(np.float32) for name, w in template.items()}


def flip_labels(y: np.ndarray) -> np.ndarray:
    """Label-flip attack: class 3 becomes 8."""
    return np.where(y == FLIP_FROM, FLIP_TO, y)


def flip_counts(predictions: np.ndarray, y: np.ndarray) -> tuple[int, int]:
    """(true 3s, true 3s predicted as 8): the label-flip attack's success, pooled over peers by summing."""
    threes = y == FLIP_FROM
    return int(threes.sum()), int(np.sum(predictions[threes] == FLIP_TO))
