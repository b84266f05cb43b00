"""A synthetic SMPL-format body model (mannequin) and synthetic joint regressors.

The real SMPL files cannot be shipped, so the sample tree and the tests use a stand-in with SMPL's exact
format: 6890 vertices, 13776 triangles, SMPL's 24-joint kinematic tree, `shapedirs` (6890, 3, 10), `posedirs`
(6890, 3, 207), a dense (24, 6890) `J_regressor` and (6890, 24) skinning weights. `smplx.SMPL` loads it
unchanged (extra keys such as `gtacli_synthetic` are ignored by smplx).

The mesh (vertices, faces, mirror map, the same topology for every gender) comes from `synthetic_mesh`;
this module adds what makes it an SMPL model.

Skinning weights come from the distance to each bone's capsule; `J_regressor` rows are sparse convex
combinations of vertices around each joint; shape directions change height, girth, leg/arm length, shoulder
and hip width, belly, chest, head and torso length; pose correctives are small, left/right-equivariant offsets
(a fraction of the joint rotation's displacement plus a bulge along the normal). Genders differ in height,
shoulders and hips. Because everything is mirror-symmetric, flipping an SMPL pose (docs/reproduction.md §3.5) mirrors the
posed mesh exactly, which the tests use.
"""

from __future__ import annotations

import functools
import pickle
from pathlib import Path
from typing import Dict, Sequence, Tuple

import numpy as np

from gtacli.body.conventions import EXTRA_JOINTS, H36M_17, SMPL_POSE_FLIP_JOINT_PERM
from gtacli.body.smpl import NUM_BETAS
from gtacli.errors import PathLike
from gtacli.io.atomic import atomic_write_bytes
from gtacli.render.overlay import vertex_normals
from gtacli.sample.synthetic_mesh import (
    RELAX_ITERATIONS,
    canonical_gender,
    check_closed_genus0,
    mirror_by_position,
    name_mirror,
    neutral_mesh,
    primitives,
    relax,
    skeleton,
    unit,
)

SYNTHETIC_KEY = "gtacli_synthetic"
# SMPL's kinematic tree (parent of each joint; the root's parent is stored as uint32(-1) like the real file).
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)
SKIN_TEMPERATURE_M = 0.012  # softness of the skinning-weight blend between neighbouring bones
SKIN_MAX_BONES = 4
REGRESSOR_VERTICES = 48  # candidate vertices per joint-regressor row (the solution uses a sparse subset)
REGRESSOR_SLAB_M = 0.025  # candidates come from the cross-section within this distance of the joint
POSE_CORRECTIVE_ROTATION = 0.08  # share of the joint-rotation displacement kept as a rest-pose offset
POSE_CORRECTIVE_BULGE_M = 0.004  # outward bulge per unit of (3 - trace R) near a bent joint


# ------------------------------------------------------------------------------------------ the model


def _bone_segments(joints: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """Segment (start, end) that each joint's transform moves (the bone from the joint to its child)."""
    child = {
        0: 3,
        1: 4,
        2: 5,
        3: 6,
        4: 7,
        5: 8,
        6: 9,
        9: 12,
        12: 15,
        13: 16,
        14: 17,
        16: 18,
        17: 19,
        18: 20,
        19: 21,
        20: 22,
        21: 23,
    }
    a = joints.copy()
    b = np.empty_like(joints)
    for j in range(24):
        if j in child:
            b[j] = joints[child[j]]
    hand_dir = joints[22] - joints[20]
    b[22] = joints[22] + 1.2 * hand_dir
    b[23] = joints[23] + 1.2 * (joints[23] - joints[21])
    b[10] = joints[10] + np.array([0.0, 0.0, 0.07]) * np.linalg.norm(joints[7] - joints[4]) / 0.39
    b[11] = joints[11] + (b[10] - joints[10])
    b[15] = joints[15] + np.array([0.0, 0.14, 0.0])
    # the ankle's transform carries the whole foot, heel included: its segment starts behind and below the ankle
    for ankle, foot in ((7, 10), (8, 11)):
        a[ankle] = (
            joints[ankle] + np.array([0.0, -0.05, -0.05]) * np.linalg.norm(joints[7] - joints[4]) / 0.39
        )
        b[ankle] = joints[foot] + np.array([0.0, 0.0, -0.02])
    return a, b


def _skin_weights(verts: np.ndarray, joints: np.ndarray) -> np.ndarray:
    """(V, 24) linear-blend-skinning weights from each vertex's distance to the bone capsules (radius per joint)."""
    a, b = _bone_segments(joints)
    radius = np.array([0.12, 0.08, 0.08, 0.12, 0.055, 0.055, 0.12, 0.04, 0.04, 0.11, 0.04, 0.04,
                       0.05, 0.05, 0.05, 0.09, 0.045, 0.045, 0.034, 0.034, 0.02, 0.02, 0.02, 0.02])  # fmt: skip
    d = np.empty((len(verts), 24))
    for j in range(24):
        ab = b[j] - a[j]
        t = np.clip(((verts - a[j]) @ ab) / max(ab @ ab, 1e-12), 0, 1)
        d[:, j] = np.linalg.norm(verts - (a[j] + t[:, None] * ab), axis=1) - radius[j]
    # Soft-min over the distances to the bone capsules: the nearest bone dominates, neighbours blend in near joints.
    logits = -(d - d.min(1, keepdims=True)) / SKIN_TEMPERATURE_M
    keep = np.argsort(-logits, axis=1)[:, :SKIN_MAX_BONES]
    w = np.zeros_like(d)
    rows = np.arange(len(verts))[:, None]
    w[rows, keep] = np.exp(logits[rows, keep])
    w[w < 1e-3 * w.max(1, keepdims=True)] = 0
    return w / w.sum(1, keepdims=True)


def _convex_weights(points: np.ndarray, targets: np.ndarray, iterations: int = 4000) -> np.ndarray:
    """Weights (R, K) >= 0 summing to 1 with sum_k w_rk p_rk ~= targets_r, for points (R, K, 3), targets (R, 3).

    Exponentiated gradient on the simplex for 0.5 |sum w p - target|^2 (exact when the target lies inside the
    points' convex hull, which the cross-section candidate sets guarantee for our bodies)."""
    centred = points - targets[:, None, :]
    x = centred / (np.abs(centred).max(axis=(1, 2), keepdims=True) + 1e-12)
    w = np.full(points.shape[:2], 1.0 / points.shape[1])
    lr = 2.0
    for _ in range(iterations):
        r = np.einsum("rk,rkc->rc", w, x)
        g = np.einsum("rkc,rc->rk", x, r)
        w = w * np.exp(-lr * (g - g.min(1, keepdims=True)))
        w /= w.sum(1, keepdims=True)
    return w


def _regressor_rows(verts, mirror, targets, mirror_of: Sequence[int], axes: np.ndarray, k: int) -> np.ndarray:
    """Sparse rows (R, V): each a convex combination of vertices of the body's cross-section through its target
    (a slab across `axes[r]`), mirror-consistent. Row sums are exactly 1."""
    own = [r for r in range(len(targets)) if mirror_of[r] >= r]
    cand = []
    for r in own:
        dist = np.linalg.norm(verts - targets[r], axis=1)
        along = np.abs((verts - targets[r]) @ axes[r])
        near = np.argsort(dist + 4.0 * np.maximum(along - REGRESSOR_SLAB_M, 0.0))[: 2 * k]
        if mirror_of[r] == r:  # a midline joint: a mirror-closed candidate set (duplicates are harmless)
            near = np.concatenate([near[:k], mirror[near[:k]]])
        cand.append(near)
    cand = np.array(cand)
    w = _convex_weights(verts[cand], targets[own])
    rows = np.zeros((len(targets), len(verts)))
    for i, r in enumerate(own):
        np.add.at(rows[r], cand[i], w[i])
        if mirror_of[r] == r:
            rows[r] = 0.5 * (rows[r] + rows[r][mirror])
    for r in range(len(targets)):
        if mirror_of[r] < r:  # right-side row = the left row on mirrored vertices
            rows[r] = rows[mirror_of[r]][mirror]
    rows[rows < 1e-6] = 0
    return rows / rows.sum(1, keepdims=True)


def _shape_directions(verts, normals, joints, weights) -> np.ndarray:
    """(V, 3, 10) mirror-symmetric shape directions (metres per unit beta)."""
    x, y = verts[:, 0], verts[:, 1]
    sx = np.sign(x)
    floor = verts[:, 1].min()
    hip_y, waist_y, chest_y = joints[1, 1], joints[6, 1], joints[9, 1] + 0.05
    torso = weights[:, [0, 3, 6, 9]].sum(1)
    head = weights[:, [12, 15]].sum(1)
    d = np.zeros((len(verts), 3, NUM_BETAS))
    d[:, :, 0] = 0.035 * verts  # overall size/height (about the pelvis)
    d[:, :, 1] = (0.006 + 0.012 * torso)[:, None] * normals  # girth
    legs = np.clip((hip_y - y) / (hip_y - floor), 0, 1)
    d[:, 1, 2] = -0.03 * legs  # leg length: feet go down
    d[:, 1, 2] += 0.0
    upper = 1 / (1 + np.exp(-(y - chest_y) / 0.03))
    d[:, 0, 3] = 0.015 * sx * np.clip(np.abs(x) / 0.15, 0, 1) * upper  # shoulder width
    belly = np.exp(-(((y - waist_y) / 0.12) ** 2)) * np.clip(normals[:, 2], 0, 1) * torso
    d[:, 2, 4] = 0.025 * belly  # belly
    hips = np.exp(-(((y - hip_y) / 0.12) ** 2)) * (1 - upper)
    d[:, 0, 5] = 0.015 * sx * np.clip(np.abs(x) / 0.15, 0, 1) * hips  # hip width
    d[:, :, 6] = 0.05 * head[:, None] * (verts - joints[15])  # head size
    d[:, 0, 7] = 0.025 * sx * np.clip((np.abs(x) - abs(joints[16, 0])) / 0.6, 0, 1)  # arm length
    d[:, 2, 8] = 0.012 * np.exp(-(((y - chest_y) / 0.1) ** 2)) * normals[:, 2] * torso  # chest depth
    d[:, 1, 9] = 0.025 * np.clip((y - waist_y) / 0.35, 0, 1)  # torso length (head and arms move up)
    return d


def _pose_directions(verts, normals, joints, weights) -> np.ndarray:
    """(V, 3, 207) pose correctives, linear in (R_j - I) of joints 1..23 and left/right-equivariant."""
    pd = np.zeros((len(verts), 3, 207))
    for j in range(1, 24):
        near = np.clip(
            4.0 * weights[:, j] * weights[:, SMPL_PARENTS[j]], 0, 1
        )  # where bone j meets its parent
        if not near.any():
            continue
        rel = verts - joints[j]
        base = 9 * (j - 1)
        for a in range(3):
            for b in range(3):
                # offset_a += c * near * (R - I)[a, b] * rel_b : a share of the rigid displacement about the joint
                pd[:, a, base + 3 * a + b] += POSE_CORRECTIVE_ROTATION * near * rel[:, b]
            # bulge along the normal, driven by -(trace(R) - 3) = (3 - trace R) >= 0
            pd[:, :, base + 4 * a] += -POSE_CORRECTIVE_BULGE_M * near[:, None] * normals
    return pd


def make_synthetic_smpl(gender: str = "neutral", seed: int = 0) -> Dict[str, np.ndarray]:
    """A synthetic SMPL model as the dict of plain numpy arrays a real SMPL pickle holds (see module doc).

    Keys: v_template (6890, 3) f8, f (13776, 3) u4, shapedirs (6890, 3, 10), posedirs (6890, 3, 207),
    J_regressor (24, 6890) dense, J (24, 3), weights (6890, 24), kintree_table (2, 24), vert_sym_idxs (6890,),
    bs_style, bs_type, and `gtacli_synthetic: True` plus the generator's gender and seed.
    """
    return {
        k: (v.copy() if isinstance(v, np.ndarray) else v)
        for k, v in _make_cached(canonical_gender(gender), int(seed)).items()
    }


def _symmetric_skin_weights(verts: np.ndarray, joints: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    weights = _skin_weights(verts, joints)
    return 0.5 * (weights + weights[mirror][:, list(SMPL_POSE_FLIP_JOINT_PERM)])


@functools.lru_cache(maxsize=6)
def _make_cached(gender: str, seed: int) -> Dict[str, np.ndarray]:
    # Every gender shares the neutral mesh's topology and vertex order (as SMPL's do), so vertex ids, the
    # extra/H36M regressors and vertex-wise errors mean the same body point for every gender: the neutral
    # surface is carried to the gender's skeleton by its skinning weights, then settled on the gender's surface.
    verts, faces, mirror = neutral_mesh(seed)
    joints, props = skeleton(gender, seed)
    if gender != "neutral":
        joints_n, props_n = skeleton("neutral", seed)
        scale = props["height"] / props_n["height"]
        w_n = _symmetric_skin_weights(verts, joints_n, mirror)
        verts = scale * verts + w_n @ (joints - scale * joints_n)
        verts = relax(verts, faces, mirror, primitives(joints, props), RELAX_ITERATIONS)
        check_closed_genus0(verts, faces)
    normals = vertex_normals(verts, faces)

    weights = _symmetric_skin_weights(verts, joints, mirror)
    bone_a, bone_b = _bone_segments(joints)
    axes = unit(bone_b - bone_a)
    axes[0] = axes[3] = axes[6] = axes[9] = (0.0, 1.0, 0.0)  # torso joints: horizontal cross-sections
    j_regressor = _regressor_rows(verts, mirror, joints, SMPL_POSE_FLIP_JOINT_PERM, axes, REGRESSOR_VERTICES)
    J = j_regressor @ verts
    shapedirs = _shape_directions(verts, normals, J, weights)
    posedirs = _pose_directions(verts, normals, J, weights)
    kintree = np.array([[4294967295, *SMPL_PARENTS[1:]], list(range(24))], dtype=np.int64)
    return {
        "v_template": verts.astype(np.float64),
        "f": faces.astype(np.uint32),
        "shapedirs": shapedirs.astype(np.float32),  # float32 halves the file (smplx casts anyway)
        "posedirs": posedirs.astype(np.float32),
        "J_regressor": j_regressor,
        "J": J,
        "weights": weights,
        "kintree_table": kintree,
        "vert_sym_idxs": mirror.astype(np.int64),
        "bs_style": "lbs",
        "bs_type": "lrotmin",
        SYNTHETIC_KEY: True,
        "gtacli_gender": gender,
        "gtacli_seed": np.int64(seed),
    }


# Where the 9 extra and 17 H36M joints sit, relative to the SMPL joints of the synthetic model.
def _regressor_targets(smpl: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    J = smpl["J"]
    v = smpl["v_template"]
    s = (v[:, 1].max() - v[:, 1].min()) / 1.7
    head_top = np.array([0.0, v[:, 1].max() - 0.01 * s, J[15, 2]])
    t = {
        "right_hip_extra": J[2] + np.array([-0.01, -0.04, 0.0]) * s,
        "left_hip_extra": J[1] + np.array([0.01, -0.04, 0.0]) * s,
        "neck_extra": 0.5 * (J[12] + J[9]) + np.array([0.0, 0.05, 0.0]) * s,
        "headtop": head_top,
        "pelvis_extra": 0.5 * (J[1] + J[2]) + np.array([0.0, 0.02, 0.0]) * s,
        "thorax_extra": 0.5 * (J[16] + J[17]) + np.array([0.0, -0.02, 0.0]) * s,
        "spine_extra": 0.5 * (J[3] + J[6]),
        "jaw_extra": J[15] + np.array([0.0, 0.0, 0.05]) * s,
        "head_extra": J[15] + np.array([0.0, 0.08, 0.0]) * s,
    }
    for name, j in (
        ("knee", (4, 5)),
        ("ankle", (7, 8)),
        ("shoulder", (16, 17)),
        ("elbow", (18, 19)),
        ("wrist", (20, 21)),
    ):
        t[f"left_{name}"], t[f"right_{name}"] = J[j[0]], J[j[1]]
    return t


def make_synthetic_regressors(smpl: Dict[str, np.ndarray]) -> Tuple[np.ndarray, np.ndarray]:
    """(J_regressor_extra (9, 6890), J_regressor_h36m (17, 6890)) for a synthetic model: sparse non-negative rows
    summing to 1, each a convex combination of vertices around the body part its joint names
    (`conventions.EXTRA_JOINTS`, `conventions.H36M_17`)."""
    v = np.asarray(smpl["v_template"], dtype=np.float64)
    mirror = np.asarray(smpl["vert_sym_idxs"]) if "vert_sym_idxs" in smpl else mirror_by_position(v)
    targets = _regressor_targets(smpl)
    out = []
    for names in (EXTRA_JOINTS, H36M_17):
        pts = np.stack([targets[n] for n in names])
        pts[np.array(name_mirror(names)) == np.arange(len(names)), 0] = 0.0
        arm = np.array([any(p in n for p in ("shoulder", "elbow", "wrist")) for n in names])
        axes = np.where(arm[:, None], np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0]))
        out.append(_regressor_rows(v, mirror, pts, name_mirror(names), axes, REGRESSOR_VERTICES))
    return out[0], out[1]


def write_synthetic_smpl(path: PathLike, gender: str = "neutral", seed: int = 0) -> Path:
    """Write `make_synthetic_smpl(gender, seed)` as a plain pickle of numpy arrays (atomically) and return the path.
    It loads with `gtacli.body.smpl.load_smpl_arrays` (restricted) and with `smplx.SMPL` directly."""
    data = make_synthetic_smpl(gender, seed)
    return atomic_write_bytes(path, pickle.dumps(data, protocol=4))
