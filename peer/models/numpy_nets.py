"""Pure-numpy models with hand-written backprop: they run wherever numpy does, including 32-bit Pis.

All three share one training loop (minibatch SGD on softmax cross-entropy) and differ only in their
forward and backward passes. Weight names and layouts follow Keras (kernels (in, out), conv kernels
(kh, kw, cin, cout), NHWC activations flattened row-major) so a TFLite model can share the same tangle.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from peer.models.base import Metrics, TrainParams, Weights, WeightSpec
from peer.models.weights import check_layout, validate_weights

# Evaluation runs in chunks so a large test set never needs all im2col buffers at once (Pis have little RAM).
_EVAL_CHUNK = 256
_POOL_TAPS = ((0, 0), (0, 1), (1, 0), (1, 1))

Cache = dict[str, Any]


class _NumpyNet:
    """Shared plumbing: input checks, SGD loop, evaluation. Subclasses define the layers."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        input_shape = tuple(int(d) for d in input_shape)
        if not input_shape or any(d < 1 for d in input_shape):
            raise ValueError(f"input shape must be non-empty positive dimensions, got {input_shape}")
        if num_classes < 2:
            raise ValueError(f"need at least 2 classes, got {num_classes}")
        self.input_shape = input_shape
        self.num_classes = int(num_classes)
        self.num_features = math.prod(input_shape)

    @property
    def architecture(self) -> str:
        raise NotImplementedError

    def weight_spec(self) -> WeightSpec:
        raise NotImplementedError

    def init_weights(self, rng: np.random.Generator) -> Weights:
        raise NotImplementedError

    def _forward(
        self, w: Mapping[str, np.ndarray], x: np.ndarray, *, need_cache: bool = True
    ) -> tuple[np.ndarray, Cache]:
        raise NotImplementedError

    def _backward(self, w: Mapping[str, np.ndarray], cache: Cache, dlogits: np.ndarray) -> Weights:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.architecture!r})"

    def loss_and_grads(
        self, weights: Mapping[str, np.ndarray], x: np.ndarray, y: np.ndarray
    ) -> tuple[float, Weights]:
        """Mean cross-entropy over the batch and its gradient per weight.

        Computes in the dtype of the weights, so a float64 copy gives exact values for gradient checks.
        """
        check_layout(weights, self.weight_spec())
        dtype = next(iter(weights.values())).dtype
        xb = self._prepare_x(x, dtype)
        yb = self._prepare_y(y, len(xb))
        logits, cache = self._forward(weights, xb)
        loss, dlogits = _softmax_cross_entropy(logits, yb)
        return loss, self._backward(weights, cache, dlogits)

    def train(
        self, weights: Weights, x: np.ndarray, y: np.ndarray, params: TrainParams, rng: np.random.Generator
    ) -> Weights:
        validate_weights(weights, self.weight_spec())
        check_params(params)
        xs = self._prepare_x(x, np.float32)
        ys = self._prepare_y(y, len(xs))
        w = {name: np.array(array, dtype=np.float32, copy=True) for name, array in weights.items()}
        lr = np.float32(params.learning_rate)
        n = len(xs)
        for _ in range(params.epochs):
            order = rng.permutation(n)
            for start in range(0, n, params.batch_size):
                batch = order[start : start + params.batch_size]
                logits, cache = self._forward(w, xs[batch])
                _, dlogits = _softmax_cross_entropy(logits, ys[batch])
                for name, grad in self._backward(w, cache, dlogits).items():
                    grad *= lr
                    w[name] -= grad
        return w

    def evaluate(self, weights: Weights, x: np.ndarray, y: np.ndarray) -> Metrics:
        validate_weights(weights, self.weight_spec())
        xs = self._prepare_x(x, np.float32)
        ys = self._prepare_y(y, len(xs))
        if len(xs) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        loss_sum = 0.0
        correct = 0
        for start in range(0, len(xs), _EVAL_CHUNK):
            logits = self._logits(weights, xs[start : start + _EVAL_CHUNK])
            yc = ys[start : start + _EVAL_CHUNK]
            loss_sum += float(cross_entropy_per_sample(logits, yc).sum(dtype=np.float64))
            correct += int((logits.argmax(axis=1) == yc).sum())
        return Metrics(loss=loss_sum / len(xs), accuracy=correct / len(xs))

    def predict(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        validate_weights(weights, self.weight_spec())
        xs = self._prepare_x(x, np.float32)
        out = np.empty(len(xs), dtype=np.int64)
        for start in range(0, len(xs), _EVAL_CHUNK):
            chunk = xs[start : start + _EVAL_CHUNK]
            out[start : start + len(chunk)] = self._logits(weights, chunk).argmax(axis=1)
        return out

    def release(self) -> None:
        """Nothing to drop: a numpy model keeps no buffers between calls."""

    def _logits(self, w: Mapping[str, np.ndarray], x: np.ndarray) -> np.ndarray:
        return self._forward(w, x, need_cache=False)[0]

    def _prepare_x(self, x: np.ndarray, dtype: np.dtype | type) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim < 1:
            raise ValueError("x must have a leading sample dimension")
        if tuple(x.shape[1:]) != self.input_shape:
            if math.prod(x.shape[1:]) != self.num_features:
                raise ValueError(f"x has sample shape {tuple(x.shape[1:])}, expected {self.input_shape}")
            x = x.reshape((len(x), *self.input_shape))
        return x.astype(dtype, copy=False)

    def _prepare_y(self, y: np.ndarray, n: int) -> np.ndarray:
        y = np.asarray(y)
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},), got {y.shape}")
        if not np.issubdtype(y.dtype, np.integer):
            raise ValueError(f"labels must be integers, got {y.dtype}")
        if n and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(f"labels must be in [0, {self.num_classes}), got [{y.min()}, {y.max()}]")
        return y.astype(np.int64, copy=False)


class SoftmaxRegression(_NumpyNet):
    """Multinomial logistic regression: one dense layer."""

    @property
    def architecture(self) -> str:
        return f"softmax-{self.num_features}-{self.num_classes}"

    def weight_spec(self) -> WeightSpec:
        return {"dense/kernel": (self.num_features, self.num_classes), "dense/bias": (self.num_classes,)}

    def init_weights(self, rng: np.random.Generator) -> Weights:
        return {
            "dense/kernel": _glorot_uniform(rng, (self.num_features, self.num_classes)),
            "dense/bias": np.zeros(self.num_classes, dtype=np.float32),
        }

    def _forward(
        self, w: Mapping[str, np.ndarray], x: np.ndarray, *, need_cache: bool = True
    ) -> tuple[np.ndarray, Cache]:
        flat = x.reshape(len(x), -1)
        return flat @ w["dense/kernel"] + w["dense/bias"], {"x": flat}

    def _backward(self, w: Mapping[str, np.ndarray], cache: Cache, dlogits: np.ndarray) -> Weights:
        return {"dense/kernel": cache["x"].T @ dlogits, "dense/bias": dlogits.sum(axis=0)}


class MLP(_NumpyNet):
    """One hidden ReLU layer."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int, hidden: int = 128) -> None:
        super().__init__(input_shape, num_classes)
        if hidden < 1:
            raise ValueError(f"hidden must be positive, got {hidden}")
        self.hidden = int(hidden)

    @property
    def architecture(self) -> str:
        return f"mlp-{self.num_features}-{self.hidden}-{self.num_classes}"

    def weight_spec(self) -> WeightSpec:
        return {
            "dense_1/kernel": (self.num_features, self.hidden),
            "dense_1/bias": (self.hidden,),
            "dense_2/kernel": (self.hidden, self.num_classes),
            "dense_2/bias": (self.num_classes,),
        }

    def init_weights(self, rng: np.random.Generator) -> Weights:
        return {
            "dense_1/kernel": _he_normal(rng, (self.num_features, self.hidden), self.num_features),
            "dense_1/bias": np.zeros(self.hidden, dtype=np.float32),
            "dense_2/kernel": _glorot_uniform(rng, (self.hidden, self.num_classes)),
            "dense_2/bias": np.zeros(self.num_classes, dtype=np.float32),
        }

    def _forward(
        self, w: Mapping[str, np.ndarray], x: np.ndarray, *, need_cache: bool = True
    ) -> tuple[np.ndarray, Cache]:
        flat = x.reshape(len(x), -1)
        h = np.maximum(flat @ w["dense_1/kernel"] + w["dense_1/bias"], 0)
        return h @ w["dense_2/kernel"] + w["dense_2/bias"], {"x": flat, "h": h}

    def _backward(self, w: Mapping[str, np.ndarray], cache: Cache, dlogits: np.ndarray) -> Weights:
        h = cache["h"]
        dh = dlogits @ w["dense_2/kernel"].T
        dh *= h > 0
        return {
            "dense_1/kernel": cache["x"].T @ dh,
            "dense_1/bias": dh.sum(axis=0),
            "dense_2/kernel": h.T @ dlogits,
            "dense_2/bias": dlogits.sum(axis=0),
        }


class SmallCNN(_NumpyNet):
    """Two same-padded conv + ReLU + 2x2 max-pool blocks, a dense ReLU layer and the output layer.

    The defaults are the small CNN (3x3 kernels, 8/16 channels, dense 128); `LeafCNN` is the same network with
    the LEAF FEMNIST sizes.
    """

    def __init__(
        self,
        input_shape: tuple[int, ...],
        num_classes: int,
        channels: tuple[int, int] = (8, 16),
        dense: int = 128,
        kernel: int = 3,
    ) -> None:
        super().__init__(input_shape, num_classes)
        if len(self.input_shape) != 3:
            raise ValueError(f"SmallCNN needs input shape (height, width, channels), got {self.input_shape}")
        height, width, _ = self.input_shape
        if height < 4 or width < 4:
            raise ValueError(f"SmallCNN needs at least 4x4 inputs for two 2x2 pools, got {height}x{width}")
        if len(channels) != 2 or min(channels) < 1 or dense < 1:
            raise ValueError(
                f"need two positive conv channels and a positive dense size, got {channels}, {dense}"
            )
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"the conv kernel size must be odd and positive (same padding), got {kernel}")
        self.channels = (int(channels[0]), int(channels[1]))
        self.dense = int(dense)
        self.kernel = int(kernel)
        # Pools floor odd sizes, like Keras' default "valid" pooling.
        self.pooled_shape = (height // 2 // 2, width // 2 // 2, self.channels[1])

    @property
    def architecture(self) -> str:
        h, w, c = self.input_shape
        c1, c2 = self.channels
        # 3x3 kernels keep the name they always had
        size = "" if self.kernel == 3 else str(self.kernel)
        return f"cnn{size}-{h}x{w}x{c}-{c1}-{c2}-{self.dense}-{self.num_classes}"

    def weight_spec(self) -> WeightSpec:
        cin = self.input_shape[2]
        c1, c2 = self.channels
        flat = math.prod(self.pooled_shape)
        return {
            "conv_1/kernel": (self.kernel, self.kernel, cin, c1),
            "conv_1/bias": (c1,),
            "conv_2/kernel": (self.kernel, self.kernel, c1, c2),
            "conv_2/bias": (c2,),
            "dense_1/kernel": (flat, self.dense),
            "dense_1/bias": (self.dense,),
            "dense_2/kernel": (self.dense, self.num_classes),
            "dense_2/bias": (self.num_classes,),
        }

    def init_weights(self, rng: np.random.Generator) -> Weights:
        spec = self.weight_spec()
        weights: Weights = {}
        for name, shape in spec.items():
            if name.endswith("/bias"):
                weights[name] = np.zeros(shape, dtype=np.float32)
            elif name == "dense_2/kernel":
                weights[name] = _glorot_uniform(rng, shape)
            else:
                weights[name] = _he_normal(rng, shape, math.prod(shape[:-1]))
        return weights

    def _forward(
        self, w: Mapping[str, np.ndarray], x: np.ndarray, *, need_cache: bool = True
    ) -> tuple[np.ndarray, Cache]:
        a1, cols1 = _conv(x, w["conv_1/kernel"], w["conv_1/bias"])
        np.maximum(a1, 0, out=a1)
        p1, arg1 = _maxpool2(a1, need_index=need_cache)
        a2, cols2 = _conv(p1, w["conv_2/kernel"], w["conv_2/bias"])
        np.maximum(a2, 0, out=a2)
        p2, arg2 = _maxpool2(a2, need_index=need_cache)
        flat = p2.reshape(len(x), -1)
        h = np.maximum(flat @ w["dense_1/kernel"] + w["dense_1/bias"], 0)
        logits = h @ w["dense_2/kernel"] + w["dense_2/bias"]
        cache = {
            "cols1": cols1, "a1": a1, "arg1": arg1, "p1_shape": p1.shape,
            "cols2": cols2, "a2": a2, "arg2": arg2, "p2_shape": p2.shape,
            "flat": flat, "h": h,
        }  # fmt: skip
        return logits, cache

    def _backward(self, w: Mapping[str, np.ndarray], cache: Cache, dlogits: np.ndarray) -> Weights:
        h = cache["h"]
        grads: Weights = {"dense_2/kernel": h.T @ dlogits, "dense_2/bias": dlogits.sum(axis=0)}
        dh = dlogits @ w["dense_2/kernel"].T
        dh *= h > 0
        grads["dense_1/kernel"] = cache["flat"].T @ dh
        grads["dense_1/bias"] = dh.sum(axis=0)
        dp2 = (dh @ w["dense_1/kernel"].T).reshape(cache["p2_shape"])
        da2 = _maxpool2_backward(dp2, cache["arg2"], cache["a2"].shape)
        da2 *= cache["a2"] > 0
        grads["conv_2/kernel"], grads["conv_2/bias"], dp1 = _conv_backward(
            da2, cache["cols2"], w["conv_2/kernel"], need_input_grad=True
        )
        if dp1 is None:  # need_input_grad=True always gives it; a real check survives `python -O`
            raise RuntimeError("conv_2 backward returned no input gradient")
        da1 = _maxpool2_backward(dp1, cache["arg1"], cache["a1"].shape)
        da1 *= cache["a1"] > 0
        # The input needs no gradient, which saves the most expensive col2im of the pass.
        grads["conv_1/kernel"], grads["conv_1/bias"], _ = _conv_backward(
            da1, cache["cols1"], w["conv_1/kernel"], need_input_grad=False
        )
        return grads


class LeafCNN(SmallCNN):
    """The LEAF FEMNIST CNN of the 2020 prototype and paper (5x5 convs, 32/64 channels, dense 2048): with
    a (28, 28, 1) input and 62 classes it has 6,603,710 parameters, the fake model's layout."""

    def __init__(self, input_shape: tuple[int, ...], num_classes: int) -> None:
        super().__init__(input_shape, num_classes, channels=(32, 64), dense=2048, kernel=5)


def _softmax_cross_entropy(logits: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean loss and its gradient with respect to the logits."""
    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    total = e.sum(axis=1, keepdims=True)
    rows = np.arange(len(y))
    loss = float(np.mean(np.log(total[:, 0]) - z[rows, y]))
    probs = e / total
    probs[rows, y] -= 1
    probs /= len(y)
    return loss, probs


def cross_entropy_per_sample(logits: np.ndarray, y: np.ndarray) -> np.ndarray:
    z = logits - logits.max(axis=1, keepdims=True)
    return np.log(np.exp(z).sum(axis=1)) - z[np.arange(len(y)), y]


def _conv(x: np.ndarray, kernel: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Same-padded kxk convolution as one matmul over im2col patches ordered (kh, kw, cin)."""
    n, height, width, cin = x.shape
    k = kernel.shape[0]
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = sliding_window_view(padded, (k, k), axis=(1, 2))  # (n, h, w, cin, k, k), a view
    cols = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * height * width, k * k * cin)
    out = cols @ kernel.reshape(k * k * cin, -1) + bias
    return out.reshape(n, height, width, -1), cols


def _conv_backward(
    dout: np.ndarray, cols: np.ndarray, kernel: np.ndarray, *, need_input_grad: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    n, height, width, cout = dout.shape
    k, cin = kernel.shape[0], kernel.shape[2]
    pad = k // 2
    d2 = dout.reshape(-1, cout)
    dkernel = (cols.T @ d2).reshape(kernel.shape)
    dbias = d2.sum(axis=0)
    if not need_input_grad:
        return dkernel, dbias, None
    dcols = (d2 @ kernel.reshape(k * k * cin, cout).T).reshape(n, height, width, k, k, cin)
    dpadded = np.zeros((n, height + 2 * pad, width + 2 * pad, cin), dtype=dout.dtype)
    # col2im: k*k shifted adds (a loop over kernel taps, not over pixels or samples).
    for i in range(k):
        for j in range(k):
            dpadded[:, i : i + height, j : j + width, :] += dcols[:, :, :, i, j, :]
    return dkernel, dbias, dpadded[:, pad : pad + height, pad : pad + width, :]


def _maxpool2(x: np.ndarray, *, need_index: bool) -> tuple[np.ndarray, np.ndarray | None]:
    """2x2 max-pool with stride 2, flooring odd sizes.

    With need_index, also returns which of the four window positions (0..3, row-major) won, for backprop.
    Four strided views and elementwise maxima are about twice as fast as reshaping into windows + argmax.
    """
    height, width = x.shape[1:3]
    h2, w2 = height // 2, width // 2
    taps = [x[:, i : h2 * 2 : 2, j : w2 * 2 : 2, :] for i, j in _POOL_TAPS]
    out = np.maximum(np.maximum(taps[0], taps[1]), np.maximum(taps[2], taps[3]))
    if not need_index:
        return out, None
    index = np.full(out.shape, 3, dtype=np.int8)
    # Assigned in reverse so the first maximum wins ties: gradients go to exactly one input, as in argmax.
    for k in (2, 1, 0):
        index[taps[k] == out] = k
    return out, index


def _maxpool2_backward(dout: np.ndarray, index: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
    _, h2, w2, _ = dout.shape
    dx = np.zeros(input_shape, dtype=dout.dtype)
    for k, (i, j) in enumerate(_POOL_TAPS):
        dx[:, i : h2 * 2 : 2, j : w2 * 2 : 2, :] = np.where(index == k, dout, 0)
    return dx


def _he_normal(rng: np.random.Generator, shape: tuple[int, ...], fan_in: int) -> np.ndarray:
    return rng.standard_normal(shape, dtype=np.float32) * np.float32(math.sqrt(2.0 / fan_in))


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    fan_in, fan_out = math.prod(shape[:-1]), shape[-1]
    limit = math.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def check_params(params: TrainParams) -> None:
    if not (math.isfinite(params.learning_rate) and params.learning_rate > 0):
        raise ValueError(f"learning rate must be a positive number, got {params.learning_rate}")
    if params.batch_size < 1:
        raise ValueError(f"batch size must be at least 1, got {params.batch_size}")
    if params.epochs < 0:
        raise ValueError(f"epochs must not be negative, got {params.epochs}")
