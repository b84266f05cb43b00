"""Training logs (rank 0): `metrics.jsonl` in the run directory, TensorBoard events when
`torch.utils.tensorboard` imports, and the one-line description the progress display shows."""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from gtacli.io.atomic import atomic_write_text
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
    """Appends records to `metrics.jsonl` (and TensorBoard). A new run (`resume_at=None`) starts the file anew; a
    resumed one first drops the records written after its checkpoint (epoch, global step): a run killed after
    its last save logged steps the resumed run repeats, and they must not appear twice."""

    def __init__(self, work_dir: Path, resume_at: Optional[Tuple[int, int]] = None):
        self.path = Path(work_dir) / METRICS_FILE
        if resume_at is not None and self.path.is_file():
            _truncate_after(self.path, *resume_at)
        self._fp = open(self.path, "a" if resume_at is not None else "w", encoding="utf-8")
        self.event_files: List[str] = []  # TensorBoard files this log created (relative to the work dir)
        folder = Path(work_dir) / "tensorboard"
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional dependency

            before = set(folder.iterdir()) if folder.is_dir() else set()
            self._tb: Any = SummaryWriter(str(folder))
            self.event_files = [f"tensorboard/{p.name}" for p in sorted(set(folder.iterdir()) - before)]
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


def _truncate_after(path: Path, epoch: int, step: int) -> None:
    """Keep the records up to the checkpoint: step records with `step <= step`, evaluations of epochs
    `<= epoch`; a line cut short by a kill is dropped."""
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if not isinstance(record, dict):
            continue
        if "step" in record and isinstance(record["step"], int) and record["step"] > step:
            continue
        if "eval" in record and isinstance(record.get("epoch"), int) and record["epoch"] > epoch:
            continue
        kept.append(line + "\n")
    atomic_write_text(path, "".join(kept))


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
