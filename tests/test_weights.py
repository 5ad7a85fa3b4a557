"""The weights wire format: exact round trips, deterministic bytes, and rejection of hostile payloads."""

from __future__ import annotations

import hashlib
import json
import pickle
import subprocess
import sys

import numpy as np
import pytest
import safetensors.numpy

from peer.models import (
    WeightsError,
    average_weights,
    decode_weights,
    encode_weights,
    validate_weights,
    weights_nbytes,
)
from peer.models.base import Weights, WeightSpec

SPEC: WeightSpec = {
    "dense_1/kernel": (6, 4),
    "dense_1/bias": (4,),
    "dense_2/kernel": (4, 3),
    "dense_2/bias": (3,),
}


def make_weights(seed: int = 0) -> Weights:
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape, dtype=np.float32) for name, shape in SPEC.items()}


def raw_safetensors(tensors: dict[str, np.ndarray]) -> bytes:
    """Bytes as any other safetensors writer would produce them, bypassing encode_weights' checks."""
    return safetensors.numpy.save(tensors)


def header_of(data: bytes) -> dict[str, object]:
    length = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + length])


def test_round_trip_float32_is_exact() -> None:
    weights = make_weights()
    decoded = decode_weights(encode_weights(weights), SPEC)
    assert decoded.keys() == weights.keys()
    for name, array in weights.items():
        assert decoded[name].dtype == np.float32
        np.testing.assert_array_equal(decoded[name], array)


def test_round_trip_float16_on_the_wire_upcasts_to_float32() -> None:
    weights = make_weights()
    data = encode_weights(weights, wire_dtype="float16")
    assert header_of(data)["dense_1/kernel"]["dtype"] == "F16"  # type: ignore[index]
    assert len(data) < len(encode_weights(weights))
    decoded = decode_weights(data, SPEC)
    for name, array in weights.items():
        assert decoded[name].dtype == np.float32
        np.testing.assert_allclose(decoded[name], array, rtol=1e-3, atol=1e-3)


def test_metadata_names_format_and_dtype() -> None:
    meta = header_of(encode_weights(make_weights(), wire_dtype="float16"))["__metadata__"]
    assert meta == {"format": "learning-tangle", "dtype": "float16"}


def test_decoded_weights_are_read_only() -> None:
    decoded = decode_weights(encode_weights(make_weights()), SPEC)
    with pytest.raises(ValueError, match="read-only"):
        decoded["dense_1/bias"][0] = 1.0


def test_equal_weights_give_equal_bytes_whatever_the_dict_order() -> None:
    weights = make_weights()
    reordered = {name: weights[name].copy() for name in reversed(list(weights))}
    assert encode_weights(weights) == encode_weights(reordered)
    assert encode_weights(weights, wire_dtype="float16") == encode_weights(reordered, wire_dtype="float16")
    # Non-contiguous and float64 inputs describe the same float32 values.
    transposed = {**weights, "dense_1/kernel": np.asfortranarray(weights["dense_1/kernel"])}
    assert encode_weights(transposed) == encode_weights(weights)
    as64 = {name: array.astype(np.float64) for name, array in weights.items()}
    assert encode_weights(as64) == encode_weights(weights)


def test_bytes_are_identical_across_processes() -> None:
    # safetensors keeps metadata in a per-process randomised hash map; peers must still agree on CIDs.
    code = (
        "import hashlib, numpy as np\n"
        "from peer.models import encode_weights\n"
        "w = {'b': np.arange(3, dtype=np.float32), 'a': np.ones((2, 2), np.float32)}\n"
        "print(hashlib.sha256(encode_weights(w)).hexdigest())\n"
    )
    digests = {
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        for _ in range(3)
    }
    local = {"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float32)}
    assert digests == {hashlib.sha256(encode_weights(local)).hexdigest()}


def test_golden_header() -> None:
    data = encode_weights({"b": np.arange(3, dtype=np.float32), "a": np.ones((2, 2), np.float32)})
    length = int.from_bytes(data[:8], "little")
    assert length % 8 == 0
    assert data[8 : 8 + length].rstrip(b" ") == (
        b'{"__metadata__":{"dtype":"float32","format":"learning-tangle"},'
        b'"a":{"data_offsets":[0,16],"dtype":"F32","shape":[2,2]},'
        b'"b":{"data_offsets":[16,28],"dtype":"F32","shape":[3]}}'
    )
    assert data[8 + length :] == np.ones(4, "<f4").tobytes() + np.arange(3, dtype="<f4").tobytes()


def test_rejects_missing_tensor() -> None:
    weights = make_weights()
    del weights["dense_2/bias"]
    with pytest.raises(WeightsError, match=r"missing tensors: dense_2/bias"):
        decode_weights(encode_weights(weights), SPEC)


def test_rejects_unexpected_tensor() -> None:
    weights = {**make_weights(), "backdoor": np.zeros(2, np.float32)}
    with pytest.raises(WeightsError, match=r"unexpected tensors: backdoor"):
        decode_weights(encode_weights(weights), SPEC)


def test_rejects_wrong_shape_naming_tensor_expected_and_got() -> None:
    weights = {**make_weights(), "dense_1/kernel": np.zeros((4, 6), np.float32)}
    with pytest.raises(WeightsError, match=r"'dense_1/kernel'.*expected \(6, 4\), got \(4, 6\)"):
        decode_weights(encode_weights(weights), SPEC)


@pytest.mark.parametrize(("dtype", "wire_name"), [(np.float64, "F64"), (np.int32, "I32")])
def test_rejects_other_dtypes(dtype: type, wire_name: str) -> None:
    tensors = {**make_weights(), "dense_2/bias": np.zeros(3, dtype=dtype)}
    with pytest.raises(WeightsError, match=rf"'dense_2/bias' has dtype {wire_name}.*expected F32"):
        decode_weights(raw_safetensors(tensors), SPEC)


@pytest.mark.parametrize(
    ("value", "wire_dtype", "message"),
    [
        (np.nan, np.float32, "1 NaN, 0 Inf"),
        (np.inf, np.float32, "0 NaN, 1 Inf"),
        (-np.inf, np.float16, "0 NaN, 1 Inf"),
    ],
)
def test_rejects_non_finite_values_naming_tensor(value: float, wire_dtype: type, message: str) -> None:
    tensors = {name: array.astype(wire_dtype) for name, array in make_weights().items()}
    tensors["dense_1/kernel"][2, 1] = value
    with pytest.raises(WeightsError, match=rf"'dense_1/kernel' has non-finite values: {message}"):
        decode_weights(raw_safetensors(tensors), SPEC)


def test_rejects_truncated_bytes() -> None:
    data = encode_weights(make_weights())
    for cut in (len(data) - 1, len(data) // 2, 20, 7, 0):
        with pytest.raises(WeightsError, match="not a valid safetensors payload"):
            decode_weights(data[:cut], SPEC)


def test_rejects_random_bytes() -> None:
    rng = np.random.default_rng(7)
    for size in (1, 8, 100, 10_000):
        with pytest.raises(WeightsError, match="not a valid safetensors payload"):
            decode_weights(rng.bytes(size), SPEC)


def test_rejects_a_pickle_payload_without_unpickling_it() -> None:
    class Exploit:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (pytest.fail, ("the payload was unpickled",))

    payload = pickle.dumps({"weights": make_weights(), "exploit": Exploit()})
    with pytest.raises(WeightsError, match="not a valid safetensors payload"):
        decode_weights(payload, SPEC)


def test_rejects_corrupt_header_json() -> None:
    data = bytearray(encode_weights(make_weights()))
    data[9:12] = b"@@@"
    with pytest.raises(WeightsError, match="not a valid safetensors payload"):
        decode_weights(bytes(data), SPEC)


def test_rejects_oversized_payload_before_parsing() -> None:
    data = encode_weights(make_weights())
    assert decode_weights(data, SPEC, max_bytes=len(data))
    with pytest.raises(WeightsError, match=rf"too large: {len(data)} bytes, limit {len(data) - 1}"):
        decode_weights(data, SPEC, max_bytes=len(data) - 1)
    # The size check needs no valid payload: nothing is parsed beyond the limit.
    with pytest.raises(WeightsError, match="too large"):
        decode_weights(b"\xff" * 1000, SPEC, max_bytes=999)


def test_encode_refuses_values_every_receiver_would_reject() -> None:
    with pytest.raises(WeightsError, match=r"'dense_1/bias' has non-finite values as float16: 0 NaN, 4 Inf"):
        encode_weights({**make_weights(), "dense_1/bias": np.full(4, 1e6, np.float32)}, wire_dtype="float16")
    with pytest.raises(WeightsError, match="non-finite"):
        encode_weights({**make_weights(), "dense_1/bias": np.full(4, np.nan, np.float32)})
    with pytest.raises(WeightsError, match="must be a float numpy array"):
        encode_weights({**make_weights(), "dense_1/bias": np.zeros(4, np.int64)})
    with pytest.raises(WeightsError, match="wire dtype"):
        encode_weights(make_weights(), wire_dtype="int8")  # type: ignore[arg-type]


def test_validate_weights_in_memory() -> None:
    weights = make_weights()
    validate_weights(weights, SPEC)
    with pytest.raises(WeightsError, match="missing tensors: dense_1/bias"):
        validate_weights({k: v for k, v in weights.items() if k != "dense_1/bias"}, SPEC)
    with pytest.raises(WeightsError, match="unexpected tensors: extra"):
        validate_weights({**weights, "extra": np.zeros(1, np.float32)}, SPEC)
    with pytest.raises(WeightsError, match=r"expected \(3,\), got \(2,\)"):
        validate_weights({**weights, "dense_2/bias": np.zeros(2, np.float32)}, SPEC)
    with pytest.raises(WeightsError, match="dtype float64, expected float32"):
        validate_weights({**weights, "dense_2/bias": np.zeros(3, np.float64)}, SPEC)
    with pytest.raises(WeightsError, match="'dense_2/bias' has non-finite values: 1 NaN"):
        validate_weights({**weights, "dense_2/bias": np.array([0, np.nan, 0], np.float32)}, SPEC)
    with pytest.raises(WeightsError, match="must be a numpy array"):
        validate_weights({**weights, "dense_2/bias": [0.0, 0.0, 0.0]}, SPEC)  # type: ignore[dict-item]


def test_average_weights_plain_and_weighted() -> None:
    a, b = make_weights(1), make_weights(2)
    mean = average_weights([a, b])
    for name in SPEC:
        assert mean[name].dtype == np.float32
        np.testing.assert_allclose(mean[name], (a[name] + b[name]) / 2, rtol=1e-6, atol=1e-6)
    weighted = average_weights([a, b], [3, 1])
    for name in SPEC:
        np.testing.assert_allclose(weighted[name], 0.75 * a[name] + 0.25 * b[name], rtol=1e-6, atol=1e-6)
    single = average_weights([a])
    for name in SPEC:
        np.testing.assert_array_equal(single[name], a[name])
        assert single[name] is not a[name]


def test_average_weights_rejects_bad_input() -> None:
    a = make_weights()
    with pytest.raises(ValueError, match="empty"):
        average_weights([])
    with pytest.raises(ValueError, match="2 coefficients for 1"):
        average_weights([a], [1, 1])
    with pytest.raises(ValueError, match="non-negative"):
        average_weights([a, a], [1, -1])
    with pytest.raises(ValueError, match="all be zero"):
        average_weights([a, a], [0, 0])
    with pytest.raises(WeightsError, match="wrong shape"):
        average_weights([a, {**a, "dense_2/bias": np.zeros(4, np.float32)}])
    with pytest.raises(WeightsError, match="missing tensors"):
        average_weights([a, {k: v for k, v in a.items() if k != "dense_2/bias"}])


def test_weights_nbytes() -> None:
    assert weights_nbytes(make_weights()) == 4 * sum(int(np.prod(s)) for s in SPEC.values())
