"""`gtacli eval` end to end on the sample tree, checked against metrics recomputed here with numpy, and its
one-line failures on bad input."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.data.human_data import HumanData, write_human_data
from gtacli.layout import DataLayout

J14 = [6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10]  # docs/reproduction.md §3.4, typed by hand
H36M_SLOTS = [148, 145, 4, 7, 144, 5, 8, 150, 146, 152, 147, 16, 18, 20, 17, 19, 21]


def _view(sample_tree: Path, root: Path) -> DataLayout:
    """A writable data root sharing the sample tree's big folders (read-only there) by symlinks."""
    root.mkdir(parents=True)
    for name in ("body_models", "datasets", "pretrained_models", "SYNTHETIC_DATA.json"):
        (root / name).symlink_to(sample_tree / name)
    (root / "preprocessed_datasets").mkdir()
    return DataLayout(root)


@pytest.fixture(scope="module")
def random_checkpoint(tmp_path_factory, sample_tree) -> Path:
    """A checkpoint whose predictions depend on the image (the tree's spin_official predicts the mean)."""
    from gtacli.model.checkpoint import save_checkpoint
    from gtacli.model.estimator import build_estimator

    torch.manual_seed(0)
    model = build_estimator(DataLayout(sample_tree))
    with torch.no_grad():
        for layer in (model.head.decpose, model.head.decshape, model.head.deccam):
            layer.weight.normal_(0, 0.02)
    path = tmp_path_factory.mktemp("ckpt") / "random.pth"
    save_checkpoint(path, model, {"epoch": 0})
    return path


def _invoke(*args: str):
    result = CliRunner().invoke(app, ["eval", *args])
    return result, result.stdout, result.stderr


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _pa_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Umeyama's similarity (rotation without reflection, row-vector form), per frame."""
    out = []
    for p, g in zip(pred, gt):
        p0, g0 = p - p.mean(0), g - g.mean(0)
        u, sv, vt = np.linalg.svd(p0.T @ g0)
        d = np.diag([1.0, 1.0, np.sign(np.linalg.det(u @ vt))])
        r = u @ d @ vt  # p0 @ r ≈ g0 up to scale
        s = np.trace(np.diag(sv) @ d) / np.sum(p0**2)
        out.append(np.linalg.norm(s * p0 @ r - g0, axis=1).mean())
    return np.asarray(out)


@pytest.mark.slow
def test_eval_pw3d_json_matches_metrics_recomputed_independently(sample_tree, random_checkpoint, tmp_path):
    from gtacli.body.smpl import BodyModel
    from gtacli.model.checkpoint import load_weights
    from gtacli.model.estimator import build_estimator

    layout = DataLayout(sample_tree)
    preds_file = tmp_path / "preds.npz"
    result, stdout, stderr = _invoke(
        "--dataset", "pw3d", "--checkpoint", str(random_checkpoint), "--data-root", str(sample_tree),
        "--batch-size", "2", "--limit", "5", "--workers", "1", "--json", "--save-predictions", str(preds_file),
        "--mmhuman3d-pve",
    )  # fmt: skip
    assert result.exit_code == 0, stderr
    doc = json.loads(stdout)
    ann = layout.annotation("pw3d")
    hd = HumanData.load(ann)
    n = 5  # --limit
    for key in ("dataset", "frames", "mpjpe_mm", "pa_mpjpe_mm", "pve_mm", "annotation_sha256",
                "checkpoint_sha256", "protocol", "seconds", "frames_per_second", "per_sequence"):  # fmt: skip
        assert key in doc, key
    assert doc["dataset"] == "pw3d" and doc["frames"] == n
    assert doc["annotation_sha256"] == _sha256(ann)
    assert doc["checkpoint_sha256"] == _sha256(random_checkpoint)
    assert doc["exact"] is True and doc["synthetic_data"] is True
    assert "SYNTHETIC" in stderr
    assert sum(row["frames"] for row in doc["per_sequence"]) == n
    folders = [str(Path(p).parent) for p in hd.image_paths(slice(0, n))]
    assert [row["sequence"] for row in doc["per_sequence"]] == list(dict.fromkeys(folders))
    for row in doc["per_sequence"]:
        assert row["frames"] == folders.count(row["sequence"])

    # recompute: GT from the gendered SMPL of the file, prediction joints saved by eval, numpy metrics
    preds = np.load(preds_file, allow_pickle=False)
    assert np.array_equal(preds["index"], np.arange(n))
    smpl, genders = hd.smpl(slice(0, n)), hd.meta()["gender"][:n]
    gt = np.zeros((n, 17, 3))
    gt_verts, pred_g_verts = np.zeros((n, 6890, 3)), np.zeros((n, 6890, 3))
    rotmats, shapes = torch.from_numpy(preds["pred_pose"]), torch.from_numpy(preds["pred_shape"])
    for gender in ("male", "female"):
        rows = [i for i, g in enumerate(genders) if (g == "m") == (gender == "male")]
        if not rows:
            continue
        model = BodyModel.from_layout(layout, gender, h36m=True, extra=False)
        out = model(torch.as_tensor(smpl["betas"][rows]), torch.as_tensor(smpl["body_pose"][rows]).reshape(-1, 69),
                    torch.as_tensor(smpl["global_orient"][rows]))  # fmt: skip
        gt[rows] = out.joints_h36m.numpy()
        gt_verts[rows] = out.vertices.numpy()
        pred_g_verts[rows] = model(shapes[rows], rotmats[rows, 1:], rotmats[rows, :1]).vertices.numpy()
    # PVE (decision 10): neutral prediction vs gendered GT, each with its own H36M pelvis at the origin
    neutral = BodyModel.from_layout(layout, "neutral", h36m=True, extra=False)(
        shapes, rotmats[:, 1:], rotmats[:, :1]
    )
    pred_verts = (neutral.vertices - neutral.joints_h36m[:, :1]).double().numpy() * 1000
    gt_centred = (gt_verts - gt[:, :1]) * 1000
    assert doc["pve_mm"] == pytest.approx(np.linalg.norm(pred_verts - gt_centred, axis=-1).mean(), abs=1e-3)
    # mmhuman3d's variant: prediction through the GT-gender model, no alignment
    mmh_pve = np.linalg.norm(pred_g_verts - gt_verts, axis=-1).mean() * 1000
    assert doc["pve_mmhuman3d_mm"] == pytest.approx(mmh_pve, abs=1e-3)
    pred = preds["keypoints_3d"].astype(np.float64)
    pred_mm = (pred - pred[:, :1])[:, J14] * 1000
    gt_mm = (gt - gt[:, :1])[:, J14] * 1000
    assert doc["mpjpe_mm"] == pytest.approx(np.linalg.norm(pred_mm - gt_mm, axis=-1).mean(), abs=1e-3)
    assert doc["pa_mpjpe_mm"] == pytest.approx(_pa_errors(pred_mm, gt_mm).mean(), abs=1e-3)
    assert doc["pa_mpjpe_mm"] < doc["mpjpe_mm"]
    assert np.allclose(preds["frame_mpjpe_mm"], np.linalg.norm(pred_mm - gt_mm, axis=-1).mean(-1), atol=1e-3)

    # the prediction of frame 0 equals a direct forward pass on a crop made with OpenCV 4.x's warp
    import cv2

    from gtacli.data.crop import affine_transform, normalize

    model = build_estimator(layout).eval()
    load_weights(model, random_checkpoint)
    img = cv2.imread(str(layout.image("pw3d", hd.image_paths([0])[0])))
    x, y, w, h = hd.bbox_xywh([0])[0][:4]
    patch = cv2.warpAffine(img, affine_transform(np.array([x + w / 2, y + h / 2]), max(w, h)), (224, 224))
    with torch.no_grad():
        direct = model(torch.from_numpy(normalize(patch))[None])
    assert np.allclose(direct["pred_pose"][0].numpy(), preds["pred_pose"][0], atol=1e-5)
    assert np.allclose(direct["pred_shape"][0].numpy(), preds["pred_shape"][0], atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "dataset, source, target",
    [("h36m", "spin_h36m_train.npz", "h36m_valid_protocol2.npz"),
     ("mpi_inf_3dhp", "spin_mpi_inf_3dhp_train.npz", "mpi_inf_3dhp_test.npz")],
)  # fmt: skip
def test_eval_keypoint_datasets(sample_tree, random_checkpoint, tmp_path, dataset, source, target):
    layout = _view(sample_tree, tmp_path / "data")
    src = HumanData.load(sample_tree / "preprocessed_datasets" / source)
    fields = {k: src[k] for k in ("image_path", "bbox_xywh", "keypoints3d", "keypoints3d_mask")}
    fields["image_path"] = list(src.image_paths())
    write_human_data(layout.preprocessed / target, fields)
    preds_file = tmp_path / "p.npz"
    result, stdout, stderr = _invoke(
        "--dataset", dataset, "--checkpoint", str(random_checkpoint), "--data-root", str(layout.root),
        "--limit", "4", "--workers", "0", "--json", "--save-predictions", str(preds_file),
    )  # fmt: skip
    assert result.exit_code == 0, stderr
    doc = json.loads(stdout)
    assert doc["frames"] == 4
    pred = np.load(preds_file)["keypoints_3d"].astype(np.float64)
    gt = src["keypoints3d"][:4][:, H36M_SLOTS, :3].astype(np.float64)
    pred_mm, gt_mm = (pred - pred[:, :1]) * 1000, (gt - gt[:, :1]) * 1000
    if dataset == "h36m":
        pred_mm, gt_mm = pred_mm[:, J14], gt_mm[:, J14]
    errors = np.linalg.norm(pred_mm - gt_mm, axis=-1)
    assert doc["mpjpe_mm"] == pytest.approx(errors.mean(), abs=1e-3)
    assert doc["pa_mpjpe_mm"] == pytest.approx(_pa_errors(pred_mm, gt_mm).mean(), abs=1e-3)
    if dataset == "mpi_inf_3dhp":
        assert doc["pck_150mm"] == pytest.approx(100 * (errors < 150).mean(), abs=1e-3)
        levels = np.linspace(0, 150, 31)
        assert doc["auc"] == pytest.approx(100 * np.mean([(errors < t).mean() for t in levels]), abs=1e-3)
    else:
        assert "pve_mm" not in doc


def _one_line_error(result, stderr: str, path: Path) -> None:
    assert result.exit_code == 1, stderr
    lines = [line for line in stderr.strip().splitlines() if line.startswith("error")]
    assert len(lines) == 1 and str(path) in lines[0], stderr
    assert "Traceback" not in stderr


def test_wrong_architecture_checkpoint(sample_tree, tmp_path):
    bad = tmp_path / "resnet18.pth"
    torch.save({"state_dict": {"backbone.layer1.0.conv1.weight": torch.zeros(64, 64, 3, 3)}}, bad)
    result, _, stderr = _invoke("--checkpoint", str(bad), "--data-root", str(sample_tree), "--limit", "1")
    _one_line_error(result, stderr, bad)
    assert "wrong architecture" in stderr


def test_annotation_without_smpl_or_gender(sample_tree, tmp_path):
    layout = _view(sample_tree, tmp_path / "data")
    src = HumanData.load(sample_tree / "preprocessed_datasets" / "pw3d_test.npz")
    base = {"image_path": list(src.image_paths()), "bbox_xywh": src.bbox_xywh()}
    target = layout.preprocessed / "pw3d_test.npz"
    write_human_data(target, base)
    ckpt = layout.spin_official
    result, _, stderr = _invoke("--checkpoint", str(ckpt), "--data-root", str(layout.root))
    _one_line_error(result, stderr, target)
    assert "SMPL" in stderr
    write_human_data(target, {**base, "smpl": src.smpl()})
    result, _, stderr = _invoke("--checkpoint", str(ckpt), "--data-root", str(layout.root))
    _one_line_error(result, stderr, target)
    assert "gender" in stderr


def test_missing_image(sample_tree, tmp_path):
    layout = _view(sample_tree, tmp_path / "data")
    src = HumanData.load(sample_tree / "preprocessed_datasets" / "pw3d_test.npz")
    paths = list(src.image_paths())
    paths[1] = "imageFiles/courtyard_basketball_00/image_99999.jpg"
    write_human_data(layout.preprocessed / "pw3d_test.npz",
                     {"image_path": paths, "bbox_xywh": src.bbox_xywh(), "smpl": src.smpl(), "meta": src.meta()})  # fmt: skip
    result, _, stderr = _invoke("--checkpoint", str(layout.spin_official), "--data-root", str(layout.root))
    _one_line_error(result, stderr, layout.image("pw3d", paths[1]))


def test_truncated_annotation(sample_tree, tmp_path):
    layout = _view(sample_tree, tmp_path / "data")
    target = layout.preprocessed / "pw3d_test.npz"
    data = (sample_tree / "preprocessed_datasets" / "pw3d_test.npz").read_bytes()
    target.write_bytes(data[: len(data) // 2])
    result, _, stderr = _invoke("--checkpoint", str(layout.spin_official), "--data-root", str(layout.root))
    _one_line_error(result, stderr, target)


def test_backbone_only_checkpoint_cannot_be_evaluated(sample_tree, tmp_path):
    from gtacli.model.estimator import build_estimator

    model = build_estimator(DataLayout(sample_tree))
    path = tmp_path / "resnet50-imagenet.pth"
    torch.save(
        {k[len("backbone.") :]: v for k, v in model.state_dict().items() if k.startswith("backbone.")}, path
    )
    result, _, stderr = _invoke("--checkpoint", str(path), "--data-root", str(sample_tree), "--limit", "1")
    _one_line_error(result, stderr, path)


def test_undecodable_image_is_one_line_from_the_worker(sample_tree, tmp_path):
    root = tmp_path / "data"
    layout = _view(sample_tree, root)
    (root / "datasets").unlink()
    bad = layout.image("pw3d", "imageFiles/broken_00/image_00000.jpg")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"\xff\xd8 this is not a jpeg")
    write_human_data(
        layout.preprocessed / "pw3d_test.npz",
        {"image_path": ["imageFiles/broken_00/image_00000.jpg"], "bbox_xywh": np.array([[0, 0, 10, 10, 1.0]]),
         "smpl": {"betas": np.zeros((1, 10)), "body_pose": np.zeros((1, 69)), "global_orient": np.zeros((1, 3))},
         "meta": {"gender": ["f"]}},
    )  # fmt: skip
    result, _, stderr = _invoke(
        "--checkpoint", str(layout.spin_official), "--data-root", str(root), "--workers", "1"
    )
    _one_line_error(result, stderr, bad)
    assert "decoded" in stderr


@pytest.fixture
def restore_threads(monkeypatch):
    """`--threads` sets the thread count for the rest of the process: give torch's count back afterwards."""
    from gtacli import device

    before = torch.get_num_threads()
    monkeypatch.setattr(device, "_explicit_threads", None)
    yield
    torch.set_num_threads(before)


def _no_output_before_the_error(result, stdout: str, stderr: str, code: int = 2) -> None:
    """Failed at the option check: one error line, no header, no synthetic banner, no result."""
    assert result.exit_code == code, stderr
    assert stdout.strip() == ""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error"), stderr
    assert "Traceback" not in stderr


def test_unknown_dataset_is_a_usage_error_before_any_output(sample_tree):
    result, stdout, stderr = _invoke(
        "--dataset", "3dpw-test", "--checkpoint", str(DataLayout(sample_tree).spin_official),
        "--data-root", str(sample_tree),
    )  # fmt: skip
    _no_output_before_the_error(result, stdout, stderr)
    assert "3dpw-test" in stderr and "pw3d, h36m, mpi_inf_3dhp" in stderr


def test_checkpoint_is_a_required_option(sample_tree):
    result = CliRunner().invoke(app, ["eval", "--data-root", str(sample_tree)])
    assert result.exit_code == 2 and "Missing option '--checkpoint'" in result.stderr
    assert "required" in CliRunner().invoke(app, ["eval", "--help"]).stdout


def test_bad_threads_environment_fails_before_any_output(sample_tree, restore_threads):
    args = [
        "eval",
        "--checkpoint",
        str(DataLayout(sample_tree).spin_official),
        "--data-root",
        str(sample_tree),
    ]
    result = CliRunner().invoke(app, args, env={"GTACLI_THREADS": "zero"})
    _no_output_before_the_error(result, result.stdout, result.stderr)
    assert "GTACLI_THREADS" in result.stderr


def test_unwritable_predictions_path_is_found_before_the_evaluation(sample_tree, tmp_path):
    blocker = tmp_path / "not_a_folder"
    blocker.write_text("a file where a folder is expected")
    target = blocker / "preds.npz"
    result, stdout, stderr = _invoke(
        "--checkpoint", str(DataLayout(sample_tree).spin_official), "--data-root", str(sample_tree),
        "--save-predictions", str(target),
    )  # fmt: skip
    _no_output_before_the_error(result, stdout, stderr)
    assert "cannot be written" in stderr and str(target) in stderr


def test_the_annotation_is_never_overwritten_even_with_force(sample_tree, tmp_path):
    ann = tmp_path / "pw3d_copy.npz"
    ann.write_bytes((sample_tree / "preprocessed_datasets" / "pw3d_test.npz").read_bytes())
    before = _sha256(ann)
    result, stdout, stderr = _invoke(
        "--checkpoint", str(DataLayout(sample_tree).spin_official), "--data-root", str(sample_tree),
        "--annotation", str(ann), "--save-predictions", str(ann), "--force",
    )  # fmt: skip
    _no_output_before_the_error(result, stdout, stderr)
    assert "never overwritten" in stderr and _sha256(ann) == before


def test_existing_predictions_file_needs_force_and_3dpw_alias_and_layout_line(
    sample_tree, random_checkpoint, tmp_path, restore_threads
):
    target = tmp_path / "preds.npz"
    target.write_bytes(b"the user's own file")
    common = ["--checkpoint", str(random_checkpoint), "--data-root", str(sample_tree), "--limit", "2",
              "--save-predictions", str(target)]  # fmt: skip
    result, stdout, stderr = _invoke("--dataset", "3dpw", *common)
    _no_output_before_the_error(result, stdout, stderr)
    assert "--force" in stderr and target.read_bytes() == b"the user's own file"

    result, stdout, stderr = _invoke(
        "--dataset", "3dpw", *common, "--force", "--threads", "1", "--workers", "0", "--engine", "torch"
    )
    assert result.exit_code == 0, stderr
    assert np.load(target)["index"].tolist() == [0, 1]  # replaced by the predictions
    # human output: the layout that ran and the thread/worker counts beside the timing
    layout_line = next(line for line in stdout.splitlines() if line.startswith("layout"))
    assert "channels-last float32" in layout_line
    engine_line = next(line for line in stdout.splitlines() if line.startswith("engine"))
    assert "torch" in engine_line and "1 threads" in engine_line
    time_line = next(line for line in stdout.splitlines() if line.startswith("time"))
    assert "1 threads, 0 workers" in time_line
    assert "evaluated 2 frames" in stderr and "channels-last, 1 threads, 0 workers" in stderr
    assert torch.get_num_threads() == 1


def test_json_reports_layout_threads_and_the_alias_resolves(sample_tree, tmp_path, restore_threads):
    result = CliRunner().invoke(
        app,
        ["eval", "--dataset", "3DPW", "--checkpoint", str(DataLayout(sample_tree).spin_official),
         "--data-root", str(sample_tree), "--limit", "1", "--workers", "0", "--json"],
        env={"GTACLI_THREADS": "1"},
    )  # fmt: skip
    assert result.exit_code == 0, result.stderr
    doc = json.loads(result.stdout)
    # --engine auto: onnxruntime on the CPU when gtacli[onnx] is installed (it runs NCHW), else torch
    from gtacli.model.engines import onnxruntime_available

    expected = "onnxruntime" if onnxruntime_available() else "torch"
    assert doc["engine"] == expected and doc["engine_info"]["name"] == expected
    assert doc["dataset"] == "pw3d" and doc["layout"] == (
        "NCHW" if expected == "onnxruntime" else "channels-last"
    )
    assert doc["threads"] == 1 and doc["engine_info"]["threads"] == 1  # GTACLI_THREADS, for either engine
    assert doc["workers"] == 0 and doc["exact"] is True


def test_nan_checkpoint_is_one_line_not_a_linalg_error(sample_tree, tmp_path):
    from gtacli.model.checkpoint import read_state_dict

    state, _, _, _ = read_state_dict(DataLayout(sample_tree).spin_official)
    state["head.fc1.weight"] = torch.full_like(state["head.fc1.weight"], float("nan"))
    bad = tmp_path / "nan.pth"
    torch.save({"state_dict": state}, bad)
    result, _, stderr = _invoke("--checkpoint", str(bad), "--data-root", str(sample_tree), "--limit", "1")
    _one_line_error(result, stderr, bad)
    assert "NaN or inf" in stderr and "LinAlgError" not in stderr
