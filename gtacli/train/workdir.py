"""The run directory's protection: one run at a time, no silent reuse, no stale half-written files.

* A non-empty work dir is only used with `--resume` (continue the run in it) or `--overwrite` (start anew:
  the files a training run writes are removed first, anything else is left alone).
* `.gtacli-train.lock` (pid, host, start time) makes a second run into the same work dir refuse at start,
  naming the running one; a lock whose process is gone (same host) is taken over.
* Hidden temp files of a save that was killed (`.latest.tmp-<pid>-<hex>.pth`, ~250 MB each) are removed once
  the lock is held (so never a live run's temp file).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

from gtacli.errors import GtacliError, UsageError
from gtacli.io.atomic import ensure_writable_dir

LOCK_NAME = ".gtacli-train.lock"
STALE_TEMP_PATTERN = ".*.tmp-*"  # gtacli.io.atomic.temp_path_for's names
# what a training run writes (and `--overwrite` removes): file globs at the top, and files of its subfolders
RUN_FILES = ("latest.pth", "epoch_*.pth", "metrics.jsonl", "recipe.json")
RUN_SUBFOLDER_FILES = {"tensorboard": "events.out.tfevents.*", "fits": "*_fits.npy"}


def check_work_dir(work_dir: Path) -> None:
    """Prove the run directory can be created and written (nothing is created yet)."""
    # a run refused later (bad --init, missing data) must not leave an empty folder; the lock creates it
    ensure_writable_dir(work_dir, what="the work directory", fix="pass a writable --work-dir", create=False)


def check_reuse(work_dir: Path, *, resume: bool, overwrite: bool) -> None:
    """A non-empty work dir needs `--resume` or `--overwrite` (UsageError otherwise)."""
    if resume or overwrite or not work_dir.is_dir():
        return
    used = [p.name for p in work_dir.iterdir() if not _is_ours_to_ignore(p)]
    if used:
        raise UsageError(
            f"the work directory is not empty ({', '.join(sorted(used)[:3])}{', ...' if len(used) > 3 else ''})",
            path=work_dir,
            fix="continue that run with --resume, start anew in it with --overwrite, or pass another --work-dir",
        )


def _is_ours_to_ignore(path: Path) -> bool:
    return path.name == LOCK_NAME or path.match(STALE_TEMP_PATTERN)


def clear_previous_run(work_dir: Path) -> List[Path]:
    """`--overwrite`: remove the files a training run writes (checkpoints, metrics, recipe, TensorBoard
    events, fits); anything else in the folder stays. Returns what was removed."""
    removed: List[Path] = []
    for pattern in RUN_FILES:
        removed += [p for p in work_dir.glob(pattern) if p.is_file()]
    for folder, pattern in RUN_SUBFOLDER_FILES.items():
        removed += [p for p in (work_dir / folder).glob(pattern) if p.is_file()]
    for path in removed:
        path.unlink()
    for folder in RUN_SUBFOLDER_FILES:
        try:
            (work_dir / folder).rmdir()  # only when empty
        except OSError:
            pass
    return removed


def remove_stale_temps(work_dir: Path) -> List[Path]:
    """Hidden temp files left by a save that was killed (call while holding the lock)."""
    stale = [p for d in (work_dir, work_dir / "fits") for p in d.glob(STALE_TEMP_PATTERN) if p.is_file()]
    for path in stale:
        path.unlink()
    return stale


class WorkDirLock:
    """An exclusive claim on a work dir for one run (created with O_EXCL; removed by `release`)."""

    def __init__(self, work_dir: Path):
        self.path = Path(work_dir) / LOCK_NAME
        self.held = False

    def acquire(self, warn: Callable[[str], None]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                other = _read_lock(self.path)
                if other is not None and _is_alive(other):
                    raise GtacliError(
                        f"another run is using this work directory (pid {other.get('pid')} on "
                        f"{other.get('host')}, started {other.get('started')})",
                        path=self.path.parent,
                        fix=f"wait for it, or pass another --work-dir (if that run is gone, delete {self.path})",
                    ) from None
                warn(f"removing the lock of a run that is gone: {_describe(other)}")
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as fp:
                json.dump(record, fp)
            self.held = True
            return
        raise GtacliError("could not take the work directory's lock", path=self.path)  # pragma: no cover

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def _read_lock(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # unreadable or half-written by a killed run: stale
    return data if isinstance(data, dict) else None


def _is_alive(record: Dict[str, Any]) -> bool:
    """True when the lock's process may still run (another host: cannot tell, so assume it does)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        os.kill(int(record.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _describe(record: Optional[Dict[str, Any]]) -> str:
    if not record:
        return "unreadable lock file"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}"
