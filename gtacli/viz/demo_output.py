"""The demo's output folder: built beside the target, moved into place only when complete, and never deleting a
file the demo cannot prove it wrote.

Every output folder carries `MANIFEST` (`.gtacli-demo.json`), the list of files the demo wrote there. On a rerun
into the same folder, the old output is replaced only when the folder holds exactly the files its manifest lists
(plus the manifest); a folder with any other file (or a results.json without a manifest) is refused with one
line, so a user's own files are never deleted.

Also here: the per-frame files the demo writes (overlay PNGs, Wavefront OBJ meshes), written through Python file
objects so any file name works (OpenCV's own writers cannot take every byte string).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from pathlib import Path
from typing import Iterable, List

import cv2
import numpy as np

from gtacli.errors import GtacliError, UsageError
from gtacli.io.atomic import ensure_writable_dir

MANIFEST = ".gtacli-demo.json"
MANIFEST_KIND = "gtacli-demo-output"
NOT_OURS_FIX = "choose a new or empty --output folder (the demo replaces only a folder it wrote itself)"


def display_name(name: str) -> str:
    """A file name safe to print and to write into JSON: bytes that are not UTF-8 shown as \\xNN."""
    return os.fsencode(name).decode("utf-8", "backslashreplace")


def check_output_dir(final_dir: Path) -> None:
    """Refuse, before any work, an output folder that is a file or holds files the demo did not write."""
    final_dir = Path(final_dir)
    if final_dir.exists() and not final_dir.is_dir():
        raise UsageError(f"--output {display_name(str(final_dir))} is a file", fix="give a folder path")
    if final_dir.is_dir():
        foreign = foreign_files(final_dir)
        if foreign:
            raise UsageError(
                f"--output {display_name(str(final_dir))} holds files the demo did not write "
                f"(e.g. {display_name(foreign[0])})",
                fix=NOT_OURS_FIX,
            )
    # The results are built in a temporary folder beside the target: prove now that it can be created.
    ensure_writable_dir(
        final_dir, what="the demo output here", fix="choose a writable --output folder", create=False
    )


def foreign_files(folder: Path) -> List[str]:
    """Paths (relative, sorted) under `folder` that its demo manifest does not list; [] for an empty folder."""
    present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    listed = set(read_manifest(folder))
    return [p for p in present if p != MANIFEST and p not in listed]


def read_manifest(folder: Path) -> List[str]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return []
    if (
        not isinstance(data, dict)
        or data.get("kind") != MANIFEST_KIND
        or not isinstance(data.get("files"), list)
    ):
        return []
    return [f for f in data["files"] if isinstance(f, str)]


class StagedOutput:
    """A temporary folder beside the target; `commit()` writes the manifest and moves it into place."""

    def __init__(self, final_dir: Path):
        self.final_dir = Path(final_dir)
        self.tmp_dir = (
            self.final_dir.parent / f".{self.final_dir.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}"
        )
        try:
            self.tmp_dir.mkdir(parents=True)
        except OSError as exc:
            raise unwritable_output(self.final_dir, exc) from None

    def discard(self) -> None:
        shutil.rmtree(self.tmp_dir, ignore_errors=True)

    def commit(self) -> None:
        files = sorted(str(p.relative_to(self.tmp_dir)) for p in self.tmp_dir.rglob("*") if p.is_file())
        (self.tmp_dir / MANIFEST).write_text(
            json.dumps({"kind": MANIFEST_KIND, "files": files}, indent=1), encoding="utf-8"
        )
        final = self.final_dir
        old = None
        try:
            if final.is_dir():
                if foreign_files(final):  # checked again: something may have appeared during the run
                    raise UsageError(
                        f"--output {display_name(str(final))} gained files the demo did not write",
                        fix=NOT_OURS_FIX,
                    )
                old = final.parent / f".{final.name}.old-{os.getpid()}-{secrets.token_hex(4)}"
                os.replace(final, old)
            os.replace(self.tmp_dir, final)
        except OSError as exc:
            raise unwritable_output(final, exc) from None
        if old is not None:  # holds only the files the old manifest listed (checked above)
            shutil.rmtree(old, ignore_errors=True)


def unwritable_output(final_dir: Path, exc: OSError) -> GtacliError:
    reason = exc.strerror or str(exc)
    blocker = next((p for p in final_dir.parents if p.exists()), None)
    if blocker is not None and not blocker.is_dir():  # mkdir says 'File exists' / 'Not a directory'
        reason = f"{display_name(str(blocker))} is a file, not a folder"
    return GtacliError(
        f"cannot write the demo output here ({reason})",
        path=final_dir,
        fix="choose a writable folder with --output, or fix its permissions",
    )


def write_png(target: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image)
    if not ok:
        raise GtacliError("cannot encode the overlay image", path=target)
    _write_bytes(target, data.tobytes())


def write_obj(target: Path, vertices: np.ndarray, faces: np.ndarray) -> None:
    """Wavefront OBJ: `v x y z` per vertex (metres), `f a b c` per triangle (1-based indices)."""
    lines: Iterable[str] = [
        f"v {x:.6f} {y:.6f} {z:.6f}\n" for x, y, z in np.asarray(vertices, np.float64)
    ] + [f"f {a} {b} {c}\n" for a, b, c in np.asarray(faces, np.int64) + 1]
    _write_bytes(target, "".join(lines).encode("ascii"))


def _write_bytes(target: Path, data: bytes) -> None:
    try:
        target.write_bytes(data)
    except OSError as exc:
        raise GtacliError(
            f"cannot write ({exc.strerror or exc})",
            path=target,
            fix="check the free disk space and run again, or use --no-render for results only",
        ) from None
