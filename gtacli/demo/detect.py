"""Person boxes for the demo from detectors: HOG, YOLOX, SSD and YOLO, score thresholds, NMS and selection.

Boxes are `(K, 4)` float64 arrays `[x, y, w, h]` in image pixels (top-left corner, width, height).

Detectors (`--detector`; `auto`, the default, is `yolox` when its weights are present, else `hog`):

* `yolox`: OpenCV model zoo's YOLOX-S (`object_detection_yolox_2022nov.onnx`, COCO, person = class 0) through
  `cv2.dnn`, fetched by `gtacli fetch detector` (the asset `detector` of `gtacli/assets/manifest.json`, which
  holds its destination and pinned sha256; the caller passes both, and the hash is checked before use). Input: the frame as RGB, letterboxed into a 640x640 canvas (scaled by r = min(640/h, 640/w),
  top-left, grey 114 padding), values 0-255 unnormalised; output (1, N, 85) raw per-anchor rows over strides
  8, 16, 32 (grid x fastest): `cx = (dx + gx) s`, `cy = (dy + gy) s`, `w = exp(dw) s`, `h = exp(dh) s`, then
  objectness x class score, threshold, NMS, boxes / r.
* `hog`: OpenCV's built-in HOG + linear SVM people detector (`cv2.HOGDescriptor_getDefaultPeopleDetector`),
  run on a copy of the frame whose long side is at most `HOG_MAX_SIDE` px, multi-scale, then score threshold and NMS.
  The INRIA window (64x128) holds a ~96-px-tall person with a margin, so boxes are tightened by `HOG_TIGHTEN_WH`
  around their centre.
* `ssd`: MobileNet-SSD (Caffe, VOC classes, person = class 15) through `cv2.dnn`, from
  `<data-root>/detectors/MobileNetSSD_deploy.prototxt` + `MobileNetSSD_deploy.caffemodel`.
* `yolo`: a YOLOv5/YOLOv8 ONNX export (COCO classes, person = class 0) through `cv2.dnn`, from
  `<data-root>/detectors/yolo.onnx` (640x640 input).
  The DNN detectors are used only when their files are present; otherwise a one-line error names the path;
  a file OpenCV cannot load is a one-line error too.

User-given boxes (`--bbox`, `--bbox-file`, OpenPose files) live in `gtacli/demo/boxes.py`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from gtacli.device import configure_threads
from gtacli.errors import BadFileError, MissingFileError, UsageError
from gtacli.io.hashing import sha256_file
from gtacli.model.onnx_export import session

DETECTORS = ("auto", "yolox", "hog", "ssd", "yolo")
DETECTOR_DIR = "detectors"  # under the data root

# YOLOX settings (OpenCV model zoo object_detection_yolox: input 640, strides 8/16/32, no normalisation).
YOLOX_INPUT = 640
YOLOX_STRIDES = (8, 16, 32)
YOLOX_PAD_VALUE = 114.0
YOLOX_SCORE_THRESHOLD = 0.35  # objectness x person score; the zoo demo's class-confidence default
YOLOX_PERSON_CLASS = 0  # COCO 'person'
YOLOX_ATTRS = 85  # dx, dy, dw, dh, objectness + 80 COCO classes

# HOG detector settings.
HOG_MAX_SIDE = 640  # px; detection runs on a downscaled copy (several times faster on 1080p frames)
HOG_WIN_STRIDE = (8, 8)
HOG_PADDING = (16, 16)
HOG_SCALE_STEP = 1.05  # multi-scale pyramid factor
HOG_SCORE_THRESHOLD = 0.3  # SVM margin; below this a window is rejected
HOG_TIGHTEN_WH = (0.6, 0.8)  # the person's share of the INRIA window (width, height)
HOG_WINDOW_WH = (64, 128)  # OpenCV's default people detector window; a smaller image crashes detectMultiScale
MIN_BOX_SIDE_PX = 2.0  # a user box narrower or lower than this is no person (a 224-px crop of a dot)

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


@dataclass
class Detections:
    """Person boxes of one frame: `boxes` (K,4) xywh px, `scores` (K,) (1.0 for user boxes)."""

    boxes: np.ndarray
    scores: np.ndarray

    def __post_init__(self) -> None:
        self.boxes = np.asarray(self.boxes, np.float64).reshape(-1, 4)
        self.scores = np.asarray(self.scores, np.float64).reshape(-1)

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
    if not (np.isfinite([x, y, w, h]).all() and w >= MIN_BOX_SIDE_PX and h >= MIN_BOX_SIDE_PX):
        raise BadFileError(
            f"box [{x:g}, {y:g}, {w:g}, {h:g}] needs a width and height of at least {MIN_BOX_SIDE_PX:g} px",
            path=source,
            fix="give the box as x,y,w,h in pixels: top-left corner, then width and height",
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
    return Detections(dets.boxes[order], dets.scores[order])


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
        # Downscale to max_side for speed, but never below the detector window (OpenCV aborts the process
        # on an image smaller than it): tiny images and thin panoramas are scaled up to fit it.
        factor = min(1.0, self.max_side / max(height, width))
        factor = max(factor, HOG_WINDOW_WH[0] / width, HOG_WINDOW_WH[1] / height)
        small = (
            frame
            if factor == 1.0
            else cv2.resize(
                frame,
                (max(HOG_WINDOW_WH[0], round(width * factor)), max(HOG_WINDOW_WH[1], round(height * factor))),
                interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR,
            )
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

    def describe(self) -> Dict[str, Any]:
        return {
            "name": "hog",
            "max_side_px": self.max_side,
            "scale_step": HOG_SCALE_STEP,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
            "tighten_wh": list(HOG_TIGHTEN_WH),
        }


class SsdDetector:
    """MobileNet-SSD (Caffe) person detector through cv2.dnn; weights must be present locally."""

    name = "ssd"

    def __init__(self, prototxt: Path, weights: Path, score_threshold: float = DNN_SCORE_THRESHOLD):
        import cv2

        self.net = _load_net(lambda: cv2.dnn.readNetFromCaffe(str(prototxt), str(weights)), weights, "ssd")
        self.score_threshold = score_threshold

    def __call__(self, frame: np.ndarray) -> Detections:
        import cv2

        height, width = frame.shape[:2]
        blob = cv2.dnn.blobFromImage(
            cv2.resize(frame, (SSD_INPUT, SSD_INPUT)), SSD_SCALE, (SSD_INPUT, SSD_INPUT), SSD_MEAN
        )
        self.net.setInput(blob)
        return parse_ssd_output(self.net.forward(), (width, height), self.score_threshold)

    def describe(self) -> Dict[str, Any]:
        return {"name": self.name, "score_threshold": self.score_threshold, "nms_iou": NMS_IOU_THRESHOLD}


class YoloDetector:
    """YOLOv5/YOLOv8 ONNX person detector through cv2.dnn; weights must be present locally."""

    name = "yolo"

    def __init__(self, onnx: Path, score_threshold: float = DNN_SCORE_THRESHOLD):
        import cv2

        self.net = _load_net(lambda: cv2.dnn.readNetFromONNX(str(onnx)), onnx, "yolo")
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

    describe = SsdDetector.describe


class YoloxDetector:
    """OpenCV model zoo's YOLOX (raw (1, N, 85) head output); see the module docstring. It runs in cv2.dnn, or
    in onnxruntime when the demo's engine is onnxruntime (`runtime="onnxruntime"`, the same raw output)."""

    name = "yolox"

    def __init__(
        self,
        onnx: Path,
        input_size: int = YOLOX_INPUT,
        score_threshold: float = YOLOX_SCORE_THRESHOLD,
        nms_iou: float = NMS_IOU_THRESHOLD,
        runtime: str = "opencv",
    ):
        import cv2

        self.path = Path(onnx)
        self.runtime = runtime
        self.net = self.session = None
        if runtime == "onnxruntime":
            fix = "fetch it again (`gtacli fetch detector --force`), or use --detector hog"
            self.session = session(self.path, threads=configure_threads(None), path=self.path, fix=fix)
            self.input_name = self.session.get_inputs()[0].name
        else:
            self.net = _load_net(lambda: cv2.dnn.readNetFromONNX(str(onnx)), self.path, "yolox")
        self.input_size = int(input_size)
        self.score_threshold = score_threshold
        self.nms_iou = nms_iou
        self.grid, self.strides = yolox_anchors(self.input_size)

    def preprocess(self, frame: np.ndarray) -> Tuple[np.ndarray, float]:
        """BGR frame -> ((1, 3, S, S) float32 RGB letterboxed blob, scale r = network px per image px)."""
        import cv2

        height, width = frame.shape[:2]
        ratio = min(self.input_size / height, self.input_size / width)
        new_w, new_h = max(1, int(width * ratio)), max(1, int(height * ratio))
        resized = cv2.resize(frame, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        canvas = np.full((self.input_size, self.input_size, 3), YOLOX_PAD_VALUE, np.float32)
        canvas[:new_h, :new_w] = resized[:, :, ::-1]
        return np.ascontiguousarray(canvas.transpose(2, 0, 1)[None]), ratio

    def __call__(self, frame: np.ndarray) -> Detections:
        blob, ratio = self.preprocess(frame)
        if self.session is not None:
            raw = self.session.run(None, {self.input_name: blob})[0]
        else:
            self.net.setInput(blob)
            raw = self.net.forward()
        return decode_yolox(raw, self.grid, self.strides, ratio, self.score_threshold, self.nms_iou)

    def describe(self) -> Dict[str, Any]:
        return {
            "name": "yolox",
            "weights": self.path.name,
            "runtime": "onnxruntime" if self.session is not None else "opencv-dnn",
            "input_px": self.input_size,
            "score_threshold": self.score_threshold,
            "nms_iou": self.nms_iou,
        }


def yolox_anchors(input_size: int, strides: Sequence[int] = YOLOX_STRIDES) -> Tuple[np.ndarray, np.ndarray]:
    """Grid cells (N, 2) as (gx, gy) and their strides (N,), strides ascending, x fastest within a level."""
    grids, steps = [], []
    for stride in strides:
        cells = input_size // stride
        gy, gx = np.mgrid[0:cells, 0:cells]
        grids.append(np.stack([gx.ravel(), gy.ravel()], axis=1))
        steps.append(np.full(cells * cells, stride))
    return np.concatenate(grids).astype(np.float64), np.concatenate(steps).astype(np.float64)


def decode_yolox(
    raw: np.ndarray,
    grid: np.ndarray,
    strides: np.ndarray,
    ratio: float,
    score_threshold: float = YOLOX_SCORE_THRESHOLD,
    nms_iou: float = NMS_IOU_THRESHOLD,
) -> Detections:
    """Raw YOLOX rows (1, N, 85) -> person boxes in image pixels (see the module docstring)."""
    rows = np.asarray(raw, np.float64).reshape(-1, YOLOX_ATTRS)
    if len(rows) != len(grid):
        raise BadFileError(
            f"the detector gives {len(rows)} anchor rows; its YOLOX input size has {len(grid)}",
            fix="use OpenCV model zoo's object_detection_yolox_2022nov.onnx (`gtacli fetch detector --force`)",
        )
    classes = rows[:, 5:]
    scores = rows[:, 4] * classes[:, YOLOX_PERSON_CLASS]
    good = (classes.argmax(axis=1) == YOLOX_PERSON_CLASS) & (scores >= score_threshold)
    rows, scores, grid, strides = rows[good], scores[good], grid[good], strides[good]
    centre = (rows[:, :2] + grid) * strides[:, None]
    size = np.exp(rows[:, 2:4]) * strides[:, None]
    boxes = np.concatenate([centre - size / 2, size], axis=1) / ratio
    keep = non_max_suppression(boxes, scores, nms_iou) if len(rows) else np.zeros(0, np.int64)
    return Detections(boxes[keep], scores[keep])


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


def build_detector(
    name: str,
    data_root: Optional[Path] = None,
    yolox_weights: Optional[Path] = None,
    yolox_sha256: Optional[str] = None,
    engine: str = "torch",
) -> Any:
    """A callable `frame_bgr -> Detections` with `.describe()`. `yolox_weights` / `yolox_sha256` are the YOLOX
    file's place and pinned hash (from the asset manifest); `auto` takes YOLOX when that file is there, else HOG.
    The ssd / yolo files live under `<data_root>/detectors/`. `engine` is the network's resolved engine: with
    'onnxruntime', YOLOX runs in onnxruntime too (the other detectors stay in OpenCV)."""
    if name not in DETECTORS:
        raise UsageError(f"--detector {name!r} is unknown", fix=f"use one of: {', '.join(DETECTORS)}")
    folder = Path(data_root or "data") / DETECTOR_DIR
    if name == "auto":
        name = "yolox" if yolox_weights is not None and Path(yolox_weights).is_file() else "hog"
    if name == "yolox":
        if yolox_weights is None:
            raise UsageError("--detector yolox needs the detector asset", fix="run `gtacli fetch detector`")
        path = Path(yolox_weights)
        _require_detector_file(path, name, fix="run `gtacli fetch detector`, or use --detector hog")
        if yolox_sha256:
            _check_sha256(path, yolox_sha256)
        return YoloxDetector(path, runtime="onnxruntime" if engine == "onnxruntime" else "opencv")
    if name == "hog":
        return HogDetector()
    if name == "ssd":
        files = [folder / f for f in SSD_FILES]
        for path in files:
            _require_detector_file(path, name)
        return SsdDetector(files[0], files[1])
    path = folder / YOLO_FILE
    _require_detector_file(path, name)
    return YoloDetector(path)


def _require_detector_file(path: Path, name: str, fix: Optional[str] = None) -> None:
    if not path.is_file():
        raise MissingFileError(
            f"detector '{name}' needs this file and it is absent",
            path=path,
            fix=fix
            or f"put the {name} weights there (see `gtacli demo --help`), or use --detector hog (built into OpenCV)",
        )


def _check_sha256(path: Path, expected: str) -> None:
    if sha256_file(path) != expected.lower():
        raise BadFileError(
            "does not match the detector's pinned sha256 (damaged or a different file)",
            path=path,
            fix="run `gtacli fetch detector --force`",
        )


def _load_net(load: Any, path: Path, name: str) -> Any:
    """cv2.dnn's loader, with its multi-line C++ exception turned into one line naming the file."""
    import cv2

    try:
        return load()
    except cv2.error:
        raise BadFileError(
            f"OpenCV cannot load this as the '{name}' detector network",
            path=path,
            fix="fetch it again (`gtacli fetch detector --force` for yolox), or use --detector hog",
        ) from None
