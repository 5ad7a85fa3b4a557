"""A model that only pretends to learn, for load tests (the original prototype's "no_tf" model).

It has the size of a real model, so storage, network and caching costs are realistic, but training costs
one pass of noise and its metrics are random. Metrics and predictions are seeded by a hash of the
weights, so every peer evaluating the same weights on the same data reports the same numbers.
"""

from __future__ import annotations

import math
import weakref

import numpy as np

from peer.models.base import Metrics, TrainParams, Weights, WeightSpec
from peer.models.weights import validate_weights, weights_digest

# The LEAF FEMNIST CNN of the 2020 prototype and paper: conv 5x5 32, pool, conv 5x5 64, pool, dense 2048.
LEAF_CNN_PARAMS = 6_603_710
_LEAF_CONV = (32, 64)
_LEAF_DENSE = 2048
# Spread of the noise "training" adds; small enough that averaged fake models stay plausible.
_TRAIN_NOISE = 1e-3


def leaf_cnn_spec(input_shape: tuple[int, ...], num_classes: int) -> WeightSpec:
    """Names and shapes of the LEAF CNN for an (height, width, channels) input."""
    height, width, channels = input_shape
    c1, c2 = _LEAF_CONV
    flat = (height // 4) * (width // 4) * c2
    return {
        "conv_1/kernel": (5, 5, channels, c1),
        "conv_1/bias": (c1,),
        "conv_2/kernel": (5, 5, c1, c2),
        "conv_2/bias": (c2,),
        "dense_1/kernel": (flat, _LEAF_DENSE),
        "dense_1/bias": (_LEAF_DENSE,),
        "dense_2/kernel": (_LEAF_DENSE, num_classes),
        "dense_2/bias": (num_classes,),
    }


_KnownDigest = tuple[tuple["weakref.ref[np.ndarray]", ...], bytes]  # (every array, weakly), digest


class FakeModel:
    """Realistically sized weights, noise for training, random but deterministic metrics.

    With the default size and a (28, 28, 1) input with 62 classes the layout is exactly the LEAF CNN's.
    Any other combination splits `num_params` into four flat tensors "fake/part_1".."fake/part_4".
    """

    def __init__(
        self,
        num_params: int = LEAF_CNN_PARAMS,
        input_shape: tuple[int, ...] = (28, 28, 1),
        num_classes: int = 62,
    ) -> None:
        if num_params < 1:
            raise ValueError(f"num_params must be positive, got {num_params}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        self.num_params = int(num_params)
        self.input_shape = tuple(int(d) for d in input_shape)
        self.num_classes = int(num_classes)
        self._spec = self._build_spec()
        # digests of read-only weights (decoded ones: a lab worker's peers share them through one cache and
        # each peer rates each of them, the same hash every time), forgotten with the arrays
        self._digests: dict[int, _KnownDigest] = {}  # by id() of the first array

    def _build_spec(self) -> WeightSpec:
        if len(self.input_shape) == 3:
            leaf = leaf_cnn_spec(self.input_shape, self.num_classes)
            if sum(math.prod(shape) for shape in leaf.values()) == self.num_params:
                return leaf
        parts = min(4, self.num_params)
        sizes = [self.num_params // parts] * parts
        sizes[0] += self.num_params - sum(sizes)
        return {f"fake/part_{i + 1}": (size,) for i, size in enumerate(sizes)}

    @property
    def architecture(self) -> str:
        shape = "x".join(str(d) for d in self.input_shape)
        layout = "leaf" if "conv_1/kernel" in self._spec else "flat"
        return f"fake-{layout}-{shape}-{self.num_params}-{self.num_classes}"

    def weight_spec(self) -> WeightSpec:
        return dict(self._spec)

    def __repr__(self) -> str:
        return f"FakeModel({self.architecture!r})"

    def init_weights(self, rng: np.random.Generator) -> Weights:
        weights: Weights = {}
        for name, shape in self._spec.items():
            fan_in = math.prod(shape[:-1]) if len(shape) > 1 else shape[0]
            scale = np.float32(1.0 / math.sqrt(max(fan_in, 1)))
            weights[name] = rng.standard_normal(shape, dtype=np.float32) * scale
        return weights

    def train(
        self, weights: Weights, x: np.ndarray, y: np.ndarray, params: TrainParams, rng: np.random.Generator
    ) -> Weights:
        validate_weights(weights, self._spec)
        scale = np.float32(_TRAIN_NOISE)
        result: Weights = {}
        for name in self._spec:
            noise = rng.standard_normal(self._spec[name], dtype=np.float32)
            noise *= scale
            noise += weights[name]
            result[name] = noise
        return result

    def evaluate(self, weights: Weights, x: np.ndarray, y: np.ndarray) -> Metrics:
        y = np.asarray(y)
        if len(y) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        rng = self._rng_for(weights, len(y))
        # Accuracy is a count of "correct" samples and the loss roughly tracks -log(accuracy), as a real
        # cross-entropy would, so dashboards and the publish-if-better rule see believable numbers.
        p = rng.uniform(0.05, 0.8)
        accuracy = int(rng.binomial(len(y), p)) / len(y)
        loss = -math.log(p) * rng.uniform(0.9, 1.3)
        return Metrics(loss=float(loss), accuracy=accuracy)

    def predict(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        n = len(x)
        return self._rng_for(weights, n).integers(0, self.num_classes, size=n, dtype=np.int64)

    def release(self) -> None:
        """Nothing to drop."""

    def _rng_for(self, weights: Weights, n: int) -> np.random.Generator:
        seed = int.from_bytes(self._digest(weights)[:16], "little")
        return np.random.default_rng([seed, n])

    def _digest(self, weights: Weights) -> bytes:
        arrays = tuple(weights.get(name) for name in self._spec)
        # only arrays nobody can write to (decode_weights makes them so) can keep their digest
        frozen = len(weights) == len(self._spec) and all(
            isinstance(a, np.ndarray) and not a.flags.writeable for a in arrays
        )
        first = arrays[0]
        if frozen and isinstance(first, np.ndarray):
            known = self._digests.get(id(first))
            if known is not None and all(ref() is a for ref, a in zip(known[0], arrays, strict=True)):
                return known[1]  # validated when first hashed, and unchangeable since
        validate_weights(weights, self._spec)
        digest = weights_digest(weights)
        if frozen and isinstance(first, np.ndarray):
            key, digests = id(first), self._digests

            def forget(_gone: object) -> None:
                digests.pop(key, None)

            refs = (weakref.ref(first, forget), *(weakref.ref(a) for a in arrays[1:] if a is not None))
            digests[key] = (refs, digest)
        return digest
