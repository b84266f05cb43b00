"""`gtacli fit` end to end on a tiny generated annotation: writes a (N, 82) float64 file; bad input -> exit 1."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from gtacli.body.conventions import SMPL_49_TO_HUMAN_DATA
from gtacli.cli.fit import fit_command
from gtacli.fit.priors import load_gmm
from gtacli.layout import DataLayout


def _app() -> typer.Typer:
    app = typer.Typer()
    app.command("fit")(fit_command)

    @app.callback()
    def _root() -> None:  # keeps `fit` a sub-command, as in the real app
        pass

    return app


def _write_annotation(layout: DataLayout, body_model, gmm_path, n: int = 3, with_keypoints: bool = True):
    """HumanData for 'lsp': keypoints projected from known bodies placed in boxes of the original image."""
    from gtacli.data.human_data import write_human_data

    means = load_gmm(gmm_path)["means"]
    pose = torch.zeros(n, 72)
    pose[:, 0] = math.pi
    pose[:, 3:] = torch.as_tensor(means[:n], dtype=torch.float32)
    with torch.no_grad():
        joints = body_model(torch.zeros(n, 10), pose[:, 3:], pose[:, :3]).joints + torch.tensor(
            [0.0, 0.1, 45.0]
        )
    crop_uv = (5000.0 * joints[..., :2] / joints[..., 2:] + 112.0).numpy().astype(np.float64)
    boxes = np.array([[40.0 + 10 * i, 30.0, 150.0, 120.0 + 5 * i] for i in range(n)])
    image_uv = np.zeros_like(crop_uv)
    for i, (x, y, w, h) in enumerate(boxes):
        side = max(w, h)
        center = np.array([x + w / 2, y + h / 2])
        image_uv[i] = (crop_uv[i] - 112.0) * side / 224.0 + center  # inverse of the box crop
    kp = np.zeros((n, 190, 3))
    mask = np.zeros(190, np.uint8)
    slots = list(SMPL_49_TO_HUMAN_DATA)
    kp[:, slots, :2] = image_uv
    kp[:, slots, 2] = 1.0
    mask[slots] = 1
    fields = {"image_path": [f"images/im{i:04d}.jpg" for i in range(n)], "bbox_xywh": boxes, "config": "lsp"}
    if with_keypoints:
        fields.update(keypoints2d=kp, keypoints2d_mask=mask)
    write_human_data(layout.annotation("lsp"), fields)
    return pose


@pytest.fixture
def cli_layout(fit_layout, tmp_path) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(fit_layout.root, layout.root)
    return layout


def test_fit_command_writes_static_fits(cli_layout, body_model, gmm_path):
    pose = _write_annotation(cli_layout, body_model, gmm_path)
    args = [
        "fit",
        "--dataset",
        "lsp",
        "--data-root",
        str(cli_layout.root),
        "--device",
        "cpu",
        "--batch-size",
        "2",
    ]
    result = CliRunner().invoke(_app(), [*args, "--json", "--iterations", "30"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    target = cli_layout.static_fits("lsp")
    assert payload["output"] == str(target) and payload["samples"] == 3
    fits = np.load(target, allow_pickle=False)
    assert fits.shape == (3, 82) and fits.dtype == np.float64 and np.isfinite(fits).all()
    assert payload["valid_fraction"] == 1.0 and payload["mean_final_loss"] > 0
    # the fits explain the keypoints: their bodies face the camera like the truth (global orient ~ 180° about x)
    assert np.allclose(np.abs(fits[:, 0]), math.pi, atol=0.35) and np.abs(fits[:, 1:3]).max() < 0.35
    assert np.abs(fits[:, 3:72] - pose[:, 3:].numpy()).mean() < 0.2

    # an existing file is refused without --force (one line, exit 1), replaced with it
    again = CliRunner().invoke(_app(), [*args, "--iterations", "2"])
    assert again.exit_code == 1 and "exists" in again.output and "--force" in again.output
    assert again.output.strip().count("\n") == 0
    forced = CliRunner().invoke(_app(), [*args, "--iterations", "2", "--force", "--limit", "2", "--quiet"])
    assert forced.exit_code == 0, forced.output
    assert np.load(cli_layout.static_fits_dir / "lsp_fits.limit2.npy").shape == (2, 82)
    assert not [p for p in cli_layout.static_fits_dir.iterdir() if ".tmp" in p.name]


def test_fit_command_bad_input(cli_layout, body_model, gmm_path, tmp_path):
    base = ["fit", "--dataset", "lsp", "--data-root", str(cli_layout.root), "--device", "cpu"]
    missing = CliRunner().invoke(_app(), base)
    assert missing.exit_code == 1 and "not found" in missing.output and "check-layout" in missing.output
    _write_annotation(cli_layout, body_model, gmm_path, with_keypoints=False)
    no_kp = CliRunner().invoke(_app(), base)
    assert no_kp.exit_code == 1 and "2D keypoints" in no_kp.output
    assert not cli_layout.static_fits("lsp").exists()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    _write_annotation(cli_layout, body_model, gmm_path)
    unwritable = CliRunner().invoke(_app(), [*base, "--output", str(blocker / "fits.npy")])
    assert unwritable.exit_code == 1 and "output" in unwritable.output


def test_fit_command_from_checkpoint_predictions(sample_tree, tmp_path):
    """--init CHECKPOINT: the network's predictions on the image crops start the fit (sample tree, random weights)."""
    from gtacli.data.human_data import HumanData

    layout = DataLayout(sample_tree)
    target = tmp_path / "lsp_fits.npy"
    args = ["fit", "--dataset", "lsp", "--data-root", str(sample_tree), "--device", "cpu", "--json"]
    args += ["--init", str(layout.spin_official), "--iterations", "3", "--output", str(target)]
    result = CliRunner().invoke(_app(), args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["init"] == str(layout.spin_official)
    fits = np.load(target, allow_pickle=False)
    assert fits.shape == (len(HumanData.load(layout.annotation("lsp"))), 82) and np.isfinite(fits).all()
