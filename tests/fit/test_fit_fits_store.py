"""FitsStore: frame transforms against direct formulas, update/lookup round trip, row checks, atomic save."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from gtacli.errors import BadFileError, MissingFileError
from gtacli.fit.fits_store import FitsStore, load_fits_file, save_fits_file
from gtacli.layout import DataLayout

# docs/reproduction.md §3.5, typed here independently of gtacli.body.conventions
JOINT_PERM = [0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22]


def direct_flip(pose72: np.ndarray) -> np.ndarray:
    joints = pose72.reshape(24, 3)[JOINT_PERM].copy()
    joints[:, 1:] *= -1
    return joints.reshape(72)


def direct_rotate(global_orient: np.ndarray, rot_deg: float) -> np.ndarray:
    r = math.radians(rot_deg)
    rz_neg = np.array([[math.cos(r), math.sin(r), 0], [-math.sin(r), math.cos(r), 0], [0, 0, 1.0]])
    rmat, _ = cv2.Rodrigues(global_orient.reshape(3, 1))
    out, _ = cv2.Rodrigues(rz_neg @ rmat)
    return out.reshape(3)


def random_fits(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    fits = np.concatenate([rng.normal(0, 0.4, (n, 72)), rng.normal(0, 1.0, (n, 10))], axis=1)
    return fits


def test_lookup_is_flip_then_rotate():
    fits = random_fits(6)
    store = FitsStore({"lsp": fits})
    idx = torch.tensor([0, 3, 5, 3])
    rot = torch.tensor([0.0, 30.0, -45.0, 12.5])
    flip = torch.tensor([1, 0, 1, 1])
    pose, betas = store.lookup(["lsp"] * 4, idx, rot, flip, dtype=torch.float64)
    for b in range(4):
        row = fits[idx[b]]
        expected = direct_flip(row[:72]) if flip[b] else row[:72].copy()
        expected[:3] = direct_rotate(expected[:3], float(rot[b]))
        np.testing.assert_allclose(pose[b].numpy(), expected, atol=1e-9)
        np.testing.assert_allclose(betas[b].numpy(), row[72:], atol=0)
    # the other order (rotate, then flip: SPIN's FitsDict) gives a different global orient when both apply
    row = fits[5][:72].copy()
    row[:3] = direct_rotate(row[:3], -45.0)
    assert not np.allclose(direct_flip(row)[:3], pose[2, :3].numpy(), atol=1e-3)


def test_lookup_device_dtype_and_batch_of_one():
    store = FitsStore({"coco": random_fits(3)})
    pose, betas = store.lookup(["coco"], torch.tensor([2]), torch.tensor([0.0]), torch.tensor([0]))
    assert pose.shape == (1, 72) and betas.shape == (1, 10)
    assert pose.dtype == torch.float32
    np.testing.assert_allclose(pose[0].numpy(), random_fits(3)[2, :72], atol=1e-6)


def test_update_then_lookup_round_trips_and_stores_canonical():
    fits = random_fits(5, seed=1)
    store = FitsStore({"lsp": fits.copy(), "mpii": random_fits(4, seed=2)})
    names = ["lsp", "mpii", "lsp"]
    idx = torch.tensor([1, 2, 4])
    rot = torch.tensor([20.0, -60.0, 0.0])
    flip = torch.tensor([1, 1, 0])
    rng = np.random.default_rng(3)
    new_pose = torch.tensor(rng.normal(0, 0.3, (3, 72)))
    new_betas = torch.tensor(rng.normal(0, 0.5, (3, 10)))
    mask = torch.tensor([True, True, False])
    assert store.update(names, idx, rot, flip, new_pose, new_betas, mask) == 2
    pose, betas = store.lookup(names, idx, rot, flip, dtype=torch.float64)
    np.testing.assert_allclose(pose[:2].numpy(), new_pose[:2].numpy(), atol=1e-9)
    np.testing.assert_allclose(betas[:2].numpy(), new_betas[:2].numpy(), atol=1e-12)
    np.testing.assert_allclose(store.array("lsp")[4], fits[4])  # masked out: untouched
    # canonical row = undo rotation (R_z(+r)), then undo flip
    canon = new_pose[0].numpy().copy()
    canon[:3] = direct_rotate(canon[:3], -20.0)
    np.testing.assert_allclose(store.array("lsp")[1, :72], direct_flip(canon), atol=1e-9)
    assert {k: v.tolist() for k, v in store.take_updates().items()} == {"lsp": [1], "mpii": [2]}
    assert store.take_updates() == {}
    assert store.all_reduce_updates() == 0  # not distributed: no-op


def test_from_layout_checks_rows_and_missing(tmp_path):
    layout = DataLayout(tmp_path)
    save_fits_file(layout.static_fits("lsp"), random_fits(7))
    store = FitsStore.from_layout(layout, ["lsp", "gta"], lengths={"lsp": 7, "gta": 3}, missing_ok=["gta"])
    assert store.array("lsp").shape == (7, 82) and store.is_zero_filled("gta")
    pose, betas = store.lookup(["gta"], torch.tensor([2]), torch.tensor([10.0]), torch.tensor([1]))
    assert torch.count_nonzero(pose[:, 3:]) == 0 and torch.count_nonzero(betas) == 0
    np.testing.assert_allclose(pose[0, :3].numpy(), direct_rotate(np.zeros(3), 10.0), atol=1e-6)
    # zero-filled datasets allocate nothing, stay out of checkpoints until written, and check bounds
    assert set(store.state_dict()) == {"lsp"}
    with pytest.raises(IndexError):
        store.lookup(["gta"], torch.tensor([3]), torch.tensor([0.0]), torch.tensor([0]))
    row = random_fits(1, seed=9)
    store.update(
        ["gta"],
        torch.tensor([1]),
        torch.tensor([0.0]),
        torch.tensor([0]),
        torch.tensor(row[:, :72]),
        torch.tensor(row[:, 72:]),
    )
    np.testing.assert_allclose(store.rows(["gta", "gta"], np.array([1, 2])), np.stack([row[0], np.zeros(82)]))
    assert store.state_dict()["gta"].shape == (3, 82)
    with pytest.raises(BadFileError, match="7 rows"):
        FitsStore.from_layout(layout, ["lsp"], lengths={"lsp": 8})
    with pytest.raises(MissingFileError, match="coco"):
        FitsStore.from_layout(layout, ["coco"])
    np.save(layout.static_fits("mpii"), np.zeros((4, 81)))
    with pytest.raises(BadFileError, match="82"):
        FitsStore.from_layout(layout, ["mpii"])


def test_save_load_and_state_dict(tmp_path):
    fits = random_fits(4, seed=5)
    store = FitsStore({"lsp": fits})
    (path,) = store.save(tmp_path / "out")
    assert path.name == "lsp_fits.npy"
    loaded = np.load(path, allow_pickle=False)
    assert loaded.dtype == np.float64 and loaded.shape == (4, 82)
    np.testing.assert_array_equal(loaded, fits)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["lsp_fits.npy"]  # no temp file left behind
    state = store.state_dict()
    state["lsp"][0, 0] = 42.0
    assert store.array("lsp")[0, 0] != 42.0  # a copy
    store.load_state_dict(state)
    assert store.array("lsp")[0, 0] == 42.0
    tensors = store.state_dict(as_tensors=True)
    assert tensors["lsp"].dtype == torch.float64 and tensors["lsp"].shape == (4, 82)
    torch.save(tensors, tmp_path / "ckpt.pth")
    restored = FitsStore({"lsp": np.zeros((4, 82))}, lengths={"lsp": 4})
    restored.load_state_dict(torch.load(tmp_path / "ckpt.pth", weights_only=True))
    np.testing.assert_array_equal(restored.array("lsp"), store.array("lsp"))
    with pytest.raises(BadFileError, match="rows"):
        restored.load_state_dict({"lsp": np.zeros((5, 82))})
    np.testing.assert_array_equal(load_fits_file(path, expected_rows=4), fits)


def test_failed_save_leaves_no_file(tmp_path):
    final = tmp_path / "bad_fits.npy"
    with pytest.raises(BadFileError):
        save_fits_file(final, np.full((2, 82), np.nan))
    assert list(tmp_path.iterdir()) == []


def test_a_present_fits_file_of_a_gt_smpl_dataset_is_not_loaded(tmp_path):
    """gta's samples all carry GT SMPL, so its fits are never read: even a present (and longer) file stays on
    disk instead of costing ~0.9 GB per process (docs/reproduction.md §7.2, decision 3)."""
    layout = DataLayout(tmp_path)
    save_fits_file(layout.static_fits("lsp"), random_fits(7))
    save_fits_file(layout.static_fits("gta"), random_fits(5, seed=3))  # 5 rows for 3 samples: allowed
    store = FitsStore.from_layout(layout, ["lsp", "gta"], lengths={"lsp": 7, "gta": 3}, missing_ok=["gta"])
    assert store.is_zero_filled("gta") and set(store.state_dict()) == {"lsp"}
