"""Animation export files against gtacli's body model (smplx), on demo-like results with real motion: the BVH's
forward kinematics, the glTF's joints and skinned mesh (evaluated from the specification, see gltf_eval.py),
the AMASS-layout npz through the body model, gap filling, short tracks, single images, bad results."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from export_motion import FPS, HEIGHT, WIDTH, body_model_reference, demo_results
from gltf_eval import Gltf

from gtacli.body.rotations import axis_angle_to_matrix_np
from gtacli.body.smpl import BodyModel, load_smpl_arrays
from gtacli.errors import BadFileError
from gtacli.export.animation import build_motions
from gtacli.export.bvh import read_bvh
from gtacli.export.rig import SMPL_JOINT_NAMES, rig_from_smpl, skin
from gtacli.export.rotations import (
    euler_to_matrix,
    matrix_to_euler,
    matrix_to_quaternion,
    quaternion_to_matrix,
    scene_frames,
    slerp,
)
from gtacli.export.writer import ExportOptions, export_animation
from gtacli.layout import DataLayout

MM = 1e-3


@pytest.fixture(scope="module")
def smpl(sample_tree):
    return load_smpl_arrays(DataLayout(sample_tree).smpl_model("neutral"))


@pytest.fixture(scope="module")
def body_model(smpl):
    return BodyModel(smpl, dtype=torch.float64)


@pytest.fixture(scope="module")
def exported(smpl, tmp_path_factory):
    """Every up axis, with and without correctives: {(up, correctives): (folder, summary)}."""
    out = {}
    results = demo_results()
    for up in ("y", "z"):
        for correctives in (False, True):
            folder = tmp_path_factory.mktemp(f"export_{up}_{int(correctives)}")
            options = ExportOptions(up=up, correctives=correctives)
            summary = export_animation(
                results, folder, smpl=smpl, smpl_source="SMPL_NEUTRAL.pkl", options=options
            )
            out[(up, correctives)] = (folder / "animation", summary)
    return out


def _reference(body_model, motion):
    return body_model_reference(body_model, motion.betas, motion.rotmats, motion.transl)


def test_euler_and_quaternion_round_trips_including_gimbal_lock():
    rng = np.random.default_rng(1)
    rot = axis_angle_to_matrix_np(rng.normal(size=(300, 3)) * 1.5)
    assert np.abs(quaternion_to_matrix(matrix_to_quaternion(rot)) - rot).max() < 1e-12
    for order in ("XYZ", "XZY", "YXZ", "YZX", "ZXY", "ZYX"):
        assert np.abs(euler_to_matrix(matrix_to_euler(rot, order), order) - rot).max() < 1e-12
        angles = rng.normal(size=(40, 3))
        angles[:, 1] = np.pi / 2 * np.sign(rng.normal(size=40))  # middle angle at +-90 degrees
        locked = euler_to_matrix(angles, order)
        assert np.abs(euler_to_matrix(matrix_to_euler(locked, order), order) - locked).max() < 1e-12
    a, b = matrix_to_quaternion(rot[:2])
    half = quaternion_to_matrix(slerp(a, b, 0.5))
    # the midpoint is the rotation halfway along the relative rotation
    rel = quaternion_to_matrix(b) @ quaternion_to_matrix(a).T
    step = axis_angle_to_matrix_np(0.5 * _log(rel))
    assert np.abs(half - step @ quaternion_to_matrix(a)).max() < 1e-12


def _log(rot):
    from gtacli.body.rotations import matrix_to_axis_angle_np

    return matrix_to_axis_angle_np(rot)


def test_tracks_gaps_filled_short_tracks_skipped_one_camera():
    results = demo_results()
    motions, camera, notes = build_motions(results)
    assert [m.name for m in motions] == ["track_0", "track_1"]
    assert notes == ["track 2 skipped: 3 frame(s) (frames 0-2), shorter than 5"]
    gap = motions[0]
    assert list(gap.frames) == list(range(16)) and gap.filled == [5, 6, 7]
    # frame 6 is halfway between the known frames 4 and 8: slerp of every joint, mean of translations
    rows = {int(f): i for i, f in enumerate(results["frame_index"]) if results["person_id"][i] == 0}
    rot = axis_angle_to_matrix_np(results["smpl_pose"].astype(np.float64).reshape(-1, 24, 3))
    q4, q8 = matrix_to_quaternion(rot[rows[4]]), matrix_to_quaternion(rot[rows[8]])
    assert np.abs(gap.rotmats[6] - quaternion_to_matrix(slerp(q4, q8, 0.5))).max() < 1e-12
    focal = results["focal_length"].astype(np.float64)
    assert camera.focal == pytest.approx(np.median(focal))
    assert (camera.width, camera.height) == (WIDTH, HEIGHT)
    # one camera: the root keeps its pixel and its size (depth scaled by F / f_i)
    t_demo = results["transl"][rows[4]].astype(np.float64)
    t_exp = gap.transl[4]
    assert t_exp[:2] == pytest.approx(t_demo[:2])
    assert camera.focal * t_exp[0] / t_exp[2] == pytest.approx(focal[rows[4]] * t_demo[0] / t_demo[2])
    assert t_exp[2] / camera.focal == pytest.approx(t_demo[2] / focal[rows[4]])


def test_numpy_skinning_equals_the_body_model(smpl, body_model):
    motion = build_motions(demo_results())[0][1]
    joints, vertices = _reference(body_model, motion)
    rig = rig_from_smpl(smpl, motion.betas)
    assert np.abs(skin(rig, motion.rotmats, motion.transl) - vertices).max() < 1e-6


@pytest.mark.parametrize("up", ["y", "z"])
def test_bvh_forward_kinematics_equals_the_24_smpl_joints(exported, body_model, up):
    folder, summary = exported[(up, False)]
    U, _ = scene_frames(up)
    for motion in build_motions(demo_results())[0]:
        joints, _ = _reference(body_model, motion)
        bvh = read_bvh(folder / f"{motion.name}.bvh")
        assert bvh.names == [n for n in bvh.names if n in SMPL_JOINT_NAMES] and sorted(bvh.names) == sorted(
            SMPL_JOINT_NAMES
        )
        assert bvh.frame_time == pytest.approx(1 / FPS)
        assert len(bvh.motion) == len(motion.frames)
        fk = bvh.joint_positions()[:, [bvh.names.index(n) for n in SMPL_JOINT_NAMES]]
        assert np.abs(fk - joints @ U.T).max() < MM


@pytest.mark.parametrize("up", ["y", "z"])
def test_gltf_joints_and_skinned_mesh_equal_the_body_model(exported, body_model, up):
    U, _ = scene_frames(up)
    motion = build_motions(demo_results())[0][0]
    joints, vertices = _reference(body_model, motion)
    plain, _ = exported[(up, False)]
    exact, _ = exported[(up, True)]
    for t in (0, 6, len(motion.frames) - 1):  # 6 is a filled frame
        time = motion.frames[t] / FPS
        gltf = Gltf(exact / "track_0.glb")
        assert np.abs(gltf.joint_positions(time, SMPL_JOINT_NAMES) - joints[t] @ U.T).max() < MM
        assert np.abs(gltf.skinned_vertices(time) - vertices[t] @ U.T).max() < MM
    # without the correctives the mesh is SMPL's plain blend skinning: off by the correctives' size
    gltf = Gltf(plain / "track_0.glb")
    off = np.abs(gltf.skinned_vertices(motion.frames[6] / FPS) - vertices[6] @ U.T).max()
    assert MM < off < 0.05


def test_gltf_names_camera_licence_and_size(exported, smpl):
    folder, summary = exported[("y", False)]
    doc = Gltf(folder / "track_0.glb").doc
    assert [n.name for n in doc.nodes[:24]] == list(SMPL_JOINT_NAMES)
    assert doc.skins[0].joints == list(range(24))
    assert "SMPL_NEUTRAL.pkl" in doc.asset.extras["licence"]
    info = doc.asset.extras["gtacli"]
    assert info["frame_rate"] == FPS and info["up_axis"] == "y" and info["units"] == "metres"
    cam = doc.cameras[0].perspective
    _, camera, _ = build_motions(demo_results())
    assert cam.aspectRatio == pytest.approx(WIDTH / HEIGHT)
    assert cam.yfov == pytest.approx(2 * np.arctan(HEIGHT / 2 / camera.focal))
    assert len(doc.meshes[0].primitives[0].targets or []) == 0
    exact = Gltf(exported[("y", True)][0] / "track_0.glb").doc
    assert len(exact.meshes[0].primitives[0].targets) == 207
    size = (folder / "track_0.glb").stat().st_size
    grown = (exported[("y", True)][0] / "track_0.glb").stat().st_size - size
    assert 15e6 < grown < 20e6  # what --help says (about 17 MB)
    entries = {e["file"]: e for e in summary["files"]}
    assert entries["animation/track_0.glb"]["filled_frames"] == [5, 6, 7]
    assert entries["animation/track_1.bvh"]["frame_range"] == [2, 13]
    assert summary["skipped"] and summary["tracks"] == [0, 1]


def test_camera_node_reproduces_the_projection(exported):
    """The root joint seen through the glTF camera (its world transform, yfov, aspect) lands on the pixel the
    demo's translation gives it (the demo's principal point is (w/2, h/2) with pixel centres at integers)."""
    for up in ("y", "z"):
        gltf = Gltf(exported[(up, False)][0] / "track_1.glb")
        motions, camera, _ = build_motions(demo_results())
        motion = motions[1]
        world = gltf.world_matrices(motion.frames[3] / FPS)
        cam_node = gltf.node_index("video_camera")
        view = np.linalg.inv(world[cam_node])
        root = world[gltf.node_index("pelvis")][:, 3]
        p = view @ root  # glTF camera: looks along -z, y up
        f = HEIGHT / 2 / np.tan(gltf.doc.cameras[0].perspective.yfov / 2)
        # continuous image coordinates of the glTF camera -> the demo's pixel indices (pixel centres at integers)
        u, v = WIDTH / 2 + f * p[0] / -p[2] - 0.5, HEIGHT / 2 - f * p[1] / -p[2] - 0.5
        rig_root = motion.transl[3] + rig_root_joint(gltf)
        expect = camera.intrinsics @ rig_root
        assert (u, v) == pytest.approx(tuple(expect[:2] / expect[2]), abs=0.01)  # second order in the turn


def rig_root_joint(gltf):
    """The pelvis's rest position in SMPL's frame, from the inverse bind matrix (rest frame C = identity
    for y up; for z up turned back)."""
    ibm = gltf.accessor(gltf.doc.skins[0].inverseBindMatrices).reshape(-1, 4, 4).transpose(0, 2, 1)
    up = gltf.doc.asset.extras["gtacli"]["up_axis"]
    _, C = scene_frames(up)
    return C.T @ -ibm[0][:3, 3]


def test_amass_npz_through_the_body_model(exported, body_model):
    for up in ("y", "z"):
        folder, _ = exported[(up, False)]
        U, _ = scene_frames(up)
        motion = build_motions(demo_results())[0][1]
        joints, _ = _reference(body_model, motion)
        data = np.load(folder / "track_1.npz", allow_pickle=False)
        assert (
            data["poses"].shape == (12, 72)
            and data["trans"].shape == (12, 3)
            and data["betas"].shape == (10,)
        )
        assert str(data["gender"]) == "neutral" and float(data["mocap_framerate"]) == FPS
        assert list(data["frame_index"]) == list(range(2, 14))
        pose = axis_angle_to_matrix_np(data["poses"].reshape(-1, 24, 3))
        out, _ = body_model_reference(body_model, data["betas"], pose, data["trans"])
        assert np.abs(out - joints @ U.T).max() < MM


def test_single_image_gives_one_frame_animations(smpl, tmp_path):
    results = demo_results()
    first = results["frame_index"] == 2
    one = {k: (v[first] if np.ndim(v) and len(v) == len(first) else v) for k, v in results.items()}
    one["frame_index"] = np.zeros(int(first.sum()), np.int64)
    one["frame_size_hw"] = results["frame_size_hw"][:1]
    one["fps"] = np.array(0.0)
    summary = export_animation(one, tmp_path, smpl=smpl, smpl_source="x.pkl")
    assert summary["tracks"] == [0, 1, 2] and not summary["skipped"]
    bvh = read_bvh(tmp_path / "animation" / "track_2.bvh")
    assert len(bvh.motion) == 1


def test_skeleton_only_from_saved_joints(body_model, tmp_path):
    """No SMPL file: the skeleton comes from the results' 24 posed joints (linear in the shape, so their
    track average is the skeleton of the mean shape)."""
    results = demo_results()
    rot = axis_angle_to_matrix_np(results["smpl_pose"].astype(np.float64).reshape(-1, 24, 3))
    with torch.no_grad():
        out = body_model(torch.as_tensor(results["betas"], dtype=torch.float64),
                         torch.as_tensor(rot[:, 1:]), torch.as_tensor(rot[:, :1]), pose2rot=False)  # fmt: skip
    results["keypoints3d_smpl24"] = out.joints_smpl.numpy().astype(np.float32)
    reports = []
    summary = export_animation(
        results, tmp_path, options=ExportOptions(mesh=False), progress=lambda *a: reports.append(a)
    )
    assert summary["licence"] is None
    # the one ProgressFn order: done, total, description (the track's file name)
    n = len(summary["tracks"])
    assert [r[:2] for r in reports] == [(k + 1, n) for k in range(n)] and all(
        r[2].startswith("track_") for r in reports
    )
    motion = build_motions(results)[0][1]
    joints, _ = _reference(body_model, motion)
    bvh = read_bvh(tmp_path / "animation" / "track_1.bvh")
    fk = bvh.joint_positions()[:, [bvh.names.index(n) for n in SMPL_JOINT_NAMES]]
    assert np.abs(fk - joints @ scene_frames("y")[0].T).max() < MM
    assert Gltf(tmp_path / "animation" / "track_1.glb").doc.meshes == []


@pytest.mark.parametrize(
    "change, problem",
    [
        (lambda r: r.pop("smpl_pose"), "has no smpl_pose"),
        (lambda r: r.pop("transl"), "has no transl"),
        (
            lambda r: r.update({k: r[k][:0] for k in ("frame_index", "person_id", "smpl_pose")}),
            "holds no person",
        ),
    ],
)
def test_results_without_parameters_or_tracks_are_one_line(change, problem, tmp_path):
    results = demo_results()
    change(results)
    with pytest.raises(BadFileError) as info:
        export_animation(
            results, tmp_path, options=ExportOptions(mesh=False), results_path=tmp_path / "r.npz"
        )
    assert problem in str(info.value) and "\n" not in str(info.value)
    assert "r.npz" in str(info.value)
