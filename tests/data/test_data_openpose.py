"""OpenPose JSON reading, the COCO-18 mapping and SPIN's keypoint box."""

import json

import numpy as np
import pytest

from gtacli.data.openpose import BODY_25, COCO_18, read_openpose, spin_box, to_smpl49
from gtacli.errors import BadFileError


def _write(tmp_path, people, name="kp.json"):
    path = tmp_path / name
    path.write_text(json.dumps({"version": 1.3, "people": people}))
    return path


def test_body25_file_round_trips_and_fills_the_first_25_smpl49_slots(tmp_path):
    flat = np.arange(75, dtype=float)
    frame = read_openpose(_write(tmp_path, [{"pose_keypoints_2d": flat.tolist()}]))
    assert frame.source_format == BODY_25 and frame.keypoints.shape == (1, 25, 3)
    np.testing.assert_array_equal(frame.keypoints[0], flat.reshape(25, 3))
    smpl49 = to_smpl49(frame.keypoints)
    assert smpl49.shape == (1, 49, 3)
    np.testing.assert_array_equal(smpl49[0, :25], flat.reshape(25, 3))
    assert not smpl49[0, 25:].any()


def test_coco18_maps_hips_and_face_past_the_missing_mid_hip(tmp_path):
    coco = np.zeros((18, 3))
    coco[:, 0] = np.arange(18)  # x = COCO index
    coco[:, 2] = 1.0
    frame = read_openpose(_write(tmp_path, [{"pose_keypoints_2d": coco.ravel().tolist()}]))
    assert frame.source_format == COCO_18
    body25 = frame.keypoints[0]
    assert body25[8, 2] == 0  # mid-hip absent
    assert body25[9, 0] == 8 and body25[12, 0] == 11  # right hip, left hip
    assert body25[18, 0] == 17 and body25[19:, 2].sum() == 0  # left ear; no feet


def test_spin_box_is_mean_centre_and_1_2_times_the_extent():
    kps = np.array([[10, 20, 0.9], [30, 60, 0.5], [500, 500, 0.1]], float)  # last one below 0.2
    centre, side = spin_box(kps)
    np.testing.assert_allclose(centre, [20, 40])
    assert side == pytest.approx(1.2 * 40)
    assert spin_box(np.array([[1, 1, 0.9], [5, 5, 0.1]], float)) is None


def test_real_spin_openpose_file_gives_one_person(shared_assets):
    frame = read_openpose(shared_assets / "im1010_openpose.json")
    assert len(frame) == 1 and frame.source_format == BODY_25
    centre, side = spin_box(frame.keypoints[0])
    assert 0 < centre[0] < 200 and 50 < side < 300


@pytest.mark.parametrize(
    "content",
    ['{"people": [{"pose_keypoints_2d": [1, 2]}]}', '{"nobody": []}', "[" * 100000, "not json"],
)
def test_malformed_files_are_one_line_errors_naming_the_file(tmp_path, content):
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(BadFileError) as info:
        read_openpose(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)
