"""Shared helpers for the engine tests: a checkpoint whose predictions follow the image, and a writable data root
that shares the sample tree's folders (so an engine's ONNX cache goes to the test's own cache/)."""

from __future__ import annotations

from pathlib import Path

import torch

from gtacli.layout import DataLayout


def image_dependent_checkpoint(sample_tree: Path, path: Path) -> Path:
    """The tree's estimator with random decoders (the tree's own spin_official predicts the mean body for every
    image, which would hide any difference between engines)."""
    from gtacli.model.checkpoint import save_checkpoint
    from gtacli.model.estimator import build_estimator

    torch.manual_seed(0)
    model = build_estimator(DataLayout(sample_tree))
    with torch.no_grad():
        for layer in (model.head.decpose, model.head.decshape, model.head.deccam):
            layer.weight.normal_(0, 0.02)
    save_checkpoint(path, model, {"epoch": 0})
    return path


def writable_root(sample_tree: Path, root: Path) -> DataLayout:
    """A data root whose every entry but cache/ is a symlink into the (read-only) sample tree."""
    root.mkdir(parents=True)
    for entry in sample_tree.iterdir():
        if entry.name != "cache":
            (root / entry.name).symlink_to(entry)
    return DataLayout(root)
