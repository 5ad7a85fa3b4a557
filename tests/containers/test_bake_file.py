"""docker/docker-bake.hcl, parsed (no buildx here): the targets build the Dockerfile's stages for the three
platforms, with the project version, and every build argument it passes exists in the Dockerfile."""

from __future__ import annotations

import re
from typing import Any

import hcl2

from .podman import ROOT, VERSION


def _unquote(value: str) -> str:
    return value.strip('"')


def _blocks(parsed: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {_unquote(name): body for block in parsed[kind] for name, body in block.items()}


def test_bake_targets_match_the_dockerfile() -> None:
    with (ROOT / "docker/docker-bake.hcl").open() as handle:
        parsed = hcl2.load(handle)
    variables = _blocks(parsed, "variable")
    targets = _blocks(parsed, "target")
    dockerfile = (ROOT / "docker/Dockerfile").read_text()
    stages = set(re.findall(r"^FROM \S+ AS (\S+)$", dockerfile, flags=re.M))
    arguments = set(re.findall(r"^ARG (\w+)", dockerfile, flags=re.M))

    assert _unquote(variables["VERSION"]["default"]) == VERSION  # bump both with pyproject's version
    platforms = _unquote(variables["PLATFORMS"]["default"]).split(",")
    assert platforms == ["linux/amd64", "linux/arm64", "linux/arm/v7"]
    assert [_unquote(t) for t in _blocks(parsed, "group")["default"]["targets"]] == ["peer", "visualizer"]
    common = targets["_common"]
    assert (ROOT / _unquote(common["dockerfile"])).is_file()
    assert "PLATFORMS" in common["platforms"]
    for name in ("peer", "visualizer"):
        target = targets[name]
        assert _unquote(target["target"]) in stages
        assert [_unquote(t) for t in target["tags"]] == [f"${{REGISTRY}}learning-tangle/{name}:${{VERSION}}"]
        for argument in {**common["args"], **target.get("args", {})}:
            assert argument in arguments, f"{name}: build argument {argument} is no ARG in the Dockerfile"
