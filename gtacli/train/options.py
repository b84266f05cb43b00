"""The one options object of `gtacli finetune` and `gtacli train`: what the CLI resolved, handed to the core."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, Optional

import torch

from gtacli.progress import ProgressFn
from gtacli.train.recipe import Recipe


def _ignore(message: str) -> None:
    return None


@dataclass
class TrainOptions:
    """A resolved training run. `resume` is a run directory or checkpoint file (None: a new run)."""

    command: str  # 'finetune' | 'train'
    recipe: Recipe
    data_root: Path
    work_dir: Path
    device: torch.device | str = "auto"  # the CLI passes a resolved torch.device
    init: Optional[str] = None  # path, 'imagenet', 'spin_official', 'none'; None = the recipe's
    seed: int = 0
    resume: Optional[Path] = None
    overwrite: bool = False  # a non-empty work dir is started anew (the previous run's files removed)
    # {dotted recipe field: value} the command line set; a resumed run applies only these to the saved recipe
    # (None: compare the whole `recipe` with the saved one, for callers that build a recipe themselves)
    overrides: Optional[Dict[str, Any]] = None
    max_steps: Optional[int] = None
    keep_last: Optional[int] = None  # keep only the N newest epoch_<n>.pth (None: keep all)
    save_every: Optional[int] = None  # steps between mid-epoch latest.pth saves (survive a hard kill)
    progress: Optional[ProgressFn] = None
    log: Callable[[str], None] = _ignore  # progress notes (rank 0)
    warn: Callable[[str], None] = _ignore  # warnings (rank 0)
    notice: Callable[[str], None] = _ignore  # what the user must see even with --quiet (interruptions)
    # 3DPW evaluation after each epoch, `evaluator(model, layout, device=...) -> dict of metrics`; the CLI passes
    # gtacli.evaluate's (train and evaluate are on the same floor, so neither imports the other)
    evaluator: Optional[Callable[..., Any]] = None
    debug: bool = False  # --debug: also print the full resolved recipe
    handle_signals: bool = True  # SIGINT/SIGTERM -> save and stop (main thread only)
