"""BodyModel / GenderedBodyModel on the synthetic SMPL files, checked against smplx itself (docs/reproduction.md §3.1-3.4, §4.5)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from gtacli.body.conventions import SMPL_VERTEX_JOINT_IDS
from gtacli.body.rotations import axis_angle_to_matrix, flip_smpl_pose
from gtacli.body.smpl import BodyModel, GenderedBodyModel, load_smpl_arrays
from gtacli.errors import BadFileError, UnsafeFileError
from gtacli.io.safe import load_npy

# docs/reproduction.md §3.2 flat list, typed again here so the test does not read the table it checks.
REFERENCE_54_TO_49 = [
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
]  # fmt: skip


def _params(batch: int, dtype=torch.float32, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    betas = torch.randn(batch, 10, generator=g, dtype=torch.float64)
    pose = torch.randn(batch, 72, generator=g, dtype=torch.float64) * 0.3
    return betas.to(dtype), pose.to(dtype)


@pytest.fixture(scope="module")
def neutral(body_layout):
    return BodyModel.from_layout(body_layout, "neutral")


@pytest.fixture(scope="module")
def smplx_neutral(body_layout):
    import smplx

    # smplx reading the file itself (fine in a test: we wrote this file) is the independent reference
    return smplx.SMPL(model_path=str(body_layout.smpl_dir), gender="neutral", create_transl=False)


def test_outputs_match_smplx_and_the_documented_joint_sets(body_layout, neutral, smplx_neutral):
    betas, pose = _params(3)
    out = neutral(betas, pose[:, 3:], pose[:, :3])
    ref = smplx_neutral(betas=betas, body_pose=pose[:, 3:], global_orient=pose[:, :3])
    assert out.vertices.shape == (3, 6890, 3) and out.joints.shape == (3, 49, 3)
    assert out.joints_h36m.shape == (3, 17, 3) and out.joints54.shape == (3, 54, 3)
    torch.testing.assert_close(out.vertices, ref.vertices)
    torch.testing.assert_close(out.joints54[:, :24], ref.joints[:, :24])
    # smplx vertex joints are the posed vertices at the smplh ids of docs/reproduction.md §3.1
    torch.testing.assert_close(out.joints54[:, 24:45], out.vertices[:, list(SMPL_VERTEX_JOINT_IDS)])
    extra = torch.as_tensor(load_npy(body_layout.j_regressor_extra), dtype=torch.float32)
    h36m = torch.as_tensor(load_npy(body_layout.j_regressor_h36m), dtype=torch.float32)
    torch.testing.assert_close(out.joints54[:, 45:], torch.einsum("jv,bvc->bjc", extra, out.vertices))
    torch.testing.assert_close(out.joints_h36m, torch.einsum("jv,bvc->bjc", h36m, out.vertices))
    torch.testing.assert_close(out.joints, out.joints54[:, REFERENCE_54_TO_49])
    assert neutral.faces.shape == (13776, 3) and neutral.faces.dtype == np.int64


def test_rotation_matrix_input_equals_axis_angle_input(neutral):
    betas, pose = _params(2, seed=1)
    rot = axis_angle_to_matrix(pose.reshape(2, 24, 3))
    a = neutral(betas, pose[:, 3:], pose[:, :3])
    b = neutral(betas, rot[:, 1:], rot[:, :1])  # pose2rot detected from the shapes
    c = neutral(betas, pose[:, 3:].reshape(2, 23, 3), pose[:, :3].reshape(2, 1, 3), pose2rot=True)
    torch.testing.assert_close(a.vertices, b.vertices, atol=1e-5, rtol=0)
    torch.testing.assert_close(a.joints, c.joints)


def test_float64_batch_sizes_and_no_stdout(body_layout, capsys):
    model = BodyModel.from_layout(body_layout, "neutral", dtype=torch.float64)
    assert capsys.readouterr().out == ""  # smplx's warning must not reach stdout (--json)
    for batch in (0, 1):
        betas, pose = _params(batch, dtype=torch.float64)
        out = model(betas, pose[:, 3:], pose[:, :3])
        assert out.vertices.dtype == torch.float64
        assert out.vertices.shape == (batch, 6890, 3) and out.joints.shape == (batch, 49, 3)
    betas, pose = _params(2, dtype=torch.float64)
    out64 = model(betas, pose[:, 3:], pose[:, :3])
    import smplx

    ref64 = smplx.SMPL(model_path=str(body_layout.smpl_dir), gender="neutral", dtype=torch.float64)
    ref = ref64(
        betas=betas,
        body_pose=pose[:, 3:],
        global_orient=pose[:, :3],
        transl=torch.zeros(2, 3, dtype=torch.float64),
    )
    torch.testing.assert_close(out64.vertices, ref.vertices, atol=1e-12, rtol=0)
    torch.testing.assert_close(out64.joints54[:, :45], ref.joints, atol=1e-12, rtol=0)
    model32 = BodyModel.from_layout(body_layout, "neutral")
    out32 = model32(betas.float(), pose[:, 3:].float(), pose[:, :3].float())
    torch.testing.assert_close(out64.joints.float(), out32.joints, atol=1e-5, rtol=0)


def test_pose_flip_mirrors_the_mesh(neutral):
    # the synthetic mannequin is left/right symmetric, so flipping the pose (docs/reproduction.md §3.5) must mirror the mesh in x
    v = neutral.smpl.v_template.double().numpy()
    index = {tuple(np.round(p, 6)): i for i, p in enumerate(v)}
    # mirror vertex of each vertex, found geometrically (every mirrored vertex must be a vertex)
    partner = torch.as_tensor([index[tuple(np.round(p * (-1.0, 1.0, 1.0), 6) + 0.0)] for p in v])
    betas, pose = _params(2, seed=2)
    out = neutral(betas, pose[:, 3:], pose[:, :3])
    flipped = flip_smpl_pose(pose)
    out_f = neutral(betas, flipped[:, 3:], flipped[:, :3])
    expect = out.vertices[:, partner] * torch.tensor([-1.0, 1.0, 1.0])
    torch.testing.assert_close(out_f.vertices, expect, atol=2e-5, rtol=0)


def test_gendered_model_uses_the_right_model_per_row(body_layout):
    gendered = GenderedBodyModel.from_layout(body_layout)
    betas, pose = _params(4, seed=3)
    out = gendered(betas, pose[:, 3:], pose[:, :3], ["m", "f", "n", "female"])
    codes = gendered(betas, pose[:, 3:], pose[:, :3], torch.tensor([0, 1, -1, 1]))
    torch.testing.assert_close(codes.vertices, out.vertices)
    for row, gender in enumerate(("male", "female", "neutral", "female")):
        single = gendered.models[gender](
            betas[row : row + 1], pose[row : row + 1, 3:], pose[row : row + 1, :3]
        )
        torch.testing.assert_close(out.vertices[row], single.vertices[0])
        torch.testing.assert_close(out.joints_h36m[row], single.joints_h36m[0])
    # male and female meshes really differ
    assert (
        out.vertices[0] - gendered.models["female"](betas[:1], pose[:1, 3:], pose[:1, :3]).vertices[0]
    ).abs().max() > 1e-3
    empty = gendered(betas[:0], pose[:0, 3:], pose[:0, :3], [])
    assert empty.vertices.shape == (0, 6890, 3)


def test_load_smpl_arrays_refuses_code_and_bad_content(tmp_path, body_layout):
    arrays = load_smpl_arrays(body_layout.smpl_model("neutral"))
    assert arrays["v_template"].shape == (6890, 3) and arrays["J_regressor"].shape == (24, 6890)

    class Evil:
        def __reduce__(self):
            return (print, ("should never run",))

    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"v_template": Evil()}))
    with pytest.raises(UnsafeFileError):
        load_smpl_arrays(evil)
    partial = tmp_path / "partial.pkl"
    partial.write_bytes(pickle.dumps({"v_template": np.zeros((6890, 3))}, protocol=4))
    with pytest.raises(BadFileError, match="missing"):
        load_smpl_arrays(partial)


def test_bad_regressor_shape_is_reported(tmp_path, body_layout):
    import shutil

    from gtacli.layout import DataLayout

    layout = DataLayout(tmp_path / "data")
    shutil.copytree(body_layout.root, layout.root)
    np.save(layout.j_regressor_extra, np.zeros((8, 6890)))
    with pytest.raises(BadFileError, match="regressor"):
        BodyModel.from_layout(layout, "neutral")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda(body_layout):
    model = BodyModel.from_layout(body_layout, "neutral", device="cuda")
    betas, pose = _params(2)
    out = model(betas.cuda(), pose[:, 3:].cuda(), pose[:, :3].cuda())
    ref = BodyModel.from_layout(body_layout, "neutral")(betas, pose[:, 3:], pose[:, :3])
    assert out.joints.is_cuda
    torch.testing.assert_close(out.joints.cpu(), ref.joints, atol=1e-5, rtol=0)
