"""The demo's output folder: built beside the target, moved into place only when complete, and never deleting a
file the demo cannot prove it wrote.

Every output folder carries `MANIFEST` (`.gtacli-demo.json`), the list of files the demo wrote there. On a rerun
into the same folder, the old output is replaced only when the folder holds exactly the files its manifest lists
(plus the manifest); a folder with any other file (or a results.json without a manifest) is refused with one
line, so a user's own files are never deleted.

Also here: the per-frame files the demo writes (overlay PNGs, Wavefront OBJ meshes), written through Python file
objects so any file name works (OpenCV's own writers cannot take every byte string), `Writers` (the files of
one run: overlay video or PNGs, per-frame PNGs, meshes) and `draw_boxes` (boxes and track ids on an overlay).
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

import cv2
import numpy as np

from gtacli.demo.config import DemoConfig, PeopleBody, Person, Timer
from gtacli.demo.engine import Engine
from gtacli.errors import GtacliError, UsageError
from gtacli.io import video
from gtacli.io.atomic import StagedFolder, ensure_writable_dir, read_record

MANIFEST = ".gtacli-demo.json"
MANIFEST_KIND = "gtacli-demo-output"
NOT_OURS_FIX = "choose a new or empty --output folder (the demo replaces only a folder it wrote itself)"
OVERLAY_DIR = "overlays"
FRAMES_DIR = "frames"
MESH_DIR = "meshes"
OVERLAY_VIDEO = "overlay.mp4"
RESULTS_NPZ = "results.npz"
RESULTS_JSON = "results.json"
BOX_COLOR_BGR = (0, 200, 255)
BOX_THICKNESS_PER_1000_PX = 3  # box line width scales with the frame size
MAX_RENDER_WORKERS = 4  # frames of a chunk drawn at once on the CPU


def display_name(name: str) -> str:
    """A file name safe to print and to write into JSON: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_output_dir(final_dir: Path) -> None:
    """Refuse, before any work, an output folder that is a file or holds files the demo did not write."""
    final_dir = Path(final_dir)
    if final_dir.exists() and not final_dir.is_dir():
        raise UsageError(f"--output {display_name(str(final_dir))} is a file", fix="give a folder path")
    if final_dir.is_dir():
        foreign = foreign_files(final_dir)
        if foreign:
            raise UsageError(
                f"--output {display_name(str(final_dir))} holds files the demo did not write "
                f"(e.g. {display_name(foreign[0])})",
                fix=NOT_OURS_FIX,
            )
    # The results are built in a temporary folder beside the target: prove now that it can be created.
    ensure_writable_dir(
        final_dir, what="the demo output here", fix="choose a writable --output folder", create=False
    )


def foreign_files(folder: Path) -> List[str]:
    """Paths (relative, sorted) under `folder` that its demo manifest does not list; [] for an empty folder."""
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    listed = set(read_manifest(folder))
    return [p for p in present if p != MANIFEST and p not in listed]


def read_manifest(folder: Path) -> List[str]:
    data = read_record(Path(folder) / MANIFEST)
    if data.get("kind") != MANIFEST_KIND or not isinstance(data.get("files"), list):
        return []
    return [f for f in data["files"] if isinstance(f, str)]


class StagedOutput:
    """A temporary folder beside the target (`io/atomic.StagedFolder`); `commit()` writes the manifest and moves
    it into place, replacing a previous demo output (only the files its manifest listed: checked again)."""

    def __init__(self, final_dir: Path):
        self.final_dir = Path(final_dir)
        try:
            self._staged = StagedFolder(self.final_dir, MANIFEST, indent=1)
        except OSError as exc:
            raise unwritable_output(self.final_dir, exc) from None
        self.tmp_dir = self._staged.path

    def discard(self) -> None:
        self._staged.discard()

    def public(self, exc: GtacliError) -> GtacliError:
        """`exc` naming the output folder the user gave instead of the hidden staging folder (a full disk while
        writing `.out.tmp-123-ab/frame_0001.png` is reported as `out/frame_0001.png`)."""
        hidden, shown = str(self.tmp_dir), str(self.final_dir)
        if hidden not in exc.problem and hidden not in (exc.path or ""):
            return exc
        return type(exc)(
            exc.problem.replace(hidden, shown),
            path=exc.path.replace(hidden, shown) if exc.path else None,
            fix=exc.fix,
        )

    def commit(self, record: Optional[Dict[str, Any]] = None) -> None:
        """Write the folder's own record (its files and their sizes, plus `record`: what it was made from) and
        move the folder into place."""
        files = self._staged.files()
        sizes = {name: (self.tmp_dir / name).stat().st_size for name in files}
        record = {"kind": MANIFEST_KIND, "files": files, "sizes": sizes, **(record or {})}
        try:
            self._staged.commit(record, replace=True, before_replace=_still_ours)
        except OSError as exc:
            raise unwritable_output(self.final_dir, exc) from None


def _still_ours(final: Path) -> None:
    """Checked again just before the old output is replaced: something may have appeared during the run."""
    if foreign_files(final):
        raise UsageError(
            f"--output {display_name(str(final))} gained files the demo did not write", fix=NOT_OURS_FIX
        )


def input_fingerprint(path: Path) -> Dict[str, Any]:
    """What identifies an input's content cheaply: its absolute path, size and modification time (a folder of
    images: those of every file in it)."""
    path = Path(path)
    try:
        if path.is_dir():
            entries = sorted(
                (p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in path.iterdir() if p.is_file()
            )
            digest = hashlib.sha256(json.dumps(entries, default=str).encode("utf-8", "surrogateescape"))
            return {"path": display_name(str(path.resolve())), "folder_sha256": digest.hexdigest()}
        stat = path.stat()
    except OSError:
        return {"path": display_name(str(path))}
    return {"path": display_name(str(path.resolve())), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def settings_digest(config: DemoConfig) -> str:
    """A hash of every option that shapes the output (not the input, the output folder or the device); files
    named by an option (checkpoint, box file, saved results) count by their fingerprint."""
    settings: Dict[str, Any] = {}
    for item in fields(config):
        if item.name in ("input", "output", "device"):
            continue
        value = getattr(config, item.name)
        if isinstance(value, Path):  # a file's content counts; a folder (the data root) by its path only
            value = input_fingerprint(value) if value.is_file() else display_name(str(value.absolute()))
        elif isinstance(value, np.ndarray):
            value = value.tolist()
        elif callable(value):  # a hook (the animation exporter): its name and the settings it closes over
            cells = [repr(c.cell_contents) for c in getattr(value, "__closure__", None) or ()]
            value = [getattr(value, "__qualname__", type(value).__name__)] + [
                c for c in cells if " at 0x" not in c
            ]
        settings[item.name] = value
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()


def output_record(config: DemoConfig) -> Dict[str, Any]:
    """What a finished output records about its making, so a collection run can tell it is still current."""
    return {"input": input_fingerprint(config.input), "settings_sha256": settings_digest(config)}


def completed_output(folder: Path, config: DemoConfig) -> Optional[Dict[str, Any]]:
    """The results.json summary of `folder` when it holds a complete demo output of this input with these
    settings (by its own record: every file it lists present with its size, the same input fingerprint and
    settings, no decoding error); None otherwise."""
    folder = Path(folder)
    try:
        record = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or record.get("kind") != MANIFEST_KIND:
        return None
    sizes = record.get("sizes")
    if not isinstance(sizes, dict) or RESULTS_JSON not in sizes:
        return None
    for name, size in sizes.items():
        try:
            if (folder / name).stat().st_size != size:
                return None
        except (OSError, TypeError):
            return None
    if record.get("input") != input_fingerprint(config.input):
        return None
    if record.get("settings_sha256") != settings_digest(config):
        return None
    try:
        summary = json.loads((folder / RESULTS_JSON).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    if not isinstance(summary, dict) or summary.get("decode_error"):
        return None
    return summary


def unwritable_output(final_dir: Path, exc: OSError) -> GtacliError:
    reason = exc.strerror or str(exc)
    blocker = next((p for p in final_dir.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # mkdir says 'File exists' / 'Not a directory'
        reason = f"{display_name(str(blocker))} is a file, not a folder"
    return GtacliError(
        f"cannot write the demo output here ({reason})",
        path=final_dir,
        fix="choose a writable folder with --output, or fix its permissions",
    )


def write_png(target: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise GtacliError("cannot encode the overlay image", path=target)
    _write_bytes(target, data.tobytes())


def write_obj(target: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Wavefront OBJ: `v x y z` per vertex (metres), `f a b c` per triangle (1-based indices)."""
    lines: Iterable[str] = [
        f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in np.asarray(vertices, np.float64)
    ] + [f"f {a} {b} {c}\n" for a, b, c in np.asarray(faces, np.int64) + 1]
    _write_bytes(target, "".join(lines).encode("ascii"))


def _write_bytes(target: Path, data: bytes) -> None:
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise GtacliError(
            f"cannot write ({exc.strerror or exc})",
            path=target,
            fix="check the free disk space and run again, or use --no-render for results only",
        ) from None


def label_origin(
    box: Tuple[int, int, int, int], text: Tuple[int, int, int], image_wh: Tuple[int, int], gap: int
) -> Tuple[int, int]:
    """Where a box's label starts (cv2.putText's bottom-left origin) so that the whole text stays inside the
    image: above the box's top-left corner, or just inside the box when there is no room above; shifted left
    when it would run off the right edge (a person at the edge of the frame) and right when off the left.
    `text` is (width, height, baseline) from cv2.getTextSize."""
    x, y, _, _ = box
    text_w, text_h, baseline = text
    width, height = image_wh
    left = min(max(0, x), max(0, width - text_w))
    bottom = y - gap
    if bottom - text_h < 0:  # no room above the box: inside it, under its top edge
        bottom = y + gap + text_h
    bottom = min(max(text_h, bottom), max(text_h, height - baseline))
    return int(left), int(bottom)


def draw_boxes(image: np.ndarray, people: List[Person]) -> np.ndarray:
    """Each person's box and track id on the overlay (in place); interpolated/predicted boxes dashed-free thin."""
    thick = max(1, round(BOX_THICKNESS_PER_1000_PX * max(image.shape[:2]) / 1000))
    for person in people:
        x, y, w, h = (int(round(v)) for v in person.box)
        width = thick if person.source in ("detected", "given") else max(1, thick // 2)
        cv2.rectangle(image, (x, y), (x + w, y + h), BOX_COLOR_BGR, width, cv2.LINE_AA)
        label = f"id {person.pid}" + ("" if person.source in ("detected", "given") else f" ({person.source})")
        scale = 0.5 * thick
        (text_w, text_h), baseline = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        origin = label_origin(
            (x, y, w, h), (text_w, text_h, baseline), (image.shape[1], image.shape[0]), gap=2 * thick
        )
        cv2.putText(
            image,
            label,
            origin,
            cv2.FONT_HERSHEY_SIMPLEX,
            scale,
            BOX_COLOR_BGR,
            thick,
            cv2.LINE_AA,
        )
    return image


@dataclass
class FrameJob:
    """One frame to write: where it is in the input, the people in it and their rows in the chunk's `body`."""

    index: int
    name: str
    frame: np.ndarray
    people: List[Person]
    rows: List[int]


def render_workers(device) -> int:
    """Frames of a chunk rendered at once: one per core (at most MAX_RENDER_WORKERS) when rendering on the CPU,
    where each render is one single-threaded torch thread; one on a GPU."""
    if getattr(device, "type", str(device)) != "cpu":
        return 1
    return max(1, min(MAX_RENDER_WORKERS, os.cpu_count() or 1))


class _Stopped(Exception):
    """Marks the writer thread as stopping: frames still queued are dropped."""


class Writers:
    """The files of one run: overlay video or PNGs, per-frame PNGs of a video, OBJ meshes.

    `frames` hands a chunk's overlays to a pool of drawing threads (`render_workers`; torch releases the GIL,
    so a 2-core CPU draws two frames at once) and returns; a writer thread passes each finished overlay, in frame
    order, to the video (encoded in its own thread) or to its PNG, while the main thread reads the next chunk's
    frames. `wait` (before the next chunk's network, and in `close`) blocks until all are written and raises the
    first error; `abort` stops everything after an error elsewhere."""

    def __init__(self, folder: Path, config: DemoConfig, source: video.FrameSource):
        self.folder = folder
        self.config = config
        self.is_video = source.is_video
        self.draw = config.draw_boxes if config.draw_boxes is not None else source.is_video
        self.sink = None
        self.overlay_names: List[str] = []
        self.frame_files = 0
        self.mesh_files = 0
        self.pool: Optional[ThreadPoolExecutor] = None
        self.writer: Optional[threading.Thread] = None
        self.drawn: queue.Queue = queue.Queue()  # (job, future of its overlay) in frame order; None stops
        self.failed: Optional[BaseException] = None
        if config.render and source.is_video:
            self.sink = video.VideoSink(folder / OVERLAY_VIDEO, float(source.fps), background=True)
        elif config.render:
            (folder / OVERLAY_DIR).mkdir()
        if config.render and config.save_frames and source.is_video:
            (folder / FRAMES_DIR).mkdir()
        if config.export_mesh:
            (folder / MESH_DIR).mkdir()

    def frames(self, jobs: List[FrameJob], body: PeopleBody, engine: Engine, timer: Timer) -> None:
        """Meshes, overlays and frame files of one chunk, in frame order."""
        if self.config.export_mesh:
            t = timer.start()
            for job in jobs:
                stem = Path(display_name(job.name)).stem
                for person, k in zip(job.people, job.rows):  # original camera: body-model frame + transl
                    write_obj(
                        self.folder / MESH_DIR / f"{stem}_id{person.pid}.obj",
                        body.vertices[k] + body.transl[k],
                        engine.faces,
                    )
                    self.mesh_files += 1
            timer.add("video_io", t)
        if not self.config.render:
            return
        t = timer.start()
        if self.pool is None:
            self.pool = ThreadPoolExecutor(
                max_workers=render_workers(engine.device), thread_name_prefix="gtacli-render"
            )
            self.writer = threading.Thread(target=self._write_in_order, name="gtacli-writer", daemon=True)
            self.writer.start()
        for job in jobs:
            self.drawn.put((job, self.pool.submit(self._draw, job, body, engine)))
        timer.add("rendering", t)

    def _write_in_order(self) -> None:
        """Background thread: each overlay goes to the video (or its PNG) as soon as it and every one before it is
        drawn, so the encoder works while the next ones are drawn and the main thread reads the next frames."""
        while True:
            item = self.drawn.get()
            try:
                if item is None:
                    return
                job, future = item
                if self.failed is not None:
                    continue
                try:
                    self._write(job, future.result())
                except BaseException as exc:  # reported by `wait` in the main thread
                    self.failed = exc
            finally:
                self.drawn.task_done()

    def _write(self, job: FrameJob, image: np.ndarray) -> None:
        if self.sink is not None:
            self.sink.write(image)
            if self.config.save_frames:
                write_png(self.folder / FRAMES_DIR / f"{job.index:06d}.png", image)
                self.frame_files += 1
        else:
            name = display_name(job.name)
            self.overlay_names.append(self._overlay(Path(name).stem, Path(name).suffix, image))

    def wait(self, timer: Optional[Timer] = None) -> None:
        """Block until every overlay handed to `frames` is drawn and written; raise the first error."""
        t = timer.start() if timer is not None else 0.0
        if self.writer is not None:
            self.drawn.join()
        if timer is not None:
            timer.add("rendering", t)
        if self.failed is not None:
            error, self.failed = self.failed, None
            raise error

    def _draw(self, job: FrameJob, body: PeopleBody, engine: Engine) -> np.ndarray:
        verts = [body.verts_cam[k] for k in job.rows]
        Ks = [body.K_img[k] for k in job.rows]
        image = engine.render(job.frame, verts, Ks)  # drawn INTO job.frame: nothing reads it after this
        if self.draw:
            draw_boxes(image, job.people)
        if self.config.side_view:
            image = np.concatenate([image, engine.render_side(job.frame.shape, verts, Ks)], axis=1)
        return image

    def _overlay(self, stem: str, suffix: str, image: np.ndarray) -> str:
        target = self.folder / OVERLAY_DIR / f"{stem}.png"
        if target.exists():  # two inputs with one stem (a.jpg, a.png): keep both
            target = self.folder / OVERLAY_DIR / f"{stem}_{suffix.lstrip('.')}.png"
        write_png(target, image)
        return target.name

    def close(self, frames_done: int, timer: Optional[Timer] = None) -> None:
        self.wait(timer)
        self._stop_pool()
        if self.sink is None:
            return
        self.sink.close()
        if self.sink.frames_written != frames_done:
            raise GtacliError(
                f"wrote {self.sink.frames_written} of {frames_done} frames",
                path=self.config.output / OVERLAY_VIDEO,
                fix="check the free disk space and run again, or use --no-render for results only",
            )

    def abort(self) -> None:
        """Stop the background work after an error (the staged folder is discarded anyway)."""
        self._stop_pool()
        if self.sink is not None:
            self.sink.abort()

    def _stop_pool(self) -> None:
        if self.writer is not None:
            self.failed = self.failed or _Stopped()  # the writer drops what is still queued
            self.drawn.put(None)
            self.writer.join()
            self.writer = None
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

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
