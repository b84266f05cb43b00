"""Optimisation settings and the two Adams of docs/reproduction.md §6.4 (backbone and head, same settings)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Tuple

import torch
from torch import nn

LR_SCHEDULES = ("fixed", "step")


@dataclass(frozen=True)
class OptimConfig:
    """How long, how much per step and how the weights move (the gta-spin-ft numbers as defaults).

    Units: lr per step; `num_data` draws per epoch across all ranks; `batch_size` per process."""

    epochs: int = 10
    batch_size: int = 32
    num_data: int = 100_000
    lr: float = 3e-5
    adam_betas: Tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    lr_schedule: str = "fixed"  # 'fixed' | 'step'
    lr_steps: Tuple[int, ...] = ()  # epochs after which lr *= lr_gamma (step schedule)
    lr_gamma: float = 0.1
    # published run: off (docs/reproduction.md §10.1.2); the config's stated value is the max norm below
    grad_clip: bool = False
    grad_clip_max_norm: float = 35.0
    grad_clip_norm_type: float = 2.0
    bn_eval: bool = False  # True freezes BatchNorm statistics (eval mode); published: train mode
    dropout: bool = True  # False switches the head's dropout off (for exact comparisons)
    sync_bn: bool = False  # SyncBatchNorm across GPUs (CUDA DDP only)

    def validate(self) -> None:
        """ValueError naming the first field out of range."""
        for name in ("epochs", "batch_size", "num_data"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1 (got {getattr(self, name)})")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0 (got {self.lr})")
        if not all(0 <= b < 1 for b in self.adam_betas) or len(self.adam_betas) != 2:
            raise ValueError("adam_betas must be two values in [0, 1)")
        if self.adam_eps <= 0 or self.weight_decay < 0 or self.lr_gamma <= 0:
            raise ValueError("adam_eps and lr_gamma must be > 0, weight_decay >= 0")
        if self.lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {LR_SCHEDULES} (got {self.lr_schedule!r})")
        if self.grad_clip_max_norm <= 0 or self.grad_clip_norm_type <= 0:
            raise ValueError("grad_clip_max_norm and grad_clip_norm_type must be > 0")

    def lr_for_epoch(self, epoch: int) -> float:
        """The learning rate of 0-based `epoch`."""
        if self.lr_schedule == "step":
            return self.lr * self.lr_gamma ** sum(1 for s in self.lr_steps if epoch >= s)
        return self.lr


def build_optimizers(model: nn.Module, cfg: OptimConfig) -> Dict[str, torch.optim.Optimizer]:
    """mmhuman3d's two Adams: one over `model.backbone`, one over `model.head`."""
    kwargs = dict(lr=cfg.lr, betas=tuple(cfg.adam_betas), eps=cfg.adam_eps, weight_decay=cfg.weight_decay)
    return {
        "backbone": torch.optim.Adam(model.backbone.parameters(), **kwargs),
        "head": torch.optim.Adam(model.head.parameters(), **kwargs),
    }


def set_lr(optimizers: Dict[str, torch.optim.Optimizer], lr: float) -> None:
    for opt in optimizers.values():
        for group in opt.param_groups:
            group["lr"] = lr


def set_train_mode(model: nn.Module, cfg: OptimConfig) -> None:
    """Train mode, except BatchNorm (eval when `bn_eval`: running statistics frozen) and dropout (off when
    `dropout` is False). Used for exact comparisons (DDP vs one process); the published run trains both."""
    model.train()
    for module in model.modules():
        if cfg.bn_eval and isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.eval()
        if not cfg.dropout and isinstance(module, nn.Dropout):
            module.eval()
