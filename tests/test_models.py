"""The numpy models learn correctly (exact gradients, real accuracy on digits) and the fake model is cheap."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from peer.models import (
    LEAF_CNN_PARAMS,
    MLP,
    MODEL_NAMES,
    FakeModel,
    LeafCNN,
    Metrics,
    Model,
    SmallCNN,
    SoftmaxRegression,
    TrainParams,
    Weights,
    WeightsError,
    create_model,
    decode_weights,
    encode_weights,
    weights_nbytes,
)

NumpyModel = SoftmaxRegression | MLP | SmallCNN


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Digits shuffled once with a fixed seed: 1,400 to train, 397 held out."""
    try:
        from peer.data.digits import load_digits

        data = load_digits()
        x, y = data.x, data.y
    except ImportError:  # peer.data is another module's work; the vendored CSV is enough here
        table = np.loadtxt(Path(__file__).parents[1] / "peer/data/digits.csv.gz", delimiter=",")
        x = (table[:, :64] / 16).astype(np.float32).reshape(-1, 8, 8, 1)
        y = table[:, 64].astype(np.int64)
    order = np.random.default_rng(1).permutation(len(y))
    x, y = x[order], y[order]
    return x[:1400], y[:1400], x[1400:], y[1400:]


def tiny_models() -> list[NumpyModel]:
    return [
        SoftmaxRegression((5, 5, 1), 3),
        MLP((5, 5, 1), 3, hidden=6),
        # Odd height and width check the floor in both pools; two input channels check the im2col order.
        SmallCNN((7, 6, 2), 3, channels=(3, 4), dense=5),
        # 5x5 kernels (the LEAF CNN's): padding 2 on each side
        SmallCNN((7, 6, 2), 3, channels=(3, 4), dense=5, kernel=5),
    ]


def digit_models() -> list[NumpyModel]:
    return [SoftmaxRegression((8, 8, 1), 10), MLP((8, 8, 1), 10), SmallCNN((8, 8, 1), 10)]


def copy_weights(weights: Weights, dtype: type = np.float32) -> Weights:
    return {name: np.array(array, dtype=dtype) for name, array in weights.items()}


def assert_same_weights(a: Weights, b: Weights) -> None:
    assert a.keys() == b.keys()
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


@pytest.mark.parametrize("model", tiny_models(), ids=repr)
def test_gradients_match_finite_differences(model: NumpyModel) -> None:
    rng = np.random.default_rng(3)
    # Perturbed biases so no ReLU sits near its kink at 0 by construction.
    weights = {
        name: array.astype(np.float64) + 0.1 * rng.standard_normal(array.shape)
        for name, array in model.init_weights(rng).items()
    }
    x = rng.random((4, *model.input_shape))
    y = rng.integers(0, model.num_classes, size=4)
    _, grads = model.loss_and_grads(weights, x, y)
    eps = 1e-6
    for name, array in weights.items():
        assert grads[name].shape == array.shape
        for _ in range(4):
            index = tuple(int(rng.integers(0, d)) for d in array.shape)
            plus, minus = copy_weights(weights, np.float64), copy_weights(weights, np.float64)
            plus[name][index] += eps
            minus[name][index] -= eps
            numeric = (model.loss_and_grads(plus, x, y)[0] - model.loss_and_grads(minus, x, y)[0]) / (2 * eps)
            assert grads[name][index] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, index)


@pytest.mark.parametrize("model", tiny_models(), ids=repr)
def test_float32_gradients_agree_with_float64(model: NumpyModel) -> None:
    rng = np.random.default_rng(4)
    weights = model.init_weights(rng)
    x = rng.random((5, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.num_classes, size=5)
    loss32, grads32 = model.loss_and_grads(weights, x, y)
    loss64, grads64 = model.loss_and_grads(copy_weights(weights, np.float64), x.astype(np.float64), y)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for name in weights:
        assert grads32[name].dtype == np.float32
        np.testing.assert_allclose(grads32[name], grads64[name], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize("model", digit_models(), ids=repr)
def test_training_on_digits_beats_chance_by_far(
    model: NumpyModel, digits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
) -> None:
    x_train, y_train, x_test, y_test = digits
    weights = model.init_weights(np.random.default_rng(0))
    before = model.evaluate(weights, x_test, y_test)
    trained = model.train(weights, x_train, y_train, TrainParams(0.1, 10, 5), np.random.default_rng(0))
    after = model.evaluate(trained, x_test, y_test)
    assert after.accuracy > 0.85, after
    assert after.loss < before.loss / 3
    assert all(array.dtype == np.float32 for array in trained.values())


def test_mlp_matches_the_reference_accuracy(
    digits: tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x_train, y_train, x_test, y_test = digits
    model = MLP((8, 8, 1), 10)
    weights = model.init_weights(np.random.default_rng(0))
    trained = model.train(weights, x_train, y_train, TrainParams(0.1, 10, 5), np.random.default_rng(0))
    assert model.evaluate(trained, x_test, y_test).accuracy > 0.93


@pytest.mark.parametrize("model", tiny_models(), ids=repr)
def test_training_is_deterministic_for_a_seed(model: NumpyModel) -> None:
    rng = np.random.default_rng(5)
    weights = model.init_weights(np.random.default_rng(0))
    assert_same_weights(weights, model.init_weights(np.random.default_rng(0)))
    x = rng.random((23, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.num_classes, size=23)
    params = TrainParams(0.05, 4, 2)
    first = model.train(weights, x, y, params, np.random.default_rng(9))
    second = model.train(weights, x, y, params, np.random.default_rng(9))
    assert_same_weights(first, second)
    other = model.train(weights, x, y, params, np.random.default_rng(10))
    assert any(not np.array_equal(first[name], other[name]) for name in first)


@pytest.mark.parametrize("model", tiny_models(), ids=repr)
def test_inputs_are_never_mutated(model: NumpyModel) -> None:
    rng = np.random.default_rng(6)
    # Read-only inputs, as decode_weights returns them, prove nothing writes into them.
    weights = decode_weights(encode_weights(model.init_weights(rng)), model.weight_spec())
    snapshot = copy_weights(weights)
    x = rng.random((12, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.num_classes, size=12)
    x_copy, y_copy = x.copy(), y.copy()
    x.flags.writeable = False
    y.flags.writeable = False
    trained = model.train(weights, x, y, TrainParams(0.1, 5, 1), rng)
    model.evaluate(trained, x, y)
    model.predict(trained, x)
    assert_same_weights(weights, snapshot)
    np.testing.assert_array_equal(x, x_copy)
    np.testing.assert_array_equal(y, y_copy)
    assert all(trained[name] is not weights[name] for name in weights)
    # Zero epochs still returns fresh arrays.
    untouched = model.train(weights, x, y, TrainParams(0.1, 5, 0), rng)
    assert_same_weights(untouched, snapshot)
    assert all(untouched[name] is not weights[name] for name in weights)


@pytest.mark.parametrize("model", tiny_models(), ids=repr)
def test_evaluate_and_predict_agree_with_the_training_loss(model: NumpyModel) -> None:
    rng = np.random.default_rng(8)
    weights = model.init_weights(rng)
    # More samples than one evaluation chunk, so the chunked paths are exercised.
    x = rng.random((300, *model.input_shape), dtype=np.float32)
    y = rng.integers(0, model.num_classes, size=300)
    metrics = model.evaluate(weights, x, y)
    predictions = model.predict(weights, x)
    assert isinstance(metrics, Metrics)
    assert predictions.dtype == np.int64
    assert predictions.shape == (300,)
    assert metrics.accuracy == pytest.approx(float(np.mean(predictions == y)))
    assert 0.0 <= metrics.accuracy <= 1.0
    assert metrics.loss == pytest.approx(model.loss_and_grads(weights, x, y)[0], rel=1e-5)
    # Flat samples of the right size are accepted too.
    np.testing.assert_array_equal(model.predict(weights, x.reshape(300, -1)), predictions)


def test_architecture_ids_and_layouts() -> None:
    assert SoftmaxRegression((8, 8, 1), 10).architecture == "softmax-64-10"
    assert MLP((8, 8, 1), 10).architecture == "mlp-64-128-10"
    assert MLP((28, 28, 1), 62).architecture == "mlp-784-128-62"
    assert SmallCNN((8, 8, 1), 10).architecture == "cnn-8x8x1-8-16-128-10"
    assert SmallCNN((28, 28, 1), 62).architecture == "cnn-28x28x1-8-16-128-62"
    assert SoftmaxRegression((8, 8, 1), 10).weight_spec() == {"dense/kernel": (64, 10), "dense/bias": (10,)}
    assert SmallCNN((8, 8, 1), 10).weight_spec() == {
        "conv_1/kernel": (3, 3, 1, 8),
        "conv_1/bias": (8,),
        "conv_2/kernel": (3, 3, 8, 16),
        "conv_2/bias": (16,),
        "dense_1/kernel": (2 * 2 * 16, 128),
        "dense_1/bias": (128,),
        "dense_2/kernel": (128, 10),
        "dense_2/bias": (10,),
    }
    # 7 -> 3 -> 1 after two floored pools.
    assert SmallCNN((7, 7, 1), 10).weight_spec()["dense_1/kernel"] == (16, 128)
    femnist = SmallCNN((28, 28, 1), 62).weight_spec()
    assert femnist["dense_1/kernel"] == (7 * 7 * 16, 128)
    assert sum(math.prod(s) for s in femnist.values()) == 109_726


@pytest.mark.parametrize("model", digit_models(), ids=repr)
def test_init_follows_the_spec(model: NumpyModel) -> None:
    weights = model.init_weights(np.random.default_rng(0))
    assert {name: array.shape for name, array in weights.items()} == model.weight_spec()
    assert all(array.dtype == np.float32 for array in weights.values())
    for name, array in weights.items():
        if name.endswith("/bias"):
            assert not array.any()
        else:
            assert 0 < float(array.std()) < 1


def test_bad_inputs_are_rejected_clearly() -> None:
    model = MLP((8, 8, 1), 10)
    weights = model.init_weights(np.random.default_rng(0))
    x = np.zeros((4, 8, 8, 1), np.float32)
    y = np.zeros(4, np.int64)
    with pytest.raises(ValueError, match=r"sample shape \(7, 7, 1\), expected \(8, 8, 1\)"):
        model.evaluate(weights, np.zeros((4, 7, 7, 1), np.float32), y)
    with pytest.raises(ValueError, match=r"labels must be in \[0, 10\)"):
        model.evaluate(weights, x, np.array([0, 1, 2, 10]))
    with pytest.raises(ValueError, match=r"y must have shape \(4,\)"):
        model.evaluate(weights, x, y[:3])
    with pytest.raises(WeightsError, match="missing tensors: dense_2/bias"):
        model.train(
            {k: v for k, v in weights.items() if k != "dense_2/bias"},
            x,
            y,
            TrainParams(),
            np.random.default_rng(),
        )
    with pytest.raises(ValueError, match="batch size"):
        model.train(weights, x, y, TrainParams(batch_size=0), np.random.default_rng())
    with pytest.raises(ValueError, match="empty"):
        model.evaluate(weights, x[:0], y[:0])


def test_create_model() -> None:
    assert MODEL_NAMES == ("softmax", "mlp", "cnn", "femnist-cnn", "fake", "tflite")
    expected = {
        "softmax": SoftmaxRegression,
        "mlp": MLP,
        "cnn": SmallCNN,
        "femnist-cnn": LeafCNN,
        "fake": FakeModel,
    }
    for name in MODEL_NAMES[:-1]:  # tflite: tests/test_tflite.py
        model: Model = create_model(name, (8, 8, 1), 10)
        assert isinstance(model, expected[name])
    assert create_model("cnn", (28, 28, 1), 62).architecture == "cnn-28x28x1-8-16-128-62"
    leaf = create_model("femnist-cnn", (28, 28, 1), 62)
    assert leaf.architecture == "cnn5-28x28x1-32-64-2048-62"
    assert leaf.weight_spec() == FakeModel().weight_spec()  # the LEAF CNN's layout, now trainable
    with pytest.raises(
        ValueError, match="unknown model 'keras'; valid names: softmax, mlp, cnn, femnist-cnn"
    ):
        create_model("keras", (8, 8, 1), 10)


def test_fake_model_has_the_leaf_cnn_size_and_layout() -> None:
    model = FakeModel()
    spec = model.weight_spec()
    assert sum(math.prod(shape) for shape in spec.values()) == LEAF_CNN_PARAMS == 6_603_710
    assert spec["dense_1/kernel"] == (7 * 7 * 64, 2048)
    assert model.architecture == "fake-leaf-28x28x1-6603710-62"
    weights = model.init_weights(np.random.default_rng(0))
    assert weights_nbytes(weights) == 4 * LEAF_CNN_PARAMS
    assert all(array.dtype == np.float32 for array in weights.values())


def test_fake_model_other_sizes_use_a_flat_split() -> None:
    model = FakeModel(num_params=1001, input_shape=(8, 8, 1), num_classes=10)
    spec = model.weight_spec()
    assert sum(math.prod(shape) for shape in spec.values()) == 1001
    assert len(spec) == 4
    assert model.architecture == "fake-flat-8x8x1-1001-10"
    # The default size is kept for any dataset, so load tests stay realistic on digits too.
    digits_fake = create_model("fake", (8, 8, 1), 10)
    assert sum(math.prod(s) for s in digits_fake.weight_spec().values()) == LEAF_CNN_PARAMS


def test_fake_model_is_cheap_deterministic_and_plausible() -> None:
    model = FakeModel(num_params=20_000, input_shape=(8, 8, 1), num_classes=10)
    weights = model.init_weights(np.random.default_rng(0))
    snapshot = copy_weights(weights)
    x = np.zeros((50, 8, 8, 1), np.float32)
    y = np.zeros(50, np.int64)

    trained = model.train(weights, x, y, TrainParams(), np.random.default_rng(1))
    assert_same_weights(weights, snapshot)
    assert_same_weights(trained, model.train(weights, x, y, TrainParams(), np.random.default_rng(1)))
    for name in weights:
        difference = np.abs(trained[name] - weights[name])
        assert 0 < float(difference.max()) < 0.01

    metrics = model.evaluate(trained, x, y)
    assert metrics == model.evaluate(copy_weights(trained), x, y)
    assert 0 <= metrics.accuracy <= 1
    assert math.isfinite(metrics.loss)
    assert metrics.loss > 0
    others = {model.evaluate(model.init_weights(np.random.default_rng(s)), x, y) for s in range(10)}
    assert len(others) > 1

    predictions = model.predict(trained, x)
    assert predictions.dtype == np.int64
    assert predictions.shape == (50,)
    assert predictions.min() >= 0
    assert predictions.max() < 10
    np.testing.assert_array_equal(predictions, model.predict(copy_weights(trained), x))


def test_fake_model_hashes_shared_decoded_weights_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """A lab worker's peers rate the same decoded (read-only) weights: one hash for all, never a stale one."""
    import gc

    import peer.models.fake as fake

    hashed: list[int] = []
    digest = fake.weights_digest
    monkeypatch.setattr(fake, "weights_digest", lambda w: hashed.append(1) or digest(w))
    model = FakeModel(num_params=2_000, input_shape=(8, 8, 1), num_classes=10)
    writable = model.init_weights(np.random.default_rng(0))
    decoded = decode_weights(encode_weights(writable), model.weight_spec())
    x = np.zeros((7, 8, 8, 1), np.float32)
    y = np.zeros(7, np.int64)
    first = model.evaluate(decoded, x, y)
    assert [model.evaluate(decoded, x, y) for _ in range(5)] == [first] * 5
    assert len(hashed) == 1
    assert model.evaluate(writable, x, y) == first  # the same values give the same numbers
    assert model.evaluate(writable, x, y) == first
    assert len(hashed) == 3  # arrays that can change are hashed every time
    name = next(iter(writable))
    writable[name][0] += 1.0
    assert model.evaluate(writable, x, y) != first
    del decoded
    gc.collect()
    assert not model._digests  # forgotten with the weights
