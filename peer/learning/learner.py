"""One peer's learning step, as plain blocking code: the daemon runs it on a worker thread (so intake never
stalls) and the lab in its worker processes. It only reads the tangle; publishing is the caller's job.

reference model -> tip selection -> average -> local training -> evaluation -> publish decision
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from peer.bounded import LruDict
from peer.config import LearningSettings
from peer.data.dataset import PeerData
from peer.learning import poisoning, rules
from peer.learning.weights_source import WeightsSource, WeightsUnavailable
from peer.metrics import PeerInstruments
from peer.models.base import Metrics, Model, TrainParams, Weights
from peer.models.fake import FakeModel
from peer.models.weights import average_weights
from peer.tangle.dag import Tangle
from peer.tangle.tip_selection import TipSelector

RATING_SAMPLES = 200  # samples of local data used to rate candidate models during walks
# ratings kept (least recently used forgotten): walks and the reference only rate what lies within the walk
# window, a few hundred transactions per round even with a hundred peers
MAX_RATINGS = 10_000


@dataclass(frozen=True)
class Reference:
    transactions: list[str]
    weights: Weights
    metrics: Metrics
    confusion: np.ndarray  # local test set: rows true class, columns predicted class (counts)

    def misread(self, true: int, predicted: int) -> tuple[int, int]:
        """(samples of class `true`, of which the reference predicts `predicted`): one watched cell."""
        return int(self.confusion[true].sum()), int(self.confusion[true, predicted])

    @property
    def threes(self) -> int:  # the label-flip metric's names, kept for the metrics and dashboards
        return self.misread(poisoning.FLIP_FROM, poisoning.FLIP_TO)[0]

    @property
    def threes_as_eight(self) -> int:
        return self.misread(poisoning.FLIP_FROM, poisoning.FLIP_TO)[1]


@dataclass
class RoundOutcome:
    reference: Reference
    tips: list[str]
    weights: Weights | None = None  # the new model, when it is to be published
    metrics: Metrics | None = None
    publish: bool = False
    reason: str = ""


class Learner:
    def __init__(
        self,
        model: Model,
        data: PeerData,
        settings: LearningSettings,
        weights: WeightsSource,
        *,
        malicious: bool = False,
        metrics: PeerInstruments | None = None,
    ) -> None:
        self.model = model
        self.data = data
        self.settings = settings
        self.weights = weights
        self.malicious = malicious
        # the strategies, chosen by configuration (see peer/learning/rules.py)
        self.reference_rule = rules.reference_rule(settings.reference_rule)
        self.publish_rule = rules.publish_rule(settings.publish_rule)
        self.poisoning = poisoning.poisoning_for(settings.poison)
        self.metrics = metrics if metrics is not None else PeerInstruments.detached()
        self.train_params = TrainParams(
            learning_rate=settings.learning_rate, batch_size=settings.batch_size, epochs=settings.local_epochs
        )
        count = min(RATING_SAMPLES, len(data.train_y))
        self._rating_x = data.train_x[:count]
        self._rating_y = data.train_y[:count]
        self._ratings: LruDict[str, Metrics] = LruDict(MAX_RATINGS)
        # the fake model's metrics are random by design: a bar over the genesis model's would be a coin toss
        self._margin = 0.0 if isinstance(model, FakeModel) else settings.plausible_margin
        self.last_top: int | None = None  # the highest usable height at the last round (see `top`)

    # --- evaluation ----------------------------------------------------------------------------------------
    def evaluate(self, weights: Weights) -> Metrics:
        return self.model.evaluate(weights, self.data.test_x, self.data.test_y)

    def rating(self, tangle: Tangle, tx_id: str) -> Metrics:
        """A transaction's model on the walker's own data (cached: weights never change)."""
        cached = self._ratings.get(tx_id)
        if cached is None:
            weights = self.weights.get(tangle.get(tx_id).weights)
            cached = self.model.evaluate(weights, self._rating_x, self._rating_y)
            self._ratings[tx_id] = cached
        return cached

    def forget_ratings(self, tangle: Tangle, min_height: int) -> None:
        """Drop the ratings of transactions below `min_height` (out of every walk's reach; the genesis
        model's rating stays, the plausibility bar needs it). Ratings are recomputed if ever needed."""
        genesis = tangle.genesis.id
        stale = [
            t for t in self._ratings if t != genesis and not (t in tangle and tangle.height(t) >= min_height)
        ]
        for t in stale:
            del self._ratings[t]

    def top(self, tangle: Tangle) -> int:
        """The highest height that holds a usable (plausible) transaction. The walk window and the reference
        hang from it, not from the highest tip: otherwise a chain of cheap implausible transactions piled
        on top (each approving the one below) moves every walk's start and the whole reference window onto
        itself, and the reference falls back to the untrained genesis model (issue 14, finding 3). Ratings
        are cached, so the scan down such a chain costs one rating per transaction once."""
        height = tangle.max_height
        while height > 0 and not any(self.plausible(tangle, t) for t in tangle.at_height(height)):
            height -= 1
        self.last_top = height
        return height

    def _selector(self, tangle: Tangle, rng: np.random.Generator, top: int) -> TipSelector:
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
            usable=lambda tx_id: self.plausible(tangle, tx_id),
            top=top,
        )

    def reference(self, tangle: Tangle, rng: np.random.Generator) -> Reference:
        return self._reference(tangle, rng, self.top(tangle))

    def _reference(self, tangle: Tangle, rng: np.random.Generator, top: int) -> Reference:
        selector = self._selector(tangle, rng, top)
        # confidence is counted within the walk window, or a shallower band: in a tangle 100 wide the
        # window's score favours models several rounds old (see README, "The lab at 100 peers and more")
        depth = self.settings.reference_depth or selector.config.window_depth
        min_height = 0 if depth is None else max(0, top - depth)
        started = time.perf_counter()
        chosen = self.reference_rule.choose(
            rules.ReferenceInputs(
                tangle=tangle,
                walk=selector.walk,
                settings=self.settings,
                min_height=min_height,
                plausible=lambda t: self.plausible(tangle, t),
                loss=lambda t: self.rating(tangle, t).loss,
            )
        )
        self.metrics.consensus_duration.observe(time.perf_counter() - started)
        weights = average_weights([self.weights.get(tangle.get(t).weights) for t in chosen])
        confusion = poisoning.confusion_matrix(
            self.model.predict(weights, self.data.test_x), self.data.test_y, _num_classes(self.model)
        )
        return Reference(
            transactions=chosen, weights=weights, metrics=self.evaluate(weights), confusion=confusion
        )

    def plausible(self, tangle: Tangle, tx_id: str) -> bool:
        """Whether a transaction is worth building on, as a tip or in the reference. The genesis always is
        (every walk can fall back to it); any other needs weights that can be had and, on the peer's own data:

        - a loss within `plausible_loss_factor` times the untrained genesis model's: one averaged-in model of
          random weights (loss ~50 on digits, against ~2.5 untrained) ruins a reference or a new model;
        - to beat the untrained model by `plausible_margin` (accuracy higher by it, or loss lower by that
          share): a transaction carrying the genesis weights (or a copy barely changed) that approves every
          honest tip would otherwise become the only tip, every round would train from it, lose to the
          reference and publish nothing (issue 14, finding 2).

        Legitimate models trained on other peers' labels pass both from the third height on (measured on
        the lab's defaults: docs/peer.md, "Defences against hostile peers: learning")."""
        genesis = tangle.genesis.id
        if tx_id == genesis:
            return True
        try:
            rating = self.rating(tangle, tx_id)
        except WeightsUnavailable:
            return False
        untrained = self.rating(tangle, genesis)
        if rating.loss > self.settings.plausible_loss_factor * untrained.loss:
            return False
        margin = self._margin
        if margin == 0:  # the bar is off
            return True
        return rating.accuracy >= untrained.accuracy + margin or rating.loss <= (1 - margin) * untrained.loss

    # --- one round -----------------------------------------------------------------------------------------
    def train_round(
        self, tangle: Tangle, rng: np.random.Generator, *, attacking: bool = False
    ) -> RoundOutcome:
        settings = self.settings
        top = self.top(tangle)
        reference = self._reference(tangle, rng, top)
        selector = self._selector(tangle, rng, top)
        started = time.perf_counter()
        tips = selector.select(
            settings.num_of_tips,
            sample_size=settings.tip_sample_size,
            loss=lambda tx_id: self.rating(tangle, tx_id).loss,
        )
        self.metrics.tip_selection_duration.observe(time.perf_counter() - started)
        base = average_weights([self.weights.get(tangle.get(t).weights) for t in tips])
        outcome = RoundOutcome(reference=reference, tips=tips)

        behaviour = self.poisoning if attacking else poisoning.POISONINGS["none"]
        outcome.weights = behaviour.update(
            base,
            self.data.train_y,
            lambda labels: self.model.train(base, self.data.train_x, labels, self.train_params, rng),
            rng,
        )
        outcome.metrics = self.evaluate(outcome.weights)

        if attacking:
            # an attacker follows no publish rule
            outcome.publish, outcome.reason = True, "malicious"
        else:
            outcome.publish, outcome.reason = self.publish_rule.decide(
                outcome.metrics, reference.metrics, lambda: self.evaluate(base).loss
            )
        if not outcome.publish:
            outcome.weights = None
        return outcome


def _num_classes(model: Model) -> int:
    """The model's classes (every model here has `num_classes`; the confusion matrix needs its size)."""
    count = getattr(model, "num_classes", None)
    if not isinstance(count, int):
        raise TypeError(f"{model!r} does not say how many classes it has (num_classes)")
    return count
