"""The demo, without a CLI: frames in -> people -> crops -> SMPL -> overlays, meshes and per-frame results out.

`run_demo` is a pipeline of named stages; each is a function below or in the module named:

1. **read** (`open_input`): an image, a folder or a video (`gtacli.io.video`); a video is scanned once for its
   frame count and timestamps, and a video that stops decoding part-way keeps the frames before it;
2. **detect** (`detect_people`): user boxes (`--bbox` / `--bbox-file`, also OpenPose JSON) or a detector
   (`gtacli.demo.detect`) on every frame;
3. **track** (`gtacli.demo.track.OnlineTracker`): identities over a video (a folder's images are taken
   one by one: they may be unrelated photos), fragments dropped, gaps interpolated, `max_people` applied; a
   frame's people are settled a fixed number of frames after it was read (the tracker's `lag`);
4. **crop + infer** (`Engine.infer`, `gtacli.demo.engine`): crop per docs/reproduction.md §9 (centre = box
   centre, square side `DEMO_BBOX_SCALE · max(w, h)`, 224x224, `gtacli.data.crop`), batched `HMREstimator`
   forward under `torch.inference_mode` (or, with `--from-results`, the saved parameters instead of the network:
   `Replay`, `gtacli.demo.replay`);
5. **refine** (optional, `--refine`: the bodies fitted to the people's keypoints with a temporal term,
   `gtacli.demo.refine`), then **smooth** (optional One-Euro per person, `gtacli.demo.smooth`);
6. **body** (`Engine.body`): neutral SMPL vertices, smpl_49 and J14 joints, cameras, 2D joints;
7. **render** (`Engine.render`, `gtacli.render.overlay` on the model's device) with boxes and track ids;
8. **write** (`Writers`, `gtacli.demo.output`): overlay video / PNGs, meshes, results.npz and
   results.json, in a temporary folder moved into place when complete.

Everything streams: the frames flow through stages 2-8 one chunk at a time (the `lag` frames a video's tracker
still weighs wait on disk, `FrameSpool`), tracking and smoothing keep state per live track, and results.npz is spooled to disk as it grows (`gtacli.demo.results`). Memory does not grow with the
length of the video (benchmarks/bench_long_video.py).

The shared dataclasses (`DemoConfig`, `Timer`, `Person`, `Input`) live in `gtacli.demo.config`.

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

import shutil
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Deque, Dict, Iterable, Iterator, List, Optional, Tuple

import cv2
import numpy as np

from gtacli.demo import boxes, detect
from gtacli.demo.config import DemoConfig, Input, Person, Timer
from gtacli.demo.engine import Engine, person_from_box
from gtacli.demo.output import (
    RESULTS_JSON,
    RESULTS_NPZ,
    FrameJob,
    StagedOutput,
    Writers,
    check_output_dir,
    display_name,
    output_record,
)
from gtacli.demo.refine import RefineStage, make_refine_stage
from gtacli.demo.replay import Replay
from gtacli.demo.results import RESULT_FIELDS, DemoResults
from gtacli.demo.smooth import PersonSmoother
from gtacli.demo.track import OnlineTracker, TrackConfig, TrackedBox, given_boxes
from gtacli.device import release_freed_memory, resolve_device
from gtacli.errors import BadFileError, GtacliError, UsageError
from gtacli.io import video
from gtacli.io.atomic import atomic_write_json
from gtacli.layout import DataLayout
from gtacli.model.engines import resolve_engine
from gtacli.model.predict import CropPredictions
from gtacli.progress import ProgressFn

RESULTS_SPOOL = ".results-spool"  # per-field spool files of results.npz inside the staged output
FRAME_SPOOL = ".frames-spool"  # frames waiting for the tracker, inside the staged output
TRIM_EVERY_FRAMES = (
    48  # freed memory goes back to the kernel this often (between chunks): flat over long videos
)
FRAMES_PER_CHUNK_PER_BATCH = 2  # frames read per chunk = batch_size x this (bounded memory, full batches)
DECODE_TOLERANCE = (
    0.01  # a video decoding fewer frames than its container says by more than this share + 1 frame
)


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
    if replay is not None:
        check_replay_matches_input(replay, inp, config)
    t = timer.start()
    engine = Engine(config, notes, need_network=replay is None)  # loads checkpoint + SMPL before any output
    refine = make_refine_stage(config, engine.body_model, DataLayout(config.data_root).gmm_prior)
    timer.add("setup", t)

    stage = StagedOutput(Path(config.output))
    writers: Optional[Writers] = None
    results: Optional[DemoResults] = None
    try:
        if replay is not None:
            stream: Iterable[StreamFrame] = replayed_people(replay, inp, timer)
            detector_info: Optional[Dict[str, Any]] = None
        else:
            stream, detector_info = detect_people(config, inp, timer, stage.tmp_dir / FRAME_SPOOL)
        writers = Writers(stage.tmp_dir, config, inp.source)
        results = DemoResults(config.save_vertices, stage.tmp_dir / RESULTS_SPOOL)
        smoother = make_smoother(config, inp.source, notes)
        frames_done = mesh_frames(
            config, inp, stream, engine, replay, smoother, writers, results, timer, progress, refine=refine
        )
        if refine is not None:
            refine.finish(notes)
        t = timer.start()
        writers.close(frames_done, timer)
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
        summary["refine"] = refine.describe() if refine is not None else None
        summary["outputs"] = writers.describe()
        summary["notes"] = notes
        fps = float(inp.source.fps or 0.0) if inp.source.is_video else 0.0
        results.write(stage.tmp_dir / RESULTS_NPZ, fps)
        if config.after_results is not None:
            t = timer.add("video_io", t)
            summary["animation"] = config.after_results(stage.tmp_dir, results.arrays(fps))
            t = timer.add("export", t)
            summary["timings_s"]["export"] = round(timer.seconds["export"], 4)
        atomic_write_json(stage.tmp_dir / RESULTS_JSON, summary)
        timer.add("video_io", t)
        stage.commit(output_record(config))
    except BaseException as exc:
        if writers is not None:
            writers.abort()
        if results is not None:
            results.discard()
        stage.discard()
        if isinstance(exc, GtacliError):  # name the output the user gave, not the hidden staging folder
            raise stage.public(exc) from None
        raise
    summary["output"] = display_name(str(config.output))
    # --max-frames stopped before the undecodable part: the frames asked for were all there (a note, no error)
    stopped_early = inp.frames_total is not None and frames_done < inp.frames_total
    for note in notes:
        (log or (lambda message: None))(f"note: {note}")
    if inp.decode_error and not stopped_early:
        raise BadFileError(
            f"{_decode_error_text(inp)}; the frames before it were processed "
            f"and written to "
            f"{display_name(str(config.output))}",
            path=display_name(str(config.input)),
            fix="re-encode the video (e.g. ffmpeg -i IN -c:v libx264 OUT.mp4) to process the rest",
        )
    return summary


def _decode_error_text(inp: Input) -> str:
    """'frame N of M cannot be decoded': N the first frame the scan could not decode (0-based: the count of
    decodable frames), M the container's frame count; never the last frame --max-frames processed."""
    return f"frame {inp.frames_total} of {inp.decode_error} cannot be decoded"


def run_results_export(config: DemoConfig, log: Optional[Callable[[str], None]] = None) -> Dict[str, Any]:
    """Saved results -> `config.after_results` only (no body model, no overlays): what `--from-results
    --export-animation --no-mesh` does when there is no SMPL model file. The output folder gets the export,
    a copy of the results.npz and a results.json naming them, built and moved into place like a demo's."""
    validate(config)
    if config.from_results is None or config.after_results is None:
        raise UsageError("an export from saved results needs --from-results and --export-animation")
    check_output_dir(Path(config.output))
    notes: List[str] = []
    inp = open_input(config, notes)
    replay = Replay(config.from_results)
    check_replay_matches_input(replay, inp, config)
    stage = StagedOutput(Path(config.output))
    try:
        np.savez(stage.tmp_dir / RESULTS_NPZ, **replay.data)
        summary: Dict[str, Any] = {
            "input": display_name(str(config.input)),
            "from_results": display_name(str(config.from_results)),
            "outputs": {"results_npz": RESULTS_NPZ, "overlay_video": None, "overlays": []},
            "notes": notes + ["no SMPL model file: skeleton-only export from the saved joints, no overlays"],
        }
        summary["animation"] = config.after_results(stage.tmp_dir, dict(replay.data))
        atomic_write_json(stage.tmp_dir / RESULTS_JSON, summary)
        stage.commit()
    except BaseException as exc:
        stage.discard()
        if isinstance(exc, GtacliError):  # name the output the user gave, not the hidden staging folder
            raise stage.public(exc) from None
        raise
    summary["output"] = display_name(str(config.output))
    for note in summary["notes"]:
        (log or (lambda message: None))(f"note: {note}")
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
    if config.refine and config.from_results is not None:
        raise UsageError("--refine refits the network's bodies; drop --from-results")
    if config.from_results is None:
        resolve_engine(config.engine, resolve_device(config.device), config.checkpoint, config.amp)


# ----------------------------------------------------------------------------------------------- 1. read


def check_replay_matches_input(replay: Replay, inp: Input, config: DemoConfig) -> None:
    """Saved results must come from this input: the same frame count and frame size, unless --force."""
    if config.force or "frame_size_hw" not in replay.data:
        return
    sizes = np.asarray(replay.data["frame_size_hw"]).reshape(-1, 2)
    saved_frames = len(sizes)
    fix = "pass the INPUT the results were computed on (or --force to use them anyway)"
    where = display_name(str(config.input))
    if inp.frames_to_do is not None and saved_frames not in (inp.frames_to_do, inp.frames_total):
        raise BadFileError(
            f"holds {saved_frames} frames but {where} has {inp.frames_total}: it comes from another input",
            path=replay.path,
            fix=fix,
        )
    first = first_frame_size(inp)
    if first is not None and saved_frames and tuple(int(v) for v in sizes[0]) != first:
        raise BadFileError(
            f"was computed on {sizes[0][1]}x{sizes[0][0]} frames but {where} is {first[1]}x{first[0]}: "
            "it comes from another input",
            path=replay.path,
            fix=fix,
        )


def first_frame_size(inp: Input) -> Optional[Tuple[int, int]]:
    """(height, width) of the input's first frame, read without consuming the source."""
    source = inp.source
    if source.is_video:
        cap = video.capture(source.path)
        try:
            ok, frame = cap.read()
        finally:
            cap.release()
        return tuple(frame.shape[:2]) if ok else None
    if source.image_paths:
        return tuple(video.read_image(source.image_paths[0]).shape[:2])
    return None


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
        if decode_error:
            notes.append(
                f"frame {frames_total} of {decode_error} cannot be decoded (after the frames --max-frames asked for)"
            )
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


@dataclass
class StreamFrame:
    """One frame as it leaves detection and tracking: its people, and the track ids that end with it."""

    index: int
    name: str
    frame: np.ndarray
    people: List[Person]
    ended: List[int] = field(default_factory=list)


def detect_people(
    config: DemoConfig, inp: Input, timer: Timer, spool_dir: Path
) -> Tuple[Iterator[StreamFrame], Optional[Dict[str, Any]]]:
    """The frames with their people, streamed (user boxes or a detector, then tracks), + the detector's info.

    A video is tracked by `OnlineTracker`, which settles a frame's people `lag` frames after seeing it; the
    frames waiting for that wait on disk in `spool_dir` (`FrameSpool`). Memory holds one decoder, the live tracks
    and a chunk, whatever the length of the video."""
    user_boxes = None
    if config.bbox is not None:
        user_boxes = boxes.UserBoxes(every_frame=boxes.check_bbox_option(config.bbox), source="--bbox")
    elif config.bbox_file is not None:
        user_boxes = boxes.load_bbox_file(config.bbox_file)
        if inp.frames_to_do is not None and not config.max_frames:
            user_boxes.check_frame_count(inp.frames_to_do)
    detector = (
        None
        if user_boxes is not None
        else detect.build_detector(
            config.detector,
            config.data_root,
            config.yolox_weights,
            config.yolox_sha256,
            # the network's engine: with onnxruntime, YOLOX runs there too; under --amp (the network on torch
            # in reduced precision) the detector still takes onnxruntime when auto finds it
            engine=resolve_engine(config.engine, resolve_device(config.device), config.checkpoint),
        )
    )
    # images of a folder may be unrelated photos: each is taken on its own; user boxes are not tracked
    if user_boxes is None and inp.source.is_video:
        stream = _tracked(config, inp, detector, timer, spool_dir)
    else:
        stream = _per_frame(config, inp, user_boxes, detector, timer)
    return stream, (detector.describe() if detector is not None else None)


def _detect(
    frame: np.ndarray, index: int, name: str, user_boxes, detector, timer: Timer
) -> detect.Detections:
    t = timer.start()
    if user_boxes is not None:
        height, width = frame.shape[:2]
        given = user_boxes.boxes_for(index, name)
        for box in given:
            detect.check_box_in_image(box, (width, height), user_boxes.source)
        dets = boxes.detections_from_user(given)
    else:
        dets = detector(frame)
    timer.add("detection", t)
    return dets


def _per_frame(config: DemoConfig, inp: Input, user_boxes, detector, timer: Timer) -> Iterator[StreamFrame]:
    """User boxes (ids by position) or unrelated images (ids by score in each image): no tracking."""
    for index, name, frame in _timed(frames(inp), timer):
        dets = detect.select_people(
            _detect(frame, index, name, user_boxes, detector, timer), config.max_people
        )
        entries = given_boxes([dets])[0] if user_boxes is not None else _single_frames([dets])[0]
        yield StreamFrame(index, name, frame, [person_from_box(index, e) for e in entries])
    if user_boxes is not None and user_boxes.matched == 0 and not user_boxes.every_frame_given:
        raise BadFileError(
            "matches no frame of the input (no entry's name or index is a frame of it)",
            path=user_boxes.source,
            fix='name the frames as the input\'s file names, their stems, or indices ("0", "1", ...)',
        )


def _tracked(
    config: DemoConfig, inp: Input, detector, timer: Timer, spool_dir: Path
) -> Iterator[StreamFrame]:
    fps = float(inp.source.fps or video.DEFAULT_FPS)
    track_config = TrackConfig.for_fps(fps, config.max_missed_s, max_people=config.max_people)
    tracker = OnlineTracker(track_config, total_frames=inp.frames_to_do)
    waiting = FrameSpool(spool_dir)  # the frames read but not settled yet, on disk

    def settled(final: bool) -> Iterator[StreamFrame]:
        t = timer.start()
        ready = tracker.ready(final)
        timer.add("tracking", t)
        for done in ready:
            t = timer.start()
            index, name, frame = waiting.get()
            timer.add("video_io", t)
            people = [person_from_box(index, entry) for entry in done.people]
            yield StreamFrame(index, name, frame, people, done.ended)

    try:
        for index, name, frame in _timed(frames(inp), timer):
            dets = _detect(frame, index, name, None, detector, timer)
            t = timer.start()
            waiting.put(index, name, frame)
            t = timer.add("video_io", t)
            del frame
            tracker.push(dets)
            timer.add("tracking", t)
            yield from settled(final=False)
        yield from settled(final=True)
    finally:
        waiting.close()


class FrameSpool:
    """Frames waiting for the tracker to settle their people, each in a raw file (`lag` frames of a 1080p
    video are ~100 MB: on disk they cost no memory; a second decoder reading behind would cost ~40 MB and
    decode everything twice). Written and read back within seconds, they rarely leave the page cache."""

    def __init__(self, folder: Path):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.queue: Deque[Tuple[int, str, Tuple[int, ...], np.dtype, Path]] = deque()

    def put(self, index: int, name: str, frame: np.ndarray) -> None:
        path = self.folder / f"{index}.raw"
        np.ascontiguousarray(frame).tofile(path)
        self.queue.append((index, name, frame.shape, frame.dtype, path))

    def get(self) -> Tuple[int, str, np.ndarray]:
        index, name, shape, dtype, path = self.queue.popleft()
        frame = np.fromfile(path, dtype=dtype).reshape(shape)
        path.unlink()
        return index, name, frame

    def close(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


def _timed(
    items: Iterator[Tuple[int, str, np.ndarray]], timer: Timer
) -> Iterator[Tuple[int, str, np.ndarray]]:
    """Decoding time counted as video I/O."""
    while True:
        t = timer.start()
        item = next(items, None)
        timer.add("video_io", t)
        if item is None:
            return
        yield item


def replayed_people(replay: Replay, inp: Input, timer: Timer) -> Iterator[StreamFrame]:
    """`--from-results`: the saved boxes and ids of each frame (a frame past the saved ones has nobody)."""
    people = replay.people(inp.frames_to_do)
    for index, name, frame in _timed(frames(inp), timer):
        yield StreamFrame(index, name, frame, people[index] if index < len(people) else [])


def _single_frames(per_frame: List[detect.Detections]) -> List[List[TrackedBox]]:
    """Unrelated images: every detection is a person, numbered in its frame by score."""
    return [
        [
            TrackedBox(k, box, float(score), "detected")
            for k, (box, score) in enumerate(zip(d.boxes, d.scores))
        ]
        for d in per_frame
    ]


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
    smoother: PersonSmoother, crowd: List[Person], outputs: CropPredictions, step_s: float, timer: Timer
) -> None:
    """One-Euro smoothing of each person's rotations, betas and camera, rows in place (time = frame x step_s)."""
    t = timer.start()
    for k, person in enumerate(crowd):
        outputs.rotmat[k], outputs.betas[k], outputs.cam[k] = smoother(
            person.pid, person.frame * step_s, outputs.rotmat[k], outputs.betas[k], outputs.cam[k]
        )
    timer.add("smoothing", t)


def mesh_frames(
    config: DemoConfig,
    inp: Input,
    stream: Iterable[StreamFrame],
    engine: Engine,
    replay: Optional[Replay],
    smoother: Optional[PersonSmoother],
    writers: Writers,
    results: DemoResults,
    timer: Timer,
    progress: Optional[ProgressFn],
    refine: Optional[RefineStage] = None,
) -> int:
    """The streamed frames, in chunks: crop + infer, (refine,) smooth, body, render, write. Returns frames done.

    At most one chunk of frames (`batch_size x FRAMES_PER_CHUNK_PER_BATCH`) is held here, plus the one being
    drawn by `Writers`; results go to their spool files as each chunk finishes."""
    step_s = (
        1.0 / float(inp.source.fps or video.DEFAULT_FPS) if inp.source.is_video else 1.0 / video.DEFAULT_FPS
    )
    chunk: List[StreamFrame] = []
    chunk_frames = config.batch_size * FRAMES_PER_CHUNK_PER_BATCH
    done = 0
    trimmed_at = [0]

    def flush() -> None:
        nonlocal done
        # the previous chunk's overlays were drawn while this chunk's frames were read; finish them before the
        # network runs (drawing beside the network made both slower on a 2-core CPU)
        writers.wait(timer)
        if done - trimmed_at[0] >= TRIM_EVERY_FRAMES:  # nothing is being drawn now: a quiet moment to trim
            release_freed_memory()
            trimmed_at[0] = done
        crowd = [p for item in chunk for p in item.people]
        for item in chunk:
            results.add_frame(display_name(item.name), item.frame.shape[:2], has_person=bool(item.people))
        if replay is not None:
            outputs = replay.outputs(crowd)
        else:
            outputs = engine.infer({item.index: item.frame for item in chunk}, crowd, timer)
        extra = None
        if refine is not None:
            t = timer.start()
            outputs, extra = refine([(item.index, item.name, item.frame) for item in chunk], crowd, outputs)
            timer.add("refine", t)
        if smoother is not None:
            smooth_people(smoother, crowd, outputs, step_s, timer)
            for item in chunk:  # a track that ended needs no filter state any more
                smoother.drop(item.ended)
        body = engine.body(crowd, outputs, {item.index: item.frame.shape[:2] for item in chunk}, timer)
        results.add_people(crowd, outputs, body, extra)
        jobs = []
        for item in chunk:
            mine = [k for k, person in enumerate(crowd) if person.frame == item.index]
            jobs.append(FrameJob(item.index, item.name, item.frame, [crowd[k] for k in mine], mine))
        writers.frames(jobs, body, engine, timer)
        done += len(chunk)
        if progress is not None:
            progress(done, inp.frames_to_do, "frames")
        chunk.clear()

    for item in stream:
        chunk.append(item)
        if len(chunk) >= chunk_frames:
            flush()
    if chunk:
        flush()
    return done


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
    without = results.without_person_names
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
        "decode_error": _decode_error_text(inp) if inp.decode_error else None,
        "checkpoint": display_name(str(config.checkpoint)) if config.checkpoint else None,
        "checkpoint_report": engine.report.summary() if engine.report is not None else None,
        "from_results": display_name(str(config.from_results)) if config.from_results else None,
        "device": str(engine.device),
        "engine": engine.network.info.to_json() if engine.network is not None else None,
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
