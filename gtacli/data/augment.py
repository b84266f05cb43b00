"""The training augmentation pipeline of docs/reproduction.md §6.6, in mmhuman3d's order, with docs/reproduction.md §11's RNG draw order.

Per sample (all on numpy; the image is BGR uint8 as loaded):

1. channel noise: gains `pn ~ U[1−f, 1+f]^3` (one `uniform(size=(1,3))` draw), `img·pn` rounded and saturated
   to uint8 (what `cv2.multiply` does);
2. horizontal flip with probability p (one `rand()` draw, flip iff ≤ p) on the **full image before the crop**:
   image mirrored, 2D keypoints swapped (smpl_49 flip permutation) and `x ← W−1−x`, centre `x ← W−1−x`,
   3D keypoints swapped and `X ← −X`, the SMPL 72-d pose mirrored (§3.5);
3. scale and rotation: `randn()` → `s = clip(1 + f_s·n, 1−f_s, 1+f_s)`, `randn()` → `r = clip(f_r·n, ±2f_r)`,
   `rand()` → rotation kept iff ≤ rot_prob (else 0); crop side ← side·s (in the side's float dtype);
4. affine crop to `img_res` (OpenCV 4.x bilinear warp, black border); 2D keypoints with conf > 0 mapped by
   the same matrix; 3D keypoints `X ← R_z(−r)·X`; `global_orient ← R_z(−r)·R` (body pose unchanged);
5. normalisation (BGR→RGB, (x − mean)/std, float32, CHW).

The numbers live in `AugmentConfig` (the published values as defaults); the training recipe holds one as
its `augment` part (`--set augment.flip_prob=0`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Tuple

import cv2
import numpy as np

from gtacli.body.camera import IMG_RES
from gtacli.body.conventions import SMPL_49_FLIP_PERM
from gtacli.body.rotations import flip_smpl_pose, rot_z_neg
from gtacli.data.crop import NORM_MEAN_RGB, NORM_STD_RGB, affine_transform, warp_affine_cv4

_FLIP_PERM = np.asarray(SMPL_49_FLIP_PERM)


@dataclass(frozen=True)
class AugmentConfig:
    """The augmentation numbers of docs/reproduction.md §6.6 (mmhuman3d's train pipeline); angles in degrees."""

    noise_factor: float = 0.4  # channel gains ~ U[1-f, 1+f]
    flip_prob: float = 0.5
    rot_factor: float = 30.0  # r = clip(N(0,1)*f, -2f, 2f)
    rot_prob: float = 0.6
    scale_factor: float = 0.25  # s = clip(N(0,1)*f + 1, 1-f, 1+f)
    img_res: int = IMG_RES  # crop side in pixels
    mean: Tuple[float, float, float] = NORM_MEAN_RGB  # RGB, 0..255 (the eval crop's constants)
    std: Tuple[float, float, float] = NORM_STD_RGB

    def validate(self) -> None:
        """ValueError naming the first field out of range."""
        if not 0 <= self.flip_prob <= 1 or not 0 <= self.rot_prob <= 1:
            raise ValueError("flip_prob and rot_prob must be in [0, 1]")
        if not 0 <= self.noise_factor < 1 or not 0 <= self.scale_factor < 1 or self.rot_factor < 0:
            raise ValueError("noise_factor and scale_factor must be in [0, 1), rot_factor >= 0")
        if self.img_res < 8:
            raise ValueError("img_res must be >= 8")
        if len(self.mean) != 3 or len(self.std) != 3 or min(self.std) <= 0:
            raise ValueError("mean and std need 3 values, std > 0")


@dataclass(frozen=True)
class AugmentParams:
    """The random draws of one sample."""

    channel_gain: np.ndarray  # (3,) BGR gains
    flip: bool
    scale: float  # multiplier of the crop side
    rotation_deg: float  # 0 when the rotation gate said no


def draw_params(rng: np.random.RandomState, cfg: AugmentConfig) -> AugmentParams:
    """The five RNG draws of docs/reproduction.md §11, in order: uniform(1,3); rand; randn; randn; rand."""
    gain = rng.uniform(1.0 - cfg.noise_factor, 1.0 + cfg.noise_factor, size=(1, 3))[0]
    flip = bool(rng.rand() <= cfg.flip_prob)
    scale = float(
        np.clip(rng.randn() * cfg.scale_factor + 1.0, 1.0 - cfg.scale_factor, 1.0 + cfg.scale_factor)
    )
    rotation = float(np.clip(rng.randn() * cfg.rot_factor, -2.0 * cfg.rot_factor, 2.0 * cfg.rot_factor))
    if not rng.rand() <= cfg.rot_prob:
        rotation = 0.0
    return AugmentParams(channel_gain=gain, flip=flip, scale=scale, rotation_deg=rotation)


def channel_noise(img_bgr: np.ndarray, gain: np.ndarray) -> np.ndarray:
    """(H,W,3) uint8 × per-channel gain (3,), rounded half-to-even and saturated to [0,255] (cv2.multiply)."""
    return cv2.multiply(img_bgr, (float(gain[0]), float(gain[1]), float(gain[2]), 0.0))


def flip_keypoints2d(kp2d: np.ndarray, width: int) -> np.ndarray:
    """(49,3) pixels: swap left/right (smpl_49), then x ← W−1−x for every row."""
    out = kp2d[_FLIP_PERM].copy()
    out[:, 0] = width - 1 - out[:, 0]
    return out


def flip_keypoints3d(kp3d: np.ndarray) -> np.ndarray:
    """(49,4): swap left/right, X ← −X."""
    out = kp3d[_FLIP_PERM].copy()
    out[:, 0] = -out[:, 0]
    return out


def flip_center(center: np.ndarray, width: int) -> np.ndarray:
    out = np.array(center, copy=True)  # dtype kept (float32 boxes give float32 centres, as in mmhuman3d)
    out[0] = width - 1 - out[0]
    return out


def flip_pose72(global_orient: np.ndarray, body_pose: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(3,), (23,3) axis-angle -> mirrored (3,), (23,3)."""
    pose = flip_smpl_pose(np.concatenate([global_orient.reshape(3), body_pose.reshape(69)]))
    return pose[:3].astype(global_orient.dtype), pose[3:].reshape(23, 3).astype(body_pose.dtype)


def transform_keypoints2d(kp2d: np.ndarray, trans: np.ndarray) -> np.ndarray:
    """(49,3): rows with conf > 0 get `[x, y, 1]·transᵀ` (2×3 matrix); the others are left untouched."""
    out = kp2d.copy()
    keep = out[:, 2] > 0
    xy1 = np.concatenate([out[keep, :2], np.ones((int(keep.sum()), 1), out.dtype)], axis=1)
    out[keep, :2] = xy1 @ np.asarray(trans, np.float64).T
    return out


def rotate_keypoints3d(kp3d: np.ndarray, rotation_deg: float) -> np.ndarray:
    """(49,4): xyz ← R_z(−r)·xyz (confidence column unchanged).

    The matrix is held in float32 and applied in the keypoints' dtype, as mmhuman3d's MeshAffine does it."""
    out = kp3d.copy()
    rot = np.asarray(rot_z_neg(np.float64(rotation_deg))).astype(np.float32)
    out[:, :3] = np.einsum("ij,kj->ki", rot, kp3d[:, :3])
    return out


def rotate_global_orient_cv(global_orient: np.ndarray, rotation_deg: float) -> np.ndarray:
    """(3,) axis-angle -> Rodrigues(R_z(−r)·Rodrigues(aa)), with cv2.Rodrigues in float32 (MeshAffine's maths)."""
    rot = np.asarray(rot_z_neg(np.float64(rotation_deg))).astype(np.float32)
    matrix, _ = cv2.Rodrigues(np.asarray(global_orient, np.float32).reshape(3, 1))
    aa, _ = cv2.Rodrigues(rot @ matrix)
    return aa.reshape(3).astype(np.float32)


def augment_sample(
    img_bgr: np.ndarray, ann: Dict[str, np.ndarray], rng: np.random.RandomState, cfg: AugmentConfig
) -> Dict[str, Any]:
    """Run steps 1–5 on one sample. `ann` holds `center` (2,), `scale` (crop side px), `keypoints2d` (49,3),
    `keypoints3d` (49,4), `smpl_global_orient` (3,), `smpl_body_pose` (23,3). Returns the augmented
    annotations plus `img` (3,res,res) float32, `is_flipped`, `rotation` (deg, float32), `scale`, `center`."""
    params = draw_params(rng, cfg)
    return apply_augmentation(img_bgr, ann, params, cfg)


def apply_augmentation(
    img_bgr: np.ndarray, ann: Dict[str, np.ndarray], params: AugmentParams, cfg: AugmentConfig
) -> Dict[str, Any]:
    """Steps 1–5 with given draws (so tests can choose them)."""
    img = channel_noise(img_bgr, params.channel_gain)
    width = img.shape[1]
    center = np.asarray(ann["center"])
    kp2d = np.asarray(ann["keypoints2d"], np.float32)
    kp3d = np.asarray(ann["keypoints3d"], np.float32)
    global_orient = np.asarray(ann["smpl_global_orient"], np.float32).reshape(3)
    body_pose = np.asarray(ann["smpl_body_pose"], np.float32).reshape(23, 3)
    if params.flip:
        img = img[:, ::-1]
        kp2d = flip_keypoints2d(kp2d, width)
        kp3d = flip_keypoints3d(kp3d)
        center = flip_center(center, width)
        global_orient, body_pose = flip_pose72(global_orient, body_pose)
    side = _scaled_side(ann["scale"], params.scale)
    # The crop and the 3D rotation use the float64 angle (MeshAffine gets the drawn value); only the
    # `rotation` handed to the model (and so to the fits lookup) is float32 (docs/reproduction.md §11).
    rot_deg = float(params.rotation_deg)
    trans = affine_transform(center, side, rot_deg, cfg.img_res)
    crop = warp_affine_cv4(np.ascontiguousarray(img), trans, (cfg.img_res, cfg.img_res))
    kp2d = transform_keypoints2d(kp2d, trans).astype(np.float32)
    if rot_deg != 0:  # R_z(0) = I: skip the round trip through rotation matrices
        kp3d = rotate_keypoints3d(kp3d, rot_deg).astype(np.float32)
        global_orient = rotate_global_orient_cv(global_orient, rot_deg)
    return {
        "img": normalize_image(crop, cfg),
        "keypoints2d": kp2d,
        "keypoints3d": kp3d,
        "smpl_global_orient": np.asarray(global_orient, np.float32),
        "smpl_body_pose": np.asarray(body_pose, np.float32),
        "is_flipped": np.float32(params.flip),
        "rotation": np.float32(rot_deg),
        "center": center.astype(np.float32),
        "scale": np.float32(side),
        "crop_bgr": crop,
    }


def _scaled_side(side: Any, factor: float) -> Any:
    """Crop side × scale factor in the side's own float dtype.

    mmhuman3d multiplies the float32 `scale` array of a float32 box by the float64 factor under numpy 1.x
    rules, which keep float32 (the factor is rounded to float32 first); the crop matrix is built from that
    value, so a float64 product would move some crop pixels."""
    side_arr = np.asarray(side)
    if side_arr.dtype.kind == "f":
        return side_arr.dtype.type(side_arr * side_arr.dtype.type(factor))
    return float(side_arr) * float(factor)


def normalize_image(crop_bgr: np.ndarray, cfg: AugmentConfig) -> np.ndarray:
    """(res,res,3) BGR uint8 -> (3,res,res) float32 RGB, (x − mean)/std with the recipe's mean/std."""
    # same arithmetic as gtacli.data.crop.normalize (used at test time), with the recipe's constants:
    # mmhuman3d's Normalize stores std as float32 and mmcv inverts it after widening to float64
    rgb = crop_bgr[:, :, ::-1].astype(np.float32)
    centred = rgb - np.asarray(cfg.mean, dtype=np.float32)
    inv_std = 1.0 / np.asarray(cfg.std, dtype=np.float32).astype(np.float64)
    scaled = (centred.astype(np.float64) * inv_std).astype(np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))
