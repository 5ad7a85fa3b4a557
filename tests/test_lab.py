"""Short lab runs: outputs, reproducibility, the baseline, poisoning, and clear configuration errors."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from peer.config import ConfigError, LabSettings, parse
from peer.lab.runner import run_lab

TANGLE = [sys.executable, "-m", "peer"]


def lab(tmp_path: Path, name: str, *args: str) -> Path:
    out = tmp_path / name
    subprocess.run(
        [*TANGLE, "lab", "--peers", "4", "--rounds", "4", "--progress", "false", "--out", str(out), *args],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return out


def test_lab_writes_its_outputs_and_is_reproducible(tmp_path: Path) -> None:
    one = lab(tmp_path, "one", "--workers", "1")
    two = lab(tmp_path, "two", "--workers", "2")
    summary = json.loads((one / "summary.json").read_text())
    # the same seed gives the same summary.json, whatever the number of worker processes
    assert (two / "summary.json").read_text() == (one / "summary.json").read_text()
    assert (two / "tangle.json").read_text() == (one / "tangle.json").read_text()
    for method in ("tangle", "fedavg"):
        assert 0 <= summary[method]["accuracy"] <= 1
        assert summary[method]["loss"] > 0
    assert summary["config"]["peers"] == 4
    assert summary["config"]["num_of_tips"] == 2
    rows = list(csv.DictReader((one / "metrics.csv").open()))
    assert [int(r["round"]) for r in rows] == [1, 2, 3, 4]
    assert float(rows[-1]["tangle_accuracy"]) == summary["tangle"]["accuracy"]
    tangle = json.loads((one / "tangle.json").read_text())
    assert tangle["count"] == len(tangle["nodes"]) == summary["tangle"]["transactions"]
    assert tangle["nodes"][0]["name"] == tangle["genesis"]
    assert (one / "accuracy.png").read_bytes()[:4] == b"\x89PNG"
    other = lab(tmp_path, "seed1", "--seed", "1", "--workers", "1")
    assert (other / "summary.json").read_text() != (one / "summary.json").read_text()


def test_labelflip_reports_misclassification_for_both(tmp_path: Path) -> None:
    out = lab(tmp_path, "flip", "--poison", "labelflip", "--malicious-fraction", "0.25", "--watch", "3:8,1:7")
    summary = json.loads((out / "summary.json").read_text())
    for method in ("tangle", "fedavg"):
        report = summary[method]
        assert 0 <= report["misclassification_3_as_8"] <= 1
        assert report["watch"]["3:8"] == report["misclassification_3_as_8"]  # the old key is an alias
        assert set(report["watch"]) == {"3:8", "1:7"}
        confusion = np.array(report["confusion"])
        assert confusion.shape == (10, 10)
        threes = confusion[3].sum()
        assert report["watch"]["3:8"] == (confusion[3, 8] / threes if threes else 0.0)
        assert len(report["recall"]) == 10
    assert summary["malicious_peers"] == ["lab-peer-003"]


def test_no_baseline_skips_fedavg(tmp_path: Path) -> None:
    settings = parse(LabSettings, env=False, peers=3, rounds=2, baseline="none", workers=1, progress=False)
    result = run_lab(settings)
    assert "fedavg" not in result.summary()
    assert result.rounds[-1].fedavg_accuracy is None


def test_random_attackers_never_enter_the_reference() -> None:
    settings = parse(
        LabSettings, env=False, peers=5, rounds=6, workers=1, poison="random", malicious_fraction=0.2,
        baseline="none", progress=False,
    )  # fmt: skip
    result = run_lab(settings)
    malicious = {n.name for n in result.tangle.nodes if n.malicious}
    assert malicious, "the attacker published"
    assert not malicious & set(result.tangle.reference)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--peers", "0"], "--peers"),
        (["--active-quota", "1.5"], "--active-quota"),
        (["--num-of-tips", "x"], "--num-of-tips"),
        (["--poison", "random"], "malicious_fraction"),
        (["--particle-depth-min", "30"], "particle_depth_min"),
        (["--dataset", "femnist"], "dataset_path"),
    ],
)
def test_bad_values_are_clear_errors(args: list[str], message: str) -> None:
    done = subprocess.run([*TANGLE, "lab", *args], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


def test_lab_ignores_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NUM_OF_TIPS", "5")
    assert parse(LabSettings, env=False).num_of_tips == 2
    with pytest.raises(ConfigError, match="--rounds"):
        parse(LabSettings, env=False, rounds=0)


def test_femnist_converted_once_then_learned_by_writer(tmp_path: Path) -> None:
    """A folder in the real LEAF format, converted with the CLI, then a lab split by writer."""
    rng = np.random.default_rng(0)
    leaf = tmp_path / "leaf"
    leaf.mkdir()
    writers = [f"f{i:04d}_00" for i in range(4)]
    labels = rng.integers(0, 5, (4, 20))
    images = np.ones((4, 20, 784))  # white paper, with a dark stroke where the label says
    for w in range(4):
        for i, label in enumerate(labels[w]):
            images[w, i, label * 100 : label * 100 + 100] = rng.random(100) * 0.3
    doc = {
        "users": writers,
        "num_samples": [20] * 4,
        "user_data": {
            w: {"x": images[i].round(3).tolist(), "y": labels[i].tolist()} for i, w in enumerate(writers)
        },
    }
    (leaf / "all_data_0.json").write_text(json.dumps(doc))
    converted = tmp_path / "femnist.npz"
    done = subprocess.run(
        [*TANGLE, "convert-femnist", "--source", str(leaf), "--out", str(converted)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    data = ["--dataset", "femnist", "--dataset-path", str(converted), "--partition", "writer"]
    out = lab(tmp_path, "femnist", *data, "--model", "softmax", "--peers", "2", "--workers", "1")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["dataset"] == "femnist"
    assert summary["tangle"]["transactions"] > 1
    assert summary["tangle"]["accuracy"] > 0.5


# --- failing fast and clearly ---------------------------------------------------------------------------
@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_worker_that_cannot_start_ends_the_lab_with_one_line(tmp_path: Path, workers: str) -> None:
    bad = tmp_path / "leaf"
    bad.mkdir()
    (bad / "all_data_0.json").write_text('{"users": ["a"], "num_samples": [1], "user_data": {"a": {}}}')
    result = subprocess.run(
        [*TANGLE, "lab", "--peers", "4", "--rounds", "2", "--progress", "false", "--workers", workers,
         "--dataset", "femnist", "--dataset-path", str(bad), "--model", "softmax",
         "--out", str(tmp_path / "o")],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "all_data_0.json" in lines[0]
    assert "missing keys" in lines[0]


def test_a_missing_extra_is_named_before_any_work_and_the_lab_still_runs(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['matplotlib'] = None\n"
        "from learning_tangle.cli import main\n"
        f"main(['lab', '--rounds', '1', '--out', {str(tmp_path / 'o')!r}])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines()[0] == (
        "tangle lab: matplotlib not installed: pip install 'learning-tangle[lab]' "
        "(accuracy.png and report.html will be left out)"
    )
    assert (tmp_path / "o" / "summary.json").exists()
    assert not (tmp_path / "o" / "accuracy.png").exists()


def test_a_worker_that_dies_mid_run_is_reported_at_once() -> None:
    from peer.lab.runner import LabError, WorkerHandle

    settings = parse(LabSettings, env=False, peers=2, rounds=1, progress=False, baseline="none")
    handle = WorkerHandle(settings, [0], in_process=False)
    handle._process.kill()  # as the OOM killer would
    handle._process.join(timeout=30)
    with pytest.raises(LabError, match=r"a lab worker died \(exit code -9\)"):
        handle.call("evaluate", 1)
    handle.close()  # a dead worker closes quietly


def test_closing_after_an_interrupted_call_ends_the_worker_cleanly() -> None:
    # Ctrl-C can leave a call's answer in flight; "close" must not take it for its own answer and hang up
    # while the worker still replies (the worker then died on a broken pipe, printing a traceback)
    from peer.lab.runner import WorkerHandle

    settings = parse(LabSettings, env=False, peers=2, rounds=1, progress=False, baseline="none")
    handle = WorkerHandle(settings, [0], in_process=False)
    handle.start("metrics_snapshot")  # its answer is never read, as after an interruption
    handle.close()
    assert handle._process.exitcode == 0
