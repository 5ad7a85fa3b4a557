"""What the committed .tflite models are: which numpy layouts, which train batch, and how weights are named.

Shared by the build script (scripts/build_tflite_models.py, run with TensorFlow) and the runtime backend
(peer/models/tflite.py, run without it), and hashed into the manifest so a test notices when the committed
files no longer match what the build would produce.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from functools import partial
from pathlib import Path

from peer.models.numpy_nets import MLP, LeafCNN, SmallCNN, SoftmaxRegression

NumpyTwin = SoftmaxRegression | MLP | SmallCNN

MODELS_DIR = Path(__file__).with_name("tflite_models")
MANIFEST = "manifest.json"
# The train signature's fixed batch, the default BATCH_SIZE: smaller batches train exactly (the rest of the
# batch is masked out), larger ones are refused at start-up (padding costs compute, so it is not larger).
TRAIN_BATCH = 10
# TFLITE_ARCH: the numpy model whose layout (names, shapes, initial weights) the .tflite model shares.
TFLITE_ARCHS: dict[str, Callable[[tuple[int, ...], int], NumpyTwin]] = {
    "softmax": SoftmaxRegression,
    "mlp": MLP,
    "cnn": SmallCNN,
    "femnist-cnn": LeafCNN,
}
_DIGITS, _FEMNIST = ((8, 8, 1), 10), ((28, 28, 1), 62)
# The models in peer/models/tflite_models/: every architecture for both datasets, LEAF's CNN for FEMNIST.
BUILT: tuple[tuple[str, tuple[tuple[int, ...], int]], ...] = (
    *((arch, data) for arch in ("softmax", "mlp", "cnn") for data in (_DIGITS, _FEMNIST)),
    ("femnist-cnn", _FEMNIST),
)
TFLITE_MODELS: tuple[Callable[[], NumpyTwin], ...] = tuple(
    partial(TFLITE_ARCHS[arch], shape, classes) for arch, (shape, classes) in BUILT
)
# Files whose text decides the built bytes (with the layouts below and the TensorFlow version).
BUILD_INPUTS = ("scripts/build_tflite_models.py", "peer/models/tflite_layout.py")


def signature_name(weight: str) -> str:
    """The name of a weight in the signatures: "dense_1/kernel" -> "dense_1__kernel"."""
    return weight.replace("/", "__")


def weight_name(signature: str) -> str:
    return signature.replace("__", "/")


def build_inputs_digest(root: Path) -> str:
    """sha256 over the build inputs' text and every built model's layout, in a fixed order."""
    digest = hashlib.sha256()
    for relative in BUILD_INPUTS:
        digest.update(relative.encode() + b"\0" + (root / relative).read_bytes() + b"\0")
    layouts = [
        {"architecture": net.architecture, "input_shape": net.input_shape, "spec": net.weight_spec()}
        for net in (factory() for factory in TFLITE_MODELS)
    ]
    digest.update(json.dumps(layouts, sort_keys=True).encode())
    digest.update(f"train_batch={TRAIN_BATCH}".encode())
    return digest.hexdigest()
