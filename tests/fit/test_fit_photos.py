"""`gtacli fit --images DIR` without OpenPose (issue 21 item 4): people from a detector, keypoints from the
RTMPose-layout model (hand-built here: it places a standing person's COCO-17 keypoints in every crop), then
the same fit as OpenPose files get."""

from __future__ import annotations

import json
import shutil
import sys
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from onnx_bytes import rtmpose_like_model  # noqa: E402

from gtacli.assets.manifest import load_manifest  # noqa: E402
from gtacli.cli.app import app  # noqa: E402
from gtacli.demo.detect import Detections  # noqa: E402
from gtacli.demo.keypoints import KeypointModel, people_in_images  # noqa: E402
from gtacli.fit.runner import FitOptions, fit_people  # noqa: E402
from gtacli.layout import DataLayout  # noqa: E402

# a standing person facing the camera in the 192 x 256 input (COCO-17 order; the person's left is image right)
STANDING = [
    (96, 40), (102, 35), (90, 35), (108, 38), (84, 38), (118, 70), (74, 70), (124, 108), (68, 108),
    (128, 142), (64, 142), (108, 140), (84, 140), (110, 188), (82, 188), (111, 232), (81, 232),
]  # fmt: skip


class FixedBoxDetector:
    """The detector's interface with one known person box (the detector has its own tests)."""

    def __init__(self, box):
        self.box = np.asarray([box], float)

    def __call__(self, frame):
        return Detections(self.box, np.ones(1))

    def describe(self):
        return {"name": "fixed box"}


@pytest.fixture()
def photo_layout(fit_layout, tmp_path) -> DataLayout:
    layout = DataLayout(tmp_path / "data")
    shutil.copytree(fit_layout.root, layout.root)
    return layout


def _photos(folder: Path) -> Path:
    folder.mkdir()
    cv2.imwrite(str(folder / "a.jpg"), np.full((480, 360, 3), 90, np.uint8))
    (folder / "notes.txt").write_text("not a photo")
    return folder


def _install_model(layout: DataLayout) -> Path:
    dest = load_manifest().get("keypoints").path(layout.root)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(dest, "w") as zf:
        zf.writestr("rtmpose/end2end.onnx", rtmpose_like_model(peaks=STANDING))
    return dest


def test_people_found_by_the_keypoint_model_are_fitted(photo_layout, tmp_path):
    model = KeypointModel(_install_model(photo_layout), "opencv")
    photos = _photos(tmp_path / "photos")
    found = people_in_images([photos / "a.jpg"], FixedBoxDetector([100, 60, 150, 360]), model)
    assert len(found.frames) == 1 and found.frames[0].keypoints.shape == (1, 25, 3)
    assert (found.outside, found.non_finite) == (0, 0)
    out = tmp_path / "fits"
    out.mkdir()
    options = FitOptions(iterations=10)
    report = fit_people(photo_layout, found.frames, out, options, overlay=lambda image, *a, **k: image)
    assert report.payload["fitted"] == 1
    fits = np.load(out / "fits.npz")
    assert (
        fits["pose"].shape == (1, 72)
        and np.isfinite(fits["pose"]).all()
        and fits["fitted"].tolist() == [True]
    )
    assert (out / "a_fit.jpg").is_file()
    person = report.samples[0]
    assert person["row"] == "fit" and person["reprojection_px_image"] is not None


def test_fit_images_without_openpose_needs_the_keypoint_model(photo_layout, tmp_path):
    photos = _photos(tmp_path / "photos")
    args = [
        "fit",
        "--images",
        str(photos),
        "--output",
        str(tmp_path / "out"),
        "--data-root",
        str(photo_layout.root),
    ]
    missing = CliRunner().invoke(app, args)
    assert missing.exit_code == 1 and "gtacli fetch keypoints" in missing.output
    assert len(missing.output.strip().splitlines()) == 1
    _install_model(photo_layout)
    nobody = CliRunner().invoke(app, [*args, "--device", "cpu"])  # HOG finds nobody on a flat grey photo
    assert nobody.exit_code == 1 and "nothing to fit" in nobody.output, nobody.output
    lock = photo_layout.lock_file
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text(json.dumps({"files": {"keypoints": {"sha256": "0" * 64}}}))
    changed = CliRunner().invoke(app, [*args, "--device", "cpu"])
    assert changed.exit_code == 1 and "gtacli fetch keypoints --force" in changed.output
