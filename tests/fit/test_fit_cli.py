"""`gtacli fit` end to end on a tiny generated annotation: writes a (N, 82) float64 file; bad input -> exit 1."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gtacli.body.conventions import SMPL_49_TO_HUMAN_DATA
from gtacli.cli.app import app
from gtacli.fit.priors import load_gmm
from gtacli.layout import DataLayout


def _fit_args(root, *extra: str) -> list:
    """`gtacli fit --dataset lsp` on `root`, on the CPU, plus `extra`."""
    return ["fit", "--dataset", "lsp", "--data-root", str(root), "--device", "cpu", *extra]


def _write_annotation(
    layout: DataLayout, body_model, gmm_path, n: int = 3, with_keypoints: bool = True, edit=None
):
    """HumanData for 'lsp': keypoints projected from known bodies placed in boxes of the original image."""
    from gtacli.data.human_data import write_human_data

    means = load_gmm(gmm_path)["means"]
    pose = torch.zeros(n, 72)
    pose[:, 0] = math.pi
    pose[:, 3:] = torch.as_tensor(means[np.arange(n) % len(means)], dtype=torch.float32)
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
    if edit is not None:
        edit(kp)
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


@pytest.mark.slow
def test_fit_command_writes_static_fits(cli_layout, body_model, gmm_path):
    pose = _write_annotation(cli_layout, body_model, gmm_path)
    args = _fit_args(cli_layout.root, "--batch-size", "2")
    result = CliRunner().invoke(app, [*args, "--json", "--iterations", "30"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    target = cli_layout.static_fits("lsp")
    assert payload["output"] == str(target) and payload["samples"] == 3
    fits = np.load(target, allow_pickle=False)
    assert fits.shape == (3, 82) and fits.dtype == np.float64 and np.isfinite(fits).all()
    assert payload["fitted"] == payload["accepted"] == 3 and payload["mean_final_loss"] > 0
    assert payload["method"] == "gtacli" and payload["mean_reprojection_px"] < 5.0
    # per sample: final loss, reprojection error in px, accepted and why; the same in the report file
    assert [s["status"] for s in payload["per_sample"]] == ["accepted"] * 3
    assert all(s["final_loss"] > 0 and s["reprojection_px"] < 5.0 for s in payload["per_sample"])
    report = json.loads((cli_layout.static_fits_dir / "lsp_fits.report.json").read_text())
    assert report["per_sample"] == payload["per_sample"]
    # the fits explain the keypoints: their bodies face the camera like the truth (global orient ~ 180° about x)
    assert np.allclose(np.abs(fits[:, 0]), math.pi, atol=0.35) and np.abs(fits[:, 1:3]).max() < 0.35
    assert np.abs(fits[:, 3:72] - pose[:, 3:].numpy()).mean() < 0.2

    # an existing file is refused without --force (one line, exit 1), replaced with it
    again = CliRunner().invoke(app, [*args, "--iterations", "2"])
    assert again.exit_code == 1 and "exists" in again.output and "--force" in again.output
    assert again.output.strip().count("\n") == 0
    forced = CliRunner().invoke(app, [*args, "--iterations", "2", "--force", "--limit", "2", "--quiet"])
    assert forced.exit_code == 0, forced.output
    assert np.load(cli_layout.static_fits_dir / "lsp_fits.limit2.npy").shape == (2, 82)
    assert not [p for p in cli_layout.static_fits_dir.iterdir() if ".tmp" in p.name]


def test_fit_command_bad_input(cli_layout, body_model, gmm_path, tmp_path):
    base = _fit_args(cli_layout.root)
    missing = CliRunner().invoke(app, base)
    assert missing.exit_code == 1 and "not found" in missing.output and "check-layout" in missing.output
    _write_annotation(cli_layout, body_model, gmm_path, with_keypoints=False)
    no_kp = CliRunner().invoke(app, base)
    assert no_kp.exit_code == 1 and "2D keypoints" in no_kp.output
    assert not cli_layout.static_fits("lsp").exists()
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("x")
    _write_annotation(cli_layout, body_model, gmm_path)
    unwritable = CliRunner().invoke(app, [*base, "--output", str(blocker / "fits.npy")])
    assert unwritable.exit_code == 1 and "output" in unwritable.output


@pytest.mark.slow
def test_fit_command_from_checkpoint_predictions(sample_tree, tmp_path):
    """--init CHECKPOINT: the network's predictions on the image crops start the fit (sample tree, random weights)."""
    from gtacli.data.human_data import HumanData

    layout = DataLayout(sample_tree)
    target = tmp_path / "lsp_fits.npy"
    args = _fit_args(sample_tree, "--json")
    args += ["--init", str(layout.spin_official), "--iterations", "3", "--output", str(target)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["init"] == str(layout.spin_official)
    fits = np.load(target, allow_pickle=False)
    assert fits.shape == (len(HumanData.load(layout.annotation("lsp"))), 82) and np.isfinite(fits).all()


@pytest.mark.parametrize("method", ["spin", "mmhuman3d"])
def test_fit_command_reference_methods(cli_layout, body_model, gmm_path, method):
    _write_annotation(cli_layout, body_model, gmm_path, n=2)
    target = cli_layout.root / f"{method}.npy"
    args = _fit_args(cli_layout.root, "--json")
    result = CliRunner().invoke(
        app, [*args, "--method", method, "--iterations", "20", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["method"] == method and payload["valid_threshold"] == (100.0 if method == "spin" else 10.0)
    assert np.load(target).shape == (2, 82)
    unknown = CliRunner().invoke(app, [*args, "--method", "lbfgs"])
    assert unknown.exit_code == 2 and "--method" in unknown.output


def _poison(kp: np.ndarray) -> None:
    """Rows of a 7-sample annotation (HumanData slots): 1 and 4 NaN, 2 no confident keypoint, 5 only the hips."""
    slots = list(SMPL_49_TO_HUMAN_DATA)
    kp[1, slots[30], 0] = np.nan
    kp[4, slots[25], :] = np.nan
    kp[2, :, 2] = 0.0
    keep = [slots[j] for j in (27, 28, 25, 26)]  # hips + right leg: 2 torso joints
    dropped = np.ones(190, bool)
    dropped[keep] = False
    kp[5, dropped, 2] = 0.0


def test_fit_command_fits_every_usable_sample_and_flags_the_weak_ones(cli_layout, body_model, gmm_path):
    """#21 item 2: only a sample with no usable keypoint is skipped; NaN joints are ignored and counted, a
    sample with 2 torso joints is fitted and flagged; one line per kind; one finite row per sample."""
    _write_annotation(cli_layout, body_model, gmm_path, n=7, edit=_poison)
    args = _fit_args(cli_layout.root, "--iterations", "10")
    result = CliRunner().invoke(app, [*args, "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["samples"] == 7 and payload["fitted"] == 6
    lines = [line for line in result.stderr.splitlines() if "skipped" in line or "flagged" in line]
    assert len(lines) == 3, result.stderr
    assert "1 sample skipped: no keypoint with confidence > 0" in lines[0] and "sample 2" in lines[0]
    assert "2 samples flagged: non-finite keypoints (NaN or inf): those joints ignored" in lines[1]
    assert "(first: sample 1)" in lines[1]
    assert "1 sample flagged: fewer than 4 confident torso joints" in lines[2] and "sample 5" in lines[2]
    kinds = {p["kind"]: (p["count"], p["first_index"], p["verb"]) for p in payload["problems"]}
    assert list(kinds.values()) == [(1, 2, "skipped"), (2, 1, "flagged"), (1, 5, "flagged")]
    per_sample = payload["per_sample"]
    assert [s["row"] for s in per_sample] == ["fit", "fit", "start (not fitted)", "fit", "fit", "fit", "fit"]
    assert [len(s["notes"]) for s in per_sample] == [0, 1, 0, 0, 1, 1, 0]
    assert per_sample[5]["fit_criterion"] is not None
    fits = np.load(cli_layout.static_fits("lsp"))
    assert fits.shape == (7, 82) and np.isfinite(fits).all()


def test_fit_command_nan_keypoints_blame_the_annotation(cli_layout, body_model, gmm_path):
    """#11.13: all keypoints NaN -> exit 1 naming the annotation (not the output file); nothing written."""

    def all_nan(kp: np.ndarray) -> None:
        kp[..., :2] = np.nan

    _write_annotation(cli_layout, body_model, gmm_path, n=3, edit=all_nan)
    result = CliRunner().invoke(app, _fit_args(cli_layout.root))
    assert result.exit_code == 1
    message = result.output.strip()
    assert message.count("\n") == 0 and "non-finite keypoints" in message
    assert str(cli_layout.annotation("lsp")) in message and "lsp_fits.npy" not in message
    assert not cli_layout.static_fits_dir.exists() or not list(cli_layout.static_fits_dir.iterdir())


@pytest.mark.slow
def test_fit_command_missing_images_for_checkpoint_init(sample_tree, tmp_path):
    """--init CHECKPOINT with some images missing: one line (count, first sample), the others fitted."""
    from gtacli.data.human_data import HumanData

    root = tmp_path / "data"
    shutil.copytree(sample_tree, root)
    layout = DataLayout(root)
    hd = HumanData.load(layout.annotation("lsp"))
    paths = hd.image_paths()
    for i in (1, 2):
        layout.image("lsp", paths[i]).unlink()
    target = tmp_path / "fits.npy"
    args = _fit_args(root, "--json", "--limit", "4")
    result = CliRunner().invoke(
        app, [*args, "--init", str(layout.spin_official), "--iterations", "3", "--output", str(target)]
    )
    assert result.exit_code == 0, result.output
    line = [x for x in result.stderr.splitlines() if "image" in x]
    assert len(line) == 1 and "2 samples skipped: image missing" in line[0] and "(first: sample 1)" in line[0]
    payload = json.loads(result.stdout)
    assert payload["fitted"] == 2 and np.isfinite(np.load(target)).all()


@pytest.mark.slow
def test_fit_openpose_end_to_end(cli_layout, shared_assets, tmp_path):
    """A user's photo + OpenPose JSON (SPIN's im1010 example): fits, report and an overlay per image."""
    images = tmp_path / "photos"
    images.mkdir()
    shutil.copyfile(shared_assets / "im1010.jpg", images / "im1010.jpg")
    keypoints = tmp_path / "keypoints"
    keypoints.mkdir()
    shutil.copyfile(shared_assets / "im1010_openpose.json", keypoints / "im1010_keypoints.json")
    (keypoints / "other_keypoints.json").write_text('{"people": []}')  # no photo of that name
    out_dir = tmp_path / "fits"
    args = ["fit", "--openpose", str(keypoints), "--images", str(images), "--output", str(out_dir)]
    args += ["--data-root", str(cli_layout.root), "--device", "cpu", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["people"] == 1 and payload["fitted"] == 1
    assert "1 file skipped: no image with the same name in --images (first: file 1)" in result.stderr
    person = payload["per_sample"][0]
    assert person["image"].endswith("im1010.jpg") and person["person"] == 0
    # the BODY_25 keypoints are explained to a few pixels of the 153 x 192 photo
    assert person["reprojection_px"] < 10.0 and person["reprojection_px_image"] < 10.0
    fits = np.load(out_dir / "fits.npz", allow_pickle=False)
    assert (
        fits["pose"].shape == (1, 72) and fits["betas"].shape == (1, 10) and np.isfinite(fits["pose"]).all()
    )
    assert json.loads((out_dir / "report.json").read_text())["per_sample"][0]["status"] == person["status"]
    import cv2

    overlay = cv2.imread(str(out_dir / "im1010_fit.jpg"))
    photo = cv2.imread(str(images / "im1010.jpg"))
    assert overlay.shape == photo.shape
    changed = np.abs(overlay.astype(int) - photo.astype(int)).max(axis=2) > 40
    assert 0.03 < changed.mean() < 0.6  # the mesh covers part of the photo, not all of it
    # without --force an existing result is refused
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 1 and "--force" in again.output
