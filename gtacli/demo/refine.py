"""`gtacli demo --refine`: the network's bodies refined by the person's own 2D keypoints (SPIN's and EFT's
test-time fitting), with a temporal term along a video's tracks.

* keypoints: an OpenPose JSON per image/frame (`--keypoints DIR`, or the OpenPose file given as `--bbox-file`),
  or the keypoint model of `gtacli fetch keypoints` run on each person's box (`gtacli.demo.keypoints`). A
  frame's OpenPose people are matched to the demo's people by the confidence of their keypoints inside each
  person's box (greedy, most first); keypoints outside the image or non-finite are ignored and counted.
* the fit: gtacli's fitter (`gtacli.fit.smplify_gtacli`, SPIN's objective) from the network's prediction
  (pose, betas, crop-camera translation), in the person's demo crop. A network's start keeps its facing
  direction unless its torso contradicts the keypoints (`gtacli.fit.camera_init`). The last third of its
  steps lower the learning rate towards 0 (`REFINE_LR_DECAY`), so each frame's fit settles at its optimum
  instead of stopping anywhere in Adam's step-sized band around it (which reads as jitter along a video).
* the temporal term (videos): `temporal_weight · Σ_j ‖(J_t − J_t−1) · TEMPORAL_PX_PER_M‖²` over the smpl_49
  joints relative to the pelvis, between consecutive frames of a track (across chunk boundaries too: the last
  refined frame of a track is kept). The scale turns metres into crop pixels at the network's usual depth, so
  the weight compares with the keypoint term's pixels.
* what is kept: the refined body replaces the network's in the outputs (rendered, exported); results.npz keeps
  the network's parameters too and the 2D error of both per person (`RESULT_FIELDS` `network_*`,
  `reprojection_px_*`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES, cam_to_translation
from gtacli.body.conventions import TRAIN_PELVIS_PAIR
from gtacli.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from gtacli.data.openpose import OpenPoseFrame, read_openpose, to_smpl49
from gtacli.demo.config import Person
from gtacli.demo.keypoints import KeypointModel
from gtacli.errors import BadFileError, MissingFileError, UsageError
from gtacli.fit.batch import clean_keypoints, reprojection_px
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.methods import build_fitter
from gtacli.fit.runner import OPENPOSE_SUFFIXES, crop_keypoints
from gtacli.model.predict import CropPredictions

DEFAULT_TEMPORAL_WEIGHT = 1.0  # --refine-smooth
# the fit's last third of Adam steps with a falling learning rate (`RegistrationConfig.one_stage_lr_decay`):
# at a constant rate each frame's fit stops somewhere in a ~lr-wide band around its optimum, which is jitter
# between frames that no temporal weight removes (tests/demo/test_demo_refine.py, benchmarks/results/refine.json)
REFINE_LR_DECAY = 1.0 / 3.0
TEMPORAL_PX_PER_M = 100.0  # 1 cm of joint motion ~ 1 crop pixel at the crop camera's usual ~50 m depth
MIN_MATCH_CONFIDENCE = 1.0  # an OpenPose person needs this much summed confidence inside a person's box
REFINE_FIELDS = {
    "refined": ("(N,) bool", "--refine: the entry's body was refined by its keypoints"),
    "network_smpl_pose": ("(N,72) float32", "--refine: the network's pose before refinement"),
    "network_betas": ("(N,10) float32", "--refine: the network's betas"),
    "network_pred_cam": ("(N,3) float32", "--refine: the network's weak-perspective camera"),
    "reprojection_px_network": ("(N,) float32", "--refine: mean 2D error (image px) of the network's body"),
    "reprojection_px_refined": ("(N,) float32", "--refine: mean 2D error (image px) of the refined body"),
}


# ----------------------------------------------------------------------------------------------- sources
class OpenPoseKeypoints:
    """OpenPose JSON keypoints: one file for every frame, or a folder with a file per frame (matched by the
    frame's name, stem or index, with OpenPose's `_keypoints` suffix or SPIN's `_openpose` dropped)."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.matched = 0
        self.every_frame: Optional[OpenPoseFrame] = None
        self.by_key: Dict[str, Path] = {}
        if self.path.is_file():
            self.every_frame = read_openpose(self.path)
        elif self.path.is_dir():
            for file in sorted(self.path.glob("*.json")):
                stem = file.stem
                for suffix in OPENPOSE_SUFFIXES:
                    if stem.endswith(suffix):
                        stem = stem[: -len(suffix)]
                self.by_key[stem] = file
            if not self.by_key:
                raise MissingFileError(
                    "no OpenPose .json files in this folder",
                    path=self.path,
                    fix="point --keypoints at OpenPose's --write_json folder",
                )
        else:
            raise MissingFileError(
                "keypoints not found", path=self.path, fix="check the path given to --keypoints"
            )

    def candidates(self, index: int, name: str) -> OpenPoseFrame:
        """The frame's people, BODY_25 keypoints (P, 25, 3) (none when no file matches it)."""
        if self.every_frame is not None:
            self.matched += 1
            return self.every_frame
        stem = Path(name).stem
        keys = [stem, name, str(index), f"{index:06d}", f"{index:012d}"]
        if stem.isdigit():
            keys.append(str(int(stem)))
        for key in keys:
            if key in self.by_key:
                self.matched += 1
                return read_openpose(self.by_key[key])
        return OpenPoseFrame(np.zeros((0, 25, 3)), "none")

    def check_matched(self) -> None:
        if self.matched == 0:
            raise BadFileError(
                "the keypoint files match no frame of the input",
                path=self.path,
                fix='name them as the frames (image stems, or "000000", "000001", ... for a video\'s frames)',
            )

    def describe(self) -> Dict[str, Any]:
        return {"keypoints": str(self.path), "kind": "OpenPose JSON"}


def match_people(boxes_xywh: np.ndarray, candidates: np.ndarray) -> List[Optional[int]]:
    """For each box, the candidate (P, 25, 3) with the most confidence inside it (each used once)."""
    boxes = np.asarray(boxes_xywh, np.float64).reshape(-1, 4)
    if not len(boxes) or not len(candidates):
        return [None] * len(boxes)
    xy, conf = candidates[..., :2], np.nan_to_num(candidates[..., 2])
    score = np.zeros((len(boxes), len(candidates)))
    for b, (x, y, w, h) in enumerate(boxes):
        inside = (xy[..., 0] >= x) & (xy[..., 0] <= x + w) & (xy[..., 1] >= y) & (xy[..., 1] <= y + h)
        score[b] = (conf * inside).sum(-1)
    chosen: List[Optional[int]] = [None] * len(boxes)
    for flat in np.argsort(-score, axis=None):
        b, c = np.unravel_index(flat, score.shape)
        if score[b, c] < MIN_MATCH_CONFIDENCE:
            break
        if chosen[b] is None and c not in chosen:
            chosen[b] = int(c)
    return chosen


@dataclass
class KeypointCounts:
    """What the keypoint stage ignored, summed over the run."""

    outside: int = 0
    non_finite: int = 0
    people_without: int = 0

    def notes(self) -> List[str]:
        lines = []
        if self.outside or self.non_finite:
            lines.append(
                f"--refine: {self.outside} keypoint(s) outside the image and {self.non_finite} non-finite were ignored"
            )
        if self.people_without:
            lines.append(
                f"--refine: {self.people_without} person entr(ies) had no keypoints and were not refined"
            )
        return lines


def keypoints_for_people(
    source: Any, index: int, name: str, frame: np.ndarray, people: Sequence[Person], counts: KeypointCounts
) -> List[Optional[np.ndarray]]:
    """BODY_25 keypoints (25, 3) in image pixels for each person of one frame (None: none found)."""
    height, width = frame.shape[:2]
    boxes = np.array([p.box for p in people], np.float64).reshape(-1, 4)
    if isinstance(source, KeypointModel):
        found = source(frame, boxes)
        kps: List[Optional[np.ndarray]] = []
        for person in found:
            counts.outside += person.outside
            counts.non_finite += person.non_finite
            kps.append(person.body25)
        return kps
    frame_people = source.candidates(index, name)
    counts.non_finite += frame_people.non_finite  # read_openpose already gave them confidence 0
    cleaned = []
    for (
        person
    ) in frame_people.keypoints:  # OpenPose people: the same rules as the model's (outside/NaN ignored)
        body = person.copy()
        finite = np.isfinite(body).all(-1)
        inside = finite & (body[:, 0] >= 0) & (body[:, 0] < width) & (body[:, 1] >= 0) & (body[:, 1] < height)
        used = body[:, 2] > 0
        counts.non_finite += int((~finite).sum())
        counts.outside += int((finite & used & ~inside).sum())
        body[~(finite & inside)] = 0.0
        cleaned.append(body)
    chosen = match_people(boxes, np.asarray(cleaned).reshape(-1, 25, 3))
    return [cleaned[c] if c is not None else None for c in chosen]


# ----------------------------------------------------------------------------------------------- the fit
@dataclass
class Refiner:
    """Refines a chunk's people; keeps each track's last refined joints for the temporal term."""

    body_model: Any
    gmm_path: Path
    temporal_weight: float = DEFAULT_TEMPORAL_WEIGHT
    iterations: Optional[int] = None
    last: Dict[int, Tuple[int, torch.Tensor]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        config = RegistrationConfig(method="gtacli", facing_search="auto", one_stage_lr_decay=REFINE_LR_DECAY)
        if self.iterations is not None:
            config.one_stage_iters = self.iterations
        self.config = config
        self.fitter = build_fitter(self.body_model, self.gmm_path, config)

    def describe(self) -> Dict[str, Any]:
        return {
            "method": "gtacli",
            "iterations": self.config.one_stage_iters,
            "lr_decay": self.config.one_stage_lr_decay,
            "temporal_weight": self.temporal_weight,
            "temporal_px_per_m": TEMPORAL_PX_PER_M,
        }

    def __call__(
        self,
        crowd: Sequence[Person],
        outputs: CropPredictions,
        keypoints: Sequence[Optional[np.ndarray]],
    ) -> Tuple[CropPredictions, Dict[str, np.ndarray]]:
        """(refined outputs: a copy of the network's with the refined rows replaced, extra results.npz fields
        keyed by their names there (`REFINE_FIELDS`))."""
        count = len(crowd)
        dev, dtype = self.fitter.device, self.fitter.dtype
        rotmat = torch.as_tensor(outputs.rotmat, dtype=torch.float64).reshape(-1, 24, 3, 3)
        pose = matrix_to_axis_angle(rotmat).reshape(count, 72)
        extra = {
            "refined": np.zeros(count, bool),
            "network_smpl_pose": pose.numpy().copy(),
            "network_betas": np.asarray(outputs.betas, np.float64).copy(),
            "network_pred_cam": np.asarray(outputs.cam, np.float64).copy(),
            "reprojection_px_network": np.full(count, np.nan),
            "reprojection_px_refined": np.full(count, np.nan),
        }
        rows = [k for k, kp in enumerate(keypoints) if kp is not None and (kp[:, 2] > 0).any()]
        refined = outputs.copy()
        if not rows:
            return refined, extra
        centers = np.array([crowd[k].center for k in rows], np.float64)
        sides = np.array([crowd[k].side for k in rows], np.float64)
        kp_crop = clean_keypoints(
            crop_keypoints(to_smpl49(np.stack([keypoints[k] for k in rows])), centers, sides)
        )
        kw = {"device": dev, "dtype": dtype}
        kp = torch.as_tensor(kp_crop, **kw)
        init_pose = pose[rows].to(**kw)
        init_betas = torch.as_tensor(np.asarray(outputs.betas)[rows], **kw)
        init_transl = cam_to_translation(torch.as_tensor(np.asarray(outputs.cam)[rows], **kw))
        temporal = self._temporal([crowd[k] for k in rows])
        result = self.fitter.fit(init_pose, init_betas, init_transl, kp, extra_loss=temporal)
        weights = self.fitter.weights
        with torch.no_grad():
            start = self.body_model(init_betas, init_pose[:, 3:], init_pose[:, :3], pose2rot=True).joints
            px_net = reprojection_px(start + init_transl[:, None], kp, weights, self.config)
            px_fit = reprojection_px(result.joints, kp, weights, self.config)
            root = result.joints - result.transl[:, None]
        scale = sides / IMG_RES  # crop pixels -> image pixels
        transl = result.transl.double().cpu()
        cam = torch.stack([2 * FOCAL_LENGTH / (IMG_RES * transl[:, 2]), transl[:, 0], transl[:, 1]], dim=1)
        refined.rotmat[rows] = (
            axis_angle_to_matrix(result.pose.double().cpu().reshape(-1, 3)).reshape(-1, 24, 3, 3).numpy()
        )
        refined.betas[rows] = result.betas.double().cpu().numpy()
        refined.cam[rows] = cam.numpy()
        extra["refined"][rows] = True
        extra["reprojection_px_network"][rows] = px_net.double().cpu().numpy() * scale
        extra["reprojection_px_refined"][rows] = px_fit.double().cpu().numpy() * scale
        relative = _relative(root.detach())
        for i, person in enumerate(crowd[k] for k in rows):  # rows are in frame order within a chunk
            held = self.last.get(person.pid)
            if held is None or held[0] < person.frame:
                self.last[person.pid] = (person.frame, relative[i])
        return refined, extra

    def _temporal(self, people: Sequence[Person]):
        """The temporal term over consecutive frames of each track (None when no pair exists)."""
        if self.temporal_weight <= 0:
            return None
        pairs: List[Tuple[int, int]] = []  # (earlier row, later row)
        anchors: List[Tuple[int, torch.Tensor]] = []  # (row, the track's previous refined joints)
        previous: Dict[int, int] = {}
        for row, person in sorted(enumerate(people), key=lambda item: item[1].frame):
            if person.pid in previous and person.frame - people[previous[person.pid]].frame == 1:
                pairs.append((previous[person.pid], row))
            elif person.pid not in previous and person.pid in self.last:
                frame, joints = self.last[person.pid]
                if person.frame - frame == 1:
                    anchors.append((row, joints))
            previous[person.pid] = row
        if not pairs and not anchors:
            return None
        weight = self.temporal_weight * TEMPORAL_PX_PER_M**2

        def term(joints: torch.Tensor, transl: torch.Tensor) -> torch.Tensor:
            relative = _relative(joints)
            loss = joints.new_zeros(joints.shape[0])
            if pairs:
                early = torch.tensor([a for a, _ in pairs], device=joints.device)
                late = torch.tensor([b for _, b in pairs], device=joints.device)
                step = ((relative[late] - relative[early]) ** 2).sum(dim=(1, 2))
                loss = loss.index_add(0, late, weight * step)
            if anchors:
                rows = torch.tensor([r for r, _ in anchors], device=joints.device)
                held = torch.stack([j for _, j in anchors]).to(joints)
                loss = loss.index_add(0, rows, weight * ((relative[rows] - held) ** 2).sum(dim=(1, 2)))
            return loss

        return term


def _relative(joints: torch.Tensor) -> torch.Tensor:
    """smpl_49 joints relative to the training pelvis (mean of the two hips)."""
    pelvis = joints[:, list(TRAIN_PELVIS_PAIR)].mean(dim=1, keepdim=True)
    return joints - pelvis


# ----------------------------------------------------------------------------------------------- the stage
class RefineStage:
    """The pipeline's refine stage: keypoints for a chunk's people, then `Refiner` (one call per chunk)."""

    def __init__(self, source: Any, refiner: Refiner):
        self.source = source
        self.refiner = refiner
        self.counts = KeypointCounts()
        self.errors: Dict[str, List[float]] = {"network": [], "refined": []}

    def __call__(
        self,
        chunk: Sequence[Tuple[int, str, np.ndarray]],
        crowd: Sequence[Person],
        outputs: CropPredictions,
    ) -> Tuple[CropPredictions, Dict[str, np.ndarray]]:
        keypoints: List[Optional[np.ndarray]] = [None] * len(crowd)
        for index, name, frame in chunk:
            mine = [k for k, person in enumerate(crowd) if person.frame == index]
            if not mine:
                continue
            found = keypoints_for_people(
                self.source, index, name, frame, [crowd[k] for k in mine], self.counts
            )
            for k, kp in zip(mine, found):
                keypoints[k] = kp
        self.counts.people_without += sum(kp is None for kp in keypoints)
        refined, extra = self.refiner(crowd, outputs, keypoints)
        done = extra["refined"]
        self.errors["network"] += extra["reprojection_px_network"][done].tolist()
        self.errors["refined"] += extra["reprojection_px_refined"][done].tolist()
        return refined, extra

    def finish(self, notes: List[str]) -> None:
        if isinstance(self.source, OpenPoseKeypoints):
            self.source.check_matched()
        notes.extend(self.counts.notes())

    def describe(self) -> Dict[str, Any]:
        source = self.source.describe()
        mean = lambda v: round(float(np.mean(v)), 3) if v else None  # noqa: E731
        return {
            **self.refiner.describe(),
            "keypoint_source": source,
            "people_refined": len(self.errors["refined"]),
            "mean_reprojection_px_network": mean(self.errors["network"]),
            "mean_reprojection_px_refined": mean(self.errors["refined"]),
            "keypoints_outside_image": self.counts.outside,
            "keypoints_non_finite": self.counts.non_finite,
        }


def make_refine_stage(config: Any, body_model: Any, gmm_path: Path) -> Optional[RefineStage]:
    """The refine stage for `config` (None without --refine); its keypoint source, in order: --keypoints,
    an OpenPose --bbox-file, the fetched keypoint model. None of them: exit 2 naming them."""
    if not config.refine:
        return None
    source: Any = None
    if config.keypoints is not None:
        source = OpenPoseKeypoints(config.keypoints)
    elif config.bbox_file is not None and _is_openpose(Path(config.bbox_file)):
        source = OpenPoseKeypoints(config.bbox_file)
    elif config.keypoint_model is not None and Path(config.keypoint_model).is_file():
        source = KeypointModel(Path(config.keypoint_model), sha256=config.keypoint_sha256)
    if source is None:
        raise UsageError(
            "--refine needs keypoints: --keypoints DIR (OpenPose JSON per image/frame, or an OpenPose "
            "--bbox-file) or the keypoint model",
            fix="give --keypoints DIR, or run `gtacli fetch keypoints`",
        )
    refiner = Refiner(body_model, gmm_path, config.refine_smooth, config.refine_iterations)
    return RefineStage(source, refiner)


def _is_openpose(path: Path) -> bool:
    try:
        read_openpose(path)
    except (BadFileError, MissingFileError):
        return False
    return True
