"""Person boxes: IoU/NMS hand cases, user box files (all three formats), selection, tracking, detectors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from gtacli.demo import boxes
from gtacli.demo.boxes import load_bbox_file, parse_bbox_option
from gtacli.demo.detect import (
    Detections,
    build_detector,
    check_box_in_image,
    iou_xywh,
    non_max_suppression,
    parse_yolo_output,
    select_people,
    tighten,
)
from gtacli.errors import BadFileError, MissingFileError, UsageError


def test_iou_hand_cases():
    a = np.array([[0, 0, 10, 10]])
    b = np.array([[5, 0, 10, 10], [20, 20, 5, 5], [0, 0, 10, 10]])
    # overlap 5x10 = 50, union 150 -> 1/3; disjoint -> 0; identical -> 1
    np.testing.assert_allclose(iou_xywh(a, b), [[1 / 3, 0.0, 1.0]])


def test_nms_keeps_best_of_overlapping_and_disjoint_boxes():
    boxes = np.array([[0, 0, 10, 10], [1, 0, 10, 10], [50, 50, 10, 10]], float)
    scores = np.array([0.5, 0.9, 0.7])
    # box 1 (0.9) suppresses box 0 (IoU 9*10/(200-90)=0.82); box 2 is disjoint
    assert non_max_suppression(boxes, scores, 0.45).tolist() == [1, 2]


def test_tighten_keeps_centre():
    out = tighten(np.array([[10, 20, 100, 200]]), (0.5, 0.8))
    np.testing.assert_allclose(out, [[35, 40, 50, 160]])


def test_select_people_by_score_then_area():
    dets = Detections(np.array([[0, 0, 10, 10], [0, 0, 30, 30], [0, 0, 20, 20]]), np.array([1.0, 1.0, 2.0]))
    kept = select_people(dets, 2)
    # highest score first (the 20x20 box), then the larger of the two tied boxes
    np.testing.assert_array_equal(kept.boxes[:, 2], [20, 30])


def test_bbox_option_parsing():
    np.testing.assert_array_equal(parse_bbox_option("17,37,117,142"), [17, 37, 117, 142])
    with pytest.raises(UsageError):
        parse_bbox_option("1,2,3")


def test_box_outside_image_is_refused():
    check_box_in_image([17, 37, 117, 142], (153, 192), "--bbox")  # im1010: inside
    with pytest.raises(BadFileError, match="outside"):
        check_box_in_image([500, 500, 50, 50], (153, 192), "--bbox")
    with pytest.raises(BadFileError, match="at least"):
        check_box_in_image([10, 10, 0, 50], (153, 192), "--bbox")


def test_bbox_file_formats(tmp_path):
    spin = tmp_path / "spin.json"
    spin.write_text(json.dumps({"bbox": [17, 37, 117, 142]}))
    boxes = load_bbox_file(spin)
    np.testing.assert_array_equal(boxes.boxes_for(0, "im1010.jpg"), [[17, 37, 117, 142]])
    np.testing.assert_array_equal(boxes.boxes_for(5, "other.jpg"), [[17, 37, 117, 142]])

    per_frame = tmp_path / "list.json"
    per_frame.write_text(json.dumps([[1, 2, 3, 4], None, [[5, 6, 7, 8], [9, 10, 11, 12]]]))
    boxes = load_bbox_file(per_frame)
    assert boxes.boxes_for(0, "a").shape == (1, 4)
    assert boxes.boxes_for(1, "b").shape == (0, 4)
    np.testing.assert_array_equal(boxes.boxes_for(2, "c")[1], [9, 10, 11, 12])
    with pytest.raises(BadFileError):
        boxes.check_frame_count(4)

    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"img_001.jpg": [1, 2, 3, 4], "img_002": [[5, 6, 7, 8]], "7": []}))
    boxes = load_bbox_file(mapping)
    np.testing.assert_array_equal(boxes.boxes_for(0, "img_001.jpg"), [[1, 2, 3, 4]])
    np.testing.assert_array_equal(boxes.boxes_for(1, "img_002.png"), [[5, 6, 7, 8]])  # by stem
    assert boxes.boxes_for(7, "000007").shape == (0, 4)  # by index, explicitly empty
    assert boxes.boxes_for(3, "img_003.jpg").shape == (0, 4)  # absent -> no person

    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(BadFileError):
        load_bbox_file(bad)
    bad.write_text(json.dumps([[1, 2, 3]]))
    with pytest.raises(BadFileError):
        load_bbox_file(bad)


def test_real_spin_bbox_file(shared_assets):
    boxes = load_bbox_file(shared_assets / "im1010_bbox.json")
    np.testing.assert_array_equal(boxes.boxes_for(0, "im1010.jpg"), [[17, 37, 117, 142]])


def test_yolo_output_parsing_v5_and_v8_layouts():
    # one person (cx=100, cy=200, w=40, h=80) at objectness 0.9 x class 0.9, one car (class 2), one weak person
    classes = 80
    rows = np.zeros((3, 5 + classes))
    rows[0, :5] = [100, 200, 40, 80, 0.9]
    rows[0, 5] = 0.9
    rows[1, :5] = [300, 300, 50, 50, 0.95]
    rows[1, 5 + 2] = 0.9
    rows[2, :5] = [10, 10, 5, 5, 0.2]
    rows[2, 5] = 0.9
    dets = parse_yolo_output(rows[None], factor=0.5, score_threshold=0.5)
    np.testing.assert_allclose(dets.boxes, [[160, 320, 80, 160]])  # network px / 0.5
    np.testing.assert_allclose(dets.scores, [0.81])
    v8 = np.zeros((4 + classes, 2))
    v8[:4, 0] = [100, 200, 40, 80]
    v8[4, 0] = 0.7
    v8[:4, 1] = [300, 300, 50, 50]
    v8[4 + 2, 1] = 0.9
    dets = parse_yolo_output(v8[None], factor=1.0, score_threshold=0.5)
    np.testing.assert_allclose(dets.boxes, [[80, 160, 40, 80]])


def test_dnn_detectors_need_local_files(tmp_path):
    with pytest.raises(MissingFileError, match="detectors"):
        build_detector("ssd", tmp_path)
    with pytest.raises(MissingFileError, match="yolo.onnx"):
        build_detector("yolo", tmp_path)
    with pytest.raises(UsageError):
        build_detector("magic", tmp_path)


def test_hog_finds_the_person_in_a_real_photo(shared_assets):
    import cv2

    image = cv2.imread(str(shared_assets / "S1_Directions_1.54138969_000001.jpg"))
    dets = build_detector("hog")(image)
    assert len(dets) >= 1
    # The subject of this Human3.6M frame stands around x 415-540, y 275-640 (checked by eye); the best box's
    # centre must fall on her and its height must be person-sized.
    x, y, w, h = dets.boxes[np.argmax(dets.scores)]
    assert 400 < x + w / 2 < 560 and 300 < y + h / 2 < 600
    assert 250 < h < 600


def test_hog_finds_nobody_in_a_blank_frame():
    dets = build_detector("hog")(np.full((480, 640, 3), 127, np.uint8))
    assert len(dets) == 0
    assert build_detector("hog").describe()["name"] == "hog"


@pytest.mark.parametrize("size_hw", [(54, 96), (2, 2), (180, 2400), (127, 63)])
def test_hog_on_images_smaller_than_its_window_returns_instead_of_aborting(size_hw):
    """OpenCV aborts the process (exit 134) when detectMultiScale gets an image below its 64x128 window;
    the detector scales such images up to the window first (a crash here would kill the test process)."""
    rng = np.random.default_rng(0)
    dets = build_detector("hog")(rng.integers(0, 256, (*size_hw, 3), dtype=np.uint8))
    assert dets.boxes.shape[1] == 4


def test_tiny_bbox_is_refused():
    with pytest.raises(UsageError, match="at least"):
        boxes.check_bbox_option(np.array([10, 10, 1e-9, 1e-9]))
    with pytest.raises(BadFileError, match="at least"):
        check_box_in_image([10, 10, 1e-9, 50], (100, 100), "boxes.json")
    assert boxes.check_bbox_option(np.array([10, 10, 2, 2])).shape == (1, 4)


def test_deeply_nested_bbox_file_is_one_line(tmp_path):
    path = tmp_path / "deep.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    with pytest.raises(BadFileError) as info:
        load_bbox_file(path)
    assert "nested" in str(info.value) and "\n" not in str(info.value)


def test_openpose_bbox_file_gives_spins_crop(shared_assets):
    """SPIN's demo crops OpenPose people at centre = mean of keypoints above 0.2, side = 1.2 x their extent;
    the demo's box for that person must give exactly that crop (demo crop side = 1.25 x box side)."""
    doc = json.loads((shared_assets / "im1010_openpose.json").read_text())
    flat = np.asarray(doc["people"][0]["pose_keypoints_2d"], float).reshape(-1, 3)
    good = flat[flat[:, 2] > 0.2, :2]
    centre = good.mean(0)
    side = 1.2 * (good.max(0) - good.min(0)).max()
    boxes = load_bbox_file(shared_assets / "im1010_openpose.json").boxes_for(0, "im1010.jpg")
    from gtacli.body.camera import crop_square

    got_centre, got_side = crop_square(boxes[0])
    np.testing.assert_allclose(got_centre, centre, atol=1e-6)
    assert got_side == pytest.approx(side, rel=1e-9)


def test_coco18_openpose_bbox_file(tmp_path):
    # COCO-18: 18 keypoints; two confident ones span a 100-px square around (150, 200)
    keypoints = np.zeros((18, 3))
    keypoints[0] = (100, 150, 0.9)
    keypoints[10] = (200, 250, 0.8)
    path = tmp_path / "coco.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": keypoints.ravel().tolist()}]}))
    from gtacli.body.camera import crop_square

    centre, side = crop_square(load_bbox_file(path).boxes_for(0, "x.jpg")[0])
    np.testing.assert_allclose(centre, [150, 200])
    assert side == pytest.approx(120.0)


def test_box_mapping_counts_matched_frames(tmp_path):
    path = tmp_path / "boxes.json"
    path.write_text(json.dumps({"other.jpg": [1, 2, 30, 40]}))
    boxes = load_bbox_file(path)
    assert len(boxes.boxes_for(0, "img.jpg")) == 0
    assert boxes.matched == 0 and not boxes.every_frame_given
    assert len(boxes.boxes_for(1, "other.jpg")) == 1 and boxes.matched == 1
