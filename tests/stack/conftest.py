"""A copy of the k3s stack with generated secrets, rendered once per session for every overlay."""

from __future__ import annotations

from pathlib import Path

import pytest

from .render import OVERLAYS, Manifest, build, copy_stack, documents, kustomize


@pytest.fixture(scope="session")
def kustomize_binary() -> str:
    return kustomize()


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_stack(tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="session")
def rendered_text(stack: Path, kustomize_binary: str) -> dict[str, str]:
    return {overlay: build(kustomize_binary, stack / "overlays" / overlay) for overlay in OVERLAYS}


@pytest.fixture(scope="session")
def rendered(rendered_text: dict[str, str]) -> dict[str, list[Manifest]]:
    return {overlay: documents(text) for overlay, text in rendered_text.items()}
