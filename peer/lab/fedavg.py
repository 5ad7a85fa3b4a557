"""The federated averaging baseline, run on the same split, model, local training and attackers."""

from __future__ import annotations

import numpy as np

from peer.config import LabSettings
from peer.data.dataset import PeerData
from peer.lab.results import Evaluation
from peer.learning import poisoning
from peer.models.base import Model, TrainParams, Weights
from peer.models.weights import average_weights

FEDAVG = 2  # purpose index of the baseline's random streams


class FedAvg:
    def __init__(self, model: Model, data: list[PeerData], settings: LabSettings, initial: Weights) -> None:
        self.model = model
        self.data = data
        self.settings = settings
        self.weights = initial
        self.malicious = set(settings.malicious_peers)
        self.params = TrainParams(settings.learning_rate, settings.batch_size, settings.local_epochs)
        # the same attack as the tangle's malicious peers, from the same registry
        self.attack = poisoning.poisoning_for(settings.poison)
        self.num_classes = int(getattr(model, "num_classes", 0)) or None

    def round(self, round_index: int, active: list[int]) -> None:
        updates: list[Weights] = []
        sizes: list[int] = []
        for index in active:
            rng = np.random.default_rng([self.settings.seed, index, round_index, FEDAVG])
            data = self.data[index]
            attacking = index in self.malicious and round_index >= self.settings.poison_from
            behaviour = self.attack if attacking else poisoning.POISONINGS["none"]
            updates.append(behaviour.update(self.weights, data.train_y, self._trainer(data, rng), rng))
            sizes.append(len(data.train_y))
        if updates:
            total = sum(sizes)
            self.weights = average_weights(updates, [size / total for size in sizes])

    def _trainer(self, data: PeerData, rng: np.random.Generator) -> poisoning.Train:
        def train(labels: np.ndarray) -> Weights:
            return self.model.train(self.weights, data.train_x, labels, self.params, rng)

        return train

    def evaluate(self, honest: list[int]) -> Evaluation:
        """The global model on each honest peer's local test set, averaged like the tangle's metric."""
        accuracies, losses, confusions = [], [], []
        for index in honest:
            data = self.data[index]
            metrics = self.model.evaluate(self.weights, data.test_x, data.test_y)
            accuracies.append(metrics.accuracy)
            losses.append(metrics.loss)
            predicted = self.model.predict(self.weights, data.test_x)
            classes = self.num_classes or int(max(data.test_y.max(), predicted.max())) + 1
            confusions.append(poisoning.confusion_matrix(predicted, data.test_y, classes))
        return Evaluation(
            accuracy=float(np.mean(accuracies)),
            loss=float(np.mean(losses)),
            confusion=poisoning.pooled(confusions),
        )
