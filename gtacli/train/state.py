"""What a training checkpoint holds beyond the weights, and how a run finds and restores it.

A gtacli training checkpoint (`epoch_<n>.pth`, `latest.pth`) holds the model, both optimisers, the AMP scaler,
every rank's torch/numpy/python RNG states, the sampler position (`TrainState`), the recipe and, in the
in-the-loop mode, the fits. Only plain types and tensors are stored, so it is read back with weights_only=True.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterator, List

import numpy as np
import torch

from gtacli.errors import BadFileError, MissingFileError
from gtacli.io.atomic import atomic_path
from gtacli.io.safe import load_checkpoint

CHECKPOINT_FORMAT = "gtacli-train"
LATEST = "latest.pth"


@dataclass
class TrainState:
    """Where a run is: the sampler position and counters (restored exactly by `--resume`)."""

    epoch: int = 0  # current (0-based) epoch
    position: int = 0  # samples of `epoch` this rank has consumed
    global_step: int = 0
    samples_seen: int = 0  # across ranks

    def to_dict(self) -> Dict[str, int]:
        return dict(self.__dict__)


def resolve_resume(path: Path) -> Path:
    """A checkpoint file, or a run directory (its latest.pth, else its newest epoch_<n>.pth)."""
    path = Path(path)
    if path.is_dir():
        if (path / LATEST).is_file():
            return path / LATEST
        epochs = sorted(path.glob("epoch_*.pth"), key=_epoch_number)
        if not epochs:
            raise MissingFileError(
                "no checkpoint to resume from (no latest.pth or epoch_<n>.pth)",
                path=path,
                fix="pass the run's --work-dir (or --resume PATH to a checkpoint), or start without --resume",
            )
        return epochs[-1]
    if not path.exists() and path.suffix != ".pth":  # a bare --resume into a work dir not made yet
        raise MissingFileError(
            "no checkpoint to resume from (the folder does not exist)",
            path=path,
            fix="pass the run's --work-dir (or --resume PATH to a checkpoint), or start without --resume",
        )
    if not path.is_file():
        raise MissingFileError(
            "checkpoint to resume from not found", path=path, fix="check the --resume path"
        )
    return path


def _epoch_number(path: Path) -> int:
    try:
        return int(path.stem.split("_")[-1])
    except ValueError:
        return -1


def read_training_checkpoint(path: Path) -> Dict[str, Any]:
    """The payload of a gtacli training checkpoint (BadFileError for weights-only or foreign files)."""
    payload = load_checkpoint(path, map_location="cpu")
    meta = payload.get("meta", {}) if isinstance(payload, dict) else {}
    if meta.get("checkpoint") != CHECKPOINT_FORMAT or "train_state" not in payload:
        raise BadFileError(
            "not a gtacli training checkpoint (no optimiser/sampler state to resume)",
            path=path,
            fix="resume from a run directory written by gtacli finetune/train, or use --init to start from weights",
        )
    return payload


def link_or_copy_atomic(src: Path, final: Path) -> None:
    """`final` becomes a copy of `src` atomically (a hard link when the filesystem allows)."""
    with atomic_path(final) as tmp:
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)


# ---------------------------------------------------------------------------------------------------------
# RNG state (plain types only)


def seed_everything(seed: int, rank: int) -> None:
    random.seed(seed + rank)
    np.random.seed((seed + rank) % 2**32)
    torch.manual_seed(seed + rank)


def rng_state(device: torch.device) -> Dict[str, Any]:
    """The process's torch (and CUDA), numpy and python RNG states."""
    np_state = np.random.get_state()
    state: Dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": _plain_python_state(random.getstate()),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def set_rng_state(state: Dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            int(np_state["pos"]),
            int(np_state["has_gauss"]),
            float(np_state["cached_gaussian"]),
        )
    )
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


@contextlib.contextmanager
def preserved_rng(device: torch.device) -> Iterator[None]:
    """Run a block (the after-epoch evaluation) without changing any RNG state the training reads.

    The checkpoint written before the block holds the RNG state; a run resumed from it must see the same
    dropout masks as the unbroken run, whatever the block drew."""
    saved = rng_state(device)
    try:
        yield
    finally:
        set_rng_state(saved, device)


def _plain_python_state(state: Any) -> List[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def to_cpu(obj: Any) -> Any:
    if torch.is_tensor(obj):
        return obj.cpu()
    if isinstance(obj, dict):
        return {k: to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_cpu(v) for v in obj]
    return obj
