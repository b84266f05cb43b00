"""A fixed scene for the renderer's regression test: two overlapping closed meshes in front of a textured frame.

`tests/render/data/render_reference.npz` holds the overlay and the depth mask that the first (per-triangle-box,
sort-based) numpy renderer drew for this scene; the faster renderers must match it. Regenerate only on purpose:
`python tests/render_scene.py` (it overwrites the reference).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

REFERENCE = Path(__file__).parent / "render" / "data" / "render_reference.npz"
SIZE_HW = (180, 240)
K = np.array([[220.0, 0.0, 120.0], [0.0, 220.0, 90.0], [0.0, 0.0, 1.0]])


def uv_sphere(center, radius, rings=24, segments=40, squash=(1.0, 1.0, 1.0)):
    """A closed UV sphere: vertices (V,3), faces (F,3), outward winding."""
    theta = np.linspace(0.0, np.pi, rings + 1)[1:-1]
    phi = np.linspace(0.0, 2.0 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    ring = np.stack([np.sin(t) * np.cos(p), np.cos(t), np.sin(t) * np.sin(p)], -1).reshape(-1, 3)
    verts = np.concatenate([[[0.0, 1.0, 0.0]], ring, [[0.0, -1.0, 0.0]]])
    faces = []
    n = segments
    for j in range(n):
        faces.append([0, 1 + (j + 1) % n, 1 + j])
    for i in range(rings - 2):
        for j in range(n):
            a, b = 1 + i * n + j, 1 + i * n + (j + 1) % n
            c, d = a + n, b + n
            faces += [[a, b, d], [a, d, c]]
    last = len(verts) - 1
    base = 1 + (rings - 2) * n
    for j in range(n):
        faces.append([last, base + j, base + (j + 1) % n])
    verts = verts * np.asarray(squash) * radius + np.asarray(center)
    return verts, np.asarray(faces, np.int64)


def scene():
    """(background (H,W,3) uint8, [verts_a, verts_b], faces) -- the meshes share one faces array."""
    rng = np.random.default_rng(7)
    background = rng.integers(0, 256, (*SIZE_HW, 3), dtype=np.uint8)
    va, faces = uv_sphere((-0.15, 0.05, 3.0), 0.6, squash=(0.7, 1.3, 0.8))
    vb, _ = uv_sphere((0.35, -0.1, 3.4), 0.55, squash=(1.0, 0.9, 1.2))
    return background, [va, vb], faces


def render_reference():
    from gtacli.render.overlay import render_mask_depth, render_overlay

    background, meshes, faces = scene()
    overlay = render_overlay(background, meshes, faces, K, color=[(200, 170, 130), (90, 200, 60)])
    mask, _ = render_mask_depth(meshes, faces, K, SIZE_HW)
    return overlay, mask


if __name__ == "__main__":
    overlay, mask = render_reference()
    np.savez_compressed(REFERENCE, overlay=overlay, mask=mask)
    print(f"wrote {REFERENCE}: {int(mask.sum())} covered pixels")
