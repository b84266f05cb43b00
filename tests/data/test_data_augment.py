"""The training augmentation (docs/reproduction.md §6.6) against direct formulas, and its RNG draw order (docs/reproduction.md §11)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from gtacli.body.conventions import SMPL_49_FLIP_PERM
from gtacli.data.augment import (
    AugmentConfig,
    AugmentParams,
    apply_augmentation,
    channel_noise,
    draw_params,
    flip_center,
    flip_keypoints2d,
    flip_keypoints3d,
    flip_pose72,
    normalize_image,
    rotate_keypoints3d,
    transform_keypoints2d,
)

# docs/reproduction.md §6.6 numbers, written out independently of the recipe module
CFG = AugmentConfig(
    noise_factor=0.4,
    flip_prob=0.5,
    rot_factor=30.0,
    rot_prob=0.6,
    scale_factor=0.25,
    img_res=224,
    mean=(123.675, 116.28, 103.53),
    std=(58.395, 57.12, 57.375),
)


def _rng_kp2d(seed=0, width=640, height=480):
    rng = np.random.default_rng(seed)
    kp = np.zeros((49, 3), np.float32)
    kp[:, 0] = rng.uniform(0, width - 1, 49)
    kp[:, 1] = rng.uniform(0, height - 1, 49)
    kp[:, 2] = rng.integers(0, 2, 49)
    return kp


def test_the_default_config_holds_the_published_numbers():
    assert AugmentConfig() == CFG


def test_the_recipes_augmentation_is_the_published_one():
    from gtacli.train.recipe import get_recipe

    assert get_recipe("gta-spin-ft").augment == CFG and get_recipe("spin").augment == CFG


def _rotvec_to_matrix(v):
    """Rodrigues' formula R = I + sin t K + (1 - cos t) K^2 (unit axis k = v/t, K its cross-product matrix)."""
    theta = float(np.linalg.norm(v))
    k = np.asarray(v, np.float64) / theta
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(theta) * K + (1 - math.cos(theta)) * K @ K


def _matrix_to_rotvec(R):
    """Inverse of Rodrigues for angles in (0, pi): t = acos((tr R - 1)/2), axis from the skew part."""
    theta = math.acos((np.trace(R) - 1) / 2)
    axis = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / (2 * math.sin(theta))
    return theta * axis


def test_numpy_rotation_helpers_round_trip_a_known_rotation():
    # 90 degrees about z maps x to y
    R = _rotvec_to_matrix([0, 0, math.pi / 2])
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)
    np.testing.assert_allclose(_matrix_to_rotvec(R), [0, 0, math.pi / 2], atol=1e-12)


def test_draw_order_matches_the_documented_order():
    for seed in range(20):
        params = draw_params(np.random.RandomState(seed), CFG)
        ref = np.random.RandomState(seed)
        gain = ref.uniform(0.6, 1.4, size=(1, 3))[0]
        flip = ref.rand() <= 0.5
        s = min(max(ref.randn() * 0.25 + 1, 0.75), 1.25)
        r = min(max(ref.randn() * 30, -60), 60)
        gate = ref.rand() <= 0.6
        np.testing.assert_array_equal(params.channel_gain, gain)
        assert params.flip == flip
        assert params.scale == pytest.approx(s, abs=0)
        assert params.rotation_deg == (r if gate else 0.0)


def test_rotation_probability_is_0_6():
    applied = sum(draw_params(np.random.RandomState(s), CFG).rotation_deg != 0 for s in range(4000))
    assert abs(applied / 4000 - 0.6) < 0.03


def test_channel_noise_rounds_and_saturates():
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (7, 9, 3), dtype=np.uint8)
    gain = np.array([0.6, 1.0, 1.4])
    expected = np.clip(np.rint(img.astype(np.float64) * gain), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(channel_noise(img, gain), expected)
    assert channel_noise(np.full((1, 1, 3), 250, np.uint8), gain)[0, 0, 2] == 255  # saturates


def test_flip_formulas_and_flip_twice_is_identity():
    width = 640
    kp2d = _rng_kp2d()
    flipped = flip_keypoints2d(kp2d, width)
    perm = np.asarray(SMPL_49_FLIP_PERM)
    np.testing.assert_allclose(flipped[:, 0], width - 1 - kp2d[perm, 0])
    np.testing.assert_array_equal(flipped[:, 1:], kp2d[perm, 1:])
    np.testing.assert_allclose(flip_keypoints2d(flipped, width), kp2d, atol=1e-4)

    kp3d = np.random.default_rng(2).normal(size=(49, 4)).astype(np.float32)
    f3 = flip_keypoints3d(kp3d)
    np.testing.assert_array_equal(f3[:, 0], -kp3d[perm, 0])
    np.testing.assert_array_equal(flip_keypoints3d(f3), kp3d)

    center = np.array([100.25, 50.0], np.float32)
    np.testing.assert_allclose(flip_center(center, width), [width - 1 - 100.25, 50.0])
    np.testing.assert_allclose(flip_center(flip_center(center, width), width), center)

    go, bp = np.random.default_rng(3).normal(size=3), np.random.default_rng(4).normal(size=(23, 3))
    go2, bp2 = flip_pose72(*flip_pose72(go.astype(np.float32), bp.astype(np.float32)))
    np.testing.assert_allclose(go2, go, atol=1e-6)
    np.testing.assert_allclose(bp2, bp, atol=1e-6)
    # explicit: left hip (joint 1) takes the right hip's (joint 2) values with y, z negated
    go1, bp1 = flip_pose72(go.astype(np.float32), bp.astype(np.float32))
    np.testing.assert_allclose(bp1[0], bp[1] * np.array([1, -1, -1]), atol=1e-6)
    np.testing.assert_allclose(go1, go * np.array([1, -1, -1]), atol=1e-6)


def test_smpl_pose_flip_mirrors_the_mesh():
    import torch

    from gtacli.body.smpl import BodyModel
    from gtacli.sample.synthetic_smpl import make_synthetic_smpl

    arrays = make_synthetic_smpl("neutral", seed=0)
    model = BodyModel(arrays)
    mirror = np.asarray(arrays["vert_sym_idxs"])
    rng = np.random.default_rng(5)
    go = rng.normal(scale=0.4, size=3).astype(np.float32)
    bp = rng.normal(scale=0.3, size=(23, 3)).astype(np.float32)
    betas = torch.from_numpy(rng.normal(size=(1, 10)).astype(np.float32))
    fgo, fbp = flip_pose72(go, bp)
    v = (
        model(betas, torch.from_numpy(bp[None]), torch.from_numpy(go[None]), pose2rot=True)
        .vertices[0]
        .numpy()
    )
    fv = (
        model(betas, torch.from_numpy(fbp[None]), torch.from_numpy(fgo[None]), pose2rot=True)
        .vertices[0]
        .numpy()
    )
    mirrored = v[mirror] * np.array([-1.0, 1.0, 1.0])
    # the mirror is exact up to the root joint position (the mesh is posed about it, in the SMPL root frame)
    np.testing.assert_allclose(fv - fv.mean(0), mirrored - mirrored.mean(0), atol=2e-4)


def test_keypoints_move_with_the_crop_like_the_image():
    """A bright dot in the full image lands in the crop exactly where its transformed keypoint says."""
    height, width = 300, 400
    img = np.full((height, width, 3), 20, np.uint8)
    dot = (137.0, 201.0)  # (x, y) pixel
    yy, xx = np.mgrid[0:height, 0:width]
    blob = np.exp(-((xx - dot[0]) ** 2 + (yy - dot[1]) ** 2) / (2 * 3.0**2))
    img = np.clip(img + 230 * blob[..., None], 0, 255).astype(np.uint8)
    kp2d = np.zeros((49, 3), np.float32)
    kp2d[0] = [dot[0], dot[1], 1.0]  # nose_openpose is its own mirror (flip permutation fixes index 0)
    ann = {
        "center": np.array([180.0, 170.0], np.float32),
        "scale": 220.0,
        "keypoints2d": kp2d,
        "keypoints3d": np.zeros((49, 4), np.float32),
        "smpl_global_orient": np.zeros(3, np.float32),
        "smpl_body_pose": np.zeros((23, 3), np.float32),
    }
    for flip, rot, scale in ((False, 0.0, 1.0), (True, 0.0, 1.1), (False, 35.0, 0.9), (True, -50.0, 1.2)):
        params = AugmentParams(channel_gain=np.ones(3), flip=flip, scale=scale, rotation_deg=rot)
        out = apply_augmentation(img, ann, params, CFG)
        crop = out["crop_bgr"][..., 0].astype(np.float64) - 20
        crop[crop < 0] = 0
        wy, wx = np.mgrid[0:224, 0:224]
        peak = np.unravel_index(np.argmax(crop), crop.shape)
        window = (np.abs(wy - peak[0]) <= 8) & (np.abs(wx - peak[1]) <= 8)
        w = crop * window
        centroid = np.array([(w * wx).sum() / w.sum(), (w * wy).sum() / w.sum()])
        np.testing.assert_allclose(out["keypoints2d"][0, :2], centroid, atol=0.35)
        assert out["is_flipped"] == float(flip)
        assert out["rotation"].dtype == np.float32 and out["rotation"] == np.float32(rot)
        assert out["scale"] == pytest.approx(220.0 * scale)


def test_zero_confidence_keypoints_are_not_moved_by_the_crop():
    kp = _rng_kp2d(seed=7)
    trans = np.array([[0.5, 0.1, 3.0], [-0.1, 0.5, 7.0]])
    out = transform_keypoints2d(kp, trans)
    zero = kp[:, 2] == 0
    np.testing.assert_array_equal(out[zero], kp[zero])
    expected = kp[~zero, :2] @ trans[:, :2].T + trans[:, 2]
    np.testing.assert_allclose(out[~zero, :2], expected, rtol=1e-6, atol=1e-4)


def test_3d_keypoints_and_global_orient_rotate_by_rz_minus_r():
    r = 40.0
    rad = math.radians(r)
    rz_neg = np.array([[math.cos(rad), math.sin(rad), 0], [-math.sin(rad), math.cos(rad), 0], [0, 0, 1]])
    kp3d = np.random.default_rng(8).normal(size=(49, 4)).astype(np.float32)
    out = rotate_keypoints3d(kp3d, r)
    np.testing.assert_allclose(out[:, :3], kp3d[:, :3] @ rz_neg.T, atol=1e-5)
    np.testing.assert_array_equal(out[:, 3], kp3d[:, 3])

    go = np.array([0.3, -1.2, 0.5], np.float32)
    ann = {
        "center": np.array([50.0, 50.0], np.float32),
        "scale": 80.0,
        "keypoints2d": np.zeros((49, 3), np.float32),
        "keypoints3d": kp3d,
        "smpl_global_orient": go,
        "smpl_body_pose": np.full((23, 3), 0.1, np.float32),
    }
    img = np.zeros((100, 100, 3), np.uint8)
    res = apply_augmentation(img, ann, AugmentParams(np.ones(3), False, 1.0, r), CFG)
    expected = _matrix_to_rotvec(rz_neg @ _rotvec_to_matrix(go))
    np.testing.assert_allclose(res["smpl_global_orient"], expected, atol=1e-5)
    np.testing.assert_array_equal(res["smpl_body_pose"], ann["smpl_body_pose"])  # body pose unchanged
    np.testing.assert_allclose(res["keypoints3d"][:, :3], kp3d[:, :3] @ rz_neg.T, atol=1e-5)


def test_positive_rotation_turns_content_counter_clockwise():
    """docs/reproduction.md §6.6: positive r rotates the image content counter-clockwise (a point right of the centre goes up)."""
    kp2d = np.zeros((49, 3), np.float32)
    kp2d[0] = [150.0, 100.0, 1.0]  # 50 px right of the centre
    ann = {
        "center": np.array([100.0, 100.0], np.float32),
        "scale": 224.0,
        "keypoints2d": kp2d,
        "keypoints3d": np.zeros((49, 4), np.float32),
        "smpl_global_orient": np.zeros(3, np.float32),
        "smpl_body_pose": np.zeros((23, 3), np.float32),
    }
    out = apply_augmentation(
        np.zeros((200, 200, 3), np.uint8), ann, AugmentParams(np.ones(3), False, 1.0, 90.0), CFG
    )
    np.testing.assert_allclose(out["keypoints2d"][0, :2], [112.0, 112.0 - 50.0], atol=1e-3)


def test_normalisation_matches_the_eval_crop_normalisation():
    from gtacli.data.crop import normalize

    img = np.random.default_rng(9).integers(0, 256, (224, 224, 3), dtype=np.uint8)
    out = normalize_image(img, CFG)
    np.testing.assert_array_equal(out, normalize(img))
    # direct formula: RGB, (x - mean) / std
    expected = (img[..., ::-1].astype(np.float64) - np.array(CFG.mean)) / np.array(CFG.std)
    np.testing.assert_allclose(out, expected.transpose(2, 0, 1), atol=1e-5)


def test_crop_equals_opencv_warp_of_the_flipped_image():
    rng = np.random.default_rng(10)
    img = rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)
    ann = {
        "center": np.array([70.0, 60.0], np.float32),
        "scale": 90.0,
        "keypoints2d": np.zeros((49, 3), np.float32),
        "keypoints3d": np.zeros((49, 4), np.float32),
        "smpl_global_orient": np.zeros(3, np.float32),
        "smpl_body_pose": np.zeros((23, 3), np.float32),
    }
    from gtacli.data.crop import affine_transform

    out = apply_augmentation(img, ann, AugmentParams(np.array([1.2, 0.9, 1.0]), True, 1.1, 20.0), CFG)
    noisy = cv2.multiply(img, (1.2, 0.9, 1.0, 0.0))
    flipped = np.ascontiguousarray(noisy[:, ::-1])
    trans = affine_transform(np.array([160 - 1 - 70.0, 60.0], np.float32), 99.0, 20.0, 224)
    if cv2.__version__.startswith("4."):
        ref = cv2.warpAffine(flipped, trans, (224, 224), flags=cv2.INTER_LINEAR)
        np.testing.assert_array_equal(out["crop_bgr"], ref)
    np.testing.assert_allclose(out["center"], [160 - 1 - 70.0, 60.0])


def _mm_affine(center, side, rot_deg, res=224):
    """docs/reproduction.md §6.6 step 5 written out: three point pairs held in float32 (centre, centre + R·(0, −side/2), that
    vector turned 90°) -> cv2.getAffineTransform."""
    rad = np.pi * rot_deg / 180
    half = side * -0.5  # in the side's own dtype
    direction = [0.0 * np.cos(rad) - half * np.sin(rad), 0.0 * np.sin(rad) + half * np.cos(rad)]
    src = np.zeros((3, 2), np.float32)
    src[0] = center
    src[1] = center + np.array(direction)
    d = src[0] - src[1]
    src[2] = src[1] + np.array([-d[1], d[0]], np.float32)
    dst = np.array([[res / 2, res / 2], [res / 2, 0.0], [0.0, 0.0]], np.float32)
    return cv2.getAffineTransform(src, dst)


def _crop_case(center, side):
    rng = np.random.default_rng(12)
    kp2d = np.zeros((49, 3), np.float32)
    kp2d[:, 0] = rng.uniform(80, 280, 49)
    kp2d[:, 1] = rng.uniform(60, 240, 49)
    kp2d[:, 2] = 1.0
    ann = {
        "center": center,
        "scale": side,
        "keypoints2d": kp2d,
        "keypoints3d": np.zeros((49, 4), np.float32),
        "smpl_global_orient": np.zeros(3, np.float32),
        "smpl_body_pose": np.zeros((23, 3), np.float32),
    }
    img = rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)
    return img, ann


def _expected_kp(kp2d, trans):
    xy1 = np.concatenate([kp2d[:, :2].astype(np.float64), np.ones((49, 1))], axis=1)
    return (xy1 @ trans.T).astype(np.float32)


def test_scaled_crop_side_stays_float32_for_float32_boxes():
    """mmhuman3d: `scale` (float32 array of a float32 box) × float64 factor stays float32 (numpy 1.x rules: the
    factor is rounded to float32 first); the crop matrix is built from that float32 side."""
    box = np.array([100.3, 50.7, 150.2, 190.9], np.float32)
    center = np.array([box[0] + box[2] / 2, box[1] + box[3] / 2])  # float32 arithmetic
    side = max(box[2], box[3])
    img, ann = _crop_case(center, side)
    for rot, factor in ((23.7, 1.13), (-41.2, 0.8)):
        out = apply_augmentation(img, ann, AugmentParams(np.ones(3), False, factor, rot), CFG)
        side32 = np.float32(side) * np.float32(factor)
        assert out["scale"] == side32
        trans = _mm_affine(center, side32, rot)
        np.testing.assert_array_equal(
            out["keypoints2d"][:, :2], _expected_kp(ann["keypoints2d"], trans)[:, :2]
        )
        if cv2.__version__.startswith("4."):
            ref = cv2.warpAffine(img, trans, (224, 224), flags=cv2.INTER_LINEAR)
            np.testing.assert_array_equal(out["crop_bgr"], ref)


def test_crop_uses_the_drawn_float64_angle_and_returns_it_as_float32():
    """MeshAffine gets the float64 angle of GetRandomScaleRotation; only the collected `rotation` is float32.
    29.36214° is an angle whose float32 rounding changes the crop matrix for this box."""
    center = np.array([181.0, 171.0], np.float32)
    side = 215.717  # a float64 side: the product stays float64
    rot = 29.36214
    img, ann = _crop_case(center, side)
    out = apply_augmentation(img, ann, AugmentParams(np.ones(3), False, 1.0, rot), CFG)
    trans = _mm_affine(center, side, rot)
    assert not np.array_equal(trans, _mm_affine(center, side, float(np.float32(rot))))
    np.testing.assert_array_equal(out["keypoints2d"][:, :2], _expected_kp(ann["keypoints2d"], trans)[:, :2])
    assert out["rotation"].dtype == np.float32 and out["rotation"] == np.float32(rot)


def test_3d_rotation_uses_mesh_affine_float32_arithmetic():
    """MeshAffine builds R_z(−r) in a float32 matrix (entries from cos/sin of −r), applies it to float32
    joints by einsum, and rotates the global orient with float32 cv2.Rodrigues: the targets are bit-equal."""
    rng = np.random.default_rng(13)
    kp3d = rng.normal(size=(49, 4)).astype(np.float32)
    go = np.array([2.9, 0.2, -0.3], np.float32)
    ann = {
        "center": np.array([50.0, 50.0], np.float32),
        "scale": 80.0,
        "keypoints2d": np.zeros((49, 3), np.float32),
        "keypoints3d": kp3d,
        "smpl_global_orient": go,
        "smpl_body_pose": np.zeros((23, 3), np.float32),
    }
    img = np.zeros((100, 100, 3), np.uint8)
    for rot in (17.3, -48.9, 33.33):
        rad = np.deg2rad(-rot)
        mat = np.eye(3, dtype=np.float32)
        mat[0, :2] = [np.cos(rad), -np.sin(rad)]
        mat[1, :2] = [np.sin(rad), np.cos(rad)]
        out = apply_augmentation(img, ann, AugmentParams(np.ones(3), False, 1.0, rot), CFG)
        np.testing.assert_array_equal(out["keypoints3d"][:, :3], np.einsum("ij,kj->ki", mat, kp3d[:, :3]))
        per_rdg, _ = cv2.Rodrigues(go.reshape(3, 1))
        res_rot, _ = cv2.Rodrigues(np.dot(mat, per_rdg))
        np.testing.assert_array_equal(out["smpl_global_orient"], res_rot.T[0])
