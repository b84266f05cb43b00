"""One optimisation step of docs/reproduction.md §6.1: forward → registration → six losses → backward → both
Adams step (optional gradient clipping), with a guard that never lets a non-finite loss reach the weights.

The forward runs in float32 by default (as published); `amp` on CUDA uses float16 with a gradient scaler or
bfloat16. Batches and the model are in channels-last memory layout when the recipe says so (same maths).
"""

from __future__ import annotations

import math
from typing import Any, Dict, Optional

import torch
from torch import nn

from gtacli.errors import GtacliError
from gtacli.fit.registration import RegistrationTargets
from gtacli.train.distributed import DistInfo, all_reduce_max
from gtacli.train.losses import LossConfig, compute_losses
from gtacli.train.optim import OptimConfig


class NonFiniteLossError(GtacliError):
    """The loss of a step was NaN or inf: the step was not applied, the run stops."""


class TrainStep:
    """Forward + losses (`forward_losses`) and one optimisation step (`__call__`) on device batches."""

    def __init__(
        self,
        *,
        model: nn.Module,
        ddp: nn.Module,
        body_model: Any,
        registrant: Any,
        optimizers: Dict[str, torch.optim.Optimizer],
        losses: LossConfig,
        optim: OptimConfig,
        dist: DistInfo,
        amp_dtype: Optional[torch.dtype],
        channels_last: bool,
        in_the_loop: bool,
        fits: Any = None,
    ):
        self.model, self.ddp = model, ddp
        self.body_model, self.registrant = body_model, registrant
        self.optimizers = optimizers
        self.losses, self.optim = losses, optim
        self.dist, self.device = dist, dist.device
        self.amp_dtype = amp_dtype
        self.channels_last = channels_last
        self.in_the_loop = in_the_loop
        self.fits = fits
        # the gradient scaler only for float16 (bfloat16 has float32's range)
        self.scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
        self.last_targets: Optional[RegistrationTargets] = None  # the registrant's, of the last forward

    def to_device(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        """Tensors to the device (non-blocking from pinned memory on CUDA); images in the model's layout."""
        nb = self.device.type == "cuda"
        out = {k: (v.to(self.device, non_blocking=nb) if torch.is_tensor(v) else v) for k, v in batch.items()}
        if self.channels_last:  # a no-op when the loader already built the batch channels-last
            out["img"] = out["img"].contiguous(memory_format=torch.channels_last)
        return out

    def forward_losses(self, batch: Dict[str, Any]) -> Dict[str, torch.Tensor]:
        """Forward, registration and the six losses (no backward)."""
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            pred = self.ddp(batch["img"])
        pred = {k: v.float() for k, v in pred.items()}
        targets = self.registrant({k: v.detach() for k, v in pred.items()}, batch)
        self.last_targets = targets
        rotmat = pred["pred_pose"]
        body = self.body_model(
            betas=pred["pred_shape"], body_pose=rotmat[:, 1:], global_orient=rotmat[:, :1], pose2rot=False
        )
        return compute_losses(pred, body.joints, body.vertices, batch, targets, self.losses)

    def __call__(self, batch: Dict[str, Any], step: int, want_grad_norm: bool = False) -> Dict[str, float]:
        """Optimise on one device batch (global step number `step`, for messages); returns the (local) loss
        values and optionally grad_norm. A non-finite loss on any rank raises `NonFiniteLossError` on every
        rank before the optimisers move (the weights stay those of the previous step)."""
        losses = self.forward_losses(batch)
        for opt in self.optimizers.values():
            opt.zero_grad(set_to_none=True)
        self.scaler.scale(losses["loss"]).backward()
        names = list(losses)
        # one device->host copy for all values (not one sync per loss)
        out = dict(zip(names, torch.stack([losses[k].detach().float() for k in names]).tolist()))
        bad = 0.0 if math.isfinite(out["loss"]) else 1.0
        if all_reduce_max(bad, self.dist) > 0:
            detail = (
                ", ".join(f"{k} {v}" for k, v in out.items() if not math.isfinite(v)) or "on another rank"
            )
            raise NonFiniteLossError(
                f"non-finite loss at step {step} ({detail}); the step was not applied and the run stopped",
                fix="lower --lr, check the data (`gtacli check-layout`), and continue from the last good "
                "checkpoint with --resume",
            )
        grad_norm = None
        if self.optim.grad_clip or want_grad_norm:
            for opt in self.optimizers.values():
                self.scaler.unscale_(opt)
            params = [p for p in self.model.parameters() if p.grad is not None]
            max_norm = self.optim.grad_clip_max_norm if self.optim.grad_clip else float("inf")
            grad_norm = float(
                torch.nn.utils.clip_grad_norm_(params, max_norm, self.optim.grad_clip_norm_type)
            )
        for opt in self.optimizers.values():
            self.scaler.step(opt)
        self.scaler.update()
        if self.in_the_loop and self.dist.distributed:
            self.fits.all_reduce_updates()
        if self.in_the_loop and self.last_targets is not None:
            out["fits_updated"] = float(self.last_targets.fits_updated.sum())
        if grad_norm is not None:
            out["grad_norm"] = grad_norm
        return out
