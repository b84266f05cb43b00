"""Headless mesh renderer: numpy only (no OpenGL, pyrender or pytorch3d), so it runs on any server.

Camera: pinhole with intrinsics K (3x3), mesh vertices already in the camera frame, OpenCV convention
(x right, y down, z forward, pixel (u, v) = column, row with pixel centres at integer coordinates).

Rasterisation is vectorised per triangle bounding box: every (triangle, pixel-in-its-box) pair is one row of
a flat array, edge functions decide coverage, depth is interpolated perspective-correctly (1/z is linear in
screen space), and the nearest candidate per pixel wins (a sort instead of a per-pixel loop). Shading is
Lambert with one directional light plus ambient, using interpolated vertex normals.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence, Tuple, Union

import numpy as np

NEAR_Z_M = 1e-3  # triangles with a vertex closer than this (or behind the camera) are not drawn
MAX_CANDIDATES = 4_000_000  # (triangle, pixel) pairs per batch: bounds memory for meshes close to the camera
DEFAULT_COLOR_BGR = (200, 170, 130)  # light blue-grey, visible on most images
DEFAULT_ALPHA = 0.85
AMBIENT = 0.35
DIFFUSE = 0.65
# Direction towards the light in the camera frame: from above (-y), a little from the left, towards the camera.
LIGHT_DIR = (-0.3, -0.5, -1.0)

MeshInput = Union[np.ndarray, Sequence[np.ndarray]]


@dataclass
class Raster:
    """Per-pixel result of rasterising a mesh: which face is visible and where."""

    mask: np.ndarray  # (H, W) bool
    depth: np.ndarray  # (H, W) float64, camera z of the visible surface; inf where empty
    face: np.ndarray  # (H, W) int64, index of the visible face; -1 where empty
    bary: np.ndarray  # (H, W, 3) float64 perspective-correct barycentric coordinates of the visible point


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def project(vertices: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (V, 3) -> pixel coordinates (V, 2) with intrinsics K."""
    v = np.asarray(vertices, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    z = v[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * v[:, 0] / z + K[0, 1] * v[:, 1] / z + K[0, 2]
        w = K[1, 1] * v[:, 1] / z + K[1, 2]
    return np.stack([u, w], axis=1)


@dataclass
class _Region:
    """Rasterisation result inside the pixel box [y0, y0 + h) x [x0, x0 + w) that the mesh can touch."""

    y0: int
    x0: int
    depth: np.ndarray  # (h, w) inf where empty
    face: np.ndarray  # (h, w) -1 where empty

    @property
    def mask(self) -> np.ndarray:
        return self.face >= 0


def rasterize(vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, size: Tuple[int, int]) -> Raster:
    """Z-buffer rasterisation of a triangle mesh. vertices (V, 3) camera frame, faces (F, 3), size (H, W)."""
    H, W = int(size[0]), int(size[1])
    verts = _as_numpy(vertices).astype(np.float64)
    faces = _as_numpy(faces).astype(np.int64)
    region = _rasterize_region(verts, faces, K, (H, W))
    depth = np.full((H, W), np.inf)
    face = np.full((H, W), -1, dtype=np.int64)
    bary = np.zeros((H, W, 3))
    if region is not None:
        h, w = region.face.shape
        depth[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.depth
        face[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.face
        ys, xs = np.nonzero(region.mask)
        bary[ys + region.y0, xs + region.x0] = _barycentrics(
            verts, faces, K, region.face[ys, xs], xs + region.x0, ys + region.y0
        )
    return Raster(face >= 0, depth, face, bary)


def _rasterize_region(
    verts: np.ndarray, faces: np.ndarray, K: np.ndarray, size: Tuple[int, int]
) -> Optional[_Region]:
    H, W = size
    if len(faces) == 0 or H == 0 or W == 0:
        return None
    uv = project(verts, K)
    tri_uv = uv[faces]  # (F, 3, 2)
    tri_z = verts[:, 2][faces]  # (F, 3)
    ok = (tri_z > NEAR_Z_M).all(1) & np.isfinite(tri_uv).all((1, 2))
    # pixel centres inside each triangle's box, clipped to the image
    with np.errstate(invalid="ignore"):
        x0 = np.clip(np.ceil(tri_uv[..., 0].min(1) - 1e-9), 0, W - 1)
        x1 = np.clip(np.floor(tri_uv[..., 0].max(1) + 1e-9), 0, W - 1)
        y0 = np.clip(np.ceil(tri_uv[..., 1].min(1) - 1e-9), 0, H - 1)
        y1 = np.clip(np.floor(tri_uv[..., 1].max(1) + 1e-9), 0, H - 1)
        ok &= (tri_uv[..., 0].max(1) >= 0) & (tri_uv[..., 0].min(1) <= W - 1)
        ok &= (tri_uv[..., 1].max(1) >= 0) & (tri_uv[..., 1].min(1) <= H - 1)
        ok &= (x1 >= x0) & (y1 >= y0)
        # signed doubled area; degenerate (edge-on) triangles cover nothing
        e1 = tri_uv[:, 1] - tri_uv[:, 0]
        e2 = tri_uv[:, 2] - tri_uv[:, 0]
        area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
        ok &= np.abs(area) > 1e-12
    ids = np.nonzero(ok)[0]
    if len(ids) == 0:
        return None
    rx0, ry0 = int(x0[ids].min()), int(y0[ids].min())
    rw, rh = int(x1[ids].max()) - rx0 + 1, int(y1[ids].max()) - ry0 + 1
    depth = np.full(rh * rw, np.inf)
    face = np.full(rh * rw, -1, dtype=np.int64)
    bw = (x1[ids] - x0[ids] + 1).astype(np.int64)
    counts = bw * (y1[ids] - y0[ids] + 1).astype(np.int64)
    ends = np.cumsum(counts)
    start = 0
    while start < len(ids):  # batches of triangles whose candidate pixels fit in MAX_CANDIDATES
        base = ends[start - 1] if start > 0 else 0
        stop = max(int(np.searchsorted(ends, base + MAX_CANDIDATES, side="right")), start + 1)
        sel = ids[start:stop]
        _raster_batch(
            sel,
            bw[start:stop],
            counts[start:stop],
            x0[sel],
            y0[sel],
            tri_uv,
            tri_z,
            area,
            (ry0, rx0, rw),
            depth,
            face,
        )
        start = stop
    return _Region(ry0, rx0, depth.reshape(rh, rw), face.reshape(rh, rw))


def _raster_batch(ids, bw, counts, x0, y0, tri_uv, tri_z, area, region, depth, face_buf) -> None:
    ry0, rx0, rw = region
    total = int(counts.sum())
    tri = np.repeat(np.arange(len(ids)), counts)
    local = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
    px = x0[tri] + local % bw[tri]
    py = y0[tri] + local // bw[tri]
    f = ids[tri]
    l0, l1, l2 = _edge_weights(tri_uv[f], area[f], px, py)
    inside = (l0 >= -1e-9) & (l1 >= -1e-9) & (l2 >= -1e-9)
    if not inside.any():
        return
    l0, l1, l2, f, px, py = l0[inside], l1[inside], l2[inside], f[inside], px[inside], py[inside]
    tz = tri_z[f]
    zval = 1.0 / (l0 / tz[:, 0] + l1 / tz[:, 1] + l2 / tz[:, 2])  # 1/z is linear in screen space
    pix = ((py - ry0) * rw + (px - rx0)).astype(np.int64)
    # nearest candidate per pixel: one sort on pixel + depth rank in [0, 0.5), keep the first of each pixel
    zmin, zmax = zval.min(), zval.max()
    key = pix + 0.5 * (zval - zmin) / (zmax - zmin + 1e-12)
    order = np.argsort(key, kind="stable")
    pix_sorted = pix[order]
    first = np.ones(len(order), bool)
    first[1:] = pix_sorted[1:] != pix_sorted[:-1]
    best = order[first]
    p = pix[best]
    closer = zval[best] < depth[p]
    best, p = best[closer], p[closer]
    depth[p] = zval[best]
    face_buf[p] = f[best]


def _edge_weights(tri_uv: np.ndarray, area: np.ndarray, px: np.ndarray, py: np.ndarray):
    """Screen-space barycentric weights of pixel centres (px, py) in triangles (N, 3, 2) with doubled areas (N,)."""
    a, b, c = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
    w0 = (b[:, 0] - px) * (c[:, 1] - py) - (b[:, 1] - py) * (c[:, 0] - px)
    w1 = (c[:, 0] - px) * (a[:, 1] - py) - (c[:, 1] - py) * (a[:, 0] - px)
    w2 = (a[:, 0] - px) * (b[:, 1] - py) - (a[:, 1] - py) * (b[:, 0] - px)
    return w0 / area, w1 / area, w2 / area


def _barycentrics(verts, faces, K, face_idx, px, py) -> np.ndarray:
    """Perspective-correct barycentric coordinates (N, 3) of the visible point at pixels (px, py)."""
    tri_uv = project(verts, K)[faces[face_idx]]
    e1 = tri_uv[:, 1] - tri_uv[:, 0]
    e2 = tri_uv[:, 2] - tri_uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    lam = np.stack(_edge_weights(tri_uv, area, px.astype(np.float64), py.astype(np.float64)), 1)
    persp = lam / verts[:, 2][faces[face_idx]]
    return persp / persp.sum(1, keepdims=True)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3) (the mesh's own winding decides their side)."""
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    fn = np.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]])
    vn = np.zeros_like(v)
    for k in range(3):
        np.add.at(vn, f[:, k], fn)
    return vn / np.maximum(np.linalg.norm(vn, axis=1, keepdims=True), 1e-12)


def _merge_meshes(vertices: MeshInput, faces) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One mesh or a list of meshes (sharing `faces`, or one faces array each) -> merged arrays + mesh id per face."""
    if (
        isinstance(vertices, np.ndarray)
        and vertices.ndim == 2
        or hasattr(vertices, "detach")
        and vertices.dim() == 2
    ):
        v = _as_numpy(vertices)
        f = _as_numpy(faces).astype(np.int64)
        return v, f, np.zeros(len(f), dtype=np.int64)
    meshes = [_as_numpy(m) for m in vertices]
    face_list = faces if isinstance(faces, (list, tuple)) else [faces] * len(meshes)
    vs, fs, ids, offset = [], [], [], 0
    for i, (m, f) in enumerate(zip(meshes, face_list)):
        f = _as_numpy(f).astype(np.int64)
        vs.append(m)
        fs.append(f + offset)
        ids.append(np.full(len(f), i, dtype=np.int64))
        offset += len(m)
    if not vs:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64)
    return np.concatenate(vs), np.concatenate(fs), np.concatenate(ids)


def _shade_pixels(verts, faces, face_idx, bary, light_dir) -> np.ndarray:
    """Lambert intensity (N,) of visible points (two-sided: each normal is turned towards the camera)."""
    vn = vertex_normals(verts, faces)
    tri = faces[face_idx]
    n = (vn[tri] * bary[..., None]).sum(1)
    n /= np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    point = (verts[tri] * bary[..., None]).sum(1)
    n = np.where(((n * point).sum(1) > 0)[:, None], -n, n)
    light = np.asarray(light_dir, dtype=np.float64)
    light = light / np.linalg.norm(light)
    return AMBIENT + DIFFUSE * np.clip(n @ light, 0.0, 1.0)


def shade(
    raster: Raster, vertices: np.ndarray, faces: np.ndarray, light_dir: Sequence[float] = LIGHT_DIR
) -> np.ndarray:
    """Lambert intensity (H, W) in [0, 1] of the visible surface of a `Raster` (0 where empty)."""
    out = np.zeros(raster.mask.shape)
    if raster.mask.any():
        verts = np.asarray(vertices, dtype=np.float64)
        faces = np.asarray(faces, dtype=np.int64)
        out[raster.mask] = _shade_pixels(
            verts, faces, raster.face[raster.mask], raster.bary[raster.mask], light_dir
        )
    return out


def render_mask_depth(
    vertices: MeshInput, faces, K: np.ndarray, size: Tuple[int, int]
) -> Tuple[np.ndarray, np.ndarray]:
    """(mask (H, W) bool, depth (H, W) float, inf where empty) of one mesh or a list of meshes."""
    v, f, _ = _merge_meshes(vertices, faces)
    H, W = int(size[0]), int(size[1])
    depth = np.full((H, W), np.inf)
    region = _rasterize_region(v.astype(np.float64), f, K, (H, W))
    if region is not None:
        h, w = region.depth.shape
        depth[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.depth
    return np.isfinite(depth), depth


def render_overlay(
    image_bgr: np.ndarray,
    vertices: MeshInput,
    faces,
    K: np.ndarray,
    color: Union[Sequence[float], Sequence[Sequence[float]]] = DEFAULT_COLOR_BGR,
    alpha: float = DEFAULT_ALPHA,
    light_dir: Sequence[float] = LIGHT_DIR,
) -> np.ndarray:
    """Draw shaded mesh(es) over a BGR uint8 image (H, W, 3); pixels where no mesh projects are unchanged.

    `vertices` is (V, 3) or a list of (V_i, 3) meshes in the camera frame; `faces` is (F, 3) shared by all meshes
    or a list; `color` is one BGR colour or one per mesh; `alpha` is the mesh opacity. Returns a new image.
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"render_overlay expects a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    v, f, mesh_id = _merge_meshes(vertices, faces)
    v = v.astype(np.float64)
    out = image.copy()
    region = _rasterize_region(v, f, K, image.shape[:2])
    if region is None:
        return out
    ys, xs = np.nonzero(region.mask)
    fidx = region.face[ys, xs]
    ys, xs = ys + region.y0, xs + region.x0
    bary = _barycentrics(v, f, K, fidx, xs, ys)
    intensity = _shade_pixels(v, f, fidx, bary, light_dir)
    colors = np.asarray(color, dtype=np.float64).reshape(-1, 3)
    rgb = colors[np.minimum(mesh_id[fidx], len(colors) - 1)] * intensity[:, None]
    blended = alpha * rgb + (1.0 - alpha) * image[ys, xs].astype(np.float64)
    out[ys, xs] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out


def side_view(
    vertices: MeshInput,
    faces,
    K: np.ndarray,
    size: Tuple[int, int],
    angle_deg: float = 90.0,
    background: Union[np.ndarray, Sequence[int]] = (255, 255, 255),
    color: Union[Sequence[float], Sequence[Sequence[float]]] = DEFAULT_COLOR_BGR,
) -> np.ndarray:
    """Render the mesh(es) turned by `angle_deg` about the vertical (camera y) axis through their common centre.

    The centre is the mean of the vertices' bounding box; size (H, W); background is a colour or an image.
    """
    H, W = int(size[0]), int(size[1])
    if isinstance(background, np.ndarray) and background.ndim == 3:
        canvas = background.astype(np.uint8).copy()
    else:
        canvas = np.empty((H, W, 3), np.uint8)
        canvas[:] = np.asarray(background, dtype=np.uint8)
    single = (
        isinstance(vertices, np.ndarray)
        and vertices.ndim == 2
        or hasattr(vertices, "detach")
        and vertices.dim() == 2
    )
    meshes = [_as_numpy(vertices)] if single else [_as_numpy(m) for m in vertices]
    meshes = [m.astype(np.float64) for m in meshes]
    if not meshes or sum(len(m) for m in meshes) == 0:
        return canvas
    allv = np.concatenate(meshes)
    centre = 0.5 * (allv.min(0) + allv.max(0))
    t = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(t), 0.0, np.sin(t)], [0.0, 1.0, 0.0], [-np.sin(t), 0.0, np.cos(t)]])
    turned = [(m - centre) @ rot.T + centre for m in meshes]
    return render_overlay(canvas, turned[0] if single else turned, faces, K, color=color, alpha=1.0)


def draw_points(
    image_bgr: np.ndarray, points_xy: np.ndarray, color=(0, 0, 255), radius: int = 3
) -> np.ndarray:
    """Small filled circles at pixel positions (N, 2) (keypoint overlays for debugging and the sample tree)."""
    import cv2

    out = np.ascontiguousarray(image_bgr).copy()
    for x, y in np.asarray(points_xy, dtype=np.float64).reshape(-1, 2):
        if np.isfinite(x) and np.isfinite(y):
            cv2.circle(
                out, (int(round(x)), int(round(y))), radius, tuple(int(c) for c in color), -1, cv2.LINE_AA
            )
    return out
