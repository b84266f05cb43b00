"""The crop of the SPIN pipeline, bit-exact with what produced mmhuman3d's numbers.

* `bbox_to_center_scale`: box `[x, y, w, h(, score)]` -> centre `(x + w/2, y + h/2)` (float64, as numpy<1.24
  computes it in mmhuman3d) and the side of the square crop `max(w, h)` in pixels (docs/reproduction.md §2.2; no /200, no
  extra factor: stored boxes already carry 1.2).
* `affine_transform`: the 2x3 similarity of docs/reproduction.md §6.6 step 5 (3-point construction in float32 solved by
  `cv2.getAffineTransform`, as mmhuman3d's `get_affine_transform` does; positive rotation turns the image content
  counter-clockwise).
* `warp_affine_cv4`: OpenCV 4.x's `warpAffine(INTER_LINEAR, BORDER_CONSTANT 0)` on uint8 images, re-implemented
  in vectorised numpy so the crop does not depend on the installed OpenCV (OpenCV 5 changed this warp;
  docs/reproduction.md decision 8). `crop` uses OpenCV itself when it is 4.x (same bits, ten times faster). The 4.x arithmetic: the matrix is inverted in float64; for each output pixel the
  source position in 1/32 pixel is `(rint(1024·(m01·y + m02)) + 16 + rint(1024·m00·x)) >> 5` (same for y);
  its integer part picks the 2x2 neighbourhood, its 5 fractional bits the weights `(32−a)(32−b)·32`, … which
  sum to 32768; the result is `(Σ w·src + 16384) >> 15`; neighbours outside the image read 0.
* `normalize`: BGR uint8 -> RGB float32 CHW, `(x − mean)·(1/std)` computed as mmcv's `imnormalize` does with
  mmhuman3d's float32 mean/std (mean subtracted in float32, 1/float64(float32 std), the product rounded from
  float64) (docs/reproduction.md §6.6 step 6).
"""

from __future__ import annotations

import functools
from typing import Optional, Sequence, Tuple, Union

import cv2
import numpy as np
import torch

from gtacli.body.camera import IMG_RES  # the crop side, defined once with the camera that uses it

# docs/reproduction.md §6.6 step 6: ImageNet mean/std on the 0-255 scale, RGB order.
NORM_MEAN_RGB = (123.675, 116.28, 103.53)
NORM_STD_RGB = (58.395, 57.12, 57.375)

# OpenCV 4.x fixed-point constants (imgwarp.cpp): 10-bit positions, 5 interpolation bits, 15-bit weights.
_AB_BITS = 10
_AB_SCALE = 1 << _AB_BITS
_INTER_BITS = 5
_INTER_TAB_SIZE = 1 << _INTER_BITS
_ROUND_DELTA = _AB_SCALE // _INTER_TAB_SIZE // 2  # 16
_COEF_BITS = 15
_INT32 = np.iinfo(np.int32)
_INT16 = np.iinfo(np.int16)

ArrayLike = Union[np.ndarray, Sequence[float]]


def bbox_to_center_scale(bbox_xywh: ArrayLike) -> Tuple[np.ndarray, float]:
    """`[x, y, w, h(, score)]` -> (centre (2,) float64, square side in px in the box's dtype).

    As mmhuman3d's loader computes it under the numpy it pins (<1.24): `x + w / 2` on float32 scalars is
    promoted to float64 there (pre-NEP-50 scalar promotion), so the centre is the float64 sum even for
    float32 boxes, while the side `max(w, h)` keeps the box's dtype.
    """
    box = np.asarray(bbox_xywh)
    if not np.issubdtype(box.dtype, np.floating):
        box = box.astype(np.float64)
    x, y, w, h = (np.float64(v) for v in box[:4])
    center = np.array([x + w / 2, y + h / 2], dtype=np.float64)
    side = max(box[2], box[3])
    return center, side


def affine_transform(center: ArrayLike, scale: float, rot_deg: float = 0.0, res: int = IMG_RES) -> np.ndarray:
    """(2,3) float64 matrix mapping the square of side `scale` px centred at `center`, rotated by `rot_deg`
    (positive = content turns counter-clockwise), onto `res`x`res` with `center -> (res/2, res/2)`.

    Built from three point pairs held in float32 (centre; centre + R·(0, −scale/2); that vector turned 90°),
    like mmhuman3d's `get_affine_transform`, and solved with `cv2.getAffineTransform` (its float64 solve).
    """
    center = np.asarray(center)
    half = np.asarray(scale)[()] * -0.5  # src_w * -0.5 in the scale's own dtype (float32 for float32 boxes)
    rot_rad = np.pi * rot_deg / 180
    sn, cs = np.sin(rot_rad), np.cos(rot_rad)
    src_dir = np.array([0.0 * cs - float(half) * sn, 0.0 * sn + float(half) * cs])
    src = np.zeros((3, 2), dtype=np.float32)
    src[0] = center
    src[1] = center + src_dir
    src[2] = _third_point(src[0], src[1])
    dst = np.zeros((3, 2), dtype=np.float32)
    dst[0] = [res * 0.5, res * 0.5]
    dst[1] = np.array([res * 0.5, res * 0.5]) + np.array([0.0, res * -0.5])
    dst[2] = _third_point(dst[0], dst[1])
    return cv2.getAffineTransform(src, dst)


def _third_point(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """`b` + (a − b) turned 90° counter-clockwise, in float32."""
    direction = a - b
    return b + np.array([-direction[1], direction[0]], dtype=np.float32)


def transform_points(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    """(…,2) pixel coordinates -> (…,2) through a (2,3) affine matrix."""
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_affine_cv4(
    img: np.ndarray, matrix: np.ndarray, dsize: Tuple[int, int] = (IMG_RES, IMG_RES)
) -> np.ndarray:
    """OpenCV 4.x `cv2.warpAffine(img, matrix, dsize, flags=INTER_LINEAR)` (constant 0 border) for uint8 images.

    img: (H,W) or (H,W,C) uint8; matrix: (2,3) forward map (source -> destination); dsize: (width, height).
    Returns (height, width[, C]) uint8, bit-identical to OpenCV 4.x.
    """
    if img.dtype != np.uint8:
        raise TypeError(
            f"warp_affine_cv4 works on uint8 images (got {img.dtype}); warping floats changes results"
        )
    width, height = int(dsize[0]), int(dsize[1])
    inv = _invert_affine(np.asarray(matrix, dtype=np.float64).reshape(2, 3))
    xs = np.arange(width, dtype=np.float64)
    ys = np.arange(height, dtype=np.float64)
    # per-column and per-row terms, each rounded to 1/1024 px exactly as OpenCV's saturate_cast<int>(double)
    adelta = _round_int32(inv[0, 0] * xs * _AB_SCALE)
    bdelta = _round_int32(inv[1, 0] * xs * _AB_SCALE)
    x0 = _round_int32((inv[0, 1] * ys + inv[0, 2]) * _AB_SCALE) + _ROUND_DELTA
    y0 = _round_int32((inv[1, 1] * ys + inv[1, 2]) * _AB_SCALE) + _ROUND_DELTA
    shift = _AB_BITS - _INTER_BITS
    fx = (x0[:, None] + adelta[None, :]) >> shift  # (h, w) source x in 1/32 px
    fy = (y0[:, None] + bdelta[None, :]) >> shift
    sx = np.clip(fx >> _INTER_BITS, _INT16.min, _INT16.max)
    sy = np.clip(fy >> _INTER_BITS, _INT16.min, _INT16.max)
    ax = (fx & (_INTER_TAB_SIZE - 1)).astype(np.int32)
    ay = (fy & (_INTER_TAB_SIZE - 1)).astype(np.int32)
    # integer bilinear weights; (32-a)(32-b)*32 + ... = 32768 exactly (OpenCV's table needs no correction)
    w00 = (_INTER_TAB_SIZE - ax) * (_INTER_TAB_SIZE - ay) * _INTER_TAB_SIZE
    w01 = ax * (_INTER_TAB_SIZE - ay) * _INTER_TAB_SIZE
    w10 = (_INTER_TAB_SIZE - ax) * ay * _INTER_TAB_SIZE
    w11 = ax * ay * _INTER_TAB_SIZE

    squeeze = img.ndim == 2
    src = img[:, :, None] if squeeze else img
    channels = src.shape[2]
    # Gather the 2x2 neighbourhoods from a zero-framed copy of just the source region the output samples,
    # so every neighbour index is valid and outside-image neighbours read 0 (BORDER_CONSTANT).
    region, lo_x, lo_y = _zero_framed_region(src, sx, sy)
    row = region.shape[1]
    planes = np.ascontiguousarray(region.transpose(2, 0, 1)).reshape(channels, -1)  # (C, h*w): fast 1-D takes
    idx = ((sy - lo_y) * row + (sx - lo_x)).reshape(-1)
    weights = ((w00, idx), (w01, idx + 1), (w10, idx + row), (w11, idx + row + 1))
    acc = np.empty((channels, idx.size), dtype=np.int32)
    for c in range(channels):
        plane = planes[c]
        total = np.take(plane, idx) * w00.reshape(-1)  # uint8 x int32 -> int32
        for weight, where in weights[1:]:
            total += np.take(plane, where) * weight.reshape(-1)
        acc[c] = total
    acc = acc.reshape(channels, height, width).transpose(1, 2, 0)
    out = ((acc + (1 << (_COEF_BITS - 1))) >> _COEF_BITS).clip(0, 255).astype(np.uint8)
    return out[:, :, 0] if squeeze else out


def _zero_framed_region(src: np.ndarray, sx: np.ndarray, sy: np.ndarray) -> Tuple[np.ndarray, int, int]:
    """(region, x0, y0): pixels [y0, y0+h) x [x0, x0+w) of `src` covering every (sx..sx+1, sy..sy+1), zero
    where that rectangle leaves the image. Samples entirely outside are moved onto a two-pixel zero frame
    (`sx`, `sy` are modified in place), which keeps the region small whatever the matrix."""
    height, width = src.shape[:2]
    # a sample whose both neighbours are outside reads only zeros: move it onto the zero frame
    # (x = -2 reads columns -2, -1; x = width reads width, width + 1), so the region stays small
    np.clip(sx, -2, width, out=sx)
    np.clip(sy, -2, height, out=sy)
    lo_x, hi_x = int(sx.min()), int(sx.max()) + 2
    lo_y, hi_y = int(sy.min()), int(sy.max()) + 2
    region = np.zeros((hi_y - lo_y, hi_x - lo_x, src.shape[2]), dtype=np.uint8)
    x0, x1 = max(lo_x, 0), min(hi_x, width)
    y0, y1 = max(lo_y, 0), min(hi_y, height)
    if x0 < x1 and y0 < y1:
        region[y0 - lo_y : y1 - lo_y, x0 - lo_x : x1 - lo_x] = src[y0:y1, x0:x1]
    return region, lo_x, lo_y


def _invert_affine(m: np.ndarray) -> np.ndarray:
    """OpenCV's in-place inversion of a 2x3 affine matrix (float64, same operation order)."""
    m = m.copy()
    det = m[0, 0] * m[1, 1] - m[0, 1] * m[1, 0]
    det = 1.0 / det if det != 0 else 0.0
    a11 = m[1, 1] * det
    a22 = m[0, 0] * det
    m[0, 0] = a11
    m[0, 1] *= -det
    m[1, 0] *= -det
    m[1, 1] = a22
    b1 = -m[0, 0] * m[0, 2] - m[0, 1] * m[1, 2]
    b2 = -m[1, 0] * m[0, 2] - m[1, 1] * m[1, 2]
    m[0, 2] = b1
    m[1, 2] = b2
    return m


def _round_int32(values: np.ndarray) -> np.ndarray:
    """saturate_cast<int>(double): round half to even, saturate to int32 (kept in int64 for the sums)."""
    return np.clip(np.rint(values), _INT32.min, _INT32.max).astype(np.int64)


OPENCV_4 = int(cv2.__version__.split(".")[0]) == 4  # the installed OpenCV warps as the published numbers did


def crop(
    img: np.ndarray,
    center: ArrayLike,
    scale: float,
    rot_deg: float = 0.0,
    res: int = IMG_RES,
    use_cv2: Optional[bool] = None,
) -> Tuple[np.ndarray, np.ndarray]:
    """(crop (res,res,C) uint8, matrix (2,3)) of `img` around `center` with side `scale` px.

    `use_cv2=None` (the default) warps with the installed OpenCV when it is 4.x, whose output
    `warp_affine_cv4` equals bit for bit (tested) at a tenth of the time, and with `warp_affine_cv4`
    otherwise; True/False force one or the other.
    """
    matrix = affine_transform(center, scale, rot_deg, res)
    if OPENCV_4 if use_cv2 is None else use_cv2:
        return cv2.warpAffine(img, matrix, (res, res), flags=cv2.INTER_LINEAR), matrix
    return warp_affine_cv4(img, matrix, (res, res)), matrix


def _inv_std_f64() -> np.ndarray:
    """(3,) 1/std as mmcv computes it: mmhuman3d's `Normalize` stores std as float32, `imnormalize` widens it
    to float64 before inverting (1/float64(float32(58.395)) differs from 1/58.395 in the last bits)."""
    return 1.0 / np.asarray(NORM_STD_RGB, dtype=np.float32).astype(np.float64)


def normalize(img_bgr: np.ndarray) -> np.ndarray:
    """(H,W,3) BGR uint8 -> (3,H,W) RGB float32, `(x − mean)/std` with mmcv's rounding (docs/reproduction.md §6.6 step 6)."""
    rgb = img_bgr[:, :, ::-1].astype(np.float32)
    centred = rgb - np.asarray(NORM_MEAN_RGB, dtype=np.float32)
    scaled = (centred.astype(np.float64) * _inv_std_f64()).astype(np.float32)
    return np.ascontiguousarray(scaled.transpose(2, 0, 1))


def normalize_batch(
    crops_bgr: torch.Tensor, memory_format: torch.memory_format = torch.contiguous_format
) -> torch.Tensor:
    """Batched `normalize` in torch, bit-identical to it: (B,H,W,3) BGR uint8 -> (B,3,H,W) RGB float32 on
    the tensor's device (so crops travel as uint8, 4x smaller, and the arithmetic runs on the GPU).

    `memory_format=torch.channels_last` returns the batch in channels-last memory, which is the crops' own
    (H,W,C) order: no transposing copy is made (the estimator's inference layout, `gtacli.model.memory_format`).
    On the CPU each value is looked up in `normalisation_table()` (the same arithmetic, done once per grey
    level): about five times faster than the float64 arithmetic per pixel, which kept a decoding worker busy
    for as long as decoding and cropping together.
    """
    if crops_bgr.device.type == "cpu":
        return _normalize_by_table(crops_bgr, memory_format)
    rgb = crops_bgr.flip(-1).permute(0, 3, 1, 2).to(torch.float32)
    return _normalise_rgb(rgb).contiguous(memory_format=memory_format)


def _normalise_rgb(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,...) RGB float32 holding 0..255 -> normalised float32 with mmcv's rounding: the mean subtracted
    in float32, the product with 1/std rounded from float64."""
    mean = torch.tensor(NORM_MEAN_RGB, dtype=torch.float32, device=rgb.device).view(1, 3, 1, 1)
    inv_std = torch.from_numpy(_inv_std_f64()).to(rgb.device).view(1, 3, 1, 1)
    return ((rgb - mean).to(torch.float64) * inv_std).to(torch.float32)


@functools.cache
def normalisation_table() -> np.ndarray:
    """(3, 256) float32: entry [c, v] is the normalised value of grey level v in RGB channel c, computed by
    `_normalise_rgb` itself, so a lookup is bit-identical to the arithmetic."""
    levels = torch.arange(256, dtype=torch.float32).view(1, 1, 1, 256).expand(1, 3, 1, 256)
    table = _normalise_rgb(levels).reshape(3, 256).numpy().copy()
    table.flags.writeable = False  # shared by every caller
    return table


def _normalize_by_table(crops_bgr: torch.Tensor, memory_format: torch.memory_format) -> torch.Tensor:
    crops = crops_bgr.contiguous().numpy()
    table = normalisation_table()
    batch, height, width, _ = crops.shape
    if memory_format == torch.channels_last:
        out = np.empty((batch, height, width, 3), dtype=np.float32)  # NHWC memory = channels-last NCHW
        for channel in range(3):  # RGB channel c reads BGR plane 2 - c
            np.take(table[channel], crops[..., 2 - channel], out=out[..., channel])
        return torch.from_numpy(out).permute(0, 3, 1, 2)
    out = np.empty((batch, 3, height, width), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], crops[..., 2 - channel], out=out[:, channel])
    return torch.from_numpy(out).contiguous(memory_format=memory_format)
