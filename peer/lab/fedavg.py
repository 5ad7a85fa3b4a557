"""The federated averaging baseline, run on the same split, model, local training and attackers."""

from __future__ import annotations

import numpy as np

from peer.config import LabSettings
from peer.data.dataset import PeerData
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

    def round(self, round_index: int, active: list[int]) -> None:
        updates, sizes = [], []
        for index in active:
            rng = np.random.default_rng([self.settings.seed, index, round_index, FEDAVG])
            data = self.data[index]
            attacking = index in self.malicious and round_index >= self.settings.poison_from
            if attacking and self.settings.poison == "random":
                updates.append(poisoning.random_weights(self.weights, rng))
            else:
                labels = data.train_y
                if attacking and self.settings.poison == "labelflip":
                    labels = poisoning.flip_labels(labels)
                updates.append(self.model.train(self.weights, data.train_x, labels, self.params, rng))
            sizes.append(len(data.train_y))
        if updates:
            total = sum(sizes)
            self.weights = average_weights(updates, [size / total for size in sizes])

    def evaluate(self, honest: list[int]) -> dict[str, float]:
        """The global model on each honest peer's local test set, averaged like the tangle's metric."""
        accuracies, losses, threes, as_eight = [], [], 0, 0
        for index in honest:
            data = self.data[index]
            metrics = self.model.evaluate(self.weights, data.test_x, data.test_y)
            accuracies.append(metrics.accuracy)
            losses.append(metrics.loss)
            t, e = poisoning.flip_counts(self.model.predict(self.weights, data.test_x), data.test_y)
            threes += t
            as_eight += e
        return {
            "accuracy": float(np.mean(accuracies)),
            "loss": float(np.mean(losses)),
            "misclassification_3_as_8": as_eight / threes if threes else 0.0,
        }
