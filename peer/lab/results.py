"""What crosses the lab's process boundary, typed: the runner and its workers (and the FedAvg baseline)
share these classes instead of dicts keyed by strings."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from peer.learning import poisoning


@dataclass(frozen=True)
class TrainResult:
    """One peer's training round, from a worker."""

    peer: int
    published: str | None
    accuracy: float | None  # the new model's, on the peer's local test set
    reason: str


# (topic, sender, announcement bytes): a round's announcements as the runner carries them between workers
Announced = tuple[str, str, bytes]


@dataclass(frozen=True)
class Evaluation:
    """A model on local test sets: accuracy and loss averaged over peers, the confusion matrix pooled."""

    accuracy: float
    loss: float
    confusion: np.ndarray  # rows true class, columns predicted class (counts)

    def misread(self, true: int, predicted: int) -> float:
        return poisoning.misread_rate(self.confusion, true, predicted)

    @property
    def misclassification_3_as_8(self) -> float:  # the original key, kept as an alias of misread(3, 8)
        return self.misread(poisoning.FLIP_FROM, poisoning.FLIP_TO)

    def report(self, watched: list[tuple[int, int]]) -> dict[str, object]:
        """The summary.json entries of this evaluation."""
        return {
            "accuracy": self.accuracy,
            "loss": self.loss,
            "misclassification_3_as_8": self.misclassification_3_as_8,
            "watch": {f"{t}:{p}": self.misread(t, p) for t, p in watched},
            "recall": poisoning.recall(self.confusion),
            "confusion": self.confusion.tolist(),
        }


@dataclass(frozen=True)
class PeerEvaluation:
    """One lab peer after a round: its reference model on its own test set, and its tangle's state."""

    accuracy: float
    loss: float
    confusion: np.ndarray
    transactions: int
    tips: int
    reference: list[str]
    rejected: dict[str, int] = field(default_factory=dict)
    unresolved: int = 0
    weights_hits: int = 0
    weights_misses: int = 0
