"""2D body keypoints without OpenPose: an RTMPose COCO-17 model (ONNX) run on person boxes.

The model is OpenMMLab's RTMPose-m body model as released for its ONNX SDK (`gtacli fetch keypoints`: the zip
of `gtacli/assets/manifest.json` entry `keypoints`, which holds one `end2end.onnx`; no checksum is published,
so the lock file records the sha256 of the first download and later runs verify against it). Layout:

* input (1, 3, H, W) float32, RGB, `(pixel − MEAN) / STD` (ImageNet statistics, as RTMPose's
  data pre-processor); H × W is read from the model (256 × 192 for the released one);
* the crop: the person box (x, y, w, h) enlarged by `BOX_PADDING` about its centre, widened or heightened
  to the input's aspect ratio, warped into W × H (bilinear, no rotation);
* outputs `simcc_x` (1, K, W·r) and `simcc_y` (1, K, H·r): one 1D classification per axis and keypoint
  (SimCC) with r sub-pixel bins per input pixel (r = 2 released; read from the output lengths). Decoding: the
  argmax of each vector / r is the position in the input, the smaller of the two maxima its score; the
  position maps back through the crop to image pixels.

COCO-17 keypoints go into OpenPose's BODY_25 slots (`COCO17_TO_BODY25`; neck, mid-hip and feet stay at
confidence 0, as for COCO-18 OpenPose files), so every consumer of OpenPose keypoints (`spin_box`,
`to_smpl49`, the fitter's confidence weights) takes them unchanged. A score is clipped to [0, 1]; a
keypoint below `MIN_SCORE`, outside the image or non-finite gets confidence 0 (the latter two counted).

The engine: onnxruntime when it is installed (`pip install gtacli[onnx]`), else OpenCV's `cv2.dnn`.
"""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from gtacli.demo.detect import select_people
from gtacli.errors import BadFileError, MissingFileError, UsageError
from gtacli.fit.runner import PeopleFrame
from gtacli.io.hashing import sha256_file

MEAN = (123.675, 116.28, 103.53)  # RGB
STD = (58.395, 57.12, 57.375)
BOX_PADDING = 1.25  # RTMPose's top-down crop: the box enlarged by a quarter
MIN_SCORE = 0.3  # keypoints below this score are not used (confidence 0)
KEYPOINT_ENGINES = ("auto", "onnxruntime", "opencv")
FETCH_FIX = "run `gtacli fetch keypoints` (or give OpenPose files with --keypoints DIR / --bbox-file)"
# COCO-17 joint i -> BODY_25 slot: nose, eyes, ears, shoulders, elbows, wrists, hips, knees, ankles
COCO17_TO_BODY25 = (0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11)
NUM_BODY_25 = 25


@dataclass
class PersonKeypoints:
    """One person's keypoints in BODY_25 order (25, 3) image pixels + confidence, and what was dropped."""

    body25: np.ndarray
    outside: int = 0  # keypoints outside the image (confidence set to 0)
    non_finite: int = 0  # NaN/inf keypoints (confidence set to 0)


def read_model_bytes(path: Path) -> bytes:
    """The ONNX bytes of a `.onnx` file, or of the one `.onnx` member of a zip (the released SDK archive)."""
    if not path.is_file():
        raise MissingFileError("the keypoint model is missing", path=path, fix=FETCH_FIX)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                members = [m for m in archive.namelist() if m.lower().endswith(".onnx")]
                if len(members) != 1:
                    raise BadFileError(
                        f"the archive holds {len(members)} .onnx files, expected 1",
                        path=path,
                        fix="gtacli fetch keypoints --force",
                    )
                return archive.read(members[0])
        except (zipfile.BadZipFile, OSError) as exc:
            raise BadFileError(
                f"unreadable zip ({exc})", path=path, fix="gtacli fetch keypoints --force"
            ) from None
    return path.read_bytes()


def crop_matrix(box_xywh: Sequence[float], input_wh: Tuple[int, int]) -> Tuple[np.ndarray, np.ndarray]:
    """(2x3 image -> input affine, (center (2,), size (2,) in image pixels)) of RTMPose's top-down crop."""
    x, y, w, h = (float(v) for v in box_xywh)
    center = np.array([x + w / 2.0, y + h / 2.0])
    size = np.array([w, h]) * BOX_PADDING
    aspect = input_wh[0] / input_wh[1]
    if size[0] > size[1] * aspect:
        size[1] = size[0] / aspect
    else:
        size[0] = size[1] * aspect
    scale = input_wh[0] / size[0]  # same for y after the aspect fix
    matrix = np.array(
        [
            [scale, 0.0, input_wh[0] / 2.0 - scale * center[0]],
            [0.0, scale, input_wh[1] / 2.0 - scale * center[1]],
        ]
    )
    return matrix, np.concatenate([center, size])


def preprocess(
    image_bgr: np.ndarray, box_xywh: Sequence[float], input_wh: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """(input (1, 3, H, W) float32, the crop's 2x3 matrix) for one person."""
    matrix, _ = crop_matrix(box_xywh, input_wh)
    crop = cv2.warpAffine(image_bgr, matrix, input_wh, flags=cv2.INTER_LINEAR)
    rgb = crop[..., ::-1].astype(np.float32)
    blob = (rgb - np.float32(MEAN)) / np.float32(STD)
    return np.ascontiguousarray(blob.transpose(2, 0, 1)[None]), matrix


def decode_simcc(
    simcc_x: np.ndarray, simcc_y: np.ndarray, input_wh: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """SimCC vectors (K, W·r), (K, H·r) -> (positions (K, 2) in input pixels, scores (K,))."""
    ratio_x = simcc_x.shape[-1] / input_wh[0]
    ratio_y = simcc_y.shape[-1] / input_wh[1]
    x = np.argmax(simcc_x, axis=-1) / ratio_x
    y = np.argmax(simcc_y, axis=-1) / ratio_y
    score = np.minimum(simcc_x.max(axis=-1), simcc_y.max(axis=-1))
    return np.stack([x, y], axis=-1), score


def to_body25(
    coco17: np.ndarray, scores: np.ndarray, image_wh: Tuple[int, int], min_score: float = MIN_SCORE
) -> PersonKeypoints:
    """COCO-17 image positions (17, 2) and scores (17,) -> BODY_25 (25, 3); see the module docstring."""
    body = np.zeros((NUM_BODY_25, 3))
    xy = np.asarray(coco17, dtype=np.float64)
    conf = np.clip(np.nan_to_num(np.asarray(scores, dtype=np.float64), nan=0.0), 0.0, 1.0)
    finite = np.isfinite(xy).all(axis=1) & np.isfinite(np.asarray(scores, dtype=np.float64))
    inside = np.zeros_like(finite)
    inside[finite] = (
        (xy[finite, 0] >= 0)
        & (xy[finite, 0] < image_wh[0])
        & (xy[finite, 1] >= 0)
        & (xy[finite, 1] < image_wh[1])
    )
    used = finite & inside & (conf >= min_score)
    slots = list(COCO17_TO_BODY25)
    body[slots, :2] = np.where(used[:, None], xy, 0.0)
    body[slots, 2] = np.where(used, conf, 0.0)
    return PersonKeypoints(body, outside=int((finite & ~inside).sum()), non_finite=int((~finite).sum()))


class KeypointModel:
    """An RTMPose-layout ONNX model (see the module docstring) on onnxruntime or cv2.dnn."""

    def __init__(self, path: Path, engine: str = "auto", sha256: Optional[str] = None):
        """`sha256`: the hash the lock file recorded at download (checked before use when given)."""
        if engine not in KEYPOINT_ENGINES:
            raise UsageError(
                f"unknown keypoint engine {engine!r}", fix=f"use one of {', '.join(KEYPOINT_ENGINES)}"
            )
        self.path = Path(path)
        data = read_model_bytes(self.path)
        if sha256 and sha256_file(self.path) != sha256.lower():
            raise BadFileError(
                "the keypoint model's sha256 differs from the one recorded at its download",
                path=self.path,
                fix="gtacli fetch keypoints --force",
            )
        self.engine = _pick_engine(engine)
        try:
            if self.engine == "onnxruntime":
                import onnxruntime

                self._session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
                inp = self._session.get_inputs()[0]
                self._input_name = inp.name
                shape = inp.shape
                self._outputs = [o.name for o in self._session.get_outputs()]
            else:
                self._net = cv2.dnn.readNetFromONNX(np.frombuffer(data, np.uint8))
                shape = _input_shape_from_protobuf(data)
        except Exception as exc:  # a file neither engine can load: one line, the fix is a fresh download
            first = next((line for line in str(exc).splitlines() if line.strip()), type(exc).__name__)
            raise BadFileError(
                f"not a keypoint model {self.engine} can load ({first.strip()[:160]})",
                path=self.path,
                fix="gtacli fetch keypoints --force",
            ) from None
        if len(shape) != 4 or not all(isinstance(d, int) and d > 0 for d in shape[2:]):
            raise BadFileError(
                f"the model's input must be (1, 3, H, W) with a fixed H and W, got {shape}",
                path=self.path,
                fix="use the RTMPose model of `gtacli fetch keypoints`",
            )
        self.input_wh = (int(shape[3]), int(shape[2]))

    def _run(self, blob: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        if self.engine == "onnxruntime":
            out = self._session.run(None, {self._input_name: blob})
            named = dict(zip(self._outputs, out))
            sx, sy = named.get("simcc_x", out[0]), named.get("simcc_y", out[1])
        else:
            self._net.setInput(blob)
            names = self._net.getUnconnectedOutLayersNames()
            out = self._net.forward(names)
            named = dict(zip(names, out))
            sx, sy = named.get("simcc_x", out[0]), named.get("simcc_y", out[1])
        return np.asarray(sx)[0], np.asarray(sy)[0]

    def __call__(self, image_bgr: np.ndarray, boxes_xywh: np.ndarray) -> List[PersonKeypoints]:
        """BODY_25 keypoints in image pixels for every box (K, 4) [x, y, w, h] of one image."""
        height, width = image_bgr.shape[:2]
        people = []
        for box in np.asarray(boxes_xywh, dtype=np.float64).reshape(-1, 4):
            blob, matrix = preprocess(image_bgr, box, self.input_wh)
            simcc_x, simcc_y = self._run(blob)
            positions, scores = decode_simcc(simcc_x, simcc_y, self.input_wh)
            scale, shift = matrix[0, 0], matrix[:, 2]
            image_xy = (positions - shift) / scale
            people.append(to_body25(image_xy, scores, (width, height)))
        return people

    def describe(self) -> dict:
        return {"keypoint_model": str(self.path), "engine": self.engine, "input_wh": list(self.input_wh)}


def _pick_engine(engine: str) -> str:
    if engine in ("auto", "onnxruntime"):
        try:
            import onnxruntime  # noqa: F401

            return "onnxruntime"
        except ImportError:
            if engine == "onnxruntime":
                raise UsageError(
                    "onnxruntime is not installed", fix="pip install 'gtacli[onnx]' or use the opencv engine"
                ) from None
    return "opencv"


def _input_shape_from_protobuf(data: bytes) -> List[Any]:
    """The first graph input's dims (cv2.dnn does not report them), by a minimal protobuf walk:
    ModelProto.graph(7).input(11)[0].type(2).tensor_type(1).shape(2).dim(1).dim_value(1)."""

    def fields(buf: bytes):
        stream, end = io.BytesIO(buf), len(buf)
        while stream.tell() < end:
            key = _read_varint(stream)
            number, wire = key >> 3, key & 7
            if wire == 0:
                yield number, _read_varint(stream)
            elif wire == 2:
                yield number, stream.read(_read_varint(stream))
            elif wire == 1:
                yield number, stream.read(8)
            elif wire == 5:
                yield number, stream.read(4)
            else:
                return

    def first(buf: bytes, number: int) -> Optional[bytes]:
        return next((v for n, v in fields(buf) if n == number), None)

    graph = first(data, 7) or b""
    value = first(graph, 11) or b""
    tensor = first(first(value, 2) or b"", 1) or b""
    shape = first(tensor, 2) or b""
    return [first(dim, 1) for n, dim in fields(shape) if n == 1]


def _read_varint(stream: io.BytesIO) -> int:
    result, shift = 0, 0
    while True:
        byte = stream.read(1)
        if not byte:
            return result
        result |= (byte[0] & 0x7F) << shift
        if not byte[0] & 0x80:
            return result
        shift += 7


@dataclass
class ImagesKeypoints:
    """What `people_in_images` found: one `PeopleFrame` per image with people, and what it dropped."""

    frames: List[PeopleFrame]
    unreadable: List[Path]
    outside: int = 0
    non_finite: int = 0

    def notes(self) -> List[str]:
        lines = []
        if self.unreadable:
            lines.append(f"{len(self.unreadable)} image(s) unreadable, skipped (first: {self.unreadable[0]})")
        if self.outside or self.non_finite:
            lines.append(
                f"{self.outside} keypoint(s) outside the image and {self.non_finite} non-finite: ignored"
            )
        return lines


def people_in_images(
    images: Sequence[Path], detector: Any, model: KeypointModel, max_people: Optional[int] = None
) -> ImagesKeypoints:
    """Detect the people of each photo and run the keypoint model on their boxes (`gtacli fit --images`
    without --openpose)."""
    found = ImagesKeypoints([], [])
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            found.unreadable.append(Path(path))
            continue
        dets = select_people(detector(image), max_people)
        if not len(dets):
            continue
        people = model(image, dets.boxes)
        found.outside += sum(p.outside for p in people)
        found.non_finite += sum(p.non_finite for p in people)
        found.frames.append(
            PeopleFrame(Path(path), np.stack([p.body25 for p in people]), f"keypoint model {model.path.name}")
        )
    return found
