"""Person boxes for the demo: detectors, user-given boxes, selection and tracking.

Boxes are `(K, 4)` float64 arrays `[x, y, w, h]` in image pixels (top-left corner, width, height).

Detectors (all offline, nothing is downloaded):

* `hog` (default): OpenCV's built-in HOG + linear SVM people detector (`cv2.HOGDescriptor_getDefaultPeopleDetector`),
  run on a copy of the frame whose long side is at most `HOG_MAX_SIDE` px, multi-scale, then score threshold and NMS.
  The INRIA window (64x128) holds a ~96-px-tall person with a margin, so boxes are tightened by `HOG_TIGHTEN_WH`
  around their centre.
* `ssd`: MobileNet-SSD (Caffe, VOC classes, person = class 15) through `cv2.dnn`, from
  `<data-root>/detectors/MobileNetSSD_deploy.prototxt` + `MobileNetSSD_deploy.caffemodel`.
* `yolo`: a YOLOv5/YOLOv8 ONNX export (COCO classes, person = class 0) through `cv2.dnn`, from
  `<data-root>/detectors/yolo.onnx` (640x640 input).
  The DNN detectors are used only when their files are present; otherwise a one-line error names the path.

User boxes (`--bbox x,y,w,h` for every frame, or `--bbox-file FILE`), formats of FILE (JSON):

1. SPIN's `im1010_bbox.json`: `{"bbox": [x, y, w, h]}`, one box used for every frame;
2. a list with one entry per frame (in input order); an entry is a box `[x, y, w, h]`, a list of boxes, or
   `null` / `[]` (no person in that frame);
3. a mapping from frame name to a box or a list of boxes; the name is the image file name (`img_001.jpg`), its
   stem (`img_001`) or the frame index as a string (`"0"`, for videos). Frames absent from the mapping have no person.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gtacli.errors import BadFileError, MissingFileError, UsageError

DETECTORS = ("hog", "ssd", "yolo")
DETECTOR_DIR = "detectors"  # under the data root

# HOG detector settings.
HOG_MAX_SIDE = 640  # px; detection runs on a downscaled copy (1080p: ~0.07 s instead of ~0.4 s per frame)
HOG_WIN_STRIDE = (8, 8)
HOG_PADDING = (16, 16)
HOG_SCALE_STEP = 1.05  # multi-scale pyramid factor
HOG_SCORE_THRESHOLD = 0.3  # SVM margin; below this a window is rejected
HOG_TIGHTEN_WH = (0.6, 0.8)  # the person's share of the INRIA window (width, height)

# DNN detector settings.
SSD_FILES = ("MobileNetSSD_deploy.prototxt", "MobileNetSSD_deploy.caffemodel")
SSD_INPUT = 300
SSD_MEAN = 127.5
SSD_SCALE = 1.0 / 127.5
SSD_PERSON_CLASS = 15  # VOC 'person' (class 0 = background)
YOLO_FILE = "yolo.onnx"
YOLO_INPUT = 640
YOLO_PERSON_CLASS = 0  # COCO 'person'
YOLO_V5_ATTRS = 85  # cx, cy, w, h, objectness + 80 COCO classes
YOLO_V8_ATTRS = 84  # cx, cy, w, h + 80 COCO classes
DNN_SCORE_THRESHOLD = 0.5

NMS_IOU_THRESHOLD = 0.45
TRACK_IOU_THRESHOLD = 0.3  # minimum IoU for a box to continue a track in the next frame


@dataclass
class Detections:
    """Person boxes of one frame: `boxes` (K,4) xywh px, `scores` (K,) (1.0 for user boxes), `ids` (K,) int."""

    boxes: np.ndarray
    scores: np.ndarray
    ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)
        if len(self.ids) != len(self.boxes):
            self.ids = np.arange(len(self.boxes), dtype=np.int64)

    def __len__(self) -> int:
        return len(self.boxes)

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4)), np.zeros(0))


# ----------------------------------------------------------------------------------------------- geometry


def iou_xywh(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of boxes `a` (N,4) and `b` (M,4), xywh -> (N,M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    ax2, ay2 = a[:, 0] + a[:, 2], a[:, 1] + a[:, 3]
    bx2, by2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
    iw = np.clip(np.minimum(ax2[:, None], bx2[None]) - np.maximum(a[:, 0, None], b[None, :, 0]), 0, None)
    ih = np.clip(np.minimum(ay2[:, None], by2[None]) - np.maximum(a[:, 1, None], b[None, :, 1]), 0, None)
    inter = iw * ih
    union = (a[:, 2] * a[:, 3])[:, None] + (b[:, 2] * b[:, 3])[None] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def non_max_suppression(
    boxes: np.ndarray, scores: np.ndarray, iou_threshold: float = NMS_IOU_THRESHOLD
) -> np.ndarray:
    """Indices of the boxes kept by greedy NMS, highest score first. `boxes` (K,4) xywh, `scores` (K,)."""
    order = list(np.argsort(-np.asarray(scores), kind="stable"))
    keep: List[int] = []
    while order:
        best = order.pop(0)
        keep.append(best)
        if order:
            overlap = iou_xywh(boxes[best : best + 1], boxes[order])[0]
            order = [i for i, o in zip(order, overlap) if o <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def tighten(boxes: np.ndarray, factor_wh: Tuple[float, float]) -> np.ndarray:
    """Scale box width/height by `factor_wh` keeping the centre. (K,4) xywh -> (K,4)."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4).copy()
    cx, cy = boxes[:, 0] + boxes[:, 2] / 2, boxes[:, 1] + boxes[:, 3] / 2
    boxes[:, 2] *= factor_wh[0]
    boxes[:, 3] *= factor_wh[1]
    boxes[:, 0], boxes[:, 1] = cx - boxes[:, 2] / 2, cy - boxes[:, 3] / 2
    return boxes


def check_box_in_image(box: Sequence[float], image_wh: Tuple[int, int], source: str) -> None:
    """A usable box has w, h > 0 and its centre inside the image; otherwise a one-line BadFileError."""
    x, y, w, h = (float(v) for v in box)
    width, height = image_wh
    if not (np.isfinite([x, y, w, h]).all() and w > 0 and h > 0):
        raise BadFileError(
            f"box [{x:g}, {y:g}, {w:g}, {h:g}] needs a positive width and height",
            path=source,
            fix="give the box as x,y,w,h in pixels: top-left corner, then width and height (both > 0)",
        )
    cx, cy = x + w / 2, y + h / 2
    if not (0 <= cx < width and 0 <= cy < height):
        raise BadFileError(
            f"box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside the {width}x{height} image (its centre must be inside)",
            path=source,
            fix="give the box as x,y,w,h in pixels of this image",
        )


def select_people(dets: Detections, max_people: Optional[int]) -> Detections:
    """Keep at most `max_people` boxes: highest score first, larger area breaking ties; sorted that way."""
    if len(dets) == 0:
        return dets
    area = dets.boxes[:, 2] * dets.boxes[:, 3]
    order = np.lexsort((-area, -dets.scores))  # primary key: score, then area (both descending)
    if max_people is not None:
        order = order[:max_people]
    return Detections(dets.boxes[order], dets.scores[order], dets.ids[order])


class IouTracker:
    """Person ids kept across frames by greedy IoU matching with the previous frame's boxes.

    A box continues the track of the previous-frame box it overlaps most (IoU >= `iou_threshold`, each track
    used once, best pairs first); other boxes start new ids. Tracks not seen in a frame end.
    """

    def __init__(self, iou_threshold: float = TRACK_IOU_THRESHOLD):
        self.iou_threshold = iou_threshold
        self.next_id = 0
        self.prev_boxes = np.zeros((0, 4))
        self.prev_ids = np.zeros(0, np.int64)

    def update(self, dets: Detections) -> Detections:
        ids = np.full(len(dets), -1, np.int64)
        if len(dets) and len(self.prev_boxes):
            overlap = iou_xywh(dets.boxes, self.prev_boxes)
            pairs = sorted(
                ((overlap[i, j], i, j) for i in range(len(dets)) for j in range(len(self.prev_ids))),
                reverse=True,
            )
            used_prev = set()
            for value, i, j in pairs:
                if value < self.iou_threshold:
                    break
                if ids[i] < 0 and j not in used_prev:
                    ids[i] = self.prev_ids[j]
                    used_prev.add(j)
        for i in range(len(dets)):
            if ids[i] < 0:
                ids[i] = self.next_id
                self.next_id += 1
        self.prev_boxes, self.prev_ids = dets.boxes.copy(), ids.copy()
        return Detections(dets.boxes, dets.scores, ids)


# ----------------------------------------------------------------------------------------------- detectors


class HogDetector:
    """OpenCV's default HOG people detector (offline, ships with OpenCV). `__call__(frame_bgr) -> Detections`."""

    name = "hog"

    def __init__(
        self,
        score_threshold: float = HOG_SCORE_THRESHOLD,
        max_side: int = HOG_MAX_SIDE,
        nms_iou: float = NMS_IOU_THRESHOLD,
    ):
        import cv2

        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.score_threshold = score_threshold
        self.max_side = max_side
        self.nms_iou = nms_iou

    def __call__(self, frame: np.ndarray) -> Detections:
        import cv2

        height, width = frame.shape[:2]
        factor = min(1.0, self.max_side / max(height, width))
        small = (
            frame
            if factor == 1.0
            else cv2.resize(frame, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        )
        rects, weights = self.hog.detectMultiScale(
            small, winStride=HOG_WIN_STRIDE, padding=HOG_PADDING, scale=HOG_SCALE_STEP
        )
        if len(rects) == 0:
            return Detections.empty()
        boxes = np.asarray(rects, np.float64).reshape(-1, 4) / factor
        scores = np.asarray(weights, np.float64).reshape(-1)
        good = scores >= self.score_threshold
        boxes, scores = boxes[good], scores[good]
        keep = non_max_suppression(boxes, scores, self.nms_iou)
        return Detections(tighten(boxes[keep], HOG_TIGHTEN_WH), scores[keep])


class SsdDetector:
    """MobileNet-SSD (Caffe) person detector through cv2.dnn; weights must be present locally."""

    name = "ssd"

    def __init__(self, prototxt: Path, weights: Path, score_threshold: float = DNN_SCORE_THRESHOLD):
        import cv2

        self.net = cv2.dnn.readNetFromCaffe(str(prototxt), str(weights))
        self.score_threshold = score_threshold

    def __call__(self, frame: np.ndarray) -> Detections:
        import cv2

        height, width = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(
            cv2.resize(frame, (SSD_INPUT, SSD_INPUT)), SSD_SCALE, (SSD_INPUT, SSD_INPUT), SSD_MEAN
        )
        self.net.setInput(blob)
        return parse_ssd_output(self.net.forward(), (width, height), self.score_threshold)


class YoloDetector:
    """YOLOv5/YOLOv8 ONNX person detector through cv2.dnn; weights must be present locally."""

    name = "yolo"

    def __init__(self, onnx: Path, score_threshold: float = DNN_SCORE_THRESHOLD):
        import cv2

        self.net = cv2.dnn.readNetFromONNX(str(onnx))
        self.score_threshold = score_threshold

    def __call__(self, frame: np.ndarray) -> Detections:
        import cv2

        height, width = frame.shape[:2]
        # Letterbox to a square: scale the long side to YOLO_INPUT, pad bottom/right with grey.
        factor = YOLO_INPUT / max(height, width)
        resized = cv2.resize(frame, (round(width * factor), round(height * factor)))
        canvas = np.full((YOLO_INPUT, YOLO_INPUT, 3), 114, np.uint8)
        canvas[: resized.shape[0], : resized.shape[1]] = resized
        blob = cv2.dnn.blobFromImage(canvas, 1.0 / 255.0, (YOLO_INPUT, YOLO_INPUT), swapRB=True)
        self.net.setInput(blob)
        return parse_yolo_output(self.net.forward(), factor, self.score_threshold)


def parse_ssd_output(out: np.ndarray, image_wh: Tuple[int, int], score_threshold: float) -> Detections:
    """SSD `DetectionOutput` (1,1,K,7) rows `[_, class, score, x1, y1, x2, y2]` (relative) -> person boxes."""
    rows = np.asarray(out, np.float64).reshape(-1, 7)
    rows = rows[(rows[:, 1] == SSD_PERSON_CLASS) & (rows[:, 2] >= score_threshold)]
    width, height = image_wh
    x1, y1 = rows[:, 3] * width, rows[:, 4] * height
    x2, y2 = rows[:, 5] * width, rows[:, 6] * height
    boxes = np.stack([x1, y1, x2 - x1, y2 - y1], axis=1) if len(rows) else np.zeros((0, 4))
    keep = non_max_suppression(boxes, rows[:, 2]) if len(rows) else np.zeros(0, np.int64)
    return Detections(boxes[keep], rows[keep, 2])


def parse_yolo_output(out: np.ndarray, factor: float, score_threshold: float) -> Detections:
    """YOLO head output -> person boxes in original pixels (`factor` = network px per image px).

    YOLOv5: (1, N, 5+C) rows `[cx, cy, w, h, objectness, class scores...]`, score = objectness x class score.
    YOLOv8: (1, 4+C, N) columns `[cx, cy, w, h, class scores...]`, score = class score.
    """
    arr = np.asarray(out, np.float64)
    arr = arr.reshape(arr.shape[-2], arr.shape[-1])
    # COCO heads have 85 (v5) or 84 (v8) attributes; otherwise the attribute axis is the short one.
    if arr.shape[1] == YOLO_V5_ATTRS:
        is_v8 = False
    elif arr.shape[0] == YOLO_V8_ATTRS:
        is_v8 = True
    else:
        is_v8 = arr.shape[0] < arr.shape[1]
    if is_v8:  # transpose to rows
        rows = arr.T
        scores = rows[:, 4 + YOLO_PERSON_CLASS]
        is_person = rows[:, 4:].argmax(axis=1) == YOLO_PERSON_CLASS
    else:
        rows = arr
        scores = rows[:, 4] * rows[:, 5 + YOLO_PERSON_CLASS]
        is_person = rows[:, 5:].argmax(axis=1) == YOLO_PERSON_CLASS
    good = is_person & (scores >= score_threshold)
    rows, scores = rows[good], scores[good]
    boxes = np.stack(
        [rows[:, 0] - rows[:, 2] / 2, rows[:, 1] - rows[:, 3] / 2, rows[:, 2], rows[:, 3]], axis=1
    )
    boxes = boxes / factor
    keep = non_max_suppression(boxes, scores) if len(rows) else np.zeros(0, np.int64)
    return Detections(boxes[keep], scores[keep])


def build_detector(name: str, data_root: Optional[Path] = None) -> Any:
    """A callable `frame_bgr -> Detections`. DNN detectors need their files under `<data_root>/detectors/`."""
    if name == "hog":
        return HogDetector()
    folder = Path(data_root or "data") / DETECTOR_DIR
    if name == "ssd":
        files = [folder / f for f in SSD_FILES]
        for path in files:
            _require_detector_file(path, name)
        return SsdDetector(files[0], files[1])
    if name == "yolo":
        path = folder / YOLO_FILE
        _require_detector_file(path, name)
        return YoloDetector(path)
    raise UsageError(f"unknown detector {name!r}", fix=f"use one of: {', '.join(DETECTORS)}")


def _require_detector_file(path: Path, name: str) -> None:
    if not path.is_file():
        raise MissingFileError(
            f"detector '{name}' needs this file and it is absent",
            path=path,
            fix=f"put the {name} weights there (see `gtacli demo --help`), or use --detector hog (built into OpenCV)",
        )


# ----------------------------------------------------------------------------------------------- user boxes


def parse_bbox_option(text: str) -> np.ndarray:
    """`--bbox x,y,w,h` -> (4,) float64."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise UsageError(f"--bbox {text!r} is not four numbers", fix="write it as --bbox x,y,w,h (pixels)")
    return np.asarray(values, np.float64)


class UserBoxes:
    """Boxes given by the user, looked up per frame: `boxes_for(index, name) -> (K,4)`.

    `per_frame` is either None (one set of boxes for every frame: `every_frame`), a list indexed by frame
    position, or a dict keyed by frame name / stem / index string.
    """

    def __init__(
        self, every_frame: Optional[np.ndarray] = None, per_frame: Any = None, source: str = "--bbox"
    ):
        self.every_frame = every_frame
        self.per_frame = per_frame
        self.source = source

    def boxes_for(self, index: int, name: str) -> np.ndarray:
        if self.every_frame is not None:
            return self.every_frame
        if isinstance(self.per_frame, list):
            if index >= len(self.per_frame):
                raise BadFileError(
                    f"has boxes for {len(self.per_frame)} frames but the input has more",
                    path=self.source,
                    fix="give one entry per frame (null for a frame without a person)",
                )
            return self.per_frame[index]
        for key in (name, Path(name).stem, str(index)):
            if key in self.per_frame:
                return self.per_frame[key]
        return np.zeros((0, 4))

    def check_frame_count(self, frame_count: int) -> None:
        if isinstance(self.per_frame, list) and len(self.per_frame) != frame_count:
            raise BadFileError(
                f"has boxes for {len(self.per_frame)} frames, the input has {frame_count}",
                path=self.source,
                fix="give one entry per frame (null for a frame without a person)",
            )


_BBOX_FILE_EXAMPLE = '{"bbox": [x, y, w, h]} (SPIN\'s format)'


def load_bbox_file(path: Path) -> UserBoxes:
    """Read a `--bbox-file` in one of the three documented formats (module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("bbox file not found", path=path, fix="check the path given to --bbox-file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadFileError(
            f"not valid JSON ({exc.__class__.__name__}: {exc})",
            path=path,
            fix=f"write the boxes as JSON, e.g. {_BBOX_FILE_EXAMPLE}",
        ) from None
    if isinstance(data, dict) and set(data) == {"bbox"}:
        return UserBoxes(every_frame=_boxes_entry(data["bbox"], path), source=str(path))
    if isinstance(data, list):
        return UserBoxes(per_frame=[_boxes_entry(entry, path) for entry in data], source=str(path))
    if isinstance(data, dict):
        return UserBoxes(per_frame={str(k): _boxes_entry(v, path) for k, v in data.items()}, source=str(path))
    raise BadFileError(
        "is not a bbox file",
        path=path,
        fix='use {"bbox": [x, y, w, h]}, a list with one entry per frame, or {"frame name": [[x, y, w, h], ...]}',
    )


def _boxes_entry(entry: Any, path: Path) -> np.ndarray:
    """One frame's entry: a box, a list of boxes, null or [] -> (K,4)."""
    if entry is None:
        return np.zeros((0, 4))
    if isinstance(entry, dict) and "bbox" in entry:
        entry = entry["bbox"]
    try:
        arr = np.asarray(entry, np.float64)
    except (TypeError, ValueError):
        arr = np.zeros((0, 3))
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.shape == (4,):
        return arr[None]
    if arr.ndim == 2 and arr.shape[1] == 4:
        return arr
    if arr.ndim == 2 and arr.shape[1] == 5:  # [x, y, w, h, score]: score ignored
        return arr[:, :4]
    raise BadFileError(
        f"entry {entry!r} is not a box [x, y, w, h] or a list of boxes",
        path=path,
        fix=f"give four numbers per box, e.g. {_BBOX_FILE_EXAMPLE}",
    )


def detections_from_user(boxes: np.ndarray) -> Detections:
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    return Detections(boxes, np.ones(len(boxes)))


def describe_detector(name: str) -> Dict[str, Any]:
    """Settings of a detector for results.json."""
    if name == "hog":
        return {
            "name": "hog",
            "max_side_px": HOG_MAX_SIDE,
            "scale_step": HOG_SCALE_STEP,
            "score_threshold": HOG_SCORE_THRESHOLD,
            "nms_iou": NMS_IOU_THRESHOLD,
            "tighten_wh": list(HOG_TIGHTEN_WH),
        }
    return {"name": name, "score_threshold": DNN_SCORE_THRESHOLD, "nms_iou": NMS_IOU_THRESHOLD}
