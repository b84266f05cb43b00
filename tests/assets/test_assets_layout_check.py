"""check-layout goes from red to green as the files a job needs appear, and catches wrong content."""

from __future__ import annotations

import json

import numpy as np
import pytest
from layout_builder import SPIN_SETS, TreeBuilder

from gtacli.assets.layout_check import check_layout


def _items(report):
    return {i.item: i for i in report.items}


def test_demo_red_to_green(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    report = check_layout(b.root, "demo")
    assert not report.ok
    assert {i.item for i in report.items} == {"SMPL neutral", "smpl_mean_params", "checkpoint"}
    assert all(i.fix for i in report.items)
    assert "gtacli fetch --smpl-from" in _items(report)["SMPL neutral"].fix
    assert _items(report)["smpl_mean_params"].fix == "gtacli fetch smpl_mean_params"
    b.smpl("neutral")
    b.mean_params()
    report = check_layout(b.root, "demo")
    assert not report.ok and [i.item for i in report.items if not i.ok] == ["checkpoint"]
    b.checkpoint(b.layout.models / "my_model.pth")
    report = check_layout(b.root, "demo")
    assert report.ok, [(i.item, i.detail) for i in report.items if not i.ok]
    assert "6890 vertices" in _items(report)["SMPL neutral"].detail


def test_eval_pw3d_red_to_green_with_alias_and_images(tmp_path):
    b = TreeBuilder(tmp_path / "data", n=5)
    for g in ("neutral", "male", "female"):
        b.smpl(g)
    b.regressor("h36m")
    b.mean_params()
    b.checkpoint(b.layout.models / "m.pth")
    # the alias without gendered SMPL is not accepted
    b.annotation("pw3d", "spin_pw3d_test.npz")
    item = _items(check_layout(b.root, "eval-pw3d"))["annotation pw3d"]
    assert not item.ok and "meta" in item.detail
    # with smpl + meta.gender it is, and the report says it is the alias
    b.annotation("pw3d", "spin_pw3d_test.npz", smpl=True, gender=True)
    report = check_layout(b.root, "eval-pw3d")
    item = _items(report)["annotation pw3d"]
    assert item.ok and "alias" in item.detail and "3 m / 2 f" in item.detail
    assert not _items(report)["images pw3d"].ok  # no images yet
    b.images("pw3d", skip=2)  # one missing image: a sample of 5 of 5 paths sees it
    images = _items(check_layout(b.root, "eval-pw3d"))["images pw3d"]
    assert not images.ok and "1 of" in images.detail and "pw3d_0002" in images.detail
    b.images("pw3d")
    report = check_layout(b.root, "eval-pw3d")
    assert report.ok, [(i.item, i.detail) for i in report.items if not i.ok]
    deep = _items(check_layout(b.root, "eval-pw3d", deep=True))
    assert deep["images pw3d"].ok and "all 5 distinct" in deep["images pw3d"].detail
    # --deep also re-hashes files the manifest knows: our generated regressor is not the published one
    assert (
        not deep["J_regressor_h36m"].ok
        and "sha256 does not match the manifest" in deep["J_regressor_h36m"].detail
    )


def test_eval_needs_gendered_models(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.eval_pw3d()
    assert check_layout(b.root, "eval-pw3d").ok
    b.layout.smpl_model("female").unlink()
    report = check_layout(b.root, "eval-pw3d")
    assert [i.item for i in report.items if not i.ok] == ["SMPL female"]
    b.smpl("female", num_vertices=778)  # a MANO-sized model is not SMPL
    item = _items(check_layout(b.root, "eval-pw3d"))["SMPL female"]
    assert not item.ok and "778" in item.detail


def test_finetune_train_all_green_and_fits_rows_checked(tmp_path):
    b = TreeBuilder(tmp_path / "data", n=4)
    b.finetune()
    b.eval_pw3d()
    for job in ("finetune", "train", "demo", "eval-pw3d", "all"):
        report = check_layout(b.root, job)
        assert report.ok, (job, [(i.item, i.detail) for i in report.items if not i.ok])
    items = _items(check_layout(b.root, "finetune"))
    assert "only the SMPLify fitter" in items["gmm_08"].detail
    assert "no SMPL" in items["annotation h36m"].detail
    assert "static fits gta" not in items  # optional and absent: not listed
    assert {f"static fits {d}" for d in SPIN_SETS} <= set(items)
    # train needs gmm_08, finetune does not
    b.layout.gmm_prior.unlink()
    assert check_layout(b.root, "finetune").ok
    train = check_layout(b.root, "train")
    assert not train.ok and [i.item for i in train.items if not i.ok and i.required] == ["gmm_08"]
    # ImageNet weights are only needed for `train --init imagenet`: listed, not blocking
    imagenet = _items(train)["resnet50_imagenet"]
    assert not imagenet.ok and not imagenet.required
    assert not check_layout(b.root, "all").ok
    b.gmm()
    # fits rows must equal the annotation length
    b.fits("lsp", rows=3)
    item = _items(check_layout(b.root, "finetune"))["static fits lsp"]
    assert not item.ok and "3 rows" in item.detail and "4 frames" in item.detail
    b.fits("lsp")
    # wrong width
    np.save(b.layout.static_fits("coco"), np.zeros((4, 72)))
    item = _items(check_layout(b.root, "train"))["static fits coco"]
    assert not item.ok and "(4, 72)" in item.detail
    b.fits("coco")
    # GTA fits are optional; if present with the wrong rows it is a warning, the job still runs
    b.fits("gta", rows=2)
    report = check_layout(b.root, "finetune")
    assert report.ok and _items(report)["static fits gta"].status == "warn"
    # no cache folder (mmhuman3d trees often have none): fine while the data root is writable
    b.layout.cache.rmdir()
    cache = _items(check_layout(b.root, "finetune"))["cache folder"]
    assert cache.ok and "created on first run" in cache.detail


def test_h36m_alias_is_named(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.finetune()
    b.layout.annotation("h36m").rename(b.layout.preprocessed / "h36m_train.npz")
    item = _items(check_layout(b.root, "finetune"))["annotation h36m"]
    assert item.ok and item.path.endswith("h36m_train.npz") and "alias of spin_h36m_train.npz" in item.detail


def test_lock_file_hash_mismatch_is_reported(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.demo()
    path = b.layout.smpl_mean_params
    record = {"sha256": "0" * 64, "size": path.stat().st_size, "mtime_ns": path.stat().st_mtime_ns}
    b.layout.lock_file.write_text(json.dumps({"version": 1, "files": {"smpl_mean_params": record}}))
    assert check_layout(b.root, "demo").ok  # size and mtime match: trusted without --deep
    item = _items(check_layout(b.root, "demo", deep=True))["smpl_mean_params"]
    assert not item.ok and "lock file" in item.detail and item.fix == "gtacli fetch --force smpl_mean_params"


def test_truncated_npz_and_bad_checkpoint(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.demo()
    data = b.layout.smpl_mean_params.read_bytes()
    b.layout.smpl_mean_params.write_bytes(data[: len(data) // 2])
    item = _items(check_layout(b.root, "demo"))["smpl_mean_params"]
    assert not item.ok and "npz" in item.detail
    b.mean_params()
    b.checkpoint(b.layout.models / "my_model.pth", keys=("fc.weight",))
    item = _items(check_layout(b.root, "demo"))["checkpoint"]
    assert not item.ok and "head.fc1.weight" in item.detail


def test_synthetic_marker_is_reported(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.demo()
    b.layout.synthetic_marker.write_text("{}")
    assert check_layout(b.root, "demo").synthetic


def test_sample_tree_passes_check_layout_all(request):
    pytest.importorskip("gtacli.sample.tree", reason="gtacli/sample/tree.py is not built yet")
    root = request.getfixturevalue("sample_tree")
    report = check_layout(root, "all")
    assert report.synthetic
    assert report.ok, [(i.item, i.detail) for i in report.items if not i.ok]


def test_optional_gta_fits_may_be_longer_than_the_annotation(tmp_path):
    """docs/reproduction.md §7.2: gta_fits.npy needs at least one row per GTA sample; it is never read (GT SMPL overrides)."""
    b = TreeBuilder(tmp_path / "data", n=4)
    b.finetune()
    b.fits("gta", rows=6)
    item = _items(check_layout(b.root, "finetune"))["static fits gta"]
    assert item.ok and ">= annotation length 4" in item.detail
    b.fits("gta", rows=2)
    item = _items(check_layout(b.root, "finetune"))["static fits gta"]
    assert not item.ok and not item.required
