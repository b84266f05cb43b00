"""BVH (plain text) of one track: the 24-joint SMPL hierarchy with that person's bone offsets, root position
channels (metres) and rotation channels (degrees), `Frame Time` = 1 / fps. Also a small reader and its forward
kinematics, which the tests and `benchmarks/check_animation_export.py` use to check a file against the body model.

Same frames as the glTF file (`gtacli.export.gltf`): offsets are SMPL's rest skeleton turned by C (upright in the
scene), the root carries `U R_0 C^T` at `U (J_0 + t)`, the other joints `C R_k C^T`. The root rotates
with its up axis outermost (Y X Z for --up y, Z X Y for --up z), the other joints Z Y X; every order multiplies
back exactly, also at gimbal lock.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import List, Tuple

import numpy as np

from gtacli.errors import BadFileError
from gtacli.export.animation import Motion
from gtacli.export.rig import NUM_JOINTS, SMPL_JOINT_NAMES, SMPL_PARENTS, Rig
from gtacli.export.rotations import axis_matrix, matrix_to_euler, scene_frames
from gtacli.io.atomic import atomic_write_text

ROOT_ORDER = {"y": "YXZ", "z": "ZXY"}
JOINT_ORDER = "ZYX"
END_SITE_SHARE = 0.5  # a leaf's end site continues its bone by this share of the bone


def write_bvh(path: Path, motion: Motion, rig: Rig, *, up: str = "y") -> Path:
    U, C = scene_frames(up)
    rest = rig.rest_joints @ C.T
    offsets = rest.copy()
    offsets[1:] -= rest[np.asarray(SMPL_PARENTS[1:])]
    offsets[0] = 0.0  # the root's position channels carry where it is
    lines: List[str] = ["HIERARCHY"]

    def joint(k: int, depth: int) -> None:
        pad = "  " * depth
        order = ROOT_ORDER[up] if k == 0 else JOINT_ORDER
        rot_channels = " ".join(f"{axis}rotation" for axis in order)
        lines.append(f"{pad}{'ROOT' if k == 0 else 'JOINT'} {SMPL_JOINT_NAMES[k]}")
        lines.append(f"{pad}{{")
        lines.append(f"{pad}  OFFSET {_fmt(offsets[k])}")
        if k == 0:
            lines.append(f"{pad}  CHANNELS 6 Xposition Yposition Zposition {rot_channels}")
        else:
            lines.append(f"{pad}  CHANNELS 3 {rot_channels}")
        children = [c for c in range(NUM_JOINTS) if SMPL_PARENTS[c] == k]
        for c in children:
            joint(c, depth + 1)
        if not children:
            lines.append(f"{pad}  End Site")
            lines.append(f"{pad}  {{")
            lines.append(f"{pad}    OFFSET {_fmt(END_SITE_SHARE * offsets[k])}")
            lines.append(f"{pad}  }}")
        lines.append(f"{pad}}}")

    joint(0, 0)
    local = C @ motion.rotmats @ C.T
    local[:, 0] = U @ motion.rotmats[:, 0] @ C.T
    root_angles = np.degrees(matrix_to_euler(local[:, 0], ROOT_ORDER[up]))
    joint_angles = np.degrees(matrix_to_euler(local[:, 1:], JOINT_ORDER))
    root = (rig.rest_joints[0] + motion.transl) @ U.T
    lines += ["MOTION", f"Frames: {len(motion.frames)}", f"Frame Time: {1.0 / motion.fps:.9f}"]
    order = _hierarchy_order()
    for t in range(len(motion.frames)):
        values = [root[t], root_angles[t]] + [joint_angles[t, k - 1] for k in order[1:]]
        lines.append(" ".join(_fmt(v) for v in values))
    return atomic_write_text(Path(path), "\n".join(lines) + "\n")


def _hierarchy_order() -> List[int]:
    """Joints in the order the HIERARCHY lists them (depth first), which is the order of the MOTION values."""
    out: List[int] = []

    def visit(k: int) -> None:
        out.append(k)
        for c in range(NUM_JOINTS):
            if SMPL_PARENTS[c] == k:
                visit(c)

    visit(0)
    return out


def _fmt(values) -> str:
    return " ".join(f"{float(v):.6f}" for v in np.atleast_1d(values))


@dataclass
class BvhFile:
    names: List[str]
    parents: List[int]
    offsets: np.ndarray  # (J, 3)
    channels: List[List[str]]
    frame_time: float
    motion: np.ndarray  # (T, total channels)

    def joint_positions(self) -> np.ndarray:
        """Forward kinematics of the file: (T, J, 3) world positions of every joint (end sites left out)."""
        frames = len(self.motion)
        positions = np.zeros((frames, len(self.names), 3))
        rotations = np.zeros((frames, len(self.names), 3, 3))
        column = 0
        for j, channels in enumerate(self.channels):
            values = self.motion[:, column : column + len(channels)]
            column += len(channels)
            pos = np.tile(self.offsets[j], (frames, 1))
            axes = ""
            angles = []
            for c, name in enumerate(channels):
                if name.endswith("position"):
                    pos[:, "XYZ".index(name[0])] += values[:, c]
                else:
                    axes += name[0]
                    angles.append(np.radians(values[:, c]))
            local = np.tile(np.eye(3), (frames, 1, 1))
            for axis, angle in zip(axes, angles):
                local = local @ axis_matrix("XYZ".index(axis), angle)
            p = self.parents[j]
            if p < 0:
                positions[:, j] = pos
                rotations[:, j] = local
            else:
                positions[:, j] = positions[:, p] + np.einsum("tij,tj->ti", rotations[:, p], pos)
                rotations[:, j] = rotations[:, p] @ local
        return positions


def read_bvh(path: Path) -> BvhFile:
    """Parse a BVH file (joints, offsets, channels, frame time, motion values)."""
    path = Path(path)
    tokens = path.read_text(encoding="utf-8").split()
    names: List[str] = []
    parents: List[int] = []
    offsets: List[Tuple[float, float, float]] = []
    channels: List[List[str]] = []
    stack: List[int] = []
    i = 0
    in_end_site = False
    try:
        while tokens[i] != "MOTION":
            tok = tokens[i]
            if tok in ("ROOT", "JOINT"):
                names.append(tokens[i + 1])
                parents.append(stack[-1] if stack else -1)
                i += 2
            elif tok == "End":
                in_end_site = True
                i += 2
            elif tok == "{":
                if not in_end_site:
                    stack.append(len(names) - 1)
                i += 1
            elif tok == "}":
                if in_end_site:
                    in_end_site = False
                else:
                    stack.pop()
                i += 1
            elif tok == "OFFSET":
                if not in_end_site:
                    offsets.append(tuple(float(v) for v in tokens[i + 1 : i + 4]))
                i += 4
            elif tok == "CHANNELS":
                n = int(tokens[i + 1])
                channels.append(tokens[i + 2 : i + 2 + n])
                i += 2 + n
            else:
                i += 1
        frames = int(tokens[i + 2])
        frame_time = float(tokens[i + 5])
        values = np.array([float(v) for v in tokens[i + 6 :]])
        width = sum(len(c) for c in channels)
        motion = values.reshape(frames, width)
    except (IndexError, ValueError) as exc:
        raise BadFileError(f"is not a readable BVH file ({exc})", path=path) from exc
    return BvhFile(names, parents, np.array(offsets), channels, frame_time, motion)
