"""Build the TensorFlow Lite models of MODEL=tflite from the numpy models' layouts (needs tensorflow-cpu).

Run through `make tflite-models` (writes peer/models/tflite_models/) or `make tflite-models-check` (builds
into a temporary folder and compares the bytes with the committed files); both use the venv of
scripts/tf-venv.sh, so TensorFlow never enters the peer's dependencies.

Every model has four signatures and only TFLite built-in ops, so the small runtimes (ai-edge-litert,
tflite-runtime) train it without TensorFlow:
  train(x[B,...], y[B], mask[B], lr[]) -> loss   one SGD step, mean cross-entropy of the unmasked samples
  infer(x[N,...]) -> logits
  get_weights() -> one output per weight        set_weights(one input per weight) -> ok
Weight names are the numpy backend's with "/" written as "__" (signature names must be identifiers); shapes
and layouts are the numpy backend's, so peers on either backend share one tangle. The ops follow
REFERENCE.md: relu is maximum(x, 0), a conv is pad + slice + concat + matmul, a max-pool is reshape +
reduce_max in at most 4 dimensions, and the train batch is fixed (B, padded with mask 0 by the runtime).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
FIXTURES_DIR = ROOT / "tests/fixtures/tflite"
FIXTURE_INFER_ONLY = "infer-only-mlp-64-128-10.tflite"
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from peer.models.numpy_nets import MLP, SmallCNN, SoftmaxRegression  # noqa: E402
from peer.models.tflite_layout import (  # noqa: E402
    BUILD_INPUTS,
    MANIFEST,
    MODELS_DIR,
    TFLITE_MODELS,
    TRAIN_BATCH,
    build_inputs_digest,
    signature_name,
)

Net = SoftmaxRegression | MLP | SmallCNN
Forward = Callable[[dict[str, tf.Variable], tf.Tensor], tf.Tensor]


def relu(x: tf.Tensor) -> tf.Tensor:
    # maximum's gradient goes to its first argument on ties: 0 first gives x no gradient at exactly 0, as
    # numpy's relu (and pre-activations are exactly 0 wherever a conv sees only zero padding and zero pixels)
    return tf.maximum(0.0, x)


def dense(w: dict[str, tf.Variable], layer: str, x: tf.Tensor) -> tf.Tensor:
    return tf.matmul(x, w[f"{layer}/kernel"]) + w[f"{layer}/bias"]


def conv(x: tf.Tensor, kernel: tf.Variable, bias: tf.Variable) -> tf.Tensor:
    """Same-padded kxk conv as im2col: pad, k*k slices concatenated in (kh, kw, cin) order, one matmul.

    The batch dimension stays -1 everywhere: infer takes any number of samples."""
    _, height, width, cin = x.shape
    k = int(kernel.shape[0])
    pad = k // 2
    padded = tf.pad(x, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    taps = [tf.slice(padded, [0, i, j, 0], [-1, height, width, cin]) for i in range(k) for j in range(k)]
    cols = tf.reshape(tf.concat(taps, axis=3), [-1, k * k * cin])
    out = tf.matmul(cols, tf.reshape(kernel, [k * k * cin, -1])) + bias
    return tf.reshape(out, [-1, height, width, int(kernel.shape[3])])


def maxpool2(x: tf.Tensor) -> tf.Tensor:
    """2x2 max-pool, stride 2, odd sizes floored: rows then columns, each a 3-d reshape + reduce_max."""
    _, height, width, channels = x.shape
    h2, w2 = height // 2, width // 2
    x = tf.slice(x, [0, 0, 0, 0], [-1, h2 * 2, w2 * 2, channels])
    rows = tf.reduce_max(tf.reshape(x, [-1, 2, w2 * 2 * channels]), axis=1)
    cols = tf.reduce_max(tf.reshape(rows, [-1, 2, channels]), axis=1)
    return tf.reshape(cols, [-1, h2, w2, channels])


def flatten(x: tf.Tensor) -> tf.Tensor:
    return tf.reshape(x, [-1, int(np.prod(x.shape[1:]))])


def forward_for(net: Net) -> Forward:
    if isinstance(net, SmallCNN):

        def cnn(w: dict[str, tf.Variable], x: tf.Tensor) -> tf.Tensor:
            a = maxpool2(relu(conv(x, w["conv_1/kernel"], w["conv_1/bias"])))
            a = maxpool2(relu(conv(a, w["conv_2/kernel"], w["conv_2/bias"])))
            return dense(w, "dense_2", relu(dense(w, "dense_1", flatten(a))))

        return cnn
    if isinstance(net, MLP):
        return lambda w, x: dense(w, "dense_2", relu(dense(w, "dense_1", flatten(x))))
    return lambda w, x: dense(w, "dense", flatten(x))


def cross_entropy(logits: tf.Tensor, y: tf.Tensor, num_classes: int) -> tf.Tensor:
    """Per-sample softmax cross-entropy from built-in ops (the fused TF op has no TFLite gradient)."""
    z = logits - tf.stop_gradient(tf.reduce_max(logits, axis=1, keepdims=True))
    log_total = tf.math.log(tf.reduce_sum(tf.exp(z), axis=1))
    picked = tf.reduce_sum(z * tf.one_hot(y, num_classes), axis=1)
    return log_total - picked


class TrainableNet(tf.Module):
    def __init__(self, net: Net, batch: int) -> None:
        super().__init__()
        self.net = net
        self.spec = net.weight_spec()
        self.forward = forward_for(net)
        # Zeros: the runtime always sets the weights before use, and zeros keep the file small.
        self.w = {
            name: tf.Variable(tf.zeros(shape), name=signature_name(name)) for name, shape in self.spec.items()
        }
        sample = list(net.input_shape)
        train_spec = [
            tf.TensorSpec([batch, *sample], tf.float32, name="x"),
            tf.TensorSpec([batch], tf.int32, name="y"),
            tf.TensorSpec([batch], tf.float32, name="mask"),
            tf.TensorSpec([], tf.float32, name="lr"),
        ]
        self.train = tf.function(self._train, input_signature=train_spec)
        infer_spec = [tf.TensorSpec([None, *sample], tf.float32, name="x")]
        self.infer = tf.function(self._infer, input_signature=infer_spec)
        self.get_weights = tf.function(self._get_weights, input_signature=[])
        weight_specs = [tf.TensorSpec(shape, tf.float32, signature_name(n)) for n, shape in self.spec.items()]
        self.set_weights = tf.function(self._set_weights, input_signature=weight_specs)

    def _train(self, x: tf.Tensor, y: tf.Tensor, mask: tf.Tensor, lr: tf.Tensor) -> dict[str, tf.Tensor]:
        variables = list(self.w.values())
        with tf.GradientTape() as tape:
            per_sample = cross_entropy(self.forward(self.w, x), y, self.net.num_classes)
            # the mean over the real samples: a padded last batch trains exactly like numpy's short one
            loss = tf.reduce_sum(per_sample * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)
        for variable, grad in zip(variables, tape.gradient(loss, variables), strict=True):
            variable.assign_sub(lr * grad)
        return {"loss": loss}

    def _infer(self, x: tf.Tensor) -> dict[str, tf.Tensor]:
        return {"logits": self.forward(self.w, x)}

    def _get_weights(self) -> dict[str, tf.Tensor]:
        return {signature_name(name): tf.identity(v) for name, v in self.w.items()}

    def _set_weights(self, *values: tf.Tensor) -> dict[str, tf.Tensor]:
        for variable, value in zip(self.w.values(), values, strict=True):
            variable.assign(value)
        return {"ok": tf.constant(1, tf.int32)}


def convert(
    net: Net, batch: int, keys: tuple[str, ...] = ("train", "infer", "get_weights", "set_weights")
) -> bytes:
    module = TrainableNet(net, batch)
    signatures = {key: getattr(module, key).get_concrete_function() for key in keys}
    with tempfile.TemporaryDirectory() as folder:
        tf.saved_model.save(module, folder, signatures=signatures)
        converter = tf.lite.TFLiteConverter.from_saved_model(folder, signature_keys=list(signatures))
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        converter.experimental_enable_resource_variables = True
        return bytes(converter.convert())


def self_test(net: Net, model: bytes, batch: int) -> None:
    """The converted model trains like the numpy one: one step from the same weights on the same batch."""
    interpreter = tf.lite.Interpreter(model_content=model)
    rng = np.random.default_rng(0)
    weights = net.init_weights(rng)
    interpreter.get_signature_runner("set_weights")(**{signature_name(n): a for n, a in weights.items()})
    x = rng.uniform(0, 1, (batch, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.num_classes, batch)
    loss, grads = net.loss_and_grads(weights, x, y)
    out = interpreter.get_signature_runner("train")(
        x=x, y=y.astype(np.int32), mask=np.ones(batch, np.float32), lr=np.float32(0.1)
    )
    got = interpreter.get_signature_runner("get_weights")()
    assert abs(float(out["loss"]) - loss) < 1e-4, (float(out["loss"]), loss)
    for name, grad in grads.items():
        np.testing.assert_allclose(got[signature_name(name)], weights[name] - 0.1 * grad, atol=1e-5)


def check(built: Path, committed: Path) -> list[str]:
    """The files of a fresh build that differ from the committed ones, byte for byte."""
    names = sorted({p.name for p in built.iterdir()} | {p.name for p in committed.iterdir()})
    differing = [
        str(committed / name)
        for name in names
        if not (built / name).is_file()
        or not (committed / name).is_file()
        or (built / name).read_bytes() != (committed / name).read_bytes()
    ]
    print(f"{committed}: {len(names) - len(differing)} of {len(names)} files match a fresh build")
    return differing


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--out", type=Path, default=MODELS_DIR, help="folder to write")
    parser.add_argument("--fixtures", type=Path, default=FIXTURES_DIR, help="folder of the test fixtures")
    parser.add_argument(
        "--check", action="store_true", help="build into a temporary folder and compare with the folders"
    )
    args = parser.parse_args()
    if not args.check:
        build(args.out, args.fixtures)
        return
    with tempfile.TemporaryDirectory() as folder:
        build(Path(folder) / "models", Path(folder) / "fixtures")
        differing = check(Path(folder) / "models", args.out) + check(Path(folder) / "fixtures", args.fixtures)
    for path in differing:
        print(f"{path}: differs from what scripts/build_tflite_models.py builds", file=sys.stderr)
    if differing:
        print("run `make tflite-models` and commit the result", file=sys.stderr)
        raise SystemExit(1)


def build(out: Path, fixtures: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    fixtures.mkdir(parents=True, exist_ok=True)
    tf.keras.utils.set_random_seed(0)
    # a model without the train, get_weights and set_weights signatures, which the backend must refuse
    infer_only = convert(MLP((8, 8, 1), 10), TRAIN_BATCH, ("infer",))
    (fixtures / FIXTURE_INFER_ONLY).write_bytes(infer_only)
    files = {}
    for twin in TFLITE_MODELS:
        net = twin()
        model = convert(net, TRAIN_BATCH)
        self_test(net, model, TRAIN_BATCH)
        name = f"{net.architecture}.tflite"
        (out / name).write_bytes(model)
        files[name] = {"bytes": len(model), "sha256": hashlib.sha256(model).hexdigest()}
        print(f"{name}: {len(model):,} bytes", flush=True)
    manifest = {
        "tensorflow": tf.__version__,
        "train_batch": TRAIN_BATCH,
        "build_inputs": sorted(BUILD_INPUTS),
        "build_inputs_sha256": build_inputs_digest(ROOT),
        "files": files,
        "fixtures": {FIXTURE_INFER_ONLY: hashlib.sha256(infer_only).hexdigest()},
    }
    (out / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
