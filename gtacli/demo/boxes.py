"""Person boxes the user gives the demo instead of a detector.

User boxes (`--bbox x,y,w,h` for every frame, or `--bbox-file FILE`), formats of FILE (JSON):

1. SPIN's `im1010_bbox.json`: `{"bbox": [x, y, w, h]}`, one box used for every frame;
2. a list with one entry per frame (in input order); an entry is a box `[x, y, w, h]`, a list of boxes, or
   `null` / `[]` (no person in that frame);
3. a mapping from frame name to a box or a list of boxes; the name is the image file name (`img_001.jpg`), its
   stem (`img_001`) or the frame index as a string (`"0"`, for videos). Frames absent from the mapping have no
   person, but a mapping that names no frame of the input is an error;
4. OpenPose JSON (`{"people": [{"pose_keypoints_2d": [...]}, ...]}`, BODY_25 or COCO-18) as SPIN's demo takes
   it: each person's crop is SPIN's (`gtacli.data.openpose.spin_box`: centre = mean of the keypoints above 0.2
   confidence, side = 1.2 x their larger extent), given as the square box whose demo crop
   (side = 1.25 x box side) is exactly that crop; used for every frame.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from gtacli.body.camera import DEMO_BBOX_SCALE
from gtacli.data.openpose import OpenPoseFrame, is_openpose_document, parse_openpose, spin_box
from gtacli.demo.detect import MIN_BOX_SIDE_PX, Detections
from gtacli.errors import BadFileError, MissingFileError, UsageError


def parse_bbox_option(text: str) -> np.ndarray:
    """`--bbox x,y,w,h` -> (4,) float64."""
    try:
        values = [float(v) for v in text.replace(" ", "").split(",")]
    except ValueError:
        values = []
    if len(values) != 4:
        raise UsageError(f"--bbox {text!r} is not four numbers", fix="write it as --bbox x,y,w,h (pixels)")
    return np.asarray(values, np.float64)


def check_bbox_option(box: np.ndarray) -> np.ndarray:
    """`--bbox` as a (1, 4) array once its size is known to be usable (position is checked per frame)."""
    box = np.asarray(box, np.float64).reshape(4)
    if not (np.isfinite(box).all() and box[2] >= MIN_BOX_SIDE_PX and box[3] >= MIN_BOX_SIDE_PX):
        raise UsageError(
            f"--bbox {','.join(f'{v:g}' for v in box)} needs a width and height of at least {MIN_BOX_SIDE_PX:g} px",
            fix="write it as --bbox x,y,w,h in pixels (top-left corner, width, height)",
        )
    return box[None]


class UserBoxes:
    """Boxes given by the user, looked up per frame: `boxes_for(index, name) -> (K,4)`.

    `per_frame` is either None (one set of boxes for every frame: `every_frame`), a list indexed by frame
    position, or a dict keyed by frame name / stem / index string. `matched` counts the frames a dict named.
    """

    def __init__(
        self, every_frame: Optional[np.ndarray] = None, per_frame: Any = None, source: str = "--bbox"
    ):
        self.every_frame = every_frame
        self.per_frame = per_frame
        self.source = source
        self.matched = 0

    @property
    def every_frame_given(self) -> bool:
        """True unless the boxes are a mapping by frame name (the only form that can miss every frame)."""
        return not isinstance(self.per_frame, dict)

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
                self.matched += 1
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
    except RecursionError:
        raise BadFileError(
            "is nested too deeply to be a bbox file",
            path=path,
            fix=f"write the boxes as JSON, e.g. {_BBOX_FILE_EXAMPLE}",
        ) from None
    if is_openpose_document(data):
        return UserBoxes(every_frame=openpose_boxes(parse_openpose(data, path), path), source=str(path))
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


def openpose_boxes(frame: OpenPoseFrame, path: Path) -> np.ndarray:
    """(P, 4) demo boxes whose crops are SPIN's crops of the OpenPose people (module docstring, format 4)."""
    boxes = []
    for keypoints in frame.keypoints:
        found = spin_box(keypoints)
        if found is None:
            continue
        (cx, cy), crop_side = found
        side = crop_side / DEMO_BBOX_SCALE  # the demo crops DEMO_BBOX_SCALE x the box side
        boxes.append([cx - side / 2, cy - side / 2, side, side])
    if not boxes:
        raise BadFileError(
            "has no person with two or more keypoints above SPIN's 0.2 confidence",
            path=path,
            fix="pass OpenPose output for an image with a visible person, or a box with --bbox x,y,w,h",
        )
    return np.asarray(boxes, np.float64)


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
