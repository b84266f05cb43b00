"""The demo's small shared types: its configuration, the per-stage timer, a person in a frame, the read
stage's result, the bodies of a chunk's people (`PeopleBody`). Kept apart so the pipeline, the engine, the writers and the replay can all import them without
cycles.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import numpy as np

from gtacli.io import video

DEFAULT_BATCH_SIZE = 4


@dataclass
class DemoConfig:
    """Everything the demo needs; the CLI fills it from options."""

    input: Path
    checkpoint: Optional[Path]
    data_root: Path
    output: Path
    bbox: Optional[np.ndarray] = None  # (4,) xywh for every frame
    bbox_file: Optional[Path] = None
    detector: str = "auto"
    yolox_weights: Optional[Path] = (
        None  # where `gtacli fetch detector` puts the YOLOX weights (asset manifest)
    )
    yolox_sha256: Optional[str] = None  # their pinned hash (asset manifest)
    max_people: Optional[int] = None
    device: Any = "auto"
    engine: str = "auto"  # what runs the network: auto | torch | onnxruntime (gtacli.model.engines)
    amp: bool = False  # --amp: the torch engine under autocast (bfloat16 on the CPU, float16 on CUDA)
    smooth: bool = False
    side_view: bool = False
    render: bool = True
    save_vertices: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    focal_length: Optional[float] = None  # px, original camera; None = per person 5000 * crop side / 224
    max_frames: Optional[int] = None  # only the first N frames (the summary says so)
    draw_boxes: Optional[bool] = None  # None: on for videos, off for images
    export_mesh: bool = False
    save_frames: bool = False
    from_results: Optional[Path] = None  # re-render / export saved results without the network
    max_missed_s: float = 1.0  # a track survives this long without a detection
    # --refine (gtacli.demo.refine): fit the network's bodies to keypoints from --keypoints (OpenPose JSON), an
    # OpenPose --bbox-file, or the keypoint model (`gtacli fetch keypoints`: its place and recorded hash)
    refine: bool = False
    keypoints: Optional[Path] = None
    keypoint_model: Optional[Path] = None
    keypoint_sha256: Optional[str] = None
    refine_smooth: float = 1.0  # weight of the temporal term along a video's tracks (0: off)
    refine_iterations: Optional[int] = None  # None: the fitter's own
    force: bool = False  # --from-results: accept results whose frame count or size differs from the input's
    # Called with (staging folder, results.npz arrays) once the results are complete and before the output is
    # moved into place; what it returns goes into results.json as "animation" (the CLI's --export-animation
    # passes gtacli.export's writer here: the demo itself does not know about export formats).
    after_results: Optional[Callable[[Path, Dict[str, np.ndarray]], Dict[str, Any]]] = None


@dataclass
class Timer:
    """Wall-clock and process CPU seconds per stage: `t = timer.start()` ... `t = timer.add("stage", t)`."""

    seconds: Dict[str, float] = field(default_factory=dict)
    cpu_seconds: Dict[str, float] = field(default_factory=dict)
    _cpu_mark: float = 0.0

    def start(self) -> float:
        self._cpu_mark = time.process_time()
        return time.perf_counter()

    def add(self, stage: str, start: float) -> float:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - start
        self.cpu_seconds[stage] = self.cpu_seconds.get(stage, 0.0) + cpu - self._cpu_mark
        self._cpu_mark = cpu
        return now


@dataclass
class Person:
    """One person in one frame, as the pipeline carries it from tracking to the results."""

    frame: int
    box: np.ndarray
    score: float
    pid: int
    source: str
    center: np.ndarray
    side: float


@dataclass
class Input:
    """The read stage's result: the frame source, how many frames to process, and what was noticed."""

    source: video.FrameSource
    frames_total: Optional[int]
    frames_to_do: Optional[int]
    decode_error: Optional[int] = (
        None  # set when decoding stopped early: the frame count the container promised
    )


@dataclass(frozen=True, eq=False)
class PeopleBody:
    """The bodies of a chunk's P people (`gtacli.demo.engine.Engine.body`), float64 numpy, row k = person k of
    the chunk: what results.npz, the meshes and the overlays are made from. Frozen: the writers read it from
    several threads (`gtacli.demo.output.Writers`); nothing rebinds a field."""

    pose_aa: np.ndarray
    """(P, 72) axis-angle pose, global orient first (results.npz `smpl_pose`)."""
    vertices: np.ndarray
    """(P, 6890, 3) mesh vertices, body-model frame (no translation)."""
    verts_cam: np.ndarray
    """(P, 6890, 3) `vertices + transl_crop`: the mesh in the crop camera, what the overlays draw."""
    j49: np.ndarray
    """(P, 49, 3) smpl_49 joints, body-model frame."""
    j24: np.ndarray
    """(P, 24, 3) SMPL's skeleton joints, body-model frame."""
    j14: np.ndarray
    """(P, 14, 3) LSP-14 joints from the H36M regressor, body-model frame."""
    kp2d_49: np.ndarray
    """(P, 49, 2) `j49` projected into the image (pixels)."""
    kp2d_14: np.ndarray
    """(P, 14, 2) `j14` projected into the image (pixels)."""
    transl_crop: np.ndarray
    """(P, 3) translation in the crop camera (f = 5000 px, principal point = crop centre), metres."""
    transl: np.ndarray
    """(P, 3) translation in the original camera (principal point = image centre, focal `focal`), metres."""
    focal: np.ndarray
    """(P,) focal length (px) of the original camera that `transl` is for."""
    K_img: np.ndarray
    """(P, 3, 3) the crop camera's intrinsics in image pixels (the overlays' camera)."""
