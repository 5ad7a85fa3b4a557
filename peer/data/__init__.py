"""Datasets for the peers: the bundled digits, LEAF FEMNIST, and their split among peers."""

from __future__ import annotations

from pathlib import Path

from peer.data.dataset import Dataset, PeerData
from peer.data.digits import load_digits
from peer.data.errors import DataError
from peer.data.femnist import convert_leaf, load_femnist
from peer.data.partition import Partition, label_histogram, peer_data, split_indices

DATASETS: tuple[str, ...] = ("digits", "femnist")

__all__ = [
    "DATASETS",
    "DataError",
    "Dataset",
    "Partition",
    "PeerData",
    "convert_leaf",
    "label_histogram",
    "load_dataset",
    "peer_data",
    "split_indices",
]


def load_dataset(name: str, path: Path | None = None) -> Dataset:
    """Load a dataset by name; "femnist" needs the path of a converted .npz or of LEAF JSON."""
    if name == "digits":
        if path is not None:
            # Silently ignoring a path would hide a configuration mistake.
            raise ValueError("dataset 'digits' is bundled with the package and takes no path")
        return load_digits()
    if name == "femnist":
        if path is None:
            raise ValueError(
                "dataset 'femnist' needs a path: a .npz made by convert_leaf, "
                "or a LEAF JSON file or directory"
            )
        return load_femnist(Path(path))
    raise ValueError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
