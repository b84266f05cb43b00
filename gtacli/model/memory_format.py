"""The memory layout the estimator runs in, and putting batches into it.

ResNet-50's convolutions run faster in channels-last (NHWC) memory (benchmarks/bench_eval.py) than in the NCHW layout SPIN and
mmhuman3d use, on the CPU (oneDNN) and on CUDA (cuDNN), and the results differ only by float32 rounding
(< 1e-6 on the outputs; 3DPW metrics move by far less than 0.001 mm). So inference runs channels-last on
both; the layout is a property of the weights (`model_memory_format` reads it back), and a batch fed to a
model should be in the same layout, or the first convolution converts it on every call.

`load_estimator(inference=True)` puts the model in `inference_memory_format(device)`; data pipelines assemble
batches in that layout (see `gtacli.data.eval_dataset.EvalCollate`); any other caller can use
`to_model_layout(batch, model)`.
"""

from __future__ import annotations

import torch
from torch import nn

CHANNELS_LAST = torch.channels_last
NCHW = torch.contiguous_format
LAYOUT_NAMES = {CHANNELS_LAST: "channels-last", NCHW: "NCHW"}


def inference_memory_format(device: torch.device) -> torch.memory_format:
    """The fastest exact layout for inference on `device`: channels-last on the CPU and on CUDA."""
    return CHANNELS_LAST if device.type in ("cpu", "cuda") else NCHW


def model_memory_format(model: nn.Module) -> torch.memory_format:
    """The layout of the estimator's weights, read from the first convolution (7x7, so never ambiguous)."""
    module = model.module if hasattr(model, "module") else model  # DDP
    weight = module.backbone.conv1.weight
    return CHANNELS_LAST if weight.is_contiguous(memory_format=CHANNELS_LAST) else NCHW


def to_model_layout(images: torch.Tensor, model: nn.Module) -> torch.Tensor:
    """(B,3,H,W) images in the layout of `model`'s weights (no copy when they already are)."""
    return images.contiguous(memory_format=model_memory_format(model))


def set_memory_format(model: nn.Module, memory_format: torch.memory_format) -> nn.Module:
    """Convert `model`'s 4-D weights to `memory_format` in place (values unchanged); returns `model`."""
    return model.to(memory_format=memory_format)


def layout_name(memory_format: torch.memory_format) -> str:
    """'channels-last' or 'NCHW', as eval prints it."""
    return LAYOUT_NAMES[memory_format]
