"""`gtacli demo` end to end on the tiny synthetic tree (its checkpoint predicts the mean body, centred in the crop).

Generated media: a 6-frame 320x240 video, small PNG images. Real media (skipped when ../shared/assets is
absent): SPIN's im1010.jpg + im1010_bbox.json, mmhuman3d's single_person_demo.mp4.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gtacli.cli.app import app

FOCAL = (
    5000.0  # docs/reproduction.md §4.4 / §9, written out here so the tests do not reuse the code's constants
)
CROP_RES = 224.0
BOX = (100, 40, 120, 160)  # x, y, w, h inside the 320x240 test frames


def _demo(args, expect=0):
    result = CliRunner().invoke(app, ["demo", *[str(a) for a in args]], catch_exceptions=False)
    assert result.exit_code == expect, result.stderr[-3000:] + result.stdout[-2000:]
    return result


def _texture(seed, size_hw=(240, 320)):
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 255, (size_hw[0] // 8, size_hw[1] // 8, 3), dtype=np.uint8)
    return cv2.resize(small, (size_hw[1], size_hw[0]), interpolation=cv2.INTER_CUBIC)


@pytest.fixture(scope="module")
def env(sample_tree):
    return {"root": sample_tree, "ckpt": sample_tree / "pretrained_models" / "spin_official.pth"}


def _common(env, out):
    return [
        "--checkpoint",
        env["ckpt"],
        "--data-root",
        env["root"],
        "--device",
        "cpu",
        "--output",
        out,
        "--quiet",
    ]


def _box_str(box):
    return ",".join(str(v) for v in box)


@pytest.mark.slow
def test_video_overlay_keeps_frame_count_and_fps_and_one_entry_per_frame(env, tmp_path):
    video = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), 7.0, (320, 240))
    for i in range(6):
        writer.write(np.roll(_texture(0), 4 * i, axis=1))
    writer.release()
    out = tmp_path / "out"
    _demo([video, *_common(env, out), "--bbox", _box_str(BOX), "--smooth", "--batch-size", "4"])

    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    count = 0
    while cap.grab():
        count += 1
    assert count == 6
    assert cap.get(cv2.CAP_PROP_FPS) == pytest.approx(7.0)
    assert (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))) == (320, 240)
    cap.release()

    res = np.load(out / "results.npz")
    n = 6
    assert res["frame_index"].tolist() == list(range(6))
    assert res["person_id"].tolist() == [0] * 6  # the same box every frame: one track
    shapes = {
        "smpl_pose": (n, 72), "global_orient": (n, 3), "body_pose": (n, 23, 3), "betas": (n, 10),
        "pred_cam": (n, 3), "transl": (n, 3), "transl_crop": (n, 3), "bbox_xywh": (n, 4),
        "keypoints2d_smpl49": (n, 49, 2), "keypoints2d_j14": (n, 14, 2), "keypoints3d_smpl49": (n, 49, 3),
        "keypoints3d_j14": (n, 14, 3), "frame_names": (6,), "frame_has_person": (6,),
    }  # fmt: skip
    for key, shape in shapes.items():
        assert res[key].shape == shape, key
    assert "vertices" not in res.files  # only with --save-vertices
    np.testing.assert_array_equal(res["smpl_pose"][:, :3], res["global_orient"])
    summary = json.loads((out / "results.json").read_text())
    assert summary["frames"] == 6 and summary["fps"] == pytest.approx(7.0)
    assert summary["smoothing"]["filter"] == "one_euro"
    assert summary["frames_without_person"] == []


def _mesh_mask(env, vertices_cam, K, size_hw):
    """Where the renderer draws this mesh with this camera (the renderer's own coverage mask)."""
    from gtacli.body.smpl import BodyModel
    from gtacli.layout import DataLayout
    from gtacli.render import overlay as render

    faces = BodyModel.from_layout(DataLayout(env["root"])).faces
    mask, _ = render.render_mask_depth(vertices_cam, faces, K, size_hw)
    return mask


def test_image_overlay_changes_pixels_only_where_the_mesh_projects(env, tmp_path):
    image = _texture(1)
    frames = tmp_path / "in"
    frames.mkdir()
    cv2.imwrite(str(frames / "photo.png"), image)
    out = tmp_path / "out"
    _demo([frames / "photo.png", *_common(env, out), "--bbox", _box_str(BOX), "--save-vertices"])
    overlay = cv2.imread(str(out / "overlays" / "photo.png"))
    res = np.load(out / "results.npz")

    # the crop camera seen from the image, by docs/reproduction.md §9: W = 1.25 max(w, h), K = [[f W/224, 0, cx], [0, f W/224, cy]]
    x, y, w, h = BOX
    side, cx, cy = 1.25 * max(w, h), x + w / 2, y + h / 2
    np.testing.assert_allclose(res["crop_center"][0], [cx, cy])
    np.testing.assert_allclose(res["crop_size"][0], side)
    K = np.array([[FOCAL * side / CROP_RES, 0, cx], [0, FOCAL * side / CROP_RES, cy], [0, 0, 1]])
    s, tx, ty = res["pred_cam"][0].astype(np.float64)
    t_crop = np.array([tx, ty, 2 * FOCAL / (CROP_RES * s)])
    np.testing.assert_allclose(res["transl_crop"][0], t_crop, rtol=1e-5)
    verts_cam = res["vertices"][0].astype(np.float64) + t_crop

    mask = _mesh_mask(env, verts_cam, K, image.shape[:2])
    changed = np.any(overlay != image, axis=2)
    assert mask.sum() > 500  # the mean body covers a good part of the box
    # nothing outside the mesh's footprint changed (1-px tolerance for anti-aliased edges), most of it did
    grown = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert not np.any(changed & ~grown)
    assert changed[mask].mean() > 0.9

    # 2D joints: K (X + t_crop) / Z, computed here independently
    j3d = res["keypoints3d_smpl49"][0].astype(np.float64) + t_crop
    uv = (j3d @ K.T)[:, :2] / j3d[:, 2:3]
    np.testing.assert_allclose(res["keypoints2d_smpl49"][0], uv, atol=1e-2)
    # `transl` (original camera: principal point at the image centre, focal f W / 224) puts the body origin
    # on the same pixel as the crop camera does
    F = res["focal_length"][0]
    assert F == pytest.approx(FOCAL * side / CROP_RES)
    t_full = res["transl"][0].astype(np.float64)
    origin_full = F * t_full[:2] / t_full[2] + np.array([320 / 2, 240 / 2])
    origin_crop = (K @ t_crop)[:2] / t_crop[2]
    np.testing.assert_allclose(origin_full, origin_crop, atol=1e-2)


@pytest.mark.slow
def test_frames_without_a_person_are_recorded_not_dropped(env, tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for i in range(3):
        cv2.imwrite(str(frames / f"f{i}.png"), _texture(10 + i))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"f0.png": list(BOX), "f2": [list(BOX)]}))  # nobody in f1
    out = tmp_path / "out"
    result = _demo([frames, *_common(env, out), "--bbox-file", boxes, "--json"])
    summary = json.loads(result.stdout)  # exactly one JSON document
    assert summary["frames"] == 3 and summary["frames_without_person"] == ["f1.png"]
    res = np.load(out / "results.npz")
    assert res["frame_index"].tolist() == [0, 2]
    assert res["frames_without_person"].tolist() == [1]
    assert res["frame_has_person"].tolist() == [True, False, True]
    # the frame without a person still gets its overlay, unchanged
    np.testing.assert_array_equal(cv2.imread(str(out / "overlays" / "f1.png")), _texture(11))


def test_detector_finding_nobody_records_the_frame(env, tmp_path):
    cv2.imwrite(str(tmp_path / "blank.png"), np.full((240, 320, 3), 128, np.uint8))
    out = tmp_path / "out"
    _demo([tmp_path / "blank.png", *_common(env, out), "--no-render"])
    res = np.load(out / "results.npz")
    assert res["smpl_pose"].shape == (0, 72) and res["frames_without_person"].tolist() == [0]
    assert not (out / "overlays").exists()


@pytest.mark.slow
def test_bbox_option_and_spin_bbox_file_give_the_same_crop(env, tmp_path, shared_assets):
    image = shared_assets / "im1010.jpg"
    a, b = tmp_path / "a", tmp_path / "b"
    _demo([image, *_common(env, a), "--bbox", "17,37,117,142", "--no-render"])
    _demo([image, *_common(env, b), "--bbox-file", shared_assets / "im1010_bbox.json", "--no-render"])
    ra, rb = np.load(a / "results.npz"), np.load(b / "results.npz")
    # docs/reproduction.md §9 by hand: centre (17 + 117/2, 37 + 142/2), side 1.25 * 142
    for res in (ra, rb):
        np.testing.assert_allclose(res["crop_center"][0], [75.5, 108.0])
        np.testing.assert_allclose(res["crop_size"][0], 177.5)
        np.testing.assert_allclose(res["bbox_xywh"][0], [17, 37, 117, 142])
    for key in ("pred_cam", "betas", "smpl_pose", "keypoints2d_smpl49"):
        np.testing.assert_array_equal(ra[key], rb[key])


@pytest.mark.slow
def test_real_video_with_the_builtin_detector(env, tmp_path, shared_assets):
    out = tmp_path / "out"
    _demo([shared_assets / "single_person_demo.mp4", *_common(env, out), "--max-frames", "2", "--no-render"])
    summary = json.loads((out / "results.json").read_text())
    assert summary["frames"] == 2 and summary["frames_in_input"] == 40 and "subsampled" in summary
    res = np.load(out / "results.npz")
    assert res["frames_without_person"].tolist() == []
    # the player stands around x 630-1080, y 490-1600 of the 1080x1920 frame (checked by eye)
    x, y, w, h = res["bbox_xywh"][0]
    assert 650 < x + w / 2 < 1000 and 800 < y + h / 2 < 1400


def _one_error_line(result):
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(
    "case",
    [
        "empty_video",
        "garbage_video",
        "empty_folder",
        "bbox_outside",
        "missing_input",
        "missing_detector",
        "wrong_checkpoint",
        "backbone_only",
    ],
)
def test_bad_input_one_line_exit_1_and_nothing_written(env, tmp_path, case):
    ckpt = env["ckpt"]
    extra = []
    if case == "empty_video":
        target = tmp_path / "empty.mp4"
        target.write_bytes(b"")
    elif case == "garbage_video":
        target = tmp_path / "garbage.mp4"
        target.write_bytes(b"definitely not a video" * 200)
    elif case == "empty_folder":
        target = tmp_path / "nothing"
        target.mkdir()
        (target / "readme.txt").write_text("no images here")
    elif case == "missing_input":
        target = tmp_path / "absent.jpg"
    else:
        target = tmp_path / "img.png"
        cv2.imwrite(str(target), _texture(3))
        if case == "bbox_outside":
            extra = ["--bbox", "1000,1000,50,80"]
        elif case == "missing_detector":
            extra = ["--detector", "yolo"]  # its weights are not in the sample tree
        else:
            import torch

            ckpt = tmp_path / "bad.pth"
            if case == "wrong_checkpoint":
                torch.save({"state_dict": {"decoder.weight": torch.zeros(3, 3)}}, ckpt)
            else:  # a torchvision-style ResNet-50 without the HMR head
                from gtacli.model.estimator import build_estimator

                model = build_estimator(env["root"] / "body_models" / "smpl_mean_params.npz")
                torch.save(
                    {
                        k[len("backbone.") :]: v
                        for k, v in model.state_dict().items()
                        if k.startswith("backbone.")
                    },
                    ckpt,
                )
            extra = ["--bbox", _box_str(BOX)]
    out = tmp_path / "out" / "demo"
    args = [
        target,
        "--checkpoint",
        ckpt,
        "--data-root",
        env["root"],
        "--device",
        "cpu",
        "--output",
        out,
        *extra,
    ]
    result = _demo(args, expect=1)
    line = _one_error_line(result)
    assert line.startswith("error:")
    if case == "missing_detector":
        assert str(Path("detectors") / "yolo.onnx") in line  # says where to put the weights
    assert not out.exists()
    leftovers = list((tmp_path / "out").iterdir()) if (tmp_path / "out").exists() else []
    assert leftovers == []  # no temporary folder left behind either


@pytest.mark.parametrize(
    "content, problem",
    [
        ("{bad json", "not valid JSON"),
        ('{"bbox": [1, 2]}', "is not a box"),
        ('{"bbox": [10, 10, 0, 20]}', "width and height of at least"),
        ('{"bbox": [10, 10, 1e-9, 1e-9]}', "width and height of at least"),
        ("[" * 50000 + "]" * 50000, "nested too deeply"),
    ],
)
def test_bad_bbox_file_names_file_problem_and_fix(env, tmp_path, content, problem):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(6))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(content)
    out = tmp_path / "out"
    result = _demo([tmp_path / "a.png", *_common(env, out), "--bbox-file", boxes], expect=1)
    line = _one_error_line(result)
    assert str(boxes) in line and problem in line and "Fix:" in line
    assert not out.exists()


def test_unwritable_output_is_one_line_before_any_work(env, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(7))
    blocker = tmp_path / "a_file"  # a regular file where the output's parent folder should be
    blocker.write_text("keep")
    out = blocker / "demo"
    result = _demo([tmp_path / "a.png", *_common(env, out), "--bbox", _box_str(BOX)], expect=1)
    line = _one_error_line(result)
    assert str(out) in line and f"{blocker} is a file" in line and "--output" in line
    assert blocker.read_text() == "keep"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.png", "a_file"]


@pytest.mark.slow
def test_unreadable_video_is_exactly_one_stderr_line_in_a_real_process(env, tmp_path):
    """FFmpeg writes its decoder complaints to the process's stderr directly (CliRunner cannot see them)."""
    video = tmp_path / "garbage.mp4"
    video.write_bytes(b"definitely not a video" * 200)
    out = tmp_path / "out"
    env_vars = {k: v for k, v in os.environ.items() if k != "OPENCV_FFMPEG_LOGLEVEL"}
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "demo", str(video), *[str(a) for a in _common(env, out)]],
        capture_output=True, text=True, timeout=300, env=env_vars,
    )  # fmt: skip
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and str(video) in lines[0], proc.stderr
    assert not out.exists()


def test_existing_foreign_output_folder_is_refused(env, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    out = tmp_path / "mine"
    out.mkdir()
    (out / "precious.txt").write_text("keep me")
    result = _demo([tmp_path / "a.png", *_common(env, out), "--bbox", _box_str(BOX)], expect=2)
    assert "holds files the demo did not write (e.g. precious.txt)" in _one_error_line(result)
    assert sorted(p.name for p in out.iterdir()) == ["precious.txt"]


@pytest.mark.slow
def test_max_people_keeps_the_largest_user_box_and_side_view_doubles_the_width(env, tmp_path):
    cv2.imwrite(str(tmp_path / "two.png"), _texture(5))
    boxes = tmp_path / "boxes.json"
    small, large = [10, 20, 40, 80], [150, 30, 90, 180]
    boxes.write_text(json.dumps([[small, large]]))  # one frame, two people
    out_all, out_one = tmp_path / "all", tmp_path / "one"
    _demo([tmp_path / "two.png", *_common(env, out_all), "--bbox-file", boxes, "--side-view"])
    _demo(
        [
            tmp_path / "two.png",
            *_common(env, out_one),
            "--bbox-file",
            boxes,
            "--max-people",
            "1",
            "--no-render",
        ]
    )
    both = np.load(out_all / "results.npz")
    assert both["frame_index"].tolist() == [0, 0] and sorted(both["person_id"].tolist()) == [0, 1]
    one = np.load(out_one / "results.npz")
    np.testing.assert_array_equal(one["bbox_xywh"], [large])
    # the side view sits right of the frame and is not a blank canvas
    overlay = cv2.imread(str(out_all / "overlays" / "two.png"))
    assert overlay.shape == (240, 640, 3)
    assert overlay[:, 320:].reshape(-1, 3).std(axis=0).max() > 5
    # both meshes are drawn: the overlay changed inside each person's box
    changed = np.any(overlay[:, :320] != _texture(5), axis=2)
    for x, y, w, h in (small, large):
        assert changed[y : y + h, x : x + w].any()


def test_common_camera_projects_every_person_like_its_own_camera():
    from gtacli.body.camera import to_common_camera

    rng = np.random.default_rng(0)
    size_hw = (240, 320)
    verts, Ks = [], []
    for f, cx, cy, tz in ((900.0, 80.0, 120.0, 40.0), (2500.0, 250.0, 100.0, 60.0)):
        verts.append(rng.normal(scale=0.4, size=(50, 3)) + [0.0, 0.0, tz])
        Ks.append(np.array([[f, 0, cx], [0, f, cy], [0, 0, 1]]))
    moved, K = to_common_camera(verts, Ks, size_hw)
    assert K[0, 2] == 160 and K[1, 2] == 120
    for v, Ki, m in zip(verts, Ks, moved):
        own = (v @ Ki.T)[:, :2] / v[:, 2:3]
        common = (m @ K.T)[:, :2] / m[:, 2:3]
        np.testing.assert_allclose(common, own, atol=1e-9)
        # the depth scales by F / f_i (the original-camera depth convention of `transl`)
        np.testing.assert_allclose(m[:, 2], v[:, 2] * K[0, 0] / Ki[0, 0])


def test_full_image_translation_hand_case():
    from gtacli.body.camera import full_image_translation

    # im1010: box [17, 37, 117, 142] -> centre (75.5, 108), side 177.5; image 153x192; mean camera [0.9, 0, 0]
    s, side = 0.9, 177.5
    F = 5000 * side / 224
    t = full_image_translation(
        np.array([[s, 0.0, 0.0]]),
        np.array([[75.5, 108.0]]),
        np.array([side]),
        np.array([[153.0, 192.0]]),
        np.array([F]),
    )
    expected = [2 * (75.5 - 76.5) / (s * side), 2 * (108 - 96) / (s * side), 2 * 5000 / (224 * s)]
    np.testing.assert_allclose(t[0], expected, rtol=1e-9)
    assert expected[0] == pytest.approx(-0.0125196, rel=1e-5) and expected[2] == pytest.approx(
        49.6031746, rel=1e-7
    )


@pytest.mark.slow
def test_video_with_implausible_fps_says_so_and_uses_a_sane_rate(env, tmp_path):
    video = tmp_path / "fast.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 1000.0, (160, 120))
    for i in range(3):
        writer.write(np.roll(_texture(6, (120, 160)), 3 * i, axis=0))
    writer.release()
    out = tmp_path / "out"
    args = [
        video,
        "--checkpoint",
        env["ckpt"],
        "--data-root",
        env["root"],
        "--device",
        "cpu",
        "--output",
        out,
    ]
    result = _demo([*args, "--bbox", "40,20,60,90"])
    assert "frame rate is implausible" in result.stderr  # the user is told
    summary = json.loads((out / "results.json").read_text())
    assert summary["fps"] == 30.0 and "implausible" in summary["fps_note"]
    cap = cv2.VideoCapture(str(out / "overlay.mp4"))
    count = 0
    while cap.grab():
        count += 1
    assert count == 3 and cap.get(cv2.CAP_PROP_FPS) == pytest.approx(30.0)


# ------------------------------------------------------------------------------------------ #13, #11, #10 items


def _video(path, frames=6, size_wh=(320, 240), fourcc="mp4v", fps=7.0):
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), fps, size_wh)
    for i in range(frames):
        writer.write(np.roll(_texture(0, size_wh[::-1]), 4 * i, axis=1))
    writer.release()
    return path


@pytest.mark.slow
def test_rerun_replaces_only_its_own_files_and_refuses_a_folder_with_a_user_file(env, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    out = tmp_path / "out"
    args = [tmp_path / "a.png", *_common(env, out), "--bbox", _box_str(BOX)]
    _demo(args)
    manifest = json.loads((out / ".gtacli-demo.json").read_text())
    assert sorted(manifest["files"]) == ["overlays/a.png", "results.json", "results.npz"]
    _demo(args)  # its own output: replaced
    assert sorted(p.name for p in out.iterdir()) == [
        ".gtacli-demo.json",
        "overlays",
        "results.json",
        "results.npz",
    ]
    (out / "notes.txt").write_text("mine")  # the user adds a file: the folder is no longer the demo's alone
    result = _demo(args, expect=2)
    assert "notes.txt" in _one_error_line(result)
    assert (out / "notes.txt").read_text() == "mine" and (out / "results.npz").is_file()
    # an old-style output (results.json, no manifest) is not taken for the demo's either
    legacy = tmp_path / "legacy"
    legacy.mkdir()
    (legacy / "results.json").write_text("{}")
    (legacy / "thesis.tex").write_text("keep")
    _demo([tmp_path / "a.png", *_common(env, legacy), "--bbox", _box_str(BOX)], expect=2)
    assert (legacy / "thesis.tex").read_text() == "keep"


@pytest.mark.slow
def test_takeaways_boxes_meshes_frames_and_replay_without_the_network(env, tmp_path):
    video = _video(tmp_path / "clip.mp4", frames=4)
    out = tmp_path / "out"
    plain = tmp_path / "plain"
    _demo([video, *_common(env, plain), "--bbox", _box_str(BOX), "--no-draw-boxes"])
    _demo(
        [
            video,
            *_common(env, out),
            "--bbox",
            _box_str(BOX),
            "--export-mesh",
            "--save-frames",
            "--save-vertices",
        ]
    )
    res = np.load(out / "results.npz")
    summary = json.loads((out / "results.json").read_text())
    assert summary["outputs"]["boxes_drawn"] is True  # default on for videos
    assert res["bbox_source"].tolist() == ["given"] * 4 and summary["tracks"] == 1
    frames = sorted((out / "frames").iterdir())
    assert [p.name for p in frames] == [f"{i:06d}.png" for i in range(4)]
    # the box outline (drawn colour) is on the saved frame along the box's top edge, not on the plain run's
    boxed = cv2.imread(str(frames[0]))
    x, y, w, h = BOX
    edge = boxed[y, x + 5 : x + w - 5].astype(int)
    assert (np.abs(edge - (0, 200, 255)).sum(1) < 60).mean() > 0.8
    meshes = sorted((out / "meshes").glob("*.obj"))
    assert [p.name for p in meshes] == [f"{i:06d}_id0.obj" for i in range(4)]
    lines = meshes[0].read_text().splitlines()
    verts = np.array([[float(v) for v in line.split()[1:]] for line in lines if line.startswith("v ")])
    faces = np.array([[int(v) for v in line.split()[1:]] for line in lines if line.startswith("f ")])
    np.testing.assert_allclose(verts, res["vertices"][0] + res["transl"][0], atol=2e-5)  # original camera
    assert faces.min() == 1 and faces.max() == len(verts) and faces.shape[1] == 3
    # replay: same people and joints from results.npz alone (no --checkpoint, no network)
    again = tmp_path / "again"
    _demo([video, "--from-results", out / "results.npz", "--data-root", env["root"], "--device", "cpu",
           "--output", again, "--quiet", "--export-mesh"])  # fmt: skip
    res2 = np.load(again / "results.npz")
    for key in ("frame_index", "person_id", "bbox_xywh", "crop_center"):
        np.testing.assert_array_equal(res2[key], res[key])
    np.testing.assert_allclose(res2["keypoints2d_smpl49"], res["keypoints2d_smpl49"], atol=1e-2)
    assert len(list((again / "meshes").glob("*.obj"))) == 4
    assert json.loads((again / "results.json").read_text())["checkpoint"] is None


@pytest.mark.slow
@pytest.mark.parametrize(
    "name, size_wh",
    [("thumb.png", (96, 54)), ("dot.png", (2, 2)), ("panorama.png", (2400, 180)), ("thumb.avi", (96, 54))],
)
def test_tiny_inputs_do_not_crash_the_process_or_leave_temp_folders(env, tmp_path, name, size_wh):
    """OpenCV's HOG aborted the whole process (exit 134) on images below its window; run it for real."""
    target = tmp_path / name
    if name.endswith(".avi"):
        _video(target, frames=3, size_wh=size_wh, fourcc="MJPG")
    else:
        cv2.imwrite(
            str(target), _texture(1, size_wh[::-1]) if min(size_wh) > 8 else np.zeros((2, 2, 3), np.uint8)
        )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "demo", str(target), *[str(a) for a in _common(env, out)]],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert (out / "results.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["image", "video"])
def test_input_name_with_a_non_utf8_byte(env, tmp_path, kind):
    folder = os.fsencode(str(tmp_path))
    raw = folder + b"/clip\xff" + (b".png" if kind == "image" else b".mp4")
    if kind == "image":
        ok, data = cv2.imencode(".png", _texture(2))
        with open(raw, "wb") as handle:
            handle.write(data.tobytes())
    else:
        _video(tmp_path / "plain.mp4", frames=3)
        os.rename(os.fsencode(str(tmp_path / "plain.mp4")), raw)
    out = os.fsencode(str(tmp_path)) + b"/out\xff"
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "demo", raw, *[str(a) for a in _common(env, "X")][:-3], b"--output", out,
         "--bbox", _box_str(BOX), "--quiet"],
        capture_output=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    names = os.listdir(out)
    assert b"results.json" in names
    summary = json.loads(open(out + b"/results.json", "rb").read())
    assert summary["input"].endswith("clip\\xff" + (".png" if kind == "image" else ".mp4"))
    assert [n for n in os.listdir(os.fsencode(str(tmp_path))) if b".tmp-" in n] == []


def test_nan_checkpoint_is_refused(env, tmp_path):
    import torch

    state = torch.load(env["ckpt"], weights_only=True)
    weights = state.get("state_dict", state)
    key = next(k for k, v in weights.items() if torch.is_floating_point(v) and v.numel() > 1)
    weights[key] = torch.full_like(weights[key], float("nan"))
    bad = tmp_path / "nan.pth"
    torch.save(state, bad)
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    out = tmp_path / "out"
    result = _demo([tmp_path / "a.png", "--checkpoint", bad, "--data-root", env["root"], "--device", "cpu",
                    "--output", out, "--bbox", _box_str(BOX)], expect=1)  # fmt: skip
    line = _one_error_line(result)
    assert "nan" in line.lower() and str(bad) in line
    assert not out.exists()


@pytest.mark.slow
def test_openpose_bbox_file_crops_like_spin(env, tmp_path, shared_assets):
    out = tmp_path / "out"
    _demo(
        [
            shared_assets / "im1010.jpg",
            *_common(env, out),
            "--bbox-file",
            shared_assets / "im1010_openpose.json",
        ]
    )
    res = np.load(out / "results.npz")
    doc = json.loads((shared_assets / "im1010_openpose.json").read_text())
    flat = np.asarray(doc["people"][0]["pose_keypoints_2d"], float).reshape(-1, 3)
    good = flat[flat[:, 2] > 0.2, :2]  # SPIN demo.py: confident keypoints' mean and 1.2 x larger extent
    np.testing.assert_allclose(res["crop_center"][0], good.mean(0), atol=1e-3)
    assert res["crop_size"][0] == pytest.approx(1.2 * (good.max(0) - good.min(0)).max(), rel=1e-5)


@pytest.mark.slow
def test_box_mapping_that_matches_no_frame_is_an_error(env, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps({"b.png": [100, 40, 120, 160]}))
    out = tmp_path / "out"
    result = _demo([tmp_path / "a.png", *_common(env, out), "--bbox-file", boxes], expect=1)
    assert "matches no frame" in _one_error_line(result)
    assert not out.exists()


def test_unknown_detector_is_a_usage_error_listing_the_names(env, tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    result = _demo([tmp_path / "a.png", *_common(env, tmp_path / "out"), "--detector", "rcnn"], expect=2)
    assert "auto, yolox, hog, ssd, yolo" in _one_error_line(result)


def test_detector_weights_with_a_wrong_hash_say_how_to_fix(env, tmp_path):
    import shutil

    root = tmp_path / "root"
    shutil.copytree(env["root"], root, symlinks=True)
    (root / "detectors").mkdir(exist_ok=True)
    (root / "detectors" / "object_detection_yolox_2022nov.onnx").write_bytes(b"not the published weights")
    cv2.imwrite(str(tmp_path / "a.png"), _texture(4))
    out = tmp_path / "out"
    result = _demo([tmp_path / "a.png", "--checkpoint", env["ckpt"], "--data-root", root, "--device", "cpu",
                    "--output", out], expect=1)  # fmt: skip
    line = _one_error_line(result)
    assert "sha256" in line and "gtacli fetch detector --force" in line
    assert not out.exists()


@pytest.mark.slow
def test_video_undecodable_part_way_keeps_the_decoded_frames_and_names_the_frame(env, tmp_path):
    video = _video(tmp_path / "clip.avi", frames=12, fourcc="MJPG")
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])  # the second half (and the index) is gone
    out = tmp_path / "out"
    result = _demo([video, *_common(env, out), "--bbox", _box_str(BOX), "--no-render"], expect=1)
    line = _one_error_line(result)
    summary = json.loads((out / "results.json").read_text())
    kept = summary["frames"]
    assert 0 < kept < 12
    assert f"frame {kept} of 12 cannot be decoded" in line and str(out) in line
    assert np.load(out / "results.npz")["frame_index"].tolist() == list(range(kept))


@pytest.mark.slow
def test_max_frames_before_an_undecodable_part_is_no_error_and_names_the_real_frame(env, tmp_path):
    """--max-frames 2 on a video that breaks later: the frames asked for are there (exit 0); the note names
    the frame where the video breaks, not the last frame processed."""
    video = _video(tmp_path / "clip.avi", frames=12, fourcc="MJPG")
    data = video.read_bytes()
    video.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    _demo([video, *_common(env, out), "--bbox", _box_str(BOX), "--no-render", "--max-frames", "2"], expect=0)
    summary = json.loads((out / "results.json").read_text())
    assert summary["frames"] == 2
    broken = summary["frames_in_input"]
    assert 2 < broken < 12 and summary["decode_error"] == f"frame {broken} of 12 cannot be decoded"
    assert any(f"frame {broken} of 12 cannot be decoded" in note for note in summary["notes"])


@pytest.mark.slow
def test_overlays_drawn_in_parallel_are_written_in_frame_order(env, tmp_path, monkeypatch):
    """A chunk's overlays are drawn by several threads at once; the video must be the one a single thread
    writes, frame for frame (the frames differ: the texture moves)."""
    from video_frames import decoded_frames

    from gtacli.demo import output as demo_output

    video = _video(tmp_path / "clip.mp4", frames=7)
    decoded = {}
    for workers in (1, 3):
        monkeypatch.setattr(demo_output, "render_workers", lambda device, n=workers: n)
        out = tmp_path / f"w{workers}"
        _demo([video, *_common(env, out), "--bbox", _box_str(BOX), "--batch-size", "2"])
        decoded[workers] = decoded_frames(out / "overlay.mp4")
    assert len(decoded[1]) == 7
    assert not np.array_equal(decoded[1][0], decoded[1][1])
    np.testing.assert_array_equal(decoded[3], decoded[1])


@pytest.mark.slow
def test_an_overlay_that_fails_in_a_drawing_thread_stops_the_run_cleanly(env, tmp_path, monkeypatch):
    """Overlays are drawn and written by background threads: an error there still ends the run with an error,
    no output folder, no temporary folder and no thread left behind."""
    import threading

    from gtacli.demo import engine as demo_engine

    video = _video(tmp_path / "clip.mp4", frames=7)
    real = demo_engine.Engine.render
    calls = []

    def breaks_on_the_third_frame(self, frame, verts, Ks):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("renderer broke on its third frame")
        return real(self, frame, verts, Ks)

    monkeypatch.setattr(demo_engine.Engine, "render", breaks_on_the_third_frame)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["demo", str(video), *[str(a) for a in _common(env, out)],
                                      "--bbox", _box_str(BOX), "--batch-size", "2"])  # fmt: skip
    assert result.exit_code != 0
    assert "renderer broke" in result.stderr + result.stdout
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4"]
    assert not [t.name for t in threading.enumerate() if t.name.startswith("gtacli-")]
