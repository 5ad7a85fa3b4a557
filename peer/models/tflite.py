"""MODEL=tflite: the numpy models' layouts trained by a TensorFlow Lite runtime, without TensorFlow.

The .tflite files come from scripts/build_tflite_models.py (signatures train, infer, get_weights,
set_weights; built-in ops only). The runtime is ai-edge-litert (x86_64) or tflite-runtime (Linux aarch64 and
armv7l), whichever is installed. A model shares its numpy twin's architecture id, weight names, shapes and
initial weights, so numpy and tflite peers build on each other's transactions in one tangle.

Training: the train signature has a fixed batch (TRAIN_BATCH). Each SGD step takes BATCH_SIZE samples of
the epoch's permutation, as numpy does; a shorter batch (the last one of an epoch, or BATCH_SIZE below
TRAIN_BATCH) is padded with masked-out samples, so every step is the mean gradient of its real samples,
exactly numpy's step. No sample is dropped.
"""

from __future__ import annotations

import importlib
import platform
import threading
from pathlib import Path
from typing import Any

import numpy as np

from peer.memory import drop_file_pages
from peer.models.base import Metrics, ModelError, TrainParams, Weights, WeightSpec
from peer.models.numpy_nets import check_params, cross_entropy_per_sample
from peer.models.tflite_layout import MODELS_DIR, TFLITE_ARCHS, NumpyTwin, signature_name, weight_name
from peer.models.weights import validate_weights

SIGNATURES = ("train", "infer", "get_weights", "set_weights")
# Inference runs in fixed chunks (padded), so the runtime allocates its buffers once and a Pi never holds
# the activations of a whole test set (the LEAF CNN needs about 2.3 MB a sample).
INFER_CHUNK = 32
AI_EDGE_LITERT = "ai_edge_litert.interpreter"
TFLITE_RUNTIME = "tflite_runtime.interpreter"


def runtime_package(machine: str | None = None) -> str:
    """The pip requirement of the TensorFlow Lite runtime for a CPU architecture (platform.machine()).

    Linux aarch64 gets tflite-runtime, as armv7 does: ai-edge-litert's aarch64 wheels (1.4.0, 2.0.3, 2.3.0)
    crash in the train signature of these models (a heap read runs off its end, with or without XNNPACK and
    with reference kernels alone; seen under qemu-user 7.2 and 10.0), where tflite-runtime 2.14 trains.
    macOS on Apple silicon ("arm64") has ai-edge-litert wheels only."""
    machine = (machine or platform.machine()).lower()
    if machine in {"x86_64", "amd64", "arm64"}:
        return "ai-edge-litert"
    if machine == "aarch64" or machine.startswith(("armv7", "armv8l", "armhf")):
        return "tflite-runtime==2.14.0 (with numpy<2)"
    raise ModelError(f"MODEL=tflite: no TensorFlow Lite runtime wheel for {machine}; use a numpy MODEL")


def runtime_modules(machine: str | None = None) -> tuple[str, str]:
    """The runtimes' interpreter modules in the order tried: this machine's own runtime first, so an
    ai-edge-litert that happens to be installed on an aarch64 machine is not the one used."""
    try:
        if runtime_package(machine).startswith("tflite-runtime"):
            return (TFLITE_RUNTIME, AI_EDGE_LITERT)
    except ModelError:
        pass
    return (AI_EDGE_LITERT, TFLITE_RUNTIME)


def load_interpreter_class(machine: str | None = None) -> Any:
    """The Interpreter class of the installed runtime, or a ModelError saying what to install."""
    for module in runtime_modules(machine):
        try:
            return importlib.import_module(module).Interpreter
        except ImportError:
            continue
    raise ModelError(
        f"MODEL=tflite needs a TensorFlow Lite runtime: pip install '{runtime_package(machine)}' "
        f"(or 'learning-tangle[tflite]') on this {machine or platform.machine()} machine"
    )


def numpy_twin(arch: str, input_shape: tuple[int, ...], num_classes: int) -> NumpyTwin:
    factory = TFLITE_ARCHS.get(arch)
    if factory is None:
        raise ModelError(f"unknown TFLITE_ARCH {arch!r}; valid: {', '.join(TFLITE_ARCHS)}")
    return factory(tuple(int(d) for d in input_shape), int(num_classes))


class TFLiteModel:
    """A numpy model's layout, trained and evaluated by a .tflite file. Calls are serialised by a lock:
    the interpreter holds one set of weights at a time, and peers train and rate on worker threads."""

    def __init__(self, path: Path, twin: NumpyTwin, *, num_threads: int = 1) -> None:
        self.path = Path(path)
        self.twin = twin
        self._spec = twin.weight_spec()
        self._interpreter_class = load_interpreter_class()
        if not self.path.is_file():
            raise ModelError(f"{self.path}: no such TensorFlow Lite model file")
        self._num_threads = num_threads
        self._lock = threading.Lock()
        self._runners: dict[str, Any] = {}
        signatures = self._open()
        self._check_layout(signatures)
        self.train_batch = int(self._input_shape("train", "x")[0])

    def _open(self) -> dict[str, dict[str, list[str]]]:
        """Create the interpreter and its signature runners; returns the file's signature list."""
        try:
            # a path, not bytes: the runtime maps the file and the constants stay out of the Python heap
            interpreter = self._interpreter_class(model_path=str(self.path), num_threads=self._num_threads)
            signatures: dict[str, dict[str, list[str]]] = interpreter.get_signature_list()
        except (ValueError, RuntimeError) as error:
            reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
            raise ModelError(f"{self.path}: not a valid TensorFlow Lite model ({reason})") from None
        missing = [name for name in SIGNATURES if name not in signatures]
        if missing:
            raise ModelError(
                f"{self.path}: missing signatures {', '.join(missing)} (needs {', '.join(SIGNATURES)}; "
                "build it with scripts/build_tflite_models.py)"
            )
        self._runners = {name: interpreter.get_signature_runner(name) for name in SIGNATURES}
        # The first call runs the file's CALL_ONCE init, which copies the variables' initial values (zeros, a
        # whole weight set) out of the mapped file; they are never read again, so their pages are dropped.
        self._runners["get_weights"]()
        drop_file_pages(self.path)
        return signatures

    def _runner(self, signature: str) -> Any:
        """A signature runner, the interpreter created again if release() dropped it (under the lock)."""
        if not self._runners:
            self._open()
        return self._runners[signature]

    def release(self) -> None:
        """Drop the interpreter until the next call: its variables and one arena per signature (8.6 weight
        sets on the LEAF CNN) would otherwise stay resident between a daemon's rounds. The file was checked
        at start-up; creating the interpreter again costs a fraction of a round."""
        with self._lock:
            self._runners = {}

    # --- start-up validation ---------------------------------------------------------------------------
    def _input_shape(self, signature: str, name: str) -> tuple[int, ...]:
        details = self._runners[signature].get_input_details()[name]
        return tuple(int(d) for d in details["shape_signature"])

    def _check_layout(self, signatures: dict[str, dict[str, list[str]]]) -> None:
        expected = {signature_name(name) for name in self._spec}
        for signature, side in (("set_weights", "inputs"), ("get_weights", "outputs")):
            got = set(signatures[signature][side])
            if got != expected:
                missing = ", ".join(sorted(weight_name(n) for n in expected - got)) or "none"
                unexpected = ", ".join(sorted(weight_name(n) for n in got - expected)) or "none"
                raise ModelError(
                    f"{self.path}: {signature} {side} are not the weights of {self.twin.architecture} "
                    f"(missing: {missing}; unexpected: {unexpected})"
                )
        outputs = self._runners["get_weights"].get_output_details()
        for name, shape in sorted(self._spec.items()):
            got_in = self._input_shape("set_weights", signature_name(name))
            got_out = tuple(int(d) for d in outputs[signature_name(name)]["shape_signature"])
            for got_shape in (got_in, got_out):
                if got_shape != shape:
                    raise ModelError(
                        f"{self.path}: weight {name!r} has shape {got_shape}, "
                        f"{self.twin.architecture} needs {shape}"
                    )
        sample = self.twin.input_shape
        checks = {
            ("train", "x"): lambda s: len(s) == len(sample) + 1 and s[1:] == sample and s[0] >= 1,
            ("train", "y"): lambda s: len(s) == 1,
            ("train", "mask"): lambda s: len(s) == 1,
            ("train", "lr"): lambda s: s == (),
            ("infer", "x"): lambda s: s == (-1, *sample),
        }
        for (signature, name), ok in checks.items():
            inputs = signatures[signature]["inputs"]
            if name not in inputs or not ok(self._input_shape(signature, name)):
                shown = self._input_shape(signature, name) if name in inputs else "missing"
                raise ModelError(
                    f"{self.path}: {signature} input {name!r} is {shown}, not what a {sample} input needs"
                )

    def check_batch_size(self, batch_size: int) -> None:
        if batch_size > self.train_batch:
            raise ModelError(
                f"{self.path}: trains in batches of at most {self.train_batch}, BATCH_SIZE is {batch_size} "
                "(set BATCH_SIZE lower or rebuild with a larger TRAIN_BATCH)"
            )

    # --- the Model interface ---------------------------------------------------------------------------
    @property
    def num_classes(self) -> int:
        return int(self.twin.num_classes)

    @property
    def architecture(self) -> str:
        return self.twin.architecture

    def weight_spec(self) -> WeightSpec:
        return dict(self._spec)

    def init_weights(self, rng: np.random.Generator) -> Weights:
        return self.twin.init_weights(rng)

    def __repr__(self) -> str:
        return f"TFLiteModel({self.architecture!r}, {str(self.path)!r})"

    def train(
        self, weights: Weights, x: np.ndarray, y: np.ndarray, params: TrainParams, rng: np.random.Generator
    ) -> Weights:
        validate_weights(weights, self._spec)
        check_params(params)
        self.check_batch_size(params.batch_size)
        xs = self.twin._prepare_x(x, np.float32)
        ys = self.twin._prepare_y(y, len(xs)).astype(np.int32)
        batch = self.train_batch
        xb = np.zeros((batch, *self.twin.input_shape), np.float32)
        yb = np.zeros(batch, np.int32)
        mask = np.zeros(batch, np.float32)
        lr = np.float32(params.learning_rate)
        n = len(xs)
        with self._lock:
            self._set_weights(weights)
            train = self._runner("train")
            for _ in range(params.epochs):
                order = rng.permutation(n)
                for start in range(0, n, params.batch_size):
                    chosen = order[start : start + params.batch_size]
                    size = len(chosen)
                    xb[:size] = xs[chosen]
                    yb[:size] = ys[chosen]
                    mask[:size] = 1
                    mask[size:] = 0
                    train(x=xb, y=yb, mask=mask, lr=lr)
            return self._get_weights()

    def evaluate(self, weights: Weights, x: np.ndarray, y: np.ndarray) -> Metrics:
        validate_weights(weights, self._spec)
        xs = self.twin._prepare_x(x, np.float32)
        ys = self.twin._prepare_y(y, len(xs))
        if len(xs) == 0:
            raise ValueError("cannot evaluate on an empty dataset")
        logits = self._logits(weights, xs)
        loss = float(cross_entropy_per_sample(logits, ys).sum(dtype=np.float64)) / len(xs)
        return Metrics(loss=loss, accuracy=int((logits.argmax(axis=1) == ys).sum()) / len(xs))

    def predict(self, weights: Weights, x: np.ndarray) -> np.ndarray:
        validate_weights(weights, self._spec)
        xs = self.twin._prepare_x(x, np.float32)
        return self._logits(weights, xs).argmax(axis=1).astype(np.int64)

    # --- the interpreter -------------------------------------------------------------------------------
    def _logits(self, weights: Weights, xs: np.ndarray) -> np.ndarray:
        out = np.empty((len(xs), self.twin.num_classes), np.float32)
        chunk = np.zeros((INFER_CHUNK, *self.twin.input_shape), np.float32)
        with self._lock:
            self._set_weights(weights)
            infer = self._runner("infer")
            for start in range(0, len(xs), INFER_CHUNK):
                part = xs[start : start + INFER_CHUNK]
                chunk[: len(part)] = part
                out[start : start + len(part)] = infer(x=chunk)["logits"][: len(part)]
        return out

    def _set_weights(self, weights: Weights) -> None:
        self._runner("set_weights")(**{signature_name(name): weights[name] for name in self._spec})

    def _get_weights(self) -> Weights:
        got = self._runner("get_weights")()
        return {name: np.asarray(got[signature_name(name)], dtype=np.float32) for name in self._spec}


def create_tflite_model(
    arch: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    *,
    path: Path | None = None,
    batch_size: int | None = None,
) -> TFLiteModel:
    """The tflite model for TFLITE_ARCH on a dataset's shape: the committed file, or `path` if given.

    Everything wrong (no runtime, a missing or bad file, a batch size above the file's) is a ModelError.
    """
    twin = numpy_twin(arch, input_shape, num_classes)
    if path is None:
        path = MODELS_DIR / f"{twin.architecture}.tflite"
        if not path.is_file():
            load_interpreter_class()  # a missing runtime is the first thing to fix
            raise ModelError(
                f"{path}: no TensorFlow Lite model for {twin.architecture}; build it with "
                "`make tflite-models` (scripts/build_tflite_models.py) or set TFLITE_PATH"
            )
    model = TFLiteModel(path, twin)
    if batch_size is not None:
        model.check_batch_size(batch_size)
    return model
