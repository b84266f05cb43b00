"""Error types shared by the whole package.

Every failure a user can cause (bad file, missing asset, bad option value) is raised as a `GtacliError`
subclass carrying: the file involved, what is wrong, and how to fix it. The CLI turns it into exactly one
line on stderr and exit code 1 (`--debug` shows the traceback). Nothing here imports the rest of gtacli.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

PathLike = Union[str, Path]


class GtacliError(Exception):
    """A failure caused by input, with a one-line message: '<file>: <problem>. Fix: <fix>'."""

    exit_code = 1

    def __init__(self, problem: str, path: Optional[PathLike] = None, fix: Optional[str] = None):
        self.problem = problem
        self.path = None if path is None else str(path)
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        text = f"{self.path}: {self.problem}" if self.path else self.problem
        if self.fix and "Fix:" in text:  # the problem quotes another error's fix: one "Fix:" per line
            text = f"{text.rstrip('.')}; then: {self.fix}"
        elif self.fix:
            text = f"{text.rstrip('.')}. Fix: {self.fix}"
        return " ".join(text.split())  # always a single line


class UnsafeFileError(GtacliError):
    """A pickle/checkpoint asked to run or import something that is not plain data."""


class BadFileError(GtacliError):
    """A file exists but its content is wrong (shape, keys, truncated, not the format we expect)."""


class MissingFileError(GtacliError):
    """A file the job needs is absent."""


class DownloadError(GtacliError):
    """A download failed or did not verify."""


class UsageError(GtacliError):
    """An option value that cannot work (the CLI maps it to exit code 2)."""

    exit_code = 2
