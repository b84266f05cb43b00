"""The synthetic SMPL-format mannequin and its regressors: SMPL's format, a sane body, loadable by smplx."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.body.conventions import EXTRA_JOINTS, H36M_17, SMPL_VERTEX_JOINT_IDS, SMPL_VERTEX_JOINTS
from gtacli.body.smpl import load_smpl_arrays
from gtacli.sample.synthetic_smpl import make_synthetic_regressors, make_synthetic_smpl, write_synthetic_smpl

SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]


@pytest.fixture(scope="module")
def model():
    return make_synthetic_smpl("neutral", 0)


@pytest.fixture(scope="module")
def regressors(model):
    return make_synthetic_regressors(model)


def vid(name: str) -> int:
    return SMPL_VERTEX_JOINT_IDS[SMPL_VERTEX_JOINTS.index(name)]


def test_format_matches_a_real_smpl_pickle(model):
    shapes = {
        "v_template": (6890, 3), "f": (13776, 3), "shapedirs": (6890, 3, 10), "posedirs": (6890, 3, 207),
        "J_regressor": (24, 6890), "weights": (6890, 24), "kintree_table": (2, 24), "J": (24, 3),
    }  # fmt: skip
    for key, shape in shapes.items():
        assert model[key].shape == shape, key
    assert model["v_template"].dtype == np.float64
    assert model["f"].dtype in (np.uint32, np.int64)
    assert list(model["kintree_table"][0, 1:]) == SMPL_PARENTS[1:]
    assert list(model["kintree_table"][1]) == list(range(24))
    assert model["gtacli_synthetic"] is True


def test_mesh_is_a_closed_oriented_genus0_surface(model):
    v, f = model["v_template"], model["f"].astype(np.int64)
    directed = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    assert len(np.unique(directed, axis=0)) == len(
        directed
    )  # every directed edge once: consistent orientation
    undirected, counts = np.unique(np.sort(directed, axis=1), axis=0, return_counts=True)
    assert (counts == 2).all()  # closed 2-manifold
    assert len(v) - len(undirected) + len(f) == 2  # Euler characteristic of a sphere
    assert len(np.unique(f)) == 6890  # no unused vertex
    # outward normals: positive enclosed volume (divergence theorem)
    volume = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    assert 0.03 < volume < 0.12  # m^3: a person is about 0.06-0.08


def test_body_proportions_and_orientation(model):
    v, J = model["v_template"], model["J"]
    height = v[:, 1].max() - v[:, 1].min()
    assert 1.6 < height < 1.8
    assert np.linalg.norm(J[0]) < 0.3  # pelvis near the origin, like SMPL
    assert J[15, 1] > J[12, 1] > J[9, 1] > J[0, 1] > J[4, 1] > J[7, 1]  # y up along the spine and legs
    assert J[16, 0] > 0.1 and J[17, 0] < -0.1  # left side at +x
    assert J[20, 0] > 0.5 and abs(J[20, 1] - J[16, 1]) < 0.05  # T-pose arms
    np.testing.assert_allclose(J, model["J_regressor"] @ v, atol=1e-12)


@pytest.mark.parametrize("gender", ["neutral", "male", "female"])
def test_vertex_joints_sit_on_their_body_parts(gender):
    model = make_synthetic_smpl(gender, 0)
    v, J = model["v_template"], model["J"]
    head = v[(v[:, 1] > J[15, 1]) & (np.abs(v[:, 0]) < 0.15)]
    nose = v[vid("nose")]
    assert abs(nose[0]) < 1e-9 and nose[2] >= head[:, 2].max() - 0.01  # the front-most point of the face
    for side, sign in (("left", 1), ("right", -1)):
        eye, ear = v[vid(f"{side}_eye")], v[vid(f"{side}_ear")]
        assert sign * eye[0] > 0.01 and eye[2] > 0.05 and eye[1] > nose[1]
        assert sign * ear[0] > 0.06 and abs(ear[1] - nose[1]) < 0.06
        ankle, wrist = J[7 if side == "left" else 8], J[20 if side == "left" else 21]
        toe, small, heel = v[vid(f"{side}_bigtoe")], v[vid(f"{side}_smalltoe")], v[vid(f"{side}_heel")]
        assert toe[1] < ankle[1] and heel[1] < ankle[1]
        assert toe[2] > ankle[2] + 0.08 and small[2] > ankle[2] + 0.05 and heel[2] < ankle[2]
        assert sign * (small[0] - toe[0]) > 0  # the small toe is on the outside
        for finger in ("thumb", "index", "middle", "ring", "pinky"):
            tip = v[vid(f"{side}_{finger}")]
            assert sign * (tip[0] - wrist[0]) > 0.05, finger
        assert v[vid(f"{side}_thumb")][2] > v[vid(f"{side}_pinky")][2]  # palms down: thumb to the front
        assert v[vid(f"{side}_index")][2] > v[vid(f"{side}_pinky")][2]


def test_left_right_symmetry(model):
    v, sym = model["v_template"], model["vert_sym_idxs"]
    assert np.array_equal(sym[sym], np.arange(6890))
    np.testing.assert_allclose(v[sym], v * [-1.0, 1.0, 1.0], atol=1e-12)
    for left, right in zip(SMPL_VERTEX_JOINT_IDS[11:16], SMPL_VERTEX_JOINT_IDS[16:21]):
        assert sym[left] == right


def test_weights_and_directions(model):
    w, v = model["weights"], model["v_template"]
    assert (w >= 0).all()
    np.testing.assert_allclose(w.sum(1), 1.0, atol=1e-9)
    assert w[vid("left_middle")][[20, 22]].sum() > 0.9  # finger tip moves with the left wrist / hand
    assert w[vid("left_heel")][[7, 10]].sum() > 0.9
    assert w[vid("nose")][[12, 15]].sum() > 0.9
    # shape direction 0 scales the body: taller with beta0 > 0
    grown = v + 2.0 * model["shapedirs"][:, :, 0]
    assert np.ptp(grown[:, 1]) > np.ptp(v[:, 1]) + 0.05
    assert 0 < np.abs(model["posedirs"]).max() < 0.2  # small pose correctives


def test_regressors_are_sparse_convex_rows_at_their_body_parts(model, regressors):
    extra, h36m = regressors
    assert extra.shape == (9, 6890) and h36m.shape == (17, 6890)
    v, J = model["v_template"], model["J"]
    for reg in (extra, h36m):
        assert (reg >= 0).all()
        np.testing.assert_allclose(reg.sum(1), 1.0, atol=1e-9)
        assert ((reg > 0).sum(1) <= 200).all()
    pts = dict(zip(EXTRA_JOINTS, extra @ v)) | {f"h36m:{n}": p for n, p in zip(H36M_17, h36m @ v)}
    assert pts["headtop"][1] > v[:, 1].max() - 0.03
    assert np.linalg.norm(pts["left_hip_extra"] - J[1]) < 0.06 and pts["left_hip_extra"][0] > 0
    assert np.linalg.norm(pts["right_hip_extra"] - J[2]) < 0.06 and pts["right_hip_extra"][0] < 0
    assert J[1, 1] - 0.05 < pts["pelvis_extra"][1] < J[3, 1] and abs(pts["pelvis_extra"][0]) < 1e-9
    assert J[9, 1] < pts["neck_extra"][1] < J[15, 1]
    assert J[15, 1] < pts["head_extra"][1] < pts["headtop"][1]
    for name, joint in (("left_knee", 4), ("right_ankle", 8), ("left_wrist", 20), ("right_elbow", 19)):
        assert np.linalg.norm(pts[f"h36m:{name}"] - J[joint]) < 0.03, name
    np.testing.assert_allclose(pts["h36m:pelvis_extra"], pts["pelvis_extra"], atol=1e-9)
    # the shared regressors land on the same body parts of the other genders' meshes
    for gender in ("male", "female"):
        other = make_synthetic_smpl(gender, 0)
        joints = h36m @ other["v_template"]
        for name, joint in (("left_knee", 4), ("right_wrist", 21)):
            assert np.linalg.norm(joints[H36M_17.index(name)] - other["J"][joint]) < 0.03, (gender, name)


def test_genders_differ_and_seeds_are_deterministic(model):
    male, female = make_synthetic_smpl("male", 0), make_synthetic_smpl("f", 0)
    assert np.ptp(male["v_template"][:, 1]) > np.ptp(female["v_template"][:, 1]) + 0.05
    # one topology and vertex order for all genders (like SMPL): faces equal, symmetric vertices equal
    assert np.array_equal(male["f"], model["f"]) and np.array_equal(female["f"], model["f"])
    assert np.array_equal(male["vert_sym_idxs"], model["vert_sym_idxs"])
    again = make_synthetic_smpl("neutral", 0)
    assert np.array_equal(again["v_template"], model["v_template"])
    again["v_template"][0] = 99.0  # callers get copies
    assert make_synthetic_smpl("neutral", 0)["v_template"][0, 0] != 99.0


def test_written_file_loads_restricted_and_in_smplx_unchanged(tmp_path, model):
    import smplx

    path = write_synthetic_smpl(tmp_path / "SMPL_NEUTRAL.pkl", "neutral", 0)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["SMPL_NEUTRAL.pkl"]  # no temp file left
    arrays = load_smpl_arrays(path)
    assert np.array_equal(arrays["v_template"], model["v_template"])
    body = smplx.SMPL(
        model_path=str(tmp_path), gender="neutral"
    )  # smplx unpickles it itself, extra keys ignored
    out = body(betas=torch.zeros(1, 10), body_pose=torch.zeros(1, 69), global_orient=torch.zeros(1, 3))
    np.testing.assert_allclose(out.vertices[0].detach().numpy(), model["v_template"], atol=1e-5)
    np.testing.assert_allclose(out.joints[0, :24].detach().numpy(), model["J"], atol=1e-5)
