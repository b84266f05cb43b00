"""`gtacli demo --export-animation`: bad input is one line with the fix and nothing written; a single image
gives a one-frame animation; without an SMPL file --no-mesh still exports the skeleton from saved results."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from gtacli.cli.app import app

WIDTH, HEIGHT, FPS = 320, 240, 12.0
BOX = "90,30,140,200"


def _demo(*args, expect=0):
    result = CliRunner().invoke(app, ["demo", *[str(a) for a in args]], catch_exceptions=False)
    assert result.exit_code == expect, result.stderr[-3000:] + result.stdout[-2000:]
    return result


def _video(path: Path, frames: int, size=(WIDTH, HEIGHT)) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), FPS, size)
    for i in range(frames):
        writer.write(np.full((size[1], size[0], 3), 40 + i, np.uint8))
    writer.release()
    return path


@pytest.fixture(scope="module")
def saved(sample_tree, tmp_path_factory):
    """A 6-frame video and the results.npz of a demo run on it (one person, --bbox)."""
    tmp = tmp_path_factory.mktemp("anim_errors")
    video = _video(tmp / "clip.mp4", 6)
    ckpt = sample_tree / "pretrained_models" / "spin_official.pth"
    _demo(video, "--checkpoint", ckpt, "--data-root", sample_tree, "--device", "cpu", "--bbox", BOX,
          "--no-render", "--quiet", "-o", tmp / "run")  # fmt: skip
    return {"video": video, "results": tmp / "run" / "results.npz", "root": sample_tree, "tmp": tmp}


def _one_line_error(result, *needles):
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _from_results(saved, out, *extra, results=None, video=None, expect=0):
    return _demo(video or saved["video"], "--from-results", results or saved["results"], "--export-animation",
                 "--data-root", saved["root"], "--device", "cpu", "--quiet", "-o", out, *extra, expect=expect)  # fmt: skip


@pytest.mark.slow
def test_results_of_another_video_are_refused_unless_force(saved, tmp_path):
    longer = _video(tmp_path / "longer.mp4", 9)
    result = _from_results(saved, tmp_path / "out", video=longer, expect=1)
    _one_line_error(result, "results.npz", "holds 6 frames", "has 9", "--force")
    assert not (tmp_path / "out").exists()
    bigger = _video(tmp_path / "bigger.mp4", 6, size=(400, 240))
    result = _from_results(saved, tmp_path / "out", video=bigger, expect=1)
    _one_line_error(result, "320x240", "400x240", "another input")
    _from_results(saved, tmp_path / "forced", "--force", video=longer)
    summary = json.loads((tmp_path / "forced" / "results.json").read_text())
    assert summary["animation"]["tracks"] == [0]


@pytest.mark.slow
@pytest.mark.parametrize("drop, needle", [("smpl_pose", "smpl_pose"), ("people", "holds no person")])
def test_results_without_parameters_or_tracks(saved, tmp_path, drop, needle):
    data = dict(np.load(saved["results"]))
    if drop == "people":
        n = len(data["person_id"])
        data = {k: (v[:0] if np.ndim(v) and len(v) == n else v) for k, v in data.items()}
    else:
        data.pop(drop)
    bad = tmp_path / "bad.npz"
    np.savez(bad, **data)
    result = _from_results(saved, tmp_path / "out", results=bad, expect=1)
    _one_line_error(result, "bad.npz", needle)
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_output_folder_with_other_files_is_refused(saved, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = _from_results(saved, out, expect=2)
    _one_line_error(result, "mine.txt")
    assert sorted(p.name for p in out.iterdir()) == ["mine.txt"]


@pytest.mark.slow
def test_no_smpl_file_names_the_import_and_no_mesh_still_works(saved, tmp_path):
    empty_root = tmp_path / "data"
    empty_root.mkdir()
    result = _demo(saved["video"], "--from-results", saved["results"], "--export-animation", "--data-root",
                   empty_root, "--quiet", "-o", tmp_path / "out", expect=1)  # fmt: skip
    _one_line_error(result, "SMPL_NEUTRAL.pkl", "gtacli fetch --smpl-from")
    assert not (tmp_path / "out").exists()
    _demo(saved["video"], "--from-results", saved["results"], "--export-animation", "--no-mesh", "--data-root",
          empty_root, "--quiet", "-o", tmp_path / "skeleton")  # fmt: skip
    summary = json.loads((tmp_path / "skeleton" / "results.json").read_text())
    files = {e["file"]: e for e in summary["animation"]["files"]}
    assert set(files) == {"animation/track_0.glb", "animation/track_0.bvh", "animation/track_0.npz"}
    assert not files["animation/track_0.glb"]["mesh"] and summary["animation"]["licence"] is None
    from gtacli.export.bvh import read_bvh

    assert len(read_bvh(tmp_path / "skeleton" / "animation" / "track_0.bvh").motion) == 6


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--pose-correctives"], "--pose-correctives applies to --export-animation"),
        (["--export-animation", "--up", "x"], "--up 'x'"),
        (["--export-animation", "--pose-correctives", "--no-mesh"], "--pose-correctives needs the mesh"),
    ],
)
def test_option_mistakes_are_usage_errors(tmp_path, args, needle):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.zeros((8, 8, 3), np.uint8))
    result = _demo(image, "--from-results", tmp_path / "none.npz", *args, "-o", tmp_path / "o", expect=2)
    _one_line_error(result, needle)


@pytest.mark.slow
def test_single_image_writes_a_one_frame_animation(sample_tree, tmp_path):
    image = tmp_path / "person.png"
    cv2.imwrite(str(image), np.full((HEIGHT, WIDTH, 3), 90, np.uint8))
    ckpt = sample_tree / "pretrained_models" / "spin_official.pth"
    _demo(image, "--checkpoint", ckpt, "--data-root", sample_tree, "--device", "cpu", "--bbox", BOX,
          "--export-animation", "--up", "z", "--quiet", "-o", tmp_path / "out")  # fmt: skip
    summary = json.loads((tmp_path / "out" / "results.json").read_text())
    glb = next(e for e in summary["animation"]["files"] if e["file"] == "animation/track_0.glb")
    assert glb["frame_count"] == 1 and glb["frame_range"] == [0, 0] and glb["up_axis"] == "z"
    data = np.load(tmp_path / "out" / "animation" / "track_0.npz")
    assert data["poses"].shape == (1, 72) and str(data["up_axis"]) == "z"
