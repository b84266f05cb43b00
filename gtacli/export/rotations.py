"""numpy float64 rotation helpers the exporters need: quaternions (glTF's x, y, z, w order), spherical
interpolation, Euler angles in any of BVH's six orders, and the up-axis frames."""

from __future__ import annotations

from typing import Tuple

import numpy as np

AXES = "XYZ"
# Camera frame of the demo: x right, y down, z forward (OpenCV). The scene frames below are rotations of it.
UP_FRAMES = {
    # glTF: y up, the camera looks along -z
    "y": np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]),
    # Blender / SMPL-X tools: z up, the camera looks along +y
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]]),
}
# SMPL's canonical body frame (y up, facing +z) expressed in each scene frame: the rest pose stands upright.
REST_FRAMES = {
    "y": np.eye(3),
    "z": np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]]),
}


def matrix_to_quaternion(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 4) unit quaternions (x, y, z, w), w >= 0 (Shepperd's method:
    each matrix uses the largest of w, x, y, z to divide by, so no case loses precision)."""
    rot = np.asarray(rot, np.float64)
    m = rot.reshape(-1, 3, 3)
    r = {(i, j): m[:, i, j] for i in range(3) for j in range(3)}
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    pick = np.argmax(np.stack([trace, r[0, 0], r[1, 1], r[2, 2]], axis=1), axis=1)
    s = 2.0 * np.sqrt(np.maximum(np.stack([1.0 + trace, 1.0 + r[0, 0] - r[1, 1] - r[2, 2],
                                           1.0 + r[1, 1] - r[0, 0] - r[2, 2], 1.0 + r[2, 2] - r[0, 0] - r[1, 1]],
                                          axis=1), 1e-300))  # fmt: skip
    candidates = np.stack(
        [
            np.stack([r[2, 1] - r[1, 2], r[0, 2] - r[2, 0], r[1, 0] - r[0, 1], 0.25 * s[:, 0] ** 2], 1)
            / s[:, :1],
            np.stack([0.25 * s[:, 1] ** 2, r[0, 1] + r[1, 0], r[0, 2] + r[2, 0], r[2, 1] - r[1, 2]], 1)
            / s[:, 1:2],
            np.stack([r[0, 1] + r[1, 0], 0.25 * s[:, 2] ** 2, r[1, 2] + r[2, 1], r[0, 2] - r[2, 0]], 1)
            / s[:, 2:3],
            np.stack([r[0, 2] + r[2, 0], r[1, 2] + r[2, 1], 0.25 * s[:, 3] ** 2, r[1, 0] - r[0, 1]], 1)
            / s[:, 3:4],
        ],
        axis=1,
    )
    q = candidates[np.arange(len(m)), pick]
    q *= np.where(q[:, 3:4] < 0, -1.0, 1.0)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    return q.reshape(rot.shape[:-2] + (4,))


def quaternion_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions (x, y, z, w) -> (..., 3, 3)."""
    q = np.asarray(q, np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    x, y, z, w = np.moveaxis(q, -1, 0)
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)], -1),
            np.stack([2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)], -1),
            np.stack([2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)], -1),
        ],
        -2,
    )


def continuous(quats: np.ndarray) -> np.ndarray:
    """Flip signs along axis 0 so consecutive quaternions (T, ..., 4) lie in the same hemisphere: linear
    interpolation between keys (glTF's LINEAR is slerp) then takes the short way round."""
    out = np.array(quats, np.float64, copy=True)
    for t in range(1, len(out)):
        flip = np.sum(out[t] * out[t - 1], axis=-1, keepdims=True) < 0
        out[t] = np.where(flip, -out[t], out[t])
    return out


def slerp(q0: np.ndarray, q1: np.ndarray, t: float) -> np.ndarray:
    """Spherical interpolation of unit quaternions (..., 4) at fraction t, along the shorter arc."""
    q0 = np.asarray(q0, np.float64)
    q1 = np.asarray(q1, np.float64)
    dot = np.sum(q0 * q1, axis=-1, keepdims=True)
    q1 = np.where(dot < 0, -q1, q1)
    dot = np.abs(dot)
    theta = np.arccos(np.clip(dot, -1.0, 1.0))
    sin = np.sin(theta)
    near = sin < 1e-9  # (almost) equal rotations: linear blend is exact enough and avoids 0/0
    w0 = np.where(near, 1.0 - t, np.sin((1.0 - t) * theta) / np.where(near, 1.0, sin))
    w1 = np.where(near, t, np.sin(t * theta) / np.where(near, 1.0, sin))
    out = w0 * q0 + w1 * q1
    return out / np.linalg.norm(out, axis=-1, keepdims=True)


def axis_matrix(axis: int, angle: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation by `angle` (radians, any shape) about axis 0/1/2."""
    angle = np.asarray(angle, np.float64)
    c, s = np.cos(angle), np.sin(angle)
    out = np.zeros(angle.shape + (3, 3))
    i, j = (axis + 1) % 3, (axis + 2) % 3
    out[..., axis, axis] = 1.0
    out[..., i, i] = c
    out[..., j, j] = c
    out[..., j, i] = s
    out[..., i, j] = -s
    return out


def _about_axis(m: np.ndarray, axis: int) -> np.ndarray:
    """Angle of rotation matrices (..., 3, 3) that turn about `axis` only."""
    i, j = (axis + 1) % 3, (axis + 2) % 3
    return np.arctan2(m[..., j, i], m[..., i, i])


def matrix_to_euler(rot: np.ndarray, order: str) -> np.ndarray:
    """(..., 3, 3) -> (..., 3) angles (radians) for `order` (e.g. "ZYX"), such that
    R = R_order[0](a0) · R_order[1](a1) · R_order[2](a2) — the order BVH channels list them in.
    Exact at gimbal lock too (the third angle is then 0 and the first takes the whole turn)."""
    i, j, k = (AXES.index(c) for c in order.upper())
    if len({i, j, k}) != 3:
        raise ValueError(f"Euler order {order!r} must name three different axes")
    sign = 1.0 if (i, j, k) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1.0
    rot = np.asarray(rot, np.float64)
    cos_b = np.hypot(rot[..., i, i], rot[..., i, j])
    b = np.arctan2(sign * rot[..., i, k], cos_b)
    c = np.where(cos_b > 1e-9, np.arctan2(-sign * rot[..., i, j], rot[..., i, i]), 0.0)
    # the first angle from what is left, so the three always multiply back to R
    rest = rot @ np.swapaxes(axis_matrix(j, b) @ axis_matrix(k, c), -1, -2)
    a = _about_axis(rest, i)
    return np.stack([a, b, c], axis=-1)


def euler_to_matrix(angles: np.ndarray, order: str) -> np.ndarray:
    """Inverse of `matrix_to_euler`."""
    angles = np.asarray(angles, np.float64)
    i, j, k = (AXES.index(c) for c in order.upper())
    return axis_matrix(i, angles[..., 0]) @ axis_matrix(j, angles[..., 1]) @ axis_matrix(k, angles[..., 2])


def scene_frames(up: str) -> Tuple[np.ndarray, np.ndarray]:
    """(camera -> scene rotation U, SMPL-canonical -> scene rest frame C) for `up` = "y" | "z"."""
    if up not in UP_FRAMES:
        raise ValueError(f"up must be 'y' or 'z', not {up!r}")
    return UP_FRAMES[up], REST_FRAMES[up]
