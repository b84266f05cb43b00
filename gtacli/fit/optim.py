"""What every fitter shares: an Adam stage with mmhuman3d's early stop, a per-iteration trace, CPU threads.

The per-iteration tensors of a CPU fit are tiny: up to `SINGLE_THREAD_MAX_BATCH` rows one intra-op thread
beats several (thread synchronisation costs more than the work, many times more on a machine whose cores are
busy).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, List, Optional, Sequence, Tuple

import torch

SINGLE_THREAD_MAX_BATCH = 128


@dataclass
class StageReport:
    iterations: int
    final_loss: float  # batch sum, last evaluated (before the last step)
    stopped_early: bool


@dataclass
class FitTrace:
    """Per-iteration batch losses (before each step) and wall time since the fit began, for benchmarks."""

    losses: List[float] = field(default_factory=list)
    seconds: List[float] = field(default_factory=list)
    stages: List[StageReport] = field(default_factory=list)


def relative_change(prev: float, cur: float) -> float:
    """mmhuman3d's early-stop measure: |prev − cur| / max(|prev|, |cur|, 1)."""
    return abs(prev - cur) / max(abs(prev), abs(cur), 1.0)


def run_adam_stage(
    params: Sequence[torch.Tensor],
    loss_fn: Callable[[], torch.Tensor],
    *,
    iterations: int,
    lr: float,
    betas: Tuple[float, float],
    ftol: float = 0.0,
    trace: Optional[FitTrace] = None,
    t0: float = 0.0,
    lr_decay: float = 0.0,
) -> StageReport:
    """Adam on the batch sum of `loss_fn()` (B,) — per-sample problems stay independent (Adam is elementwise).

    Stops early when the relative change of the batch sum drops below `ftol` (> 0), mmhuman3d's rule.
    `lr_decay` (0-1): the last fraction of the steps whose learning rate falls linearly towards 0
    (`lr_factor`).
    """
    optimizer = torch.optim.Adam(list(params), lr=lr, betas=betas)
    prev: Optional[float] = None
    done, stopped, cur = 0, False, float("nan")
    for it in range(iterations):
        if lr_decay > 0:
            for group in optimizer.param_groups:
                group["lr"] = lr * lr_factor(it, iterations, lr_decay)
        optimizer.zero_grad(set_to_none=True)
        total = loss_fn().sum()
        total.backward()
        optimizer.step()
        done = it + 1
        cur = float(total.detach())
        if trace is not None:
            trace.losses.append(cur)
            trace.seconds.append(now() - t0)
        if prev is not None and ftol > 0 and relative_change(prev, cur) < ftol:
            stopped = True
            break
        prev = cur
    return StageReport(done, cur, stopped)


def lr_factor(step: int, iterations: int, decay: float) -> float:
    """The learning-rate factor of step `step` (0-based) of `iterations`: 1, then over the last
    `round(decay · iterations)` steps k/(m+1) for k = m..1 (never 0: every step still moves)."""
    steps = min(iterations, max(0, round(decay * iterations)))
    first = iterations - steps
    if step < first:
        return 1.0
    return (iterations - step) / (steps + 1)


class cpu_threads:
    """Temporarily set torch's intra-op thread count for CPU work (no-op on CUDA or when `threads` is None)."""

    def __init__(self, device: torch.device, threads: Optional[int]):
        self.active = device.type == "cpu" and threads is not None and threads != torch.get_num_threads()
        self.threads = threads
        self.before = torch.get_num_threads()

    def __enter__(self) -> None:
        if self.active:
            torch.set_num_threads(int(self.threads))  # type: ignore[arg-type]

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            torch.set_num_threads(self.before)


def threads_for(configured: Optional[int], batch: int) -> Optional[int]:
    if configured is not None:
        return configured
    return 1 if batch <= SINGLE_THREAD_MAX_BATCH else None


def now() -> float:
    return time.perf_counter()
