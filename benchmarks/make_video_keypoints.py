"""OpenPose BODY_25 keypoint files for a video, made with MediaPipe Pose (for `bench_refine.py --video-keypoints`).

The project's keypoint model (RTMPose, `gtacli fetch keypoints`) and OpenPose may be out of reach; MediaPipe's
wheel carries its pose models inside it, so one `pip install` gives real 2D keypoints offline. MediaPipe pins its
own numpy/protobuf/OpenCV, so it lives in a venv of its own and is no dependency of gtacli:

    python -m venv .venv-mp
    .venv-mp/bin/pip install mediapipe==0.10.14
    .venv-mp/bin/python benchmarks/make_video_keypoints.py VIDEO OUTDIR
    python benchmarks/bench_refine.py --video-keypoints OUTDIR        # with gtacli's own environment

(any venv path works, e.g. `/work/venvs/mediapipe`; keep OUTDIR out of git, e.g. under /tmp.)

What it writes: `OUTDIR/000000_keypoints.json`, `000001_keypoints.json`, ... one per decoded frame, named as
`gtacli demo` names a video's frames (`"%06d" % index`, OpenPose's `_keypoints` suffix), each an OpenPose
document `{"version": 1.3, "people": [{"person_id": [-1], "pose_keypoints_2d": [x, y, c] * 25}]}` with
image-pixel coordinates; `"people": []` for a frame where MediaPipe found nobody. So `gtacli demo VIDEO
--refine --keypoints OUTDIR` reads them as it reads OpenPose's `--write_json` folder.

The model: the legacy `mediapipe.solutions.pose` graph, model_complexity=1 (`pose_landmark_full.tflite`),
one person, in video mode (each frame's region comes from the previous frame's landmarks) but with MediaPipe's
landmark smoothing off by default, so the keypoints jitter as a per-frame detector's do (`--smooth-landmarks`
turns it on).

BlazePose's 33 landmarks -> BODY_25 (`BLAZEPOSE_TO_BODY25`): nose, eyes, ears, shoulders, elbows, wrists, hips,
knees, ankles, heels and big toes (BlazePose's foot_index) directly; the neck is the shoulders' midpoint and the
mid-hip the hips' midpoint (confidence: the smaller of the two); the small toes have no BlazePose landmark and
stay at confidence 0. Confidence = the landmark's visibility; a landmark below `MIN_VISIBILITY`, outside the
image or non-finite gets position 0 and confidence 0, as OpenPose writes a joint it did not find.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

MIN_VISIBILITY = 0.3  # as gtacli's keypoint model's MIN_SCORE: below it a joint is not used
NUM_BODY_25 = 25
# BODY_25 slot -> BlazePose landmark index; a pair is a midpoint, None a joint BlazePose does not have
BLAZEPOSE_TO_BODY25: Tuple[Optional[Tuple[int, ...]], ...] = (
    (0,),  # 0 nose
    (11, 12),  # 1 neck = mid-shoulders
    (12,),  # 2 right shoulder
    (14,),  # 3 right elbow
    (16,),  # 4 right wrist
    (11,),  # 5 left shoulder
    (13,),  # 6 left elbow
    (15,),  # 7 left wrist
    (23, 24),  # 8 mid-hip = mid-hips
    (24,),  # 9 right hip
    (26,),  # 10 right knee
    (28,),  # 11 right ankle
    (23,),  # 12 left hip
    (25,),  # 13 left knee
    (27,),  # 14 left ankle
    (5,),  # 15 right eye
    (2,),  # 16 left eye
    (8,),  # 17 right ear
    (7,),  # 18 left ear
    (31,),  # 19 left big toe = left foot_index
    None,  # 20 left small toe
    (29,),  # 21 left heel
    (32,),  # 22 right big toe = right foot_index
    None,  # 23 right small toe
    (30,),  # 24 right heel
)


def to_body25(
    landmarks: np.ndarray, image_wh: Tuple[int, int], min_visibility: float = MIN_VISIBILITY
) -> np.ndarray:
    """BlazePose landmarks (33, 3) [x, y normalised to the image, visibility] -> BODY_25 (25, 3) [px, px, conf]."""
    marks = np.asarray(landmarks, dtype=np.float64).reshape(33, 3)
    xy = marks[:, :2] * np.asarray(image_wh, dtype=np.float64)
    vis = marks[:, 2]
    finite = np.isfinite(xy).all(axis=1) & np.isfinite(vis)
    safe_xy = np.where(finite[:, None], xy, -1.0)
    inside = (
        finite
        & (safe_xy[:, 0] >= 0)
        & (safe_xy[:, 0] < image_wh[0])
        & (safe_xy[:, 1] >= 0)
        & (safe_xy[:, 1] < image_wh[1])
    )
    conf = np.where(inside, np.clip(np.nan_to_num(vis), 0.0, 1.0), 0.0)
    body = np.zeros((NUM_BODY_25, 3))
    for slot, source in enumerate(BLAZEPOSE_TO_BODY25):
        if source is None:
            continue
        c = float(min(conf[i] for i in source))
        if c < min_visibility:
            continue
        body[slot, :2] = np.mean([xy[i] for i in source], axis=0)
        body[slot, 2] = c
    return body


def openpose_document(people: Sequence[np.ndarray]) -> dict:
    """OpenPose's JSON layout for one frame's BODY_25 people (each (25, 3))."""
    return {
        "version": 1.3,
        "people": [
            {"person_id": [-1], "pose_keypoints_2d": [round(float(v), 3) for v in np.asarray(p).reshape(-1)]}
            for p in people
        ],
    }


def frame_file(out_dir: Path, index: int) -> Path:
    """The file of frame `index`: `gtacli demo` names a video's frames `"%06d" % index`."""
    return out_dir / f"{index:06d}_keypoints.json"


def write_json(path: Path, document: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document), encoding="utf-8")
    os.replace(tmp, path)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("video", type=Path)
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--model-complexity", type=int, default=1, choices=(0, 1, 2))
    parser.add_argument("--smooth-landmarks", action="store_true", help="MediaPipe's landmark smoothing on")
    parser.add_argument("--min-visibility", type=float, default=MIN_VISIBILITY)
    args = parser.parse_args(argv)

    import cv2  # the MediaPipe venv's OpenCV
    import mediapipe as mp

    if not args.video.is_file():
        print(f"error: {args.video}: video not found", file=sys.stderr)
        return 2
    capture = cv2.VideoCapture(str(args.video))
    if not capture.isOpened():
        print(f"error: {args.video}: OpenCV cannot open this video", file=sys.stderr)
        return 2
    args.out_dir.mkdir(parents=True, exist_ok=True)
    frames = found = 0
    with mp.solutions.pose.Pose(
        static_image_mode=False,
        model_complexity=args.model_complexity,
        smooth_landmarks=args.smooth_landmarks,
        enable_segmentation=False,
    ) as pose:
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            height, width = frame.shape[:2]
            result = pose.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
            people = []
            if result.pose_landmarks is not None:
                marks = np.array([[m.x, m.y, m.visibility] for m in result.pose_landmarks.landmark])
                people.append(to_body25(marks, (width, height), args.min_visibility))
                found += 1
            write_json(frame_file(args.out_dir, frames), openpose_document(people))
            frames += 1
    capture.release()
    print(
        json.dumps(
            {
                "video": str(args.video),
                "frames": frames,
                "frames_with_a_person": found,
                "out_dir": str(args.out_dir),
            }
        )
    )
    return 0 if frames else 1


if __name__ == "__main__":
    sys.exit(main())
