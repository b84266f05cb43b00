"""The demo's compute: `Engine` (the network, the SMPL body model and the renderer, on one device).

The camera helpers it uses (crop square, common camera, full-image translation) live in `gtacli/body/camera.py`.
"""

from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np
import torch

from gtacli.body.camera import (
    FOCAL_LENGTH,
    IMG_RES,
    cam_to_translation,
    crop_square,
    crop_to_image_intrinsics,
    full_image_translation,
    project_points,
    to_common_camera,
)
from gtacli.body.conventions import H36M_TO_J14
from gtacli.body.rotations import axis_angle_from_rotmat
from gtacli.body.smpl import BodyModel
from gtacli.demo.config import DemoConfig, PeopleBody, Person, Timer
from gtacli.demo.track import TrackedBox
from gtacli.device import resolve_device
from gtacli.layout import DataLayout
from gtacli.model.engines import load_engine
from gtacli.model.predict import CropPredictions, predict_crops
from gtacli.render.overlay import closed_surface, draw_overlay

SIDE_VIEW_DEG = 90.0  # the side view turns the mesh by this much about the vertical axis
SIDE_VIEW_BACKGROUND_BGR = (255, 255, 255)


class Engine:
    """The network (unless replaying saved results), the body model and the renderer, on one device."""

    def __init__(self, config: DemoConfig, notes: List[str], need_network: bool = True):
        self.config = config
        self.device = resolve_device(config.device)
        layout = DataLayout(config.data_root)
        self.network = None  # gtacli.model.engines: torch or onnxruntime (--engine)
        self.report = None
        if need_network:
            self.network = load_engine(
                config.checkpoint, layout, self.device, config.engine, info=notes.append, amp=config.amp
            )
            self.report = self.network.report
        self.body_model = BodyModel.from_layout(layout, gender="neutral", device=self.device)
        self.faces = np.asarray(self.body_model.faces, np.int64)  # (13776, 3)
        # checked once here rather than for every frame drawn (back faces of a closed surface are skipped)
        self.faces_closed = closed_surface(self.faces, self.body_model.num_vertices)
        if layout.is_synthetic:
            notes.append(
                "this data root is SYNTHETIC (gtacli sample-data): the body model is not the real SMPL"
            )

    def infer(
        self, frames_by_index: Dict[int, np.ndarray], people: List[Person], timer: Timer
    ) -> CropPredictions:
        """Crops -> network, in batches: rotmat (P,24,3,3), betas (P,10), cam (P,3) as float64 numpy."""
        if not people:
            return CropPredictions.empty()
        started = [timer.start()]

        def mark(stage: str) -> None:  # 'preprocess' (crop + normalise) and 'model', per batch
            started[0] = timer.add(stage, started[0])

        return predict_crops(
            self.network,
            [frames_by_index[p.frame] for p in people],
            np.stack([p.center for p in people]),
            np.array([p.side for p in people], np.float64),
            self.config.batch_size,
            mark=mark,
        )

    def body(
        self,
        people: List[Person],
        outputs: CropPredictions,
        sizes_hw: Dict[int, Tuple[int, int]],
        timer: Timer,
    ) -> PeopleBody:
        """SMPL forward + cameras + 2D joints for every person of the chunk (numpy float64 out)."""
        t = timer.start()
        count = len(people)
        rotmat = torch.as_tensor(outputs.rotmat, dtype=torch.float32, device=self.device).reshape(
            -1, 24, 3, 3
        )
        betas = torch.as_tensor(outputs.betas, dtype=torch.float32, device=self.device).reshape(-1, 10)
        with torch.inference_mode():
            smpl = self.body_model(betas, rotmat[:, 1:], rotmat[:, :1], pose2rot=False)
            pose_aa = axis_angle_from_rotmat(rotmat.double())
            transl_crop = (
                cam_to_translation(torch.as_tensor(outputs.cam, dtype=torch.float64)).numpy().reshape(-1, 3)
            )
        verts = smpl.vertices.double().cpu().numpy()
        j49 = smpl.joints.double().cpu().numpy()
        j14 = smpl.joints_h36m[:, list(H36M_TO_J14)].double().cpu().numpy()
        K_img = np.array(
            [crop_to_image_intrinsics(p.center, p.side, FOCAL_LENGTH, IMG_RES) for p in people], np.float64
        ).reshape(-1, 3, 3)
        side = np.array([p.side for p in people], np.float64)
        centers = np.array([p.center for p in people], np.float64).reshape(-1, 2)
        image_wh = np.array([sizes_hw[p.frame][::-1] for p in people], np.float64).reshape(-1, 2)
        if self.config.focal_length:
            focal = np.full(count, float(self.config.focal_length))
        else:
            focal = FOCAL_LENGTH * side / IMG_RES  # the crop camera's focal length in image pixels
        transl = full_image_translation(outputs.cam.reshape(-1, 3), centers, side, image_wh, focal)
        timer.add("smpl", t)
        return PeopleBody(
            pose_aa=pose_aa.cpu().numpy(),
            vertices=verts,
            verts_cam=verts + transl_crop[:, None],
            j49=j49,
            j24=smpl.joints_smpl.double().cpu().numpy(),
            j14=j14,
            kp2d_49=project_points(j49, transl_crop, K=K_img),
            kp2d_14=project_points(j14, transl_crop, K=K_img),
            transl_crop=transl_crop,
            transl=transl,
            focal=focal,
            K_img=K_img,
        )

    def render(self, frame: np.ndarray, verts_cam: List[np.ndarray], Ks: List[np.ndarray]) -> np.ndarray:
        """Every person's mesh drawn on the frame (one z-buffer for all people), on the model's device: INTO
        `frame` itself, which is returned (the demo no longer needs a frame once its overlay is drawn; a 1080p
        copy per frame was a measurable share of the overlay cost). A read-only frame is copied first."""
        if not (frame.flags.writeable and frame.flags.c_contiguous):
            frame = np.array(frame, order="C")  # one writable C-ordered copy
        if not verts_cam:
            return frame
        verts, K = to_common_camera(verts_cam, Ks, frame.shape[:2])
        draw_overlay(frame, verts, self.faces, K, device=self.device, closed=self.faces_closed)
        return frame

    def render_side(
        self, frame_shape: Tuple[int, ...], verts_cam: List[np.ndarray], Ks: List[np.ndarray]
    ) -> np.ndarray:
        """Each person's mesh turned SIDE_VIEW_DEG about the vertical axis through its own centre, drawn where the
        person stands, on a plain background. (Turning the whole group instead would swing people whose depths
        differ out of the picture.)"""
        canvas = np.empty((frame_shape[0], frame_shape[1], 3), np.uint8)
        canvas[:] = SIDE_VIEW_BACKGROUND_BGR
        if not verts_cam:
            return canvas
        angle = np.deg2rad(SIDE_VIEW_DEG)
        rot = np.array(
            [[np.cos(angle), 0.0, np.sin(angle)], [0.0, 1.0, 0.0], [-np.sin(angle), 0.0, np.cos(angle)]]
        )
        turned = []
        for verts in verts_cam:
            centre = 0.5 * (verts.min(axis=0) + verts.max(axis=0))
            turned.append((verts - centre) @ rot.T + centre)
        verts, K = to_common_camera(turned, Ks, canvas.shape[:2])
        draw_overlay(canvas, verts, self.faces, K, alpha=1.0, device=self.device, closed=self.faces_closed)
        return canvas


def person_from_box(frame: int, entry: TrackedBox) -> Person:
    center, side = crop_square(entry.box)
    return Person(
        frame,
        np.asarray(entry.box, np.float64),
        float(entry.score),
        int(entry.track_id),
        entry.source,
        center,
        side,
    )
