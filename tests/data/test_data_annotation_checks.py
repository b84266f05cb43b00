"""Finiteness checks of annotation files: the count of bad frames and the first one's number in the file."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.data.annotation_checks import check_finite, check_gt_smpl
from gtacli.data.human_data import HumanData, write_human_data
from gtacli.errors import BadFileError


def _annotation(tmp_path, bad_frames=(), bad_pose_frames=()):
    n = 8
    boxes = np.tile(np.array([10.0, 20.0, 100.0, 200.0], np.float32), (n, 1))
    body_pose = np.zeros((n, 69), np.float32)
    for i in bad_frames:
        boxes[i, 2] = np.nan
    for i in bad_pose_frames:
        body_pose[i, 5] = np.inf
    path = write_human_data(
        tmp_path / "ann.npz",
        {
            "image_path": [f"f{i}.jpg" for i in range(n)],
            "bbox_xywh": boxes,
            "smpl": {
                "betas": np.zeros((n, 10), np.float32),
                "body_pose": body_pose,
                "global_orient": np.zeros((n, 3), np.float32),
            },  # fmt: skip
            "meta": {"gender": ["m"] * n},
        },
    )
    return HumanData.load(path), path


def test_bad_boxes_are_counted_and_the_first_is_numbered_in_the_file(tmp_path):
    hd, path = _annotation(tmp_path, bad_frames=(3, 6))
    with pytest.raises(BadFileError, match=r"2 of 8 frames .* 'bbox_xywh' \(first: frame 3\)"):
        check_finite(hd, "bbox_xywh", path)
    # checking rows 4.. only: one bad frame, named by its number in the file, not its position among the rows
    with pytest.raises(BadFileError, match=r"1 of 4 frames .*\(first: frame 6\)"):
        check_finite(hd, "bbox_xywh", path, rows=np.arange(4, 8))
    check_finite(hd, "bbox_xywh", path, rows=np.array([0, 1, 2, 4, 5, 7]))  # the finite ones pass


def test_non_finite_ground_truth_pose_names_its_first_frame(tmp_path):
    hd, path = _annotation(tmp_path, bad_pose_frames=(5,))
    with pytest.raises(
        BadFileError, match=r"1 frames have NaN/inf in the ground-truth smpl.body_pose \(first: frame 5\)"
    ):
        check_gt_smpl(hd, path, rows=np.arange(2, 8))
    assert check_gt_smpl(hd, path, rows=np.arange(0, 5)) == ["m"] * 5  # rows before the bad frame pass
