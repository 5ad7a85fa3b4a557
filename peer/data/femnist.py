"""LEAF FEMNIST: reading the LEAF JSON files and converting them to a compact .npz.

LEAF JSON is read as a stream (ijson), one writer at a time, so reading a 172 MB LEAF file needs about the
compact result plus one writer's samples, not the whole parsed document (json.load of such a file peaked at
about 1 GB); still, the intended path is `tangle convert-femnist` once and loading the .npz afterwards.
The converted form keeps one byte per pixel, inverted so the background is 0 as in the digits.

LEAF's data root (a folder holding `train/` and `test/`) is read as both splits, and each sample remembers
its split (`test_mask`), so that peers test on LEAF's test samples of their writers.
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ijson
import numpy as np

from peer.data.dataset import Dataset
from peer.data.errors import DataError

NUM_CLASSES = 62
SIDE = 28
PIXELS = SIDE * SIDE
_FORMAT_VERSION = 1
_LEAF_KEYS = ("users", "num_samples", "user_data")
_NPZ_KEYS = ("x", "y", "writers", "writer_names")
# Float rounding in LEAF's own preprocessing can leave values a hair outside [0, 1].
_PIXEL_SLACK = 1e-3


@dataclass(frozen=True)
class _Arrays:
    x: np.ndarray  # uint8 (n, 28, 28), background 0
    y: np.ndarray  # uint8 (n,)
    writers: np.ndarray  # int32 (n,), index into writer_names
    writer_names: np.ndarray  # fixed-width unicode (w,)
    test_mask: np.ndarray | None = None  # bool (n,): from LEAF's test split; None when no split is known


def convert_leaf(sources: Path, out: Path) -> Path:
    """Convert a LEAF JSON file or a directory of them to a compact .npz and return its path.

    `out` may be a directory, in which case the file is `out/femnist.npz`; a file name without `.npz` gets
    it appended (what `load_femnist` recognises). The file appears atomically: a reader never sees a
    half-written archive.
    """
    arrays = _read_leaf(Path(sources))
    out = Path(out)
    if out.is_dir():
        out = out / "femnist.npz"
    elif out.suffix != ".npz":
        out = out.with_name(out.name + ".npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            # A file object keeps numpy from appending ".npz" to the temporary name.
            members: dict[str, Any] = {
                "x": arrays.x,
                "y": arrays.y,
                "writers": arrays.writers,
                "writer_names": arrays.writer_names,
                "format_version": np.int32(_FORMAT_VERSION),
            }
            if arrays.test_mask is not None:
                members["test_mask"] = arrays.test_mask
            np.savez_compressed(handle, **members)
        # mkstemp makes the file private; the dataset is meant to be shared (e.g. read by containers).
        tmp.chmod(0o644)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return out


def load_femnist(path: Path) -> Dataset:
    """Load FEMNIST from a converted .npz, or from LEAF JSON (a file or a directory of them)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file or directory")
    arrays = _read_npz(path) if path.is_file() and _is_zip(path) else _read_leaf(path)
    n = arrays.x.shape[0]
    x = (arrays.x.astype(np.float32) / np.float32(255.0)).reshape(n, SIDE, SIDE, 1)
    return Dataset(
        name="femnist",
        x=x,
        y=arrays.y.astype(np.int64),
        num_classes=NUM_CLASSES,
        writers=arrays.writers.astype(np.int32),
        test_mask=arrays.test_mask,
    )


def _is_zip(path: Path) -> bool:
    """A converted archive whatever its name (an .npz is a zip file); LEAF JSON starts with text."""
    if path.suffix == ".npz":
        return True
    with path.open("rb") as handle:
        return handle.read(4) == b"PK\x03\x04"


def _json_files(folder: Path) -> list[Path]:
    # Sorted so that sample order, and with it every partition, is the same on every machine.
    files = sorted(p for p in folder.iterdir() if p.suffix == ".json" and p.is_file())
    if not files:
        raise DataError(f"{folder}: directory holds no .json files")
    return files


def _leaf_files(sources: Path) -> list[tuple[Path, bool | None]]:
    files: list[tuple[Path, bool | None]]
    """(file, from LEAF's test split) pairs; the split is None where unknown (one file, a plain folder)."""
    if not sources.exists():
        raise DataError(f"{sources}: no such file or directory")
    if sources.is_dir():
        train, test = sources / "train", sources / "test"
        if train.is_dir() and test.is_dir():  # LEAF's data root: both splits, each sample marked
            files = [(f, False) for f in _json_files(train)]
            files += [(f, True) for f in _json_files(test)]
            return files
        files = [(f, None) for f in _json_files(sources)]
        return files
    return [(sources, None)]


def _read_leaf(sources: Path) -> _Arrays:
    """Read LEAF files one at a time, keeping only the compact arrays between files."""
    xs: list[np.ndarray] = []
    ys: list[np.ndarray] = []
    ws: list[np.ndarray] = []
    tests: list[np.ndarray] = []
    # The same writer can appear in several files (LEAF's train and test splits): one index per name.
    writer_index: dict[str, int] = {}
    files = _leaf_files(sources)
    for file, is_test in files:
        before = len(ys)
        _read_leaf_file(file, writer_index, xs, ys, ws)
        tests.extend(np.full(len(y), bool(is_test)) for y in ys[before:])
    total = sum(len(y) for y in ys)
    if total == 0:
        raise DataError(f"{sources}: no samples")
    names = list(writer_index)  # dicts keep insertion order, which is the index order
    split_known = all(is_test is not None for _, is_test in files)
    return _Arrays(
        x=np.concatenate(xs),
        y=np.concatenate(ys),
        writers=np.concatenate(ws),
        writer_names=np.array(names, dtype=str),
        test_mask=np.concatenate(tests) if split_known else None,
    )


def _read_leaf_file(
    file: Path,
    writer_index: dict[str, int],
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    ws: list[np.ndarray],
) -> None:
    try:
        with file.open("rb") as handle:
            _read_leaf_stream(file, handle, writer_index, xs, ys, ws)
    except ijson.JSONError as exc:
        raise DataError(f"{file}: not JSON ({exc})") from exc
    except UnicodeDecodeError as exc:
        raise DataError(f"{file}: not JSON ({exc})") from exc
    except OSError as exc:
        raise DataError(f"{file}: cannot read ({exc})") from exc


def _read_leaf_stream(
    file: Path,
    handle: Any,
    writer_index: dict[str, int],
    xs: list[np.ndarray],
    ys: list[np.ndarray],
    ws: list[np.ndarray],
) -> None:
    """Three streaming passes (each in ijson's C backend): the small `users` and `num_samples` lists, then
    `user_data` one writer at a time, each converted to compact arrays at once. Peak memory is the
    compact arrays plus one writer's parsed samples."""
    first = next(ijson.parse(handle), None)
    if first is None or first[1] != "start_map":
        raise DataError(f"{file}: top level is not a JSON object with keys {', '.join(_LEAF_KEYS)}")
    handle.seek(0)
    users = next(ijson.items(handle, "users"), None)
    handle.seek(0)
    num_samples = next(ijson.items(handle, "num_samples"), None)
    missing = [key for key, value in (("users", users), ("num_samples", num_samples)) if value is None]
    if missing:
        raise DataError(f"{file}: missing keys {', '.join(missing)}")
    if not isinstance(users, list) or not isinstance(num_samples, list):
        raise DataError(f"{file}: 'users' and 'num_samples' must be lists and 'user_data' an object")
    if len(users) != len(num_samples):
        raise DataError(
            f"{file}: num_samples mismatch: {len(users)} users but {len(num_samples)} num_samples entries"
        )
    declared = {user: count for user, count in zip(users, num_samples, strict=True) if isinstance(user, str)}
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    handle.seek(0)
    for user, entry in ijson.kvitems(handle, "user_data", use_float=True):
        if user not in declared:
            continue  # as LEAF's own readers: only the listed users count
        if not isinstance(entry, dict) or "x" not in entry or "y" not in entry:
            raise DataError(f"{file}: missing keys: user {user!r} needs both 'x' and 'y'")
        x = _pixels(file, user, entry["x"])
        y = _labels(file, user, entry["y"])
        if not (len(x) == len(y) == declared[user]):
            raise DataError(
                f"{file}: num_samples mismatch for user {user!r}: "
                f"declared {declared[user]}, found {len(x)} x rows and {len(y)} labels"
            )
        found[user] = (x, y)
    if users and not found:
        raise DataError(f"{file}: missing keys user_data")
    for user in users:  # samples in the order of `users`, as the JSON lists them
        if user not in found:
            raise DataError(f"{file}: missing keys: user {user!r} has no entry in user_data")
        x, y = found.pop(user)
        writer = writer_index.setdefault(user, len(writer_index))
        xs.append(x)
        ys.append(y)
        ws.append(np.full(len(y), writer, dtype=np.int32))


def _pixels(file: Path, user: str, rows: Any) -> np.ndarray:
    """LEAF rows (784 floats, white = 1.0) as uint8 images with the background at 0."""
    if not isinstance(rows, list):
        raise DataError(f"{file}: x of user {user!r} is not a list of rows")
    if not rows:
        return np.zeros((0, SIDE, SIDE), dtype=np.uint8)
    try:
        values = np.asarray(rows, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise DataError(f"{file}: x rows of user {user!r} must each be {PIXELS} numbers") from exc
    if values.ndim != 2 or values.shape[1] != PIXELS:
        raise DataError(
            f"{file}: x rows of user {user!r} must each be {PIXELS} numbers, got shape {values.shape}"
        )
    if not np.all(np.isfinite(values)) or values.min() < -_PIXEL_SLACK or values.max() > 1 + _PIXEL_SLACK:
        raise DataError(f"{file}: pixels of user {user!r} must be finite and in [0, 1]")
    inverted = np.rint((1.0 - np.clip(values, 0.0, 1.0)) * 255.0)
    return inverted.astype(np.uint8).reshape(-1, SIDE, SIDE)


def _labels(file: Path, user: str, labels: Any) -> np.ndarray:
    if not isinstance(labels, list) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in labels
    ):
        raise DataError(f"{file}: y of user {user!r} must be a list of integer labels")
    y = np.asarray(labels, dtype=np.int64)
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise DataError(
            f"{file}: labels of user {user!r} out of range: found {y.min()}..{y.max()}, "
            f"expected 0..{NUM_CLASSES - 1}"
        )
    return y.astype(np.uint8)


def _read_npz(path: Path) -> _Arrays:
    try:
        loaded = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # Non-archive content makes np.load try pickle, which allow_pickle=False refuses with ValueError.
        raise DataError(f"{path}: not a converted FEMNIST .npz ({exc})") from exc
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise DataError(f"{path}: not a converted FEMNIST .npz (holds a single array)")
    try:
        with loaded as archive:
            missing = [key for key in _NPZ_KEYS if key not in archive.files]
            if missing:
                raise DataError(f"{path}: missing keys {', '.join(missing)} in converted FEMNIST archive")
            version = int(archive["format_version"]) if "format_version" in archive.files else 1
            arrays = _Arrays(
                x=archive["x"],
                y=archive["y"],
                writers=archive["writers"],
                writer_names=archive["writer_names"],
                test_mask=archive["test_mask"] if "test_mask" in archive.files else None,
            )
    except DataError:
        raise  # already specific; DataError is a ValueError and would be rewrapped below
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        # Object arrays (refused without pickle) and corrupt members land here.
        raise DataError(f"{path}: not a converted FEMNIST .npz ({exc})") from exc
    if version != _FORMAT_VERSION:
        raise DataError(f"{path}: unsupported format_version {version}, expected {_FORMAT_VERSION}")
    _check_npz(path, arrays)
    return arrays


def _check_npz(path: Path, a: _Arrays) -> None:
    n = a.x.shape[0] if a.x.ndim else 0
    if a.x.dtype != np.uint8 or a.x.ndim != 3 or a.x.shape[1:] != (SIDE, SIDE):
        raise DataError(f"{path}: x must be uint8 shaped (n, {SIDE}, {SIDE}), got {a.x.dtype} {a.x.shape}")
    if n == 0:
        raise DataError(f"{path}: no samples")
    for key, arr in (("y", a.y), ("writers", a.writers)):
        if arr.dtype.kind not in "iu" or arr.shape != (n,):
            raise DataError(f"{path}: {key} must be integers shaped ({n},), got {arr.dtype} {arr.shape}")
    if a.y.min() < 0 or a.y.max() >= NUM_CLASSES:
        raise DataError(f"{path}: labels out of range: expected 0..{NUM_CLASSES - 1}")
    if a.writer_names.dtype.kind != "U" or a.writer_names.ndim != 1:
        raise DataError(f"{path}: writer_names must be a 1-D unicode array")
    if a.writers.min() < 0 or a.writers.max() >= len(a.writer_names):
        raise DataError(f"{path}: writer indices out of range of writer_names")
    if a.test_mask is not None and (a.test_mask.dtype != np.bool_ or a.test_mask.shape != (n,)):
        raise DataError(f"{path}: test_mask must be booleans shaped ({n},)")
