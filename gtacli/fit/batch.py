"""Fit many samples: screen the keypoints, start each fit, run a fitter in batches, judge every result.

* `screen_keypoints`: which samples can be fitted (every sample with at least one usable keypoint, as SPIN
  and mmhuman3d fit them); `keypoint_notes`: what is flagged about a fitted sample (non-finite keypoints
  ignored, fewer than 4 confident torso joints); `clean_keypoints`: non-finite joints get confidence 0.
  Every problem kind is reported once, with its count and first index.
* the initial translation: `gtacli.fit.camera_init.initial_translation`.
* `fit_dataset`: the chosen fitter on the fittable rows, `batch_size` at a time; every row of the result
  is finite (rows that were not fitted keep their initial parameters and say why).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch

from gtacli.body.camera import cam_to_translation, estimate_translation, project_points
from gtacli.body.conventions import TORSO_GT, TORSO_OPENPOSE
from gtacli.body.rotations import axis_angle_from_rotmat, rot6d_to_rotmat
from gtacli.fit.camera_init import initial_translation
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.losses import fit_criterion, keypoint_weights
from gtacli.progress import ProgressFn

MIN_TORSO_JOINTS = 4  # hips and shoulders: what places and orients the body (SPIN's camera stage)

# problem kinds that skip a sample, in the order they are checked (reported under the first that applies)
NON_FINITE = "non-finite keypoints only (NaN or inf), nothing usable"
NO_CONFIDENT = "no keypoint with confidence > 0"
NO_IMAGE = "image missing or unreadable (needed by --init CHECKPOINT)"
# what is flagged about a sample that is fitted anyway
NON_FINITE_JOINTS = "non-finite keypoints (NaN or inf): those joints ignored"
FEW_TORSO = (
    f"fewer than {MIN_TORSO_JOINTS} confident torso joints (hips, shoulders): fitted, the camera started "
    "from the other keypoints (or the weak-perspective camera)"
)


@dataclass
class Problem:
    """One kind of bad input: how many samples have it and the first one (0-based row)."""

    kind: str
    count: int
    first_index: int
    unit: str = "sample"  # what is counted: sample, person, file
    verb: str = "skipped"  # or "flagged": fitted, with a note in the report

    def line(self) -> str:
        plural = "s" if self.count != 1 else ""
        return f"{self.count} {self.unit}{plural} {self.verb}: {self.kind} (first: {self.unit} {self.first_index})"


def group_problems(
    reasons: Sequence[Optional[str]], unit: str = "sample", verb: str = "skipped"
) -> List[Problem]:
    """Per-row reasons (None = fine) -> one `Problem` per kind, in order of first appearance."""
    problems: Dict[str, Problem] = {}
    for i, reason in enumerate(reasons):
        if reason is None:
            continue
        if reason in problems:
            problems[reason].count += 1
        else:
            problems[reason] = Problem(reason, 1, i, unit, verb)
    return list(problems.values())


def group_notes(notes: Sequence[Sequence[str]], unit: str = "sample") -> List[Problem]:
    """Per-row lists of notes -> one flagged `Problem` per note kind."""
    kinds: List[Problem] = []
    for kind in (NON_FINITE_JOINTS, FEW_TORSO):
        kinds += group_problems([kind if kind in row else None for row in notes], unit, "flagged")
    return kinds


def _finite_joints(kp: np.ndarray) -> np.ndarray:
    """(N, 49) bool: the joint's confidence and (where it is used) its position are finite."""
    conf = kp[..., 2]
    return np.isfinite(conf) & ~((conf > 0) & ~np.isfinite(kp[..., :2]).all(-1))


def clean_keypoints(kp2d: np.ndarray) -> np.ndarray:
    """A copy of (N, 49, 3) keypoints with every non-finite joint at (0, 0) with confidence 0 (ignored)."""
    kp = np.array(kp2d, dtype=np.float64, copy=True)
    kp[~_finite_joints(kp)] = 0.0
    return kp


def screen_keypoints(kp2d: np.ndarray) -> List[Optional[str]]:
    """(N, 49, 3) crop keypoints -> per row None (fittable: at least one finite keypoint with confidence > 0)
    or why it is skipped. Non-finite joints are ignored (`clean_keypoints`), not a reason to skip."""
    kp = np.asarray(kp2d, dtype=np.float64)
    finite = _finite_joints(kp)
    usable = (finite & (np.nan_to_num(kp[..., 2]) > 0)).any(axis=1)
    reasons: List[Optional[str]] = []
    for i in range(kp.shape[0]):
        if usable[i]:
            reasons.append(None)
        elif not finite[i].all():
            reasons.append(NON_FINITE)
        else:
            reasons.append(NO_CONFIDENT)
    return reasons


def keypoint_notes(kp2d: np.ndarray) -> List[List[str]]:
    """Per row, what is flagged about a fittable sample: non-finite joints ignored, fewer than
    `MIN_TORSO_JOINTS` confident torso joints (a torso joint counts when its OpenPose or its ground-truth
    keypoint is confident)."""
    kp = np.asarray(kp2d, dtype=np.float64)
    finite = _finite_joints(kp)
    confident = finite & (np.nan_to_num(kp[..., 2]) > 0)
    torso = confident[:, list(TORSO_OPENPOSE)] | confident[:, list(TORSO_GT)]
    notes: List[List[str]] = []
    for i in range(kp.shape[0]):
        row = []
        if not finite[i].all():
            row.append(NON_FINITE_JOINTS)
        if torso[i].sum() < MIN_TORSO_JOINTS:
            row.append(FEW_TORSO)
        notes.append(row)
    return notes


def mean_init(mean_params: Dict[str, Any], batch: int, **kwargs: Any) -> Dict[str, torch.Tensor]:
    """Initial parameters from `smpl_mean_params` (`pose` (144,) 6D, `shape` (10,), `cam` (3,)):
    {'pose' (B, 72) axis-angle, 'betas' (B, 10), 'cam' (B, 3)}."""
    pose6d = torch.as_tensor(mean_params["pose"], **kwargs).reshape(1, 24, 6)
    pose = axis_angle_from_rotmat(rot6d_to_rotmat(pose6d).reshape(1, 24, 3, 3))
    betas = torch.as_tensor(mean_params["shape"], **kwargs).reshape(1, -1)
    cam = torch.as_tensor(mean_params["cam"], **kwargs).reshape(1, 3)
    return {"pose": pose.expand(batch, -1), "betas": betas.expand(batch, -1), "cam": cam.expand(batch, -1)}


@dataclass
class DatasetFit:
    """Result of `fit_dataset`: one row per input sample, in order, all numpy."""

    fits: np.ndarray  # (N, 82) float64 [pose72 | betas10]; the initial parameters where not fitted
    transl: np.ndarray  # (N, 3) the fitted crop-camera translation (metres)
    loss: np.ndarray  # (N,) final objective of the method (NaN where not fitted)
    criterion: (
        np.ndarray
    )  # (N,) the method's acceptance measure, camera by estimate_translation as training places it
    reprojection_px: np.ndarray  # (N,) mean 2D distance of the confident, used keypoints at the fitted camera
    fitted: np.ndarray  # (N,) bool
    accepted: np.ndarray  # (N,) bool: fitted and criterion < threshold
    betas_zeroed: np.ndarray  # (N,) bool: rows training will zero (any |β| > max_abs_beta)
    translation_fallback: np.ndarray  # (N,) bool: no keypoints placed the initial translation
    reasons: List[str] = field(default_factory=list)  # per row: "accepted", why not, or why skipped
    threshold: float = 0.0


def reprojection_px(
    joints_cam: torch.Tensor, kp2d: torch.Tensor, weights: torch.Tensor, config: RegistrationConfig
) -> torch.Tensor:
    """(B,) mean pixel distance between projected joints and the confident, used keypoints (NaN if none)."""
    proj = project_points(joints_cam, focal=config.focal_length, center=config.img_res / 2.0)
    used = (kp2d[..., 2] > 0) & (weights > 0)
    target = torch.where(used[..., None], kp2d[..., :2], proj)
    dist = (proj - target).norm(dim=-1) * used
    return dist.sum(-1) / used.sum(-1).clamp(min=1)


def fit_dataset(
    fitter: Any,
    config: RegistrationConfig,
    kp2d: np.ndarray,
    init_pose: np.ndarray,
    init_betas: np.ndarray,
    init_cam: np.ndarray,
    *,
    skip: Optional[Sequence[Optional[str]]] = None,
    batch_size: int = 32,
    progress: Optional[ProgressFn] = None,
) -> DatasetFit:
    """Fit every fittable sample. kp2d (N, 49, 3) crop pixels + conf; init_pose (N, 72); init_betas (N, 10);
    init_cam (N, 3) weak-perspective. `skip[i]` (a reason) leaves row i unfitted. `progress(done, total,
    description)` is called after each batch."""
    kw = {"device": fitter.device, "dtype": fitter.dtype}
    kp2d = clean_keypoints(kp2d)  # a non-finite joint is ignored, never a NaN in the fit
    n = int(np.shape(kp2d)[0])
    reasons: List[Optional[str]] = list(skip) if skip is not None else [None] * n
    todo = np.flatnonzero([r is None for r in reasons])
    fits = np.concatenate([np.asarray(init_pose, np.float64), np.asarray(init_betas, np.float64)], axis=1)
    out = {
        "transl": np.zeros((n, 3)),
        "loss": np.full(n, np.nan),
        "criterion": np.full(n, np.nan),
        "reprojection_px": np.full(n, np.nan),
        "fallback": np.zeros(n, bool),
    }
    weights = keypoint_weights(config.ignore_keypoints, **kw)
    threshold = config.acceptance_threshold
    done = 0
    for start in range(0, len(todo), batch_size):
        rows = todo[start : start + batch_size]
        kp = torch.as_tensor(np.asarray(kp2d)[rows], **kw)
        pose = torch.as_tensor(np.asarray(init_pose)[rows], **kw)
        betas = torch.as_tensor(np.asarray(init_betas)[rows], **kw)
        cam_t = cam_to_translation(
            torch.as_tensor(np.asarray(init_cam)[rows], **kw), config.focal_length, config.img_res
        )
        with torch.no_grad():
            joints = fitter.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True).joints
        transl, fallback = initial_translation(joints, kp, cam_t, config.focal_length, config.img_res)
        result = fitter.fit(pose, betas, transl, kp)
        with torch.no_grad():
            root_joints = result.joints - result.transl[:, None, :]
            place, place_ok = estimate_translation(root_joints, kp, config.focal_length, config.img_res)
            place = torch.where(place_ok[:, None], place, result.transl)
            crit = fit_criterion(config, root_joints + place[:, None, :], kp, weights)
            px = reprojection_px(result.joints, kp, weights, config)
        fits[rows, :72] = result.pose.double().cpu().numpy()
        fits[rows, 72:] = result.betas.double().cpu().numpy()
        out["transl"][rows] = result.transl.double().cpu().numpy()
        out["loss"][rows] = result.loss.double().cpu().numpy()
        out["criterion"][rows] = crit.double().cpu().numpy()
        out["reprojection_px"][rows] = px.double().cpu().numpy()
        out["fallback"][rows] = fallback.cpu().numpy()
        done += len(rows)
        if progress is not None:
            mean_px = float(np.nanmean(out["reprojection_px"][todo[: start + len(rows)]]))
            progress(done, len(todo), f"mean reprojection {mean_px:.1f} px")
    fitted = np.array([r is None for r in reasons])
    accepted = fitted & (out["criterion"] < threshold)
    labels = []
    for i in range(n):
        if reasons[i] is not None:
            labels.append(f"skipped: {reasons[i]}")
        elif accepted[i]:
            labels.append("accepted")
        else:
            labels.append(f"rejected: fit criterion {out['criterion'][i]:.4g} >= {threshold:g}")
    return DatasetFit(
        fits=fits,
        transl=out["transl"],
        loss=out["loss"],
        criterion=out["criterion"],
        reprojection_px=out["reprojection_px"],
        fitted=fitted,
        accepted=accepted,
        betas_zeroed=(np.abs(fits[:, 72:]) > config.max_abs_beta).any(axis=1),
        translation_fallback=out["fallback"],
        reasons=labels,
        threshold=threshold,
    )
