"""Recipes hold docs/reproduction.md §6–7's numbers, composed from the consumers' configs; overrides are typed."""

from __future__ import annotations

import dataclasses
import json

import pytest

from gtacli.data.augment import AugmentConfig
from gtacli.errors import UsageError
from gtacli.fit.config import RegistrationConfig
from gtacli.layout import TRAIN_DATASETS
from gtacli.train.losses import LossConfig
from gtacli.train.optim import OptimConfig
from gtacli.train.recipe import apply_cli_overrides, get_recipe, recipe_from_dict


def test_gta_spin_ft_numbers():
    r = get_recipe("gta-spin-ft")
    assert r.data.datasets == ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta")
    assert r.data.datasets == tuple(TRAIN_DATASETS)  # the list is defined once, in gtacli.layout
    expected = {
        "h36m": 0.175,
        "mpi_inf_3dhp": 0.075,
        "lsp": 0.05,
        "lspet": 0.05,
        "mpii": 0.05,
        "coco": 0.10,
        "gta": 0.5,
    }
    for name, p in zip(r.data.datasets, r.data.normalized_partition):
        assert p == pytest.approx(expected[name])
    o = r.optim
    assert (o.num_data, o.epochs, o.batch_size, o.lr, o.lr_schedule) == (100_000, 10, 32, 3e-5, "fixed")
    assert (o.adam_betas, o.adam_eps, o.weight_decay) == ((0.9, 0.999), 1e-8, 0.0)
    assert o.grad_clip is False and o.grad_clip_max_norm == 35.0
    w = r.losses
    assert (w.keypoints3d, w.keypoints2d, w.vertex, w.smpl_pose, w.smpl_betas, w.camera) == (
        100,
        10,
        2,
        3,
        0.02,
        60,
    )
    assert w.camera_prior_scale == 10 and w.focal_length == 5000 and w.img_res == 224
    a = r.augment
    assert (a.noise_factor, a.flip_prob, a.rot_factor, a.rot_prob, a.scale_factor) == (
        0.4,
        0.5,
        30,
        0.6,
        0.25,
    )
    assert r.registration.mode == "static" and r.data.fits_missing_ok == ("gta",)
    assert w.openpose_confidence == "detector"
    assert r.init == "spin_official" and not o.bn_eval and o.dropout
    # mmhuman3d trained in float32 (the config has no fp16 section): no mixed precision unless asked for
    assert r.amp is False and get_recipe("spin").amp is False


def test_the_recipe_is_composed_of_the_consumers_own_configs():
    """Each part is the consumer's config type with its own defaults (no copied numbers)."""
    r = get_recipe("gta-spin-ft")
    assert r.augment == AugmentConfig() and r.losses == LossConfig() and r.optim == OptimConfig()
    assert r.registration == RegistrationConfig()  # the fitter's numbers, incl. its acceptance threshold


def test_spin_recipe_is_in_the_loop():
    r = get_recipe("spin")
    assert len(r.data.datasets) == 6 and "gta" not in r.data.datasets
    assert r.registration == dataclasses.replace(RegistrationConfig(), mode="in_the_loop")
    o = r.optim
    assert o.lr_schedule == "step" and o.lr_steps == (3,) and o.lr_gamma == 0.1 and o.batch_size == 8
    assert [o.lr_for_epoch(e) for e in (0, 2, 3, 9)] == pytest.approx([3e-5, 3e-5, 3e-6, 3e-6])
    assert r.init == "imagenet"


def test_overrides_address_nested_fields_typed_and_dedicated_options_win():
    r = apply_cli_overrides(
        get_recipe("gta-spin-ft"),
        {
            "optim.grad_clip": "true",
            "data.partition": "1,1,1,1,1,1,2",
            "optim.batch_size": "4",
            "optim.epochs": "5",
            "losses.keypoints3d": "50",
            "optim.adam_betas": "0.8, 0.99",
            "eval_each_epoch": "false",
        },
        epochs=2,
        lr=1e-3,
    )
    assert (
        r.optim.epochs == 2 and r.optim.lr == 1e-3 and r.optim.grad_clip is True and r.optim.batch_size == 4
    )
    assert r.data.partition == (1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 2.0)
    assert r.losses.keypoints3d == 50.0 and r.losses.keypoints2d == 10.0
    assert r.optim.adam_betas == (0.8, 0.99) and r.eval_each_epoch is False
    assert recipe_from_dict(json.loads(r.to_json())) == r


def test_registration_fields_are_set_generically():
    fields = {f.name: getattr(RegistrationConfig(), f.name) for f in dataclasses.fields(RegistrationConfig)}
    name, value = next((k, v) for k, v in fields.items() if isinstance(v, float) and not isinstance(v, bool))
    r = apply_cli_overrides(get_recipe("spin"), {f"registration.{name}": str(value * 2)})
    assert getattr(r.registration, name) == value * 2 and r.registration.mode == "in_the_loop"
    if "method" in fields:  # the fitter's formulation switch (issue #12)
        r = apply_cli_overrides(get_recipe("spin"), {"registration.method": "spin"})
        assert r.registration.method == "spin"


@pytest.mark.parametrize(
    "settings, fragment",
    [
        ({"optim.epochs": "two"}, "optim.epochs"),
        ({"optim.grad_clip": "maybe"}, "optim.grad_clip"),
        ({"no_such_field": "1"}, "no such recipe field"),
        ({"losses.no_such_weight": "1"}, "no such recipe field"),
        ({"bn_eval": "true"}, "optim.bn_eval"),  # the old flat name: an error that names the new key
        ({"optim": "1"}, "a group"),
        ({"data.partition": "1,2"}, "partition"),
        ({"data.datasets": "gta,nope", "data.partition": "1,1"}, "unknown dataset"),
        ({"optim.lr": "-1"}, "lr"),
        ({"optim.lr": "nan"}, "finite"),
        ({"optim.lr": "inf"}, "finite"),
        ({"losses.camera": "inf"}, "finite"),
        ({"registration.mode": "sometimes"}, "registration"),
        ({"augment.img_res": "256"}, "img_res"),  # read by three parts: they must agree
    ],
)
def test_bad_overrides_are_usage_errors(settings, fragment):
    with pytest.raises(UsageError, match=fragment.replace(".", r"\.")):
        apply_cli_overrides(get_recipe("gta-spin-ft"), settings)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), 0.0, -3e-5])
def test_bad_lr_option_is_a_usage_error(lr):
    with pytest.raises(UsageError):
        apply_cli_overrides(get_recipe("gta-spin-ft"), lr=lr)


def test_a_saved_recipe_with_unknown_fields_is_refused():
    data = get_recipe("gta-spin-ft").to_dict()
    data["losses"]["surprise"] = 1.0
    with pytest.raises(UsageError, match="losses.surprise"):
        recipe_from_dict(data)


def test_unknown_recipe():
    with pytest.raises(UsageError):
        get_recipe("nope")
