"""The in-memory form of a dataset and of one peer's share of it."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Images as float32 in [0, 1] shaped (n, height, width, 1); labels as int64."""

    name: str
    x: np.ndarray
    y: np.ndarray
    num_classes: int
    writers: np.ndarray | None = None  # writer id per sample (FEMNIST); None where unknown
    test_mask: np.ndarray | None = None  # per sample: in the source's own test split (LEAF); None: no split

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])


@dataclass(frozen=True)
class PeerData:
    """One peer's local training and test split."""

    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
