"""Is an image file an image? A cheap look at its header and end (`check_image_header`), and a full decode
(`check_image_decodes`), for `check-layout --deep`: a 0-byte file, a text file named `.jpg` or a truncated
download is found there, not by eval or finetune half an hour later.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Optional, Tuple

import cv2
import numpy as np

JPEG_START, JPEG_END = b"\xff\xd8\xff", b"\xff\xd9"
PNG_START, PNG_END = b"\x89PNG\r\n\x1a\n", b"IEND\xaeB`\x82"
HEADER_BYTES = 64 << 10  # a JPEG's frame header (SOF) sits after its EXIF/ICC segments, usually within this


def check_image_header(path: Path) -> Optional[str]:
    """None when `path` starts and ends like a JPEG or PNG with a plausible size, else why not (a few words)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fp:
            head = fp.read(HEADER_BYTES)
            fp.seek(max(size - 16, 0))
            tail = fp.read(16)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if size == 0:
        return "empty file"
    if head.startswith(JPEG_START):
        if not tail.rstrip(b"\x00").endswith(JPEG_END):
            return "truncated JPEG (no end-of-image marker)"
        dims = _jpeg_size(head)
    elif head.startswith(PNG_START):
        if not tail.endswith(PNG_END):
            return "truncated PNG (no IEND chunk)"
        dims = struct.unpack(">II", head[16:24]) if len(head) >= 24 else (0, 0)
    else:
        return f"not a JPEG or PNG (starts with {head[:8]!r})"
    if dims is not None and (dims[0] == 0 or dims[1] == 0):
        return "image of size 0"
    return None


def _jpeg_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from the first SOF segment within `data`, None when it lies beyond."""
    i = 2
    while i + 9 < len(data):
        if data[i] != 0xFF:
            return None
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            height, width = struct.unpack(">HH", data[i + 5 : i + 9])
            return width, height
        i += 2 + length
    return None


def check_image_decodes(path: Path) -> Optional[str]:
    """None when OpenCV decodes `path` (as the training and evaluation readers do), else why not."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    return None if image is not None and image.size else "cannot be decoded"
