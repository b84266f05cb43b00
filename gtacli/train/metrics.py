"""Training logs (rank 0): `metrics.jsonl` in the run directory, TensorBoard events when
`torch.utils.tensorboard` imports, and the one-line description the progress display shows."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Optional

from gtacli.train.losses import LOSS_NAMES

METRICS_FILE = "metrics.jsonl"
SHORT_NAMES = {
    "keypoints3d_loss": "kp3d",
    "keypoints2d_loss": "kp2d",
    "vertex_loss": "vert",
    "smpl_pose_loss": "pose",
    "smpl_betas_loss": "betas",
    "camera_loss": "cam",
}


@dataclass
class StepTimes:
    """Time waiting for data vs computing, samples and summed losses over a window of steps."""

    data_s: float = 0.0
    compute_s: float = 0.0
    samples: int = 0
    steps: int = 0
    sums: Dict[str, float] = field(default_factory=dict)

    def add(self, data_s: float, compute_s: float, samples: int, losses: Dict[str, float]) -> None:
        self.data_s += data_s
        self.compute_s += compute_s
        self.samples += samples
        self.steps += 1
        for k, v in losses.items():
            if k != "grad_norm":
                self.sums[k] = self.sums.get(k, 0.0) + v

    def means(self) -> Dict[str, float]:
        return {k: v / max(self.steps, 1) for k, v in self.sums.items()}

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.data_s + self.compute_s, 1e-9)

    @property
    def data_wait_fraction(self) -> float:
        return self.data_s / max(self.data_s + self.compute_s, 1e-9)


class MetricsLog:
    """Appends records to `metrics.jsonl` (and TensorBoard); `append=False` starts the file anew."""

    def __init__(self, work_dir: Path, append: bool):
        self.path = Path(work_dir) / METRICS_FILE
        self._fp = open(self.path, "a" if append else "w", encoding="utf-8")
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency

            self._tb: Any = SummaryWriter(str(Path(work_dir) / "tensorboard"))
        except Exception:  # tensorboard not installed: JSONL only
            self._tb = None

    def write(self, record: Dict[str, Any], step: Optional[int] = None) -> None:
        self._fp.write(json.dumps(record) + "\n")
        self._fp.flush()
        if self._tb is not None and step is not None:
            for key, value in record.items():
                if key not in ("epoch", "step", "time") and isinstance(value, (int, float)):
                    self._tb.add_scalar(f"train/{key}", value, step)

    def close(self) -> None:
        self._fp.close()
        if self._tb is not None:
            self._tb.close()


def step_record(
    epoch: int, step: int, samples: int, lr: float, losses: Dict[str, float], window: StepTimes
) -> Dict[str, Any]:
    """One metrics.jsonl line: rank-mean losses of the window, timing, lr, and optional grad_norm/fits_updated."""
    record: Dict[str, Any] = {
        "epoch": epoch,
        "step": step,
        "samples": samples,
        "lr": lr,
        **{k: losses[k] for k in (*LOSS_NAMES, "loss") if k in losses},
        "data_time_s": round(window.data_s, 4),
        "compute_time_s": round(window.compute_s, 4),
        "samples_per_s": round(window.samples_per_s, 3),
        "time": time.time(),
    }
    if "grad_norm" in losses:
        record["grad_norm"] = losses["grad_norm"]
    if "fits_updated" in window.sums:  # in-the-loop fits accepted in this window (this rank)
        record["fits_updated"] = int(window.sums["fits_updated"])
    return record


def describe(epoch: int, epochs: int, losses: Dict[str, float], window: StepTimes) -> str:
    """The progress line's text: epoch, losses, samples/s and data wait of the recent window."""
    parts = [f"epoch {epoch}/{epochs}", f"loss {losses.get('loss', math.nan):.4f}"]
    parts += [f"{SHORT_NAMES[k]} {losses[k]:.3g}" for k in LOSS_NAMES if k in losses]
    parts.append(f"{window.samples_per_s:.1f} samples/s")
    parts.append(f"data wait {100 * window.data_wait_fraction:.0f}%")
    return " ".join(parts)


def brief(means: Dict[str, float]) -> str:
    return ", ".join(f"{SHORT_NAMES.get(k, k)} {v:.4g}" for k, v in means.items())
