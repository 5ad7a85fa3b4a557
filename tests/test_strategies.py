"""The learner's strategies are interfaces chosen by configuration: every name a setting accepts has an
implementation in its registry (and nothing else does), and the attack metric is read off a confusion
matrix whose watched cells are configurable."""

from __future__ import annotations

from typing import get_args

import numpy as np
import pytest

from peer.config import ConfigError, LabSettings, LearningSettings, parse
from peer.lab.results import Evaluation
from peer.learning import poisoning, rules
from peer.models.base import Metrics
from peer.tangle.tip_selection import WALKS


@pytest.mark.parametrize(
    ("setting", "registry"),
    [
        ("poison", poisoning.POISONINGS),
        ("publish_rule", rules.PUBLISH_RULES),
        ("reference_rule", rules.REFERENCE_RULES),
        ("tip_selector", WALKS),
    ],
)
def test_every_configurable_name_has_one_implementation(setting: str, registry: dict[str, object]) -> None:
    names = get_args(LearningSettings.model_fields[setting].annotation)
    assert sorted(names) == sorted(registry)


def test_attacks_shape_the_update() -> None:
    base = {"w": np.zeros((2, 2), dtype=np.float32)}
    labels = np.array([3, 8, 3, 1])
    seen: list[list[int]] = []

    def train(y: np.ndarray) -> dict[str, np.ndarray]:
        seen.append(y.tolist())
        return base

    rng = np.random.default_rng(0)
    poisoning.POISONINGS["none"].update(base, labels, train, rng)
    poisoning.POISONINGS["labelflip"].update(base, labels, train, rng)
    assert seen == [[3, 8, 3, 1], [8, 8, 8, 1]]
    random = poisoning.POISONINGS["random"].update(base, labels, train, rng)
    assert len(seen) == 2  # nothing trained
    assert random["w"].shape == (2, 2)
    assert np.abs(random["w"]).sum() > 0


def test_publish_rules() -> None:
    new, reference = Metrics(loss=1.0, accuracy=0.5), Metrics(loss=2.0, accuracy=0.4)
    assert rules.publish_rule("reference").decide(new, reference, lambda: 0.5)[0] is True
    assert rules.publish_rule("parents").decide(new, reference, lambda: 0.5) == (
        False,
        "loss 1.0000 vs parents 0.5000",
    )
    assert rules.publish_rule("always").decide(new, reference, lambda: 0.0) == (True, "always")
    with pytest.raises(ValueError, match="unknown publish rule 'sometimes'"):
        rules.publish_rule("sometimes")


def test_confusion_recall_and_watched_cells() -> None:
    y = np.array([3, 3, 3, 3, 8, 1])
    predicted = np.array([3, 8, 8, 3, 8, 2])
    confusion = poisoning.pooled([poisoning.confusion_matrix(predicted, y, 10)] * 2)
    assert confusion[3, 8] == 4
    assert confusion.sum() == 12
    evaluation = Evaluation(accuracy=0.5, loss=1.0, confusion=confusion)
    report = evaluation.report([(3, 8), (1, 2)])
    assert report["misclassification_3_as_8"] == 0.5  # the original key, an alias of watch 3:8
    assert report["watch"] == {"3:8": 0.5, "1:2": 1.0}
    recall = report["recall"]
    assert isinstance(recall, list)
    assert recall[3] == 0.5
    assert recall[8] == 1.0
    assert recall[0] is None


def test_watch_defaults_to_the_attack_and_is_checked() -> None:
    assert parse(LabSettings, env=False).watched == []
    flip = parse(LabSettings, env=False, poison="labelflip", malicious_fraction=0.2)
    assert flip.watched == [(3, 8)]
    assert parse(LabSettings, env=False, watch=["1:7", "4:9"]).watched == [(1, 7), (4, 9)]
    with pytest.raises(ConfigError, match="TRUE:PREDICTED"):
        parse(LabSettings, env=False, watch=["3-8"])
