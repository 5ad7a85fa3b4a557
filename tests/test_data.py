"""The data layer: bundled digits, LEAF FEMNIST reading and conversion, partitioning among peers."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from peer.data import (
    DATASETS,
    DataError,
    Dataset,
    PeerData,
    convert_leaf,
    load_dataset,
    peer_data,
    split_indices,
)
from peer.data.digits import load_digits
from peer.data.femnist import load_femnist
from peer.data.partition import (
    label_histogram,
    partition_by_writer,
    partition_dirichlet,
    partition_iid,
)

# --- fixtures -------------------------------------------------------------------------------------------

# Two LEAF files of three writers each: (writer, labels). Labels cover both ends of 0..61.
LEAF_FILES: dict[str, list[tuple[str, list[int]]]] = {
    "all_data_0.json": [("f0000_14", [0, 1, 2]), ("f0001_41", [61, 60, 5, 5, 7]), ("f0002_33", [9, 9])],
    "all_data_1.json": [("f0100_10", [10, 11, 12, 13]), ("f0101_22", [36]), ("f0102_07", [1] * 6)],
}
NUM_LEAF_SAMPLES = sum(len(labels) for writers in LEAF_FILES.values() for _, labels in writers)


def _leaf_row(label: int, sample: int) -> list[float]:
    """A white image (1.0) with a few known darker pixels, so the inversion can be checked exactly."""
    row = [1.0] * 784
    row[1] = 0.0
    row[2] = 0.2
    row[3] = label / 61  # lets a test tie each image to its label after conversion
    row[4 + sample % 700] = 0.0
    return row


def _leaf_doc(writers: list[tuple[str, list[int]]]) -> dict[str, Any]:
    return {
        "users": [name for name, _ in writers],
        "num_samples": [len(labels) for _, labels in writers],
        "user_data": {
            name: {"x": [_leaf_row(label, i) for i, label in enumerate(labels)], "y": labels}
            for name, labels in writers
        },
    }


@pytest.fixture
def leaf_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "leaf"
    directory.mkdir()
    for file_name, writers in LEAF_FILES.items():
        (directory / file_name).write_text(json.dumps(_leaf_doc(writers)))
    (directory / "README.txt").write_text("not a data file; must be ignored")
    return directory


@pytest.fixture(scope="module")
def digits() -> Dataset:
    return load_digits()


def _indexed_dataset(n: int, num_classes: int = 10, writers: np.ndarray | None = None) -> Dataset:
    """x[i] encodes i, so tests can recover which samples a split picked."""
    x = (np.arange(n, dtype=np.float32) / n).reshape(n, 1, 1, 1)
    y = np.arange(n, dtype=np.int64) % num_classes
    return Dataset(name="indexed", x=x, y=y, num_classes=num_classes, writers=writers)


def _sample_ids(x: np.ndarray, n: int) -> np.ndarray:
    return np.rint(x.reshape(-1) * n).astype(np.int64)


def _assert_disjoint_cover(parts: list[np.ndarray], n: int) -> None:
    joined = np.concatenate(parts)
    assert len(joined) == n
    assert np.array_equal(np.sort(joined), np.arange(n))


# --- digits ---------------------------------------------------------------------------------------------


def test_digits_shape_range_and_labels(digits: Dataset) -> None:
    assert digits.name == "digits"
    assert digits.x.shape == (1797, 8, 8, 1)
    assert digits.x.dtype == np.float32
    assert digits.x.min() == 0.0
    assert digits.x.max() == 1.0
    assert digits.y.dtype == np.int64
    assert digits.y.shape == (1797,)
    assert digits.num_classes == 10
    assert set(np.unique(digits.y)) == set(range(10))
    assert digits.writers is None
    assert digits.input_shape == (8, 8, 1)
    # First CSV row starts 0,0,5,13 and is a 0.
    assert digits.x[0, 0, :4, 0].tolist() == [0.0, 0.0, 5 / 16, 13 / 16]
    assert digits.y[0] == 0


def test_no_sklearn_import() -> None:
    assert "sklearn" not in sys.modules


# --- FEMNIST --------------------------------------------------------------------------------------------


def _check_femnist(ds: Dataset) -> None:
    assert ds.name == "femnist"
    assert ds.num_classes == 62
    assert ds.x.shape == (NUM_LEAF_SAMPLES, 28, 28, 1)
    assert ds.x.dtype == np.float32
    assert ds.y.dtype == np.int64
    expected_labels = [
        label for file in sorted(LEAF_FILES) for _, labels in LEAF_FILES[file] for label in labels
    ]
    assert ds.y.tolist() == expected_labels
    flat = ds.x.reshape(len(ds.x), -1)
    # Inverted: LEAF's white background (1.0) becomes 0, black ink (0.0) becomes 1.
    assert flat[:, 0].max() == 0.0
    assert np.all(flat[:, 1] == 1.0)
    assert np.allclose(flat[:, 2], 204 / 255)
    assert np.allclose(flat[:, 3], np.rint((1 - ds.y / 61) * 255) / 255)
    assert (flat == 0).mean() > 0.9
    # Writers: one index per writer name, in file then user order.
    assert ds.writers is not None
    sizes = [len(labels) for file in sorted(LEAF_FILES) for _, labels in LEAF_FILES[file]]
    assert ds.writers.tolist() == np.repeat(np.arange(len(sizes)), sizes).tolist()


def test_femnist_from_directory(leaf_dir: Path) -> None:
    _check_femnist(load_femnist(leaf_dir))


def test_femnist_from_single_file(leaf_dir: Path) -> None:
    ds = load_femnist(leaf_dir / "all_data_1.json")
    assert ds.y.tolist() == [10, 11, 12, 13, 36, 1, 1, 1, 1, 1, 1]
    assert ds.writers is not None
    assert ds.writers.tolist() == [0, 0, 0, 0, 1, 2, 2, 2, 2, 2, 2]
    assert ds.x.shape == (11, 28, 28, 1)


def test_convert_round_trip(leaf_dir: Path, tmp_path: Path) -> None:
    out = convert_leaf(leaf_dir, tmp_path / "out" / "femnist.npz")
    assert out == tmp_path / "out" / "femnist.npz"
    assert [p.name for p in out.parent.iterdir()] == ["femnist.npz"]  # no temporary file left behind
    with np.load(out, allow_pickle=False) as archive:
        assert archive["x"].dtype == np.uint8
        assert archive["x"].shape == (NUM_LEAF_SAMPLES, 28, 28)
        assert archive["y"].dtype == np.uint8
        assert archive["writers"].dtype == np.int32
        assert archive["writer_names"].dtype.kind == "U"
        names = archive["writer_names"].tolist()
    assert names == [w for file in sorted(LEAF_FILES) for w, _ in LEAF_FILES[file]]

    from_npz, from_json = load_femnist(out), load_femnist(leaf_dir)
    _check_femnist(from_npz)
    assert np.array_equal(from_npz.x, from_json.x)
    assert np.array_equal(from_npz.y, from_json.y)
    assert from_npz.writers is not None
    assert from_json.writers is not None
    assert np.array_equal(from_npz.writers, from_json.writers)
    assert load_dataset("femnist", out).x.shape == from_npz.x.shape


def test_convert_into_directory_and_overwrite(leaf_dir: Path, tmp_path: Path) -> None:
    first = convert_leaf(leaf_dir / "all_data_0.json", tmp_path)
    assert first == tmp_path / "femnist.npz"
    second = convert_leaf(leaf_dir, tmp_path)
    assert second == first
    assert len(load_femnist(second).y) == NUM_LEAF_SAMPLES


def test_same_writer_in_two_files_keeps_one_index(tmp_path: Path) -> None:
    # LEAF's train and test splits hold the same writers; by-writer partitioning must see them as one.
    (tmp_path / "train.json").write_text(json.dumps(_leaf_doc([("w1", [1, 2]), ("w2", [3])])))
    (tmp_path / "test.json").write_text(json.dumps(_leaf_doc([("w2", [4]), ("w1", [5])])))
    ds = load_femnist(tmp_path)
    assert ds.writers is not None
    assert ds.y.tolist() == [4, 5, 1, 2, 3]  # test.json sorts first
    assert ds.writers.tolist() == [0, 1, 1, 1, 0]


def _write(path: Path, content: Any) -> Path:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def _good() -> dict[str, Any]:
    return _leaf_doc([("a", [1, 2]), ("b", [3])])


def _broken(change: str) -> Any:
    doc = _good()
    if change == "no_user_data":
        del doc["user_data"]
    elif change == "short_row":
        doc["user_data"]["a"]["x"][1] = [0.5] * 783
    elif change == "ragged":
        doc["user_data"]["a"]["x"] = [[0.5] * 784, [0.5] * 10]
    elif change == "text_pixels":
        doc["user_data"]["a"]["x"][0][5] = "white"
    elif change == "label_high":
        doc["user_data"]["b"]["y"] = [62]
    elif change == "label_negative":
        doc["user_data"]["b"]["y"] = [-1]
    elif change == "label_float":
        doc["user_data"]["b"]["y"] = [1.5]
    elif change == "num_samples":
        doc["num_samples"] = [3, 1]
    elif change == "num_samples_length":
        doc["num_samples"] = [2]
    elif change == "user_missing":
        del doc["user_data"]["b"]
    elif change == "y_missing":
        del doc["user_data"]["b"]["y"]
    elif change == "pixel_range":
        doc["user_data"]["a"]["x"][0][0] = 255.0
    elif change == "empty":
        doc = {"users": [], "num_samples": [], "user_data": {}}
    elif change == "list_top":
        doc = [1, 2, 3]
    return doc


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ("no_user_data", "missing keys user_data"),
        ("short_row", "784"),
        ("ragged", "784"),
        ("text_pixels", "784"),
        ("label_high", "out of range"),
        ("label_negative", "out of range"),
        ("label_float", "integer labels"),
        ("num_samples", "num_samples mismatch"),
        ("num_samples_length", "num_samples mismatch"),
        ("user_missing", "missing keys"),
        ("y_missing", "missing keys"),
        ("pixel_range", "in [0, 1]"),
        ("empty", "no samples"),
        ("list_top", "not a JSON object"),
    ],
)
def test_leaf_validation(tmp_path: Path, change: str, problem: str) -> None:
    path = _write(tmp_path / "bad.json", _broken(change))
    with pytest.raises(DataError, match=r"bad\.json") as info:
        load_femnist(path)
    assert problem in str(info.value)
    with pytest.raises(DataError, match=r"bad\.json"):
        convert_leaf(path, tmp_path / "out.npz")
    assert not (tmp_path / "out.npz").exists()


def test_leaf_not_json(tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.json", "{this is not json")
    with pytest.raises(DataError, match=r"bad\.json: not JSON"):
        load_femnist(path)


def test_missing_path(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"nowhere\.npz: no such file"):
        load_femnist(tmp_path / "nowhere.npz")
    with pytest.raises(DataError, match="nowhere: no such file"):
        convert_leaf(tmp_path / "nowhere", tmp_path / "out.npz")


def test_directory_without_json(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"no \.json files"):
        load_femnist(tmp_path)


def test_bad_file_in_directory_is_named(leaf_dir: Path) -> None:
    _write(leaf_dir / "all_data_2.json", _broken("label_high"))
    with pytest.raises(DataError, match=r"all_data_2\.json: labels .* out of range"):
        load_femnist(leaf_dir)


def test_bad_npz(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(DataError, match=r"garbage\.npz: not a converted FEMNIST"):
        load_femnist(garbage)
    not_zip = tmp_path / "plain.npz"
    not_zip.write_bytes(b"hello")
    with pytest.raises(DataError, match=r"plain\.npz: not a converted FEMNIST"):
        load_femnist(not_zip)
    partial = tmp_path / "partial.npz"
    np.savez(partial, x=np.zeros((1, 28, 28), np.uint8), y=np.zeros(1, np.uint8))
    with pytest.raises(DataError, match=r"partial\.npz: missing keys writers, writer_names"):
        load_femnist(partial)
    objects = tmp_path / "objects.npz"
    np.savez(
        objects,
        x=np.zeros((1, 28, 28), np.uint8),
        y=np.zeros(1, np.uint8),
        writers=np.zeros(1, np.int32),
        writer_names=np.array(["a"], dtype=object),
    )
    with pytest.raises(DataError, match=r"objects\.npz"):
        load_femnist(objects)
    bad_label = tmp_path / "label.npz"
    np.savez(
        bad_label,
        x=np.zeros((1, 28, 28), np.uint8),
        y=np.array([70], np.uint8),
        writers=np.zeros(1, np.int32),
        writer_names=np.array(["a"]),
    )
    with pytest.raises(DataError, match=r"label\.npz: labels out of range"):
        load_femnist(bad_label)


# --- load_dataset ---------------------------------------------------------------------------------------


def test_load_dataset(leaf_dir: Path) -> None:
    assert DATASETS == ("digits", "femnist")
    assert load_dataset("digits").x.shape == (1797, 8, 8, 1)
    assert load_dataset("femnist", leaf_dir).num_classes == 62
    with pytest.raises(ValueError, match="femnist' needs a path"):
        load_dataset("femnist")
    with pytest.raises(ValueError, match="unknown dataset 'mnist'"):
        load_dataset("mnist")
    with pytest.raises(ValueError, match="takes no path"):
        load_dataset("digits", leaf_dir)


# --- partitioners ---------------------------------------------------------------------------------------


def test_iid_disjoint_cover_and_seeded() -> None:
    parts = partition_iid(103, 10, np.random.default_rng(1))
    _assert_disjoint_cover(parts, 103)
    assert {len(p) for p in parts} == {10, 11}
    again = partition_iid(103, 10, np.random.default_rng(1))
    other = partition_iid(103, 10, np.random.default_rng(2))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))
    with pytest.raises(ValueError, match="fewer samples than peers"):
        partition_iid(3, 4, np.random.default_rng(0))


def test_dirichlet_disjoint_cover_and_seeded(digits: Dataset) -> None:
    parts = partition_dirichlet(digits.y, 10, 0.5, np.random.default_rng(7))
    _assert_disjoint_cover(parts, len(digits.y))
    again = partition_dirichlet(digits.y, 10, 0.5, np.random.default_rng(7))
    other = partition_dirichlet(digits.y, 10, 0.5, np.random.default_rng(8))
    assert all(np.array_equal(a, b) for a, b in zip(parts, again, strict=True))
    assert not all(np.array_equal(a, b) for a, b in zip(parts, other, strict=True))


def _mean_max_class_share(labels: np.ndarray, parts: list[np.ndarray], num_classes: int) -> float:
    shares = [label_histogram(labels[p], num_classes).max() / len(p) for p in parts]
    return float(np.mean(shares))


def test_dirichlet_skew_follows_alpha(digits: Dataset) -> None:
    rng = np.random.default_rng(3)
    skewed = _mean_max_class_share(digits.y, partition_dirichlet(digits.y, 10, 0.1, rng), 10)
    flat = _mean_max_class_share(digits.y, partition_dirichlet(digits.y, 10, 100.0, rng), 10)
    assert skewed > 0.5
    assert flat < 0.2
    assert skewed > flat + 0.3


def test_dirichlet_min_samples(digits: Dataset) -> None:
    parts = partition_dirichlet(digits.y, 10, 0.3, np.random.default_rng(0), min_samples=60)
    assert min(len(p) for p in parts) >= 60
    _assert_disjoint_cover(parts, len(digits.y))
    # Near-perfect balance is out of reach at alpha 0.1: a bounded number of tries, then a clear error.
    with pytest.raises(ValueError, match=r"fewer than 170 samples in 20 tries"):
        partition_dirichlet(digits.y, 10, 0.1, np.random.default_rng(0), min_samples=170, max_tries=20)
    with pytest.raises(ValueError, match="cannot give each of 10 peers 200 samples"):
        partition_dirichlet(digits.y, 10, 0.5, np.random.default_rng(0), min_samples=200)
    with pytest.raises(ValueError, match="alpha"):
        partition_dirichlet(digits.y, 10, 0.0, np.random.default_rng(0))


def test_by_writer_keeps_writers_whole_and_balances() -> None:
    counts = [50, 40, 30, 30, 20, 10, 10, 5, 3, 2]
    writers = np.repeat(np.arange(len(counts)), counts)
    writers = np.random.default_rng(0).permutation(writers)  # samples of a writer need not be contiguous
    parts = partition_by_writer(writers, 3)
    _assert_disjoint_cover(parts, len(writers))
    owners = [set(writers[p].tolist()) for p in parts]
    assert sum(len(o) for o in owners) == len(counts)  # each writer on exactly one peer
    assert len(set().union(*owners)) == len(counts)
    sizes = sorted(len(p) for p in parts)
    assert sizes[-1] - sizes[0] <= max(counts[2:])  # greedy largest-first stays close to balanced
    assert [p.tolist() for p in parts] == [p.tolist() for p in partition_by_writer(writers, 3)]
    with pytest.raises(ValueError, match="fewer writers than peers"):
        partition_by_writer(writers, 11)


def test_split_indices_schemes(digits: Dataset, leaf_dir: Path) -> None:
    for scheme in ("iid", "dirichlet"):
        _assert_disjoint_cover(split_indices(digits, 5, scheme, 0.5, 0), len(digits.y))
    femnist = load_femnist(leaf_dir)
    parts = split_indices(femnist, 3, "writer", 0.5, 0)
    _assert_disjoint_cover(parts, len(femnist.y))
    assert femnist.writers is not None
    assert all(len(set(femnist.writers[p].tolist())) == 2 for p in parts)
    with pytest.raises(ValueError, match="no writer ids"):
        split_indices(digits, 5, "writer", 0.5, 0)
    with pytest.raises(ValueError, match="unknown partition scheme"):
        split_indices(digits, 5, "random", 0.5, 0)  # type: ignore[arg-type]


def test_label_histogram() -> None:
    assert label_histogram(np.array([0, 2, 2, 4]), 6).tolist() == [1, 0, 2, 0, 1, 0]
    with pytest.raises(ValueError, match=r"0\.\.2"):
        label_histogram(np.array([3]), 3)


# --- peer_data ------------------------------------------------------------------------------------------


def test_peer_data_stable_disjoint_and_covering() -> None:
    n = 600
    ds = _indexed_dataset(n)
    seen: list[np.ndarray] = []
    for peer in range(6):
        data = peer_data(ds, peer, 6, "dirichlet", alpha=0.5, seed=4)
        assert isinstance(data, PeerData)
        train, test = _sample_ids(data.train_x, n), _sample_ids(data.test_x, n)
        assert not set(train.tolist()) & set(test.tolist())
        assert np.array_equal(data.train_y, ds.y[train])
        assert np.array_equal(data.test_y, ds.y[test])
        shard = len(train) + len(test)
        assert abs(len(test) - 0.2 * shard) <= 1
        again = peer_data(ds, peer, 6, "dirichlet", alpha=0.5, seed=4)
        assert np.array_equal(again.train_x, data.train_x)
        assert np.array_equal(again.test_y, data.test_y)
        seen.extend([train, test])
    _assert_disjoint_cover(seen, n)
    other_seed = peer_data(ds, 0, 6, "dirichlet", alpha=0.5, seed=5)
    first = peer_data(ds, 0, 6, "dirichlet", alpha=0.5, seed=4)
    assert not np.array_equal(_sample_ids(other_seed.train_x, n), _sample_ids(first.train_x, n))


def test_peer_data_each_split_keeps_a_sample() -> None:
    ds = _indexed_dataset(4)
    for fraction in (0.01, 0.99):
        data = peer_data(ds, 0, 2, "iid", test_fraction=fraction)
        assert len(data.train_y) == 1
        assert len(data.test_y) == 1
    with pytest.raises(ValueError, match="at least 2"):
        peer_data(_indexed_dataset(3), 0, 3, "iid")


def _digest(data: PeerData) -> str:
    h = hashlib.sha256()
    for arr in (data.train_x, data.train_y, data.test_x, data.test_y):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def test_peer_data_same_in_another_process(digits: Dataset) -> None:
    code = (
        "import hashlib, numpy as np\n"
        "from peer.data import load_dataset, peer_data\n"
        "d = peer_data(load_dataset('digits'), 3, 8, 'dirichlet', 0.3, 11)\n"
        "h = hashlib.sha256()\n"
        "for a in (d.train_x, d.train_y, d.test_x, d.test_y):\n"
        "    h.update(np.ascontiguousarray(a).tobytes())\n"
        "print(h.hexdigest())\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env, timeout=60
    )
    assert result.stdout.strip() == _digest(peer_data(digits, 3, 8, "dirichlet", 0.3, 11))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"peer_index": -1}, "peer_index must be in 0..3"),
        ({"peer_index": 4}, "peer_index must be in 0..3"),
        ({"num_peers": 0, "peer_index": 0}, "num_peers must be >= 1"),
        ({"alpha": 0.0}, "alpha must be"),
        ({"alpha": -1.0}, "alpha must be"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 1.5}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"scheme": "random"}, "unknown partition scheme"),
    ],
)
def test_peer_data_bad_arguments(digits: Dataset, kwargs: dict[str, Any], message: str) -> None:
    args: dict[str, Any] = {"peer_index": 0, "num_peers": 4, **kwargs}
    with pytest.raises(ValueError, match=message):
        peer_data(digits, **args)


# --- LEAF's train/test split, the data root, convert-femnist -----------------------------------------------
@pytest.fixture
def leaf_root(tmp_path: Path) -> Path:
    """LEAF's `data/` folder: the same writers in train/ and test/ (LEAF splits each writer's samples)."""
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    writers = [(f"w{i}", [i % 10] * 20) for i in range(6)]
    (root / "train" / "all_data_0_niid_train.json").write_text(json.dumps(_leaf_doc(writers)))
    tests = [(f"w{i}", [(i + 1) % 10] * 4) for i in range(6)]
    (root / "test" / "all_data_0_niid_test.json").write_text(json.dumps(_leaf_doc(tests)))
    return root


def test_leaf_data_root_keeps_the_test_split(leaf_root: Path, tmp_path: Path) -> None:
    ds = load_femnist(leaf_root)
    assert ds.test_mask is not None
    assert int(ds.test_mask.sum()) == 24
    assert len(ds.y) == 144
    for data in (ds, load_femnist(convert_leaf(leaf_root, tmp_path / "root.npz"))):
        for peer in range(3):
            share = peer_data(data, peer, 3, scheme="writer", test_fraction=0.5)
            # LEAF's 4 test samples of each of its 2 writers are the peer's test set, whatever test_fraction
            assert len(share.test_y) == 8
            assert len(share.train_y) == 40
            assert sorted(np.unique(share.test_y, return_counts=True)[1].tolist()) in ([4, 4], [8])
    # a plain folder or one file has no split: the fraction applies as before
    assert load_femnist(leaf_root / "train").test_mask is None


def test_convert_femnist_command_appends_npz(leaf_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "femnist-converted"
    result = subprocess.run(
        [sys.executable, "-m", "peer", "convert-femnist", "--source", str(leaf_dir), "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    written = tmp_path / "femnist-converted.npz"
    assert f"wrote {written}" in result.stdout
    assert len(load_dataset("femnist", written).y) == NUM_LEAF_SAMPLES
