"""Write files so that a crash, a full disk or Ctrl-C never leaves a half-written file at the final path.

Everything is written to a temporary name in the destination folder (same filesystem, so the final
`os.replace` is atomic) and renamed only when complete.
"""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional

from gtacli.errors import GtacliError, PathLike
from gtacli.io.sizes import format_bytes

NAME_MAX_BYTES = 255  # the longest file name Linux file systems take


def temp_path_for(final: PathLike) -> Path:
    """A hidden temporary name beside `final` that keeps its suffix (np.savez appends '.npz' otherwise); the stem
    is shortened when needed, so a valid final name (up to 255 bytes) always has a valid temp name."""
    final = Path(final)
    tail = f".tmp-{os.getpid()}-{secrets.token_hex(4)}{final.suffix}"
    room = NAME_MAX_BYTES - 1 - len(tail.encode())
    stem = final.stem.encode()[:room].decode("utf-8", "ignore")
    return final.with_name(f".{stem}{tail}")


# torch.save reports a full disk as a RuntimeError from its zip writer, not as OSError(ENOSPC).
_TORCH_WRITE_FAILURES = ("inline_container.cc", "file write failed", "PytorchStreamWriter failed")
# Below this much free space after a failed write, the failure is taken to be the full disk.
DISK_FULL_FREE_BYTES = 64 << 20


@contextlib.contextmanager
def atomic_path(final: PathLike, *, expected_bytes: Optional[int] = None) -> Iterator[Path]:
    """Yield a temporary path; on normal exit rename it to `final`, on any error delete it.

    A full disk (ENOSPC, or torch's "enforce fail at inline_container.cc" RuntimeError) becomes one line:
    "no space left on device: PATH, needs ~N MB" (`expected_bytes` when the caller knows the size, else at
    least what had been written).

    >>> with atomic_path("out.npz") as tmp:   # doctest: +SKIP
    ...     np.savez(tmp, a=1)
    """
    final = Path(final)
    made = _missing_folders(final.parent)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        _remove_empty(made)
        raise _as_gtacli_error(exc, final.parent) from exc
    tmp = temp_path_for(final)
    try:
        yield tmp
        if not tmp.exists():
            raise GtacliError("nothing was written", path=final)
        os.replace(tmp, final)
    except OSError as exc:
        full = disk_full_error(final, tmp, expected_bytes) if exc.errno == errno.ENOSPC else None
        _unlink_quietly(tmp)
        _remove_empty(made)
        raise (full or _as_gtacli_error(exc, final)) from exc
    except RuntimeError as exc:
        full = disk_full_error(final, tmp, expected_bytes) if _is_torch_write_failure(exc) else None
        _unlink_quietly(tmp)
        _remove_empty(made)
        if full is None:
            raise
        raise full from exc
    except BaseException:
        _unlink_quietly(tmp)
        _remove_empty(made)
        raise


def _missing_folders(folder: Path) -> list:
    """The folders `mkdir(parents=True)` would create for `folder`, deepest first."""
    missing = []
    try:
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
    except OSError:  # a name too long to even look up: nothing will be created
        return []
    return missing


def _remove_empty(folders: list) -> None:
    """A failed write leaves no empty folders behind (those it created, deepest first, while empty)."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _drop_tracebacks(exc: Optional[BaseException]) -> None:
    while exc is not None:
        exc.__traceback__ = None
        exc = exc.__context__ or exc.__cause__


def _is_torch_write_failure(exc: RuntimeError) -> bool:
    return any(marker in str(exc) for marker in _TORCH_WRITE_FAILURES)


def disk_full_error(final: Path, tmp: Path, expected_bytes: Optional[int] = None) -> Optional[GtacliError]:
    """The one-line error for a write that failed on a full disk, or None when the disk is not (nearly) full.

    Measured while the partial temporary file still exists: what it holds is a lower bound of the size."""
    try:
        written = tmp.stat().st_size if tmp.exists() else 0
        free = shutil.disk_usage(final.parent).free
    except OSError:
        return None
    if free >= max(DISK_FULL_FREE_BYTES, expected_bytes or 0):
        return None
    need = (
        f"~{format_bytes(expected_bytes, 'MB')}"
        if expected_bytes
        else f"more than {format_bytes(written, 'MB')}"
    )
    return GtacliError(
        f"no space left on device: {final}, needs {need} ({format_bytes(free, 'MB')} free)",
        fix="free disk space or write elsewhere, then run again",
    )


def atomic_write_bytes(final: PathLike, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_write_text(final: PathLike, text: str) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def atomic_write_json(final: PathLike, obj: Any) -> Path:
    return atomic_write_text(final, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_with(
    final: PathLike, writer: Callable[[Path], Any], *, expected_bytes: Optional[int] = None
) -> Path:
    """Call `writer(tmp_path)` (e.g. `lambda p: torch.save(obj, p)`) and rename into place."""
    with atomic_path(final, expected_bytes=expected_bytes) as tmp:
        _run_writer(writer, tmp, Path(final), expected_bytes)
    return Path(final)


def _run_writer(writer: Callable[[Path], Any], tmp: Path, final: Path, expected_bytes: Optional[int]) -> None:
    """`writer(tmp)`; torch's full-disk RuntimeError becomes the one-line error, and the failed writer is let go
    at once: it lives in the traceback's frames and keeps the temp file open (its space not given back)."""
    try:
        writer(tmp)
    except RuntimeError as exc:
        full = disk_full_error(final, tmp, expected_bytes) if _is_torch_write_failure(exc) else None
        if full is None:
            raise
        _drop_tracebacks(exc)
        del exc
        gc.collect()
        raise full from None


def _unlink_quietly(path: Path) -> None:
    with contextlib.suppress(OSError):
        path.unlink()


def _as_gtacli_error(exc: OSError, path: Path) -> GtacliError:
    if exc.errno == errno.ENOSPC:
        return GtacliError(f"no space left on device: {path}", fix="free disk space and run again")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return GtacliError(
            "cannot write here (read-only or permission denied)",
            path=path,
            fix="choose a writable folder (--data-root / --output / --work-dir) or fix its permissions",
        )
    if exc.errno == errno.ENAMETOOLONG:
        return GtacliError(
            "a file or folder name on this path is longer than the file system allows (255 bytes)",
            path=path,
            fix="choose a shorter name",
        )
    if exc.errno in (errno.EEXIST, errno.ENOTDIR):
        return GtacliError(
            "cannot write: a file stands where a folder is needed on this path",
            path=path,
            fix="choose another output path, or move that file away",
        )
    return GtacliError(f"cannot write: {exc.strerror or exc}", path=path, fix="check the path and free space")


def check_name_lengths(path: PathLike) -> None:
    """Refuse, before any work, a path with a file or folder name longer than the file system takes."""
    for part in Path(path).parts:
        if len(part.encode()) > NAME_MAX_BYTES:
            raise GtacliError(
                f"a file or folder name on this path is longer than the file system allows ({len(part.encode())} "
                f"bytes; at most {NAME_MAX_BYTES})",
                path=path,
                fix="choose a shorter name",
            )


def ensure_writable_dir(directory: PathLike, *, what: str, fix: str, create: bool = True) -> None:
    """Prove before any work starts that `directory` can hold files, or fail with one line.

    `create=True` makes the folder (and its parents) and writes a probe file in it; `create=False` creates
    nothing and probes the folder itself if it exists, else its nearest existing ancestor (for outputs
    created only when the first file is written, or built elsewhere and moved into place at the end). The message names the blocking file when a file stands where a folder is needed.
    `what` completes "cannot write <what>"; `fix` says what to do.
    """
    directory = Path(directory)
    target = (
        directory if create else next((p for p in (directory, *directory.parents) if p.exists()), Path("."))
    )
    try:
        if create:
            directory.mkdir(parents=True, exist_ok=True)
        elif not target.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "Not a directory")
        probe = target / f".gtacli-write-test-{os.getpid()}-{secrets.token_hex(4)}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        reason = exc.strerror or str(exc)
        blocker = next((p for p in (directory, *directory.parents) if p.exists()), None)
        if blocker is not None and not blocker.is_dir():  # mkdir says 'File exists' / 'Not a directory'
            reason = f"{blocker} is a file, not a folder"
        raise GtacliError(f"cannot write {what} ({reason})", path=directory, fix=fix) from None


class StagedFolder:
    """A folder written atomically with a record of what it holds (the HumanData cache, the demo output).

    Files go into `path`, a hidden temporary folder beside `final` (same filesystem); `commit(record)` writes the
    record (a JSON object, in `record_name`) last and moves the folder into place whole, so a reader that finds
    the record finds a complete folder, and a crash leaves at most a temporary folder behind. As a context
    manager the temporary folder is removed when the block raises or ends without a commit.

    The sample tree is the one such folder built in place instead (it lives in a data root that may hold the
    user's own files, and replaces only the files it wrote); its record (`SYNTHETIC_DATA.json`) is read with
    `read_record` too.
    """

    def __init__(self, final: PathLike, record_name: str, *, indent: Optional[int] = None):
        self.final = Path(final)
        self.record_name = record_name
        self.indent = indent
        self.path = self.final.parent / f".{self.final.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        self.path.mkdir(parents=True)  # OSError: the caller words it for its own folder
        self.committed = False

    def __enter__(self) -> StagedFolder:
        return self

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if not self.committed:
            self.discard()

    def files(self) -> List[str]:
        """Paths (relative, sorted) of the files written so far."""
        return sorted(str(p.relative_to(self.path)) for p in self.path.rglob("*") if p.is_file())

    def discard(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def commit(
        self,
        record: Dict[str, Any],
        *,
        replace: bool = False,
        before_replace: Optional[Callable[[Path], None]] = None,
    ) -> bool:
        """Write the record, then move the folder to `final`. An existing `final` is replaced when `replace` (after
        `before_replace(final)`, which may refuse by raising; the old folder is moved aside, then deleted);
        otherwise it means another writer finished the same folder first: ours is dropped and False returned
        (an existing `final` without a record is an error). OSError propagates for the caller to word."""
        (self.path / self.record_name).write_text(json.dumps(record, indent=self.indent), encoding="utf-8")
        if not replace:
            try:
                os.rename(self.path, self.final)
            except OSError:
                if not (self.final / self.record_name).is_file():  # not a concurrent writer that won the race
                    raise
                self.discard()
                self.committed = True
                return False
            self.committed = True
            return True
        old = None
        if self.final.is_dir():
            if before_replace is not None:
                before_replace(self.final)
            old = self.final.parent / f".{self.final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
            os.replace(self.final, old)
        os.replace(self.path, self.final)
        self.committed = True
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        return True


def read_record(path: PathLike) -> Dict[str, Any]:
    """The JSON object in `path` (a folder's record); {} when it is absent, unreadable or not an object."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return {}
    return data if isinstance(data, dict) else {}
