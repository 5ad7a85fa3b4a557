"""The interface every model backend implements: stateless functions over named float32 weights.

Weights travel through the tangle, so a model never owns them: every call takes the weights it works on.
This keeps the numpy, fake and (later) TensorFlow Lite backends interchangeable and lets peers on
different backends share one tangle as long as their weight layouts match.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np

Weights = dict[str, np.ndarray]
WeightSpec = dict[str, tuple[int, ...]]


class ModelError(ValueError):
    """A model that cannot be used (a bad model file, a missing runtime): the message is one line naming the
    file or package, fit for a start-up error."""


@dataclass(frozen=True)
class Metrics:
    loss: float
    accuracy: float


@dataclass(frozen=True)
class TrainParams:
    learning_rate: float = 0.1
    batch_size: int = 10
    epochs: int = 1


class Model(Protocol):
    @property
    def architecture(self) -> str:
        """A stable id of the layout (for example "mlp-64-128-10"), recorded in every transaction."""
        ...

    def weight_spec(self) -> WeightSpec:
        """Names and shapes of the weights; every weight is float32."""
        ...

    def init_weights(self, rng: np.random.Generator) -> Weights: ...

    def train(
        self, weights: Weights, x: np.ndarray, y: np.ndarray, params: TrainParams, rng: np.random.Generator
    ) -> Weights:
        """Return new weights after local training; the input weights are left untouched."""
        ...

    def evaluate(self, weights: Weights, x: np.ndarray, y: np.ndarray) -> Metrics: ...

    def predict(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        """Predicted class per sample (int64)."""
        ...

    def release(self) -> None:
        """Drop what the model keeps between uses (a runtime's buffers); the next call rebuilds it. The
        daemon calls it after every round."""
        ...
