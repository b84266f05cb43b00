"""The synthetic sample tree: every file of docs/reproduction.md §1.2 with the keys/shapes the real files have, and images,
keypoints and boxes consistent with the SMPL bodies they were rendered from.

Uses the session-wide tiny tree of `conftest.sample_tree` (seed 0); expected values come from docs/reproduction.md (slots,
shapes, box rules), from the body model run on the stored SMPL parameters, and from the regenerated
backgrounds, not from the generator's own intermediate arrays.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from gtacli.body.conventions import SMPL_24_HUMAN_DATA_SLOTS, SMPL_49_TO_HUMAN_DATA
from gtacli.data.human_data import HumanData
from gtacli.errors import GtacliError
from gtacli.io.safe import load_checkpoint, load_npy, load_npz, load_pickle
from gtacli.layout import DataLayout
from gtacli.sample.backgrounds import background_for

# docs/reproduction.md §1.2, spelled out here (not taken from DataLayout) so a wrong layout path fails the test.
EXPECTED_FILES = [
    "gmm_08.pkl",
    "body_models/J_regressor_extra.npy",
    "body_models/J_regressor_h36m.npy",
    "body_models/smpl_mean_params.npz",
    "body_models/smpl/SMPL_NEUTRAL.pkl",
    "body_models/smpl/SMPL_MALE.pkl",
    "body_models/smpl/SMPL_FEMALE.pkl",
    "pretrained_models/spin_official.pth",
    *(
        f"preprocessed_datasets/{n}.npz"
        for n in ("spin_h36m_train", "spin_mpi_inf_3dhp_train", "spin_lsp_train", "spin_lspet_train",
                  "spin_mpii_train", "spin_coco_2014_train", "gta_human_4x", "pw3d_test")
    ),
    *(f"static_fits/{d}_fits.npy" for d in ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta")),
]  # fmt: skip
SPIN_FILES = {
    "h36m": "spin_h36m_train.npz",
    "mpi_inf_3dhp": "spin_mpi_inf_3dhp_train.npz",
    "lsp": "spin_lsp_train.npz",
    "lspet": "spin_lspet_train.npz",
    "mpii": "spin_mpii_train.npz",
    "coco": "spin_coco_2014_train.npz",
}
ANNOTATIONS = {**SPIN_FILES, "gta": "gta_human_4x.npz", "pw3d": "pw3d_test.npz"}
# docs/reproduction.md §1.1 image-path forms.
IMAGE_PATTERNS = {
    "h36m": r"S\d+/images/S\d+_\w+\.\d{8}/S\d+_\w+\.\d{8}_\d{6}\.jpg",
    "mpi_inf_3dhp": r"S\d/Seq\d/video_\d+/\d{6}\.jpg",
    "lsp": r"images/im\d{4}\.jpg",
    "lspet": r"im\d{5}\.png",
    "mpii": r"images/\d{9}\.jpg",
    "coco": r"train2014/COCO_train2014_\d{12}\.jpg",
    "gta": r"images/seq_\d{8}/\d{8}\.jpeg",
    "pw3d": r"imageFiles/\w+_\d\d/image_\d{5}\.jpg",
}
OPENPOSE = slice(0, 25)
PELVIS_EXTRA, THORAX_EXTRA, R_HIP_EXTRA, L_HIP_EXTRA, R_SHOULDER, L_SHOULDER = 39, 40, 27, 28, 33, 34
GTA_FOCAL_1920 = 1158.0337  # docs/reproduction.md §2.6 camera, for a 1920-px-wide image
BODY_DIFF = 40  # grey levels: a pixel differs this much from the background only where the body is
JPEG_DIFF = 25  # JPEG noise away from edges stays below this


def _hd(root: Path, dataset: str) -> HumanData:
    return HumanData.load(root / "preprocessed_datasets" / ANNOTATIONS[dataset])


def _body(root: Path, gender: str = "neutral"):
    from gtacli.body.smpl import BodyModel

    return BodyModel.from_layout(DataLayout(root), gender, dtype=torch.float64)


def _run_body(model, smpl: dict):
    with torch.no_grad():
        return model(
            torch.as_tensor(smpl["betas"], dtype=torch.float64),
            torch.as_tensor(smpl["body_pose"], dtype=torch.float64).reshape(-1, 69),
            torch.as_tensor(smpl["global_orient"], dtype=torch.float64),
        )


def test_tree_has_every_file_of_the_documented_layout(sample_tree: Path) -> None:
    for rel in EXPECTED_FILES:
        assert (sample_tree / rel).is_file(), rel
    # cache/ is built empty; other tests' eval/demo/fit runs on this shared tree with the default engine
    # (onnxruntime) may have put the checkpoint's ONNX export in cache/onnx/ since
    assert (sample_tree / "cache").is_dir()
    assert not [p for p in (sample_tree / "cache").iterdir() if p.name != "onnx"]
    marker = json.loads((sample_tree / "SYNTHETIC_DATA.json").read_text())
    assert marker["synthetic"] is True and marker["complete"] is True
    assert marker["generator"] == "gtacli sample-data" and marker["seed"] == 0 and marker["size"] == "tiny"
    assert "SYNTHETIC" in marker["warning"]
    assert DataLayout(sample_tree).is_synthetic
    listed = set(marker["files"])
    on_disk = {
        p.relative_to(sample_tree).as_posix()
        for p in sample_tree.rglob("*")
        if p.is_file() and not p.relative_to(sample_tree).as_posix().startswith("cache/onnx/")
    }
    assert on_disk - listed == {"SYNTHETIC_DATA.json"}  # every written file is recorded for rebuilds


def test_body_assets_have_the_real_formats(sample_tree: Path) -> None:
    from gtacli.body.smpl import load_smpl_arrays

    for rel, rows in (("J_regressor_extra.npy", 9), ("J_regressor_h36m.npy", 17)):
        reg = load_npy(sample_tree / "body_models" / rel)
        assert reg.shape == (rows, 6890) and reg.dtype == np.float64
        assert (reg >= 0).all() and np.allclose(reg.sum(axis=1), 1.0)
    with load_npz(sample_tree / "body_models/smpl_mean_params.npz") as npz:
        assert sorted(npz) == ["cam", "pose", "shape"]
        pose, shape, cam = np.asarray(npz["pose"]), np.asarray(npz["shape"]), np.asarray(npz["cam"])
    assert (pose.dtype, shape.dtype, cam.dtype) == (np.float32,) * 3
    assert pose.shape == (144,) and shape.shape == (10,) and cam.shape == (3,)
    np.testing.assert_allclose(
        pose[:6], [1, 0, 0, -1, 0, 0], atol=1e-6
    )  # joint 0: 180° about x (6D, docs/reproduction.md §4.3)
    np.testing.assert_allclose(cam, [0.9, 0, 0])
    gmm = load_pickle(sample_tree / "gmm_08.pkl")
    assert set(gmm) == {"means", "covars", "weights"}
    assert (
        gmm["means"].shape == (8, 69) and gmm["covars"].shape == (8, 69, 69) and gmm["weights"].shape == (8,)
    )
    assert abs(gmm["weights"].sum() - 1.0) < 1e-9
    assert np.allclose(gmm["covars"], gmm["covars"].transpose(0, 2, 1))
    assert np.linalg.eigvalsh(gmm["covars"]).min() > 0
    for gender in ("NEUTRAL", "MALE", "FEMALE"):
        arrays = load_smpl_arrays(sample_tree / f"body_models/smpl/SMPL_{gender}.pkl")
        assert arrays["v_template"].shape == (6890, 3) and arrays["f"].shape == (13776, 3)


def test_genders_share_one_topology_so_the_regressors_fit_every_gender(sample_tree: Path) -> None:
    from gtacli.body.smpl import load_smpl_arrays

    models = {
        g: load_smpl_arrays(sample_tree / f"body_models/smpl/SMPL_{g}.pkl")
        for g in ("NEUTRAL", "MALE", "FEMALE")
    }
    for g in ("MALE", "FEMALE"):  # as in real SMPL: same triangles, same vertex order, different bodies
        np.testing.assert_array_equal(models[g]["f"], models["NEUTRAL"]["f"])
        assert np.abs(models[g]["v_template"] - models["NEUTRAL"]["v_template"]).max() > 0.01
    height = {g: np.ptp(m["v_template"][:, 1]) for g, m in models.items()}
    assert height["MALE"] > height["NEUTRAL"] > height["FEMALE"]
    h36m = load_npy(sample_tree / "body_models/J_regressor_h36m.npy")
    for (
        g,
        m,
    ) in models.items():  # the one H36M regressor puts pelvis and head top where they belong on each body
        v = m["v_template"]
        joints = h36m @ v
        assert abs(joints[10, 1] - v[:, 1].max()) < 0.05, g  # head top (H36M 10) at the top of the head
        hips = m["J_regressor"][[1, 2]] @ v  # pelvis (H36M 0) between the hip joints
        np.testing.assert_allclose(joints[0], hips.mean(axis=0), atol=0.04, err_msg=g)


@pytest.mark.parametrize("dataset", list(SPIN_FILES))
def test_spin_annotation_has_the_real_keys_and_boxes(sample_tree: Path, dataset: str) -> None:
    path = sample_tree / "preprocessed_datasets" / SPIN_FILES[dataset]
    with load_npz(path) as raw:
        n = int(raw["__data_len__"])
        assert bool(raw["__keypoints_compressed__"]) is True
        assert raw.header("keypoints2d")[0] == (
            n,
            49,
            3,
        )  # compressed to the 49 mapped slots (docs/reproduction.md §2.3)
        np.testing.assert_array_equal(np.flatnonzero(raw["keypoints2d_mask"]), sorted(SMPL_49_TO_HUMAN_DATA))
        has_3d = dataset in ("h36m", "mpi_inf_3dhp")
        assert ("keypoints3d" in raw) == has_3d
        if has_3d:
            assert raw.header("keypoints3d")[0] == (n, 24, 4)
            np.testing.assert_array_equal(np.flatnonzero(raw["keypoints3d_mask"]), SMPL_24_HUMAN_DATA_SLOTS)
        assert ("smpl" in raw) == has_3d and ("has_smpl" in raw) == (dataset == "mpi_inf_3dhp")
        assert raw["misc"]["synthetic"] is True
    hd = HumanData.load(path)
    assert len(hd) == n >= 4
    assert all(re.fullmatch(IMAGE_PATTERNS[dataset], p) for p in hd.image_paths())
    kp = hd.keypoints2d_smpl49()
    op_conf = kp[:, OPENPOSE, 2]
    if dataset == "h36m":  # SPIN's h36m file has no OpenPose detections
        assert (op_conf == 0).all()
    else:  # detector-like confidences, not ground truth
        detected = op_conf[op_conf > 0]
        assert len(detected) > 0.5 * op_conf.size and detected.max() < 1.0 and detected.std() > 0.05
    if dataset == "mpi_inf_3dhp":
        has_smpl = np.asarray(hd["has_smpl"])
        assert set(np.unique(has_smpl)) == {0.0, 1.0}
    # SPIN box (docs/reproduction.md §2.3): square, side 1.2 x the larger extent of the confident GT joints, same centre
    boxes = hd.bbox_xywh()
    for k, box in zip(kp, boxes):
        pts = k[25:][k[25:, 2] > 0, :2]
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        side = 1.2 * (hi - lo).max()
        np.testing.assert_allclose(box[2:4], [side, side], rtol=1e-4)
        np.testing.assert_allclose(box[:2] + box[2:4] / 2, (lo + hi) / 2, atol=1e-2)


def test_gta_annotation_has_the_legacy_header_and_24_keypoints(sample_tree: Path) -> None:
    path = sample_tree / "preprocessed_datasets/gta_human_4x.npz"
    with load_npz(path) as raw:
        assert "__temporal_len__" in raw and "__data_len__" not in raw  # docs/reproduction.md §2.6
        n = int(raw["__temporal_len__"])
        assert "meta" not in raw and "has_smpl" not in raw
        for key in ("keypoints2d_gta", "keypoints3d_gta", "keypoints2d_gta_mask", "keypoints3d_gta_mask"):
            assert key in raw
        assert raw.header("keypoints2d")[0] == (n, 24, 3) and raw.header("keypoints3d")[0] == (n, 24, 4)
        for key in ("keypoints2d_mask", "keypoints3d_mask"):
            np.testing.assert_array_equal(np.flatnonzero(raw[key]), SMPL_24_HUMAN_DATA_SLOTS)
    hd = HumanData.load(path)
    assert len(hd) == n
    smpl = hd.smpl()
    assert set(smpl) == {"body_pose", "global_orient", "betas", "transl"}
    # keypoints are the projections of the body's joints (SMPL + transl) through GTA's camera scaled to the image
    h, w = cv2.imread(str(sample_tree / "datasets/gta" / hd.image_paths()[0])).shape[:2]
    focal = GTA_FOCAL_1920 * w / 1920
    out = _run_body(_body(sample_tree), smpl)
    joints = out.joints.numpy() + smpl["transl"][:, None, :]
    uv = focal * joints[..., :2] / joints[..., 2:3] + [(w - 1) / 2, (h - 1) / 2]
    kp2d, kp3d = hd.keypoints2d_smpl49(), hd.keypoints3d_smpl49()
    gt = slice(25, 49)
    np.testing.assert_allclose(kp2d[:, gt, :2], uv[:, gt], atol=0.02)
    assert (kp2d[:, gt, 2] == 1).all() and (kp2d[:, OPENPOSE, 2] == 0).all()
    rooted = joints - joints[:, PELVIS_EXTRA : PELVIS_EXTRA + 1]
    np.testing.assert_allclose(kp3d[:, gt, :3], rooted[:, gt], atol=1e-4)


@pytest.mark.parametrize("dataset", ["h36m", "mpi_inf_3dhp"])
def test_3d_keypoints_are_the_smpl_joints_in_metres(sample_tree: Path, dataset: str) -> None:
    hd = _hd(sample_tree, dataset)
    kp3d, kp2d = hd.keypoints3d_smpl49(), hd.keypoints2d_smpl49()
    rows = np.flatnonzero(np.asarray(hd["has_smpl"]) == 1) if "has_smpl" in hd else np.arange(len(hd))
    out = _run_body(_body(sample_tree), {k: v[rows] for k, v in hd.smpl().items()})
    joints = out.joints.numpy()
    valid = kp3d[rows, :, 3] > 0
    assert valid.sum(axis=1).min() == 17  # the 17 H36M joints in smpl_24 slots (docs/reproduction.md §2.5)
    # root-relative positions do not depend on the unknown camera translation
    got = kp3d[rows, :, :3] - kp3d[rows, PELVIS_EXTRA : PELVIS_EXTRA + 1, :3]
    want = joints - joints[:, PELVIS_EXTRA : PELVIS_EXTRA + 1]
    np.testing.assert_allclose(got[valid], want[valid], atol=1e-4)
    pelvis = kp3d[:, PELVIS_EXTRA, :3]
    if dataset == "h36m":  # root-centred
        np.testing.assert_allclose(pelvis, 0.0, atol=1e-6)
    else:  # camera frame, metres in front of the camera: the 2D keypoints are its pinhole projection
        assert (pelvis[:, 2] > 1.0).all()
        w, h = cv2.imread(str(sample_tree / "datasets" / dataset / hd.image_paths()[0])).shape[1::-1]
        for k3, k2 in zip(kp3d, kp2d):
            m = (k3[:, 3] > 0) & (k2[:, 2] > 0)
            x = k3[m, :2] / k3[m, 2:3]
            d = k2[m, :2] - [(w - 1) / 2, (h - 1) / 2]
            focal = (x * d).sum() / (x * x).sum()  # least-squares focal length
            np.testing.assert_allclose(focal * x, d, atol=0.02)


def test_pw3d_annotation_is_gendered_smpl_over_sequences(sample_tree: Path) -> None:
    path = sample_tree / "preprocessed_datasets/pw3d_test.npz"
    with load_npz(path) as raw:
        assert not any(k.startswith("keypoints") for k in raw)
        assert int(raw["__data_len__"]) >= 8
    hd = HumanData.load(path)
    genders = list(hd.meta()["gender"])
    assert len(genders) == len(hd) and set(genders) == {"m", "f"}
    sequences = {p.split("/")[1] for p in hd.image_paths()}
    assert len(sequences) >= 2
    smpl = hd.smpl()
    assert smpl["body_pose"].shape == (len(hd), 23, 3) and smpl["betas"].shape == (len(hd), 10)
    assert all(re.fullmatch(IMAGE_PATTERNS["pw3d"], p) for p in hd.image_paths())


def test_static_fits_match_annotation_lengths_and_are_near_the_bodies(sample_tree: Path) -> None:
    for dataset in ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta"):
        fits = load_npy(sample_tree / f"static_fits/{dataset}_fits.npy")
        hd = _hd(sample_tree, dataset)
        assert fits.shape == (len(hd), 82) and fits.dtype == np.float64
        if "smpl" in hd:
            smpl = hd.smpl()
            truth = np.concatenate(
                [smpl["global_orient"], smpl["body_pose"].reshape(len(hd), 69), smpl["betas"]], axis=1
            )
            rows = np.asarray(hd["has_smpl"]) == 1 if "has_smpl" in hd else slice(None)
            error = np.abs(fits[rows] - truth[rows])
            assert 0 < error.mean() < 0.2  # near, but not equal to, the true bodies


@pytest.fixture(scope="module")
def gendered_model(sample_tree: Path):
    from gtacli.body.smpl import GenderedBodyModel

    return GenderedBodyModel.from_layout(
        DataLayout(sample_tree), genders=("neutral", "male", "female"), dtype=torch.float64
    )


def _truth_meshes(model, hd: HumanData):
    """Vertices (N, 6890, 3) and smpl_49 joints (N, 49, 3) in the camera frame of the bodies the images show
    (`misc.synthetic_truth`), plus the intrinsics (3, 3)."""
    misc = hd["misc"]
    truth = misc["synthetic_truth"]
    with torch.no_grad():
        out = model(
            torch.as_tensor(truth["betas"], dtype=torch.float64),
            torch.as_tensor(truth["body_pose"], dtype=torch.float64).reshape(-1, 69),
            torch.as_tensor(truth["global_orient"], dtype=torch.float64),
            gender=truth["gender"],
        )
    transl = np.asarray(truth["transl"], dtype=np.float64)[:, None, :]
    return out.vertices.numpy() + transl, out.joints.numpy() + transl, np.asarray(misc["camera_intrinsics"])


@pytest.mark.parametrize("dataset", list(ANNOTATIONS))
def test_images_and_keypoints_show_the_bodies(sample_tree: Path, gendered_model, dataset: str) -> None:
    from gtacli.render.overlay import render_mask_depth

    hd = _hd(sample_tree, dataset)
    vertices, joints, K = _truth_meshes(gendered_model, hd)
    uv = joints[..., :2] / joints[..., 2:3] * [K[0, 0], K[1, 1]] + K[:2, 2]
    if dataset != "pw3d":  # annotated GT keypoints are the projections of the body's joints
        kp = hd.keypoints2d_smpl49()
        gt = np.zeros(kp.shape[:2], bool)
        gt[:, 25:] = kp[:, 25:, 2] > 0
        assert gt.sum(axis=1).min() >= 12
        np.testing.assert_allclose(kp[gt][:, :2], uv[gt], atol=0.02)
    if "smpl" in hd and "has_smpl" not in hd:  # GT SMPL = the rendered body
        for key, value in hd.smpl().items():
            np.testing.assert_allclose(value, hd["misc"]["synthetic_truth"][key], atol=1e-6)
    for i, rel in enumerate(hd.image_paths()):
        image = cv2.imread(str(sample_tree / "datasets" / dataset / rel), cv2.IMREAD_COLOR)
        assert image is not None, rel
        h, w = image.shape[:2]
        gender = gendered_model.gender_names([hd["misc"]["synthetic_truth"]["gender"][i]])[0]
        mask, _ = render_mask_depth(vertices[i], gendered_model.models[gender].faces, K, (h, w))
        assert 0.01 < mask.mean() < 0.6
        diff = np.abs(image.astype(int) - background_for(0, dataset, i, h, w).astype(int)).max(axis=2)
        kernel = np.ones((7, 7), np.uint8)
        outside = cv2.dilate(mask.astype(np.uint8), kernel) == 0
        inside = cv2.erode(mask.astype(np.uint8), kernel) > 0
        assert (diff[outside] < JPEG_DIFF).mean() > 0.995, rel  # away from the body: the background
        assert diff[inside].mean() > BODY_DIFF, rel  # on the body: not the background
        body = diff > BODY_DIFF
        assert (body & mask).sum() / (body | mask).sum() > 0.75, rel
        # interior joints of the torso (pelvis, thorax, spine) project onto the silhouette
        for j in (PELVIS_EXTRA, THORAX_EXTRA, THORAX_EXTRA + 1):
            x, y = np.rint(uv[i, j]).astype(int)
            assert mask[y, x], (rel, j)
        ys, xs = np.nonzero(mask)
        x, y, bw, bh = hd.bbox_xywh()[i][:4]
        if dataset == "gta":  # tight box around the person (docs/reproduction.md §2.6: no expansion)
            np.testing.assert_allclose(
                [xs.min(), ys.min(), xs.max(), ys.max()], [x, y, x + bw, y + bh], atol=1.5
            )
        else:  # expanded keypoint boxes hold (nearly) the whole body
            held = (xs >= x) & (xs <= x + bw) & (ys >= y) & (ys <= y + bh)
            assert held.mean() > 0.9, (rel, held.mean())


@pytest.mark.slow
def test_checkpoint_is_mmhuman3d_layout_and_predicts_the_mean(sample_tree: Path) -> None:
    from gtacli.data.crop import normalize
    from gtacli.model.checkpoint import load_weights
    from gtacli.model.estimator import build_estimator

    ckpt = load_checkpoint(sample_tree / "pretrained_models/spin_official.pth")
    assert set(ckpt) == {"meta", "state_dict"} and ckpt["meta"]["synthetic"] is True
    assert all(k.startswith(("backbone.", "head.")) for k in ckpt["state_dict"])
    assert ckpt["state_dict"]["backbone.conv1.weight"].shape == (64, 3, 7, 7)
    assert ckpt["state_dict"]["head.fc1.weight"].shape == (1024, 2205)
    model = build_estimator(DataLayout(sample_tree))
    report = load_weights(model, sample_tree / "pretrained_models/spin_official.pth")
    assert not report.missing
    model.eval()
    image = cv2.imread(str(next((sample_tree / "datasets/lsp/images").glob("*.jpg"))))
    crop = torch.from_numpy(normalize(cv2.resize(image, (224, 224))))[None]
    with torch.no_grad():
        out = model(crop)
        features = model.backbone(crop).mean(dim=(-1, -2))
    # BatchNorm statistics were measured on the tree's crops: eval-mode features are O(1), as in a trained
    # network (the default statistics leave a random ResNet-50's pooled features ~10x larger)
    assert not torch.allclose(model.backbone.bn1.running_var, torch.ones(64))
    assert features.abs().mean() < 3.0
    np.testing.assert_allclose(out["pred_cam"][0].numpy(), [0.9, 0, 0], atol=1e-6)
    np.testing.assert_allclose(out["pred_shape"][0].numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(out["pred_pose"][0, 0].numpy(), np.diag([1.0, -1.0, -1.0]), atol=1e-5)


def test_check_layout_accepts_the_tree_for_every_job(sample_tree: Path) -> None:
    from gtacli.assets.layout_check import check_layout

    report = check_layout(sample_tree, "all")
    failed = [item.to_dict() for item in report.items if not item.ok]
    assert report.ok, failed
    assert report.synthetic


def test_refuses_to_write_into_a_folder_that_is_not_a_sample_tree(tmp_path: Path) -> None:
    from gtacli.sample.tree import build_sample_tree

    root = tmp_path / "data"
    root.mkdir()
    (root / "my_notes.txt").write_text("keep me")
    with pytest.raises(GtacliError, match="not a synthetic sample tree"):
        build_sample_tree(root, size="tiny")
    assert sorted(p.name for p in root.iterdir()) == ["my_notes.txt"]  # nothing written, nothing removed
