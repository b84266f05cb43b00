"""The training dataset on the sample tree: the batch dict of the train/fit contract, worker independence."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gtacli.data.crop import bbox_to_center_scale
from gtacli.data.mixed import MixedBatchSampler, MixedDataset, make_loader
from gtacli.data.train_dataset import TrainImageDataset, collate
from gtacli.layout import DataLayout
from gtacli.train.recipe import get_recipe

RECIPE = get_recipe("gta-spin-ft")


def _datasets(root):
    layout = DataLayout(root)
    return [TrainImageDataset(layout, name, RECIPE.augment) for name in RECIPE.data.datasets]


def test_batch_dict_follows_the_contract(sample_tree):
    datasets = _datasets(sample_tree)
    sampler = MixedBatchSampler(
        [len(d) for d in datasets], RECIPE.data.partition, num_data=6, batch_size=3, seed=1
    )
    batch = next(iter(make_loader(MixedDataset(datasets, 6), sampler, collate, workers=0)))
    shapes = {
        "img": (3, 3, 224, 224),
        "has_smpl": (3,),
        "smpl_body_pose": (3, 23, 3),
        "smpl_global_orient": (3, 3),
        "smpl_betas": (3, 10),
        "smpl_transl": (3, 3),
        "keypoints2d": (3, 49, 3),
        "keypoints3d": (3, 49, 4),
        "is_flipped": (3,),
        "rotation": (3,),
        "center": (3, 2),
        "scale": (3,),
        "sample_idx": (3,),
    }
    for key, shape in shapes.items():
        assert tuple(batch[key].shape) == shape, key
    assert batch["img"].dtype == torch.float32 and batch["rotation"].dtype == torch.float32
    assert batch["sample_idx"].dtype == torch.int64
    assert isinstance(batch["dataset_name"], list) and len(batch["dataset_name"]) == 3
    draws = next(iter(sampler))
    for i, draw in enumerate(draws):
        ds = datasets[draw.dataset]
        assert batch["dataset_name"][i] == ds.name and int(batch["sample_idx"][i]) == draw.index
        assert float(batch["has_smpl"][i]) == float(ds.has_smpl[draw.index])
        # the collected scale is the box side times the drawn scale factor (in [0.75, 1.25])
        _, side = bbox_to_center_scale(ds.bbox[draw.index])
        assert 0.75 * side - 1e-3 <= float(batch["scale"][i]) <= 1.25 * side + 1e-3


def test_has_smpl_rule_per_dataset(sample_tree):
    by_name = {d.name: d for d in _datasets(sample_tree)}
    assert by_name["gta"].all_have_smpl  # smpl, no has_smpl key -> 1 for all (docs/reproduction.md §2.6)
    assert not by_name["coco"].has_smpl.any()  # no smpl -> 0


def test_batches_do_not_depend_on_the_worker_count(sample_tree):
    datasets = _datasets(sample_tree)
    lengths = [len(d) for d in datasets]
    results = []
    for workers in (0, 2):
        sampler = MixedBatchSampler(lengths, RECIPE.data.partition, num_data=8, batch_size=4, seed=3)
        sampler.set_epoch(1)
        loader = make_loader(MixedDataset(datasets, 8), sampler, collate, workers=workers)
        results.append(list(loader))
    for a, b in zip(*results):
        for key in ("img", "keypoints2d", "keypoints3d", "smpl_global_orient", "rotation", "is_flipped"):
            np.testing.assert_array_equal(a[key].numpy(), b[key].numpy())
        assert a["dataset_name"] == b["dataset_name"]


def _annotation_with_nonfinite_rows(sample_tree, tmp_path, bad_rows):
    """A copy of the sample tree's LSP annotation with NaN in the box or inf in the 2D keypoints of `bad_rows`."""
    from gtacli.data.human_data import HumanData, write_human_data

    layout = DataLayout(sample_tree)
    source = HumanData.load(layout.annotation("lsp"))
    fields = {key: source[key] for key in source.keys()}
    fields["bbox_xywh"] = np.array(fields["bbox_xywh"], np.float32)
    fields["keypoints2d"] = np.array(fields["keypoints2d"], np.float32)
    for i, row in enumerate(bad_rows):
        if i % 2:
            fields["bbox_xywh"][row, 2] = np.nan
        else:
            fields["keypoints2d"][row, :, :2] = np.inf
    return write_human_data(tmp_path / "spin_lsp_train.npz", fields), len(source)


def test_nonfinite_samples_are_dropped_with_a_count_naming_the_file(sample_tree, tmp_path):
    path, n = _annotation_with_nonfinite_rows(sample_tree, tmp_path, [1, 2])
    messages = []
    ds = TrainImageDataset(
        DataLayout(sample_tree), "lsp", RECIPE.augment, annotation=path, warn=messages.append
    )
    assert len(ds) == n - 2 and ds.annotation_length == n
    assert len(messages) == 1 and str(path) in messages[0] and f"dropped 2 of {n}" in messages[0]
    # usable sample k is file row rows[k]: the fits and the sampler see the file's row numbers
    rows = [int(ds.sample(k, np.random.RandomState(0))["sample_idx"]) for k in range(len(ds))]
    assert rows == [r for r in range(n) if r not in (1, 2)]
    for k in range(len(ds)):
        out = ds.sample(k, np.random.RandomState(k))
        assert all(
            np.isfinite(out[key]).all() for key in ("img", "keypoints2d", "keypoints3d", "center", "scale")
        )


def test_a_dataset_with_no_finite_sample_is_refused(sample_tree, tmp_path):
    from gtacli.data.human_data import HumanData
    from gtacli.errors import BadFileError

    n = len(HumanData.load(DataLayout(sample_tree).annotation("lsp")))
    path, _ = _annotation_with_nonfinite_rows(sample_tree, tmp_path, list(range(n)))
    with pytest.raises(BadFileError, match="every sample") as info:
        TrainImageDataset(DataLayout(sample_tree), "lsp", RECIPE.augment, annotation=path)
    assert str(path) in str(info.value)


def test_collate_can_build_channels_last_batches(sample_tree):
    datasets = _datasets(sample_tree)
    samples = [datasets[0].sample(i, np.random.RandomState(i)) for i in range(2)]
    plain, nhwc = collate(samples), collate(samples, channels_last=True)
    assert nhwc["img"].is_contiguous(memory_format=torch.channels_last)
    assert not plain["img"].is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(plain["img"], nhwc["img"])  # same values, another memory layout
