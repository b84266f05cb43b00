"""The SMPL rig an animation file carries: joint names and tree, the rest skeleton of one person's shape, and
(with a mesh) the shaped rest mesh, skinning weights and pose correctives; plus SMPL's own forward kinematics and
skinning in numpy, which the exporters' tests and checks compare against.

Rest joints depend on the shape: `J = J_regressor · (v_template + shapedirs · betas)`. Without an SMPL file the
rest joints can also be recovered from posed joints (`rest_joints_from_posed`): the 24 kinematic joints are linear
in the shape, so averaging frames of one track gives the skeleton of its mean shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Optional, Tuple

import numpy as np

# The names SMPL (smplx) gives its 24 kinematic joints; gtacli.body.conventions spells the spine mmhuman3d's way
# (spine_1), animation files use SMPL's own spelling, which other SMPL tools look for.
SMPL_JOINT_NAMES: Tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hand",
    "right_hand",
)  # fmt: skip
SMPL_PARENTS: Tuple[int, ...] = (
    -1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21,
)  # fmt: skip
NUM_JOINTS = 24
NUM_POSE_CORRECTIVES = 207  # entries of (R_k - I) for the 23 non-root joints, row-major


@dataclass
class Rig:
    """One person's rig in SMPL's canonical frame (y up, facing +z), metres."""

    rest_joints: np.ndarray  # (24, 3)
    vertices: Optional[np.ndarray] = None  # (V, 3) shaped rest mesh v_template + shapedirs · betas
    faces: Optional[np.ndarray] = None  # (F, 3) int
    weights: Optional[np.ndarray] = None  # (V, 24) skinning weights
    posedirs: Optional[np.ndarray] = None  # (V, 3, 207) pose correctives
    source: Optional[str] = None  # the SMPL file the mesh came from (licence note)

    @property
    def has_mesh(self) -> bool:
        return self.vertices is not None

    @property
    def offsets(self) -> np.ndarray:
        """(24, 3) each joint relative to its parent (the root: its rest position)."""
        parents = np.asarray(SMPL_PARENTS)
        out = self.rest_joints.copy()
        out[1:] -= self.rest_joints[parents[1:]]
        return out


def shaped_vertices(smpl: Mapping[str, np.ndarray], betas: np.ndarray) -> np.ndarray:
    """v_template + shapedirs[..., :len(betas)] · betas, float64 (V, 3)."""
    betas = np.asarray(betas, np.float64).reshape(-1)
    shapedirs = np.asarray(smpl["shapedirs"], np.float64)[..., : len(betas)]
    return np.asarray(smpl["v_template"], np.float64) + shapedirs @ betas


def rig_from_smpl(smpl: Mapping[str, np.ndarray], betas: np.ndarray, source: Optional[str] = None) -> Rig:
    """The rig of shape `betas` from SMPL model arrays (`gtacli.body.smpl.load_smpl_arrays`)."""
    vertices = shaped_vertices(smpl, betas)
    regressor = np.asarray(smpl["J_regressor"], np.float64)
    return Rig(
        rest_joints=regressor @ vertices,
        vertices=vertices,
        faces=np.asarray(smpl["f"], np.int64),
        weights=np.asarray(smpl["weights"], np.float64),
        posedirs=np.asarray(smpl["posedirs"], np.float64),
        source=source,
    )


def rest_joints_from_posed(posed: np.ndarray, rotmats: np.ndarray) -> np.ndarray:
    """Rest skeleton (24, 3) from posed joints (T, 24, 3) and the rotations (T, 24, 3, 3) that posed them,
    averaged over frames. The posed joints are in the body-model frame (no translation), where the root turns
    about its own rest position: the posed pelvis is its rest position."""
    global_rot = global_rotations(rotmats)
    parents = np.asarray(SMPL_PARENTS)
    bone = posed[:, 1:] - posed[:, parents[1:]]  # (T, 23, 3) = G_parent · (J_k - J_parent)
    local = np.einsum("tkji,tkj->tki", global_rot[:, parents[1:]], bone).mean(axis=0)
    rest = np.zeros((NUM_JOINTS, 3))
    rest[0] = posed[:, 0].mean(axis=0)
    for k in range(1, NUM_JOINTS):
        rest[k] = rest[SMPL_PARENTS[k]] + local[k - 1]
    return rest


def global_rotations(rotmats: np.ndarray) -> np.ndarray:
    """Local joint rotations (..., 24, 3, 3) -> rotations in the frame of the root's parent."""
    out = np.empty_like(rotmats)
    out[..., 0, :, :] = rotmats[..., 0, :, :]
    for k in range(1, NUM_JOINTS):
        out[..., k, :, :] = out[..., SMPL_PARENTS[k], :, :] @ rotmats[..., k, :, :]
    return out


def joint_transforms(rest_joints: np.ndarray, rotmats: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """SMPL forward kinematics: (T, 24, 4, 4) joint-to-camera transforms (rotation, posed joint position) of
    local rotations (T, 24, 3, 3) and translations (T, 3); the root turns about its rest position."""
    frames = rotmats.shape[0]
    global_rot = global_rotations(rotmats)
    parents = np.asarray(SMPL_PARENTS)
    positions = np.empty((frames, NUM_JOINTS, 3))
    positions[:, 0] = rest_joints[0] + transl
    for k in range(1, NUM_JOINTS):
        p = parents[k]
        positions[:, k] = positions[:, p] + global_rot[:, p] @ (rest_joints[k] - rest_joints[p])
    out = np.zeros((frames, NUM_JOINTS, 4, 4))
    out[..., :3, :3] = global_rot
    out[..., :3, 3] = positions
    out[..., 3, 3] = 1.0
    return out


def posed_joints(rest_joints: np.ndarray, rotmats: np.ndarray, transl: np.ndarray) -> np.ndarray:
    """(T, 24, 3) posed joint positions (SMPL's 24 skeleton joints, the body model's `joints_smpl` + transl)."""
    return joint_transforms(rest_joints, rotmats, transl)[..., :3, 3]


def pose_features(rotmats: np.ndarray) -> np.ndarray:
    """(T, 207): the entries of (R_k - I) of joints 1..23, row-major: the pose correctives' weights."""
    eye = np.eye(3)
    return (rotmats[:, 1:] - eye).reshape(rotmats.shape[0], NUM_POSE_CORRECTIVES)


def skin(rig: Rig, rotmats: np.ndarray, transl: np.ndarray, correctives: bool = True) -> np.ndarray:
    """SMPL's linear blend skinning of the rig's mesh: (T, V, 3) vertices in the camera frame."""
    if not rig.has_mesh:
        raise ValueError("the rig has no mesh")
    verts = np.broadcast_to(rig.vertices, (rotmats.shape[0],) + rig.vertices.shape).copy()
    if correctives:
        verts += np.einsum("vck,tk->tvc", rig.posedirs, pose_features(rotmats))
    transforms = joint_transforms(rig.rest_joints, rotmats, transl)
    # remove each joint's rest position: the transform then maps rest-mesh points, as SMPL's A matrices do
    rel = transforms.copy()
    rel[..., :3, 3] -= np.einsum("tkij,kj->tki", transforms[..., :3, :3], rig.rest_joints)
    blended = np.einsum("vk,tkij->tvij", rig.weights, rel)
    return np.einsum("tvij,tvj->tvi", blended[..., :3, :3], verts) + blended[..., :3, 3]
