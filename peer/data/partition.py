"""Splitting a dataset among peers, deterministically.

Every peer computes the whole partition itself and keeps its own shard, so nothing is coordinated:
the result depends only on the arguments (dataset, number of peers, scheme, alpha, seed), never on
hash randomization, process state or the peer's address.
"""

from __future__ import annotations

import heapq
import math
from typing import Literal, get_args

import numpy as np

from peer.data.dataset import Dataset, PeerData

Partition = Literal["iid", "dirichlet", "writer"]
PARTITIONS: tuple[str, ...] = get_args(Partition)

# Separates the per-peer shuffle stream from the partition stream drawn from the same seed.
_LOCAL_SPLIT_STREAM = 1


def partition_iid(n: int, num_peers: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Shuffle 0..n-1 and cut it into num_peers near-equal, disjoint, sorted index arrays."""
    _check_num_peers(num_peers)
    if n < num_peers:
        raise ValueError(f"cannot split {n} samples among {num_peers} peers: fewer samples than peers")
    return [np.sort(part) for part in np.array_split(rng.permutation(n), num_peers)]


def partition_dirichlet(
    labels: np.ndarray,
    num_peers: int,
    alpha: float,
    rng: np.random.Generator,
    min_samples: int = 10,
    max_tries: int = 1000,
) -> list[np.ndarray]:
    """Label-skewed split: each class is shared among peers in Dirichlet(alpha) proportions.

    Small alpha gives each peer few classes; large alpha approaches an IID split. Draws are repeated
    until every peer has at least min_samples, up to max_tries times.
    """
    labels = np.asarray(labels)
    _check_num_peers(num_peers)
    _check_alpha(alpha)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError("labels must be a 1-D array of integers")
    if min_samples < 0:
        raise ValueError(f"min_samples must be >= 0, got {min_samples}")
    if max_tries < 1:
        raise ValueError(f"max_tries must be >= 1, got {max_tries}")
    n = labels.size
    need = max(min_samples, 1)  # an empty shard is never useful, so at least one sample each
    if n < num_peers * need:
        raise ValueError(f"cannot give each of {num_peers} peers {need} samples out of {n}")
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(max_tries):
        shards: list[list[np.ndarray]] = [[] for _ in range(num_peers)]
        for members in by_class:
            proportions = rng.dirichlet(np.full(num_peers, alpha))
            cuts = (np.cumsum(proportions)[:-1] * len(members)).astype(np.int64)
            for peer, part in enumerate(np.split(rng.permutation(members), cuts)):
                shards[peer].append(part)
        parts = [np.sort(np.concatenate(s)) for s in shards]
        if min(len(p) for p in parts) >= need:
            return parts
    raise ValueError(
        f"Dirichlet(alpha={alpha}) split left some of {num_peers} peers with fewer than {need} "
        f"samples in {max_tries} tries; raise alpha, lower min_samples or use fewer peers"
    )


def partition_by_writer(writers: np.ndarray, num_peers: int) -> list[np.ndarray]:
    """Whole writers per peer, balancing sample counts greedily (largest writer to the lightest peer)."""
    writers = np.asarray(writers)
    _check_num_peers(num_peers)
    if writers.ndim != 1:
        raise ValueError("writers must be a 1-D array with one writer id per sample")
    ids, inverse, counts = np.unique(writers, return_inverse=True, return_counts=True)
    if len(ids) < num_peers:
        raise ValueError(f"cannot split {len(ids)} writers among {num_peers} peers: fewer writers than peers")
    # Largest first; ties broken by writer id (np.unique sorts ids) so the order never depends on luck.
    order = np.lexsort((np.arange(len(ids)), -counts))
    loads = [(0, peer) for peer in range(num_peers)]  # (samples, peer): ties go to the lowest peer index
    peer_of_writer = np.empty(len(ids), dtype=np.int64)
    for w in order:
        load, peer = heapq.heappop(loads)
        peer_of_writer[w] = peer
        heapq.heappush(loads, (load + int(counts[w]), peer))
    peer_of_sample = peer_of_writer[inverse.reshape(-1)]
    # one stable sort, not a scan of every sample per peer (1,000 peers: 1,000 scans per split, and every
    # lab peer splits); each peer's indices stay ascending
    by_peer = np.argsort(peer_of_sample, kind="stable")
    return np.split(by_peer, np.cumsum(np.bincount(peer_of_sample, minlength=num_peers))[:-1])


def split_indices(
    dataset: Dataset,
    num_peers: int,
    scheme: Partition = "dirichlet",
    alpha: float = 0.5,
    seed: int = 0,
    min_samples: int = 10,
) -> list[np.ndarray]:
    """Index arrays of every peer's shard under the given scheme; alpha is used only by "dirichlet"."""
    _check_num_peers(num_peers)
    rng = np.random.default_rng(seed)
    if scheme == "iid":
        return partition_iid(len(dataset.y), num_peers, rng)
    if scheme == "dirichlet":
        return partition_dirichlet(dataset.y, num_peers, alpha, rng, min_samples=min_samples)
    if scheme == "writer":
        if dataset.writers is None:
            raise ValueError(f"dataset {dataset.name!r} has no writer ids; use 'iid' or 'dirichlet'")
        return partition_by_writer(dataset.writers, num_peers)
    raise ValueError(f"unknown partition scheme {scheme!r}; expected one of {', '.join(PARTITIONS)}")


def peer_data(
    dataset: Dataset,
    peer_index: int,
    num_peers: int,
    scheme: Partition = "dirichlet",
    alpha: float = 0.5,
    seed: int = 0,
    test_fraction: float = 0.2,
    shards: list[np.ndarray] | None = None,
) -> PeerData:
    """The shard of peer `peer_index`, split into local train and test sets; `shards`: the split
    `split_indices` gives for these arguments, when the caller holds it already (a lab worker of 500 peers).

    Where the dataset has its own test split (LEAF's `test/`), the shard's samples from it are the peer's
    test set and `test_fraction` is not used (unless the shard holds none, or only, test samples).
    Depends only on its arguments, so each peer can compute its own share with no coordination.
    """
    _check_num_peers(num_peers)
    if not 0 <= peer_index < num_peers:
        raise ValueError(f"peer_index must be in 0..{num_peers - 1}, got {peer_index}")
    _check_alpha(alpha)
    if not (math.isfinite(test_fraction) and 0 < test_fraction < 1):
        raise ValueError(f"test_fraction must be strictly between 0 and 1, got {test_fraction}")
    if shards is None:
        shards = split_indices(dataset, num_peers, scheme, alpha, seed)
    shard = shards[peer_index]
    if len(shard) < 2:
        raise ValueError(f"peer {peer_index} got {len(shard)} sample(s); a train/test split needs at least 2")
    if dataset.test_mask is not None:
        in_test = dataset.test_mask[shard]
        if in_test.any() and not in_test.all():
            test, train = shard[in_test], shard[~in_test]
            return PeerData(
                train_x=dataset.x[train],
                train_y=dataset.y[train],
                test_x=dataset.x[test],
                test_y=dataset.y[test],
            )
    rng = np.random.default_rng([seed, _LOCAL_SPLIT_STREAM, peer_index])
    shuffled = rng.permutation(shard)
    n_test = min(max(round(len(shard) * test_fraction), 1), len(shard) - 1)
    test, train = shuffled[:n_test], shuffled[n_test:]
    return PeerData(
        train_x=dataset.x[train],
        train_y=dataset.y[train],
        test_x=dataset.x[test],
        test_y=dataset.y[test],
    )


def label_histogram(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Samples per class, length num_classes, for summaries and skew measurements."""
    y = np.asarray(y)
    if y.size and (y.min() < 0 or y.max() >= num_classes):
        raise ValueError(f"labels must be in 0..{num_classes - 1}")
    # np.intp: bincount refuses int64 input where the platform's index type is 32-bit (armv7)
    return np.bincount(y.astype(np.intp).reshape(-1), minlength=num_classes).astype(np.int64)


def _check_num_peers(num_peers: int) -> None:
    if num_peers < 1:
        raise ValueError(f"num_peers must be >= 1, got {num_peers}")


def _check_alpha(alpha: float) -> None:
    if not (math.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be a finite number > 0, got {alpha}")
