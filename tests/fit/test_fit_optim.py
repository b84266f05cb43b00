"""The Adam stage's learning-rate decay (`RegistrationConfig.one_stage_lr_decay`, on for `demo --refine`)."""

from __future__ import annotations

import torch

from gtacli.fit.optim import lr_factor, run_adam_stage


def test_the_decay_lowers_the_last_steps_rate_and_never_stops_a_step():
    factors = [lr_factor(step, 30, 1 / 3) for step in range(30)]
    assert factors[:20] == [1.0] * 20
    assert factors[20:] == [k / 11 for k in range(10, 0, -1)]  # 10/11 ... 1/11, falling, never 0
    assert [lr_factor(step, 30, 0.0) for step in range(30)] == [1.0] * 30


def _final_error(decay: float) -> torch.Tensor:
    # 16 independent problems |x - t| whose optima are in reach of 30 steps of 0.06: at a constant rate
    # Adam's last steps stay ~lr long, so each ends somewhere in a band around its optimum
    target = torch.linspace(0.2, 0.6, 16)
    x = torch.zeros(16, requires_grad=True)
    run_adam_stage([x], lambda: (x - target).abs(), iterations=30, lr=0.06, betas=(0.7, 0.95), lr_decay=decay)
    return (x.detach() - target).abs()


def test_a_decaying_rate_ends_nearer_each_optimum_than_a_constant_one():
    constant, decayed = _final_error(0.0), _final_error(1 / 3)
    assert constant.mean() > 0.005  # the band exists
    assert decayed.mean() < 0.5 * constant.mean(), (constant.mean(), decayed.mean())
