"""HumanData fields and static fits for rendered scenes, with the keys each real file has (docs/reproduction.md §2.3-2.6).

* `spin_*_train.npz`: SPIN-style square boxes (1.2x the extent of the annotated joints), `keypoints2d` over
  the 49 smpl_49 HUMAN_DATA slots (OpenPose slots carry detector-like confidences and pixel noise, GT slots the
  exact projections with conf 1 where annotated and inside the image), `keypoints3d` (24 slots) for
  h36m / mpi_inf_3dhp, `smpl` for h36m, `smpl` + `has_smpl` (some 0) for mpi_inf_3dhp.
* `gta_human_4x.npz`: tight silhouette boxes, 24 valid keypoints (2D and pelvis-aligned 3D, conf 1), `smpl`
  with `transl`, the GTA-native `keypoints*_gta` keys, no `meta`; legacy `__temporal_len__` header.
* `pw3d_test.npz`: 1.2x keypoint boxes, `smpl` (camera frame, no transl), `meta.gender`; no keypoints.

Static fits are the true parameters plus noise: close to the bodies, never equal to them.
"""

from __future__ import annotations

from typing import Any, Dict

import numpy as np

from gtacli.body.conventions import HUMAN_DATA_NUM_KEYPOINTS, SMPL_49_TO_HUMAN_DATA
from gtacli.io.atomic import atomic_path
from gtacli.sample.scenes import SceneBatch

NUM_OPENPOSE = 25
SMPL24_OFFSET = 25  # smpl_49 index of smpl_24 joint 0
PELVIS_EXTRA_49 = 39  # smpl_49 'pelvis_extra' (root of H36M / GTA 3D keypoints)
# OpenPose-like detections: confidence range, miss rate, position noise (share of the box side).
OPENPOSE_CONF_RANGE = (0.45, 0.95)
OPENPOSE_MISS_RATE = 0.08
OPENPOSE_NOISE_FRACTION = 0.015
SPIN_BOX_EXPANSION = 1.2  # SPIN: scale = 1.2 max(w, h) / 200
SPIN_SCALE_UNIT_PX = 200.0
PW3D_BOX_EXPANSION = 1.2  # mmhuman3d pw3d converter: keypoint box x1.2 about its centre
# smpl_49 joints standing in for 3DPW's 18 COCO-style OpenPose keypoints (no mid-hip, no feet).
PW3D_BOX_JOINTS = tuple(i for i in range(19) if i != 8)
# Noise of the static fits (axis-angle rad / betas units) and of mpi_inf_3dhp's has_smpl=0 rows.
FIT_POSE_NOISE_RAD = 0.06
FIT_BETAS_NOISE = 0.15
BAD_SMPL_POSE_NOISE_RAD = 0.3
MPI_INF_NO_SMPL_EVERY = 3  # every 3rd mpi_inf_3dhp row has has_smpl = 0
GTA_NATIVE_JOINTS = 100  # GTA-Human's own skeleton size (keypoints2d_gta)


def _human_data_mask(slots) -> np.ndarray:
    mask = np.zeros(HUMAN_DATA_NUM_KEYPOINTS, dtype=np.uint8)
    mask[list(slots)] = 1
    return mask


def _to_human_data(kp49: np.ndarray) -> np.ndarray:
    """(N, 49, D) smpl_49 -> (N, 190, D) HUMAN_DATA (zeros outside the 49 slots)."""
    out = np.zeros((kp49.shape[0], HUMAN_DATA_NUM_KEYPOINTS, kp49.shape[2]), dtype=np.float32)
    out[:, list(SMPL_49_TO_HUMAN_DATA)] = kp49
    return out


def _smpl_dict(body_pose: np.ndarray, global_orient: np.ndarray, betas: np.ndarray) -> Dict[str, np.ndarray]:
    n = body_pose.shape[0]
    return {
        "body_pose": body_pose.reshape(n, 23, 3).astype(np.float32),
        "global_orient": global_orient.astype(np.float32),
        "betas": betas.astype(np.float32),
    }


def _misc(scenes: SceneBatch, misc: Dict[str, Any]) -> Dict[str, Any]:
    """The `misc` dict: the synthetic marker plus what only a synthetic tree can know — the true body of every
    sample (`synthetic_truth`: SMPL parameters and the camera translation added to the SMPL-frame mesh) and the
    camera intrinsics (`camera_intrinsics` (3, 3)), so a mesh can be re-rendered exactly where the image has it."""
    truth = _smpl_dict(scenes.body_pose, scenes.global_orient, scenes.betas)
    truth["transl"] = scenes.transl.astype(np.float32)
    truth["gender"] = list(scenes.genders)
    return {**misc, "synthetic_truth": truth, "camera_intrinsics": scenes.intrinsics.astype(np.float64)}


def _gt_joint_mask(scenes: SceneBatch) -> np.ndarray:
    """(49,) bool: smpl_49 joints the dataset annotates as ground truth."""
    mask = np.zeros(49, dtype=bool)
    mask[[SMPL24_OFFSET + j for j in scenes.spec.gt_joints]] = True
    return mask


def keypoints2d_smpl49(scenes: SceneBatch, rng: np.random.Generator) -> np.ndarray:
    """(N, 49, 3) what the dataset's annotation says: GT joints exact, OpenPose slots detector-like."""
    n = len(scenes)
    kp = np.zeros((n, 49, 3))
    gt = _gt_joint_mask(scenes)
    inside = scenes.inside
    kp[:, gt, :2] = scenes.joints_uv[:, gt]
    kp[:, gt, 2] = inside[:, gt]
    if scenes.spec.openpose:
        side = np.maximum(np.ptp(scenes.joints_uv, axis=1).max(axis=1), 1.0)  # (N,)
        noise = rng.normal(0.0, 1.0, (n, NUM_OPENPOSE, 2)) * (OPENPOSE_NOISE_FRACTION * side)[:, None, None]
        conf = rng.uniform(*OPENPOSE_CONF_RANGE, (n, NUM_OPENPOSE))
        detected = (rng.uniform(size=(n, NUM_OPENPOSE)) >= OPENPOSE_MISS_RATE) & inside[:, :NUM_OPENPOSE]
        kp[:, :NUM_OPENPOSE, :2] = np.where(
            detected[..., None], scenes.joints_uv[:, :NUM_OPENPOSE] + noise, 0.0
        )
        kp[:, :NUM_OPENPOSE, 2] = np.where(detected, conf, 0.0)
    return kp


def keypoints3d_smpl49(scenes: SceneBatch, root_centred: bool) -> np.ndarray:
    """(N, 49, 4) camera-frame metres (optionally minus pelvis_extra) for the annotated GT joints, conf 1."""
    joints = scenes.joints_cam.copy()
    if root_centred:
        joints -= joints[:, PELVIS_EXTRA_49 : PELVIS_EXTRA_49 + 1]
    gt = _gt_joint_mask(scenes)
    kp = np.zeros(joints.shape[:2] + (4,))
    kp[:, gt, :3] = joints[:, gt]
    kp[:, gt, 3] = 1.0
    return kp


def spin_box(kp2d: np.ndarray) -> np.ndarray:
    """(N, 5) SPIN boxes from (N, 49, 3): square of side 1.2 max(w, h) of the confident GT joints
    (`[cx − 100 s, cy − 100 s, 200 s, 200 s, 1]`, s = 1.2 max(w, h) / 200)."""
    boxes = np.zeros((kp2d.shape[0], 5))
    for i, kp in enumerate(kp2d):
        pts = kp[SMPL24_OFFSET:][kp[SMPL24_OFFSET:, 2] > 0, :2]
        if len(pts) == 0:  # nothing annotated inside the image: fall back to every joint
            pts = kp[:, :2]
        (x0, y0), (x1, y1) = pts.min(axis=0), pts.max(axis=0)
        cx, cy = (x0 + x1) / 2.0, (y0 + y1) / 2.0
        scale = SPIN_BOX_EXPANSION * max(x1 - x0, y1 - y0) / SPIN_SCALE_UNIT_PX
        half = SPIN_SCALE_UNIT_PX / 2.0 * scale
        boxes[i] = [cx - half, cy - half, 2 * half, 2 * half, 1.0]
    return boxes


def keypoint_box(joints_uv: np.ndarray, expansion: float) -> np.ndarray:
    """(N, 5) box of (N, J, 2) points expanded by `expansion` about its centre (width and height separately)."""
    lo, hi = joints_uv.min(axis=1), joints_uv.max(axis=1)
    centre, size = (lo + hi) / 2.0, (hi - lo) * expansion
    return np.concatenate([centre - size / 2.0, size, np.ones((len(lo), 1))], axis=1)


def tight_box(silhouette_xyxy: np.ndarray) -> np.ndarray:
    """(N, 5) `[x, y, w, h, 1]` of the rendered silhouette."""
    x0, y0, x1, y1 = silhouette_xyxy.T
    return np.stack([x0, y0, x1 - x0, y1 - y0, np.ones_like(x0)], axis=1)


def static_fits(scenes: SceneBatch, rng: np.random.Generator) -> np.ndarray:
    """(N, 82) float64 `[global_orient 3 | body_pose 69 | betas 10]`: the true bodies plus noise."""
    n = len(scenes)
    pose = np.concatenate([scenes.global_orient, scenes.body_pose], axis=1)
    pose = pose + rng.normal(0.0, FIT_POSE_NOISE_RAD, pose.shape)
    betas = scenes.betas + rng.normal(0.0, FIT_BETAS_NOISE, (n, scenes.betas.shape[1]))
    return np.concatenate([pose, betas], axis=1).astype(np.float64)


def spin_fields(scenes: SceneBatch, rng: np.random.Generator, misc: Dict[str, Any]) -> Dict[str, Any]:
    """HumanData fields of a `spin_<ds>_train.npz` (uncompressed keypoints; the writer compresses by mask)."""
    spec = scenes.spec
    kp2d = keypoints2d_smpl49(scenes, rng)
    fields: Dict[str, Any] = {
        "__key_strict__": False,
        "image_path": list(scenes.image_paths),
        "bbox_xywh": spin_box(kp2d).astype(np.float32),
        "config": spec.config,
        "keypoints2d": _to_human_data(kp2d),
        "keypoints2d_mask": _human_data_mask(SMPL_49_TO_HUMAN_DATA),
        "misc": _misc(scenes, misc),
    }
    if spec.keypoints3d is not None:
        kp3d = keypoints3d_smpl49(scenes, root_centred=spec.keypoints3d == "root_centred")
        fields["keypoints3d"] = _to_human_data(kp3d)
        fields["keypoints3d_mask"] = _human_data_mask(SMPL_49_TO_HUMAN_DATA[SMPL24_OFFSET:])
    if spec.smpl == "all":
        fields["smpl"] = _smpl_dict(scenes.body_pose, scenes.global_orient, scenes.betas)
    elif spec.smpl == "partial":
        has_smpl = (np.arange(len(scenes)) % MPI_INF_NO_SMPL_EVERY != MPI_INF_NO_SMPL_EVERY - 1).astype(
            np.float32
        )
        bad = rng.normal(0.0, BAD_SMPL_POSE_NOISE_RAD, (len(scenes), 72))
        keep = has_smpl[:, None] > 0
        fields["smpl"] = _smpl_dict(
            np.where(keep, scenes.body_pose, scenes.body_pose + bad[:, 3:]),
            np.where(keep, scenes.global_orient, scenes.global_orient + bad[:, :3]),
            scenes.betas,
        )
        fields["has_smpl"] = has_smpl
    return fields


def gta_fields(scenes: SceneBatch, misc: Dict[str, Any]) -> Dict[str, Any]:
    """HumanData fields of `gta_human_4x.npz` (header keys excluded; see `write_legacy_human_data`)."""
    n = len(scenes)
    gt = _gt_joint_mask(scenes)
    kp2d = np.zeros((n, 49, 3))
    kp2d[:, :, :2] = scenes.joints_uv
    kp2d[:, :, 2] = 1.0  # the GTA converter gives every joint conf 1 (only the 24 GT slots are kept)
    kp3d = np.zeros((n, 49, 4))
    kp3d[:, :, :3] = scenes.joints_cam - scenes.joints_cam[:, PELVIS_EXTRA_49 : PELVIS_EXTRA_49 + 1]
    kp3d[:, :, 3] = 1.0
    slots24 = [SMPL_49_TO_HUMAN_DATA[j] for j in np.flatnonzero(gt)]
    # GTA's native skeleton has 100 joints; the synthetic stand-in keeps the smpl_49 joints in its first 49 slots.
    native_mask = np.zeros(GTA_NATIVE_JOINTS, dtype=np.uint8)
    native_mask[:49] = 1
    kp2d_gta = np.zeros((n, GTA_NATIVE_JOINTS, 3), np.float32)
    kp2d_gta[:, :49] = kp2d
    kp3d_gta = np.zeros((n, GTA_NATIVE_JOINTS, 4), np.float32)
    kp3d_gta[:, :49, :3] = scenes.joints_cam
    kp3d_gta[:, :49, 3] = 1.0
    smpl = _smpl_dict(scenes.body_pose, scenes.global_orient, scenes.betas)
    smpl["transl"] = scenes.transl.astype(np.float32)
    return {
        "__key_strict__": False,
        "config": scenes.spec.config,
        "smpl": smpl,
        "keypoints2d": _to_human_data(kp2d),
        "keypoints2d_mask": _human_data_mask(slots24),
        "keypoints3d": _to_human_data(kp3d),
        "keypoints3d_mask": _human_data_mask(slots24),
        "keypoints2d_gta": kp2d_gta,
        "keypoints2d_gta_mask": native_mask,
        "keypoints3d_gta": kp3d_gta,
        "keypoints3d_gta_mask": native_mask.copy(),
        "image_path": list(scenes.image_paths),
        "bbox_xywh": tight_box(scenes.silhouette_xyxy).astype(np.float32),
        "misc": _misc(scenes, misc),
    }


def pw3d_fields(scenes: SceneBatch, misc: Dict[str, Any]) -> Dict[str, Any]:
    """HumanData fields of `pw3d_test.npz`."""
    return {
        "__key_strict__": False,
        "image_path": list(scenes.image_paths),
        "bbox_xywh": keypoint_box(scenes.joints_uv[:, list(PW3D_BOX_JOINTS)], PW3D_BOX_EXPANSION).astype(
            np.float32
        ),
        "smpl": _smpl_dict(scenes.body_pose, scenes.global_orient, scenes.betas),
        "meta": {"gender": list(scenes.genders)},
        "config": scenes.spec.config,
        "misc": _misc(scenes, misc),
    }


def write_legacy_human_data(path, fields: Dict[str, Any]) -> None:
    """Write a HumanData file with the legacy `__temporal_len__` header instead of `__data_len__` (as the
    released `gta_human_4x.npz` has, docs/reproduction.md §2.6): keypoints compressed by their masks, dicts as 0-d object
    arrays, `np.savez_compressed`, atomic."""
    data = dict(fields)
    payload: Dict[str, Any] = {
        "__key_strict__": bool(data.pop("__key_strict__", False)),
        "__temporal_len__": int(len(data["image_path"])),
        "__keypoints_compressed__": True,
    }
    for key, value in data.items():
        if key.startswith("keypoints") and not key.endswith("_mask") and f"{key}_mask" in data:
            value = np.asarray(value)[:, np.flatnonzero(np.asarray(data[f"{key}_mask"]) == 1)]
        if isinstance(value, dict):
            holder = np.empty((), dtype=object)
            holder[()] = value
            value = holder
        payload[key] = value
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **payload)
