"""Headless mesh renderer in torch (no OpenGL, pyrender or pytorch3d): runs on any server, on the CPU or on the
model's GPU (`device=`), so a GPU demo is not bound by the CPU drawing overlays.

Camera: pinhole with intrinsics K (3x3), mesh vertices already in the camera frame, OpenCV convention
(x right, y down, z forward, pixel (u, v) = column, row with pixel centres at integer coordinates).

`gtacli.render.raster` finds the visible triangle of every pixel the mesh covers (exact scanline spans, a z-buffer
over the covered region only, float64); this module shades those pixels -- Lambert with one directional light
plus ambient, using perspective-correct interpolated vertex normals -- and blends them into the image. Which
pixels are covered, and by which face, does not depend on the device; the per-pixel shading runs in float32,
within one grey level of float64 (the first numpy renderer's output is kept as reference values in the tests).
"""

from __future__ import annotations

import hashlib
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Optional, Sequence, Tuple, Union

import numpy as np
import torch

from gtacli.render.raster import Region, face_normals, is_closed, rasterize_region, take_columns

DEFAULT_COLOR_BGR = (200, 170, 130)  # light blue-grey, visible on most images
DEFAULT_ALPHA = 0.85
AMBIENT = 0.35
DIFFUSE = 0.65
# Direction towards the light in the camera frame: from above (-y), a little from the left, towards the camera.
LIGHT_DIR = (-0.3, -0.5, -1.0)

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


@contextmanager
def _device_threads(device: torch.device) -> Iterator[None]:
    """On the CPU, rasterise with one torch thread: the work is memory-bound element-wise passes over ~10^5
    values, where a thread pool adds only its start-up cost, and where other processes share the cores waiting
    OpenMP threads made a frame many times slower."""
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
        region = rasterize_region(verts, faces_t, K_t, (H, W))
    depth = np.full((H, W), np.inf)
    face = np.full((H, W), -1, dtype=np.int64)
    bary = np.zeros((H, W, 3))
    if region is not None:
        h, w = region.tri.shape
        depth[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.depth.cpu().numpy()
        face[region.y0 : region.y0 + h, region.x0 : region.x0 + w] = region.face.cpu().numpy()
        ys, xs, fidx, lam = region.visible()
        bary[ys.cpu().numpy(), xs.cpu().numpy()] = _perspective(verts, faces_t, fidx, lam).cpu().numpy()
    return Raster(face >= 0, depth, face, bary)


def _perspective(
    verts: torch.Tensor, faces: torch.Tensor, face_idx: torch.Tensor, lam: torch.Tensor
) -> torch.Tensor:
    """Perspective-correct barycentric coordinates (N, 3) from screen-space weights `lam` (N, 3)."""
    persp = lam / verts[:, 2][faces.index_select(0, face_idx)]
    return persp / persp.sum(1, keepdim=True)


def vertex_normals(
    vertices: np.ndarray, faces: np.ndarray, *, untouched: Optional[Sequence[float]] = None
) -> np.ndarray:
    """Area-weighted vertex normals (V, 3) (the mesh's own winding decides their side). A vertex no face touches
    gets (0, 0, 0), or `untouched` when given (a file format that wants unit normals: the glTF export)."""
    cpu = torch.device("cpu")
    return _vertex_normals_t(
        _tensor(vertices, cpu), _tensor(faces, cpu, torch.int64), untouched=untouched
    ).numpy()


def _vertex_normals_t(
    v: torch.Tensor,
    f: torch.Tensor,
    normals: Optional[torch.Tensor] = None,
    untouched: Optional[Sequence[float]] = None,
) -> torch.Tensor:
    """(V, 3) unit vertex normals: the sum of the adjacent faces' area-weighted normals (`normals`: the faces'
    (3, F) `face_normals`, when already computed)."""
    fn = (face_normals(v, f) if normals is None else normals).t().contiguous()
    vn = torch.zeros_like(v)
    for k in range(3):
        vn.index_add_(0, f[:, k], fn)
    length = torch.linalg.norm(vn, dim=1, keepdim=True)
    unit = vn / torch.clamp(length, min=1e-12)
    if untouched is None:
        return unit
    return torch.where(length > 1e-12, unit, torch.as_tensor(untouched, dtype=v.dtype, device=v.device))


def _merge_meshes(
    vertices: MeshInput, faces, closed: Optional[bool] = None
) -> Tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """One mesh or a list of meshes (sharing `faces`, or one faces array each) -> merged vertices, faces, mesh id
    per face, and whether every mesh is a closed, consistently wound surface (back faces can be skipped).
    `closed`: that answer when the caller already knows it (the demo draws the same SMPL faces every frame)."""
    if (
        isinstance(vertices, np.ndarray)
        and vertices.ndim == 2
        or hasattr(vertices, "detach")
        and vertices.dim() == 2
    ):
        v = _as_numpy(vertices)
        f = _as_numpy(faces).astype(np.int64)
        if closed is None:
            closed = _closed(f, len(v))
        return v, f, np.zeros(len(f), dtype=np.int64), closed
    meshes = [_as_numpy(m) for m in vertices]
    shared = not isinstance(faces, (list, tuple))
    face_list = [faces] * len(meshes) if shared else faces
    vs, fs, ids, offset, checked = [], [], [], 0, {}
    all_closed = True
    for i, (m, f) in enumerate(zip(meshes, face_list)):
        f = _as_numpy(f).astype(np.int64)
        if closed is None and all_closed:
            # shared faces: one check per vertex count, not one per person
            key = len(m) if shared else i
            if key not in checked:
                checked[key] = _closed(f, len(m))
            all_closed = checked[key]
        vs.append(m)
        fs.append(f + offset)
        ids.append(np.full(len(f), i, dtype=np.int64))
        offset += len(m)
    if not vs:
        return np.zeros((0, 3)), np.zeros((0, 3), np.int64), np.zeros(0, np.int64), False
    return (
        np.concatenate(vs),
        np.concatenate(fs),
        np.concatenate(ids),
        all_closed if closed is None else closed,
    )


def closed_surface(faces: np.ndarray, num_verts: int) -> bool:
    """Whether a mesh's faces (F, 3) form a closed, consistently wound surface over `num_verts` vertices: what
    `draw_overlay(..., closed=)` wants to know (its back faces can be skipped)."""
    return _closed(np.asarray(faces, dtype=np.int64), int(num_verts))


def _closed(faces: np.ndarray, num_verts: int) -> bool:
    """Whether one mesh's faces are closed and consistently wound (meshes merged side by side share no vertex, so
    the merged mesh is closed exactly when each is). Cached by content: a demo draws the same SMPL faces in every
    frame, and the check costs more than a hash of them."""
    if faces.size == 0 or faces.min() < 0 or faces.max() >= num_verts:
        return False
    digest = hashlib.blake2b(np.ascontiguousarray(faces).tobytes(), digest_size=16).digest()
    return _closed_by_digest(digest, faces.shape, num_verts, faces)


_CLOSED: dict = {}  # (faces digest, shape, vertex count) -> closed; a few entries at most


def _closed_by_digest(digest: bytes, shape, num_verts: int, faces: np.ndarray) -> bool:
    key = (digest, tuple(shape), num_verts)
    if key not in _CLOSED:
        if len(_CLOSED) >= 32:
            _CLOSED.clear()
        _CLOSED[key] = is_closed(torch.as_tensor(faces), num_verts)
    return _CLOSED[key]


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
    v, f, mesh_id, closed = _merge_meshes(vertices, faces)
    H, W = int(size[0]), int(size[1])
    depth = np.full((H, W), np.inf)
    v_t, f_t, m_t = _tensor(v, dev), _tensor(f, dev, torch.int64), _tensor(mesh_id, dev, torch.int64)
    with _device_threads(dev):
        region = rasterize_region(v_t, f_t, _tensor(K, dev), (H, W), m_t, closed)
    if region is not None:
        h, w = region.tri.shape
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
    image (`draw_overlay` draws into the given one).
    """
    out = _check_image(image_bgr).copy()
    draw_overlay(out, vertices, faces, K, color=color, alpha=alpha, light_dir=light_dir, device=device)
    return out


def draw_overlay(
    image_bgr: np.ndarray,
    vertices: MeshInput,
    faces,
    K: np.ndarray,
    color: Union[Sequence[float], Sequence[Sequence[float]]] = DEFAULT_COLOR_BGR,
    alpha: float = DEFAULT_ALPHA,
    light_dir: Sequence[float] = LIGHT_DIR,
    device: DeviceArg = None,
    closed: Optional[bool] = None,
) -> None:
    """`render_overlay` drawing into `image_bgr` itself (a writable, C-contiguous uint8 (H, W, 3) array): the
    demo draws on a frame it no longer needs, which saves copying 6 MB per 1080p frame. `closed`: whether every
    mesh is closed and consistently wound, when the caller knows (None: found out from `faces`)."""
    image = _check_image(image_bgr)
    if not (image.flags.writeable and image.flags.c_contiguous):
        raise ValueError("draw_overlay draws in place: it needs a writable, C-contiguous image")
    dev = torch.device(device or "cpu")
    v, f, mesh_id, is_closed_ = _merge_meshes(vertices, faces, closed)
    v, f, K_t = _tensor(v, dev), _tensor(f, dev, torch.int64), _tensor(K, dev)
    with _device_threads(dev):
        _draw(image, v, f, K_t, _tensor(mesh_id, dev, torch.int64), is_closed_, color, alpha, light_dir)


def _check_image(image_bgr: np.ndarray) -> np.ndarray:
    image = np.asarray(image_bgr)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"render_overlay expects a uint8 (H, W, 3) image, got {image.dtype} {image.shape}")
    return image


def _draw(out, v, f, K_t, mesh_id_t, closed, color, alpha, light_dir) -> None:
    """Rasterise, shade and blend into `out` (in place); only the covered pixels cross between devices."""
    dev = v.device
    H, W = out.shape[:2]
    region = rasterize_region(v, f, K_t, (H, W), mesh_id_t, closed)
    if region is None:
        return
    pixel, tri, intensity = _shade_region(region, v, f, K_t, light_dir, W)
    # (3 channels, meshes), alpha applied; float32 like the intensities
    colors = _tensor(alpha * np.asarray(color, dtype=np.float64).reshape(-1, 3), dev, torch.float32).t()
    if colors.shape[1] == 1:
        rgb = colors * intensity  # (3, N): channels as rows, see gtacli.render.raster
    else:
        mesh = mesh_id_t.index_select(0, region.faces.index_select(0, tri))
        rgb = colors.index_select(1, torch.clamp(mesh, max=colors.shape[1] - 1)) * intensity
    # the covered bytes of the image as one flat (3, N) index (channel rows, like `rgb`): one 1-D gather and one
    # 1-D scatter, no transposed copies and no numpy fancy assignment from a strided array
    channel = torch.arange(3, dtype=torch.int64).reshape(3, 1)
    index = pixel.cpu().reshape(1, -1).mul(3).add(channel).reshape(-1)
    flat = torch.from_numpy(out.reshape(-1))
    under = flat.index_select(0, index).to(device=dev, dtype=torch.float32).reshape(3, -1)
    blended = rgb.add_(under.mul_(1.0 - alpha))
    flat.index_copy_(0, index, blended.round_().clamp_(0, 255).to(torch.uint8).reshape(-1).cpu())


def _shade_region(
    region: Region, v: torch.Tensor, f: torch.Tensor, K: torch.Tensor, light_dir, image_w: int
) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(flat index into the (H * W) image, region triangle, Lambert intensity) of every covered pixel.

    The same shading as `shade` (two-sided Lambert of the perspective-correct interpolated vertex normal) without
    per-pixel barycentric weights: the interpolated normal is (sum_i w_i n_i / z_i) / (1/z) with screen-space
    weights w_i, and since only its direction matters, the numerator -- affine in the pixel coordinates, one plane
    per component and triangle -- is enough (nine coefficients gathered per pixel). The point seen
    lies on the pixel's ray K^-1 (u, v, 1), which decides which side of the surface faces the camera."""
    corner = f.index_select(0, region.faces).t().reshape(-1)  # (3 n,) corner 0 of every triangle, then 1, 2
    over_z = (
        _vertex_normals_t(v, f, region.face_normal).index_select(0, corner)
        / v[:, 2].index_select(0, corner)[:, None]
    ).reshape(3, -1, 3)  # (corner, n, xyz)
    coef = region.coef  # (9, n): row 3 i + k = coefficient k (A, B, C) of weight i
    light = _tensor(light_dir, v.device)
    light = light / torch.linalg.norm(light)
    # row 3 k + axis: coefficient k of the normal's component `axis`, = sum over corners i of
    # coef[3 i + k] * over_z[i, :, axis], added in corner order; all 27 products in one broadcast
    products = coef.reshape(3, 3, 1, -1) * over_z.permute(0, 2, 1).reshape(3, 1, 3, -1)  # (i, k, axis, n)
    table = (products[0] + products[1]).add_(products[2]).reshape(9, -1)

    ys, xs, tri = region.covered()
    # per-pixel work in float32: intensities differ from float64 by ~1e-5 at most (well under a grey level)
    x, y = xs.float(), ys.float()
    g = take_columns(table.float(), tri)  # a fresh (9, N) buffer: its rows are reused in place below
    normal = [g[axis].mul_(x).add_(g[3 + axis].mul_(y)).add_(g[6 + axis]) for axis in range(3)]
    lx, ly, lz = light.tolist()
    cos = torch.mul(normal[0], lx).add_(normal[1], alpha=ly).add_(normal[2], alpha=lz)  # normal . light
    # (normal . ray) with ray = K^-1 (u, v, 1): > 0 when the normal points away from the camera (flip it)
    k_inv = torch.linalg.inv(K).tolist()
    u, v_ = x + region.x0, y + region.y0
    facing = normal[0] * _affine(k_inv[0], u, v_)
    for r in (1, 2):
        facing.add_(normal[r] * _affine(k_inv[r], u, v_))
    length = torch.mul(normal[0], normal[0]).addcmul_(normal[1], normal[1]).addcmul_(normal[2], normal[2])
    cos.div_(length.sqrt_().clamp_(min=1e-30))
    cos.mul_(facing.gt_(0).mul_(-2.0).add_(1.0))  # x -1 where facing > 0 (torch.where is slower on the CPU)
    intensity = cos.clamp_(0.0, 1.0).mul_(DIFFUSE).add_(AMBIENT)
    return ys.add_(region.y0).mul_(image_w).add_(xs).add_(region.x0), tri, intensity


def _affine(coef, u: torch.Tensor, v: torch.Tensor):
    """coef[0] u + coef[1] v + coef[2], skipping zero terms (a pinhole K^-1 has zeros in most places)."""
    out = coef[2]
    for c, t in ((coef[0], u), (coef[1], v)):
        if c != 0.0:
            out = out + c * t
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
