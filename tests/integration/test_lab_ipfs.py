"""`tangle lab --backend ipfs`: the lab's experiment over a kubo testnet it starts and stops itself."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from peer.ipld import parse_car
from peer.tangle.transaction import decode_transaction

pytestmark = pytest.mark.integration


def test_lab_over_ipfs_writes_the_tangle_as_a_car(tmp_path: Path) -> None:
    out = tmp_path / "run"
    flags = ["--backend", "ipfs", "--peers", "4", "--ipfs-nodes", "3", "--rounds", "3", "--baseline", "none"]
    result = subprocess.run(
        [sys.executable, "-m", "peer", "lab", *flags, "--progress", "false", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TMPDIR": str(tmp_path)},  # the lab's testnet folder lands here
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(tmp_path.glob("lab-ipfs-*")) == []  # the repositories are removed too
    assert "peers per node: [2, 1, 1]" in " ".join(result.stdout.split())  # more peers than nodes: stated
    summary = json.loads((out / "summary.json").read_text())
    assert summary["ipfs"]["nodes"] == 3
    assert summary["config"]["ipfs"] == {"implementation": "kubo", "version": "0.43.1"}
    assert summary["ipfs"]["peers_per_node"] == [2, 1, 1]
    assert summary["tangle"]["published"] >= 4

    tangle = json.loads((out / "tangle.json").read_text())
    car = parse_car((out / "tangle.car").read_bytes())  # verifies every block against its CID
    assert summary["ipfs"]["car_blocks"] == len(car.blocks)
    names = {node["name"] for node in tangle["nodes"]}
    assert names <= set(car.blocks), "every transaction of the tangle is in the CAR"
    for name in names:
        tx = decode_transaction(name, car.blocks[name])
        assert tx.weights in car.blocks, "and so are its weights"
    authors = {node["peer"] for node in tangle["nodes"]} - {"genesis"}
    assert all(author.startswith("12D3KooW") for author in authors)  # the nodes' libp2p peer ids
    # the testnet is gone: no kubo daemon of this run is left
    assert not _processes_under(tmp_path)


def _processes_under(directory: Path) -> list[str]:
    """Processes whose working directory is inside `directory` (each kubo daemon runs in its node folder)."""
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cwd = os.readlink(proc / "cwd")
        except OSError:
            continue
        if cwd.startswith(str(directory)):
            found.append(f"{proc.name}: {cwd}")
    return found
