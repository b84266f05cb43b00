"""Frames in and out for the demo: one image, a folder of images, or a video file; overlay videos out.

`open_frames(path)` returns a `FrameSource` that yields `(index, name, frame_bgr uint8 (H,W,3))` in order:

* an image file: one frame, name = the file name;
* a folder: every image in it (extensions `IMAGE_EXTENSIONS`), natural sort order (`img2` before `img10`);
* a video (OpenCV `VideoCapture`): every decodable frame, name = `"%06d" % index`. The container's frame count
  is a hint only; the real count is what decodes. When the fps metadata is missing or implausible, or the
  frame timestamps show a variable frame rate, the source says so (`fps_note`) and uses a sane value:
  the mean rate over the decoded timestamps when they exist, else `DEFAULT_FPS`.
"""

from __future__ import annotations

import atexit
import os
import queue
import re
import shutil
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, List, Optional, Tuple

import numpy as np

from gtacli.errors import BadFileError, GtacliError, MissingFileError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv", ".flv")
DEFAULT_FPS = 30.0
FPS_RANGE = (1.0, 240.0)  # fps metadata outside this range is treated as missing
VFR_TOLERANCE = 0.1  # relative spread of frame intervals above which the rate is called variable
VIDEO_FOURCC = "mp4v"


@dataclass
class FrameSource:
    """An ordered source of frames. `kind` is 'image', 'folder' or 'video'."""

    path: Path
    kind: str
    image_paths: List[Path] = field(default_factory=list)
    fps: Optional[float] = None  # video only; the rate the output video is written at
    fps_metadata: Optional[float] = None
    fps_note: Optional[str] = None
    frame_count_hint: Optional[int] = None  # container metadata (videos) or exact (images)
    frames_read: int = 0
    timestamps_ms: List[float] = field(default_factory=list)

    @property
    def is_video(self) -> bool:
        return self.kind == "video"

    def __iter__(self) -> Iterator[Tuple[int, str, np.ndarray]]:
        if self.is_video:
            yield from self._iter_video()
        else:
            for index, image_path in enumerate(self.image_paths):
                yield index, image_path.name, read_image(image_path)
                self.frames_read = index + 1

    def _iter_video(self) -> Iterator[Tuple[int, str, np.ndarray]]:
        import cv2

        cap = capture(self.path)
        if not cap.isOpened():
            raise BadFileError(
                "OpenCV cannot open this video", path=self.path, fix="check the file or re-encode it"
            )
        self.frames_read = 0
        self.timestamps_ms = []
        try:
            while True:
                ok, frame = cap.read()
                if not ok or frame is None:
                    break
                self.timestamps_ms.append(float(cap.get(cv2.CAP_PROP_POS_MSEC)))
                index = self.frames_read
                self.frames_read += 1
                yield index, f"{index:06d}", frame
        finally:
            cap.release()
        if self.frames_read == 0:
            raise BadFileError(
                "the video has no decodable frame", path=self.path, fix="check the file or re-encode it"
            )

    def measured_fps(self) -> Optional[float]:
        """Mean frame rate from the decoded timestamps (None when they are missing or not increasing)."""
        ts = np.asarray(self.timestamps_ms, np.float64)
        if len(ts) < 3:
            return None
        steps = np.diff(ts)
        if not np.all(steps > 0):
            return None
        return float(1000.0 / steps.mean())


def natural_key(name: str) -> list:
    """Sort key that orders embedded numbers numerically: 'img2' < 'img10'."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def open_frames(path: Path) -> FrameSource:
    """Inspect an input path (image, folder or video) without decoding everything; see the module docstring."""
    path = Path(path)
    if not path.exists():
        raise MissingFileError(
            "input not found", path=path, fix="give an image, a folder of images or a video"
        )
    if path.is_dir():
        images = sorted(
            (p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS),
            key=lambda p: natural_key(p.name),
        )
        if not images:
            raise BadFileError(
                f"the folder has no images ({', '.join(IMAGE_EXTENSIONS)})",
                path=path,
                fix="point INPUT at a folder with images, an image or a video",
            )
        return FrameSource(path=path, kind="folder", image_paths=images, frame_count_hint=len(images))
    if path.suffix.lower() in IMAGE_EXTENSIONS:
        return FrameSource(path=path, kind="image", image_paths=[path], frame_count_hint=1)
    return _open_video(path)


def capture(path: Path):
    """`cv2.VideoCapture` for any file name. OpenCV takes the name as UTF-8 text, so a name with other bytes
    (Python keeps them as surrogates) is opened through a UTF-8-named symbolic link in a private temporary folder."""
    import cv2

    return cv2.VideoCapture(str(utf8_path(Path(path))))


def utf8_path(path: Path) -> Path:
    """`path`, or an equivalent UTF-8 path through a symbolic link when its name has other bytes (OpenCV's
    writers crash on such names; its readers fail)."""
    try:
        str(path).encode("utf-8")
        return path
    except UnicodeEncodeError:
        pass
    try:
        path.name.encode("utf-8")
        return _utf8_alias(path.parent) / path.name  # only a folder above has such bytes
    except UnicodeEncodeError:
        return _utf8_alias(path)


_ALIASES: dict = {}


def _utf8_alias(path: Path) -> Path:
    if path not in _ALIASES:
        folder = Path(tempfile.mkdtemp(prefix="gtacli-video-"))
        atexit.register(shutil.rmtree, folder, True)
        alias = folder / ("input" + os.fsencode(path.suffix).decode("ascii", "replace").replace("\ufffd", ""))
        alias.symlink_to(path.resolve())
        _ALIASES[path] = alias
    return _ALIASES[path]


def _open_video(path: Path) -> FrameSource:
    import cv2

    if path.stat().st_size == 0:
        raise BadFileError("the file is empty", path=path, fix="give an image, a folder of images or a video")
    cap = capture(path)
    try:
        if not cap.isOpened():
            kind = "video" if path.suffix.lower() in VIDEO_EXTENSIONS else "image or video"
            raise BadFileError(
                f"not a readable {kind}", path=path, fix="check the file or re-encode it (e.g. H.264 mp4)"
            )
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        count = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
    finally:
        cap.release()
    source = FrameSource(path=path, kind="video", frame_count_hint=count if count > 0 else None)
    if np.isfinite(fps) and FPS_RANGE[0] <= fps <= FPS_RANGE[1]:
        source.fps = source.fps_metadata = fps
    else:
        source.fps = DEFAULT_FPS
        source.fps_note = f"the video has no usable fps metadata ({fps:g}); assuming {DEFAULT_FPS:g} fps"
    return source


def settle_video_fps(source: FrameSource) -> Optional[str]:
    """After decoding: cross-check the fps with the frame timestamps; returns a note when it changed the rate.

    A variable frame rate (frame intervals spreading more than `VFR_TOLERANCE`) or missing metadata is
    replaced by the mean measured rate, so the overlay video keeps the source's duration.
    """
    measured = source.measured_fps()
    ts = np.asarray(source.timestamps_ms, np.float64)
    if measured is None:
        return source.fps_note
    if not FPS_RANGE[0] <= measured <= FPS_RANGE[1]:  # timestamps as implausible as the metadata
        source.fps = DEFAULT_FPS
        source.fps_note = (
            f"the video's frame rate is implausible (metadata {source.fps_metadata or 0:g}, timestamps "
            f"{measured:.3g} fps); the overlay video uses {DEFAULT_FPS:g} fps"
        )
        return source.fps_note
    steps = np.diff(ts)
    spread = float((steps.max() - steps.min()) / steps.mean())
    if source.fps_metadata is None:
        source.fps = measured
        source.fps_note = (
            f"the video has no usable fps metadata; using the measured mean rate {measured:.3f} fps"
        )
    elif spread > VFR_TOLERANCE:
        source.fps = measured
        source.fps_note = (
            f"the video has a variable frame rate (intervals {steps.min():.1f}-{steps.max():.1f} ms); "
            f"the overlay video uses the mean rate {measured:.3f} fps"
        )
    return source.fps_note


def read_image(path: Path) -> np.ndarray:
    """An image file as uint8 BGR (H,W,3); greyscale/alpha converted. Unreadable -> BadFileError."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8) if Path(path).is_file() else None
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data is not None and data.size else None
    if image is None:
        raise BadFileError(
            "OpenCV cannot read this image", path=path, fix="check the file (jpg/png/bmp/tif/webp)"
        )
    return image


class VideoSink:
    """Writes BGR frames to an mp4 (fourcc `VIDEO_FOURCC`) at a fixed fps; the size is taken from the first frame.

    With `background=True` the encoding runs in a thread (OpenCV releases the GIL while it encodes), so a
    frame's encoding overlaps the next frames' work; at most `QUEUE_FRAMES` frames wait (~6 MB
    each at 1080p). The video is opened (and a failure to open it reported) in the caller's thread; an error
    while encoding is raised by every later `write` and by `close`. Frames handed to `write` must not be
    modified afterwards."""

    QUEUE_FRAMES = 8

    def __init__(self, path: Path, fps: float, background: bool = False):
        self.path = Path(path)
        self.fps = float(fps)
        self.writer = None
        self.size: Optional[Tuple[int, int]] = None
        self.frames_written = 0
        self.background = background
        self._queue: Optional[queue.Queue] = None
        self._thread: Optional[threading.Thread] = None
        self._error: Optional[BaseException] = None
        self._abort = False

    def write(self, frame: np.ndarray) -> None:
        import cv2

        if self.writer is None:
            self.size = (frame.shape[1], frame.shape[0])
            self.writer = cv2.VideoWriter(
                str(utf8_path(self.path)), cv2.VideoWriter_fourcc(*VIDEO_FOURCC), self.fps, self.size
            )
            if not self.writer.isOpened():
                raise GtacliError(
                    f"OpenCV cannot write a {VIDEO_FOURCC} video here",
                    path=self.path,
                    fix="install an opencv-python build with video support, or use --no-render for results only",
                )
            if self.background:
                self._queue = queue.Queue(maxsize=self.QUEUE_FRAMES)
                self._thread = threading.Thread(target=self._encode, name="gtacli-video-sink", daemon=True)
                self._thread.start()
        if (frame.shape[1], frame.shape[0]) != self.size:
            # Video frames must share one size; a folder of mixed sizes is letterboxed into the first one.
            frame = letterbox(frame, self.size)
        frame = np.ascontiguousarray(frame)
        if self._queue is None:
            self.writer.write(frame)
            self.frames_written += 1
            return
        self._raise_error()
        self._queue.put(frame)

    def _encode(self) -> None:
        while True:
            frame = self._queue.get()
            if frame is None:
                return
            if self._error is not None or self._abort:
                continue  # keep taking frames so the producer never blocks on a full queue
            try:
                self.writer.write(frame)
                self.frames_written += 1
            except BaseException as exc:  # reported in the caller's thread
                self._error = exc

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _stop(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
            self._queue = None

    def close(self) -> None:
        """Finish encoding the queued frames and close the file."""
        self._stop()
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        self._raise_error()

    def abort(self) -> None:
        """Drop the queued frames and close the file (after an error elsewhere; raises nothing)."""
        self._abort = True
        self._stop()
        self._error = None
        if self.writer is not None:
            self.writer.release()
            self.writer = None


def letterbox(frame: np.ndarray, size_wh: Tuple[int, int]) -> np.ndarray:
    """Fit `frame` inside `size_wh` keeping its aspect ratio, black borders."""
    import cv2

    width, height = size_wh
    factor = min(width / frame.shape[1], height / frame.shape[0])
    new_w, new_h = max(1, round(frame.shape[1] * factor)), max(1, round(frame.shape[0] * factor))
    canvas = np.zeros((height, width, 3), np.uint8)
    x0, y0 = (width - new_w) // 2, (height - new_h) // 2
    canvas[y0 : y0 + new_h, x0 : x0 + new_w] = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_AREA)
    return canvas


def probe_video(path: Path) -> Tuple[int, float, Tuple[int, int]]:
    """(decoded frame count, fps metadata, (width, height)) of a video, by decoding it."""
    import cv2

    cap = capture(path)
    if not cap.isOpened():
        raise BadFileError("OpenCV cannot open this video", path=path)
    fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while cap.grab():
        count += 1
    cap.release()
    return count, fps, size
