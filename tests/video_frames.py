"""Test helper: every frame a video decodes to, as one array."""

from __future__ import annotations

import cv2
import numpy as np


def decoded_frames(path) -> np.ndarray:
    """(frames, H, W, 3) BGR uint8 of everything OpenCV decodes from `path`."""
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return np.stack(frames)
