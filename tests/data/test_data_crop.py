"""The test-time crop: box -> centre/side, the 3-point affine, the OpenCV-4.x-exact warp, normalisation."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.data.crop import (
    affine_transform,
    bbox_to_center_scale,
    crop,
    normalize,
    transform_points,
    warp_affine_cv4,
)

cv2 = pytest.importorskip("cv2")
OPENCV_4 = int(cv2.__version__.split(".")[0]) == 4
needs_opencv4 = pytest.mark.skipif(not OPENCV_4, reason="the reference for the bit-exact warp is OpenCV 4.x")


def test_box_to_centre_and_side():
    center, side = bbox_to_center_scale(np.array([10.0, 20.0, 100.0, 50.0, 0.9]))
    assert np.allclose(center, [60.0, 45.0]) and side == 100.0
    center, side = bbox_to_center_scale(np.array([0, 0, 30, 80], np.float32))
    assert np.array_equal(center, [15.0, 40.0]) and side == 80.0


def test_float32_box_centre_is_computed_as_mmhuman3d_numpy_computes_it():
    # mmhuman3d pins numpy<1.24: there `x + w / 2` on float32 scalars promotes to float64 (scalar-scalar
    # promotion before NEP 50), so the centre is the float64 sum, rounded to float32 only once, when
    # get_affine_transform stores `centre − side/2` in its float32 point array. Rounding the centre to
    # float32 first moves that point by one float32 ulp for many boxes, and changes some crops.
    rng = np.random.default_rng(7)
    boxes = np.column_stack(
        [rng.uniform(0, 1500, 200), rng.uniform(0, 900, 200), rng.uniform(20, 600, (200, 2)), np.ones(200)]
    ).astype(np.float32)
    for box in boxes:
        x, y, w, h = (np.float64(v) for v in box[:4])
        want = np.array([x + w / 2, y + h / 2])  # numpy<1.24 result for float32 scalars
        center, side = bbox_to_center_scale(box)
        assert np.array_equal(center, want) and center.dtype == np.float64
        assert side == max(box[2], box[3])
        # get_affine_transform's second source point: float32(centre − side/2), rounded once
        m = affine_transform(center, side)
        top = np.array([want[0], want[1] - np.float64(side) / 2], dtype=np.float32).astype(np.float64)
        assert np.allclose(transform_points(top, m), [112.0, 0.0], atol=1e-9)


@pytest.mark.parametrize("rot", [0.0, 30.0, -45.0, 90.0])
def test_affine_maps_the_square_as_the_formula_says(rot):
    center, side, res = np.array([321.5, 187.25]), 173.0, 224
    m = affine_transform(center, side, rot, res)
    r = np.deg2rad(rot)
    # the point at side/2 "above" the centre in the rotated frame lands at the top middle of the crop
    top = center + np.array([np.sin(r), -np.cos(r)]) * side / 2
    assert np.allclose(transform_points(center, m), [112, 112], atol=1e-3)
    assert np.allclose(transform_points(top, m), [112, 0], atol=1e-3)
    # a similarity with scale res/side
    assert np.allclose(np.linalg.norm(m[:, 0]), res / side, atol=1e-6)
    if rot == 90.0:
        # positive rotation turns content counter-clockwise: what was right of the centre is now on top
        right = center + np.array([side / 2, 0])
        assert np.allclose(transform_points(right, m), [112, 0], atol=1e-3)


def test_warp_half_pixel_shift_by_hand():
    """x_src = x + 0.5: weights 16/32 each, so out = (a + b + 1) >> 1, and a zero beyond the right edge."""
    img = np.random.default_rng(0).integers(0, 256, (5, 7), dtype=np.uint8)
    m = np.array([[1.0, 0.0, -0.5], [0.0, 1.0, 0.0]])
    out = warp_affine_cv4(img, m, (7, 5)).astype(int)
    a = img.astype(int)
    expected = (a + np.concatenate([a[:, 1:], np.zeros((5, 1), int)], axis=1) + 1) >> 1
    assert np.array_equal(out, expected)


def test_warp_outside_the_image_is_black():
    img = np.full((10, 10, 3), 200, np.uint8)
    m = np.array([[1.0, 0.0, 50.0], [0.0, 1.0, 50.0]])  # the image lands far outside the output
    assert not warp_affine_cv4(img, m, (20, 20)).any()


@needs_opencv4
def test_warp_equals_opencv4_on_random_similarities():
    rng = np.random.default_rng(1)
    for trial in range(60):
        h, w = rng.integers(16, 300, size=2)
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        center = np.array([rng.uniform(-40, w + 40), rng.uniform(-40, h + 40)], np.float32)  # also off-image
        side = float(rng.uniform(4, 2.5 * max(h, w)))
        rot = float(np.clip(rng.normal() * 30, -60, 60)) if trial % 2 else 0.0
        m = affine_transform(center, side, rot)
        mine = warp_affine_cv4(img, m)
        ref = cv2.warpAffine(img, m, (224, 224), flags=cv2.INTER_LINEAR)
        assert np.array_equal(mine, ref), (trial, int((mine != ref).sum()))


@needs_opencv4
def test_warp_equals_opencv4_on_full_hd_frames():
    """`crop` warps with OpenCV 4.x by default: the re-implementation must agree on video-sized frames too."""
    rng = np.random.default_rng(11)
    for trial in range(4):
        shape = (1920, 1080, 3) if trial % 2 else (1080, 1920, 3)
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        center = np.array([rng.uniform(0, shape[1]), rng.uniform(0, shape[0])], np.float32)
        m = affine_transform(center, float(rng.uniform(100, 1500)), float(rng.normal() * 20) * (trial > 1))
        assert np.array_equal(
            warp_affine_cv4(img, m), cv2.warpAffine(img, m, (224, 224), flags=cv2.INTER_LINEAR)
        )


@needs_opencv4
def test_warp_equals_opencv4_on_general_affines_and_grey_images():
    rng = np.random.default_rng(2)
    for _ in range(40):
        img = rng.integers(0, 256, (37, 53), dtype=np.uint8)
        m = rng.normal(size=(2, 3)) * [[1.5, 1.5, 30], [1.5, 1.5, 30]]
        assert np.array_equal(warp_affine_cv4(img, m, (41, 29)), cv2.warpAffine(img, m, (41, 29)))


@needs_opencv4
def test_crop_pipeline_uses_the_exact_warp_by_default():
    img = np.random.default_rng(3).integers(0, 256, (120, 90, 3), dtype=np.uint8)
    mine, m = crop(img, np.array([45.5, 60.25]), 100.0)
    ref, _ = crop(img, np.array([45.5, 60.25]), 100.0, use_cv2=True)
    assert mine.shape == (224, 224, 3) and np.array_equal(mine, ref)


def test_normalize_matches_mmcv_imnormalize_sequence():
    img = np.random.default_rng(4).integers(0, 256, (9, 11, 3), dtype=np.uint8)
    out = normalize(img)
    assert out.shape == (3, 9, 11) and out.dtype == np.float32
    # mmcv.imnormalize: float32 copy, BGR->RGB, cv2.subtract(mean), cv2.multiply(1/std)
    ref = img.astype(np.float32)
    cv2.cvtColor(ref, cv2.COLOR_BGR2RGB, ref)
    cv2.subtract(ref, np.float64(np.array([[123.675, 116.28, 103.53]], np.float32)), ref)
    cv2.multiply(ref, 1 / np.float64(np.array([[58.395, 57.12, 57.375]], np.float32)), ref)
    assert np.array_equal(out, ref.transpose(2, 0, 1))
    # and the formula itself
    rgb = img[..., ::-1].astype(np.float64)
    formula = (rgb - [123.675, 116.28, 103.53]) / [58.395, 57.12, 57.375]
    assert np.allclose(out, formula.transpose(2, 0, 1), atol=1e-5)


def test_normalize_uses_the_float32_mean_and_std_of_mmhuman3d_normalize():
    # mmhuman3d's Normalize keeps mean/std as float32 arrays; mmcv.imnormalize then widens them to float64, so
    # 1/std is 1/float64(float32(std)), not 1/58.395. Every grey level of every channel must match that.
    levels = np.arange(256, dtype=np.uint8)
    img = np.stack([levels, levels[::-1], np.roll(levels, 77)], axis=-1)[None]  # (1,256,3) BGR
    mean32 = np.array([123.675, 116.28, 103.53], dtype=np.float32)
    std32 = np.array([58.395, 57.12, 57.375], dtype=np.float32)
    ref = img.astype(np.float32)
    cv2.cvtColor(ref, cv2.COLOR_BGR2RGB, ref)
    cv2.subtract(ref, np.float64(mean32.reshape(1, -1)), ref)
    cv2.multiply(ref, 1 / np.float64(std32.reshape(1, -1)), ref)
    assert np.array_equal(normalize(img), ref.transpose(2, 0, 1))


def test_batched_normalization_on_torch_is_bit_identical():
    import torch

    from gtacli.data.crop import normalize_batch

    crops = np.random.default_rng(5).integers(0, 256, (3, 16, 12, 3), dtype=np.uint8)
    batched = normalize_batch(torch.from_numpy(crops)).numpy()
    assert batched.shape == (3, 3, 16, 12)
    assert np.array_equal(batched, np.stack([normalize(c) for c in crops]))


def test_batched_normalization_straight_into_channels_last():
    """The estimator's inference layout: the (B,H,W,3) crops are already channels-last memory, so the batch
    comes out channels-last with the same values (no transposing copy on the main thread)."""
    import torch

    from gtacli.data.crop import normalize_batch

    crops = np.random.default_rng(6).integers(0, 256, (2, 8, 10, 3), dtype=np.uint8)
    batched = normalize_batch(torch.from_numpy(crops), memory_format=torch.channels_last)
    assert batched.shape == (2, 3, 8, 10) and batched.stride() == (240, 1, 30, 3)
    assert np.array_equal(batched.numpy(), np.stack([normalize(c) for c in crops]))


def test_batched_normalization_by_table_equals_the_arithmetic_for_every_grey_level():
    """The CPU path looks values up in a (3, 256) table: every level of every channel, in both layouts,
    must equal the per-image float64 arithmetic (mmcv's rounding) bit for bit."""
    import torch

    from gtacli.data.crop import normalize_batch

    levels = np.arange(256, dtype=np.uint8)
    crops = np.stack(
        [
            np.stack([levels.reshape(16, 16)] * 3, axis=-1),  # every level in every channel
            np.stack([levels.reshape(16, 16), levels.reshape(16, 16).T, levels[::-1].reshape(16, 16)], -1),
        ]
    )
    expected = np.stack([normalize(c) for c in crops])
    for memory_format in (torch.contiguous_format, torch.channels_last):
        batched = normalize_batch(torch.from_numpy(crops), memory_format=memory_format)
        assert batched.is_contiguous(memory_format=memory_format)
        assert batched.dtype == torch.float32 and batched.shape == (2, 3, 16, 16)
        assert np.array_equal(batched.numpy(), expected)
