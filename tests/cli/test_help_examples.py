"""Every `--help` example runs as written (issue 23): from a clone-like folder whose default data root `data/` is
the synthetic sample tree, with the user's own files the examples name (photo.jpg, clip.mp4, model.pth, ...).

The examples are parsed out of each command's help, never copied here, so a new or edited example is run too.
Examples that need the network, licensed files or GPUs are skipped with their reason (NEEDS); training and the
default quickstart are started and stopped with SIGINT once they are under way (a resumable stop, exit 130), so
the next example (`--resume`) continues what the previous one started.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import pytest
import torch
from interrupts import sigint_as_default

from gtacli.cli.app import COMMANDS, app

pytestmark = pytest.mark.slow

# run in this order: later examples use what earlier ones wrote (a run to resume, a checkpoint to evaluate)
ORDER = [
    "sample-data",
    "check-layout",
    "quickstart",
    "finetune",
    "train",
    "eval",
    "export",
    "fit",
    "demo",
    "fetch",
]
NO_CUDA = None if torch.cuda.is_available() else "needs a CUDA GPU"


def _needs(example: str) -> Optional[str]:
    """Why an example cannot run offline on the sample tree (None: it runs)."""
    if example.startswith("torchrun "):
        return "needs several GPUs (torchrun)"
    if example.startswith("gtacli fetch "):
        if "--smpl-from" in example:
            return "needs the licensed SMPL download"
        if "--verify-only" in example:
            return "verifies downloaded files against their published hashes (the sample tree is generated)"
        return "downloads (network)"
    if "data/models/resnet50_spin_gta_ft" in example:
        return "needs the released model (`gtacli fetch`, network)"
    if example.startswith("gtacli train") and ("--init imagenet" in example or "runs/spin " in example + " "):
        return "needs torchvision's ImageNet weights (`gtacli fetch resnet50_imagenet`, network)"
    if "--device cuda" in example:
        return NO_CUDA
    return None


# examples that train (or build a 0.5 GB tree) for long: stopped with SIGINT once this appears on stderr
def _stop_marker(example: str) -> Optional[str]:
    if example.startswith(("gtacli finetune", "gtacli train")):
        return "steps/epoch"
    if example.split("#")[0].strip() == "gtacli quickstart":
        return "[quickstart] sample-data"
    return None


def help_examples() -> List[Tuple[str, str]]:
    """(command, example line) for every command, from its help text, comments removed."""
    found = []
    commands = {name: (module, attr) for name, module, attr in COMMANDS}
    for name in ORDER:
        module, attr = commands.pop(name)
        import importlib

        doc = getattr(importlib.import_module(f"gtacli.cli.{module}"), attr).__doc__ or ""
        lines = [line.strip() for line in doc.splitlines()]
        assert "Examples:" in lines, f"gtacli {name} --help has no examples"
        for line in lines[lines.index("Examples:") + 1 :]:
            if line:
                found.append((name, line.split("  #")[0].strip()))
    assert not commands, f"add {sorted(commands)} to ORDER"
    return found


def test_every_help_example_is_parsed_from_the_help_the_user_sees():
    from typer.testing import CliRunner

    examples = help_examples()
    assert len(examples) >= 25
    for name in ORDER:
        result = CliRunner().invoke(app, [name, "--help"], env={"COLUMNS": "250"})
        shown = " ".join(result.output.split())
        for command, example in examples:
            if command == name:
                assert " ".join(example.split()) in shown, (name, example)


def _user_files(work: Path, root: Path) -> None:
    """The user's own files the examples name: photos, a clip, a folder of frames, a model, OpenPose output."""
    import cv2

    frames = sorted((root / "datasets" / "pw3d").rglob("*.jpg"))
    shutil.copyfile(frames[0], work / "photo.jpg")
    shutil.copyfile(frames[0], work / "im1010.jpg")
    height, width = cv2.imread(str(frames[0])).shape[:2]
    (work / "im1010_bbox.json").write_text(
        json.dumps({"bbox": [width * 0.2, height * 0.1, width * 0.6, height * 0.8]})
    )
    (work / "frames").mkdir()
    for index, frame in enumerate(frames[:2]):
        shutil.copyfile(frame, work / "frames" / f"frame_{index}.jpg")
    _clip(work / "clip.mp4", frames[:4])
    (work / "clips").mkdir()  # a collection: a folder of videos, and a list of inputs
    for name in ("walk.mp4", "run.mp4"):
        shutil.copyfile(work / "clip.mp4", work / "clips" / name)
    (work / "list.txt").write_text("# one input per line\nclip.mp4\nphoto.jpg\n")
    shutil.copyfile(root / "pretrained_models" / "spin_official.pth", work / "model.pth")
    # OpenPose --write_json output for a few photos: BODY_25 keypoints are the first 25 smpl_49 slots
    data = np.load(root / "preprocessed_datasets" / "spin_coco_2014_train.npz", allow_pickle=True)
    # im1010.jpg as SPIN's demo ships it: a photo with its OpenPose file (the --refine example reads it)
    shutil.copyfile(root / "datasets" / "coco" / str(data["image_path"][0]), work / "im1010.jpg")
    (work / "im1010_openpose.json").write_text(
        json.dumps(
            {"people": [{"pose_keypoints_2d": data["keypoints2d"][0][:25].astype(float).ravel().tolist()}]}
        )
    )
    height, width = cv2.imread(str(work / "im1010.jpg")).shape[:2]
    (work / "im1010_bbox.json").write_text(
        json.dumps({"bbox": [width * 0.2, height * 0.1, width * 0.6, height * 0.8]})
    )
    (work / "photos" / "keypoints").mkdir(parents=True)
    for image_path, keypoints in zip(data["image_path"][:2], data["keypoints2d"][:2]):
        name = Path(str(image_path)).stem
        shutil.copyfile(root / "datasets" / "coco" / str(image_path), work / "photos" / f"{name}.jpg")
        people = [{"pose_keypoints_2d": keypoints[:25].astype(float).ravel().tolist()}]
        (work / "photos" / "keypoints" / f"{name}_keypoints.json").write_text(json.dumps({"people": people}))


def _clip(path: Path, frames: List[Path]) -> None:
    """A short video with a person: the first frames of ../shared/assets' real single-person video, downscaled,
    when present (OpenCV's HOG detector finds real people, not the sample tree's mannequin); else sample frames."""
    import cv2

    shared = Path(
        os.environ.get("GTACLI_SHARED_ASSETS", Path(__file__).resolve().parents[3] / "shared" / "assets")
    )
    real = shared / "single_person_demo.mp4"
    images = []
    if real.is_file():
        cap = cv2.VideoCapture(str(real))
        while len(images) < 12:
            ok, frame = cap.read()
            if not ok:
                break
            images.append(cv2.resize(frame, (270, 480), interpolation=cv2.INTER_AREA))
        cap.release()
    if not images:
        first = cv2.imread(str(frames[0]))
        images = [cv2.resize(cv2.imread(str(f)), first.shape[1::-1]) for f in frames]
    height, width = images[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 10.0, (width, height))
    for image in images:
        writer.write(image)
    writer.release()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Dict[str, object]:
    """A folder laid out as a fresh clone: `data/` is the sample tree (the default data root)."""
    from gtacli.sample.tree import build_sample_tree

    work = tmp_path_factory.mktemp("clone")
    build_sample_tree(work / "data", size="tiny", seed=0)
    _user_files(work, work / "data")
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTACLI_")}
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")  # this gtacli first
    env["OMP_NUM_THREADS"] = "1"
    return {"cwd": work, "env": env}


def _run(example: str, cwd: Path, env: Dict[str, str]) -> Tuple[int, str]:
    """Run one example line in bash; SIGINT once a long one is under way. (exit code, stderr)."""
    proc = subprocess.Popen(
        ["bash", "-c", example], cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        start_new_session=True, preexec_fn=sigint_as_default,
    )  # fmt: skip
    marker = _stop_marker(example)
    lines: List[str] = []
    try:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)
            if marker and marker in line:
                os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C: the whole foreground group
                marker = None
        proc.wait(timeout=600)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc.returncode, "".join(lines)


@pytest.mark.parametrize(
    "command,example", help_examples(), ids=[f"{c}:{i}" for i, (c, _) in enumerate(help_examples())]
)
def test_help_example_runs_as_written(clone, command, example):
    reason = _needs(example)
    if reason:
        pytest.skip(f"`{example}` {reason}")
    if "--from-results" in example and "--export-animation" in example:
        saved = np.load(clone["cwd"] / "out" / "clip" / "results.npz")
        if not len(saved["person_id"]):
            pytest.skip(
                f"`{example}`: the clip has no person the detector finds (real clip: ../shared/assets)"
            )
    code, stderr = _run(example, clone["cwd"], clone["env"])
    expected = (130,) if _stop_marker(example) else (0,)
    assert code in expected, f"`{example}` exited {code}:\n{stderr[-3000:]}"
    assert "Traceback" not in stderr, stderr[-3000:]
