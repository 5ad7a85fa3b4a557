"""One peer's learning step, as plain blocking code: the daemon runs it on a worker thread (so intake never
stalls) and the lab in its worker processes. It only reads the tangle; publishing is the caller's job.

reference model -> tip selection -> average -> local training -> evaluation -> publish decision
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from peer.config import LearningSettings
from peer.data.dataset import PeerData
from peer.learning import poisoning
from peer.learning.weights_source import WeightsSource, WeightsUnavailable
from peer.models.base import Metrics, Model, TrainParams, Weights
from peer.models.weights import average_weights
from peer.tangle.consensus import reference_transactions
from peer.tangle.dag import Tangle
from peer.tangle.tip_selection import TipSelector

RATING_SAMPLES = 200  # samples of local data used to rate candidate models during walks


@dataclass(frozen=True)
class Reference:
    transactions: list[str]
    weights: Weights
    metrics: Metrics
    threes: int  # true 3s in the local test set
    threes_as_eight: int  # of which the reference model predicts 8


@dataclass
class RoundOutcome:
    reference: Reference
    tips: list[str]
    weights: Weights | None = None  # the new model, when it is to be published
    metrics: Metrics | None = None
    publish: bool = False
    reason: str = ""
    extra_metrics: dict[str, float] = field(default_factory=dict)


class Learner:
    def __init__(
        self,
        model: Model,
        data: PeerData,
        settings: LearningSettings,
        weights: WeightsSource,
        *,
        malicious: bool = False,
    ) -> None:
        self.model = model
        self.data = data
        self.settings = settings
        self.weights = weights
        self.malicious = malicious
        self.train_params = TrainParams(
            learning_rate=settings.learning_rate, batch_size=settings.batch_size, epochs=settings.local_epochs
        )
        count = min(RATING_SAMPLES, len(data.train_y))
        self._rating_x = data.train_x[:count]
        self._rating_y = data.train_y[:count]
        self._ratings: dict[str, Metrics] = {}

    # --- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, weights: Weights) -> Metrics:
        return self.model.evaluate(weights, self.data.test_x, self.data.test_y)

    def rating(self, tangle: Tangle, tx_id: str) -> Metrics:
        """A transaction's model on the walker's own data (cached: weights never change)."""
        cached = self._ratings.get(tx_id)
        if cached is None:
            weights = self.weights.get(tangle.get(tx_id).weights)
            cached = self.model.evaluate(weights, self._rating_x, self._rating_y)
            if len(self._ratings) > 10_000:
                self._ratings.clear()
            self._ratings[tx_id] = cached
        return cached

    def _selector(self, tangle: Tangle, rng: np.random.Generator) -> TipSelector:
        def accuracy(tx_id: str) -> float:
            try:
                return self.rating(tangle, tx_id).accuracy
            except WeightsUnavailable:
                return 0.0

        return TipSelector(
            tangle,
            self.settings.walk_config(),
            rng,
            accuracy=accuracy,
            usable=lambda tx_id: self.weights.is_usable(tangle.get(tx_id).weights),
        )

    def reference(self, tangle: Tangle, rng: np.random.Generator) -> Reference:
        selector = self._selector(tangle, rng)
        depth = selector.config.window_depth
        min_height = 0 if depth is None else max(0, tangle.max_height - depth)
        chosen = reference_transactions(
            tangle,
            selector.walk,
            sampling_rounds=self.settings.num_of_sampling_round,
            top_k=self.settings.reference_top_k,
            min_height=min_height,
        )
        usable = [t for t in chosen if self.weights.is_usable(tangle.get(t).weights)] or [tangle.genesis.id]
        weights = average_weights([self.weights.get(tangle.get(t).weights) for t in usable])
        threes, as_eight = poisoning.flip_counts(
            self.model.predict(weights, self.data.test_x), self.data.test_y
        )
        return Reference(
            transactions=usable,
            weights=weights,
            metrics=self.evaluate(weights),
            threes=threes,
            threes_as_eight=as_eight,
        )

    # --- one round -----------------------------------------------------------------------------------------
    def train_round(
        self, tangle: Tangle, rng: np.random.Generator, *, attacking: bool = False
    ) -> RoundOutcome:
        settings = self.settings
        reference = self.reference(tangle, rng)
        selector = self._selector(tangle, rng)
        tips = selector.select(
            settings.num_of_tips,
            sample_size=settings.tip_sample_size,
            loss=lambda tx_id: self.rating(tangle, tx_id).loss,
        )
        base = average_weights([self.weights.get(tangle.get(t).weights) for t in tips])
        outcome = RoundOutcome(reference=reference, tips=tips)

        if attacking and settings.poison == "random":
            outcome.weights = poisoning.random_weights(base, rng)
        else:
            labels = self.data.train_y
            if attacking and settings.poison == "labelflip":
                labels = poisoning.flip_labels(labels)
            outcome.weights = self.model.train(base, self.data.train_x, labels, self.train_params, rng)
        outcome.metrics = self.evaluate(outcome.weights)

        if attacking:
            # an attacker follows no publish rule
            outcome.publish, outcome.reason = True, "malicious"
        elif settings.publish_rule == "always":
            outcome.publish, outcome.reason = True, "always"
        else:
            bar = reference.metrics.loss if settings.publish_rule == "reference" else self.evaluate(base).loss
            outcome.publish = outcome.metrics.loss < bar
            outcome.reason = f"loss {outcome.metrics.loss:.4f} vs {settings.publish_rule} {bar:.4f}"
        if not outcome.publish:
            outcome.weights = None
        return outcome
