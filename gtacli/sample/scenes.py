"""Synthetic scenes: bodies with known SMPL parameters, placed before a pinhole camera and rendered.

For one dataset (`DatasetSpec`) `make_scenes` draws SMPL parameters (pose mixture of `poses.py`, small betas,
a global orient facing the camera), runs the body model, places each body with a camera translation so that
its silhouette lies inside the image, renders it over a procedural background and returns everything the
annotation writers need: 2D projections and camera-frame 3D positions of the smpl_49 joints, the mesh's
silhouette box, and the parameters themselves. All quantities are exact (float64 where it matters); the
annotation writers decide what a dataset reveals and which noise it carries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, List, Optional

import numpy as np
import torch

from gtacli.body.camera import project_points
from gtacli.body.rotations import axis_angle_to_matrix_np, matrix_to_axis_angle_np, rot_y
from gtacli.render.overlay import render_overlay
from gtacli.sample.backgrounds import background_for
from gtacli.sample.datasets import DatasetSpec
from gtacli.sample.poses import PoseMixture, facing_camera_orient, sample_betas

# Body placement: the silhouette's height takes this share of the image height (before clamping to fit).
BODY_HEIGHT_FRACTION = (0.55, 0.8)
MAX_WIDTH_FRACTION = 0.9  # and at most this share of the width
IMAGE_MARGIN_PX = 2  # the silhouette box stays this far inside the image
PLACEMENT_ITERATIONS = 6
# Within a sequence, frames vary around the sequence's first pose by this much (rad).
SEQUENCE_POSE_JITTER_RAD = 0.05
SEQUENCE_YAW_STEP_DEG = 4.0
# Mannequin colour (BGR): lit, it is brighter than the backgrounds (backgrounds.BACKGROUND_LEVELS), so it stands out.
BODY_COLOR_BGR = (150.0, 200.0, 245.0)


@dataclass
class SceneBatch:
    """N rendered samples of one dataset. Camera frame: x right, y down, z forward, metres."""

    spec: DatasetSpec
    image_paths: List[str]
    body_pose: np.ndarray  # (N, 69) axis-angle
    global_orient: np.ndarray  # (N, 3) axis-angle, camera frame
    betas: np.ndarray  # (N, 10)
    transl: np.ndarray  # (N, 3) camera translation added to the SMPL-frame mesh
    genders: List[str]  # 'n' / 'm' / 'f'
    joints_cam: np.ndarray  # (N, 49, 3) smpl_49 joints in the camera frame
    joints_uv: np.ndarray  # (N, 49, 2) their projections (px)
    silhouette_xyxy: np.ndarray  # (N, 4) projected mesh extent [x0, y0, x1, y1]
    intrinsics: np.ndarray  # (3, 3)

    def __len__(self) -> int:
        return len(self.image_paths)

    @property
    def inside(self) -> np.ndarray:
        """(N, 49) bool: joint projects inside the image and lies in front of the camera."""
        w, h = self.spec.image_size
        u, v = self.joints_uv[..., 0], self.joints_uv[..., 1]
        return (u >= 0) & (u <= w - 1) & (v >= 0) & (v <= h - 1) & (self.joints_cam[..., 2] > 0)


def intrinsics_of(spec: DatasetSpec) -> np.ndarray:
    """(3, 3) pinhole intrinsics: focal `spec.focal_px`, principal point at the image centre."""
    w, h = spec.image_size
    return np.array([[spec.focal_px, 0, (w - 1) / 2.0], [0, spec.focal_px, (h - 1) / 2.0], [0, 0, 1.0]])


def draw_parameters(
    spec: DatasetSpec,
    n: int,
    frames_per_sequence: int,
    mixture: PoseMixture,
    rng: np.random.Generator,
):
    """SMPL parameters of `n` samples grouped in sequences: (body_pose (n,69), global_orient (n,3), betas (n,10)).

    Frames of one sequence share the betas and vary a little around the first frame's pose and orientation."""
    n_seq = -(-n // frames_per_sequence)
    base_pose = mixture.sample(rng, n_seq)
    base_orient = facing_camera_orient(rng, n_seq)
    base_betas = sample_betas(rng, n_seq)
    jitter = rng.normal(0.0, SEQUENCE_POSE_JITTER_RAD, (n, base_pose.shape[1]))
    body_pose = np.empty((n, base_pose.shape[1]))
    global_orient = np.empty((n, 3))
    betas = np.empty((n, base_betas.shape[1]))
    for i in range(n):
        seq, frame = divmod(i, frames_per_sequence)
        body_pose[i] = base_pose[seq] + (jitter[i] if frame else 0.0)
        # turn slowly about the body's vertical axis (camera y) from frame to frame
        turn = rot_y(np.deg2rad(SEQUENCE_YAW_STEP_DEG * frame))
        global_orient[i] = matrix_to_axis_angle_np(turn @ axis_angle_to_matrix_np(base_orient[seq]))
        betas[i] = base_betas[seq]
    return body_pose, global_orient, betas


def place_body(
    vertices: np.ndarray, intrinsics: np.ndarray, image_size, rng: np.random.Generator
) -> np.ndarray:
    """A camera translation (3,) that puts the SMPL-frame mesh (V,3) inside the image at a random spot/size."""
    w, h = image_size
    f = intrinsics[0, 0]
    lo, hi = vertices.min(axis=0), vertices.max(axis=0)
    centre = (lo + hi) / 2.0
    extent = hi - lo
    frac = rng.uniform(*BODY_HEIGHT_FRACTION)
    z = f * max(extent[1] / (frac * h), extent[0] / (MAX_WIDTH_FRACTION * w)) + extent[2] / 2.0
    box_w, box_h = f * extent[0] / z, f * extent[1] / z
    du = rng.uniform(-1, 1) * max(0.0, (w - box_w) / 2.0 - IMAGE_MARGIN_PX) * 0.9
    dv = rng.uniform(-1, 1) * max(0.0, (h - box_h) / 2.0 - IMAGE_MARGIN_PX) * 0.9
    transl = np.array([du * z / f, dv * z / f, z]) - centre
    # perspective makes the near side bigger than the estimate: shift (or back off) until it fits
    for _ in range(PLACEMENT_ITERATIONS):
        uv = project_points(vertices, transl, K=intrinsics)
        x0, y0 = uv.min(axis=0)
        x1, y1 = uv.max(axis=0)
        m = IMAGE_MARGIN_PX
        if x1 - x0 > w - 1 - 2 * m or y1 - y0 > h - 1 - 2 * m:
            transl[2] *= 1.1
            continue
        shift_u = max(0.0, m - x0) - max(0.0, x1 - (w - 1 - m))
        shift_v = max(0.0, m - y0) - max(0.0, y1 - (h - 1 - m))
        if shift_u == 0 and shift_v == 0:
            break
        depth = transl[2] + centre[2]
        transl[0] += shift_u * depth / f
        transl[1] += shift_v * depth / f
    return transl


def make_scenes(
    spec: DatasetSpec,
    n: int,
    frames_per_sequence: int,
    body_model,
    mixture: PoseMixture,
    rng: np.random.Generator,
    write_image: Callable[[str, np.ndarray], None],
    seed: int = 0,
    genders: Optional[List[str]] = None,
    on_image: Optional[Callable[[], None]] = None,
) -> SceneBatch:
    """Draw, pose, place and render `n` samples of `spec`; `write_image(relative_path, bgr)` stores each image.
    Image i's background is `backgrounds.background_for(seed, spec.name, i, h, w)`.

    `body_model` is a `BodyModel` (neutral) or, with `genders` ('m'/'f' per sample), a `GenderedBodyModel`."""
    body_pose, global_orient, betas = draw_parameters(spec, n, frames_per_sequence, mixture, rng)
    with torch.no_grad():
        args = (
            torch.as_tensor(betas, dtype=torch.float32),
            torch.as_tensor(body_pose, dtype=torch.float32),
            torch.as_tensor(global_orient, dtype=torch.float32),
        )
        out = (
            body_model(*args, gender=genders, pose2rot=True) if genders else body_model(*args, pose2rot=True)
        )
    vertices = out.vertices.double().numpy()
    joints = out.joints.double().numpy()
    faces = [np.asarray(_faces_of(body_model, g), dtype=np.int64) for g in (genders or ["n"] * n)]
    intrinsics = intrinsics_of(spec)
    w, h = spec.image_size
    transl = np.empty((n, 3))
    joints_uv = np.empty((n, joints.shape[1], 2))
    boxes = np.empty((n, 4))
    paths: List[str] = []
    for i in range(n):
        transl[i] = place_body(vertices[i], intrinsics, spec.image_size, rng)
        verts_cam = vertices[i] + transl[i]
        uv = project_points(verts_cam, K=intrinsics)
        boxes[i] = [*uv.min(axis=0), *uv.max(axis=0)]
        joints_uv[i] = project_points(joints[i], transl[i], K=intrinsics)
        background = background_for(seed, spec.name, i, h, w)
        image = render_body(background, verts_cam, faces[i], intrinsics)
        seq, frame = divmod(i, frames_per_sequence)
        paths.append(spec.image_name(seq, frame))
        write_image(paths[-1], image)
        if on_image is not None:
            on_image()
    return SceneBatch(
        spec=spec,
        image_paths=paths,
        body_pose=body_pose,
        global_orient=global_orient,
        betas=betas,
        transl=transl,
        genders=list(genders) if genders else ["n"] * n,
        joints_cam=joints + transl[:, None, :],
        joints_uv=joints_uv,
        silhouette_xyxy=boxes,
        intrinsics=intrinsics,
    )


def _faces_of(body_model, gender: str) -> np.ndarray:
    """The triangles of the model that posed a sample (synthetic genders need not share one topology)."""
    models = getattr(body_model, "models", None)
    if models is None:
        return body_model.faces
    return models[body_model.gender_names([gender])[0]].faces


def render_body(background: np.ndarray, vertices_cam: np.ndarray, faces: np.ndarray, intrinsics: np.ndarray):
    """The mesh (camera frame, metres) rendered opaque over `background` (H,W,3 uint8 BGR) -> uint8 BGR."""
    return render_overlay(background, vertices_cam, faces, intrinsics, color=BODY_COLOR_BGR, alpha=1.0)
