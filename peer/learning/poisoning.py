"""Poisoning behaviours for robustness experiments (Schmid et al. 2020), as one small interface.

A `Poisoning` turns an attacker's round into its update: it may train (on transformed labels) or not train
at all. The registry `POISONINGS` maps the POISON setting to an implementation; the lab's peers, the daemon
and the FedAvg baseline all take their attack from it, so a new attack is one class and one entry here
(plus its name in `LearningSettings.poison`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from peer.models.base import Weights

FLIP_FROM, FLIP_TO = 3, 8

# trains the round's model from the base weights on the peer's data with the given labels
Train = Callable[[np.ndarray], Weights]


class Poisoning(Protocol):
    @property
    def watch(self) -> tuple[tuple[int, int], ...]:
        """Confusion-matrix cells (true class, predicted class) that show this attack's success."""
        ...

    def update(self, base: Weights, labels: np.ndarray, train: Train, rng: np.random.Generator) -> Weights:
        """The attacker's model for this round."""
        ...


@dataclass(frozen=True)
class Honest:
    """No attack: the peer trains on its own labels (also what an attacker does before POISON_FROM)."""

    watch: tuple[tuple[int, int], ...] = ()

    def update(self, base: Weights, labels: np.ndarray, train: Train, rng: np.random.Generator) -> Weights:
        return train(labels)


@dataclass(frozen=True)
class RandomWeights:
    """Weights ~ N(0, 1) of the base model's names and shapes; nothing is trained."""

    watch: tuple[tuple[int, int], ...] = ()

    def update(self, base: Weights, labels: np.ndarray, train: Train, rng: np.random.Generator) -> Weights:
        return random_weights(base, rng)


@dataclass(frozen=True)
class LabelFlip:
    """Trains on labels in which class `source` reads `target` (3 as 8 by default)."""

    source: int = FLIP_FROM
    target: int = FLIP_TO

    @property
    def watch(self) -> tuple[tuple[int, int], ...]:
        return ((self.source, self.target),)

    def update(self, base: Weights, labels: np.ndarray, train: Train, rng: np.random.Generator) -> Weights:
        return train(np.where(labels == self.source, self.target, labels))


POISONINGS: dict[str, Poisoning] = {"none": Honest(), "random": RandomWeights(), "labelflip": LabelFlip()}


def poisoning_for(name: str) -> Poisoning:
    try:
        return POISONINGS[name]
    except KeyError:
        raise ValueError(f"unknown poisoning {name!r}; expected one of {', '.join(POISONINGS)}") from None


def random_weights(template: Weights, rng: np.random.Generator) -> Weights:
    """Weights ~ N(0, 1) of the template's names and shapes."""
    return {name: rng.standard_normal(w.shape).astype(np.float32) for name, w in template.items()}


def confusion_matrix(predictions: np.ndarray, y: np.ndarray, num_classes: int) -> np.ndarray:
    """Counts (num_classes x num_classes, int64): row = true class, column = predicted class. Pooled over
    peers by summing; every attack metric (per-class recall, "3 read as 8") is read off it."""
    # np.intp: bincount refuses int64 input where the platform's index type is 32-bit (armv7)
    cells = np.asarray(y, dtype=np.intp) * num_classes + np.asarray(predictions, dtype=np.intp)
    counts = np.bincount(cells, minlength=num_classes * num_classes).astype(np.int64)
    return counts.reshape(num_classes, num_classes)


def pooled(confusions: list[np.ndarray]) -> np.ndarray:
    """The sum of several peers' confusion matrices (all of one model, so of one size)."""
    if not confusions:
        return np.zeros((0, 0), dtype=np.int64)
    return np.asarray(np.sum(confusions, axis=0, dtype=np.int64))


def recall(confusion: np.ndarray) -> list[float | None]:
    """Per true class: the share read correctly (None for a class with no samples)."""
    totals = confusion.sum(axis=1)
    return [float(confusion[c, c] / totals[c]) if totals[c] else None for c in range(len(totals))]


def misread_rate(confusion: np.ndarray, true: int, predicted: int) -> float:
    """Share of the samples of class `true` predicted as `predicted` (0 when there are none)."""
    if true >= len(confusion) or predicted >= len(confusion):
        return 0.0
    total = int(confusion[true].sum())
    return int(confusion[true, predicted]) / total if total else 0.0
