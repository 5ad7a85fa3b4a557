"""MODEL=tflite on the real runtime (`make test` installs the `tflite` extra): it trains like the numpy
models, shares their weights bit for bit, refuses bad model files in one line, and mixes with numpy peers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest
from packaging.requirements import Requirement

from peer.config import LabSettings, parse
from peer.data import load_dataset
from peer.lab.runner import run_lab
from peer.memory import release_freed_memory, resident_kb
from peer.models import (
    LeafCNN,
    ModelError,
    TrainParams,
    Weights,
    create_model,
    decode_weights,
    encode_weights,
)
from peer.models import tflite as tflite_backend
from peer.models.tflite import TFLiteModel, load_interpreter_class, numpy_twin, runtime_package
from peer.models.tflite_layout import (
    BUILT,
    MANIFEST,
    MODELS_DIR,
    TRAIN_BATCH,
    NumpyTwin,
    build_inputs_digest,
)

ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests/fixtures/tflite"
TANGLE = [sys.executable, "-m", "peer"]
# numpy and the runtime sum in different orders: logits agree to this (absolute), on inputs in [0, 1]
LOGIT_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    data = load_dataset("digits", None)
    order = np.random.default_rng(1).permutation(len(data.y))
    x, y = data.x[order], data.y[order]
    return x[:1000], y[:1000], x[1000:], y[1000:]


def pair(arch: str) -> tuple[TFLiteModel, NumpyTwin]:
    """The tflite model of an architecture on digits, and its numpy twin."""
    tflite = create_model("tflite", (8, 8, 1), 10, tflite_arch=arch)
    assert isinstance(tflite, TFLiteModel)
    return tflite, numpy_twin(arch, (8, 8, 1), 10)


def max_difference(a: Weights, b: Weights) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[name] - b[name]).max()) for name in a)


# --- the committed models ----------------------------------------------------------------------------------
def test_committed_models_match_their_manifest_and_build_inputs() -> None:
    """Always on and cheap: the files are the ones the manifest records, and the manifest was built from the
    current build script and layouts (`make tflite-models-check` rebuilds them with TensorFlow)."""
    manifest = json.loads((MODELS_DIR / MANIFEST).read_text())
    assert manifest["build_inputs_sha256"] == build_inputs_digest(ROOT), (
        "the build script or a layout changed since the models were built: run `make tflite-models`"
    )
    assert manifest["train_batch"] == TRAIN_BATCH
    on_disk = {p.name for p in MODELS_DIR.glob("*.tflite")}
    assert on_disk == set(manifest["files"])
    for name, entry in manifest["files"].items():
        data = (MODELS_DIR / name).read_bytes()
        assert len(data) == entry["bytes"]
        assert hashlib.sha256(data).hexdigest() == entry["sha256"], name
    fixtures = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in FIXTURES.glob("*.tflite")}
    assert fixtures == manifest["fixtures"]
    # one file per (architecture, dataset shape), named by the numpy twin's architecture id
    for arch, (shape, classes) in BUILT:
        twin = create_model(arch, shape, classes)
        assert f"{twin.architecture}.tflite" in on_disk


# --- training and weights ----------------------------------------------------------------------------------
@pytest.mark.parametrize("arch", ["softmax", "mlp", "cnn"])
def test_training_lowers_the_loss(arch: str, digits: tuple[np.ndarray, ...]) -> None:
    x, y, test_x, test_y = digits
    model, _ = pair(arch)
    weights = model.init_weights(np.random.default_rng(0))
    before = model.evaluate(weights, test_x, test_y)
    trained = model.train(weights, x, y, TrainParams(epochs=2), np.random.default_rng(1))
    after = model.evaluate(trained, test_x, test_y)
    assert after.loss < before.loss / 2
    assert after.accuracy > 0.8


@pytest.mark.parametrize("arch", ["softmax", "mlp", "cnn"])
def test_weights_round_trip_bit_exactly(arch: str) -> None:
    model, _ = pair(arch)
    weights = model.init_weights(np.random.default_rng(3))
    weights = {name: a + np.float32(0.1) for name, a in weights.items()}  # no zeros: every bit matters
    # zero epochs: set_weights then get_weights, nothing in between
    nothing = TrainParams(epochs=0)
    out = model.train(
        weights, np.zeros((1, 8, 8, 1)), np.zeros(1, np.int64), nothing, np.random.default_rng(0)
    )
    assert out.keys() == weights.keys()
    for name in weights:
        assert out[name].dtype == np.float32
        assert out[name].tobytes() == weights[name].tobytes(), name
    trained = model.train(
        weights, np.ones((5, 8, 8, 1)), np.arange(5), TrainParams(), np.random.default_rng(0)
    )
    wire = decode_weights(encode_weights(trained), model.weight_spec())
    assert all(wire[name].tobytes() == trained[name].tobytes() for name in trained)


@pytest.mark.parametrize("arch", ["softmax", "mlp", "cnn"])
def test_numpy_trained_weights_predict_the_same(arch: str, digits: tuple[np.ndarray, ...]) -> None:
    x, y, test_x, test_y = digits
    tflite, numpy_model = pair(arch)
    weights = numpy_model.init_weights(np.random.default_rng(0))
    weights = numpy_model.train(weights, x, y, TrainParams(), np.random.default_rng(1))
    ours = tflite._logits(weights, test_x)
    theirs = numpy_model._logits(weights, test_x.astype(np.float32))
    assert float(np.abs(ours - theirs).max()) < LOGIT_TOLERANCE
    # the same predictions, except where numpy's two best classes are closer than the tolerance
    top2 = np.sort(theirs, axis=1)[:, -2:]
    clear = top2[:, 1] - top2[:, 0] > LOGIT_TOLERANCE
    assert clear.mean() > 0.99
    assert (tflite.predict(weights, test_x)[clear] == numpy_model.predict(weights, test_x)[clear]).all()
    ours_metrics, theirs_metrics = (
        tflite.evaluate(weights, test_x, test_y),
        numpy_model.evaluate(weights, test_x, test_y),
    )
    assert abs(ours_metrics.loss - theirs_metrics.loss) < 1e-5
    assert ours_metrics.accuracy == pytest.approx(theirs_metrics.accuracy, abs=1 / len(test_y))


@pytest.mark.parametrize(("arch", "batch_size"), [("mlp", 10), ("cnn", 10), ("mlp", 7), ("cnn", 3)])
def test_training_follows_numpy_step_for_step(
    arch: str, batch_size: int, digits: tuple[np.ndarray, ...]
) -> None:
    """Same permutation, same SGD steps: short batches (BATCH_SIZE below the file's, and the last batch of an
    epoch: 203 samples) are padded with masked-out samples, so nothing is dropped and nothing is added."""
    x, y, _, _ = digits
    tflite, numpy_model = pair(arch)
    weights = tflite.init_weights(np.random.default_rng(0))
    params = TrainParams(batch_size=batch_size, epochs=2)
    ours = tflite.train(weights, x[:203], y[:203], params, np.random.default_rng(5))
    theirs = numpy_model.train(weights, x[:203], y[:203], params, np.random.default_rng(5))
    assert max_difference(ours, theirs) < 1e-4


def test_the_leaf_femnist_cnn_matches_its_numpy_twin() -> None:
    rng = np.random.default_rng(0)
    tflite = create_model("tflite", (28, 28, 1), 62, tflite_arch="femnist-cnn")
    assert isinstance(tflite, TFLiteModel)
    twin = LeafCNN((28, 28, 1), 62)
    assert tflite.architecture == twin.architecture == "cnn5-28x28x1-32-64-2048-62"
    assert sum(int(np.prod(s)) for s in tflite.weight_spec().values()) == 6_603_710
    weights = twin.init_weights(rng)
    x = rng.uniform(0, 1, (13, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 62, 13)
    ours = tflite.train(weights, x, y, TrainParams(learning_rate=0.05), np.random.default_rng(1))
    theirs = twin.train(weights, x, y, TrainParams(learning_rate=0.05), np.random.default_rng(1))
    assert max_difference(ours, theirs) < 1e-4
    assert float(np.abs(tflite._logits(ours, x) - twin._logits(theirs, x)).max()) < 1e-3
    # the file's 26 MB of initial values (read once, by the init) do not stay resident in the process
    assert resident_kb(tflite.path) < 2048 < tflite.path.stat().st_size // 1024 // 10


def test_release_drops_the_interpreter_and_the_next_call_rebuilds_it() -> None:
    rng = np.random.default_rng(0)
    tflite = create_model("tflite", (28, 28, 1), 62, tflite_arch="femnist-cnn")
    weights = tflite.init_weights(rng)
    weight_set_kb = sum(int(np.prod(shape)) for shape in tflite.weight_spec().values()) * 4 // 1024
    x = rng.uniform(0, 1, (13, 28, 28, 1)).astype(np.float32)
    y = rng.integers(0, 62, 13)
    first = tflite.train(weights, x, y, TrainParams(learning_rate=0.05), np.random.default_rng(1))
    logits = tflite._logits(first, x)  # every signature has run: all arenas are allocated
    release_freed_memory()
    held = resident_kb()
    tflite.release()
    release_freed_memory()
    # the variables and the four signatures' arenas: about 8.6 weight sets on this model
    assert held - resident_kb() > 5 * weight_set_kb
    again = tflite.train(weights, x, y, TrainParams(learning_rate=0.05), np.random.default_rng(1))
    assert all(np.array_equal(first[name], again[name]) for name in first)
    assert np.array_equal(tflite._logits(again, x), logits)


ARMV7_RUNTIME_CHECK = """
import sys
import numpy as np
from peer.models import TrainParams
from peer.models.tflite import TFLiteModel, load_interpreter_class
from peer.models.tflite_layout import MODELS_DIR, TFLITE_MODELS
assert load_interpreter_class().__module__ == "tflite_runtime.interpreter"
for factory in TFLITE_MODELS:
    twin = factory()
    model = TFLiteModel(MODELS_DIR / f"{twin.architecture}.tflite", twin)
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (13, *twin.input_shape)).astype(np.float32)
    y = rng.integers(0, twin.num_classes, 13)
    weights = twin.init_weights(rng)
    params = TrainParams(learning_rate=0.05, batch_size=7)
    ours = model.train(weights, x, y, params, np.random.default_rng(1))
    theirs = twin.train(weights, x, y, params, np.random.default_rng(1))
    diff = max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)
    print(twin.architecture, np.__version__, diff)
    assert diff < 1e-4, diff
"""


def test_the_models_run_on_the_armv7_runtime_version() -> None:
    """Armv7 and aarch64 Pis get tflite-runtime 2.14 with numpy<2 (ai-edge-litert has no armv7 wheels, and
    its aarch64 ones crash in training): the committed models, built by a newer TensorFlow, must use only ops
    that runtime knows. Its x86_64 wheel, the same
    version, is the stand-in for the armv7 one here (a venv cached by scripts/tflite-runtime-venv.sh)."""
    python = subprocess.run(
        [str(ROOT / "scripts/tflite-runtime-venv.sh")],
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    ).stdout.strip()
    run = subprocess.run(
        [python, "-c", ARMV7_RUNTIME_CHECK],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr
    checked = run.stdout.strip().splitlines()
    assert len(checked) == len(BUILT)
    assert all(" 1.24.4 " in line for line in checked)


# --- bad input ----------------------------------------------------------------------------------------------
def bad_file_cases(tmp_path: Path) -> list[tuple[str, Path, str]]:
    mlp = MODELS_DIR / "mlp-64-128-10.tflite"
    truncated = tmp_path / "truncated.tflite"
    truncated.write_bytes(mlp.read_bytes()[: mlp.stat().st_size // 2])
    empty = tmp_path / "empty.tflite"
    empty.write_bytes(b"")
    infer_only = FIXTURES / "infer-only-mlp-64-128-10.tflite"
    other_shapes = "'dense_1/kernel' has shape (784, 128), mlp-64-128-10 needs (64, 128)"
    return [
        ("mlp", truncated, "not a valid TensorFlow Lite model"),
        ("mlp", empty, "not a valid TensorFlow Lite model"),
        ("mlp", tmp_path / "absent.tflite", "no such TensorFlow Lite model file"),
        ("mlp", infer_only, "missing signatures train, get_weights, set_weights"),
        ("mlp", MODELS_DIR / "softmax-64-10.tflite", "missing: dense_1/bias, dense_1/kernel"),
        ("mlp", MODELS_DIR / "mlp-784-128-62.tflite", other_shapes),
        ("cnn", MODELS_DIR / "mlp-64-128-10.tflite", "missing: conv_1/bias"),
    ]


def test_bad_model_files_are_refused_naming_the_file(tmp_path: Path) -> None:
    for arch, path, message in bad_file_cases(tmp_path):
        with pytest.raises(ModelError) as caught:
            create_model("tflite", (8, 8, 1), 10, tflite_arch=arch, tflite_path=path)
        text = str(caught.value)
        assert text.startswith(f"{path}: ")
        assert message in text
        assert "\n" not in text


def test_the_peer_refuses_a_bad_file_at_start_up_in_one_line(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "MODEL": "tflite",
        "STORAGE": "memory",
        "MESSAGE_BROKER": "memory",
        "PEER_INDEX": "0",
    }
    for arch, path, message in bad_file_cases(tmp_path)[:4]:
        run = subprocess.run(
            [*TANGLE, "peer"],
            env={**env, "TFLITE_ARCH": arch, "TFLITE_PATH": str(path), "HTTP_PORT": "0"},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr.strip().splitlines() == [
            f"tangle peer: {path}: " + run.stderr.split(f"{path}: ", 1)[1].strip()
        ]
        assert message in run.stderr
        assert "Traceback" not in run.stderr


def test_the_lab_refuses_a_bad_file_in_one_line(tmp_path: Path) -> None:
    truncated = bad_file_cases(tmp_path)[0][1]
    args = ["--model", "tflite", "--tflite-path", str(truncated), "--peers", "2", "--rounds", "1"]
    run = subprocess.run(
        [*TANGLE, "lab", *args, "--progress", "false", "--out", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert run.returncode == 2
    reason = "not a valid TensorFlow Lite model (The model is not a valid Flatbuffer buffer)"
    assert run.stderr.strip().splitlines() == [f"tangle lab: {truncated}: {reason}"]
    assert not (tmp_path / "out").exists()


def test_a_batch_size_above_the_files_is_refused() -> None:
    with pytest.raises(
        ModelError, match=r"mlp-64-128-10.tflite: trains in batches of at most 10, BATCH_SIZE is 11"
    ):
        create_model("tflite", (8, 8, 1), 10, batch_size=TRAIN_BATCH + 1)
    model, _ = pair("mlp")
    with pytest.raises(ModelError, match="BATCH_SIZE is 11"):
        model.train(model.init_weights(np.random.default_rng(0)), np.zeros((3, 64)), np.zeros(3, np.int64),
                    TrainParams(batch_size=11), np.random.default_rng(0))  # fmt: skip


def test_a_missing_runtime_names_the_package_for_this_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    assert load_interpreter_class() is not None  # the real runtime is installed here
    for module in (
        "ai_edge_litert",
        "ai_edge_litert.interpreter",
        "tflite_runtime",
        "tflite_runtime.interpreter",
    ):
        monkeypatch.setitem(sys.modules, module, None)  # makes `import module` raise ImportError
    with pytest.raises(
        ModelError, match=r"MODEL=tflite needs a TensorFlow Lite runtime: pip install 'ai-edge-litert'"
    ):
        create_model("tflite", (8, 8, 1), 10)
    assert runtime_package("x86_64") == runtime_package("arm64") == "ai-edge-litert"
    assert runtime_package("armv7l") == runtime_package("aarch64") == "tflite-runtime==2.14.0 (with numpy<2)"
    with pytest.raises(ModelError, match="no TensorFlow Lite runtime wheel for riscv64"):
        runtime_package("riscv64")


def test_an_arm_machine_uses_tflite_runtime_even_beside_ai_edge_litert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Linux aarch64 gets tflite-runtime 2.14 as armv7 does: ai-edge-litert's aarch64 wheels crash in the
    train signature (README, "TensorFlow Lite"). The extra installs it there; the backend tries it first."""
    tried: list[str] = []

    def import_module(name: str) -> object:
        tried.append(name)
        return type("Runtime", (), {"Interpreter": name})

    monkeypatch.setattr(tflite_backend.importlib, "import_module", import_module)
    assert (
        load_interpreter_class("aarch64") == load_interpreter_class("armv7l") == "tflite_runtime.interpreter"
    )
    assert load_interpreter_class("x86_64") == load_interpreter_class("arm64") == "ai_edge_litert.interpreter"
    assert load_interpreter_class("riscv64") == "ai_edge_litert.interpreter"  # tried in any order there
    assert len(tried) == 5
    # pyproject's extra installs the package runtime_package names, and only that one (with numpy<2 beside it)
    extra = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["tflite"]
    for machine in ("x86_64", "AMD64", "arm64", "aarch64", "armv7l"):
        requirements = [Requirement(line) for line in extra]
        names = {
            r.name for r in requirements if r.marker and r.marker.evaluate({"platform_machine": machine})
        }
        wanted = runtime_package(machine).split("==")[0].split(" ")[0]
        assert names - {"numpy"} == {wanted}, machine
        assert ("numpy" in names) == (wanted == "tflite-runtime"), machine


def test_the_peer_without_a_runtime_says_what_to_install(tmp_path: Path) -> None:
    # stand-in for a machine without a runtime: packages of the same names that fail to import shadow them
    for name in ("ai_edge_litert", "tflite_runtime"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("raise ImportError('not installed (test stand-in)')\n")
    run = subprocess.run(
        [*TANGLE, "peer"],
        env={**os.environ, "PYTHONPATH": str(tmp_path), "MODEL": "tflite", "STORAGE": "memory",
             "MESSAGE_BROKER": "memory", "PEER_INDEX": "0", "HTTP_PORT": "0"},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert run.returncode == 2
    assert run.stderr.strip() == (
        "tangle peer: MODEL=tflite needs a TensorFlow Lite runtime: pip install 'ai-edge-litert' "
        "(or 'learning-tangle[tflite]') on this x86_64 machine"
    )


def test_configuration_names_and_original_values() -> None:
    settings = parse(LabSettings, env=False, model="tflite", tflite_arch="cnn")
    assert settings.create_model((8, 8, 1), 10).architecture == "cnn-8x8x1-8-16-128-10"
    assert type(settings.create_model((8, 8, 1), 10, tflite=False)).__name__ == "SmallCNN"
    assert parse(LabSettings, env=False, model="femnist").model == "cnn"  # the original's values still work
    assert parse(LabSettings, env=False, model="no_tf").model == "fake"


# --- one tangle, both backends -----------------------------------------------------------------------------
def test_a_mixed_lab_converges_like_a_numpy_lab() -> None:
    common = {"peers": 6, "rounds": 12, "workers": 1, "baseline": "none", "progress": False}
    mixed = run_lab(parse(LabSettings, env=False, model="tflite", tflite_fraction=0.5, **common))
    plain = run_lab(parse(LabSettings, env=False, model="mlp", **common))
    tflite_authors = {f"lab-peer-{i:03d}" for i in (1, 3, 5)}
    assert [mixed.settings.on_tflite(i) for i in range(6)] == [False, True] * 3
    nodes = {n.name: n for n in mixed.tangle.nodes}
    published = {n.peer for n in nodes.values()}
    assert tflite_authors <= published
    assert {"lab-peer-000", "lab-peer-002", "lab-peer-004"} & published
    # each backend builds on the other's transactions: one tangle
    kinds = {(n.peer in tflite_authors, nodes[p].peer in tflite_authors)
             for n in nodes.values() for p in n.parents if p != mixed.tangle.genesis}  # fmt: skip
    assert {(True, False), (False, True)} <= kinds
    assert not mixed.rejected
    accuracy = mixed.rounds[-1].tangle_accuracy
    assert accuracy >= 0.85
    # tflite trains numpy's steps to float rounding, so the runs differ only where rounding flips a choice
    assert abs(accuracy - plain.rounds[-1].tangle_accuracy) <= 0.03
