"""Per-track motion from a demo's results: the frames of each track's span, its rotations and root translation
in the original camera, one shape per track, and the one camera of the video.

* Camera: principal point at the image centre, one focal length F for the whole video: the results' own focal when
  it is the same for every entry (`--focal-length`), else the median of the per-person focal lengths. The
  demo's `transl` (computed with each entry's focal f_i) keeps its x and y and scales its depth by F / f_i: the root
  then projects to the same pixel at the same size through camera F.
* Gaps inside a track's span are filled: rotations by spherical interpolation, translation linearly, between the
  nearest frames that have the track.
* Shape: the mean of the track's betas (an animation carries one body).
* Single images (no frame rate) give one-frame motions, one per person of each image.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np

from gtacli.body.rotations import axis_angle_to_matrix_np
from gtacli.errors import BadFileError, PathLike
from gtacli.export.rotations import matrix_to_quaternion, quaternion_to_matrix, slerp

DEFAULT_MIN_FRAMES = 5
IMAGE_FRAME_RATE = 30.0  # frame rate written for one-frame animations of images (they have none)
# What an export reads from results.npz.
NEEDED_FIELDS = (
    "frame_index",
    "person_id",
    "smpl_pose",
    "betas",
    "transl",
    "focal_length",
    "frame_size_hw",
    "fps",
)


@dataclass
class VideoCamera:
    """The original camera: principal point at the image centre, focal length in pixels."""

    width: int
    height: int
    focal: float

    @property
    def yfov(self) -> float:
        """Vertical field of view, radians (glTF's camera parameter)."""
        return float(2.0 * np.arctan(0.5 * self.height / self.focal))

    @property
    def intrinsics(self) -> np.ndarray:
        return np.array(
            [[self.focal, 0.0, self.width / 2.0], [0.0, self.focal, self.height / 2.0], [0.0, 0.0, 1.0]]
        )


@dataclass
class Motion:
    """One track's animation in the camera frame (x right, y down, z forward), metres."""

    name: str  # file stem: track_<id> (or frame<i>_person<id> for a folder of images)
    track_id: int
    frames: np.ndarray  # (T,) video frame indices, consecutive
    rotmats: np.ndarray  # (T, 24, 3, 3) SMPL local rotations, joint 0 = global orientation
    transl: np.ndarray  # (T, 3) root translation in camera F's frame
    betas: np.ndarray  # (10,) the track's shape (mean over its frames)
    fps: float
    filled: List[int] = field(default_factory=list)  # frame indices filled by interpolation
    rows: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # results rows of observed frames

    @property
    def times(self) -> np.ndarray:
        """Seconds of each frame on the video's clock (frame index / fps)."""
        return self.frames.astype(np.float64) / self.fps


def check_results(results: Mapping, path: Optional[PathLike] = None) -> None:
    """One BadFileError naming what is missing when `results` cannot be exported."""
    missing = [k for k in NEEDED_FIELDS if k not in results]
    if missing:
        raise BadFileError(
            f"has no {', '.join(missing)}: it is not a gtacli demo results.npz with SMPL parameters",
            path=path,
            fix="pass the results.npz written by `gtacli demo` (re-run the demo to write a complete one)",
        )
    if len(np.asarray(results["person_id"])) == 0:
        raise BadFileError(
            "holds no person (no SMPL parameters, no tracks): there is nothing to animate",
            path=path,
            fix="run the demo on a video where a person is found, or give boxes with --bbox / --bbox-file",
        )


def video_camera(results: Mapping) -> VideoCamera:
    size = np.asarray(results["frame_size_hw"], np.int64).reshape(-1, 2)
    height, width = (int(v) for v in size[0])
    focal = np.asarray(results["focal_length"], np.float64).reshape(-1)
    same = np.allclose(focal, focal[0], rtol=1e-6, atol=0.0)
    return VideoCamera(width, height, float(focal[0] if same else np.median(focal)))


def build_motions(
    results: Mapping, *, min_frames: int = DEFAULT_MIN_FRAMES, path: Optional[PathLike] = None
) -> Tuple[List[Motion], VideoCamera, List[str]]:
    """(motions, camera, notes): one motion per track at least `min_frames` long (videos), notes on the skipped."""
    check_results(results, path)
    camera = video_camera(results)
    frame_index = np.asarray(results["frame_index"], np.int64).reshape(-1)
    person_id = np.asarray(results["person_id"], np.int64).reshape(-1)
    pose = np.asarray(results["smpl_pose"], np.float64).reshape(-1, 24, 3)
    betas = np.asarray(results["betas"], np.float64).reshape(-1, 10)
    focal = np.asarray(results["focal_length"], np.float64).reshape(-1)
    transl = np.asarray(results["transl"], np.float64).reshape(-1, 3).copy()
    transl[:, 2] *= camera.focal / focal
    rotmats = axis_angle_to_matrix_np(pose)
    fps = float(np.asarray(results["fps"]))
    notes: List[str] = []
    motions: List[Motion] = []
    if not fps > 0:  # images: every person of every frame on their own
        single = len(np.asarray(results["frame_size_hw"]).reshape(-1, 2)) == 1
        for row in np.argsort(frame_index * (person_id.max() + 1) + person_id, kind="stable"):
            f, pid = int(frame_index[row]), int(person_id[row])
            name = f"track_{pid}" if single else f"frame{f:06d}_person{pid}"
            motions.append(
                Motion(
                    name,
                    pid,
                    np.array([f]),
                    rotmats[[row]],
                    transl[[row]],
                    betas[row],
                    IMAGE_FRAME_RATE,
                    rows=np.array([row]),
                )  # fmt: skip
            )
        return motions, camera, notes
    for pid in np.unique(person_id):
        rows = np.flatnonzero(person_id == pid)
        rows = rows[np.argsort(frame_index[rows], kind="stable")]
        frames = frame_index[rows]
        if len(np.unique(frames)) != len(frames):
            raise BadFileError(
                f"track {pid} has two entries for one frame",
                path=path,
                fix="pass the results.npz written by `gtacli demo`",
            )
        span = int(frames[-1] - frames[0] + 1)
        if span < min_frames:
            notes.append(
                f"track {pid} skipped: {span} frame(s) (frames {frames[0]}-{frames[-1]}), shorter than "
                f"{min_frames}"
            )
            continue
        rot, trans, filled = fill_gaps(frames, rotmats[rows], transl[rows])
        motions.append(
            Motion(
                f"track_{pid}",
                int(pid),
                np.arange(frames[0], frames[-1] + 1),
                rot,
                trans,
                betas[rows].mean(axis=0),
                fps,
                filled,
                rows,
            )  # fmt: skip
        )
    return motions, camera, notes


def fill_gaps(
    frames: np.ndarray, rotmats: np.ndarray, transl: np.ndarray
) -> Tuple[np.ndarray, np.ndarray, List[int]]:
    """Values on every frame of frames[0]..frames[-1]: known frames kept, missing ones interpolated (slerp per
    joint, linear translation) between their nearest known neighbours. Returns (rotmats, transl, filled)."""
    span = np.arange(frames[0], frames[-1] + 1)
    out_rot = np.empty((len(span),) + rotmats.shape[1:])
    out_trans = np.empty((len(span), 3))
    known: Dict[int, int] = {int(f): i for i, f in enumerate(frames)}
    quats = matrix_to_quaternion(rotmats)
    filled: List[int] = []
    for t, f in enumerate(span):
        i = known.get(int(f))
        if i is not None:
            out_rot[t] = rotmats[i]
            out_trans[t] = transl[i]
            continue
        after = int(np.searchsorted(frames, f))
        before = after - 1
        w = (f - frames[before]) / (frames[after] - frames[before])
        out_rot[t] = quaternion_to_matrix(slerp(quats[before], quats[after], w))
        out_trans[t] = (1.0 - w) * transl[before] + w * transl[after]
        filled.append(int(f))
    return out_rot, out_trans, filled
