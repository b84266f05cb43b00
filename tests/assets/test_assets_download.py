"""Downloads against a real local HTTP server with injected faults (fault_server.FaultServer).

The manifest's own URLs are pointed at the server with a mirror (scheme and host replaced, path and
query kept), so these tests exercise the real registry entries.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pytest
from fault_server import FaultServer, oss_crc64

from gtacli.assets.download import fetch_asset, fetch_assets, verify_present
from gtacli.assets.lockfile import read_lock_file
from gtacli.assets.manifest import load_manifest
from gtacli.assets.transfer import FetchOptions, candidate_urls, mirror_url, parse_mirrors, part_path
from gtacli.errors import UsageError
from gtacli.layout import DataLayout

EXTRAS = ("J_regressor_extra", "J_regressor_h36m", "smpl_mean_params", "gmm_08")
# sha256 from ../shared/assets/PROVENANCE.md (independent of the manifest file)
KNOWN_SHA256 = {
    "J_regressor_extra": "cc968ea4f9855571e82f90203280836b01f13ee42a8e1b89d8d580b801242a89",
    "J_regressor_h36m": "c655cd7013d7829eb9acbebf0e43f952a3fa0305a53c35880e39192bfb6444a0",
    "smpl_mean_params": "6fd6dd687800da946d0a0492383f973b92ec20f166a0b829775882868c35fcdd",
    "gmm_08": "e1374908aae055a2afa01a2cd9a169bc6cfec1ceb7aa590e201a47b383060491",
}
LOG_TEXT = (
    "2022-07-08 12:00:00,000 - mmhuman3d - INFO - Epoch [1][50/3125] lr: 3.000e-05 loss: 0.5\n" * 4000
).encode()


@pytest.fixture()
def manifest():
    return load_manifest()


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def _opts(*mirrors, **kw):
    kw.setdefault("retries", 3)
    kw.setdefault("backoff_s", 0.01)
    return FetchOptions(mirrors=list(mirrors), **kw)


def _extra_bytes(shared_assets: Path, manifest, name: str) -> bytes:
    return (shared_assets / Path(manifest.get(name).dest).name).read_bytes()


def _nothing_at(dest: Path) -> bool:
    return not dest.exists()


# ---------------------------------------------------------------------------------------------------


def test_mirror_replaces_scheme_and_host_and_keeps_path_and_query():
    url = "https://openmmlab-share.oss-cn-hangzhou.aliyuncs.com/mmhuman3d/models/gmm_08.pkl?versionId=ABC"
    assert (
        mirror_url(url, "http://127.0.0.1:8000")
        == "http://127.0.0.1:8000/mmhuman3d/models/gmm_08.pkl?versionId=ABC"
    )
    assert (
        mirror_url(url, "http://m.example/pre/")
        == "http://m.example/pre/mmhuman3d/models/gmm_08.pkl?versionId=ABC"
    )
    assert candidate_urls(url, ["http://a", "http://b"]) == [
        "http://a/mmhuman3d/models/gmm_08.pkl?versionId=ABC",
        "http://b/mmhuman3d/models/gmm_08.pkl?versionId=ABC",
        url,
    ]


def test_mirrors_from_option_then_environment():
    assert parse_mirrors(["http://a, http://b"], env="http://c http://a") == [
        "http://a",
        "http://b",
        "http://c",
    ]
    with pytest.raises(UsageError):
        parse_mirrors(["ftp//nope"], env="")


def test_manifest_lists_every_published_asset_in_its_group(manifest):
    groups = {g: {a.name for a in manifest.in_group(g)} for g in manifest.groups}
    assert groups["extras"] == set(EXTRAS)
    assert groups["fits"] == {
        f"{d}_fits" for d in ("coco", "h36m", "lspet", "lsp", "mpii", "mpi_inf_3dhp", "gta")
    }
    # spin_official.pth for the fine-tune; torchvision's ImageNet ResNet-50 for `train --init imagenet`
    assert groups["pretrained"] == {"spin_official", "resnet50_imagenet"}
    assert groups["models"] == {"resnet50_spin_gta_ft", "resnet50_spin_gta_ft_log"}
    assert groups["annotations"] == {
        "pw3d_test",
        "spin_pw3d_test",
        "spin_coco_2014_train",
        "spin_lsp_train",
        "spin_lspet_train",
        "spin_mpii_train",
        "spin_mpi_inf_3dhp_train",
        "spin_h36m_train",
        "gta_human_4x",
    }
    for name, sha in KNOWN_SHA256.items():
        assert manifest.get(name).sha256 == sha
    # the published checkpoint's name carries sha256[:8] (docs/reproduction.md §5.2)
    ft = manifest.get("resnet50_spin_gta_ft")
    assert ft.sha256_prefix == "2538df81" and "2538df81" in ft.dest
    assert all(
        a.url.startswith("https://openmmlab-share.oss-cn-hangzhou.aliyuncs.com/")
        for a in manifest.assets
        if a.name not in ("resnet50_imagenet", "detector", "keypoints")
    )
    # the keypoint model: OpenMMLab's RTMPose ONNX SDK zip; no published checksum -> the lock file records it
    keypoints = manifest.get("keypoints")
    assert groups["keypoints"] == {"keypoints"} and keypoints.sha256 is None
    assert keypoints.url.startswith("https://download.openmmlab.com/mmpose/") and keypoints.url.endswith(
        ".zip"
    )
    assert keypoints.validator == {"kind": "onnx_zip"}
    # the demo's person detector: OpenCV model zoo's YOLOX, pinned by its Git LFS sha256
    detector = manifest.get("detector")
    assert groups["detector"] == {"detector"} and len(detector.sha256) == 64
    assert detector.dest.startswith("detectors/") and detector.dest.endswith(".onnx")
    imagenet = manifest.get("resnet50_imagenet")
    # torchvision names its weights <arch>-<sha256[:8]>.pth
    assert imagenet.url.endswith("/resnet50-0676ba61.pth") and imagenet.sha256_prefix == "0676ba61"


@pytest.mark.shared_assets
def test_four_extras_download_and_verify_against_known_sha256(shared_assets, manifest, server, tmp_path):
    for name in EXTRAS:
        server.add(manifest.get(name).url, _extra_bytes(shared_assets, manifest, name))
    layout = DataLayout(tmp_path / "data")
    results = fetch_assets(manifest.select(groups=["extras"]), layout, _opts(server.url), jobs=2)
    assert [r.status for r in results] == ["downloaded"] * 4
    for r in results:
        assert r.verified_by == "sha256"
        assert hashlib.sha256(Path(r.dest).read_bytes()).hexdigest() == KNOWN_SHA256[r.name]
    # the query string (versionId) reached the mirror unchanged
    assert all(e["query"].startswith("versionId=") for e in server.log)
    lock = read_lock_file(layout)
    assert {k: v["sha256"] for k, v in lock.items()} == KNOWN_SHA256
    # a second run verifies and skips: no new requests
    n_requests = len(server.log)
    again = fetch_assets(manifest.select(groups=["extras"]), layout, _opts(server.url))
    assert [r.status for r in again] == ["present"] * 4
    assert len(server.log) == n_requests


@pytest.mark.shared_assets
def test_body_cut_midway_resumes_with_range(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("J_regressor_h36m")
    data = _extra_bytes(shared_assets, manifest, "J_regressor_h36m")
    server.add(asset.url, data, etag='"v1"', faults=[("cut", 300_000)])
    layout = DataLayout(tmp_path)
    result = fetch_asset(asset, layout, _opts(server.url))
    assert result.status == "downloaded", result.detail
    first, second = server.requests_for(asset.url)
    assert first["range"] is None and first["bytes"] == 300_000
    # the retry asked only for the rest, and got exactly the rest
    assert second["range"] is not None and second["status"] == 206
    kept = int(second["range"].split("=")[1].rstrip("-"))
    assert 0 < kept <= 300_000
    assert second["if_range"] == '"v1"'
    assert second["bytes"] == len(data) - kept
    assert Path(result.dest).read_bytes() == data
    assert not part_path(Path(result.dest)).exists()


@pytest.mark.shared_assets
def test_interrupted_run_leaves_part_and_next_run_resumes(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("gmm_08")
    data = _extra_bytes(shared_assets, manifest, "gmm_08")
    server.add(asset.url, data, sticky_fault=("cut", 200_000))
    layout = DataLayout(tmp_path)
    failed = fetch_asset(asset, layout, _opts(server.url, retries=1))
    dest = asset.path(tmp_path)
    assert failed.status == "failed" and _nothing_at(dest)
    have = part_path(dest).stat().st_size
    assert 0 < have <= 200_000
    server.files[next(iter(server.files))].sticky_fault = None
    done = fetch_asset(asset, layout, _opts(server.url))
    assert done.status == "downloaded"
    last = server.log[-1]
    assert last["range"] == f"bytes={have}-" and last["bytes"] == len(data) - have
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == KNOWN_SHA256["gmm_08"]


@pytest.mark.shared_assets
def test_503_is_retried(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("smpl_mean_params")
    server.add(
        asset.url, _extra_bytes(shared_assets, manifest, "smpl_mean_params"), faults=[("status", 503)] * 2
    )
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "downloaded"
    assert [e["status"] for e in server.log] == [503, 503, 200]


@pytest.mark.shared_assets
def test_corrupt_bytes_with_right_length_fail_and_leave_nothing(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("J_regressor_extra")
    server.add(
        asset.url, _extra_bytes(shared_assets, manifest, "J_regressor_extra"), sticky_fault=("corrupt",)
    )
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    dest = asset.path(tmp_path)
    assert result.status == "failed" and "sha256 mismatch" in result.detail
    assert _nothing_at(dest) and not part_path(dest).exists()
    assert "\n" not in result.detail


@pytest.mark.shared_assets
def test_mirrors_are_tried_in_order(shared_assets, manifest, tmp_path):
    asset = manifest.get("J_regressor_extra")
    data = _extra_bytes(shared_assets, manifest, "J_regressor_extra")
    with FaultServer() as bad, FaultServer() as good:
        bad.add(asset.url, data, sticky_fault=("corrupt",))
        good.add(asset.url, data)
        result = fetch_asset(asset, DataLayout(tmp_path), _opts(bad.url, good.url))
        assert result.status == "downloaded" and result.url.startswith(good.url)
        assert len(bad.log) == 1 and len(good.log) == 1
        assert bad.log[0]["path"] == good.log[0]["path"] == "/mmhuman3d/models/J_regressor_extra.npy"


@pytest.mark.shared_assets
def test_server_without_range_support_restarts_from_zero(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("J_regressor_h36m")
    data = _extra_bytes(shared_assets, manifest, "J_regressor_h36m")
    server.add(asset.url, data, faults=[("cut", 400_000), ("norange",)])
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "downloaded"
    first, second = server.log
    assert second["range"] is not None and second["status"] == 200 and second["bytes"] == len(data)
    assert Path(result.dest).read_bytes() == data  # not the old prefix + the whole file


def test_wrong_content_length_fails_after_retries(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, sticky_fault=("length", len(LOG_TEXT) + 1000))
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url, retries=3))
    assert result.status == "failed" and "gave up after 3 attempts" in result.detail
    assert "IncompleteRead" in result.detail or "short read" in result.detail
    assert len(server.log) == 3
    assert _nothing_at(asset.path(tmp_path))


def test_server_checksums_verify_when_the_manifest_has_no_hash(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    assert asset.sha256 is None and asset.sha256_prefix is None
    md5 = hashlib.md5(LOG_TEXT).hexdigest()
    server.add(asset.url, LOG_TEXT, content_md5=True, etag=f'"{md5.upper()}"', crc64=oss_crc64(LOG_TEXT))
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "downloaded"
    assert result.verified_by == "Content-MD5 + ETag MD5"  # MD5 known: the slower CRC-64 is not needed
    assert base64.b64decode(base64.b64encode(hashlib.md5(LOG_TEXT).digest())).hex() == md5


def test_crc64_header_alone_verifies(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, etag='"multipart-upload-3"', crc64=oss_crc64(LOG_TEXT))
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "downloaded" and result.verified_by == "CRC-64"


def test_wrong_crc64_header_rejects_the_file(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, crc64=oss_crc64(LOG_TEXT) ^ 1)
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "failed" and "CRC-64 mismatch" in result.detail
    assert _nothing_at(asset.path(tmp_path))


def test_etag_md5_catches_corruption(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, etag=f'"{hashlib.md5(LOG_TEXT).hexdigest()}"', sticky_fault=("corrupt",))
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "failed" and "ETag" in result.detail


def test_changed_file_on_server_restarts_the_download(manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    old = LOG_TEXT
    new = LOG_TEXT.replace(b"loss: 0.5", b"loss: 0.4")
    served = server.add(asset.url, old, etag='"v1"', faults=[("cut", 100_000)])
    layout = DataLayout(tmp_path)
    first = fetch_asset(asset, layout, _opts(server.url, retries=1))
    assert first.status == "failed"
    served.data, served.etag = new, '"v2"'  # the object was replaced meanwhile
    second = fetch_asset(asset, layout, _opts(server.url))
    assert second.status == "downloaded"
    assert server.log[-1]["if_range"] == '"v1"' and server.log[-1]["status"] == 200
    assert asset.path(tmp_path).read_bytes() == new


def _checkpoint_bytes(keys):
    import torch

    buf = io.BytesIO()
    torch.save({"state_dict": {k: torch.zeros(2) for k in keys}, "meta": {"epoch": 1}}, buf)
    return buf.getvalue()


def test_checkpoint_content_is_validated(manifest, server, tmp_path):
    asset = manifest.get("spin_official")
    good = _checkpoint_bytes(["backbone.conv1.weight", "head.fc1.weight", "head.decpose.weight"])
    server.add(asset.url, good, content_md5=True)
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "downloaded" and result.detail == "3 tensors"
    # a checkpoint without the HMR head is refused and nothing lands at the destination
    bad_root = tmp_path / "bad"
    server.add(asset.url, _checkpoint_bytes(["backbone.conv1.weight"]), content_md5=True)
    refused = fetch_asset(asset, DataLayout(bad_root), _opts(server.url))
    assert refused.status == "failed" and "head.fc1.weight" in refused.detail
    assert _nothing_at(asset.path(bad_root))


def test_not_enough_disk_space_is_reported_before_streaming(manifest, server, tmp_path):
    # a file the manifest says is an exabyte (so the announced length is not above the expected size)
    asset = dataclasses.replace(manifest.get("resnet50_spin_gta_ft_log"), size=1 << 60)
    server.add(asset.url, LOG_TEXT, sticky_fault=("length", 1 << 60))
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "failed" and "not enough free disk space" in result.detail
    assert server.log[0]["bytes"] >= 0 and _nothing_at(asset.path(tmp_path))


@pytest.mark.shared_assets
def test_lock_file_detects_a_changed_file(shared_assets, manifest, server, tmp_path):
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, content_md5=True)
    layout = DataLayout(tmp_path)
    assert fetch_asset(asset, layout, _opts(server.url)).status == "downloaded"
    record = json.loads(layout.lock_file.read_text())["files"][asset.name]
    assert record["sha256"] == hashlib.sha256(LOG_TEXT).hexdigest() and record["size"] == len(LOG_TEXT)
    assert record["dest"] == asset.dest and record["url"].startswith(server.url)
    assert verify_present(asset, layout).status == "ok"
    asset.path(tmp_path).write_bytes(LOG_TEXT.replace(b"INFO", b"WARN"))
    check = verify_present(asset, layout)
    assert check.status == "invalid" and "lock-file" in check.detail


def test_failed_file_does_not_stop_the_others(manifest, server, tmp_path):
    log_asset = manifest.get("resnet50_spin_gta_ft_log")
    ckpt = manifest.get("spin_official")
    server.add(log_asset.url, LOG_TEXT)
    server.add(ckpt.url, b"", sticky_fault=("status", 404))
    results = fetch_assets([ckpt, log_asset], DataLayout(tmp_path), _opts(server.url))
    assert [r.status for r in results] == ["failed", "downloaded"]
    assert "HTTP 404" in results[0].detail


def test_npy_validator_rejects_wrong_shape(manifest, server, tmp_path):
    asset = manifest.get("lsp_fits")
    buf = io.BytesIO()
    np.save(buf, np.zeros((5, 72)))
    server.add(asset.url, buf.getvalue(), content_md5=True)
    result = fetch_asset(asset, DataLayout(tmp_path), _opts(server.url))
    assert result.status == "failed" and "(5, 72)" in result.detail
    assert _nothing_at(asset.path(tmp_path))


def _pw3d_like(n: int = 2, nested: bool = True) -> dict:
    meta = {"gender": (["m", "f"] * n)[:n]}
    if nested:
        meta["nested"] = {"inner": np.arange(3)}  # a dict inside a dict
    return {
        "image_path": [f"imageFiles/seq_00/image_{i:05d}.jpg" for i in range(n)],
        "bbox_xywh": np.tile(np.array([[10.0, 20.0, 100.0, 200.0, 1.0]]), (n, 1)),
        "smpl": {
            "body_pose": np.zeros((n, 23, 3)),
            "global_orient": np.zeros((n, 3)),
            "betas": np.zeros((n, 10)),
        },
        "meta": meta,
        "config": "pw3d",
    }


def test_large_annotation_gets_its_memory_mapped_cache_at_download(manifest, server, tmp_path, monkeypatch):
    """A GTA-size HumanData file is slow to open the first time; fetch pays that once (issue 4 benchmark b)."""
    from gtacli.data import human_data

    fields = _pw3d_like(5, nested=False)
    source = tmp_path / "src" / "pw3d_test.npz"
    human_data.write_human_data(source, fields)
    data = source.read_bytes()
    monkeypatch.setattr(human_data, "CACHE_MIN_BYTES", 1)  # treat this small file as a large one
    asset = manifest.get("pw3d_test")
    server.add(asset.url, data, content_md5=True)
    layout = DataLayout(tmp_path / "data")
    result = fetch_asset(asset, layout, _opts(server.url))
    assert result.status == "downloaded" and "memory-mapped cache" in result.detail
    folder = human_data.cache_folder(layout.annotation("pw3d"), layout.cache)
    assert (folder / human_data.CACHE_MANIFEST).is_file()
    assert (folder / "bbox_xywh.npy").is_file()
    np.testing.assert_array_equal(np.load(folder / "bbox_xywh.npy"), fields["bbox_xywh"])


def test_cache_failure_after_the_move_does_not_fail_the_fetch(manifest, server, tmp_path, monkeypatch):
    from gtacli.data import human_data

    source = tmp_path / "src" / "pw3d_test.npz"
    human_data.write_human_data(source, _pw3d_like())
    monkeypatch.setattr(human_data, "CACHE_MIN_BYTES", 1)
    asset = manifest.get("pw3d_test")
    server.add(asset.url, source.read_bytes(), content_md5=True)
    later = manifest.get("gmm_08")
    server.add(later.url, b"not a gmm", content_md5=True)
    layout = DataLayout(tmp_path / "data")
    results = fetch_assets([asset, later], layout, _opts(server.url))
    assert results[0].status == "downloaded", results[0].detail  # in place, the run went on
    assert "no memory-mapped cache" in results[0].detail
    assert results[1].status == "failed"  # the next file was still attempted
    assert len(human_data.HumanData.load(layout.annotation("pw3d"), cache_dir=layout.cache)) == 2


def test_annotation_with_an_escaping_member_name_is_never_placed(manifest, server, tmp_path):
    import io
    import zipfile

    from gtacli.data import human_data

    source = tmp_path / "src" / "pw3d_test.npz"
    human_data.write_human_data(source, {k: v for k, v in _pw3d_like().items() if k != "meta"})
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.full(4, 7.0))
    with zipfile.ZipFile(source, "a") as zf:
        zf.writestr("../../../../escaped_x.npy", buf.getvalue())
    asset = manifest.get("pw3d_test")
    server.add(asset.url, source.read_bytes(), content_md5=True)
    result = fetch_asset(asset, DataLayout(tmp_path / "data"), _opts(server.url))
    assert result.status == "failed" and "not a plain name" in result.detail
    assert _nothing_at(asset.path(tmp_path / "data"))
    assert not list(tmp_path.parent.rglob("escaped_x*"))


def test_onnx_files_are_validated_by_loading_them_with_opencv(server, tmp_path):
    from onnx_bytes import relu_model

    from gtacli.assets.manifest import Asset

    good = Asset(
        name="detector", url="http://example.org/models/det.onnx", dest="pretrained_models/det.onnx",
        group="detector", validator={"kind": "onnx"},
    )  # fmt: skip
    bad = Asset(
        name="detector_bad", url="http://example.org/models/bad.onnx", dest="pretrained_models/bad.onnx",
        group="detector", validator={"kind": "onnx"},
    )  # fmt: skip
    server.add(good.url, relu_model(), content_md5=True)
    server.add(bad.url, b"\x08\x07garbage that is not a graph" * 10, content_md5=True)
    layout = DataLayout(tmp_path / "data")
    ok, refused = fetch_assets([good, bad], layout, _opts(server.url))
    assert ok.status == "downloaded" and "ONNX network" in ok.detail
    assert refused.status == "failed" and "ONNX" in refused.detail and "\n" not in refused.detail
    assert _nothing_at(bad.path(layout.root))


def test_positional_names_may_be_entries_or_groups_even_undeclared_ones(tmp_path):
    """`gtacli fetch detector`: the demo's entry is appended with its own group, not listed under `groups`."""
    import json

    path = tmp_path / "manifest.json"
    entry = {"url": "http://example.org/d.onnx", "validator": {"kind": "onnx"}}
    path.write_text(json.dumps({
        "groups": {"extras": "x"},
        "assets": [
            {"name": "gmm_08", "dest": "gmm_08.pkl", "group": "extras", "url": "http://example.org/g.pkl"},
            {"name": "detector", "dest": "pretrained_models/detector.onnx", "group": "detector", **entry},
            {"name": "detector_weights", "dest": "pretrained_models/w.onnx", "group": "detector", **entry},
        ],
    }))  # fmt: skip
    manifest = load_manifest(path)
    assert [a.name for a in manifest.select(["detector"])] == ["detector"]  # the entry wins over the group
    assert [a.name for a in manifest.select([], ["detector"])] == ["detector", "detector_weights"]
    assert [a.name for a in manifest.select(["extras"])] == ["gmm_08"]
    with pytest.raises(Exception, match="did you mean detector"):
        manifest.select(["detectr"])
