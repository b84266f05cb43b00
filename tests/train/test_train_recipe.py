"""Recipes hold docs/reproduction.md §6–7's numbers; overrides are typed."""

from __future__ import annotations

import pytest

from gtacli.errors import UsageError
from gtacli.train.recipe import apply_cli_overrides, get_recipe, recipe_from_dict


def test_gta_spin_ft_numbers():
    r = get_recipe("gta-spin-ft")
    assert r.datasets == ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta")
    expected = {
        "h36m": 0.175,
        "mpi_inf_3dhp": 0.075,
        "lsp": 0.05,
        "lspet": 0.05,
        "mpii": 0.05,
        "coco": 0.10,
        "gta": 0.5,
    }
    for name, p in zip(r.datasets, r.normalized_partition):
        assert p == pytest.approx(expected[name])
    assert (r.num_data, r.epochs, r.batch_size, r.lr, r.lr_schedule) == (100_000, 10, 32, 3e-5, "fixed")
    assert (r.adam_beta1, r.adam_beta2, r.adam_eps, r.weight_decay) == (0.9, 0.999, 1e-8, 0.0)
    assert r.grad_clip is False and r.grad_clip_max_norm == 35.0
    weights = (r.loss_keypoints3d_weight, r.loss_keypoints2d_weight, r.loss_vertex_weight)
    weights += (r.loss_smpl_pose_weight, r.loss_smpl_betas_weight, r.loss_camera_weight)
    assert weights == (100, 10, 2, 3, 0.02, 60)
    assert r.camera_prior_scale == 10 and r.focal_length == 5000 and r.img_res == 224
    assert (r.noise_factor, r.flip_prob, r.rot_factor, r.rot_prob, r.scale_factor) == (
        0.4,
        0.5,
        30,
        0.6,
        0.25,
    )
    assert r.registration_mode == "static" and r.registration_threshold == 10.0
    assert r.openpose_confidence == "detector" and r.fits_missing_ok == ("gta",)
    assert r.init == "spin_official" and not r.bn_eval and r.dropout
    # mmhuman3d trained in float32 (the config has no fp16 section): no mixed precision unless asked for
    assert r.amp is False and get_recipe("spin").amp is False


def test_spin_recipe_is_in_the_loop():
    r = get_recipe("spin")
    assert len(r.datasets) == 6 and "gta" not in r.datasets
    assert r.registration_mode == "in_the_loop" and r.smplify_iters_per_stage == 50 and r.smplify_lr == 1e-2
    assert r.lr_schedule == "step" and r.lr_steps == (3,) and r.lr_gamma == 0.1 and r.batch_size == 8
    assert r.init == "imagenet"


def test_overrides_are_typed_and_dedicated_options_win():
    r = apply_cli_overrides(
        get_recipe("gta-spin-ft"),
        epochs=2,
        lr=1e-3,
        settings={"grad_clip": "true", "partition": "1,1,1,1,1,1,2", "batch_size": "4", "epochs": "5"},
    )
    assert r.epochs == 2 and r.lr == 1e-3 and r.grad_clip is True and r.batch_size == 4
    assert r.partition == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0)
    assert recipe_from_dict(r.to_dict()) == r


@pytest.mark.parametrize(
    "settings",
    [{"epochs": "two"}, {"grad_clip": "maybe"}, {"no_such_field": "1"}, {"partition": "1,2"}, {"lr": "-1"}],
)
def test_bad_overrides_are_usage_errors(settings):
    with pytest.raises(UsageError):
        apply_cli_overrides(get_recipe("gta-spin-ft"), settings=settings)


def test_unknown_recipe():
    with pytest.raises(UsageError):
        get_recipe("nope")
