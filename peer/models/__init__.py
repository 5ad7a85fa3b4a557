"""Model backends and the wire format of their weights."""

from __future__ import annotations

from pathlib import Path

from peer.models.base import Metrics, Model, ModelError, TrainParams, Weights, WeightSpec
from peer.models.fake import LEAF_CNN_PARAMS, FakeModel
from peer.models.numpy_nets import MLP, LeafCNN, SmallCNN, SoftmaxRegression
from peer.models.weights import (
    WeightsError,
    average_weights,
    check_layout,
    decode_weights,
    encode_weights,
    validate_weights,
    weights_digest,
    weights_nbytes,
    weights_spec,
)

MODEL_NAMES: tuple[str, ...] = ("softmax", "mlp", "cnn", "femnist-cnn", "fake", "tflite")


def create_model(
    name: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    tflite_arch: str = "mlp",
    tflite_path: Path | None = None,
    batch_size: int | None = None,
    fake_params: int = LEAF_CNN_PARAMS,
) -> Model:
    """Build a model by its configuration name (the `MODEL` setting) with default hyperparameters.

    "tflite" is the layout of the numpy model `tflite_arch` run by a TensorFlow Lite runtime, from the
    packaged .tflite file or `tflite_path`; it raises ModelError (one line) for a missing runtime, a bad file
    or a `batch_size` above the file's train batch. `fake_params` sizes the fake model (default: the LEAF
    CNN's parameter count).
    """
    shape = tuple(int(d) for d in input_shape)
    if name == "softmax":
        return SoftmaxRegression(shape, num_classes)
    if name == "mlp":
        return MLP(shape, num_classes)
    if name == "cnn":
        return SmallCNN(shape, num_classes)
    if name == "femnist-cnn":
        return LeafCNN(shape, num_classes)
    if name == "tflite":
        from peer.models.tflite import create_tflite_model  # imports no runtime until a model is built

        return create_tflite_model(tflite_arch, shape, num_classes, path=tflite_path, batch_size=batch_size)
    if name == "fake":
        return FakeModel(fake_params, input_shape=shape, num_classes=num_classes)
    raise ValueError(f"unknown model {name!r}; valid names: {', '.join(MODEL_NAMES)}")


__all__ = [
    "LEAF_CNN_PARAMS",
    "MLP",
    "MODEL_NAMES",
    "FakeModel",
    "LeafCNN",
    "Metrics",
    "Model",
    "ModelError",
    "SmallCNN",
    "SoftmaxRegression",
    "TrainParams",
    "WeightSpec",
    "Weights",
    "WeightsError",
    "average_weights",
    "check_layout",
    "create_model",
    "decode_weights",
    "encode_weights",
    "validate_weights",
    "weights_digest",
    "weights_nbytes",
    "weights_spec",
]
