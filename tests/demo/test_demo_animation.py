"""`gtacli demo --export-animation` end to end, and the programs people open the files with.

The tiny tree's checkpoint always predicts the mean body, so the motion comes from a first run's results.npz
whose poses are replaced by moving ones (two people, one with a gap of three frames); `--from-results` then
re-renders them on a black 640x480 video (the overlay is the silhouette) and exports. References are the demo's
own numbers: `keypoints3d_smpl24 + transl` and `vertices + transl` of the re-rendered results.npz (constant
shape per person and constant boxes, so one camera and one shape per track are exactly the demo's).

Viewer checks skip with the reason when node + gltf-validator, Blender or Chromium + three.js are missing
(benchmarks/export_check/viewer_checks.py says how to install them).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gtacli.body.rotations import matrix_to_axis_angle_np, rot_x, rot_y
from gtacli.cli.app import app
from gtacli.export.rig import SMPL_JOINT_NAMES
from gtacli.export.rotations import scene_frames

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "benchmarks" / "export_check"))
import viewer_checks as checks  # noqa: E402

WIDTH, HEIGHT, FPS, FRAMES = 640, 480, 12.0, 16
BOXES = ([60, 40, 220, 400], [360, 60, 200, 380])
GAP = (5, 6, 7)  # frames where person 0 is missing
MM = 1e-3
BLENDER_Y = np.array([[1.0, 0, 0], [0, 0, -1], [0, 1, 0]])  # Blender's importers turn y up into z up


def _demo(*args, expect=0):
    result = CliRunner().invoke(app, ["demo", *[str(a) for a in args]], catch_exceptions=False)
    assert result.exit_code == expect, result.stderr[-3000:] + result.stdout[-2000:]
    return result


def _black_video(path: Path, frames: int = FRAMES, size=(WIDTH, HEIGHT)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for _ in range(frames):
        writer.write(np.zeros((size[1], size[0], 3), np.uint8))
    writer.release()
    return path


def _moving(results: dict) -> dict:
    """Replace the predicted poses with moving ones and drop person 0 from the GAP frames."""
    out = dict(results)
    rng = np.random.default_rng(3)
    betas = {0: rng.normal(0, 0.8, 10), 1: rng.normal(0, 0.8, 10)}
    poses = []
    for f, pid in zip(results["frame_index"], results["person_id"]):
        phase = 0.3 * f + 2 * pid
        root = rot_x(np.pi) @ rot_y(0.8 * np.sin(phase)) @ rot_x(0.1 * np.cos(phase))
        body = 0.3 * np.sin(phase + np.random.default_rng(pid).uniform(0, 6.3, (23, 3)))
        body[[3, 4], 0] = 1.0 + 0.3 * np.sin(phase)  # knees
        poses.append(np.concatenate([matrix_to_axis_angle_np(root)[None], body]).reshape(72))
    out["smpl_pose"] = np.array(poses, np.float32)
    out["betas"] = np.array([betas[int(p)] for p in results["person_id"]], np.float32)
    keep = ~((results["person_id"] == 0) & np.isin(results["frame_index"], GAP))
    n = len(keep)
    return {k: (v[keep] if np.ndim(v) and len(v) == n else v) for k, v in out.items()}


@pytest.fixture(scope="module")
def runs(sample_tree, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("demo_animation")
    video = _black_video(tmp / "clip.mp4")
    boxes = tmp / "boxes.json"
    boxes.write_text(json.dumps([list(BOXES)] * FRAMES))
    common = ["--data-root", sample_tree, "--device", "cpu", "--quiet", "--no-draw-boxes"]
    ckpt = sample_tree / "pretrained_models" / "spin_official.pth"
    _demo(video, *common, "--checkpoint", ckpt, "--bbox-file", boxes, "--no-render", "-o", tmp / "first")
    first = dict(np.load(tmp / "first" / "results.npz"))
    np.savez(tmp / "moving.npz", **_moving(first))
    out = {"video": video, "moving": tmp / "moving.npz", "common": common, "tmp": tmp}
    for name, extra in (("y", []), ("z", ["--up", "z"]), ("exact", ["--pose-correctives"])):
        folder = tmp / name
        _demo(video, *common, "--from-results", tmp / "moving.npz", "--export-animation", "--save-frames",
              "--save-vertices", *extra, "-o", folder)  # fmt: skip
        out[name] = folder
    return out


def _saved(folder: Path):
    data = np.load(folder / "results.npz")
    summary = json.loads((folder / "results.json").read_text())
    return data, summary


def _reference(data, summary, pid: int, field: str):
    """{frame: (J, 3)} of a saved body-model-frame field + transl, for one person, seen by the export's one
    camera: the demo's per-person focal f_i (crop side) becomes the video's F, the depth scales by F / f_i."""
    focal = summary["animation"]["camera"]["focal_px"]
    rows = np.flatnonzero(data["person_id"] == pid)
    scale = np.array([1.0, 1.0, 0.0])
    return {
        int(data["frame_index"][r]): data[field][r]
        + data["transl"][r] * (scale + [0, 0, focal / data["focal_length"][r]])
        for r in rows
    }


@pytest.mark.slow
def test_results_json_lists_the_files_and_the_filled_frames(runs):
    data, summary = _saved(runs["y"])
    animation = summary["animation"]
    files = {e["file"]: e for e in animation["files"]}
    assert set(files) == {f"animation/track_{p}.{x}" for p in (0, 1) for x in ("glb", "bvh", "npz")}
    for name in files:
        assert (runs["y"] / name).is_file()
    glb = files["animation/track_0.glb"]
    assert glb["track"] == 0 and glb["frame_range"] == [0, FRAMES - 1] and glb["frame_rate"] == FPS
    assert glb["filled_frames"] == list(GAP) and glb["up_axis"] == "y" and glb["units"] == "metres"
    assert glb["mesh"] and not glb["pose_correctives"]
    assert "SMPL_NEUTRAL.pkl" in animation["licence"]
    manifest = json.loads((runs["y"] / ".gtacli-demo.json").read_text())["files"]
    assert "animation/track_0.glb" in manifest  # a rerun into the folder replaces them like the rest
    assert data["keypoints3d_smpl24"].shape == (len(data["person_id"]), 24, 3)


@pytest.mark.slow
@pytest.mark.parametrize("up", ["y", "z"])
def test_bvh_joints_equal_the_demo_joints(runs, up):
    from gtacli.export.bvh import read_bvh

    data, summary = _saved(runs[up])
    U, _ = scene_frames(up)
    for pid in (0, 1):
        ref = _reference(data, summary, pid, "keypoints3d_smpl24")
        bvh = read_bvh(runs[up] / "animation" / f"track_{pid}.bvh")
        first = min(ref)
        fk = bvh.joint_positions()[:, [bvh.names.index(n) for n in SMPL_JOINT_NAMES]]
        worst = max(np.abs(fk[f - first] - ref[f] @ U.T).max() for f in ref)
        assert worst < MM


@pytest.mark.slow
def test_gltf_validator_reports_no_error(runs):
    reason = checks.validator_missing()
    if reason:
        pytest.skip(reason)
    files = sorted(p for name in ("y", "z", "exact") for p in (runs[name] / "animation").glob("*.glb"))
    reports = checks.validate_gltf(files)
    assert len(reports) == 6
    assert all(r["errors"] == 0 for r in reports), reports


@pytest.mark.slow
def test_blender_imports_joints_mesh_and_frame_rate(runs):
    reason = checks.blender_missing()
    if reason:
        pytest.skip(reason)
    data, summary = _saved(runs["exact"])
    U, _ = scene_frames("y")
    to_blender = BLENDER_Y @ U
    ref = _reference(data, summary, 0, "keypoints3d_smpl24")
    verts = _reference(data, summary, 0, "vertices")
    frames = [0, 9, FRAMES - 1]
    animation = runs["exact"] / "animation"
    got = checks.blender_import(
        glb=animation / "track_0.glb", bvh=animation / "track_0.bvh", frames=frames, mesh_frame=9
    )
    expect = np.array([ref[f] for f in frames]) @ to_blender.T
    assert np.abs(got["glb_joints"] - expect).max() < MM
    assert np.abs(got["bvh_joints"] - expect).max() < MM
    assert np.abs(got["glb_vertices"] - verts[9] @ to_blender.T).max() < MM
    assert got["glb_shape_keys"] == 208  # basis + 207 correctives
    assert list(got["glb_keys"]) == [0, FRAMES - 1]  # keys on the video's frames at the video's rate
    assert got["bvh_fps"] == pytest.approx(FPS) and list(got["bvh_keys"]) == [1, FRAMES]
    assert got["glb_cameras"] == 1


@pytest.mark.slow
def test_threejs_silhouette_matches_the_overlay(runs):
    reason = checks.chromium_missing()
    if reason:
        pytest.skip(reason)
    frame = 9
    overlay = cv2.imread(str(runs["y"] / "frames" / f"{frame:06d}.png"))
    assert overlay is not None, sorted(p.name for p in (runs["y"] / "frames").iterdir())[:3]
    demo_mask = overlay.max(axis=2) > 20  # the input is black: every drawn pixel is the mesh
    union = np.zeros_like(demo_mask)
    for pid in (0, 1):
        mask, info = checks.threejs_silhouette(
            runs["y"] / "animation" / f"track_{pid}.glb", frame / FPS, WIDTH, HEIGHT
        )
        assert info["meshes"] == 1 and info["cameras"] == 1
        union |= mask
    assert checks.iou(union, demo_mask) >= 0.95


@pytest.mark.slow
def test_blender_imports_an_up_z_bvh_with_forward_y_up_z(runs):
    """README: a --up z BVH imports with axes Forward Y, Up Z, and then needs no turn at all."""
    reason = checks.blender_missing()
    if reason:
        pytest.skip(reason)
    data, summary = _saved(runs["z"])
    U, _ = scene_frames("z")
    ref = _reference(data, summary, 1, "keypoints3d_smpl24")
    frames = [0, 8, FRAMES - 1]
    got = checks.blender_import(bvh=runs["z"] / "animation" / "track_1.bvh", frames=frames, bvh_up="z")
    assert np.abs(got["bvh_joints"] - np.array([ref[f] for f in frames]) @ U.T).max() < MM
