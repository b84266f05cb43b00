"""The data root's lock file (`gtacli.lock.json`: what `gtacli fetch` placed, with URL, size, sha256, time)
and the cross-process locks (`fcntl.flock`) that keep two fetch runs on one root from writing the same file."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, Optional

from gtacli.io.atomic import atomic_write_json
from gtacli.layout import DataLayout

LOCK_DIR_NAME = ".gtacli-locks"


@contextlib.contextmanager
def file_lock(path: Path, *, on_wait: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Exclusive cross-process lock (fcntl.flock) held while the block runs. The lock file is removed on
    release (and its folder when empty), so a run leaves no lock files behind; a waiter that got the lock
    of a file removed meanwhile tries again on the new one (the inode check)."""
    created_dir = not path.parent.exists()
    while True:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except (FileNotFoundError, FileExistsError):  # another run removed the empty lock folder this instant
            if path.parent.exists() and not path.parent.is_dir():
                raise  # a file stands where the lock folder goes
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
                on_wait = None
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it while we waited: lock the current file instead
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.unlink()  # before unlocking: a waiter on this inode sees it is gone and retries
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if created_dir or path.parent.name == LOCK_DIR_NAME:
            with contextlib.suppress(OSError):
                path.parent.rmdir()  # only when empty: other locks are still in use


_THREAD_LOCK = threading.Lock()  # flock is per open file, so threads of one process also need this


def read_lock_file(layout: DataLayout) -> Dict[str, Any]:
    """The lock file's records by asset name ({} when absent or unreadable)."""
    path = layout.lock_file
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def record_in_lock_file(layout: DataLayout, name: str, record: Dict[str, Any]) -> None:
    """Add/replace one record; read-modify-write under a cross-process lock, written atomically."""
    with _THREAD_LOCK, file_lock(layout.root / LOCK_DIR_NAME / "lockfile.lock"):
        files = read_lock_file(layout)
        files[name] = record
        atomic_write_json(layout.lock_file, {"version": 1, "files": files})


def lock_record(
    asset_name: str, url: str, dest: Path, root: Path, size: int, sha256: str, **extra: Any
) -> Dict[str, Any]:
    """One lock-file entry; `dest` is stored relative to the data root so the tree can move."""
    st = dest.stat()
    record = {
        "name": asset_name,
        "url": url,
        "dest": dest.relative_to(root).as_posix() if dest.is_relative_to(root) else str(dest),
        "size": size,
        "sha256": sha256,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mtime_ns": st.st_mtime_ns,
    }
    record.update(extra)
    return record
