"""Headless mesh renderer in torch (no OpenGL, pyrender or pytorch3d): runs on any server, on the CPU or on the
model's GPU (`device=`), so a GPU demo is not bound by the CPU drawing overlays.

Camera: pinhole with intrinsics K (3x3), mesh vertices already in the camera frame, OpenCV convention
(x right, y down, z forward, pixel (u, v) = column, row with pixel centres at integer coordinates).

Rasterisation is vectorised per triangle bounding box and touches only the pixel region the mesh covers: every
(triangle, pixel-in-its-box) pair is one element of a flat tensor, edge functions decide coverage, depth is
interpolated perspective-correctly (1/z is linear in screen space), and the nearest candidate per pixel wins
(a scatter-min over pixels; ties go to the lower face index). Shading is Lambert with one directional light
plus ambient, using interpolated vertex normals. Everything runs in float64, so the result does not depend on
the device (the first numpy version of this renderer is kept as reference values in the tests).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

NEAR_Z_M = 1e-3  # triangles with a vertex closer than this (or behind the camera) are not drawn
MAX_CANDIDATES = 4_000_000  # (triangle, pixel) pairs per batch: bounds memory for meshes close to the camera
DEFAULT_COLOR_BGR = (200, 170, 130)  # light blue-grey, visible on most images
DEFAULT_ALPHA = 0.85
AMBIENT = 0.35
DIFFUSE = 0.65
# Direction towards the light in the camera frame: from above (-y), a little from the left, towards the camera.
LIGHT_DIR = (-0.3, -0.5, -1.0)
EDGE_EPS = (
    1e-9  # a pixel centre this close outside an edge still counts as covered (shared edges leave no gap)
)

MeshInput = Union[np.ndarray, Sequence[np.ndarray]]
DeviceArg = Union[str, torch.device, None]


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


def _tensor(x, device: torch.device, dtype=torch.float64) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().to(device=device, dtype=dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype, device=device)


def project(vertices: np.ndarray, K: np.ndarray) -> np.ndarray:
    """Camera-frame points (V, 3) -> pixel coordinates (V, 2) with intrinsics K."""
    return _project_t(_tensor(vertices, torch.device("cpu")), _tensor(K, torch.device("cpu"))).numpy()


def _project_t(v: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    z = v[:, 2]
    u = K[0, 0] * v[:, 0] / z + K[0, 1] * v[:, 1] / z + K[0, 2]
    w = K[1, 1] * v[:, 1] / z + K[1, 2]
    return torch.stack([u, w], dim=1)


@dataclass
class _Region:
    """Rasterisation result inside the pixel box [y0, y0 + h) x [x0, x0 + w) that the mesh can touch."""

    y0: int
    x0: int
    depth: torch.Tensor  # (h, w) inf where empty
    face: torch.Tensor  # (h, w) -1 where empty
    weights: torch.Tensor  # (h, w, 3) screen-space barycentric weights of the visible point

    @property
    def mask(self) -> torch.Tensor:
        return self.face >= 0

    def visible(self) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(ys, xs) image rows/columns of the covered pixels, their visible faces and screen weights (N, 3)."""
        # one flat nonzero + index_select: torch's (ys, xs) advanced indexing costs several times more on the CPU
        w = self.face.shape[1]
        flat = torch.nonzero(self.face.reshape(-1) >= 0).reshape(-1)
        ys, xs = flat // w, flat % w
        face, weights = (
            self.face.reshape(-1).index_select(0, flat),
            self.weights.reshape(-1, 3).index_select(0, flat),
        )
        return ys + self.y0, xs + self.x0, face, weights


@contextmanager
def _device_threads(device: torch.device) -> Iterator[None]:
    """On the CPU, rasterise with one torch thread: the work is memory-bound element-wise passes over ~10^5
    values, where a thread pool adds only its start-up cost, and where other processes share the cores waiting
    OpenMP threads made a frame 10-40x slower (measured: 0.11 s of CPU with one thread, 0.6-2.2 s with two)."""
    if device.type != "cpu" or torch.get_num_threads() == 1:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def rasterize(
    vertices: np.ndarray, faces: np.ndarray, K: np.ndarray, size: Tuple[int, int], device: DeviceArg = None
) -> Raster:
    """Z-buffer rasterisation of a triangle mesh. vertices (V, 3) camera frame, faces (F, 3), size (H, W)."""
    H, W = int(size[0]), int(size[1])
    dev = torch.device(device or "cpu")
    verts, faces_t, K_t = _tensor(vertices, dev), _tensor(faces, dev, torch.int64), _tensor(K, dev)
    with _device_threads(dev):
        region = _rasterize_region(verts, faces_t, K_t, (H, W))
    depth = np.full((H, W), np.inf)
    face = np.full((H, W), -1, dtype=np.int64)
    bary = np.zeros((H, W, 3))
    if region is not None:
        h, w = region.face.shape
        depth[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.depth.cpu().numpy()
        face[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.face.cpu().numpy()
        ys, xs, fidx, lam = region.visible()
        bary[ys.cpu().numpy(), xs.cpu().numpy()] = _perspective(verts, faces_t, fidx, lam).cpu().numpy()
    return Raster(face >= 0, depth, face, bary)


def _rasterize_region(
    verts: torch.Tensor,
    faces: torch.Tensor,
    K: torch.Tensor,
    size: Tuple[int, int],
    mesh_id: Optional[torch.Tensor] = None,
) -> Optional[_Region]:
    """verts (V,3) float64, faces (F,3) int64, K (3,3) float64, mesh_id (F,) (which merged mesh each face belongs
    to; None = one mesh), all on one device -> the covered region or None."""
    H, W = size
    if len(faces) == 0 or H == 0 or W == 0:
        return None
    uv = _project_t(verts, K)
    tri_uv = uv[faces]  # (F, 3, 2)
    tri_z = verts[:, 2][faces]  # (F, 3)
    ok = (tri_z > NEAR_Z_M).all(1) & torch.isfinite(tri_uv).all(2).all(1)
    # pixel centres inside each triangle's box, clipped to the image
    tu, tv = tri_uv[..., 0], tri_uv[..., 1]
    umin, umax, vmin, vmax = tu.amin(1), tu.amax(1), tv.amin(1), tv.amax(1)
    x0 = torch.clamp(torch.ceil(umin - 1e-9), 0, W - 1)
    x1 = torch.clamp(torch.floor(umax + 1e-9), 0, W - 1)
    y0 = torch.clamp(torch.ceil(vmin - 1e-9), 0, H - 1)
    y1 = torch.clamp(torch.floor(vmax + 1e-9), 0, H - 1)
    ok &= (umax >= 0) & (umin <= W - 1) & (vmax >= 0) & (vmin <= H - 1)
    ok &= (x1 >= x0) & (y1 >= y0)
    # signed doubled area; degenerate (edge-on) triangles cover nothing
    e1 = tri_uv[:, 1] - tri_uv[:, 0]
    e2 = tri_uv[:, 2] - tri_uv[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok &= torch.abs(area) > 1e-12
    ok &= _front_facing(verts, faces, mesh_id)
    ids = torch.nonzero(ok).reshape(-1)
    if len(ids) == 0:
        return None
    x0, x1, y0, y1 = (t[ids].long() for t in (x0, x1, y0, y1))
    rx0, ry0 = int(x0.min()), int(y0.min())
    rw, rh = int(x1.max()) - rx0 + 1, int(y1.max()) - ry0 + 1
    depth = torch.full((rh * rw,), float("inf"), dtype=torch.float64, device=verts.device)
    face = torch.full((rh * rw,), -1, dtype=torch.int64, device=verts.device)
    weights = torch.zeros((rh * rw, 3), dtype=torch.float64, device=verts.device)
    coef = _edge_coefficients(tri_uv - tri_uv.new_tensor([rx0, ry0]), area)
    bw = x1 - x0 + 1
    counts = bw * (y1 - y0 + 1)
    ends = torch.cumsum(counts, 0).cpu().numpy()
    start = 0
    while start < len(ids):  # batches of triangles whose candidate pixels fit in MAX_CANDIDATES
        base = ends[start - 1] if start > 0 else 0
        stop = max(int(np.searchsorted(ends, base + MAX_CANDIDATES, side="right")), start + 1)
        s = slice(start, stop)
        _raster_batch(
            ids[s], bw[s], counts[s], x0[s] - rx0, y0[s] - ry0, coef, tri_z, rw, depth, face, weights
        )
        start = stop
    return _Region(ry0, rx0, depth.reshape(rh, rw), face.reshape(rh, rw), weights.reshape(rh, rw, 3))


def _front_facing(verts: torch.Tensor, faces: torch.Tensor, mesh_id: Optional[torch.Tensor]) -> torch.Tensor:
    """(F,) bool: faces that can be visible. For closed, consistently wound meshes entirely in front of the camera
    (SMPL: 13776 faces = 2 x 6890 - 4) a face turned away from the camera is always hidden behind a nearer one,
    so it is skipped (about half the work; same silhouette, same visible faces). Open meshes keep every face."""
    keep_all = torch.ones(len(faces), dtype=torch.bool, device=faces.device)
    if not _is_closed(faces, len(verts)) or not bool((verts[:, 2] > NEAR_Z_M).all()):
        return keep_all
    v0, v1, v2 = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    normal = torch.linalg.cross(v1 - v0, v2 - v0, dim=1)
    # signed volume per mesh (> 0: normals point outwards); a camera at the origin sees faces whose normal
    # points back at it
    ids = torch.zeros(len(faces), dtype=torch.int64, device=faces.device) if mesh_id is None else mesh_id
    volume = torch.zeros(int(ids.max()) + 1, dtype=verts.dtype, device=verts.device)
    volume.index_add_(0, ids, (normal * v0).sum(1))
    facing = (normal * v0).sum(1)
    return torch.where(volume[ids] > 0, facing < 0, facing > 0)


def _is_closed(faces: torch.Tensor, num_verts: int) -> bool:
    """Every directed edge appears once and its reverse appears once: a closed, consistently wound surface."""
    a = faces.reshape(-1)
    b = faces[:, [1, 2, 0]].reshape(-1)
    forward, _ = torch.sort(a * num_verts + b)
    if bool((forward[1:] == forward[:-1]).any()):
        return False
    backward, _ = torch.sort(b * num_verts + a)
    return bool(torch.equal(forward, backward))


def _raster_batch(ids, bw, counts, x0, y0, coef, tri_z, rw, depth, face_buf, weights) -> None:
    """Rasterise the triangles `ids` (boxes from x0, y0 in region pixels) into the region's buffers (in place);
    earlier batches win depth ties."""
    dev = depth.device
    total = int(counts.sum())
    tri = torch.repeat_interleave(torch.arange(len(ids), device=dev), counts, output_size=total)
    local = torch.arange(total, device=dev) - torch.repeat_interleave(
        torch.cumsum(counts, 0) - counts, counts, output_size=total
    )
    # index_select and one nonzero per mask instead of advanced / boolean indexing: the same values, but boolean
    # indexing runs a nonzero per indexed tensor and dominated the CPU time
    bwt = bw.index_select(0, tri)
    px = x0.index_select(0, tri) + local % bwt
    py = y0.index_select(0, tri) + local // bwt
    f = ids.index_select(0, tri)
    c = coef.index_select(0, f)  # (N, 3 weights, A/B/C)
    lam = c[:, :, 0] * px.double()[:, None] + c[:, :, 1] * py.double()[:, None] + c[:, :, 2]
    keep = torch.nonzero((lam >= -EDGE_EPS).all(1)).reshape(-1)
    if len(keep) == 0:
        return
    lam, f, px, py = (t.index_select(0, keep) for t in (lam, f, px, py))
    q = lam / tri_z.index_select(0, f)
    # 1/z is linear in screen space; the three terms added in sum(1)'s order (same bits), without its slow
    # reduction over a size-3 dimension
    zval = 1.0 / (q[:, 0] + q[:, 1] + q[:, 2])
    pix = py * rw + px
    # nearest candidate per pixel: scatter-min of depth, then the lowest face index among the nearest
    near = torch.full_like(depth, float("inf")).scatter_reduce(0, pix, zval, "amin")
    win = torch.nonzero(zval == near.index_select(0, pix)).reshape(-1)
    pix_w, f_w = pix.index_select(0, win), f.index_select(0, win)
    best = torch.full_like(face_buf, torch.iinfo(torch.int64).max)
    best = best.scatter_reduce(0, pix_w, f_w, "amin")
    closer = near < depth
    depth.copy_(torch.where(closer, near, depth))
    face_buf.copy_(torch.where(closer, best, face_buf))
    chosen = win[(f_w == best.index_select(0, pix_w)) & closer.index_select(0, pix_w)]
    weights.index_copy_(0, pix.index_select(0, chosen), lam.index_select(0, chosen))


def _edge_coefficients(tri_uv: torch.Tensor, area: torch.Tensor) -> torch.Tensor:
    """(F, 3, 3): screen-space barycentric weight i of triangle (a, b, c) at pixel (x, y) is
    `A_i x + B_i y + C_i` -- the edge function of the opposite edge divided by the doubled area. Coordinates
    are relative to the region's corner, so C stays small and the affine form loses no precision."""
    a, b, c = tri_uv[:, 0], tri_uv[:, 1], tri_uv[:, 2]
    rows = []
    for p, q in ((b, c), (c, a), (a, b)):  # weight of a uses edge b-c, and so on
        rows.append(
            torch.stack([p[:, 1] - q[:, 1], q[:, 0] - p[:, 0], p[:, 0] * q[:, 1] - p[:, 1] * q[:, 0]], 1)
        )
    safe = torch.where(area == 0, torch.ones_like(area), area)
    return torch.stack(rows, 1) / safe[:, None, None]


def _perspective(
    verts: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """Perspective-correct barycentric coordinates (N, 3) from screen-space weights `lam` (N, 3)."""
    persp = lam / verts[:, 2][faces.index_select(0, face_idx)]
    return persp / persp.sum(1, keepdim=True)


def vertex_normals(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    """Area-weighted vertex normals (V, 3) (the mesh's own winding decides their side)."""
    cpu = torch.device("cpu")
    return _vertex_normals_t(_tensor(vertices, cpu), _tensor(faces, cpu, torch.int64)).numpy()


def _vertex_normals_t(v: torch.Tensor, f: torch.Tensor) -> torch.Tensor:
    fn = torch.linalg.cross(v[f[:, 1]] - v[f[:, 0]], v[f[:, 2]] - v[f[:, 0]], dim=1)
    vn = torch.zeros_like(v)
    for k in range(3):
        vn.index_add_(0, f[:, k], fn)
    return vn / torch.clamp(torch.linalg.norm(vn, dim=1, keepdim=True), min=1e-12)


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


def _shade_pixels(verts, faces, face_idx, bary, light_dir) -> torch.Tensor:
    """Lambert intensity (N,) of visible points (two-sided: each normal is turned towards the camera)."""
    vn = _vertex_normals_t(verts, faces)
    tri = faces.index_select(0, face_idx)
    # interpolate corner by corner, in (x[tri] * bary[..., None]).sum(1)'s order (same bits) but without gathering
    # (N, 3, 3) blocks and reducing over a size-3 dimension, which dominated the shading time
    t0, t1, t2 = tri[:, 0], tri[:, 1], tri[:, 2]
    b0, b1, b2 = bary[:, 0:1], bary[:, 1:2], bary[:, 2:3]
    n = vn.index_select(0, t0) * b0 + vn.index_select(0, t1) * b1 + vn.index_select(0, t2) * b2
    n = n / torch.clamp(torch.linalg.norm(n, dim=1, keepdim=True), min=1e-12)
    point = verts.index_select(0, t0) * b0 + verts.index_select(0, t1) * b1 + verts.index_select(0, t2) * b2
    n = torch.where(((n * point).sum(1) > 0)[:, None], -n, n)
    light = _tensor(light_dir, verts.device)
    light = light / torch.linalg.norm(light)
    return AMBIENT + DIFFUSE * torch.clamp(n @ light, 0.0, 1.0)


def shade(
    raster: Raster, vertices: np.ndarray, faces: np.ndarray, light_dir: Sequence[float] = LIGHT_DIR
) -> np.ndarray:
    """Lambert intensity (H, W) in [0, 1] of the visible surface of a `Raster` (0 where empty)."""
    out = np.zeros(raster.mask.shape)
    if raster.mask.any():
        cpu = torch.device("cpu")
        out[raster.mask] = _shade_pixels(
            _tensor(vertices, cpu),
            _tensor(faces, cpu, torch.int64),
            torch.as_tensor(raster.face[raster.mask]),
            torch.as_tensor(raster.bary[raster.mask]),
            light_dir,
        ).numpy()
    return out


def render_mask_depth(
    vertices: MeshInput, faces, K: np.ndarray, size: Tuple[int, int], device: DeviceArg = None
) -> Tuple[np.ndarray, np.ndarray]:
    """(mask (H, W) bool, depth (H, W) float, inf where empty) of one mesh or a list of meshes."""
    dev = torch.device(device or "cpu")
    v, f, mesh_id = _merge_meshes(vertices, faces)
    H, W = int(size[0]), int(size[1])
    depth = np.full((H, W), np.inf)
    v_t, f_t, m_t = _tensor(v, dev), _tensor(f, dev, torch.int64), _tensor(mesh_id, dev, torch.int64)
    with _device_threads(dev):
        region = _rasterize_region(v_t, f_t, _tensor(K, dev), (H, W), m_t)
    if region is not None:
        h, w = region.depth.shape
        depth[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.depth.cpu().numpy()
    return np.isfinite(depth), depth


def render_overlay(
    image_bgr: np.ndarray,
    vertices: MeshInput,
    faces,
    K: np.ndarray,
    color: Union[Sequence[float], Sequence[Sequence[float]]] = DEFAULT_COLOR_BGR,
    alpha: float = DEFAULT_ALPHA,
    light_dir: Sequence[float] = LIGHT_DIR,
    device: DeviceArg = None,
) -> np.ndarray:
    """Draw shaded mesh(es) over a BGR uint8 image (H, W, 3); pixels where no mesh projects are unchanged.

    `vertices` is (V, 3) or a list of (V_i, 3) meshes in the camera frame; `faces` is (F, 3) shared by all meshes
    or a list; `color` is one BGR colour or one per mesh; `alpha` is the mesh opacity; `device` is where the
    rasterisation and shading run (default CPU). Only the covered pixels travel between devices. Returns a new
    image.
    """
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"render_overlay expects a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    dev = torch.device(device or "cpu")
    v, f, mesh_id = _merge_meshes(vertices, faces)
    v, f, K_t = _tensor(v, dev), _tensor(f, dev, torch.int64), _tensor(K, dev)
    out = image.copy()
    with _device_threads(dev):
        _draw(out, image, v, f, K_t, _tensor(mesh_id, dev, torch.int64), color, alpha, light_dir)
    return out


def _draw(out, image, v, f, K_t, mesh_id_t, color, alpha, light_dir) -> None:
    """Rasterise, shade and blend into `out` (in place); only the covered pixels cross between devices."""
    dev = v.device
    region = _rasterize_region(v, f, K_t, image.shape[:2], mesh_id_t)
    if region is None:
        return
    ys, xs, fidx, lam = region.visible()
    bary = _perspective(v, f, fidx, lam)
    intensity = _shade_pixels(v, f, fidx, bary, light_dir)
    colors = _tensor(np.asarray(color, dtype=np.float64).reshape(-1, 3), dev)
    mesh = torch.clamp(mesh_id_t[fidx], max=len(colors) - 1)
    rgb = colors[mesh] * intensity[:, None]
    ys_np, xs_np = ys.cpu().numpy(), xs.cpu().numpy()
    under = _tensor(image[ys_np, xs_np], dev)
    blended = alpha * rgb + (1.0 - alpha) * under
    out[ys_np, xs_np] = torch.clamp(torch.round(blended), 0, 255).to(torch.uint8).cpu().numpy()


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
