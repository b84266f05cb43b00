"""The run directory's protection: one run at a time, no silent reuse, no stale half-written files, and no
removal of anything the run family did not write.

* A non-empty work dir is only used with `--resume` (continue the run in it) or `--overwrite` (start anew).
* `.gtacli-run.json` records every file a run in this folder wrote (relative names, added *before* the file is
  written, so a killed save is recorded too). `--overwrite` removes exactly those files and the hidden temp
  files of their saves; nothing is removed by a name pattern alone, so a user's `epoch_best.pth`, their own
  `recipe.json` or `.notes.tmp-draft.txt` stay. A recorded path reached through a symlink is never removed, and
  the run refuses to start when `fits/` or `tensorboard/` is a symlink (it would write into its target).
* `.gtacli-train.lock` (pid, host, start time) is held with an `fcntl` lock for the whole run: taking it is one
  atomic step, so two runs can never both hold it, and a lock file whose process is gone is free again without
  guessing from its content. The emptiness check runs after the lock is held, before the slow set-up.
"""

from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import stat
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

from gtacli.errors import GtacliError, UsageError
from gtacli.io.atomic import atomic_write_json, ensure_writable_dir

LOCK_NAME = ".gtacli-train.lock"
RECORD_NAME = ".gtacli-run.json"
# subfolders a run writes into: a symlink there would make it write (and `--overwrite` remove) elsewhere
RUN_SUBFOLDERS = ("fits", "tensorboard")
# gtacli.io.atomic.temp_path_for's names: `.<stem>.tmp-<pid>-<8 hex><suffix>`
_TEMP_NAME = re.compile(r"^\.(?P<stem>.+)\.tmp-\d+-[0-9a-f]{8}(?P<suffix>\.[A-Za-z0-9]+)?$")


def check_work_dir(work_dir: Path) -> None:
    """Prove the run directory can be created and written (nothing is created yet), and that the subfolders
    the run writes into are not symlinks."""
    # a run refused later (bad --init, missing data) must not leave an empty folder; the lock creates it
    ensure_writable_dir(work_dir, what="the work directory", fix="pass a writable --work-dir", create=False)
    for name in RUN_SUBFOLDERS:
        if (work_dir / name).is_symlink():
            raise UsageError(
                f"{name}/ in the work directory is a symlink (to {os.readlink(work_dir / name)}); the run "
                f"writes its {name} there",
                path=work_dir / name,
                fix=f"remove the link (the run creates a real {name}/ folder), or pass another --work-dir",
            )


def check_reuse(work_dir: Path, record: RunRecord, *, resume: bool, overwrite: bool) -> None:
    """A non-empty work dir needs `--resume` or `--overwrite` (UsageError otherwise); the lock, the record and
    temp files of a killed save do not count."""
    if resume or overwrite or not work_dir.is_dir():
        return
    ours = {LOCK_NAME, RECORD_NAME, *(p.name for p in remove_stale_temps(work_dir, record, unlink=False))}
    used = [p.name for p in work_dir.iterdir() if p.name not in ours]
    if used:
        raise UsageError(
            f"the work directory is not empty ({', '.join(sorted(used)[:3])}{', ...' if len(used) > 3 else ''})",
            path=work_dir,
            fix="continue that run with --resume, start anew in it with --overwrite, or pass another --work-dir",
        )


# ---------------------------------------------------------------------------------------------------------
# the record of what runs in this folder wrote


class RunRecord:
    """`.gtacli-run.json`: the relative names of the files runs in this work dir wrote (or began to write)."""

    def __init__(self, work_dir: Path):
        self.work_dir = Path(work_dir)
        self.path = self.work_dir / RECORD_NAME
        self.files: List[str] = _read_record(self.path)

    def add(self, names: Iterable[str]) -> None:
        """Record `names` (relative to the work dir) before they are written."""
        new = [n for n in dict.fromkeys(names) if n not in self.files]
        if new:
            self.files += new
            atomic_write_json(self.path, {"files": self.files})

    def reset(self, keep: Iterable[str] = ()) -> None:
        self.files = [n for n in self.files if n in set(keep)]
        atomic_write_json(self.path, {"files": self.files})


def _read_record(path: Path) -> List[str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError):
        return []  # unreadable: nothing is known to be ours, so nothing will be removed
    files = data.get("files") if isinstance(data, dict) else None
    return [f for f in files if _is_plain_relative(f)] if isinstance(files, list) else []


def _is_plain_relative(name: Any) -> bool:
    """A name of the form 'a.pth' or 'fits/x.npy': relative, no '..', no empty or hidden-parent tricks."""
    if not isinstance(name, str) or not name or name.startswith("/") or "\\" in name or "\0" in name:
        return False
    parts = name.split("/")
    return all(p not in ("", ".", "..") for p in parts) and len(parts) <= 2


def _regular_file_inside(work_dir: Path, name: str) -> Optional[Path]:
    """`work_dir/name` when it is a regular file reached through no symlink below the work dir, else None."""
    path = work_dir
    for part in name.split("/"):
        path = path / part
        try:
            mode = os.lstat(path).st_mode
        except OSError:
            return None
        if stat.S_ISLNK(mode):
            return None
    return path if stat.S_ISREG(mode) else None


def check_overwrite_targets(work_dir: Path, record: RunRecord, epochs: int) -> None:
    """`--overwrite` replaces the run's own files only: a file at a name the new run will write (recipe,
    metrics, latest and epoch checkpoints) that no recorded run wrote is someone's own, and is not replaced."""
    names = ["recipe.json", "metrics.jsonl", "latest.pth", *(f"epoch_{n}.pth" for n in range(1, epochs + 1))]
    foreign = [n for n in names if n not in record.files and os.path.lexists(work_dir / n)]
    if foreign:
        raise UsageError(
            f"--overwrite would replace {', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}, which no "
            f"gtacli run recorded in {RECORD_NAME} wrote",
            path=work_dir,
            fix="move those files away, or pass another --work-dir",
        )


def clear_previous_run(work_dir: Path, record: RunRecord) -> List[Path]:
    """`--overwrite`: remove the files the record names (and temp files of their saves); anything else in the
    folder stays, and nothing is removed through a symlink. Returns what was removed."""
    removed = [p for p in (_regular_file_inside(work_dir, n) for n in dict.fromkeys(record.files)) if p]
    removed += remove_stale_temps(work_dir, record, unlink=False)
    for path in removed:
        path.unlink(missing_ok=True)
    for folder in RUN_SUBFOLDERS:
        try:
            (work_dir / folder).rmdir()  # only when empty (never a symlink: check_work_dir refused those)
        except OSError:
            pass
    record.reset()
    return removed


def remove_stale_temps(work_dir: Path, record: RunRecord, *, unlink: bool = True) -> List[Path]:
    """Hidden temp files of recorded files, left by a save that was killed (call while holding the lock)."""
    wanted: Dict[str, List[str]] = {}  # folder ('' or 'fits') -> recorded names in it
    for name in record.files:
        folder, _, base = name.rpartition("/")
        wanted.setdefault(folder, []).append(base)
    stale: List[Path] = []
    for folder, names in wanted.items():
        directory = work_dir / folder if folder else work_dir
        if directory.is_symlink() or not directory.is_dir():
            continue
        for entry in directory.iterdir():
            match = _TEMP_NAME.match(entry.name)
            if match and f"{match['stem']}{match['suffix'] or ''}" in names and entry.is_file():
                if not entry.is_symlink():
                    stale.append(entry)
    if unlink:
        for path in stale:
            path.unlink()
    return stale


# ---------------------------------------------------------------------------------------------------------
# the lock


class WorkDirLock:
    """An exclusive claim on a work dir for one run: an `fcntl` lock on `.gtacli-train.lock`, held open until
    `release` (the kernel drops it when the process dies, so a killed run never blocks the next one)."""

    def __init__(self, work_dir: Path):
        self.path = Path(work_dir) / LOCK_NAME
        self.held = False
        self.created_dir = False
        self._fd: Optional[int] = None

    def acquire(self, warn: Callable[[str], None]) -> None:
        self.created_dir = not self.path.parent.exists()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise _lock_error(exc, self.path) from None
        for _ in range(20):  # retried only when the file was replaced between open and flock
            fd = self._open()
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                other = _read_lock(self.path)
                raise GtacliError(
                    f"another run is using this work directory ({_describe(other)})",
                    path=self.path.parent,
                    fix="wait for it, or pass another --work-dir",
                ) from None
            if not self._still_the_file(fd):  # its holder released (unlinked) it after our open: again
                os.close(fd)
                continue
            previous = _read_fd(fd)
            # a run of an older gtacli (no flock), or on another host (whose flock may not reach us over a
            # network file system): trust its record while its process may still run
            if previous and _is_alive(previous):
                os.close(fd)
                raise GtacliError(
                    f"another run may be using this work directory ({_describe(previous)})",
                    path=self.path.parent,
                    fix=f"wait for it, or pass another --work-dir (if that run is gone, delete {self.path})",
                )
            if previous:
                warn(f"taking over the lock of a run that is gone: {_describe(previous)}")
            self._fd = fd
            self.held = True
            self._write_record(fd)
            return
        raise GtacliError("could not take the work directory's lock", path=self.path)  # pragma: no cover

    def _open(self) -> int:
        try:
            return os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise _lock_error(exc, self.path) from None

    def _still_the_file(self, fd: int) -> bool:
        try:
            return os.stat(self.path, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def _write_record(self, fd: int) -> None:
        record = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": _now()}).encode()
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, record, 0)
            os.fsync(fd)
        except OSError as exc:
            self.release()  # no 0-byte lock left behind on a full disk
            raise _lock_error(exc, self.path) from None

    def release(self, remove_created_dir: bool = False) -> None:
        """Give the lock up (removing its file); with `remove_created_dir`, also the work dir this run created
        when it is empty again (a run refused during set-up leaves no folder)."""
        if self.held and self._fd is not None:
            self.path.unlink(missing_ok=True)  # unlink before close: a waiting run re-checks the inode
            os.close(self._fd)
            self._fd = None
            self.held = False
            if remove_created_dir and self.created_dir:
                try:
                    self.path.parent.rmdir()
                except OSError:
                    pass


def _lock_error(exc: OSError, path: Path) -> GtacliError:
    if exc.errno == errno.ENOSPC:
        return GtacliError(f"no space left on device: {path}", fix="free disk space, then run again")
    if exc.errno == errno.ELOOP:
        return GtacliError("the lock file is a symlink", path=path, fix=f"delete {path}, then run again")
    return GtacliError(f"cannot take the work directory's lock ({exc.strerror or exc})", path=path)


def _now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z")


def _read_lock(path: Path) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # being written by its holder this instant
    return data if isinstance(data, dict) else None


def _read_fd(fd: int) -> Optional[Dict[str, Any]]:
    try:
        data = json.loads(os.pread(fd, 4096, 0).decode("utf-8", "replace") or "null")
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _is_alive(record: Dict[str, Any]) -> bool:
    """True when the record's process may still run (another host: cannot tell, so assume it does)."""
    if record.get("host") != socket.gethostname():
        return True
    try:
        pid = int(record.get("pid", -1))
        if pid == os.getpid() or pid <= 0:
            return pid > 0
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError, OverflowError):
        return True
    return True


def _describe(record: Optional[Dict[str, Any]]) -> str:
    if not record:
        return "its lock record is being written"
    return f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')}"
