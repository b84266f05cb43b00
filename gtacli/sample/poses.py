"""Plausible random SMPL bodies for the synthetic tree, and the priors that describe them.

Body poses come from an 8-component Gaussian mixture over the 69-d SMPL body pose (axis-angle, joints 1..23):
each component is a hand-written pose family (standing, walking, squatting, reaching, ...) plus per-joint
noise. The same mixture is written as `gmm_08.pkl`, so the synthetic pose prior describes exactly the poses
the synthetic images show. `smpl_mean_params.npz` holds the mixture's mean pose in SPIN's 6D layout.

SMPL rest frame: y up, x towards the body's left, z forward (T-pose, arms along ±x). Axis-angle conventions
used below: knee flexion = +x rotation, hip flexion (thigh forward) = −x, left arm down = −z at the
shoulder, right arm down = +z, left arm forward = −y, right arm forward = +y, elbow flexion = −y (left) /
+y (right).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import numpy as np

from gtacli.body.rotations import (
    axis_angle_to_matrix_np,
    matrix_to_axis_angle_np,
    rot_x,
    rot_y,
    rot_z,
    rotmat_to_rot6d_np,
)
from gtacli.body.smpl import NUM_BETAS, NUM_BODY_JOINTS

BODY_POSE_DIM = NUM_BODY_JOINTS * 3  # 69

# SMPL joint indices (kinematic tree order, docs/reproduction.md §3.1) used by the templates.
L_HIP, R_HIP, SPINE1, L_KNEE, R_KNEE, SPINE2, L_ANKLE, R_ANKLE, SPINE3 = 1, 2, 3, 4, 5, 6, 7, 8, 9
NECK, L_COLLAR, R_COLLAR, HEAD, L_SHOULDER, R_SHOULDER, L_ELBOW, R_ELBOW = 12, 13, 14, 15, 16, 17, 18, 19
L_WRIST, R_WRIST = 20, 21

ARMS_DOWN_RAD = 1.15  # shoulder rotation that brings a T-pose arm down to ~25° from the body
# Mixture weights of the pose families (sum to 1), in the order of POSE_TEMPLATES.
COMPONENT_WEIGHTS = (0.22, 0.14, 0.14, 0.1, 0.1, 0.1, 0.1, 0.1)
# Per-joint noise (std, rad) of every family: large at hips/knees/shoulders/elbows, small at hands and feet.
JOINT_NOISE_STD_RAD: Dict[int, float] = {
    L_HIP: 0.12, R_HIP: 0.12, SPINE1: 0.06, L_KNEE: 0.12, R_KNEE: 0.12, SPINE2: 0.05, L_ANKLE: 0.06,
    R_ANKLE: 0.06, SPINE3: 0.05, 10: 0.03, 11: 0.03, NECK: 0.08, L_COLLAR: 0.05, R_COLLAR: 0.05, HEAD: 0.1,
    L_SHOULDER: 0.18, R_SHOULDER: 0.18, L_ELBOW: 0.18, R_ELBOW: 0.18, L_WRIST: 0.1, R_WRIST: 0.1, 22: 0.05,
    23: 0.05,
}  # fmt: skip
MIN_VARIANCE = 1e-3  # like the real gmm_08.pkl, no direction is tighter than this (keeps covariances SPD)
BETAS_STD = 0.6  # shape coefficients ~ N(0, 0.6²), clipped to ±BETAS_CLIP: "small", well inside |β| < 3
BETAS_CLIP = 1.5
# Global orientation relative to "upright, facing the camera": yaw, pitch and roll ranges (degrees).
YAW_RANGE_DEG = 50.0
PITCH_RANGE_DEG = 10.0
ROLL_RANGE_DEG = 8.0


def _template(**joints: Tuple[float, float, float]) -> np.ndarray:
    """A (23, 3) body pose from `{joint name: axis-angle}`; unnamed joints stay at rest."""
    names = {
        "l_hip": L_HIP, "r_hip": R_HIP, "spine1": SPINE1, "l_knee": L_KNEE, "r_knee": R_KNEE,
        "spine2": SPINE2, "l_ankle": L_ANKLE, "r_ankle": R_ANKLE, "spine3": SPINE3, "neck": NECK,
        "head": HEAD, "l_shoulder": L_SHOULDER, "r_shoulder": R_SHOULDER, "l_elbow": L_ELBOW,
        "r_elbow": R_ELBOW, "l_wrist": L_WRIST, "r_wrist": R_WRIST,
    }  # fmt: skip
    pose = np.zeros((NUM_BODY_JOINTS, 3))
    for name, aa in joints.items():
        pose[names[name] - 1] = aa
    return pose


A = ARMS_DOWN_RAD
POSE_TEMPLATES: Tuple[np.ndarray, ...] = (
    # 0 standing, arms relaxed
    _template(l_shoulder=(0, 0, -A), r_shoulder=(0, 0, A), l_elbow=(0, -0.2, 0), r_elbow=(0, 0.2, 0)),
    # 1 walking, left leg forward, right arm forward
    _template(l_hip=(-0.45, 0, 0), r_hip=(0.3, 0, 0), r_knee=(0.5, 0, 0), l_knee=(0.15, 0, 0),
              l_shoulder=(0, 0.35, -A), r_shoulder=(0, 0.35, A), l_elbow=(0, -0.3, 0), r_elbow=(0, 0.5, 0)),
    # 2 walking, right leg forward, left arm forward
    _template(r_hip=(-0.45, 0, 0), l_hip=(0.3, 0, 0), l_knee=(0.5, 0, 0), r_knee=(0.15, 0, 0),
              l_shoulder=(0, -0.35, -A), r_shoulder=(0, -0.35, A), l_elbow=(0, -0.5, 0), r_elbow=(0, 0.3, 0)),
    # 3 waving: right arm raised, elbow bent
    _template(l_shoulder=(0, 0, -A), r_shoulder=(0, 0, -0.6), r_elbow=(0, 1.2, 0), head=(0.1, 0, 0)),
    # 4 squatting
    _template(l_hip=(-1.0, 0, 0.15), r_hip=(-1.0, 0, -0.15), l_knee=(1.5, 0, 0), r_knee=(1.5, 0, 0),
              l_ankle=(-0.3, 0, 0), r_ankle=(-0.3, 0, 0), spine1=(0.25, 0, 0),
              l_shoulder=(0, -0.6, -0.9), r_shoulder=(0, 0.6, 0.9), l_elbow=(0, -0.6, 0), r_elbow=(0, 0.6, 0)),
    # 5 reaching forward with both hands
    _template(l_shoulder=(0, -1.0, -0.6), r_shoulder=(0, 1.0, 0.6), l_elbow=(0, -0.5, 0), r_elbow=(0, 0.5, 0),
              spine2=(0.15, 0, 0)),
    # 6 arms raised overhead
    _template(l_shoulder=(0, 0, 0.9), r_shoulder=(0, 0, -0.9), l_elbow=(0, -0.3, 0), r_elbow=(0, 0.3, 0),
              neck=(-0.15, 0, 0)),
    # 7 holding something in front, weight on one leg, torso and head turned
    _template(l_shoulder=(0, 0.4, -0.9), r_shoulder=(0, -0.4, 0.9), l_elbow=(0, -1.6, 0), r_elbow=(0, 1.6, 0),
              l_hip=(0, 0, 0.2), r_knee=(0.25, 0, 0), spine2=(0, 0.25, 0), head=(0, -0.3, 0)),
)  # fmt: skip
del A


@dataclass(frozen=True)
class PoseMixture:
    """The 8-component mixture over the 69-d body pose; `means (8,69)`, `covars (8,69,69)`, `weights (8,)`."""

    means: np.ndarray
    covars: np.ndarray
    weights: np.ndarray

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, 69) body poses: pick a component by weight, then add its Gaussian noise."""
        component = rng.choice(len(self.weights), size=n, p=self.weights)
        noise = rng.standard_normal((n, BODY_POSE_DIM))
        std = np.sqrt(np.einsum("kii->ki", self.covars))  # the covariances are diagonal by construction
        return self.means[component] + noise * std[component]

    def as_gmm_dict(self) -> Dict[str, np.ndarray]:
        """The dict `gmm_08.pkl` holds (docs/reproduction.md §7.3): float64 `means`, `covars`, `weights`."""
        return {
            "means": self.means.astype(np.float64),
            "covars": self.covars.astype(np.float64),
            "weights": self.weights.astype(np.float64),
        }

    def mean_pose(self) -> np.ndarray:
        """(69,) weighted mean of the component means (the 'average' pose for smpl_mean_params)."""
        return (self.weights[:, None] * self.means).sum(axis=0)


def pose_mixture() -> PoseMixture:
    """The fixed pose mixture (no randomness: the prior is part of the tree's definition)."""
    means = np.stack([t.reshape(-1) for t in POSE_TEMPLATES])
    std = np.zeros(BODY_POSE_DIM)
    for joint, s in JOINT_NOISE_STD_RAD.items():
        std[3 * (joint - 1) : 3 * joint] = s
    variance = np.maximum(std**2, MIN_VARIANCE)
    covars = np.stack([np.diag(variance) for _ in POSE_TEMPLATES])
    weights = np.asarray(COMPONENT_WEIGHTS, dtype=np.float64)
    return PoseMixture(means=means, covars=covars, weights=weights / weights.sum())


def sample_betas(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 10) small shape coefficients."""
    return np.clip(rng.normal(0.0, BETAS_STD, size=(n, NUM_BETAS)), -BETAS_CLIP, BETAS_CLIP)


def facing_camera_orient(rng: np.random.Generator, n: int) -> np.ndarray:
    """(n, 3) axis-angle global orients in the camera frame (x right, y down, z forward): the body upright
    and facing the camera (SMPL's 180° x rotation, as in `smpl_mean_params`) turned by a random yaw,
    pitch and roll."""
    yaw = np.deg2rad(rng.uniform(-YAW_RANGE_DEG, YAW_RANGE_DEG, n))
    pitch = np.deg2rad(rng.uniform(-PITCH_RANGE_DEG, PITCH_RANGE_DEG, n))
    roll = np.deg2rad(rng.uniform(-ROLL_RANGE_DEG, ROLL_RANGE_DEG, n))
    out = np.empty((n, 3))
    for i in range(n):
        rot = rot_x(np.pi) @ rot_z(roll[i]) @ rot_x(pitch[i]) @ rot_y(yaw[i])
        out[i] = matrix_to_axis_angle_np(rot)
    return out


def mean_params(mixture: PoseMixture) -> Dict[str, np.ndarray]:
    """`smpl_mean_params.npz` content: float32 `pose` (144,) (6D; joint 0 = 180° about x, like the real
    file), `shape` (10,) zeros, `cam` (3,) = [0.9, 0, 0]."""
    body = axis_angle_to_matrix_np(mixture.mean_pose().reshape(NUM_BODY_JOINTS, 3))
    rot = np.concatenate([rot_x(np.pi)[None], body], axis=0)  # (24, 3, 3)
    return {
        "pose": rotmat_to_rot6d_np(rot).reshape(-1).astype(np.float32),
        "shape": np.zeros(NUM_BETAS, dtype=np.float32),
        "cam": np.asarray(MEAN_CAM, dtype=np.float32),
    }


MEAN_CAM = (0.9, 0.0, 0.0)  # weak-perspective [s, tx, ty] of the real smpl_mean_params.npz
