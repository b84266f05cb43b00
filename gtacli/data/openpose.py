"""OpenPose JSON keypoints (`people[*].pose_keypoints_2d`) for the demo's boxes and the fitter's targets.

OpenPose writes one JSON file per image with a flat `[x, y, c] * K` list per person: K = 25 for its BODY_25
model, K = 18 for COCO-18. Both are returned in BODY_25 order, which is also the order of the first 25
slots of smpl_49 (SPIN puts OpenPose detections there, see SPIN's `datasets/preprocess/*` and
`constants.JOINT_NAMES`); COCO-18 has no mid-hip and no feet, so those slots get confidence 0.

`spin_box` derives a person's crop the way SPIN's `demo.py::bbox_from_openpose` does: the mean of the
keypoints whose confidence exceeds 0.2 is the centre, and 1.2 x their larger extent is the crop side.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Tuple

import numpy as np

from gtacli.body.conventions import OPENPOSE_25
from gtacli.errors import BadFileError, PathLike

BODY_25 = "BODY_25"
COCO_18 = "COCO_18"
# COCO-18 joint i -> BODY_25 slot (nose, neck, arms as in BODY_25; BODY_25 slot 8 = mid-hip is absent).
COCO_18_TO_BODY_25 = (0, 1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18)
NUM_BODY_25 = len(OPENPOSE_25)
SPIN_DETECTION_THRESHOLD = 0.2  # SPIN demo.py: keypoints above this confidence define the box
SPIN_BOX_RESCALE = 1.2  # SPIN demo.py: crop side = 1.2 x the keypoints' larger extent
OPENPOSE_FIX = "pass an OpenPose JSON file with people[*].pose_keypoints_2d (BODY_25 or COCO-18)"
MAX_FILE_BYTES = 64 * 1024 * 1024


@dataclass
class OpenPoseFrame:
    """The people of one OpenPose file: `keypoints` (P, 25, 3) x, y, confidence in BODY_25 order."""

    keypoints: np.ndarray
    source_format: str  # BODY_25 or COCO_18
    non_finite: int = 0  # keypoints given as NaN/inf (their confidence set to 0)

    def __len__(self) -> int:
        return int(self.keypoints.shape[0])


def is_openpose_document(document: Any) -> bool:
    """True for a parsed JSON object that looks like OpenPose output (a `people` list)."""
    return isinstance(document, dict) and isinstance(document.get("people"), list)


def read_openpose(path: PathLike) -> OpenPoseFrame:
    """Parse one OpenPose JSON file; a malformed file is a one-line `BadFileError` naming it."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_FILE_BYTES:
            raise BadFileError(
                "is larger than 64 MB: not an OpenPose keypoint file", path=path, fix=OPENPOSE_FIX
            )
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadFileError(
            f"cannot be read as JSON ({type(exc).__name__})", path=path, fix=OPENPOSE_FIX
        ) from None
    return parse_openpose(document, path)


def parse_openpose(document: Any, path: Optional[PathLike] = None) -> OpenPoseFrame:
    """An `OpenPoseFrame` from an already parsed JSON object."""
    if not is_openpose_document(document):
        raise BadFileError("has no 'people' list: not OpenPose output", path=path, fix=OPENPOSE_FIX)
    people = []
    source_format = BODY_25
    non_finite = 0
    for index, person in enumerate(document["people"]):
        flat = person.get("pose_keypoints_2d") if isinstance(person, dict) else None
        try:
            values = np.asarray(flat, dtype=np.float64).reshape(-1)
        except (TypeError, ValueError):
            values = np.zeros(1)
        if flat is None or values.size not in (NUM_BODY_25 * 3, len(COCO_18_TO_BODY_25) * 3):
            raise BadFileError(
                f"person {index}: pose_keypoints_2d must hold 75 (BODY_25) or 54 (COCO-18) numbers",
                path=path,
                fix=OPENPOSE_FIX,
            )
        joints = values.reshape(-1, 3)
        if len(joints) != NUM_BODY_25:
            source_format = COCO_18
            body25 = np.zeros((NUM_BODY_25, 3))
            body25[list(COCO_18_TO_BODY_25)] = joints
            joints = body25
        # non-finite detections carry no information: zero confidence, so no consumer uses them
        bad = ~np.isfinite(joints).all(axis=1)
        joints[bad] = 0.0
        non_finite += int(bad.sum())
        people.append(joints)
    keypoints = np.stack(people) if people else np.zeros((0, NUM_BODY_25, 3))
    return OpenPoseFrame(keypoints=keypoints, source_format=source_format, non_finite=non_finite)


def to_smpl49(keypoints: np.ndarray) -> np.ndarray:
    """(P, 25, 3) BODY_25 keypoints -> (P, 49, 3) smpl_49 (OpenPose slots 0-24 filled, the rest confidence 0)."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    out = np.zeros(keypoints.shape[:-2] + (49, 3))
    out[..., :NUM_BODY_25, :] = keypoints
    return out


def spin_box(
    keypoints: np.ndarray,
    threshold: float = SPIN_DETECTION_THRESHOLD,
    rescale: float = SPIN_BOX_RESCALE,
) -> Optional[Tuple[np.ndarray, float]]:
    """(centre (2,), crop side in px) of one person's (K, 3) keypoints as SPIN's demo derives it, or None
    when fewer than two keypoints are confident enough to span a box."""
    keypoints = np.asarray(keypoints, dtype=np.float64)
    valid = keypoints[keypoints[:, 2] > threshold, :2]
    if len(valid) < 2:
        return None
    extent = float((valid.max(axis=0) - valid.min(axis=0)).max())
    if not extent > 0:
        return None
    return valid.mean(axis=0), rescale * extent
