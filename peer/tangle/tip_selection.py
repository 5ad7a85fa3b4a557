"""Tip selection: random walks from an entry point towards the tips.

Two walks, from the two papers this project builds on: the IOTA weighted random walk (a step to an approver
y of x has probability proportional to exp(-alpha * (H_x - H_y)), H the cumulative weight), and the
accuracy-biased walk (Beilharz et al. 2021: an approver is rated by its model's accuracy on the walker's own
data, normalised to [-1, 0], weight exp(alpha * r)). Walks start at genesis or at a "particle", a random
transaction a few heights below the tips, so a walk's cost does not grow with the tangle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

import numpy as np

from peer.tangle.dag import Tangle

EntryMode = Literal["genesis", "particles"]
WalkKind = Literal["weighted", "accuracy"]


class NoUsableTips(RuntimeError):
    """Every walk ended at a transaction whose weights could not be had."""


@dataclass(frozen=True)
class WalkConfig:
    kind: WalkKind = "weighted"
    alpha: float = 0.001
    accuracy_alpha: float = 10.0
    entry: EntryMode = "particles"
    particle_depth_min: int = 10
    particle_depth_max: int = 20

    @property
    def window_depth(self) -> int | None:
        """How deep below the tips a walk may start (None: the whole tangle)."""
        return None if self.entry == "genesis" else self.particle_depth_max


class TipSelector:
    """Walks over one tangle with one random generator.

    `accuracy` rates a transaction by its model's accuracy on the walker's data (needed by the accuracy walk);
    `usable` says whether a transaction can be built on (its weights can be had and are plausible): a walk
    that ends at an unusable transaction is retried without it. `top` is the height particles are counted
    down from (default: the highest tip); a walker that knows the highest usable height passes it, so
    unusable transactions piled on top cannot move where walks start.
    """

    def __init__(
        self,
        tangle: Tangle,
        config: WalkConfig,
        rng: np.random.Generator,
        *,
        accuracy: Callable[[str], float] | None = None,
        usable: Callable[[str], bool] | None = None,
        top: int | None = None,
    ) -> None:
        self.rule = walk_rule(config.kind)
        if self.rule.needs_accuracy and accuracy is None:
            raise ValueError(f"the {config.kind} walk needs an accuracy function")
        self.tangle = tangle
        self.config = config
        self.rng = rng
        self._accuracy = accuracy
        self._usable = usable
        self.top = tangle.max_height if top is None else min(top, tangle.max_height)
        self.excluded: set[str] = set()

    def entry_point(self) -> str:
        cfg = self.config
        tangle = self.tangle
        if cfg.entry == "genesis" or self.top <= cfg.particle_depth_min:
            return tangle.genesis.id
        low = max(0, self.top - cfg.particle_depth_max)
        high = self.top - cfg.particle_depth_min
        height = int(self.rng.integers(low, high + 1))
        candidates = tangle.at_height(height)
        return candidates[int(self.rng.integers(len(candidates)))]

    def walk(self, start: str | None = None) -> str:
        """One walk to a usable transaction with no usable approvers (normally a tip).

        An unusable end is excluded and the walk steps back to where it came from and goes on from there,
        so it ends at the nearest usable transaction instead of failing when many tips are bad.
        """
        path = [start if start is not None else self.entry_point()]
        if self._usable is not None and not self._usable(path[0]):
            path = [self.tangle.genesis.id]  # the way back to a usable past runs through genesis
        while path:
            current = path[-1]
            candidates = [a for a in self.tangle.approvers(current) if a not in self.excluded]
            if candidates:
                path.append(candidates[self._step(candidates)] if len(candidates) > 1 else candidates[0])
                continue
            if self._usable is None or self._usable(current):
                return current
            self.excluded.add(current)
            path.pop()
        raise NoUsableTips("every transaction this walk could reach is unusable")

    def select(
        self, num_tips: int, *, sample_size: int | None = None, loss: Callable[[str], float] | None = None
    ) -> list[str]:
        """Distinct tips from `sample_size` walks; with more candidates than tips, keep the lowest `loss`."""
        sample_size = max(num_tips, sample_size or num_tips)
        found = list(dict.fromkeys(self.walk() for _ in range(sample_size)))
        if len(found) > num_tips:
            found = found[:num_tips] if loss is None else sorted(found, key=loss)[:num_tips]
        return found

    def _step(self, candidates: list[str]) -> int:
        p = np.exp(self.rule.logits(self, candidates))
        return int(self.rng.choice(len(candidates), p=p / p.sum()))


class WalkRule(Protocol):
    """How a walk steps: log-weights (up to a constant) of the approvers it may step to. A new walk is one
    class and one entry in `WALKS` (plus its name in `LearningSettings.tip_selector`)."""

    @property
    def needs_accuracy(self) -> bool: ...

    def logits(self, selector: TipSelector, candidates: list[str]) -> np.ndarray: ...


@dataclass(frozen=True)
class WeightedWalk:
    """IOTA: exp(-alpha (H_x - H_y)) with H the cumulative weight."""

    needs_accuracy: bool = False

    def logits(self, selector: TipSelector, candidates: list[str]) -> np.ndarray:
        weights = np.array([selector.tangle.cumulative_weight(c) for c in candidates], dtype=np.float64)
        # shifting by the max keeps exp finite
        return np.asarray(selector.config.alpha * (weights - weights.max()))


@dataclass(frozen=True)
class AccuracyWalk:
    """Beilharz et al.: the approvers' accuracies on the walker's data, normalised to [-1, 0], times alpha."""

    needs_accuracy: bool = True

    def logits(self, selector: TipSelector, candidates: list[str]) -> np.ndarray:
        accuracy = selector._accuracy
        if accuracy is None:
            raise ValueError("the accuracy walk needs an accuracy function")
        rating = np.array([accuracy(c) for c in candidates], dtype=np.float64)
        spread = rating.max() - rating.min()
        normalised = (rating - rating.max()) / spread if spread > 0 else np.zeros_like(rating)
        return np.asarray(selector.config.accuracy_alpha * normalised)


WALKS: dict[str, WalkRule] = {"weighted": WeightedWalk(), "accuracy": AccuracyWalk()}


def walk_rule(kind: str) -> WalkRule:
    try:
        return WALKS[kind]
    except KeyError:
        raise ValueError(f"unknown walk {kind!r}; expected one of {', '.join(WALKS)}") from None
