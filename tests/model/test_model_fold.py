"""Folding BatchNorm into the convolutions (inference only) keeps the network's outputs up to float32 rounding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from gtacli.model.estimator import build_estimator
from gtacli.model.fold import fold_batchnorm, fold_conv_bn, is_batchnorm_folded

MEAN = {"pose": np.zeros(144), "shape": np.zeros(10), "cam": np.array([0.9, 0.0, 0.0])}


def test_one_conv_bn_pair_by_the_formula():
    gen = torch.Generator().manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    bn = nn.BatchNorm2d(4, eps=1e-5).eval()
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=gen))
        bn.weight.copy_(torch.tensor([1.0, -2.0, 0.5, 3.0]))
        bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0]))
        bn.running_mean.copy_(torch.tensor([0.5, -1.0, 2.0, 0.0]))
        bn.running_var.copy_(torch.tensor([4.0, 0.25, 1.0, 9.0]))
    folded = fold_conv_bn(conv, bn)
    # hand-computed per-channel scale gamma / sqrt(var + eps) and shift beta - mean * scale
    scale = np.array([1.0, -2.0, 0.5, 3.0]) / np.sqrt(np.array([4.0, 0.25, 1.0, 9.0]) + 1e-5)
    shift = np.array([0.1, 0.2, -0.3, 0.0]) - np.array([0.5, -1.0, 2.0, 0.0]) * scale
    assert np.allclose(folded.bias.detach().numpy(), shift, atol=1e-6)
    assert np.allclose(
        folded.weight.detach().numpy(), conv.weight.detach().numpy() * scale[:, None, None, None], atol=1e-6
    )
    x = torch.randn(2, 3, 8, 8, generator=gen)
    with torch.no_grad():
        assert torch.allclose(folded(x), bn(conv(x)), atol=1e-5)


def test_folded_estimator_matches_the_plain_one():
    gen = torch.Generator().manual_seed(1)
    model = build_estimator(MEAN).eval()
    with torch.no_grad():
        for name, tensor in model.state_dict().items():
            if name.startswith("backbone.") and (
                "running_" in name or name.endswith(("bn1.bias", "bn2.bias"))
            ):
                tensor.copy_(torch.rand(tensor.shape, generator=gen) * 0.5 + (0.5 if "var" in name else 0.0))
    folded = fold_batchnorm(copy.deepcopy(model))
    assert is_batchnorm_folded(folded) and not is_batchnorm_folded(model)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    x = torch.randn(2, 3, 64, 64, generator=gen)
    with torch.no_grad():
        plain, fast = model(x), folded(x)
    for key in plain:
        assert torch.allclose(plain[key], fast[key], rtol=1e-4, atol=1e-5), key


def test_a_training_model_is_never_folded():
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(build_estimator(MEAN, init_weights=False).train())
