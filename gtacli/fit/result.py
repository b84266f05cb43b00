"""`FitResult`: what every fitter's `fit` returns (`gtacli.fit.fitter.Fitter.finish` builds it).

One type for the three methods, so the registrant, `gtacli fit`, the demo's `--refine` and the benchmarks read
the same named fields whichever fitter ran. Every tensor is detached, on the fitter's device and dtype.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List

import torch

from gtacli.fit.optim import StageReport


@dataclass(frozen=True, eq=False)
class FitResult:
    """The fitted bodies of a batch of B samples.

    Frozen: a consumer cannot rebind a field by mistake (the tensors themselves stay tensors). `eq=False`:
    comparing tensors field by field has no single truth value."""

    pose: torch.Tensor
    """(B, 72) axis-angle, global orient first, then the 23 body joints."""
    betas: torch.Tensor
    """(B, 10) SMPL shape."""
    transl: torch.Tensor
    """(B, 3) camera translation (metres) of the body-model frame in the crop camera."""
    vertices: torch.Tensor
    """(B, 6890, 3) mesh vertices in the camera frame (`transl` applied)."""
    joints: torch.Tensor
    """(B, 49, 3) smpl_49 joints in the camera frame (`transl` applied)."""
    loss: torch.Tensor
    """(B,) the fitter's objective at the result (the last stage's loss, without any `extra_loss`)."""
    keypoint_loss: torch.Tensor
    """(B,) the method's acceptance criterion at the fitted camera (`Fitter.criterion`)."""
    stages: List[StageReport]
    """One report per optimisation stage, in the order they ran."""
