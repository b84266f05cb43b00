"""benchmarks/make_video_keypoints.py (MediaPipe Pose -> OpenPose BODY_25 per frame, for bench_refine's video
section): the landmark mapping and that `demo --refine --keypoints DIR` finds its files under a video's frame
names. MediaPipe itself is not needed: only the conversion is tested (the script imports it in `main`)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

from gtacli.demo.refine import OpenPoseKeypoints

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "make_video_keypoints.py"
spec = importlib.util.spec_from_file_location("make_video_keypoints", SCRIPT)
tool = importlib.util.module_from_spec(spec)
spec.loader.exec_module(tool)

WH = (200, 400)


def _landmarks() -> np.ndarray:
    """33 BlazePose landmarks at distinct places (normalised x, y), all visible."""
    index = np.arange(33)
    return np.stack([0.1 + 0.02 * index, 0.05 + 0.025 * index, np.full(33, 0.9)], axis=1)


def test_blazepose_landmarks_become_body25_in_pixels():
    marks = _landmarks()
    body = tool.to_body25(marks, WH)
    px = marks[:, :2] * WH
    assert np.allclose(body[0, :2], px[0])  # nose
    assert np.allclose(body[1, :2], (px[11] + px[12]) / 2)  # neck = mid-shoulders
    assert np.allclose(body[8, :2], (px[23] + px[24]) / 2)  # mid-hip = mid-hips
    assert np.allclose(body[[2, 5, 9, 12], :2], px[[12, 11, 24, 23]])  # right/left shoulders and hips
    assert np.allclose(body[[19, 21, 22, 24], :2], px[[31, 29, 32, 30]])  # big toes (foot_index), heels
    assert np.allclose(body[[15, 16, 17, 18], :2], px[[5, 2, 8, 7]])  # eyes, ears
    assert body[[20, 23], 2].tolist() == [0.0, 0.0]  # small toes: none in BlazePose
    assert np.allclose(body[np.r_[0:20, 21, 22, 24], 2], 0.9)  # confidence = visibility


def test_unseen_or_outside_landmarks_get_zero_confidence():
    marks = _landmarks()
    marks[16, 2] = 0.1  # right wrist barely visible
    marks[27, 0] = 1.2  # left ankle right of the image
    marks[11, 1] = np.nan  # left shoulder: no position, and the neck (its midpoint) with it
    body = tool.to_body25(marks, WH)
    assert body[[4, 14, 5, 1]].tolist() == [[0.0, 0.0, 0.0]] * 4
    assert body[2, 2] == 0.9  # the right shoulder is untouched


def test_the_files_are_found_under_a_videos_frame_names(tmp_path):
    bodies = [tool.to_body25(_landmarks() + [0.01 * i, 0, 0], WH) for i in range(3)]
    for i, body in enumerate(bodies):
        tool.write_json(tool.frame_file(tmp_path, i), tool.openpose_document([body]))
    tool.write_json(tool.frame_file(tmp_path, 3), tool.openpose_document([]))  # nobody found
    assert sorted(p.name for p in tmp_path.iterdir())[0] == "000000_keypoints.json"
    assert json.loads((tmp_path / "000003_keypoints.json").read_text())["people"] == []
    source = OpenPoseKeypoints(tmp_path)
    for i, body in enumerate(bodies):  # gtacli.io.video names frame i "%06d" % i
        found = source.candidates(i, f"{i:06d}").keypoints
        assert found.shape == (1, 25, 3) and np.allclose(found[0], body, atol=1e-3)
    assert len(source.candidates(3, "000003").keypoints) == 0
