"""Guards the README's results: on the lab's defaults (10 peers, digits, Dirichlet 0.5, MLP, 30 rounds,
seed 0) the tangle stays within 0.03 of FedAvg, 20% random-weight attackers cost it at most 0.03, and a
20% label-flip attack adds at most 0.10 to its 3-as-8 rate over a control run whose attackers never start.

Four labs, two at a time (one per core, each in one process): about a minute on 2 cores."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from typing import Any

import pytest

from peer.config import LabSettings, parse
from peer.lab.runner import run_lab

pytestmark = pytest.mark.slow

SCENARIOS: dict[str, dict[str, Any]] = {
    "clean": {},
    "random": {"poison": "random", "malicious_fraction": 0.2},
    "labelflip": {"poison": "labelflip", "malicious_fraction": 0.2},
    "control": {"poison": "labelflip", "malicious_fraction": 0.2, "poison_from": 10_000},
}


def _summary(scenario: str) -> dict[str, Any]:
    settings = parse(LabSettings, env=False, seed=0, workers=1, progress=False, **SCENARIOS[scenario])
    return run_lab(settings).summary()


@pytest.fixture(scope="module")
def runs() -> dict[str, dict[str, Any]]:
    # spawned, not forked: pytest's process may hold threads (servers of earlier tests) a fork would copy
    with ProcessPoolExecutor(max_workers=2, mp_context=multiprocessing.get_context("spawn")) as pool:
        return dict(zip(SCENARIOS, pool.map(_summary, SCENARIOS), strict=True))


def test_tangle_keeps_up_with_fedavg(runs: dict[str, dict[str, Any]]) -> None:
    clean = runs["clean"]
    assert clean["tangle"]["accuracy"] >= clean["fedavg"]["accuracy"] - 0.03, clean


def test_random_attackers_cost_little(runs: dict[str, dict[str, Any]]) -> None:
    drop = runs["clean"]["tangle"]["accuracy"] - runs["random"]["tangle"]["accuracy"]
    assert drop <= 0.03, drop


def test_label_flip_adds_little_to_3_as_8(runs: dict[str, dict[str, Any]]) -> None:
    attacked = runs["labelflip"]["tangle"]["misclassification_3_as_8"]
    control = runs["control"]["tangle"]["misclassification_3_as_8"]
    assert attacked - control <= 0.10, (attacked, control)
