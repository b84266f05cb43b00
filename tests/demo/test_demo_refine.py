"""`gtacli demo --refine` end to end on the tiny synthetic tree (issue 21 item 3): the refined bodies explain
the keypoints better than the network's, results keep both, the temporal term calms a video's joints, and
the bad inputs of the issue."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.demo.keypoints import to_body25

BOX = (100, 40, 120, 160)  # x, y, w, h inside the 320x240 frames
# a standing person facing the camera, COCO-17 order, as fractions of the box (the person's left on image right)
STANDING = np.array([
    (0.50, 0.16), (0.53, 0.14), (0.47, 0.14), (0.56, 0.15), (0.44, 0.15), (0.62, 0.27), (0.38, 0.27),
    (0.65, 0.42), (0.35, 0.42), (0.67, 0.55), (0.33, 0.55), (0.56, 0.55), (0.44, 0.55), (0.57, 0.73),
    (0.43, 0.73), (0.58, 0.91), (0.42, 0.91),
])  # fmt: skip


def _keypoints(jitter=0.0, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    xy = np.array(BOX[:2]) + STANDING * np.array(BOX[2:]) + jitter * rng.normal(size=(17, 2))
    return to_body25(xy, np.full(17, 0.9), (320, 240)).body25


def _openpose(path: Path, body25: np.ndarray) -> Path:
    path.write_text(
        json.dumps({"version": 1.3, "people": [{"pose_keypoints_2d": body25.reshape(-1).tolist()}]})
    )
    return path


def _frame(seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)
    return cv2.resize(small, (320, 240), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def env(sample_tree):
    return {"root": sample_tree, "ckpt": sample_tree / "pretrained_models" / "spin_official.pth"}


def _demo(env, args, expect=0):
    base = ["demo", "--checkpoint", env["ckpt"], "--data-root", env["root"], "--device", "cpu", "--quiet"]
    result = CliRunner().invoke(app, [str(a) for a in base + list(args)], catch_exceptions=False)
    assert result.exit_code == expect, result.output[-3000:]
    return result


@pytest.mark.slow  # a real demo / subprocess run of several seconds: full suite only
def test_refine_an_image_with_its_openpose_file(env, tmp_path):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), _frame())
    keypoints = _openpose(tmp_path / "photo_keypoints.json", _keypoints())
    out = tmp_path / "out"
    _demo(env, [image, "--bbox-file", keypoints, "--refine", "--output", out, "--no-render"])
    res = np.load(out / "results.npz")
    assert res["refined"].tolist() == [True]
    net, fit = float(res["reprojection_px_network"][0]), float(res["reprojection_px_refined"][0])
    assert fit < 0.5 * net, (net, fit)  # the refined body explains the keypoints far better
    assert not np.allclose(res["network_smpl_pose"], res["smpl_pose"])  # both kept
    # the refined body is what is written: its 2D joints sit on the keypoints
    used = [0, 2, 3, 4, 5, 6, 7, 10, 11, 13, 14]  # nose, arms, knees, ankles (OpenPose slots)
    body = _keypoints()
    err = np.linalg.norm(res["keypoints2d_smpl49"][0, used] - body[used, :2], axis=1).mean()
    assert err == pytest.approx(fit, rel=0.6)
    summary = json.loads((out / "results.json").read_text())["refine"]
    assert (
        summary["people_refined"] == 1
        and summary["mean_reprojection_px_refined"] < summary["mean_reprojection_px_network"]
    )


def _video(tmp_path: Path, frames: int = 8) -> Path:
    path = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (320, 240))
    for _ in range(frames):
        writer.write(_frame(0))
    writer.release()
    return path


def _acceleration(res) -> float:
    joints = res["keypoints3d_smpl49"][:, 25:]
    joints = joints - joints[:, 2:4].mean(axis=1, keepdims=True)
    return float(np.linalg.norm(joints[2:] - 2 * joints[1:-1] + joints[:-2], axis=-1).mean())


@pytest.mark.slow  # a real demo / subprocess run of several seconds: full suite only
def test_the_temporal_term_calms_a_video_with_jittering_keypoints(env, tmp_path):
    video = _video(tmp_path)
    folder = tmp_path / "keypoints"
    folder.mkdir()
    for i in range(8):  # OpenPose's own names: <frame>_keypoints.json
        _openpose(folder / f"{i:06d}_keypoints.json", _keypoints(jitter=4.0, seed=i))
    accel = {}
    for weight in ("0", "default", "3"):
        out = tmp_path / f"out{weight}"
        args = [video, "--bbox", ",".join(map(str, BOX)), "--keypoints", folder, "--refine", "--no-render"]
        smooth = [] if weight == "default" else ["--refine-smooth", weight]
        _demo(env, [*args, *smooth, "--output", out, "--batch-size", "2"])
        res = np.load(out / "results.npz")
        assert res["refined"].all() and len(res["refined"]) == 8
        accel[weight] = _acceleration(res)
    assert accel["3"] < 0.7 * accel["0"], accel  # chunks of 4 frames: the term also spans chunk boundaries
    # the default weight calms it ~70-fold: each frame's fit ends at its optimum (the learning rate falls over
    # the last steps), not anywhere in Adam's step-sized band around it (that left 0.07x, and weight 3 above
    # the default's acceleration)
    assert accel["default"] < 0.03 * accel["0"], accel


def test_refine_without_keypoints_names_both_sources(env, tmp_path):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), _frame())
    result = _demo(env, [image, "--refine", "--output", tmp_path / "out"], expect=2)
    message = result.output.strip()
    assert "--keypoints" in message and "gtacli fetch keypoints" in message and len(message.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_keypoint_files_that_match_no_frame_are_one_line(env, tmp_path):
    video = _video(tmp_path, 3)
    folder = tmp_path / "keypoints"
    folder.mkdir()
    _openpose(folder / "elsewhere_keypoints.json", _keypoints())
    args = [video, "--bbox", ",".join(map(str, BOX)), "--keypoints", folder, "--refine", "--no-render"]
    result = _demo(env, [*args, "--output", tmp_path / "out"], expect=1)
    message = result.output.strip()
    assert "match no frame" in message and str(folder) in message and len(message.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_keypoints_outside_the_image_or_nan_are_ignored_and_counted(env, tmp_path):
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), _frame())
    body = _keypoints()
    body[4, :2] = (400.0, 50.0)  # right wrist outside the 320 x 240 image
    body[7, 0] = np.nan  # left wrist NaN
    text = json.dumps({"people": [{"pose_keypoints_2d": body.reshape(-1).tolist()}]})  # NaN as JSON's NaN
    keypoints = tmp_path / "photo_keypoints.json"
    keypoints.write_text(text)
    out = tmp_path / "out"
    _demo(
        env, [image, "--bbox", ",".join(map(str, BOX)), "--keypoints", keypoints, "--refine", "--output", out]
    )
    summary = json.loads((out / "results.json").read_text())
    assert summary["refine"]["keypoints_outside_image"] == 1
    assert summary["refine"]["keypoints_non_finite"] == 1
    assert np.load(out / "results.npz")["refined"].tolist() == [True]
    assert any("outside the image" in note for note in summary["notes"])


def test_refine_with_the_keypoint_model_on_the_person_box(env, tmp_path):
    """No OpenPose file: the keypoint model (hand-built, RTMPose layout, a standing person in every crop) gives
    the keypoints; the refined body explains them better than the network's."""
    import sys
    import zipfile

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from onnx_bytes import rtmpose_like_model

    from gtacli.demo.config import DemoConfig
    from gtacli.demo.keypoints import BOX_PADDING
    from gtacli.demo.pipeline import run_demo

    # the standing layout in the model's 192 x 256 input, for the crop of BOX (padded, aspect fixed to 3:4)
    side_h = max(BOX[3], BOX[2] * 256 / 192) * BOX_PADDING
    centre = np.array([BOX[0] + BOX[2] / 2, BOX[1] + BOX[3] / 2])
    image_xy = np.array(BOX[:2]) + STANDING * np.array(BOX[2:])
    peaks = (image_xy - centre) * (256 / side_h) + np.array([96.0, 128.0])
    model = tmp_path / "rtmpose.zip"
    with zipfile.ZipFile(model, "w") as zf:
        zf.writestr("end2end.onnx", rtmpose_like_model(peaks=peaks))
    image = tmp_path / "photo.png"
    cv2.imwrite(str(image), _frame())
    config = DemoConfig(
        input=image, checkpoint=env["ckpt"], data_root=env["root"], output=tmp_path / "out", device="cpu",
        bbox=np.array(BOX, float), refine=True, keypoint_model=model, render=False,
    )  # fmt: skip
    summary = run_demo(config)
    assert summary["refine"]["keypoint_source"]["keypoint_model"] == str(model)
    res = np.load(tmp_path / "out" / "results.npz")
    assert res["refined"].tolist() == [True]
    assert res["reprojection_px_refined"][0] < 0.5 * res["reprojection_px_network"][0]
