"""The keypoint model path (issue 21 item 4) on a hand-built ONNX model in RTMPose's input/output layout:
loading (a .onnx file or the released zip), the crop and normalisation, SimCC decoding, the COCO-17 ->
BODY_25 -> smpl_49 mapping with confidences, the hash check, and both engines."""

from __future__ import annotations

import hashlib
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from onnx_bytes import rtmpose_like_model  # noqa: E402

from gtacli.body.conventions import SMPL_49  # noqa: E402
from gtacli.data.openpose import spin_box, to_smpl49  # noqa: E402
from gtacli.demo.keypoints import (  # noqa: E402
    COCO17_TO_BODY25,
    KeypointModel,
    crop_matrix,
    decode_simcc,
    to_body25,
)
from gtacli.errors import BadFileError  # noqa: E402

ENGINES = ["opencv"] + (["onnxruntime"] if __import__("importlib").util.find_spec("onnxruntime") else [])
COCO17 = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder", "left_elbow",
    "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee", "right_knee",
    "left_ankle", "right_ankle",
)  # fmt: skip


def _blob_image(centre=(230, 140), size=(400, 300)) -> np.ndarray:
    image = np.zeros((size[1], size[0], 3), np.uint8)
    cv2.circle(image, centre, 6, (255, 255, 255), -1)
    return cv2.GaussianBlur(image, (0, 0), 4)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_blob_decodes_to_its_centre_in_image_pixels(tmp_path, engine):
    """Every keypoint of the test model sits on the image's bright blob: the crop (box padding, aspect fix),
    the normalisation and SimCC decoding (argmax / 2 sub-pixel bins) must all be right for it to land there."""
    model_path = tmp_path / "rtm.onnx"
    model_path.write_bytes(rtmpose_like_model())
    model = KeypointModel(model_path, engine)
    assert model.engine == engine and model.input_wh == (192, 256)
    for box in ([180, 60, 100, 180], [150, 100, 200, 80]):  # tall and wide boxes (the aspect fix both ways)
        (person,) = model(_blob_image(), np.array([box], float))
        crop_px = crop_matrix(box, model.input_wh)[1][2] / 192  # image pixels per input pixel
        body = person.body25
        used = body[list(COCO17_TO_BODY25)]
        assert np.abs(used[:, 0] - 230).max() <= crop_px and np.abs(used[:, 1] - 140).max() <= crop_px
        assert (used[:, 2] == 1.0).all()  # scores above 1 are clipped to 1
        assert body[[1, 8, *range(19, 25)], 2].tolist() == [0.0] * 8  # neck, mid-hip, feet: not in COCO-17


def test_the_released_zip_loads_and_a_changed_file_is_refused(tmp_path):
    archive = tmp_path / "rtmpose.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("20230504/rtmpose-m/end2end.onnx", rtmpose_like_model())
        zf.writestr("20230504/rtmpose-m/pipeline.json", "{}")
    recorded = hashlib.sha256(archive.read_bytes()).hexdigest()
    (person,) = KeypointModel(archive, "opencv", sha256=recorded)(
        _blob_image(), np.array([[180, 60, 100, 180.0]])
    )
    assert person.body25[0, 2] == 1.0
    with pytest.raises(BadFileError, match="sha256") as err:
        KeypointModel(archive, "opencv", sha256="0" * 64)
    assert "gtacli fetch keypoints --force" in str(err.value) and "\n" not in str(err.value)
    two = tmp_path / "two.zip"
    with zipfile.ZipFile(two, "w") as zf:
        zf.writestr("a.onnx", b"x")
        zf.writestr("b.onnx", b"y")
    with pytest.raises(BadFileError, match="2 .onnx files"):
        KeypointModel(two, "opencv")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(BadFileError, match="gtacli fetch keypoints --force"):
        KeypointModel(junk, "opencv")


def test_simcc_decoding_positions_and_scores():
    simcc_x = np.zeros((2, 384))
    simcc_y = np.zeros((2, 512))
    simcc_x[0, 101], simcc_y[0, 40] = 0.9, 0.6  # keypoint 0 at (50.5, 20), score = the smaller maximum
    simcc_x[1, 0], simcc_y[1, 511] = 0.2, 0.8
    xy, score = decode_simcc(simcc_x, simcc_y, (192, 256))
    np.testing.assert_allclose(xy, [[50.5, 20.0], [0.0, 255.5]])
    np.testing.assert_allclose(score, [0.6, 0.2])


def test_coco17_lands_in_the_matching_smpl49_slots_with_confidences():
    """Each COCO-17 joint goes to the OpenPose slot of the same body part; below MIN_SCORE, outside the image
    or NaN -> confidence 0 (the latter two counted)."""
    xy = np.stack([np.arange(17) * 10.0 + 1, np.arange(17) * 5.0 + 2], axis=1)
    scores = np.full(17, 0.8)
    scores[3] = 0.1  # left ear: too unsure
    xy[4] = [-5.0, 10.0]  # right ear: outside the image
    xy[9] = [np.nan, 3.0]  # left wrist: NaN
    person = to_body25(xy, scores, (640, 480))
    assert (person.outside, person.non_finite) == (1, 1)
    smpl49 = to_smpl49(person.body25[None])[0]
    for i, name in enumerate(COCO17):
        slot = SMPL_49.index(f"{name}_openpose")
        if i in (3, 4, 9):
            assert smpl49[slot, 2] == 0.0, name
        else:
            np.testing.assert_allclose(smpl49[slot], [*xy[i], 0.8], err_msg=name)
    assert spin_box(person.body25) is not None  # the keypoints give SPIN's crop as OpenPose's do
