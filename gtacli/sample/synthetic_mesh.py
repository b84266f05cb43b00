"""The synthetic mannequin's mesh in SMPL's format: 6890 vertices, 13776 triangles, left/right symmetric.

The real SMPL files cannot be shipped; `synthetic_smpl` turns this mesh into a full SMPL-format model
(skinning weights, regressors, blend shapes). How the mesh is built (deterministic for a gender and seed):

1. The body is a smooth union of tapered capsules and ellipsoids (torso, head, nose, ears, limbs, mitten hands,
   feet) around a skeleton in SMPL's rest pose: T-pose, y up, facing +z, left side at +x, pelvis near the
   origin, about 1.7 m tall. Its signed distance is sampled on a grid that is symmetric about x = 0.
2. Marching tetrahedra extract the surface. Each cube is cut into 6 tetrahedra along a diagonal; cubes at
   negative x use the mirror image of that cut, so the triangulation itself is left/right symmetric. An iso
   surface of a conforming tetrahedralisation is a closed 2-manifold; with limbs apart it is one genus-0
   component, so F = 2V - 4.
3. The mesh is relaxed (tangential smoothing, projection back onto the surface, symmetrised after each step).
4. The longest edges are split (in mirror pairs) until V = 6890 exactly; every split adds one vertex and two
   triangles, so F = 2 * 6890 - 4 = 13776 follows from the Euler characteristic.
5. Vertices are reordered so that the ids smplx reads its 21 vertex joints from (nose v332, eyes, ears, toes,
   heels, finger tips; `conventions.SMPL_VERTEX_JOINT_IDS`) sit on those body parts, with left/right ids
   on mirror-image vertices. `vert_sym_idxs` (a key the real SMPL file also has) gives each vertex's mirror.

Male and female models are the neutral mesh carried to their own skeleton (by its skinning weights) and settled
on their own surface, so all genders share one topology and vertex order, as SMPL's do: vertex ids, the extra and
H36M regressors and vertex-wise errors mean the same body point for every gender.
"""

from __future__ import annotations

import functools
from itertools import permutations
from typing import Dict, List, Sequence, Tuple

import numpy as np

from gtacli.body.conventions import SMPL_POSE_FLIP_JOINT_PERM, SMPL_VERTEX_JOINT_IDS, SMPL_VERTEX_JOINTS
from gtacli.body.smpl import NUM_VERTICES
from gtacli.errors import UsageError
from gtacli.render.overlay import vertex_normals

GRID_STEP_M = (
    0.034  # marching-tetrahedra grid step (x height); the raw surface then has ~6300 (< 6890) vertices
)
SMOOTH_UNION_M = 0.012  # blend radius of the smooth union between body parts
RELAX_ITERATIONS = 6

# Gender proportions: (height scale, shoulder half-width, hip half-length, chest radius, hip radius).
GENDER_PROPORTIONS = {
    "neutral": (1.00, 0.170, 0.070, 0.120, 0.115),
    "male": (1.03, 0.182, 0.062, 0.126, 0.110),
    "female": (0.97, 0.155, 0.080, 0.113, 0.122),
}
GENDER_ALIASES = {"n": "neutral", "m": "male", "f": "female"}


# ----------------------------------------------------------------------------------------------- skeleton


def skeleton(gender: str, seed: int) -> Tuple[np.ndarray, Dict[str, float]]:
    """Rest-pose joints (24, 3) of the mannequin (left side at +x) and its proportions."""
    height, shoulder, hip_half, chest_r, hip_r = GENDER_PROPORTIONS[gender]
    rng = np.random.default_rng(seed)
    jitter = 1.0 + 0.02 * (rng.random(4) - 0.5)  # small per-seed variation, still symmetric
    height *= jitter[0]
    shoulder *= jitter[1]
    left = {  # joint -> (x, y, z) for the left side and the midline
        0: (0.0, -0.22, 0.0),
        1: (0.075, -0.30, 0.0),
        3: (0.0, -0.10, -0.01),
        4: (0.095, -0.70, 0.01),
        6: (0.0, 0.03, -0.01),
        7: (0.105, -1.09, -0.02),
        9: (0.0, 0.09, 0.0),
        10: (0.115, -1.155, 0.09),
        12: (0.0, 0.30, -0.02),
        13: (0.075, 0.21, -0.01),
        15: (0.0, 0.38, 0.02),
        16: (shoulder + 0.005, 0.24, -0.02),
        18: (0.43, 0.23, -0.03),
        20: (0.68, 0.23, -0.03),
        22: (0.765, 0.225, -0.03),
    }
    joints = np.zeros((24, 3))
    for j, pos in left.items():
        joints[j] = pos
        mirror = SMPL_POSE_FLIP_JOINT_PERM[j]
        joints[mirror] = (-pos[0], pos[1], pos[2])
    # Arms hang from the shoulders: shift elbows/wrists/hands with the shoulder width.
    for j in (18, 20, 22):
        joints[j, 0] += shoulder - 0.170
        joints[SMPL_POSE_FLIP_JOINT_PERM[j], 0] -= shoulder - 0.170
    joints *= height
    props = dict(
        height=height, shoulder=shoulder * height, hip_half=hip_half * height * jitter[2],
        chest_r=chest_r * height, hip_r=hip_r * height * jitter[3],
    )  # fmt: skip
    return joints, props


def primitives(
    joints: np.ndarray, props: Dict[str, float]
) -> List[Tuple[np.ndarray, np.ndarray, float, float, np.ndarray]]:
    """Body parts as tapered capsules (a, b, radius at a, radius at b, axis scale), left and right both listed."""
    s = props["height"]
    J = joints
    P: List[Tuple[np.ndarray, np.ndarray, float, float, np.ndarray]] = []

    def add(a, b, ra, rb, scale=(1.0, 1.0, 1.0), mirror=True):
        a, b, scale = np.asarray(a, float), np.asarray(b, float), np.asarray(scale, float)
        P.append((a, b, ra, rb, scale))
        if mirror and (abs(a[0]) > 1e-12 or abs(b[0]) > 1e-12):
            m = np.array([-1.0, 1.0, 1.0])
            P.append((a * m, b * m, ra, rb, scale))

    hh, sh = props["hip_half"], props["shoulder"]
    add(
        (-hh, -0.27 * s, 0.0), (hh, -0.27 * s, 0.0), props["hip_r"], props["hip_r"], (1, 1, 0.8), mirror=False
    )
    add((0, -0.24 * s, 0.0), (0, 0.05 * s, 0.0), 0.128 * s, 0.135 * s, (1, 1, 0.72), mirror=False)
    add(
        (-0.06 * s, 0.12 * s, 0.0),
        (0.06 * s, 0.12 * s, 0.0),
        props["chest_r"],
        props["chest_r"],
        (1, 1, 0.8),
        mirror=False,
    )
    add((-sh, 0.235 * s, -0.02 * s), (sh, 0.235 * s, -0.02 * s), 0.055 * s, 0.055 * s, mirror=False)
    add((0, 0.22 * s, -0.02 * s), (0, 0.40 * s, 0.0), 0.052 * s, 0.052 * s, mirror=False)
    add((0, 0.415 * s, 0.02 * s), (0, 0.455 * s, 0.02 * s), 0.09 * s, 0.09 * s, (0.88, 1, 1.05), mirror=False)
    add((0, 0.432 * s, 0.098 * s), (0, 0.408 * s, 0.112 * s), 0.018 * s, 0.016 * s, mirror=False)  # nose
    add((0.078 * s, 0.435 * s, 0.0), (0.082 * s, 0.425 * s, 0.0), 0.024 * s, 0.024 * s, (0.7, 1, 1))  # ears
    add(J[16], J[18], 0.050 * s, 0.039 * s)  # upper arm
    add(J[18], J[20], 0.039 * s, 0.029 * s)  # forearm
    add(
        J[20] + (0.01 * s, -0.005 * s, 0.005 * s),
        J[22] + (0.065 * s, -0.005 * s, 0.005 * s),
        0.046 * s,
        0.046 * s,
        (1, 0.5, 1),
    )
    add(J[1] + (0.01 * s, 0.02 * s, 0.0), J[4], 0.085 * s, 0.056 * s)  # thigh
    add(J[4], J[7], 0.056 * s, 0.039 * s)  # shin
    add(
        J[7] + (0.0, -0.05 * s, -0.025 * s),
        J[10] + (0.005 * s, 0.005 * s, 0.03 * s),
        0.046 * s,
        0.042 * s,
        (1, 0.8, 1),
    )
    return P


def _capsule_distances(points: np.ndarray, prims, gradients: bool = False):
    """Approximate signed distance of `points` (N, 3) to each primitive -> (N, P), and optionally the
    gradients (N, P, 3) (the taper's small contribution is ignored: projection only needs a good direction)."""
    a = np.stack([p[0] for p in prims])  # (P, 3)
    b = np.stack([p[1] for p in prims])
    ra = np.array([p[2] for p in prims])
    rb = np.array([p[3] for p in prims])
    scale = np.stack([p[4] for p in prims])
    a2, ab = a / scale, (b - a) / scale
    q = points[:, None, :] / scale[None] - a2[None]  # (N, P, 3)
    t = np.clip((q * ab).sum(-1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0, 1.0)
    diff = q - t[..., None] * ab[None]
    norm = np.sqrt((diff * diff).sum(-1))
    d = (norm - (ra + (rb - ra) * t)) * scale.min(1)
    if not gradients:
        return d
    grad = diff / np.maximum(norm, 1e-12)[..., None] / scale[None] * scale.min(1)[None, :, None]
    return d, grad


def _sdf(points: np.ndarray, prims) -> np.ndarray:
    """Smooth union (soft minimum) of the primitives' distances; negative inside."""
    return _sdf_and_gradient(points, prims, gradients=False)[0]


def _sdf_and_gradient(points: np.ndarray, prims, gradients: bool = True):
    """SDF values (N,) and (if asked) their gradients (N, 3): the soft minimum's weights blend the parts'."""
    if gradients:
        d, g = _capsule_distances(points, prims, gradients=True)
    else:
        d, g = _capsule_distances(points, prims), None
    k = SMOOTH_UNION_M
    m = d.min(axis=1, keepdims=True)
    e = np.exp(-(d - m) / k)
    total = e.sum(axis=1, keepdims=True)
    value = (m - k * np.log(total))[:, 0]
    if g is None:
        return value, None
    return value, ((e / total)[..., None] * g).sum(1)


# ------------------------------------------------------------------------------------ marching tetrahedra


def _tet_case_table() -> List[List[Tuple[int, int, int]]]:
    """For each of the 16 inside/outside patterns of a tetrahedron: triangles as triples of tet-edge ids."""
    edges = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    edge_id = {e: i for i, e in enumerate(edges)}

    def eid(a, b):
        return edge_id[(min(a, b), max(a, b))]

    table: List[List[Tuple[int, int, int]]] = []
    for code in range(16):
        inside = [c for c in range(4) if code >> c & 1]
        outside = [c for c in range(4) if not code >> c & 1]
        if len(inside) in (0, 4):
            table.append([])
        elif len(inside) in (1, 3):
            lone, others = (inside[0], outside) if len(inside) == 1 else (outside[0], inside)
            table.append([(eid(lone, others[0]), eid(lone, others[1]), eid(lone, others[2]))])
        else:
            (p, q), (r, s) = inside, outside
            quad = (eid(p, r), eid(p, s), eid(q, s), eid(q, r))
            table.append([(quad[0], quad[1], quad[2]), (quad[0], quad[2], quad[3])])
    return table


_TET_EDGES = np.array([(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)])


def _marching_tetrahedra(prims, step: float) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Iso-surface of the body SDF. Returns vertices (V, 3), faces (F, 3) oriented outwards, and for each vertex
    its grid edge as (a, b) grid-point index pairs (to find mirror vertices)."""
    pts_all = np.concatenate([np.concatenate([p[0][None], p[1][None]]) for p in prims])
    rmax = max(max(p[2], p[3]) for p in prims) + 3 * step
    lo, hi = pts_all.min(0) - rmax, pts_all.max(0) + rmax
    half_x = np.ceil(max(abs(lo[0]), abs(hi[0])) / step)
    xs = np.arange(-half_x, half_x + 1) * step  # symmetric, with a plane at x = 0
    ys = np.arange(lo[1], hi[1] + step, step)
    zs = np.arange(lo[2], hi[2] + step, step)
    nx, ny, nz = len(xs), len(ys), len(zs)
    grid = np.stack(np.meshgrid(xs, ys, zs, indexing="ij"), -1).reshape(-1, 3)
    phi = _sdf(grid, prims)
    phi = np.where(np.abs(phi) < 1e-9, 1e-9, phi)  # no grid point exactly on the surface
    phi3 = phi.reshape(nx, ny, nz)

    # cubes that straddle the surface
    inside = phi3 < 0
    corner_any = np.zeros((nx - 1, ny - 1, nz - 1), bool)
    corner_all = np.ones((nx - 1, ny - 1, nz - 1), bool)
    for dx in (0, 1):
        for dy in (0, 1):
            for dz in (0, 1):
                sub = inside[dx : nx - 1 + dx, dy : ny - 1 + dy, dz : nz - 1 + dz]
                corner_any |= sub
                corner_all &= sub
    ci, cj, ck = np.nonzero(corner_any & ~corner_all)
    mirrored = xs[ci] + step / 2 < 0

    # 6 tetrahedra per cube: paths 000 -> e_a -> e_a + e_b -> 111 over the axis permutations
    tets = []
    for perm in permutations(range(3)):
        corners = [np.zeros(3, int)]
        for axis in perm:
            nxt = corners[-1].copy()
            nxt[axis] = 1
            corners.append(nxt)
        tets.append(np.array(corners))
    tets = np.array(tets)  # (6, 4, 3) corner offsets
    offs = np.broadcast_to(tets, (len(ci), 6, 4, 3)).copy()
    offs[mirrored, :, :, 0] = 1 - offs[mirrored, :, :, 0]  # mirror image of the cut for x < 0 cubes
    gi = ci[:, None, None] + offs[..., 0]
    gj = cj[:, None, None] + offs[..., 1]
    gk = ck[:, None, None] + offs[..., 2]
    gidx = ((gi * ny + gj) * nz + gk).reshape(-1, 4)  # (T, 4) grid point ids
    vals = phi[gidx]
    code = ((vals < 0) * (1 << np.arange(4))).sum(1)

    table = _tet_case_table()
    tri_tet, tri_edges = [], []
    for c in range(16):
        sel = np.nonzero(code == c)[0]
        for tri in table[c]:
            tri_tet.append(sel)
            tri_edges.append(np.broadcast_to(np.array(tri), (len(sel), 3)))
    tri_tet = np.concatenate(tri_tet)
    tri_edges = np.concatenate(tri_edges)  # (F, 3) tet-edge ids
    ea = gidx[tri_tet[:, None], _TET_EDGES[tri_edges][..., 0]]
    eb = gidx[tri_tet[:, None], _TET_EDGES[tri_edges][..., 1]]
    lo_e, hi_e = np.minimum(ea, eb), np.maximum(ea, eb)
    keys = lo_e.astype(np.int64) * grid.shape[0] + hi_e
    uniq, inverse = np.unique(keys.reshape(-1), return_inverse=True)
    faces = inverse.reshape(-1, 3)
    va, vb = uniq // grid.shape[0], uniq % grid.shape[0]
    t = phi[va] / (phi[va] - phi[vb])
    verts = grid[va] + t[:, None] * (grid[vb] - grid[va])

    # orient each triangle so its normal points from the tet's inside corners to its outside corners
    tv = vals[tri_tet]
    tp = grid[gidx[tri_tet]]  # (F, 4, 3)
    w_in = (tv < 0).astype(float)
    c_in = (tp * w_in[..., None]).sum(1) / w_in.sum(1, keepdims=True)
    c_out = (tp * (1 - w_in)[..., None]).sum(1) / (1 - w_in).sum(1, keepdims=True)
    normal = np.cross(verts[faces[:, 1]] - verts[faces[:, 0]], verts[faces[:, 2]] - verts[faces[:, 0]])
    flip = (normal * (c_out - c_in)).sum(1) < 0
    faces[flip] = faces[flip][:, ::-1]

    # mirror of each grid point: i -> nx - 1 - i
    def mirror_point(g):
        i, rest = g // (ny * nz), g % (ny * nz)
        return (nx - 1 - i) * ny * nz + rest

    ma, mb = mirror_point(va), mirror_point(vb)
    mkeys = np.minimum(ma, mb) * grid.shape[0] + np.maximum(ma, mb)
    pos = np.searchsorted(uniq, mkeys)
    if not np.array_equal(uniq[np.clip(pos, 0, len(uniq) - 1)], mkeys):
        raise AssertionError("marching tetrahedra surface is not mirror-symmetric")
    return verts, faces, pos


# --------------------------------------------------------------------------------------- mesh utilities


def _edges(faces: np.ndarray) -> np.ndarray:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    return np.unique(np.sort(e, axis=1), axis=0)


def _symmetrise(verts: np.ndarray, mirror: np.ndarray) -> np.ndarray:
    m = verts[mirror] * np.array([-1.0, 1.0, 1.0])
    out = 0.5 * (verts + m)
    out[mirror == np.arange(len(mirror)), 0] = 0.0
    return out


def _project(verts: np.ndarray, prims, iterations: int = 3) -> np.ndarray:
    for _ in range(iterations):
        d, g = _sdf_and_gradient(verts, prims)
        verts = verts - (d / np.maximum((g * g).sum(1), 1e-12))[:, None] * g
    return verts


def relax(verts: np.ndarray, faces: np.ndarray, mirror: np.ndarray, prims, iterations: int) -> np.ndarray:
    """Tangential Laplacian smoothing with re-projection onto the surface (evens out marching-tet slivers)."""
    e = _edges(faces)
    deg = np.bincount(e.ravel(), minlength=len(verts)).astype(float)
    for _ in range(iterations):
        acc = np.zeros_like(verts)
        np.add.at(acc, e[:, 0], verts[e[:, 1]])
        np.add.at(acc, e[:, 1], verts[e[:, 0]])
        delta = acc / deg[:, None] - verts
        n = vertex_normals(verts, faces)
        delta -= (delta * n).sum(1, keepdims=True) * n
        verts = _project(verts + 0.5 * delta, prims, iterations=1)
        verts = _symmetrise(verts, mirror)
    return _symmetrise(_project(verts, prims, iterations=2), mirror)


def _split_to_count(verts, faces, mirror, target: int):
    """Split the longest edges (mirror pairs together) until the mesh has exactly `target` vertices."""
    verts, faces, mirror = list(map(np.copy, (verts, faces, mirror)))
    while len(verts) < target:
        need = target - len(verts)
        e = _edges(faces)
        length = np.linalg.norm(verts[e[:, 0]] - verts[e[:, 1]], axis=1)
        order = np.argsort(-length, kind="stable")
        # faces around each edge (directed a->b appears in exactly one face)
        directed = {}
        for f_i, (a, b, c) in enumerate(faces):
            directed[(int(a), int(b))] = f_i
            directed[(int(b), int(c))] = f_i
            directed[(int(c), int(a))] = f_i
        used_faces: set = set()
        new_verts: List[np.ndarray] = []
        new_mirror: List[int] = []
        faces_list = faces.tolist()
        added = 0
        done_edges: set = set()
        for i in order:
            if added >= need:
                break
            a, b = int(e[i, 0]), int(e[i, 1])
            ma, mb = int(mirror[a]), int(mirror[b])
            twin = (min(ma, mb), max(ma, mb))
            group = [(a, b)] if twin == (a, b) else [(a, b), twin]
            if len(group) == 2 and added + 2 > need:
                continue  # only one vertex left to add: wait for a self-mirrored edge
            if any(g in done_edges for g in group):
                continue
            touched = [directed[(x, y)] for x, y in group] + [directed[(y, x)] for x, y in group]
            if any(f in used_faces for f in touched) or len(set(touched)) != len(touched):
                continue
            base = len(verts) + len(new_verts)
            ids = list(range(base, base + len(group)))
            for (x, y), m in zip(group, ids):
                new_verts.append(0.5 * (verts[x] + verts[y]))
                for f_i in (directed[(x, y)], directed[(y, x)]):
                    tri = faces_list[f_i]
                    k = tri.index(x) if (tri[tri.index(x) - 2] == y) else tri.index(y)
                    # rotate so the split edge is (tri[0] -> tri[1]); then replace by two triangles
                    tri = tri[k:] + tri[:k]
                    faces_list[f_i] = [tri[0], m, tri[2]]
                    faces_list.append([m, tri[1], tri[2]])
                used_faces.update(touched)
                done_edges.add((x, y))
            if len(group) == 1:
                new_mirror.append(ids[0])
            else:
                new_mirror.extend([ids[1], ids[0]])
            added += len(group)
        if added == 0:
            raise AssertionError("cannot split further to reach the vertex count")
        verts = np.concatenate([verts, np.array(new_verts)])
        faces = np.array(faces_list)
        mirror = np.concatenate([mirror, np.array(new_mirror)])
    return verts, faces, mirror


def check_closed_genus0(verts: np.ndarray, faces: np.ndarray) -> None:
    e = np.concatenate([faces[:, [0, 1]], faces[:, [1, 2]], faces[:, [2, 0]]])
    und, counts = np.unique(np.sort(e, axis=1), axis=0, return_counts=True)
    directed = np.unique(e, axis=0)
    if not (counts == 2).all() or len(directed) != len(e):
        raise AssertionError("synthetic mesh is not a consistently oriented closed 2-manifold")
    if len(verts) - len(und) + len(faces) != 2:
        raise AssertionError("synthetic mesh is not genus 0")


def unit(v: np.ndarray) -> np.ndarray:
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def name_mirror(names: Sequence[str]) -> List[int]:
    index = {n: i for i, n in enumerate(names)}
    out = []
    for i, n in enumerate(names):
        if "left" in n:
            out.append(index.get(n.replace("left", "right"), i))
        elif "right" in n:
            out.append(index.get(n.replace("right", "left"), i))
        else:
            out.append(i)
    return out


def _vertex_joint_targets(verts, joints, mirror, props) -> Dict[str, int]:
    """Pick the (pre-permutation) vertex for each smplx vertex joint of the left side and the midline: the
    extreme vertex of the right body part in the right direction (nose: front-most midline point of the face;
    toes: front of the sole; heel: back of the sole; finger tips: spread across the tip of the mitten hand)."""
    s = props["height"]
    on_mid = mirror == np.arange(len(verts))
    chosen: Dict[str, int] = {}

    def best(score, mask=None):
        score = np.where(mask, score, -np.inf) if mask is not None else score
        return int(np.argmax(score))

    head = joints[15]
    chosen["nose"] = best(verts[:, 2] - 4 * np.abs(verts[:, 1] - (head[1] + 0.03 * s)), on_mid)
    eye = np.array([0.032 * s, head[1] + 0.075 * s, 0.0])
    chosen["left_eye"] = best(
        -np.abs(verts[:, 0] - eye[0]) - np.abs(verts[:, 1] - eye[1]) + 0.5 * verts[:, 2], verts[:, 0] > 0.01
    )
    chosen["left_ear"] = best(
        verts[:, 0] - 3 * np.abs(verts[:, 1] - (head[1] + 0.05 * s)), np.abs(verts[:, 0]) < 0.15 * s
    )
    foot = (np.abs(verts[:, 0] - joints[10, 0]) < 0.06 * s) & (verts[:, 1] < joints[7, 1] - 0.02 * s)
    sole = verts[:, 1] < joints[10, 1]
    chosen["left_bigtoe"] = best(
        verts[:, 2] - 0.5 * np.abs(verts[:, 0] - (joints[10, 0] - 0.025 * s)), foot & sole
    )
    chosen["left_smalltoe"] = best(
        verts[:, 2] - 0.8 * np.abs(verts[:, 0] - (joints[10, 0] + 0.03 * s)),
        foot & sole & (verts[:, 0] > joints[10, 0] + 0.015 * s),  # the outer side of the foot
    )
    chosen["left_heel"] = best(-verts[:, 2] - np.abs(verts[:, 0] - joints[7, 0]), foot & sole)
    hand = (verts[:, 0] > joints[20, 0] + 0.02 * s) & (verts[:, 0] > 0)
    tip_x = verts[hand, 0].max()
    for name, z in (("index", 0.03), ("middle", 0.01), ("ring", -0.01), ("pinky", -0.03)):
        target_z = joints[22, 2] + 0.005 * s + z * s
        chosen[f"left_{name}"] = best(
            verts[:, 0] - 3 * np.abs(verts[:, 2] - target_z) - 2 * np.abs(verts[:, 1] - joints[22, 1]),
            hand & (verts[:, 0] > tip_x - 0.05 * s),
        )
    thumb_x = joints[22, 0] - 0.01 * s
    chosen["left_thumb"] = best(
        verts[:, 2] - 3 * np.abs(verts[:, 0] - thumb_x) - np.abs(verts[:, 1] - joints[22, 1]), hand
    )
    return chosen


def _order_vertices(num: int, placed: Dict[int, int]) -> np.ndarray:
    """new -> old vertex order with placed[new_id] = old_id and the rest in their old order."""
    order = np.full(num, -1)
    for new, old in placed.items():
        order[new] = old
    rest = np.setdiff1d(np.arange(num), np.array(list(placed.values())), assume_unique=False)
    order[order < 0] = rest
    return order


@functools.lru_cache(maxsize=2)
def neutral_mesh(seed: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The neutral mannequin's mesh: vertices (6890, 3), faces (13776, 3), mirror vertex of each vertex.

    Vertices are already ordered so that the smplx vertex-joint ids sit on their body parts."""
    joints, props = skeleton("neutral", seed)
    prims = primitives(joints, props)
    verts, faces, mirror = _marching_tetrahedra(prims, GRID_STEP_M * props["height"])
    if len(verts) > NUM_VERTICES:
        raise AssertionError(
            f"marching tetrahedra gave {len(verts)} vertices (> {NUM_VERTICES}); raise GRID_STEP_M"
        )
    verts = relax(verts, faces, mirror, prims, RELAX_ITERATIONS)
    verts, faces, mirror = _split_to_count(verts, faces, mirror, NUM_VERTICES)
    verts = relax(verts, faces, mirror, prims, RELAX_ITERATIONS)
    check_closed_genus0(verts, faces)

    # place the smplx vertex-joint ids
    picks = _vertex_joint_targets(verts, joints, mirror, props)
    placed: Dict[int, int] = {}
    for name, vid in zip(SMPL_VERTEX_JOINTS, SMPL_VERTEX_JOINT_IDS):
        if name.startswith("right_"):
            placed[vid] = int(mirror[picks[name.replace("right_", "left_")]])
        else:
            placed[vid] = picks[name]
    order = _order_vertices(len(verts), placed)
    inv = np.empty_like(order)
    inv[order] = np.arange(len(order))
    return verts[order], inv[faces], inv[mirror[order]]


def canonical_gender(gender: str) -> str:
    g = GENDER_ALIASES.get(str(gender).lower(), str(gender).lower())
    if g not in GENDER_PROPORTIONS:
        raise UsageError(f"unknown gender {gender!r}", fix="use neutral, male or female")
    return g


def mirror_by_position(v: np.ndarray) -> np.ndarray:
    m = v * np.array([-1.0, 1.0, 1.0])
    out = np.empty(len(v), dtype=np.int64)
    for start in range(0, len(v), 1024):
        d = ((m[start : start + 1024, None, :] - v[None]) ** 2).sum(-1)
        out[start : start + 1024] = d.argmin(1)
    return out
