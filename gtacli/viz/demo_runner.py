"""The demo, without a CLI: frames in -> people -> crops -> SMPL -> overlays, meshes and per-frame results out.

`run_demo` is a pipeline of named stages; each is a function below:

1. **read** (`open_input`): an image, a folder or a video (`gtacli.viz.video`); a video is scanned once for its
   frame count and timestamps, and a video that stops decoding part-way keeps the frames before it;
2. **detect** (`detect_people`): user boxes (`--bbox` / `--bbox-file`, also OpenPose JSON) or a detector
   (`gtacli.viz.detect`) on every frame;
3. **track** (`gtacli.viz.track.track_sequence`): identities over the whole video (a folder's images are taken
   one by one: they may be unrelated photos),
   fragments dropped, gaps interpolated, `max_people` applied;
4. **crop + infer** (`Engine.infer`): crop per docs/reproduction.md §9 (centre = box centre, square side
   `DEMO_BBOX_SCALE · max(w, h)`, 224x224, `gtacli.data.crop`), batched `HMREstimator` forward under
   `torch.inference_mode` (or, with `--from-results`, the saved parameters instead of the network);
5. **smooth** (optional One-Euro per person, `gtacli.viz.smooth`);
6. **body** (`Engine.body`): neutral SMPL vertices, smpl_49 and J14 joints, cameras, 2D joints;
7. **render** (`Engine.render`, `gtacli.viz.render` on the model's device) with boxes and track ids;
8. **write** (`Writers`): overlay video / PNGs, meshes, results.npz and results.json, in a temporary folder
   moved into place when complete (`gtacli.viz.demo_output`).

Camera conventions (also written into results.json):

* `transl_crop` = `(tx, ty, 2·f/(224·s))`, f = 5000: the crop camera (focal 5000 px, principal point at the crop
  centre). Seen from the original image this is the camera `K_img = [[f·W/224, 0, cx], [0, f·W/224, cy], [0, 0, 1]]`
  (W = crop side, (cx, cy) = box centre; mmhuman3d's `convert_bbox_to_intrinsic`). Overlays and
  `keypoints2d_*` use exactly this camera: `uv = K_img · (X + transl_crop)`.
* `transl` = the translation in the ORIGINAL camera, whose principal point is the image centre (w/2, h/2) and
  whose focal length is `focal_length` (per person `f·W/224` by default, or the fixed `--focal-length`):
  `tz = 2·F/(s·W)`, `tx' = tx + 2·(cx − w/2)/(s·W)`, `ty' = ty + 2·(cy − h/2)/(s·W)`.
* `keypoints3d_*` and `vertices` are in the SMPL root (body-model) frame (no translation): add `transl_crop` for the
  crop camera or `transl` for the original camera. Exported meshes (`--export-mesh`) are `vertices + transl`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import cv2
import numpy as np
import torch

from gtacli.body.camera import (
    DEMO_BBOX_SCALE,
    FOCAL_LENGTH,
    IMG_RES,
    cam_to_translation,
    crop_to_image_intrinsics,
)
from gtacli.body.conventions import H36M_TO_J14
from gtacli.body.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from gtacli.body.smpl import BodyModel
from gtacli.data.crop import bbox_to_center_scale, crop, normalize
from gtacli.device import resolve_device
from gtacli.errors import BadFileError, GtacliError, UsageError
from gtacli.io.atomic import atomic_write_json
from gtacli.io.safe import load_npz
from gtacli.layout import DataLayout
from gtacli.model.loading import load_estimator
from gtacli.viz import detect, video
from gtacli.viz.demo_output import StagedOutput, check_output_dir, display_name, write_obj, write_png
from gtacli.viz.demo_results import RESULT_FIELDS, DemoResults
from gtacli.viz.render import render_overlay
from gtacli.viz.smooth import PersonSmoother
from gtacli.viz.track import TrackConfig, TrackedBox, given_boxes, track_sequence

DEFAULT_BATCH_SIZE = 4
FRAMES_PER_CHUNK_PER_BATCH = 2  # frames read per chunk = batch_size x this (bounded memory, full batches)
OVERLAY_DIR = "overlays"
FRAMES_DIR = "frames"
MESH_DIR = "meshes"
OVERLAY_VIDEO = "overlay.mp4"
RESULTS_NPZ = "results.npz"
RESULTS_JSON = "results.json"
SIDE_VIEW_DEG = 90.0  # the side view turns the mesh by this much about the vertical axis
SIDE_VIEW_BACKGROUND_BGR = (255, 255, 255)
CAM_DENOM_EPS = 1e-9  # guards s * W against a zero camera scale, like docs/reproduction.md §4.4's 1e-9
BOX_COLOR_BGR = (0, 200, 255)
BOX_THICKNESS_PER_1000_PX = 3  # box line width scales with the frame size
DECODE_TOLERANCE = (
    0.01  # a video decoding fewer frames than its container says by more than this share + 1 frame
)


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


ProgressFn = Callable[..., None]


def run_demo(
    config: DemoConfig,
    progress: Optional[ProgressFn] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Run the demo; returns the results.json summary. Raises GtacliError on bad input, leaving no output.

    A video that stops decoding part-way is processed up to there, written, and then reported as an error
    naming the frame (the summary's `decode_error`). Notes for the user go to `log` once the run has succeeded.
    """
    notes: List[str] = []
    timer = Timer()
    t_total = time.perf_counter()
    validate(config)
    check_output_dir(Path(config.output))
    t = timer.start()
    inp = open_input(config, notes)
    timer.add("video_io", t)
    replay = Replay(config.from_results) if config.from_results is not None else None
    t = timer.start()
    engine = Engine(config, notes, need_network=replay is None)  # loads checkpoint + SMPL before any output
    timer.add("setup", t)

    if replay is not None:
        people = replay.people(inp.frames_to_do)
        detector_info: Optional[Dict[str, Any]] = None
    else:
        people, detector_info = detect_people(config, inp, timer, progress)
    stage = StagedOutput(Path(config.output))
    try:
        writers = Writers(stage.tmp_dir, config, inp.source)
        results = DemoResults(config.save_vertices)
        smoother = make_smoother(config, inp.source, notes)
        frames_done = mesh_frames(
            config, inp, people, engine, replay, smoother, writers, results, timer, progress
        )
        t = timer.start()
        writers.close(frames_done)
        summary = make_summary(
            config,
            inp,
            results,
            frames_done,
            engine,
            detector_info,
            smoother,
            timer,
            time.perf_counter() - t_total,
        )
        summary["outputs"] = writers.describe()
        summary["notes"] = notes
        results.write(
            stage.tmp_dir / RESULTS_NPZ, float(inp.source.fps or 0.0) if inp.source.is_video else 0.0
        )
        atomic_write_json(stage.tmp_dir / RESULTS_JSON, summary)
        timer.add("video_io", t)
        stage.commit()
    except BaseException:
        stage.discard()
        raise
    summary["output"] = display_name(str(config.output))
    for note in notes:
        (log or (lambda message: None))(f"note: {note}")
    if inp.decode_error:
        raise BadFileError(
            f"frame {frames_done} of {inp.decode_error} cannot be decoded; the frames before it were processed "
            f"and written to "
            f"{display_name(str(config.output))}",
            path=display_name(str(config.input)),
            fix="re-encode the video (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) to process the rest",
        )
    return summary


def validate(config: DemoConfig) -> None:
    """Option checks that need no file."""
    if config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if config.max_people is not None and config.max_people < 1:
        raise UsageError("--max-people must be at least 1")
    if config.max_frames is not None and config.max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    if config.focal_length is not None and not config.focal_length > 0:
        raise UsageError("--focal-length must be positive (pixels)")
    if not (np.isfinite(config.max_missed_s) and config.max_missed_s >= 0):
        raise UsageError("--max-missed must be a number of seconds >= 0")
    if config.bbox is not None and config.bbox_file is not None:
        raise UsageError("give either --bbox or --bbox-file, not both")
    if config.from_results is not None and (config.bbox is not None or config.bbox_file is not None):
        raise UsageError("--from-results re-uses the saved boxes; drop --bbox / --bbox-file")
    if config.from_results is None and config.checkpoint is None:
        raise UsageError("--checkpoint is required (or --from-results results.npz)")


# ----------------------------------------------------------------------------------------------- 1. read


def open_input(config: DemoConfig, notes: List[str]) -> Input:
    source = video.open_frames(config.input)
    frames_total = source.frame_count_hint
    decode_error = None
    if source.is_video:
        hint = source.frame_count_hint
        frames_total = scan_video(source)
        if source.fps_note:
            notes.append(source.fps_note)
        if hint and hint - frames_total > 1 + DECODE_TOLERANCE * hint:
            decode_error = hint  # the container's frame count; the message names the first frame not decoded
    frames_to_do = frames_total
    if config.max_frames is not None and frames_total is not None and frames_total > config.max_frames:
        notes.append(f"processing the first {config.max_frames} of {frames_total} frames (--max-frames)")
        frames_to_do = config.max_frames
    return Input(source, frames_total, frames_to_do, decode_error)


def scan_video(source: video.FrameSource) -> int:
    """Count the decodable frames of a video and read their timestamps (grab only); settles fps."""
    cap = video.capture(source.path)
    count = 0
    stamps: List[float] = []
    try:
        while cap.grab():
            count += 1
            stamps.append(float(cap.get(cv2.CAP_PROP_POS_MSEC)))
    finally:
        cap.release()
    if count == 0:
        raise BadFileError(
            "the video has no decodable frame", path=source.path, fix="check the file or re-encode it"
        )
    source.timestamps_ms = stamps
    video.settle_video_fps(source)
    return count


def frames(inp: Input):
    """(index, name, frame) for the frames to process (a video stops where the scan found the last good frame)."""
    for index, name, frame in inp.source:
        if inp.frames_to_do is not None and index >= inp.frames_to_do:
            break
        yield index, name, frame


# ----------------------------------------------------------------------------------------------- 2.-3. detect, track


def detect_people(
    config: DemoConfig, inp: Input, timer: Timer, progress: Optional[ProgressFn]
) -> Tuple[List[List[Person]], Optional[Dict[str, Any]]]:
    """Boxes for every frame (user boxes or a detector), then tracks; returns people per frame + detector info."""
    user_boxes = None
    if config.bbox is not None:
        user_boxes = detect.UserBoxes(every_frame=detect.check_bbox_option(config.bbox), source="--bbox")
    elif config.bbox_file is not None:
        user_boxes = detect.load_bbox_file(config.bbox_file)
        if inp.frames_to_do is not None and not config.max_frames:
            user_boxes.check_frame_count(inp.frames_to_do)
    detector = (
        None
        if user_boxes is not None
        else detect.build_detector(
            config.detector, config.data_root, config.yolox_weights, config.yolox_sha256
        )
    )
    per_frame: List[detect.Detections] = []
    sizes: List[Tuple[int, int]] = []
    for index, name, frame in frames(inp):
        t = timer.start()
        height, width = frame.shape[:2]
        if user_boxes is not None:
            boxes = user_boxes.boxes_for(index, name)
            for box in boxes:
                detect.check_box_in_image(box, (width, height), user_boxes.source)
            dets = detect.detections_from_user(boxes)
        else:
            dets = detector(frame)
        per_frame.append(dets)
        sizes.append((height, width))
        timer.add("detection", t)
        if progress is not None:
            progress(index + 1, inp.frames_to_do, "detecting")
    if user_boxes is not None and user_boxes.matched == 0 and not user_boxes.every_frame_given:
        raise BadFileError(
            "matches no frame of the input (no entry's name or index is a frame of it)",
            path=user_boxes.source,
            fix='name the frames as the input\'s file names, their stems, or indices ("0", "1", ...)',
        )
    t = timer.start()
    sequence = inp.source.is_video  # images of a folder may be unrelated photos: each is taken on its own
    if user_boxes is not None or not sequence:
        limited = [detect.select_people(d, config.max_people) for d in per_frame]
        tracked = given_boxes(limited) if user_boxes is not None else _single_frames(limited)
    else:
        fps = float(inp.source.fps) if inp.source.is_video else video.DEFAULT_FPS
        track_config = TrackConfig.for_fps(fps, config.max_missed_s, max_people=config.max_people)
        tracked = track_sequence(per_frame, track_config)
    timer.add("tracking", t)
    people = [[_person(index, entry) for entry in entries] for index, entries in enumerate(tracked)]
    return people, (detector.describe() if detector is not None else None)


def _single_frames(per_frame: List[detect.Detections]) -> List[List[TrackedBox]]:
    """Unrelated images: every detection is a person, numbered in its frame by score."""
    return [
        [
            TrackedBox(k, box, float(score), "detected")
            for k, (box, score) in enumerate(zip(d.boxes, d.scores))
        ]
        for d in per_frame
    ]


def _person(frame: int, entry: TrackedBox) -> Person:
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


def crop_square(box: np.ndarray) -> Tuple[np.ndarray, float]:
    """docs/reproduction.md §9: centre = box centre, side = DEMO_BBOX_SCALE x max(w, h) (pixels)."""
    center, side = bbox_to_center_scale(np.asarray(box, np.float64))
    return np.asarray(center, np.float64), float(side) * DEMO_BBOX_SCALE


# ----------------------------------------------------------------------------------------------- 4.-8. per chunk


def make_smoother(
    config: DemoConfig, source: video.FrameSource, notes: List[str]
) -> Optional[PersonSmoother]:
    if not config.smooth:
        return None
    if source.kind in ("video", "folder"):
        return PersonSmoother()
    notes.append("--smooth needs a video or a folder of frames; ignored for a single image")
    return None


def smooth_people(
    smoother: PersonSmoother, crowd: List[Person], outputs: Dict[str, np.ndarray], step_s: float, timer: Timer
) -> None:
    """One-Euro smoothing of each person's rotations, betas and camera, in place (time = frame x step_s)."""
    t = timer.start()
    for k, person in enumerate(crowd):
        outputs["rotmat"][k], outputs["betas"][k], outputs["cam"][k] = smoother(
            person.pid, person.frame * step_s, outputs["rotmat"][k], outputs["betas"][k], outputs["cam"][k]
        )
    timer.add("smoothing", t)


def mesh_frames(
    config: DemoConfig,
    inp: Input,
    people: List[List[Person]],
    engine: Engine,
    replay: Optional[Replay],
    smoother: Optional[PersonSmoother],
    writers: Writers,
    results: DemoResults,
    timer: Timer,
    progress: Optional[ProgressFn],
) -> int:
    """Second pass over the frames, in chunks: crop + infer, smooth, body, render, write. Returns frames done."""
    step_s = (
        1.0 / float(inp.source.fps or video.DEFAULT_FPS) if inp.source.is_video else 1.0 / video.DEFAULT_FPS
    )
    chunk: List[Tuple[int, str, np.ndarray]] = []
    chunk_frames = config.batch_size * FRAMES_PER_CHUNK_PER_BATCH
    done = 0

    def people_in(index: int) -> List[Person]:  # a frame the first pass did not reach has nobody
        return people[index] if index < len(people) else []

    def flush() -> None:
        nonlocal done
        crowd = [p for index, _, _ in chunk for p in people_in(index)]
        for index, name, frame in chunk:
            results.add_frame(display_name(name), frame.shape[:2], has_person=bool(people_in(index)))
        if replay is not None:
            outputs = replay.outputs(crowd)
        else:
            outputs = engine.infer({index: frame for index, _, frame in chunk}, crowd, timer)
        if smoother is not None:
            smooth_people(smoother, crowd, outputs, step_s, timer)
        body = engine.body(crowd, outputs, {index: frame.shape[:2] for index, _, frame in chunk}, timer)
        results.add_people(crowd, outputs, body)
        for index, name, frame in chunk:
            mine = [k for k, person in enumerate(crowd) if person.frame == index]
            writers.frame(index, name, frame, [crowd[k] for k in mine], body, mine, engine, timer)
        done += len(chunk)
        if progress is not None:
            progress(done, inp.frames_to_do, "meshes")
        chunk.clear()

    if progress is not None:
        progress(0, inp.frames_to_do, "meshes")
    t = timer.start()
    for item in frames(inp):
        chunk.append(item)
        t = timer.add("video_io", t)
        if len(chunk) >= chunk_frames:
            flush()
        t = timer.start()
    if chunk:
        flush()
    return done


class Engine:
    """The network (unless replaying saved results), the body model and the renderer, on one device."""

    def __init__(self, config: DemoConfig, notes: List[str], need_network: bool = True):
        self.config = config
        self.device = resolve_device(config.device)
        layout = DataLayout(config.data_root)
        self.model = None
        self.report = None
        if need_network:
            self.model, self.report = load_estimator(config.checkpoint, layout, self.device, inference=True)
        self.body_model = BodyModel.from_layout(layout, gender="neutral", device=self.device)
        self.faces = np.asarray(self.body_model.faces, np.int64)  # (13776, 3)
        if layout.is_synthetic:
            notes.append(
                "this data root is SYNTHETIC (gtacli sample-data): the body model is not the real SMPL"
            )

    def infer(
        self, frames_by_index: Dict[int, np.ndarray], people: List[Person], timer: Timer
    ) -> Dict[str, np.ndarray]:
        """Crops -> network, in batches. Returns rotmat (P,24,3,3), betas (P,10), cam (P,3) as float64 numpy."""
        out = {"rotmat": np.zeros((0, 24, 3, 3)), "betas": np.zeros((0, 10)), "cam": np.zeros((0, 3))}
        if not people:
            return out
        t = timer.start()
        crops = np.stack(
            [normalize(crop(frames_by_index[p.frame], p.center, p.side, 0.0, IMG_RES)[0]) for p in people]
        )
        t = timer.add("preprocess", t)
        pieces: Dict[str, List[np.ndarray]] = {"rotmat": [], "betas": [], "cam": []}
        with torch.inference_mode():
            for start in range(0, len(crops), self.config.batch_size):
                batch = torch.from_numpy(crops[start : start + self.config.batch_size]).to(self.device)
                pred = self.model(batch)
                pieces["rotmat"].append(pred["pred_pose"].double().cpu().numpy())
                pieces["betas"].append(pred["pred_shape"].double().cpu().numpy())
                pieces["cam"].append(pred["pred_cam"].double().cpu().numpy())
        timer.add("model", t)
        return {key: np.concatenate(value) for key, value in pieces.items()}

    def body(
        self,
        people: List[Person],
        outputs: Dict[str, np.ndarray],
        sizes_hw: Dict[int, Tuple[int, int]],
        timer: Timer,
    ) -> Dict[str, np.ndarray]:
        """SMPL forward + cameras + 2D joints for every person of the chunk (numpy float64 out)."""
        t = timer.start()
        count = len(people)
        rotmat = torch.as_tensor(outputs["rotmat"], dtype=torch.float32, device=self.device).reshape(
            -1, 24, 3, 3
        )
        betas = torch.as_tensor(outputs["betas"], dtype=torch.float32, device=self.device).reshape(-1, 10)
        with torch.inference_mode():
            smpl = self.body_model(betas, rotmat[:, 1:], rotmat[:, :1], pose2rot=False)
            pose_aa = matrix_to_axis_angle(rotmat.double()).reshape(count, 72)
            transl_crop = (
                cam_to_translation(torch.as_tensor(outputs["cam"], dtype=torch.float64))
                .numpy()
                .reshape(-1, 3)
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
        transl = full_image_translation(outputs["cam"].reshape(-1, 3), centers, side, image_wh, focal)
        timer.add("smpl", t)
        return {
            "pose_aa": pose_aa.cpu().numpy(),
            "vertices": verts,
            "verts_cam": verts + transl_crop[:, None],
            "j49": j49,
            "j14": j14,
            "kp2d_49": project(j49 + transl_crop[:, None], K_img),
            "kp2d_14": project(j14 + transl_crop[:, None], K_img),
            "transl_crop": transl_crop,
            "transl": transl,
            "focal": focal,
            "K_img": K_img,
        }

    def render(self, frame: np.ndarray, verts_cam: List[np.ndarray], Ks: List[np.ndarray]) -> np.ndarray:
        """The frame with every person's mesh drawn on it (one z-buffer for all people), on the model's device."""
        if not verts_cam:
            return frame.copy()
        verts, K = to_common_camera(verts_cam, Ks, frame.shape[:2])
        return render_overlay(frame, verts, self.faces, K, device=self.device)

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
        return render_overlay(canvas, verts, self.faces, K, alpha=1.0, device=self.device)


def draw_boxes(image: np.ndarray, people: List[Person]) -> np.ndarray:
    """Each person's box and track id on the overlay (in place); interpolated/predicted boxes dashed-free thin."""
    thick = max(1, round(BOX_THICKNESS_PER_1000_PX * max(image.shape[:2]) / 1000))
    for person in people:
        x, y, w, h = (int(round(v)) for v in person.box)
        width = thick if person.source in ("detected", "given") else max(1, thick // 2)
        cv2.rectangle(image, (x, y), (x + w, y + h), BOX_COLOR_BGR, width, cv2.LINE_AA)
        label = f"id {person.pid}" + ("" if person.source in ("detected", "given") else f" ({person.source})")
        scale = 0.5 * thick
        cv2.putText(
            image,
            label,
            (x, max(0, y - 2 * thick)),
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            BOX_COLOR_BGR,
            thick,
            cv2.LINE_AA,
        )
    return image


class Writers:
    """The files of one run: overlay video or PNGs, per-frame PNGs of a video, OBJ meshes."""

    def __init__(self, folder: Path, config: DemoConfig, source: video.FrameSource):
        self.folder = folder
        self.config = config
        self.is_video = source.is_video
        self.draw = config.draw_boxes if config.draw_boxes is not None else source.is_video
        self.sink = None
        self.overlay_names: List[str] = []
        self.frame_files = 0
        self.mesh_files = 0
        if config.render and source.is_video:
            self.sink = video.VideoSink(folder / OVERLAY_VIDEO, float(source.fps))
        elif config.render:
            (folder / OVERLAY_DIR).mkdir()
        if config.render and config.save_frames and source.is_video:
            (folder / FRAMES_DIR).mkdir()
        if config.export_mesh:
            (folder / MESH_DIR).mkdir()

    def frame(
        self, index, name, frame, mine: List[Person], body, rows: List[int], engine: Engine, timer: Timer
    ) -> None:
        stem = Path(display_name(name)).stem
        if self.config.export_mesh:
            t = timer.start()
            for person, k in zip(mine, rows):  # original camera: body-model frame + transl
                write_obj(
                    self.folder / MESH_DIR / f"{stem}_id{person.pid}.obj",
                    body["vertices"][k] + body["transl"][k],
                    engine.faces,
                )
                self.mesh_files += 1
            timer.add("video_io", t)
        if not self.config.render:
            return
        t = timer.start()
        verts = [body["verts_cam"][k] for k in rows]
        Ks = [body["K_img"][k] for k in rows]
        image = engine.render(frame, verts, Ks)
        if self.draw:
            draw_boxes(image, mine)
        if self.config.side_view:
            image = np.concatenate([image, engine.render_side(frame.shape, verts, Ks)], axis=1)
        t = timer.add("rendering", t)
        if self.sink is not None:
            self.sink.write(image)
            if self.config.save_frames:
                write_png(self.folder / FRAMES_DIR / f"{index:06d}.png", image)
                self.frame_files += 1
        else:
            self.overlay_names.append(self._overlay(stem, Path(display_name(name)).suffix, image))
        timer.add("video_io", t)

    def _overlay(self, stem: str, suffix: str, image: np.ndarray) -> str:
        target = self.folder / OVERLAY_DIR / f"{stem}.png"
        if target.exists():  # two inputs with one stem (a.jpg, a.png): keep both
            target = self.folder / OVERLAY_DIR / f"{stem}_{suffix.lstrip('.')}.png"
        write_png(target, image)
        return target.name

    def close(self, frames_done: int) -> None:
        if self.sink is None:
            return
        self.sink.close()
        if self.sink.frames_written != frames_done:
            raise GtacliError(
                f"wrote {self.sink.frames_written} of {frames_done} frames",
                path=self.config.output / OVERLAY_VIDEO,
                fix="check the free disk space and run again, or use --no-render for results only",
            )

    def describe(self) -> Dict[str, Any]:
        return {
            "results_npz": RESULTS_NPZ,
            "overlay_video": OVERLAY_VIDEO if self.sink is not None else None,
            "overlays": [f"{OVERLAY_DIR}/{n}" for n in self.overlay_names],
            "frames": f"{FRAMES_DIR}/ ({self.frame_files} PNG)" if self.frame_files else None,
            "meshes": f"{MESH_DIR}/ ({self.mesh_files} OBJ)" if self.config.export_mesh else None,
            "side_view": bool(self.config.side_view and self.config.render),
            "boxes_drawn": bool(self.draw and self.config.render),
        }


class Replay:
    """Saved results (`results.npz` of an earlier run) in place of detection, tracking and the network."""

    def __init__(self, path: Path):
        self.path = Path(path)
        data = load_npz(self.path)
        needed = ("frame_index", "person_id", "smpl_pose", "betas", "pred_cam", "bbox_xywh", "bbox_score")
        missing = [k for k in needed if k not in data]
        if missing:
            raise BadFileError(
                f"is not a gtacli demo results.npz (no {', '.join(missing)})",
                path=self.path,
                fix="pass the results.npz written by `gtacli demo`",
            )
        self.data = {k: np.asarray(data[k]) for k in data}
        self.row_of: Dict[Tuple[int, int], int] = {
            (int(f), int(p)): i
            for i, (f, p) in enumerate(zip(self.data["frame_index"], self.data["person_id"]))
        }

    def people(self, frames_to_do: Optional[int]) -> List[List[Person]]:
        count = int(self.data["frame_index"].max()) + 1 if len(self.data["frame_index"]) else 0
        if frames_to_do is not None:
            count = max(count, frames_to_do)
        sources = self.data.get("bbox_source", np.full(len(self.data["frame_index"]), "given"))
        out: List[List[Person]] = [[] for _ in range(count)]
        for i, (f, pid) in enumerate(zip(self.data["frame_index"], self.data["person_id"])):
            entry = TrackedBox(
                int(pid),
                self.data["bbox_xywh"][i].astype(np.float64),
                float(self.data["bbox_score"][i]),
                str(sources[i]),
            )
            out[int(f)].append(_person(int(f), entry))
        return out

    def outputs(self, people: List[Person]) -> Dict[str, np.ndarray]:
        rows = [self.row_of[(p.frame, p.pid)] for p in people]
        pose = torch.as_tensor(self.data["smpl_pose"][rows], dtype=torch.float64).reshape(-1, 24, 3)
        return {
            "rotmat": axis_angle_to_matrix(pose).numpy(),
            "betas": self.data["betas"][rows].astype(np.float64).reshape(-1, 10),
            "cam": self.data["pred_cam"][rows].astype(np.float64).reshape(-1, 3),
        }


def to_common_camera(
    verts_cam: List[np.ndarray], Ks: List[np.ndarray], size_hw: Tuple[int, int]
) -> Tuple[List[np.ndarray], np.ndarray]:
    """Re-express meshes seen by per-person cameras `K_i = [[f_i, 0, cx_i], [0, f_i, cy_i], [0, 0, 1]]` in one
    camera `K = [[F, 0, w/2], [0, F, h/2], [0, 0, 1]]` so one z-buffer renders everyone.

    `(X, Y, Z) -> (X + (cx_i - w/2) Z / f_i, Y + (cy_i - h/2) Z / f_i, Z F / f_i)` projects every vertex to
    exactly the same pixel, and the new depth of the body origin is `2F/(s W)`, the `transl` depth of the
    original camera, so people are ordered by their distance in that camera. F is the largest f_i.
    """
    height, width = size_hw
    focal = max(float(K[0, 0]) for K in Ks)
    out = []
    for verts, K in zip(verts_cam, Ks):
        f_i, cx_i, cy_i = float(K[0, 0]), float(K[0, 2]), float(K[1, 2])
        z = verts[:, 2:3]
        shift = np.array([[cx_i - width / 2.0, cy_i - height / 2.0]]) * z / f_i
        out.append(np.concatenate([verts[:, :2] + shift, z * focal / f_i], axis=1))
    K_common = np.array([[focal, 0.0, width / 2.0], [0.0, focal, height / 2.0], [0.0, 0.0, 1.0]])
    return out, K_common


def full_image_translation(
    cam: np.ndarray, centers: np.ndarray, side: np.ndarray, image_wh: np.ndarray, focal: np.ndarray
) -> np.ndarray:
    """Translation (P,3) in the original camera (principal point = image centre, focal `focal` (P,) px) from the
    crop camera `cam` (P,3) = [s, tx, ty] of crops with centres (P,2) and sides (P,) px in images (P,2) = (w, h).

    `tz = 2F/(s W)` (the depth at which the body has the size the crop camera gives it, seen with focal F) and
    `tx' = tx + 2 (cx - w/2)/(s W)`, `ty' = ty + 2 (cy - h/2)/(s W)` (the root lands on the same pixel).
    """
    s, tx, ty = cam[:, 0], cam[:, 1], cam[:, 2]
    denom = s * side + CAM_DENOM_EPS
    return np.stack(
        [
            tx + 2.0 * (centers[:, 0] - image_wh[:, 0] / 2.0) / denom,
            ty + 2.0 * (centers[:, 1] - image_wh[:, 1] / 2.0) / denom,
            2.0 * focal / denom,
        ],
        axis=1,
    )


def project(points_cam: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Pinhole projection `K · X / Z`: points (P,J,3) in camera coordinates, K (P,3,3) -> (P,J,2) pixels."""
    uvw = np.einsum("pij,pkj->pki", K, points_cam)
    return uvw[..., :2] / uvw[..., 2:3]


# ----------------------------------------------------------------------------------------------- results.json


def make_summary(
    config: DemoConfig,
    inp: Input,
    results: DemoResults,
    frames_done: int,
    engine: Engine,
    detector_info: Optional[Dict[str, Any]],
    smoother: Optional[PersonSmoother],
    timer: Timer,
    total_s: float,
) -> Dict[str, Any]:
    source = inp.source
    without = [name for name, has in zip(results.frame_names, results.frame_has_person) if not has]
    run_s = total_s - timer.seconds.get("setup", 0.0)
    stages = {k: round(v, 4) for k, v in sorted(timer.seconds.items())}
    frames_per_track = results.frames_per_track()
    summary: Dict[str, Any] = {
        "input": display_name(str(config.input)),
        "input_kind": source.kind,
        "frames": frames_done,
        "frames_in_input": inp.frames_total,
        "frames_with_person": frames_done - len(without),
        "frames_without_person": without,
        "person_entries": results.num_people_entries,
        "person_ids": sorted(frames_per_track),
        "tracks": len(frames_per_track),
        "frames_per_track": {str(k): v for k, v in sorted(frames_per_track.items())},
        "box_sources": results.box_source_counts(),
        "fps": source.fps if source.is_video else None,
        "fps_note": source.fps_note,
        "decode_error": f"frame {frames_done} of {inp.decode_error} cannot be decoded"
        if inp.decode_error
        else None,
        "checkpoint": display_name(str(config.checkpoint)) if config.checkpoint else None,
        "checkpoint_report": engine.report.summary() if engine.report is not None else None,
        "from_results": display_name(str(config.from_results)) if config.from_results else None,
        "device": str(engine.device),
        "boxes": "--bbox"
        if config.bbox is not None
        else (display_name(str(config.bbox_file)) if config.bbox_file else None),
        "detector": detector_info,
        "max_people": config.max_people,
        "max_missed_s": config.max_missed_s,
        "smoothing": smoother.describe() if smoother is not None else None,
        "timings_s": {**stages, "total": round(total_s, 4)},
        "cpu_timings_s": {k: round(v, 4) for k, v in sorted(timer.cpu_seconds.items())},
        # steady-state speed: the one-time setup (checkpoint + SMPL loading) is left out
        "frames_per_s": round(frames_done / run_s, 3) if run_s > 0 else None,
        "frames_per_s_incl_setup": round(frames_done / total_s, 3) if total_s > 0 else None,
        "conventions": {
            "transl_crop": "(tx, ty, 2*5000/(224*s)); crop camera f=5000 px, principal point = crop centre",
            "transl": "original camera, principal point = image centre, focal = focal_length: "
            "tz = 2F/(s*W), tx' = tx + 2(cx - w/2)/(s*W), ty' = ty + 2(cy - h/2)/(s*W), W = crop side",
            "focal_length": f"{config.focal_length:g} px (--focal-length)"
            if config.focal_length
            else "per person 5000 * crop_size / 224 px (the crop camera's focal in image pixels)",
            "keypoints2d": "K_img (X + transl_crop), K_img = [[5000 W/224, 0, cx], [0, 5000 W/224, cy], [0, 0, 1]]",
            "keypoints3d": "metres, SMPL body-model frame (no translation)",
            "meshes": "OBJ vertices = vertices + transl (original camera), metres; faces 1-based",
            "crop": "centre = box centre, side = 1.25 * max(w, h) (docs/reproduction.md §9)",
        },
        "fields": {k: v[0] for k, v in RESULT_FIELDS.items() if k != "vertices" or config.save_vertices},
    }
    if config.max_frames is not None and inp.frames_total is not None and inp.frames_total > frames_done:
        summary["subsampled"] = (
            f"only the first {frames_done} of {inp.frames_total} frames were processed (--max-frames)"
        )
    return summary
