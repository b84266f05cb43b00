"""An existing mmhuman3d `data/` tree works as `--data-root` as it is: the official SMPL pickles renamed in
`body_models/smpl/`, no lock file, no synthetic marker, no `cache/`, no conversion step."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from official_pickles import official_pickles
from typer.testing import CliRunner

from gtacli.body.smpl import load_smpl_arrays
from gtacli.cli.app import app
from gtacli.layout import GENDERS, DataLayout

# What mmhuman3d's docs put under data/ (docs/getting_started.md, configs/gta_human/spin/README.md).
MMHUMAN3D_FOLDERS = ("body_models", "preprocessed_datasets", "static_fits", "pretrained_models", "datasets")


@pytest.fixture(scope="module")
def mmhuman3d_root(sample_tree, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("mmh3d") / "data"
    for folder in MMHUMAN3D_FOLDERS:
        for item in (sample_tree / folder).rglob("*"):
            if item.is_file():
                target = root / item.relative_to(sample_tree)
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(item)
    (root / "gmm_08.pkl").symlink_to(sample_tree / "gmm_08.pkl")
    layout = DataLayout(root)
    arrays = {g: load_smpl_arrays(DataLayout(sample_tree).smpl_model(g)) for g in GENDERS}
    pickles = official_pickles(tmp_path_factory.mktemp("chumpy"), arrays)
    for gender in GENDERS:
        layout.smpl_model(gender).unlink()
        layout.smpl_model(gender).write_bytes(pickles[gender])  # the official file, renamed as mmhuman3d says
    assert not layout.is_synthetic and not layout.cache.exists() and not layout.lock_file.exists()
    return root


def _run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result


@pytest.mark.slow
def test_check_layout_says_ok_on_an_mmhuman3d_tree(mmhuman3d_root):
    result = _run("check-layout", "--for", "all", "--data-root", mmhuman3d_root, "--json")
    assert result.exit_code == 0, result.stdout
    items = {i["item"]: i for i in json.loads(result.stdout)["items"]}
    assert all("read in place" in items[f"SMPL {g}"]["detail"] for g in GENDERS)


@pytest.mark.slow
def test_eval_demo_and_finetune_run_on_an_mmhuman3d_tree(mmhuman3d_root, tmp_path):
    ckpt = mmhuman3d_root / "pretrained_models" / "spin_official.pth"
    result = _run(
        "eval", "--dataset", "pw3d", "--checkpoint", ckpt, "--data-root", mmhuman3d_root,
        "--batch-size", "2", "--limit", "2", "--workers", "0", "--device", "cpu", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    assert doc["frames"] == 2 and np.isfinite(doc["mpjpe_mm"])

    image = tmp_path / "frame.png"
    cv2.imwrite(str(image), np.full((240, 320, 3), 127, np.uint8))
    result = _run(
        "demo", image, "--bbox", "100,40,120,160", "--checkpoint", ckpt, "--data-root", mmhuman3d_root,
        "--device", "cpu", "--output", tmp_path / "demo", "--quiet",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (tmp_path / "demo" / "results.json").is_file()

    work = tmp_path / "ft"
    result = _run(
        "finetune", "--data-root", mmhuman3d_root, "--work-dir", work, "--device", "cpu", "--json",
        "--batch-size", "1", "--workers", "0", "--max-steps", "1", "--epochs", "1",
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    assert (work / "latest.pth").is_file()
