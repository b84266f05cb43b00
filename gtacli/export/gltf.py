"""glTF 2.0 binary (.glb) of one track: SMPL skeleton (24 joint nodes named as SMPL names its joints), the
shaped SMPL mesh skinned with SMPL's own weights, optional pose correctives as 207 morph targets, per-frame
joint rotations and root translation, and the video's camera. Written with pygltflib (`gtacli[export]`).

Frames (see `gtacli.export.rotations`): the demo's camera frame (x right, y down, z forward) is turned into the
scene frame U (`--up y`: glTF's y up, camera looking along -z; `--up z`: z up, camera looking along +y), and
the rest pose is SMPL's canonical body turned by C into that scene's upright. Joint k's node then carries
`C R_k C^T` (the root: `U R_0 C^T`, translated to `U (J_0 + t)`), the mesh and inverse bind matrices are the
rest mesh and joints turned by C, and skinning reproduces `U · SMPL(pose, betas) + U t` exactly (with the
correctives; without them it is SMPL's plain linear blend skinning).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from gtacli.errors import MissingFileError
from gtacli.export.animation import Motion, VideoCamera
from gtacli.export.rig import (
    NUM_JOINTS,
    NUM_POSE_CORRECTIVES,
    SMPL_JOINT_NAMES,
    SMPL_PARENTS,
    Rig,
    pose_features,
)
from gtacli.export.rotations import continuous, matrix_to_quaternion, scene_frames
from gtacli.io.atomic import atomic_path
from gtacli.render.overlay import vertex_normals

FLOAT, UNSIGNED_BYTE, UNSIGNED_SHORT, UNSIGNED_INT = 5126, 5121, 5123, 5125
ARRAY_BUFFER, ELEMENT_ARRAY_BUFFER = 34962, 34963
MIN_SKIN_WEIGHT = (
    1e-5  # smaller SMPL weights are dropped (moves a vertex by < 0.02 mm) and the rest renormalised
)
CAMERA_ZNEAR_M = 0.05
CORRECTIVE_RANGE = 2.0  # |entries of R - I| <= 2: morph weight = (x + 2) / 4 stays in [0, 1]
BODY_COLOUR = (0.65, 0.74, 0.86, 1.0)  # linear RGBA, close to the overlay's blue-grey
# Rough size the correctives add: 207 targets of (V, 3) float32 positions.
CORRECTIVES_MB_PER_FILE = round(NUM_POSE_CORRECTIVES * 6890 * 3 * 4 / 2**20, 1)


def require_pygltflib():
    try:
        import pygltflib
    except ImportError as exc:  # optional extra
        raise MissingFileError(
            "pygltflib is not installed: it writes the glTF files of --export-animation",
            fix='pip install "gtacli[export]"',
        ) from exc
    return pygltflib


class _Blob:
    """The binary chunk: arrays appended 4-byte aligned, one buffer view and accessor each."""

    def __init__(self, gltf: Any, lib: Any):
        self.gltf, self.lib = gltf, lib
        self.data = bytearray()

    def add(self, array: np.ndarray, kind: str, component: int, target: Optional[int] = None,
            bounds: bool = False, normalized: bool = False) -> int:  # fmt: skip
        array = np.ascontiguousarray(array)
        while len(self.data) % 4:
            self.data.append(0)
        view = self.lib.BufferView(
            buffer=0, byteOffset=len(self.data), byteLength=array.nbytes, target=target
        )
        self.data.extend(array.tobytes())
        self.gltf.bufferViews.append(view)
        flat = array.reshape(len(array), -1)
        accessor = self.lib.Accessor(
            bufferView=len(self.gltf.bufferViews) - 1,
            componentType=component,
            count=len(array),
            type=kind,
            normalized=normalized or None,
        )
        if bounds:
            accessor.min = [float(v) for v in flat.min(axis=0)]
            accessor.max = [float(v) for v in flat.max(axis=0)]
        self.gltf.accessors.append(accessor)
        return len(self.gltf.accessors) - 1


def skin_influences(weights: np.ndarray) -> List[tuple]:
    """SMPL's (V, 24) weights as glTF JOINTS_n / WEIGHTS_n sets of four, largest first, tiny ones dropped."""
    w = np.where(weights >= MIN_SKIN_WEIGHT, weights, 0.0)
    w = w / w.sum(axis=1, keepdims=True)
    order = np.argsort(-w, axis=1, kind="stable")
    count = int((w > 0).sum(axis=1).max())
    sets = []
    for start in range(0, max(count, 1), 4):
        idx = order[:, start : start + 4]
        vals = np.take_along_axis(w, idx, axis=1)
        if idx.shape[1] < 4:
            pad = 4 - idx.shape[1]
            idx = np.pad(idx, ((0, 0), (0, pad)))
            vals = np.pad(vals, ((0, 0), (0, pad)))
        idx = np.where(vals > 0, idx, 0)
        sets.append((idx.astype(np.uint8), vals.astype(np.float32)))
    # float32 rounding: put the last few ulps of each vertex's sum on its largest weight
    total = sum(v.astype(np.float64).sum(axis=1) for _, v in sets)
    sets[0][1][:, 0] += (1.0 - total).astype(np.float32)
    return sets


def morph_weights(features: np.ndarray) -> np.ndarray:
    """Pose features x (entries of R - I) -> the file's morph weights (x + 2) / 4 in [0, 1]."""
    return (features + CORRECTIVE_RANGE) / (2.0 * CORRECTIVE_RANGE)


def _column_major(matrix: np.ndarray) -> List[float]:
    return [float(v) for v in np.asarray(matrix).T.reshape(-1)]


def write_glb(
    path: Path,
    motion: Motion,
    rig: Rig,
    camera: VideoCamera,
    *,
    up: str = "y",
    correctives: bool = False,
    extras: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write `motion` as a .glb (atomically). `rig` without a mesh gives a skeleton-only file."""
    lib = require_pygltflib()
    U, C = scene_frames(up)
    gltf = lib.GLTF2(
        asset=lib.Asset(version="2.0", generator="gtacli", extras=dict(extras or {})),
        scene=0,
        scenes=[lib.Scene(name=motion.name, nodes=[])],
    )
    blob = _Blob(gltf, lib)
    rest = rig.rest_joints @ C.T
    offsets = rest.copy()
    offsets[1:] -= rest[np.asarray(SMPL_PARENTS[1:])]
    for k in range(NUM_JOINTS):
        children = [c for c in range(NUM_JOINTS) if SMPL_PARENTS[c] == k]
        gltf.nodes.append(
            lib.Node(
                name=SMPL_JOINT_NAMES[k],
                translation=[float(v) for v in offsets[k]],
                children=children or None,
            )
        )
    gltf.scenes[0].nodes.append(0)
    ibm = np.tile(np.eye(4), (NUM_JOINTS, 1, 1))
    ibm[:, :3, 3] = -rest
    ibm_accessor = blob.add(np.transpose(ibm, (0, 2, 1)).astype(np.float32), "MAT4", FLOAT)
    gltf.skins.append(
        lib.Skin(name="smpl", joints=list(range(NUM_JOINTS)), skeleton=0, inverseBindMatrices=ibm_accessor)
    )

    mesh_node = None
    if rig.has_mesh:
        mesh_node = _add_mesh(gltf, lib, blob, rig, C, correctives)
        gltf.scenes[0].nodes.append(mesh_node)
    cam_node = _add_camera(gltf, lib, camera, U, motion)
    gltf.scenes[0].nodes.append(cam_node)
    _add_animation(gltf, lib, blob, motion, rig, U, C, mesh_node if correctives else None)

    gltf.buffers.append(lib.Buffer(byteLength=len(blob.data)))
    gltf.set_binary_blob(bytes(blob.data))
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"".join(gltf.save_to_bytes()))
    return path


def _add_mesh(gltf: Any, lib: Any, blob: _Blob, rig: Rig, C: np.ndarray, correctives: bool) -> int:
    vertices = rig.vertices @ C.T
    faces = np.asarray(rig.faces)
    normals = vertex_normals(vertices, faces, untouched=(0.0, 1.0, 0.0))  # glTF normals must be unit
    if correctives:  # the base carries the weights' offset (module docstring)
        vertices = vertices - CORRECTIVE_RANGE * rig.posedirs.sum(axis=2) @ C.T
    attributes: Dict[str, int] = {
        "POSITION": blob.add(vertices.astype(np.float32), "VEC3", FLOAT, ARRAY_BUFFER, bounds=True),
        "NORMAL": blob.add(normals.astype(np.float32), "VEC3", FLOAT, ARRAY_BUFFER),
    }
    for n, (joints, weights) in enumerate(skin_influences(rig.weights)):
        attributes[f"JOINTS_{n}"] = blob.add(joints, "VEC4", UNSIGNED_BYTE, ARRAY_BUFFER)
        attributes[f"WEIGHTS_{n}"] = blob.add(weights, "VEC4", FLOAT, ARRAY_BUFFER)
    index_type = (np.uint16, UNSIGNED_SHORT) if len(vertices) < 65535 else (np.uint32, UNSIGNED_INT)
    indices = blob.add(faces.reshape(-1).astype(index_type[0]), "SCALAR", index_type[1], ELEMENT_ARRAY_BUFFER)
    gltf.materials.append(
        lib.Material(
            name="body",
            pbrMetallicRoughness=lib.PbrMetallicRoughness(
                baseColorFactor=list(BODY_COLOUR), metallicFactor=0.0, roughnessFactor=0.8
            ),
        )
    )
    primitive = lib.Primitive(attributes=lib.Attributes(**attributes), indices=indices, material=0)
    mesh = lib.Mesh(name="smpl_body", primitives=[primitive])
    if correctives:
        names = []
        for k in range(NUM_POSE_CORRECTIVES):
            offset = (2.0 * CORRECTIVE_RANGE * rig.posedirs[:, :, k] @ C.T).astype(np.float32)
            target = blob.add(offset, "VEC3", FLOAT, ARRAY_BUFFER, bounds=True)
            primitive.targets.append(lib.Attributes(POSITION=target))
            joint, entry = divmod(k, 9)
            names.append(f"pose_{SMPL_JOINT_NAMES[joint + 1]}_{entry // 3}{entry % 3}")
        mesh.weights = [0.5] * NUM_POSE_CORRECTIVES
        mesh.extras = {"targetNames": names}
    gltf.meshes.append(mesh)
    gltf.nodes.append(lib.Node(name="smpl_body", mesh=0, skin=0))
    return len(gltf.nodes) - 1


def _add_camera(gltf: Any, lib: Any, camera: VideoCamera, U: np.ndarray, motion: Motion) -> int:
    far = float(max(10.0, 4.0 * np.max(np.abs(motion.transl[:, 2])) + 10.0))
    gltf.cameras.append(
        lib.Camera(
            name="video_camera",
            type="perspective",
            perspective=lib.Perspective(
                yfov=camera.yfov, aspectRatio=camera.width / camera.height, znear=CAMERA_ZNEAR_M, zfar=far
            ),
            extras={"width": camera.width, "height": camera.height, "focal_px": camera.focal},
        )
    )
    # glTF cameras look along their -z with +y up; the video camera looks along +z with -y up (OpenCV).
    rotation = U @ half_pixel_turn(camera.focal) @ np.diag([1.0, -1.0, -1.0])
    quat = matrix_to_quaternion(rotation)
    gltf.nodes.append(lib.Node(name="video_camera", camera=0, rotation=[float(v) for v in quat]))
    return len(gltf.nodes) - 1


def half_pixel_turn(focal: float) -> np.ndarray:
    """(3, 3) turn of the camera (OpenCV axes) that aims its axis half a pixel up and left.

    The demo projects with pixel centres at integer coordinates and the principal point at (w/2, h/2) (OpenCV's
    convention); a glTF camera's axis goes through the middle of the image, which in that convention is
    (w/2 - 1/2, h/2 - 1/2). Turning the camera by about 0.5 / F radians makes every point land on the overlay's
    pixel (to second order in the angle) instead of half a pixel up-left of it.
    """
    target = np.array([-0.5 / focal, -0.5 / focal, 1.0])
    target /= np.linalg.norm(target)
    axis = np.cross([0.0, 0.0, 1.0], target)
    sin, cos = np.linalg.norm(axis), target[2]
    if sin < 1e-15:
        return np.eye(3)
    k = axis / sin
    skew = np.array([[0.0, -k[2], k[1]], [k[2], 0.0, -k[0]], [-k[1], k[0], 0.0]])
    return np.eye(3) + sin * skew + (1.0 - cos) * skew @ skew


def _add_animation(gltf: Any, lib: Any, blob: _Blob, motion: Motion, rig: Rig, U: np.ndarray, C: np.ndarray,
                   mesh_node: Optional[int]) -> None:  # fmt: skip
    times = blob.add(motion.times.astype(np.float32), "SCALAR", FLOAT, bounds=True)
    local = C @ motion.rotmats @ C.T  # (T, 24, 3, 3)
    local[:, 0] = U @ motion.rotmats[:, 0] @ C.T
    quats = continuous(matrix_to_quaternion(local)).astype(np.float32)
    root = (rig.rest_joints[0] + motion.transl) @ U.T
    animation = lib.Animation(name=motion.name)

    def channel(node: int, path: str, values: np.ndarray, kind: str) -> None:
        output = blob.add(values, kind, FLOAT)
        animation.samplers.append(lib.AnimationSampler(input=times, output=output, interpolation="LINEAR"))
        animation.channels.append(
            lib.AnimationChannel(
                sampler=len(animation.samplers) - 1, target=lib.AnimationChannelTarget(node=node, path=path)
            )
        )

    channel(0, "translation", root.astype(np.float32), "VEC3")
    for k in range(NUM_JOINTS):
        channel(k, "rotation", np.ascontiguousarray(quats[:, k]), "VEC4")
    if mesh_node is not None:
        weights = morph_weights(pose_features(motion.rotmats))
        channel(mesh_node, "weights", weights.reshape(-1).astype(np.float32), "SCALAR")
    gltf.animations.append(animation)
