"""Shared fixtures: real assets from ../shared (skipped when absent) and a tiny synthetic data tree."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_ASSETS = Path(os.environ.get("GTACLI_SHARED_ASSETS", REPO.parent / "shared" / "assets"))
MISSING_ASSETS_REASON = "real test assets not found"


def pytest_unconfigure(config) -> None:
    """One closing line, after the counts, when tests skipped for want of ../shared/assets: how many, and why
    (`-q` shows no reasons)."""
    terminalreporter = config.pluginmanager.get_plugin("terminalreporter")
    if terminalreporter is None:
        return
    skipped = terminalreporter.stats.get("skipped", [])
    count = sum(1 for report in skipped if MISSING_ASSETS_REASON in str(getattr(report, "longrepr", "")))
    if count:
        terminalreporter.write_line(
            f"{count} test(s) skipped: {MISSING_ASSETS_REASON} at {SHARED_ASSETS} (real public files; set "
            f"GTACLI_SHARED_ASSETS to a folder holding them to run these)"
        )


@pytest.fixture(scope="session")
def shared_assets() -> Path:
    """../shared/assets (real public files); tests using it skip cleanly when it is absent."""
    if not (SHARED_ASSETS / "PROVENANCE.md").is_file():
        pytest.skip(f"{MISSING_ASSETS_REASON} at {SHARED_ASSETS}")
    return SHARED_ASSETS


@pytest.fixture(scope="session")
def sample_tree(tmp_path_factory) -> Path:
    """A complete tiny synthetic data tree (built once per test session). Treat it as read-only:
    tests that modify files copy what they change into their own tmp_path."""
    from gtacli.sample.tree import build_sample_tree

    root = tmp_path_factory.mktemp("sample_tree") / "data"
    build_sample_tree(root, size="tiny", seed=0)
    return root
