"""The UCI handwritten digits, vendored as a small CSV so every peer has real data offline."""

from __future__ import annotations

import gzip
from importlib import resources

import numpy as np

from peer.data.dataset import Dataset
from peer.data.errors import DataError

_RESOURCE = "digits.csv.gz"
_SIDE = 8
_MAX_PIXEL = 16.0
_NUM_CLASSES = 10


def load_digits() -> Dataset:
    """Read the 1,797 8x8 digit images; pixels scaled from 0..16 to [0, 1]."""
    source = resources.files("peer.data").joinpath(_RESOURCE)
    with source.open("rb") as raw, gzip.open(raw, "rt") as text:
        table = np.loadtxt(text, delimiter=",", dtype=np.float64, ndmin=2)
    if table.shape[1] != _SIDE * _SIDE + 1:
        raise DataError(f"{_RESOURCE}: expected {_SIDE * _SIDE + 1} columns, found {table.shape[1]}")
    pixels, labels = table[:, :-1], table[:, -1]
    if labels.min() < 0 or labels.max() >= _NUM_CLASSES or np.any(labels != np.round(labels)):
        raise DataError(f"{_RESOURCE}: labels must be integers in 0..{_NUM_CLASSES - 1}")
    x = (pixels / _MAX_PIXEL).astype(np.float32).reshape(-1, _SIDE, _SIDE, 1)
    return Dataset(name="digits", x=x, y=labels.astype(np.int64), num_classes=_NUM_CLASSES)
