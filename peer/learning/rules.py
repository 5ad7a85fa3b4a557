"""The learner's two decisions as small interfaces, chosen by configuration: which transactions make the
reference (consensus) model, and whether a new model is published. With `peer.tangle.tip_selection.WALKS`
(how walks step) and `peer.learning.poisoning.POISONINGS` (what attackers do) these are the strategies of
`Learner.train_round`; a new one is one class and one registry entry (plus its name in the settings)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, TypeVar

from peer.config import LearningSettings
from peer.models.base import Metrics
from peer.tangle.consensus import reference_transactions
from peer.tangle.dag import Tangle

Strategy = TypeVar("Strategy")


@dataclass(frozen=True)
class ReferenceInputs:
    """What a reference rule may look at (one argument: a new input changes no rule's signature)."""

    tangle: Tangle
    walk: Callable[[], str]  # one random walk from the window to a tip
    settings: LearningSettings
    min_height: int  # confidence is counted from this height on
    plausible: Callable[[str], bool]  # whether a transaction's model passes the peer's checks
    loss: Callable[[str], float]  # a transaction's model's loss on the peer's own data


class ReferenceRule(Protocol):
    def choose(self, inputs: ReferenceInputs) -> list[str]:
        """The transactions whose models are averaged into the reference (never empty)."""
        ...


@dataclass(frozen=True)
class ConfidenceThenLoss:
    """Schmid et al.'s score (confidence x approved count) ranks; of the `reference_candidates` best
    plausible ones, the `reference_top_k` with the lowest loss on the peer's own data are averaged."""

    def choose(self, inputs: ReferenceInputs) -> list[str]:
        tangle, settings = inputs.tangle, inputs.settings
        ranked = reference_transactions(
            tangle,
            inputs.walk,
            sampling_rounds=settings.num_of_sampling_round,
            top_k=None,
            min_height=inputs.min_height,
        )
        # lazily: in a tangle 1,000 wide the ranking holds thousands, and each check may rate a model
        candidates = list(
            itertools.islice((t for t in ranked if inputs.plausible(t)), settings.reference_candidates)
        )
        candidates.sort(key=inputs.loss)
        return candidates[: settings.reference_top_k] or [tangle.genesis.id]


class PublishRule(Protocol):
    def decide(self, new: Metrics, reference: Metrics, parents_loss: Callable[[], float]) -> tuple[bool, str]:
        """(publish?, why) for an honest peer's new model; `parents_loss` is computed only if asked."""
        ...


@dataclass(frozen=True)
class Always:
    def decide(self, new: Metrics, reference: Metrics, parents_loss: Callable[[], float]) -> tuple[bool, str]:
        return True, "always"


@dataclass(frozen=True)
class BeatsReference:
    def decide(self, new: Metrics, reference: Metrics, parents_loss: Callable[[], float]) -> tuple[bool, str]:
        return new.loss < reference.loss, f"loss {new.loss:.4f} vs reference {reference.loss:.4f}"


@dataclass(frozen=True)
class BeatsParents:
    def decide(self, new: Metrics, reference: Metrics, parents_loss: Callable[[], float]) -> tuple[bool, str]:
        bar = parents_loss()
        return new.loss < bar, f"loss {new.loss:.4f} vs parents {bar:.4f}"


REFERENCE_RULES: dict[str, ReferenceRule] = {"confidence": ConfidenceThenLoss()}
PUBLISH_RULES: dict[str, PublishRule] = {
    "reference": BeatsReference(),
    "parents": BeatsParents(),
    "always": Always(),
}


def _lookup(registry: dict[str, Strategy], kind: str, name: str) -> Strategy:
    try:
        return registry[name]
    except KeyError:
        raise ValueError(f"unknown {kind} {name!r}; expected one of {', '.join(registry)}") from None


def reference_rule(name: str) -> ReferenceRule:
    return _lookup(REFERENCE_RULES, "reference rule", name)


def publish_rule(name: str) -> PublishRule:
    return _lookup(PUBLISH_RULES, "publish rule", name)
