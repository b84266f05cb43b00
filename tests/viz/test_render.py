"""Pixel tests of the headless renderer: coverage, depth, visibility, shading, untouched background."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.viz import render as R

K = np.array([[100.0, 0.0, 50.0], [0.0, 100.0, 50.0], [0.0, 0.0, 1.0]])


def unproject(uv, z: float) -> np.ndarray:
    """Camera-frame points at depth z that project to pixel coordinates uv with K."""
    uv = np.asarray(uv, dtype=np.float64)
    return np.stack([(uv[:, 0] - 50.0) * z / 100.0, (uv[:, 1] - 50.0) * z / 100.0, np.full(len(uv), z)], 1)


def test_known_triangle_covers_expected_pixels():
    verts = unproject([(10, 10), (40, 10), (10, 40)], 2.0)
    mask, depth = R.render_mask_depth(verts, np.array([[0, 1, 2]]), K, (64, 80))
    ys, xs = np.mgrid[0:64, 0:80]
    expect = (xs >= 10) & (ys >= 10) & (xs + ys <= 50)  # pixel centres at integer coordinates
    np.testing.assert_array_equal(mask, expect)
    np.testing.assert_allclose(depth[mask], 2.0)
    assert np.isinf(depth[~mask]).all()


def test_depth_is_perspective_correct_on_a_tilted_triangle():
    # plane z = 2 + 0.5 x (camera frame); the depth seen through pixel (u, v) is where its ray meets the plane
    uv = np.array([(5, 5), (95, 5), (5, 95)], dtype=np.float64)
    rays = np.stack([(uv[:, 0] - 50) / 100, (uv[:, 1] - 50) / 100, np.ones(3)], 1)
    z = 2.0 / (1.0 - 0.5 * rays[:, 0])
    verts = rays * z[:, None]
    mask, depth = R.render_mask_depth(verts, np.array([[0, 1, 2]]), K, (100, 100))
    ys, xs = np.nonzero(mask)
    expect = 2.0 / (1.0 - 0.5 * (xs - 50) / 100)
    np.testing.assert_allclose(depth[ys, xs], expect, rtol=1e-9)


@pytest.mark.parametrize("order", [(0, 1), (1, 0)])
def test_nearer_face_wins_whatever_the_order(order):
    near = unproject([(10, 10), (60, 10), (10, 60)], 2.0)
    far = unproject([(20, 20), (90, 20), (20, 90)], 3.0)
    meshes, colors = [near, far], [(0, 0, 255), (255, 0, 0)]  # near = red, far = blue (BGR)
    faces = np.array([[0, 1, 2]])
    img = np.zeros((100, 100, 3), np.uint8)
    out = R.render_overlay(
        img, [meshes[i] for i in order], faces, K, color=[colors[i] for i in order], alpha=1.0
    )
    # (30, 25) is covered by both: the near (red) one must show; (80, 25) only by the far (blue) one
    assert out[25, 30, 2] > 0 and out[25, 30, 0] == 0
    assert out[25, 80, 0] > 0 and out[25, 80, 2] == 0
    r = R.rasterize(
        np.concatenate([meshes[i] for i in order]), np.array([[0, 1, 2], [3, 4, 5]]), K, (100, 100)
    )
    assert r.depth[25, 30] == pytest.approx(2.0) and r.depth[25, 80] == pytest.approx(3.0)


def test_overlay_changes_only_covered_pixels_and_blends():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (100, 120, 3), dtype=np.uint8)
    verts = unproject([(10, 10), (40, 10), (10, 40)], 2.0)
    faces = np.array([[0, 1, 2]])
    out = R.render_overlay(img, verts, faces, K, color=(50, 100, 150), alpha=0.5)
    mask, _ = R.render_mask_depth(verts, faces, K, img.shape[:2])
    assert mask.sum() > 100
    np.testing.assert_array_equal(out[~mask], img[~mask])
    # Lambert: the triangle faces the camera, so intensity = ambient + diffuse * cos(angle to the light)
    light = np.asarray(R.LIGHT_DIR) / np.linalg.norm(R.LIGHT_DIR)
    shade = R.AMBIENT + R.DIFFUSE * max(0.0, float(np.dot([0.0, 0.0, -1.0], light)))
    expect = np.rint(0.5 * np.array([50, 100, 150]) * shade + 0.5 * img[mask].astype(float))
    np.testing.assert_array_equal(out[mask], expect.astype(np.uint8))
    assert img is not out and not np.shares_memory(img, out)
    import torch  # torch tensors are accepted as vertices

    out_t = R.render_overlay(img, torch.as_tensor(verts), faces, K, color=(50, 100, 150), alpha=0.5)
    np.testing.assert_array_equal(out_t, out)


def test_geometry_behind_the_camera_or_outside_draws_nothing():
    img = np.full((50, 50, 3), 7, np.uint8)
    faces = np.array([[0, 1, 2]])
    behind = unproject([(10, 10), (40, 10), (10, 40)], 2.0) * np.array([1, 1, -1])
    np.testing.assert_array_equal(R.render_overlay(img, behind, faces, K), img)
    outside = unproject([(200, 200), (300, 200), (200, 300)], 2.0)
    np.testing.assert_array_equal(R.render_overlay(img, outside, faces, K), img)
    np.testing.assert_array_equal(R.render_overlay(img, np.zeros((0, 3)), np.zeros((0, 3), int), K), img)


def test_batching_gives_the_same_result(monkeypatch):
    rng = np.random.default_rng(1)
    verts = unproject(rng.uniform(0, 100, (60, 2)), 1.0) + rng.uniform(0, 1, (60, 1)) * [0, 0, 1]
    faces = rng.integers(0, 60, (40, 3))
    full = R.rasterize(verts, faces, K, (100, 100))
    monkeypatch.setattr(R, "MAX_CANDIDATES", 500)
    small = R.rasterize(verts, faces, K, (100, 100))
    np.testing.assert_array_equal(full.face, small.face)
    np.testing.assert_array_equal(full.depth, small.depth)


def test_side_view_turns_the_mesh_about_its_vertical_axis():
    # a flat 0.8 m x 0.4 m box facing the camera: wide in front view, thin in the side view
    x, y, z = np.meshgrid([-0.4, 0.4], [-0.2, 0.2], [2.98, 3.02], indexing="ij")
    verts = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    quads = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    faces = np.array([t for a, b, c, d in quads for t in ((a, b, c), (a, c, d))])
    front, _ = R.render_mask_depth(verts, faces, K, (100, 100))
    side = R.side_view(verts, faces, K, (100, 100), background=(0, 0, 0))
    side_mask = side.any(axis=2)
    width = lambda m: np.ptp(np.nonzero(m.any(0))[0]) + 1  # noqa: E731
    height = lambda m: np.ptp(np.nonzero(m.any(1))[0]) + 1  # noqa: E731
    assert width(front) > 20 and width(side_mask) < 5
    assert abs(height(front) - height(side_mask)) <= 2


DEVICES = ["cpu"] + (["cuda"] if __import__("torch").cuda.is_available() else [])


@pytest.mark.parametrize("device", DEVICES)
def test_overlay_equals_the_first_renderers_reference(device):
    """The torch rasteriser (back faces of closed meshes skipped) draws what the first numpy renderer drew on a
    fixed two-mesh scene: identical silhouette, colours within 2 grey levels (here: identical)."""
    from render_scene import REFERENCE, SIZE_HW, scene
    from render_scene import K as SCENE_K

    ref = np.load(REFERENCE)
    background, meshes, faces = scene()
    out = R.render_overlay(
        background, meshes, faces, SCENE_K, color=[(200, 170, 130), (90, 200, 60)], device=device
    )
    mask, _ = R.render_mask_depth(meshes, faces, SCENE_K, SIZE_HW, device=device)
    np.testing.assert_array_equal(mask, ref["mask"])
    assert int(mask.sum()) > 5000
    assert np.abs(out.astype(int) - ref["overlay"].astype(int)).max() <= 2


def test_closed_mesh_detection():
    import torch
    from render_scene import uv_sphere

    _, faces = uv_sphere((0, 0, 3), 1.0)
    assert R._is_closed(torch.as_tensor(faces), faces.max() + 1)
    assert not R._is_closed(torch.as_tensor(faces[1:]), faces.max() + 1)  # a hole
    flipped = faces.copy()
    flipped[0] = flipped[0, ::-1]  # one face wound the other way
    assert not R._is_closed(torch.as_tensor(flipped), faces.max() + 1)
