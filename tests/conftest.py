"""Shared fixtures: real assets from ../shared (skipped when absent) and a tiny synthetic data tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets"))


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """../shared/assets (real public files); tests using it skip cleanly when it is absent."""
    if not (SHARED_ASSETS / "PROVENANCE.md").is_file():
        pytest.skip(f"real test assets not found at {SHARED_ASSETS}")
    return SHARED_ASSETS


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> Path:
    """A complete tiny synthetic data tree (built once per test session). Treat it as read-only:
    tests that modify files copy what they change into their own tmp_path."""
    from gtacli.sample.tree import build_sample_tree

    root = tmp_path_factory.mktemp("sample_tree") / "data"
    build_sample_tree(root, size="tiny", seed=0)
    return root
