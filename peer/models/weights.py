"""Weights on the wire: safetensors bytes, strictly validated, never pickle.

Weights arrive from any peer on the network, so decoding treats the payload as hostile: size is bounded
before parsing, the safetensors parser (which only reads a JSON header and raw little-endian buffers)
is the only parser, and every tensor is checked against the expected layout before anyone uses it.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import safetensors
import safetensors.numpy

from peer.models.base import Weights, WeightSpec

WireDtype = Literal["float32", "float16"]

FORMAT_NAME = "learning-tangle"
# Wire dtype names as safetensors writes them in the header.
_WIRE_DTYPES: dict[str, np.dtype] = {"F32": np.dtype(np.float32), "F16": np.dtype(np.float16)}
_HEADER_LEN_BYTES = 8
# Readable names for the rejection messages of the other safetensors dtypes.
_OTHER_DTYPES = {"F64": "float64", "BF16": "bfloat16", "I64": "int64", "I32": "int32", "I16": "int16",
                 "I8": "int8", "U8": "uint8", "BOOL": "bool"}  # fmt: skip


class WeightsError(ValueError):
    """Weights that do not match the expected layout, or bytes that are not valid weights."""


def encode_weights(weights: Mapping[str, np.ndarray], *, wire_dtype: WireDtype = "float32") -> bytes:
    """Serialise weights to safetensors bytes; equal weights always give equal bytes (and so equal CIDs)."""
    if wire_dtype not in ("float32", "float16"):
        raise WeightsError(f"wire dtype must be 'float32' or 'float16', got {wire_dtype!r}")
    target = np.dtype(wire_dtype)
    tensors: dict[str, np.ndarray] = {}
    for name in sorted(weights):
        array = weights[name]
        if not isinstance(array, np.ndarray) or not np.issubdtype(array.dtype, np.floating):
            raise WeightsError(f"tensor {name!r} must be a float numpy array, got {_describe(array)}")
        with np.errstate(over="ignore"):  # overflow is reported below as a WeightsError instead
            converted = np.ascontiguousarray(array, dtype=target)
        # Refuse to publish what every receiver would reject (float16 overflows to inf above 65504).
        _check_finite(name, converted, f" as {wire_dtype}")
        tensors[name] = converted
    raw = safetensors.numpy.save(tensors, metadata={"format": FORMAT_NAME, "dtype": wire_dtype})
    return _canonical_header(raw)


def decode_weights(data: bytes, spec: WeightSpec, *, max_bytes: int | None = None) -> Weights:
    """Parse and validate safetensors bytes from the network into float32 weights matching `spec`.

    The returned arrays are read-only: decoded weights are typically shared through a cache.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise WeightsError(f"weights payload must be bytes, got {type(data).__name__}")
    if max_bytes is not None and len(data) > max_bytes:
        raise WeightsError(f"weights payload too large: {len(data)} bytes, limit {max_bytes}")
    try:
        entries = safetensors.deserialize(bytes(data))
    except Exception as exc:  # the Rust parser raises SafetensorError, but be safe on hostile input
        raise WeightsError(f"not a valid safetensors payload ({len(data)} bytes): {exc}") from exc

    wire: dict[str, dict[str, Any]] = {}
    for name, info in entries:
        if name in wire:
            raise WeightsError(f"duplicate tensor name {name!r}")
        wire[name] = info
    _check_names(wire.keys(), spec)

    weights: Weights = {}
    for name in sorted(spec):
        info = wire[name]
        dtype_name = str(info["dtype"])
        dtype = _WIRE_DTYPES.get(dtype_name)
        if dtype is None:
            readable = _OTHER_DTYPES.get(dtype_name, "unsupported")
            raise WeightsError(
                f"tensor {name!r} has dtype {dtype_name} ({readable}), expected F32 (float32) or F16"
            )
        shape = tuple(int(d) for d in info["shape"])
        _check_shape(name, shape, spec[name])
        array = np.frombuffer(info["data"], dtype=dtype.newbyteorder("<")).reshape(shape)
        # Upcasts float16; float32 on a little-endian host stays a view of the parser's private buffer.
        array = array.astype(np.float32, copy=False)
        _check_finite(name, array)
        array.flags.writeable = False
        weights[name] = array
    return weights


def validate_weights(weights: Mapping[str, np.ndarray], spec: WeightSpec) -> None:
    """Raise WeightsError unless `weights` has exactly the names and shapes of `spec`, float32 and finite."""
    check_layout(weights, spec)
    for name in sorted(spec):
        array = weights[name]
        if array.dtype != np.float32:
            raise WeightsError(f"tensor {name!r} has dtype {array.dtype}, expected float32")
        _check_finite(name, array)


def check_layout(weights: Mapping[str, np.ndarray], spec: WeightSpec) -> None:
    """Raise WeightsError unless `weights` are numpy arrays with exactly the names and shapes of `spec`."""
    _check_names(weights.keys(), spec)
    for name in sorted(spec):
        array = weights[name]
        if not isinstance(array, np.ndarray):
            raise WeightsError(f"tensor {name!r} must be a numpy array, got {type(array).__name__}")
        _check_shape(name, array.shape, spec[name])


def average_weights(
    weights_list: Sequence[Mapping[str, np.ndarray]], coefficients: Sequence[float] | None = None
) -> Weights:
    """Weighted mean of several weight sets with the same layout (plain mean without coefficients)."""
    if not weights_list:
        raise ValueError("cannot average an empty list of weights")
    if coefficients is None:
        coefficients = [1.0] * len(weights_list)
    if len(coefficients) != len(weights_list):
        raise ValueError(f"got {len(coefficients)} coefficients for {len(weights_list)} weight sets")
    coefs = [float(c) for c in coefficients]
    if any(not math.isfinite(c) or c < 0 for c in coefs):
        raise ValueError(f"coefficients must be finite and non-negative, got {coefs}")
    total = math.fsum(coefs)
    if total <= 0:
        raise ValueError("coefficients must not all be zero")

    first = weights_list[0]
    layout = {name: tuple(np.shape(array)) for name, array in first.items()}
    for other in weights_list[1:]:
        _check_names(other.keys(), layout)
        for name, shape in layout.items():
            _check_shape(name, np.shape(other[name]), shape)

    result: Weights = {}
    for name in sorted(layout):
        # Accumulate in float32: float64 would double the memory of a 6.6M-parameter model for no gain.
        acc = np.zeros(layout[name], dtype=np.float32)
        for weights, coef in zip(weights_list, coefs, strict=True):
            if coef:
                acc += np.float32(coef / total) * np.asarray(weights[name], dtype=np.float32)
        result[name] = acc
    return result


def weights_nbytes(weights: Mapping[str, np.ndarray]) -> int:
    """In-memory size of the tensors in bytes."""
    return sum(int(np.asarray(array).nbytes) for array in weights.values())


def weights_spec(weights: Mapping[str, np.ndarray]) -> WeightSpec:
    """The layout (names and shapes) of a weight set."""
    return {name: tuple(np.shape(array)) for name, array in weights.items()}


def weights_digest(weights: Mapping[str, np.ndarray]) -> bytes:
    """A content hash over names, shapes and float32 values, independent of dict order."""
    digest = hashlib.blake2b(digest_size=32)
    for name in sorted(weights):
        array = np.ascontiguousarray(weights[name], dtype="<f4")
        digest.update(name.encode())
        digest.update(repr(array.shape).encode())
        digest.update(array.tobytes())
    return digest.digest()


def _check_names(names: Iterable[str], spec: Mapping[str, object]) -> None:
    present = set(names)
    expected = set(spec)
    missing = sorted(expected - present)
    unexpected = sorted(present - expected)
    if missing:
        raise WeightsError(f"missing tensors: {', '.join(missing)}")
    if unexpected:
        raise WeightsError(f"unexpected tensors: {', '.join(map(str, unexpected))}")


def _check_shape(name: str, got: tuple[int, ...], expected: tuple[int, ...]) -> None:
    if tuple(got) != tuple(expected):
        raise WeightsError(f"tensor {name!r} has wrong shape: expected {tuple(expected)}, got {tuple(got)}")


def _check_finite(name: str, array: np.ndarray, context: str = "") -> None:
    if np.isfinite(array).all():
        return
    nans = int(np.isnan(array).sum())
    infs = int(np.isinf(array).sum())
    raise WeightsError(f"tensor {name!r} has non-finite values{context}: {nans} NaN, {infs} Inf")


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"array of {value.dtype}"
    return type(value).__name__


def _canonical_header(raw: bytes) -> bytes:
    """Rewrite the header with sorted keys.

    The safetensors writer keeps `__metadata__` in a Rust HashMap whose order changes from process to
    process, so the same weights would otherwise get different bytes and CIDs on different peers.
    Data offsets are relative to the end of the header, so only the header needs rewriting.
    """
    header_len = int.from_bytes(raw[:_HEADER_LEN_BYTES], "little")
    header = json.loads(raw[_HEADER_LEN_BYTES : _HEADER_LEN_BYTES + header_len])
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    # safetensors pads the header with spaces to keep the tensor data 8-byte aligned.
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(_HEADER_LEN_BYTES, "little") + text + raw[_HEADER_LEN_BYTES + header_len :]
