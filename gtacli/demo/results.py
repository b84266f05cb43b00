"""What `gtacli demo` writes per frame and person: the fields of results.npz and their accumulator."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

# results.npz: name -> (shape, meaning); N = person entries, F = frames.
RESULT_FIELDS: Dict[str, Tuple[str, str]] = {
    "frame_index": ("(N,) int64", "frame of each entry (0-based, input order)"),
    "person_id": (
        "(N,) int64",
        "track id: one per person across the frames of a video (0, 1, ...); per image otherwise",
    ),
    "smpl_pose": ("(N,72) float32", "SMPL pose, axis-angle, global orient first"),
    "global_orient": ("(N,3) float32", "smpl_pose[:, :3]"),
    "body_pose": ("(N,23,3) float32", "smpl_pose[:, 3:] per joint"),
    "betas": ("(N,10) float32", "SMPL shape"),
    "pred_cam": ("(N,3) float32", "weak-perspective crop camera [s, tx, ty]"),
    "transl_crop": ("(N,3) float32", "(tx, ty, 2*5000/(224*s)): crop camera translation, metres"),
    "transl": (
        "(N,3) float32",
        "translation in the original camera (principal point = image centre), metres",
    ),
    "focal_length": ("(N,) float32", "focal length (px) of the original camera used for `transl`"),
    "bbox_xywh": ("(N,4) float32", "person box in image pixels"),
    "bbox_score": ("(N,) float32", "detector score (1 for user boxes, 0 for interpolated boxes)"),
    "bbox_source": (
        "(N,) str",
        "detected | given (user box) | interpolated (between two boxes of the track) | predicted (track's motion "
        "prediction, kept alive by a body part detected inside it)",
    ),
    "crop_center": ("(N,2) float32", "crop centre in image pixels (= box centre)"),
    "crop_size": ("(N,) float32", "crop side in image pixels (1.25 x max(w, h))"),
    "keypoints2d_smpl49": ("(N,49,2) float32", "smpl_49 joints projected into the image, pixels"),
    "keypoints2d_j14": (
        "(N,14,2) float32",
        "LSP-14 joints (H36M regressor) projected into the image, pixels",
    ),
    "keypoints3d_smpl49": ("(N,49,3) float32", "smpl_49 joints, metres, SMPL body-model frame"),
    "keypoints3d_j14": (
        "(N,14,3) float32",
        "LSP-14 joints from the H36M regressor, metres, body-model frame",
    ),
    "keypoints3d_smpl24": (
        "(N,24,3) float32",
        "SMPL's 24 skeleton joints, metres, body-model frame (what animation exports are checked against)",
    ),
    "vertices": ("(N,6890,3) float32", "mesh vertices, body-model frame (only with --save-vertices)"),
    "frame_names": ("(F,) str", "frame names (image file names, or 000000.. for videos)"),
    "frame_size_hw": ("(F,2) int64", "height, width of each frame"),
    "frame_has_person": ("(F,) bool", "False where no person was found/given"),
    "frames_without_person": ("(M,) int64", "indices of frames without any person"),
    "fps": ("() float64", "frame rate of a video input (0 for images)"),
}


class DemoResults:
    """Accumulates per-frame and per-person arrays for results.npz."""

    PERSON_KEYS = (
        "frame_index", "person_id", "smpl_pose", "betas", "pred_cam", "transl_crop", "transl", "focal_length",
        "bbox_xywh", "bbox_score", "bbox_source", "crop_center", "crop_size", "keypoints2d_smpl49", "keypoints2d_j14",
        "keypoints3d_smpl49", "keypoints3d_j14", "keypoints3d_smpl24",
    )  # fmt: skip

    def __init__(self, save_vertices: bool):
        self.save_vertices = save_vertices
        self.frame_names: List[str] = []
        self.frame_sizes: List[Tuple[int, int]] = []
        self.frame_has_person: List[bool] = []
        self.parts: Dict[str, List[np.ndarray]] = {k: [] for k in self.PERSON_KEYS + ("vertices",)}
        self.extra_keys: List[str] = []

    def add_frame(self, name: str, size_hw: Tuple[int, int], has_person: bool) -> None:
        self.frame_names.append(name)
        self.frame_sizes.append(size_hw)
        self.frame_has_person.append(has_person)

    def add_people(
        self,
        people: List[Any],
        outputs: Dict[str, np.ndarray],
        body: Dict[str, np.ndarray],
        extra: Optional[Dict[str, np.ndarray]] = None,
    ) -> None:
        """`extra`: more per-person fields (e.g. `--refine`'s, `gtacli.demo.refine.REFINE_FIELDS`)."""
        if not people:
            return
        p = self.parts
        for key, value in (extra or {}).items():
            if key not in self.extra_keys:
                self.extra_keys.append(key)
                p[key] = []
            p[key].append(np.asarray(value))
        p["frame_index"].append(np.array([x.frame for x in people], np.int64))
        p["person_id"].append(np.array([x.pid for x in people], np.int64))
        p["smpl_pose"].append(body["pose_aa"])
        p["betas"].append(outputs["betas"])
        p["pred_cam"].append(outputs["cam"])
        p["transl_crop"].append(body["transl_crop"])
        p["transl"].append(body["transl"])
        p["focal_length"].append(body["focal"])
        p["bbox_xywh"].append(np.array([x.box for x in people]))
        p["bbox_score"].append(np.array([x.score for x in people]))
        p["bbox_source"].append(np.array([x.source for x in people], dtype=str))
        p["crop_center"].append(np.array([x.center for x in people]))
        p["crop_size"].append(np.array([x.side for x in people]))
        p["keypoints2d_smpl49"].append(body["kp2d_49"])
        p["keypoints2d_j14"].append(body["kp2d_14"])
        p["keypoints3d_smpl49"].append(body["j49"])
        p["keypoints3d_j14"].append(body["j14"])
        p["keypoints3d_smpl24"].append(body["j24"])
        if self.save_vertices:
            p["vertices"].append(body["vertices"])

    @property
    def num_people_entries(self) -> int:
        return int(sum(len(a) for a in self.parts["frame_index"]))

    def frames_per_track(self) -> Dict[int, int]:
        """Track id -> number of frames it appears in."""
        if not self.parts["person_id"]:
            return {}
        ids, counts = np.unique(np.concatenate(self.parts["person_id"]), return_counts=True)
        return {int(i): int(c) for i, c in zip(ids, counts)}

    def box_source_counts(self) -> Dict[str, int]:
        if not self.parts["bbox_source"]:
            return {}
        names, counts = np.unique(np.concatenate(self.parts["bbox_source"]), return_counts=True)
        return {str(n): int(c) for n, c in zip(names, counts)}

    def arrays(self, fps: float) -> Dict[str, np.ndarray]:
        empty_shapes = {
            "smpl_pose": (72,), "betas": (10,), "pred_cam": (3,), "transl_crop": (3,), "transl": (3,),
            "bbox_xywh": (4,), "crop_center": (2,), "keypoints2d_smpl49": (49, 2), "keypoints2d_j14": (14, 2),
            "keypoints3d_smpl49": (49, 3), "keypoints3d_j14": (14, 3), "keypoints3d_smpl24": (24, 3),
            "vertices": (6890, 3),
        }  # fmt: skip
        out: Dict[str, np.ndarray] = {}
        for key in self.PERSON_KEYS + (("vertices",) if self.save_vertices else ()):
            parts = self.parts[key]
            if parts:
                value = np.concatenate(parts)
            else:
                value = np.zeros((0,) + empty_shapes.get(key, ()))
            if key in ("frame_index", "person_id"):
                out[key] = value.astype(np.int64)
            elif key == "bbox_source":
                out[key] = value.astype(str)
            else:
                out[key] = value.astype(np.float32)
        for key in self.extra_keys:
            value = np.concatenate(self.parts[key])
            out[key] = value if value.dtype == bool else value.astype(np.float32)
        out["global_orient"] = out["smpl_pose"][:, :3]
        out["body_pose"] = out["smpl_pose"][:, 3:].reshape(-1, 23, 3)
        has = np.array(self.frame_has_person, bool)
        out["frame_names"] = np.array(self.frame_names, dtype=str)
        out["frame_size_hw"] = np.array(self.frame_sizes, np.int64).reshape(-1, 2)
        out["frame_has_person"] = has
        out["frames_without_person"] = np.flatnonzero(~has).astype(np.int64)
        out["fps"] = np.array(fps, np.float64)
        return out

    def write(self, path: Path, fps: float) -> None:
        from gtacli.io.atomic import atomic_path

        arrays = self.arrays(fps)
        with atomic_path(path) as tmp:
            np.savez(tmp, **arrays)
