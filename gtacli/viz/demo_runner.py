"""The demo, without a CLI: frames in -> people -> crops -> SMPL -> overlays and per-frame results out.

Stages per chunk of frames (streamed, so memory stays bounded for long videos):

1. frames from an image, a folder or a video (`gtacli.viz.video`);
2. person boxes: user boxes (`--bbox` / `--bbox-file`) or a detector (`gtacli.viz.detect`), at most
   `max_people` per frame, ids kept across frames by IoU tracking (videos and folders);
3. crop per docs/reproduction.md §9: centre = box centre, square side `DEMO_BBOX_SCALE · max(w, h)`, warped to 224x224 with
   `gtacli.data.crop` and normalised;
4. batched `HMREstimator` forward; optional One-Euro smoothing per person (`gtacli.viz.smooth`);
5. neutral SMPL (`gtacli.body.smpl.BodyModel`): vertices, smpl_49 joints, H36M joints -> J14;
6. cameras (conventions below), 2D joints, overlays (`gtacli.viz.render`), results.

Camera conventions (also written into results.json):

* `transl_crop` = `(tx, ty, 2·f/(224·s))`, f = 5000: the crop camera (focal 5000 px, principal point at the crop
  centre). Seen from the original image this is the camera `K_img = [[f·W/224, 0, cx], [0, f·W/224, cy], [0, 0, 1]]`
  (W = crop side, (cx, cy) = box centre; mmhuman3d's `convert_bbox_to_intrinsic`). Overlays and
  `keypoints2d_*` use exactly this camera: `uv = K_img · (X + transl_crop)`.
* `transl` = the translation in the ORIGINAL camera, whose principal point is the image centre (w/2, h/2) and
  whose focal length is `focal_length` (per person `f·W/224` by default, or the fixed `--focal-length`):
  `tz = 2·F/(s·W)`, `tx' = tx + 2·(cx − w/2)/(s·W)`, `ty' = ty + 2·(cy − h/2)/(s·W)`. It places the person at the
  depth where their apparent size matches and shifts them so the root lands where it does in the crop camera
  (exact at the root's depth; the usual crop-to-full-image conversion).
* `keypoints3d_*` and `vertices` are in the SMPL root (body-model) frame (no translation): add `transl_crop` for the
  crop camera or `transl` for the original camera.

Outputs (in the output folder, built in a temporary folder beside it and moved into place only when complete):
`overlays/<frame>.png` (images and folders) or `overlay.mp4` (videos; same frame count and fps as the source;
with `side_view` each frame is followed on its right by every person's mesh turned 90 degrees about its own
vertical axis), `results.npz` (`RESULT_FIELDS`), `results.json` (summary, timings, conventions, notes).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from gtacli.errors import BadFileError, GtacliError, UsageError
from gtacli.io.atomic import ensure_writable_dir
from gtacli.viz.demo_results import RESULT_FIELDS, DemoResults

DEFAULT_BATCH_SIZE = 4
FRAMES_PER_CHUNK_PER_BATCH = 2  # frames read per chunk = batch_size x this (bounded memory, full batches)
OVERLAY_DIR = "overlays"
OVERLAY_VIDEO = "overlay.mp4"
RESULTS_NPZ = "results.npz"
RESULTS_JSON = "results.json"
SIDE_VIEW_DEG = 90.0  # the side view turns the mesh by this much about the vertical axis
SIDE_VIEW_BACKGROUND_BGR = (255, 255, 255)
CAM_DENOM_EPS = 1e-9  # guards s * W against a zero camera scale, like docs/reproduction.md §4.4's 1e-9


@dataclass
class DemoConfig:
    """Everything the demo needs; the CLI fills it from options."""

    input: Path
    checkpoint: Path
    data_root: Path
    output: Path
    bbox: Optional[np.ndarray] = None  # (4,) xywh for every frame
    bbox_file: Optional[Path] = None
    detector: str = "hog"
    max_people: Optional[int] = None
    device: str = "auto"
    smooth: bool = False
    side_view: bool = False
    render: bool = True
    save_vertices: bool = False
    batch_size: int = DEFAULT_BATCH_SIZE
    focal_length: Optional[float] = None  # px, original camera; None = per person 5000 * crop side / 224
    max_frames: Optional[int] = None  # only the first N frames (the summary says so)


@dataclass
class Timer:
    """Wall-clock and process CPU seconds per stage: `t = timer.start()` ... `t = timer.add("stage", t)`.

    CPU seconds (all threads of this process) are counted from the last `start`/`add`; unlike wall time they
    barely change when other processes compete for the cores.
    """

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
class _Person:
    frame: int
    box: np.ndarray
    score: float
    pid: int
    center: np.ndarray
    side: float


ProgressFn = Callable[[int, Optional[int]], None]


def run_demo(
    config: DemoConfig,
    progress: Optional[ProgressFn] = None,
    log: Optional[Callable[[str], None]] = None,
) -> Dict[str, Any]:
    """Run the demo; returns the results.json summary. Raises GtacliError on bad input, leaving no output.

    Notes for the user (synthetic data, fps fallbacks, subsampling) go to `log` once the run has succeeded, so
    a failing run prints only its one-line error; they are also kept in the summary's `notes`.
    """
    notes: List[str] = []
    timer = Timer()
    t_total = time.perf_counter()
    if config.batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if config.max_people is not None and config.max_people < 1:
        raise UsageError("--max-people must be at least 1")
    if config.max_frames is not None and config.max_frames < 1:
        raise UsageError("--max-frames must be at least 1")
    if config.focal_length is not None and not config.focal_length > 0:
        raise UsageError("--focal-length must be positive (pixels)")
    if config.bbox is not None and config.bbox_file is not None:
        raise UsageError("give either --bbox or --bbox-file, not both")
    final_dir = Path(config.output)
    _check_output_dir(final_dir)

    from gtacli.viz import detect, video

    t = timer.start()
    source = video.open_frames(config.input)
    frame_total = source.frame_count_hint
    if source.is_video:
        frame_total = _scan_video(source)
        if source.fps_note:
            notes.append(source.fps_note)
    timer.add("video_io", t)
    if config.max_frames is not None and frame_total is not None and frame_total > config.max_frames:
        notes.append(f"processing the first {config.max_frames} of {frame_total} frames (--max-frames)")
    frames_to_do = min(frame_total, config.max_frames) if config.max_frames and frame_total else frame_total

    user_boxes = None
    if config.bbox is not None:
        user_boxes = detect.UserBoxes(
            every_frame=np.asarray(config.bbox, np.float64).reshape(1, 4), source="--bbox"
        )
    elif config.bbox_file is not None:
        user_boxes = detect.load_bbox_file(config.bbox_file)
        if frames_to_do is not None and not config.max_frames:
            user_boxes.check_frame_count(frames_to_do)
    detector = None if user_boxes is not None else detect.build_detector(config.detector, config.data_root)

    t = timer.start()
    engine = _Engine(config, notes)  # loads and checks the checkpoint and SMPL before any output exists
    timer.add("setup", t)
    sequence = source.kind in ("video", "folder")
    fps = float(source.fps) if source.is_video else 0.0
    tracker = detect.IouTracker() if sequence else None
    smoother = None
    if config.smooth:
        if sequence:
            from gtacli.viz.smooth import PersonSmoother

            smoother = PersonSmoother()
        else:
            notes.append("--smooth needs a video or a folder of frames; ignored for a single image")
    step_s = 1.0 / (fps if fps > 0 else video.DEFAULT_FPS)

    tmp_dir = final_dir.parent / f".{final_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
    try:
        tmp_dir.mkdir(parents=True)
    except OSError as exc:
        raise _unwritable_output(final_dir, exc) from None
    try:
        sink = None
        overlay_names: List[str] = []
        if config.render:
            if source.is_video:
                sink = video.VideoSink(tmp_dir / OVERLAY_VIDEO, fps)
            else:
                (tmp_dir / OVERLAY_DIR).mkdir()
        results = DemoResults(config.save_vertices)
        chunk: List[Tuple[int, str, np.ndarray]] = []
        chunk_frames = config.batch_size * FRAMES_PER_CHUNK_PER_BATCH
        frames_done = 0

        def flush() -> None:
            nonlocal frames_done
            people: List[_Person] = []
            for index, name, frame in chunk:
                t0 = timer.start()
                height, width = frame.shape[:2]
                if user_boxes is not None:
                    boxes = user_boxes.boxes_for(index, name)
                    for box in boxes:
                        detect.check_box_in_image(box, (width, height), user_boxes.source)
                    dets = detect.detections_from_user(boxes)
                else:
                    dets = detector(frame)
                dets = detect.select_people(dets, config.max_people)
                if tracker is not None:
                    dets = tracker.update(dets)
                t0 = timer.add("detection", t0)
                for box, score, pid in zip(dets.boxes, dets.scores, dets.ids):
                    center, side = _crop_square(box)
                    people.append(_Person(index, box, float(score), int(pid), center, side))
                results.add_frame(name, (height, width), has_person=len(dets) > 0)
            outputs = engine.infer([frame for _, _, frame in chunk], people, chunk[0][0], timer)
            if smoother is not None and people:
                t0 = timer.start()
                for k, person in enumerate(people):
                    rot, betas, cam = smoother(
                        person.pid,
                        person.frame * step_s,
                        outputs["rotmat"][k],
                        outputs["betas"][k],
                        outputs["cam"][k],
                    )
                    outputs["rotmat"][k], outputs["betas"][k], outputs["cam"][k] = rot, betas, cam
                timer.add("smoothing", t0)
            body = engine.body(
                people, outputs, [frame.shape[:2] for _, _, frame in chunk], chunk[0][0], timer
            )
            results.add_people(people, outputs, body)
            for index, name, frame in chunk:
                if config.render:
                    t0 = timer.start()
                    mine = [k for k, person in enumerate(people) if person.frame == index]
                    verts = [body["verts_cam"][k] for k in mine]
                    Ks = [body["K_img"][k] for k in mine]
                    image = engine.render(frame, verts, Ks)
                    if config.side_view:
                        image = np.concatenate([image, engine.render_side(frame.shape, verts, Ks)], axis=1)
                    t0 = timer.add("rendering", t0)
                    if sink is not None:
                        sink.write(image)
                    else:
                        overlay_names.append(_write_overlay(tmp_dir / OVERLAY_DIR, name, image))
                    timer.add("video_io", t0)
                frames_done += 1
                if progress is not None:
                    progress(frames_done, frames_to_do)
            chunk.clear()

        if progress is not None:
            progress(0, frames_to_do)  # processing starts now (after setup)
        t0 = timer.start()
        for index, name, frame in source:
            if config.max_frames is not None and index >= config.max_frames:
                break
            chunk.append((index, name, frame))
            t0 = timer.add("video_io", t0)
            if len(chunk) >= chunk_frames:
                flush()
            t0 = timer.start()
        if chunk:
            flush()
        t0 = timer.start()
        if sink is not None:
            sink.close()
            if sink.frames_written != frames_done:
                raise GtacliError(
                    f"wrote {sink.frames_written} of {frames_done} frames",
                    path=final_dir / OVERLAY_VIDEO,
                    fix="check the free disk space and run again, or use --no-render for results only",
                )
        timer.add("video_io", t0)

        total_s = time.perf_counter() - t_total
        summary = _summary(
            config,
            source,
            results,
            frames_done,
            frame_total,
            fps,
            engine,
            detector,
            smoother,
            timer,
            total_s,
            overlay_names,
            sink is not None,
        )
        summary["notes"] = notes
        results.write(tmp_dir / RESULTS_NPZ, fps)
        from gtacli.io.atomic import atomic_write_json

        atomic_write_json(tmp_dir / RESULTS_JSON, summary)
        try:
            _move_into_place(tmp_dir, final_dir)
        except OSError as exc:
            raise _unwritable_output(final_dir, exc) from None
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    summary["output"] = str(final_dir)
    for note in notes:
        (log or (lambda message: None))(f"note: {note}")
    return summary


# ----------------------------------------------------------------------------------------------- stages


def _crop_square(box: np.ndarray) -> Tuple[np.ndarray, float]:
    """docs/reproduction.md §9: centre = box centre, side = DEMO_BBOX_SCALE x max(w, h) (pixels)."""
    from gtacli.body.camera import DEMO_BBOX_SCALE
    from gtacli.data.crop import bbox_to_center_scale

    center, side = bbox_to_center_scale(np.asarray(box, np.float64))
    return np.asarray(center, np.float64), float(side) * DEMO_BBOX_SCALE


class _Engine:
    """The network, the body model and the renderer, on one device."""

    def __init__(self, config: DemoConfig, notes: List[str]):
        import torch

        from gtacli.body.smpl import BodyModel
        from gtacli.layout import DataLayout
        from gtacli.model.checkpoint import load_weights
        from gtacli.model.estimator import build_estimator, resolve_device

        self.config = config
        self.torch = torch
        self.device = resolve_device(config.device)
        layout = DataLayout(config.data_root)
        checkpoint = Path(config.checkpoint)
        if not checkpoint.is_file():
            from gtacli.errors import MissingFileError

            raise MissingFileError(
                "checkpoint not found", path=checkpoint, fix="pass --checkpoint PATH to a .pth file"
            )
        self.model = build_estimator(layout, device=self.device)
        self.report = load_weights(self.model, checkpoint)
        missing = [k for k in self.report.significant_missing if not k.startswith("head.init_")]
        if missing:
            parts = sorted({k.split(".")[0] for k in missing})
            raise BadFileError(
                f"is a {self.report.source_format} checkpoint without {'/'.join(parts)} weights "
                f"({len(missing)} tensors missing); the demo needs a complete ResNet-50 + HMR model",
                path=checkpoint,
                fix="pass an mmhuman3d, SPIN or gtacli HMR checkpoint (e.g. data/pretrained_models/spin_official.pth)",
            )
        self.model.eval()
        self.body_model = BodyModel.from_layout(layout, gender="neutral", device=self.device)
        self.faces = np.asarray(self.body_model.faces, np.int64)  # (13776, 3)
        if layout.is_synthetic:
            notes.append(
                "this data root is SYNTHETIC (gtacli sample-data): the body model is not the real SMPL"
            )

    def infer(
        self, frames: List[np.ndarray], people: List[_Person], first_index: int, timer: Timer
    ) -> Dict[str, np.ndarray]:
        """Crops -> network, in batches. Returns rotmat (P,24,3,3), betas (P,10), cam (P,3) as float64 numpy."""
        from gtacli.data.crop import IMG_RES, crop, normalize

        torch = self.torch
        out = {"rotmat": np.zeros((0, 24, 3, 3)), "betas": np.zeros((0, 10)), "cam": np.zeros((0, 3))}
        if not people:
            return out
        t0 = timer.start()
        crops = np.stack(
            [
                normalize(crop(frames[p.frame - first_index], p.center, p.side, 0.0, IMG_RES)[0])
                for p in people
            ]
        )
        t0 = timer.add("preprocess", t0)
        pieces: Dict[str, List[np.ndarray]] = {"rotmat": [], "betas": [], "cam": []}
        with torch.inference_mode():
            for start in range(0, len(crops), self.config.batch_size):
                batch = torch.from_numpy(crops[start : start + self.config.batch_size]).to(self.device)
                pred = self.model(batch)
                pieces["rotmat"].append(pred["pred_pose"].double().cpu().numpy())
                pieces["betas"].append(pred["pred_shape"].double().cpu().numpy())
                pieces["cam"].append(pred["pred_cam"].double().cpu().numpy())
        timer.add("model", t0)
        return {key: np.concatenate(value) for key, value in pieces.items()}

    def body(
        self,
        people: List[_Person],
        outputs: Dict[str, np.ndarray],
        sizes_hw: List[Tuple[int, int]],
        first_index: int,
        timer: Timer,
    ) -> Dict[str, np.ndarray]:
        """SMPL forward + cameras + 2D joints for every person of the chunk (numpy float64 out)."""
        from gtacli.body.camera import FOCAL_LENGTH, IMG_RES, cam_to_translation, crop_to_image_intrinsics
        from gtacli.body.conventions import H36M_TO_J14
        from gtacli.body.rotations import matrix_to_axis_angle

        torch = self.torch
        t0 = timer.start()
        count = len(people)
        rotmat = torch.as_tensor(outputs["rotmat"], dtype=torch.float32, device=self.device)
        betas = torch.as_tensor(outputs["betas"], dtype=torch.float32, device=self.device)
        with torch.inference_mode():
            smpl = self.body_model(betas, rotmat[:, 1:], rotmat[:, :1], pose2rot=False)
            pose_aa = matrix_to_axis_angle(rotmat.double()).reshape(count, 72)
        verts = smpl.vertices.double().cpu().numpy()
        j49 = smpl.joints.double().cpu().numpy()
        j14 = smpl.joints_h36m[:, list(H36M_TO_J14)].double().cpu().numpy()
        cam = outputs["cam"]
        transl_crop = cam_to_translation(torch.as_tensor(cam, dtype=torch.float64)).numpy()
        K_img = np.array(
            [crop_to_image_intrinsics(p.center, p.side, FOCAL_LENGTH, IMG_RES) for p in people], np.float64
        ).reshape(-1, 3, 3)
        side = np.array([p.side for p in people], np.float64)
        centers = np.array([p.center for p in people], np.float64).reshape(-1, 2)
        image_wh = np.array([sizes_hw[p.frame - first_index][::-1] for p in people], np.float64).reshape(
            -1, 2
        )
        if self.config.focal_length:
            focal = np.full(count, float(self.config.focal_length))
        else:
            focal = FOCAL_LENGTH * side / IMG_RES  # the crop camera's focal length in image pixels
        transl = full_image_translation(cam, centers, side, image_wh, focal)
        timer.add("smpl", t0)
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
        """The frame with every person's mesh drawn on it (one z-buffer for all people)."""
        from gtacli.viz.render import render_overlay

        if not verts_cam:
            return frame.copy()
        verts, K = to_common_camera(verts_cam, Ks, frame.shape[:2])
        return render_overlay(frame, verts, self.faces, K)

    def render_side(
        self, frame_shape: Tuple[int, ...], verts_cam: List[np.ndarray], Ks: List[np.ndarray]
    ) -> np.ndarray:
        """Each person's mesh turned SIDE_VIEW_DEG about the vertical axis through its own centre, drawn where the
        person stands, on a plain background. (Turning the whole group instead would swing people whose depths
        differ out of the picture.)"""
        from gtacli.viz.render import render_overlay

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
        return render_overlay(canvas, verts, self.faces, K, alpha=1.0)


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


# ----------------------------------------------------------------------------------------------- results


def _summary(
    config: DemoConfig,
    source: Any,
    results: DemoResults,
    frames_done: int,
    frame_total: Optional[int],
    fps: float,
    engine: _Engine,
    detector: Any,
    smoother: Any,
    timer: Timer,
    total_s: float,
    overlay_names: List[str],
    wrote_video: bool,
) -> Dict[str, Any]:
    from gtacli.viz.detect import describe_detector

    without = [name for name, has in zip(results.frame_names, results.frame_has_person) if not has]
    run_s = total_s - timer.seconds.get("setup", 0.0)
    stages = {k: round(v, 4) for k, v in sorted(timer.seconds.items())}
    summary: Dict[str, Any] = {
        "input": str(config.input),
        "input_kind": source.kind,
        "frames": frames_done,
        "frames_in_input": frame_total,
        "frames_with_person": frames_done - len(without),
        "frames_without_person": without,
        "person_entries": results.num_people_entries,
        "person_ids": results.person_ids(),
        "fps": fps if source.is_video else None,
        "fps_note": source.fps_note,
        "checkpoint": str(config.checkpoint),
        "checkpoint_report": engine.report.summary(),
        "device": str(engine.device),
        "boxes": "--bbox"
        if config.bbox is not None
        else (str(config.bbox_file) if config.bbox_file else None),
        "detector": describe_detector(config.detector) if detector is not None else None,
        "max_people": config.max_people,
        "smoothing": smoother.describe() if smoother is not None else None,
        "timings_s": {**stages, "total": round(total_s, 4)},
        "cpu_timings_s": {k: round(v, 4) for k, v in sorted(timer.cpu_seconds.items())},
        # steady-state speed: the one-time setup (checkpoint + SMPL loading) is left out
        "frames_per_s": round(frames_done / run_s, 3) if run_s > 0 else None,
        "frames_per_s_incl_setup": round(frames_done / total_s, 3) if total_s > 0 else None,
        "outputs": {
            "results_npz": RESULTS_NPZ,
            "overlay_video": OVERLAY_VIDEO if wrote_video else None,
            "overlays": [f"{OVERLAY_DIR}/{n}" for n in overlay_names],
            "side_view": bool(config.side_view and config.render),
        },
        "conventions": {
            "transl_crop": "(tx, ty, 2*5000/(224*s)); crop camera f=5000 px, principal point = crop centre",
            "transl": "original camera, principal point = image centre, focal = focal_length: "
            "tz = 2F/(s*W), tx' = tx + 2(cx - w/2)/(s*W), ty' = ty + 2(cy - h/2)/(s*W), W = crop side",
            "focal_length": f"{config.focal_length:g} px (--focal-length)"
            if config.focal_length
            else "per person 5000 * crop_size / 224 px (the crop camera's focal in image pixels)",
            "keypoints2d": "K_img (X + transl_crop), K_img = [[5000 W/224, 0, cx], [0, 5000 W/224, cy], [0, 0, 1]]",
            "keypoints3d": "metres, SMPL body-model frame (no translation)",
            "crop": "centre = box centre, side = 1.25 * max(w, h) (docs/reproduction.md §9)",
        },
        "fields": {k: v[0] for k, v in RESULT_FIELDS.items() if k != "vertices" or config.save_vertices},
    }
    if config.max_frames is not None and frame_total is not None and frame_total > frames_done:
        summary["subsampled"] = (
            f"only the first {frames_done} of {frame_total} frames were processed (--max-frames)"
        )
    return summary


# ----------------------------------------------------------------------------------------------- files


def _scan_video(source: Any) -> int:
    """Count the frames of a video and read their timestamps (grab only, no colour conversion); settles fps."""
    import cv2

    from gtacli.viz.video import settle_video_fps

    cap = cv2.VideoCapture(str(source.path))
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
    settle_video_fps(source)
    return count


def _write_overlay(folder: Path, name: str, image: np.ndarray) -> str:
    """Write a lossless PNG overlay named after the frame; returns its file name."""
    import cv2

    stem = Path(name).stem
    target = folder / f"{stem}.png"
    if target.exists():  # two inputs with one stem (a.jpg, a.png): keep both
        target = folder / f"{stem}_{Path(name).suffix.lstrip('.')}.png"
    if not cv2.imwrite(str(target), image):
        raise GtacliError(
            "cannot write the overlay image",
            path=target,
            fix="check the free disk space and run again, or use --no-render for results only",
        )
    return target.name


def _check_output_dir(final_dir: Path) -> None:
    """The output folder must be new, empty, or a previous demo output (which is replaced at the end)."""
    if final_dir.exists() and not final_dir.is_dir():
        raise UsageError(f"--output {final_dir} is a file", fix="give a folder path")
    if final_dir.is_dir() and any(final_dir.iterdir()) and not (final_dir / RESULTS_JSON).is_file():
        raise UsageError(
            f"--output {final_dir} exists and is not a gtacli demo output",
            fix="choose a new or empty folder (a previous demo output is replaced)",
        )
    # Prove now, before the model loads and frames are processed, that the output can be created: the results
    # are built in a temporary folder beside it, so create nothing yet.
    ensure_writable_dir(
        final_dir, what="the demo output here", fix="choose a writable --output folder", create=False
    )


def _unwritable_output(final_dir: Path, exc: OSError) -> GtacliError:
    reason = exc.strerror or str(exc)
    blocker = next((p for p in final_dir.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # mkdir says 'File exists' / 'Not a directory'
        reason = f"{blocker} is a file, not a folder"
    return GtacliError(
        f"cannot write the demo output here ({reason})",
        path=final_dir,
        fix="choose a writable folder with --output, or fix its permissions",
    )


def _move_into_place(tmp_dir: Path, final_dir: Path) -> None:
    """Rename the finished temporary folder to the output folder (replacing an old demo output)."""
    old = None
    if final_dir.exists():
        old = final_dir.parent / f".{final_dir.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
        os.replace(final_dir, old)
    os.replace(tmp_dir, final_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
