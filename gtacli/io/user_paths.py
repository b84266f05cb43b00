"""Files named on the command line, looked up the way a user means them.

A relative path is first taken from the current folder. When nothing is there, the same path is tried under the
data root, so the README's `--init data/pretrained_models/spin_official.pth` and a bare
`--checkpoint spin_official.pth` work whatever `--data-root` / `$GTACLI_DATA_ROOT` says:

1. `ROOT/PATH`;
2. a path written against the default root (`data/...`): `ROOT/...` without the leading `data/`;
3. a bare file name: `ROOT/pretrained_models/NAME`, then `ROOT/models/NAME`.

The command uses the first that exists and says so on stderr (a silent substitution would hide which file ran).
When none exists the error names the absolute path, the current folder and the data root places tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, List, Optional, Union

from gtacli.errors import MissingFileError

DEFAULT_ROOT_NAME = "data"  # the default --data-root, which examples and the README write paths against
CHECKPOINT_FOLDERS = ("pretrained_models", "models")


def candidates_under_root(path: Path, root: Path, folders=CHECKPOINT_FOLDERS) -> List[Path]:
    """Where a relative `path` missing from the current folder may be under `root`, in the order tried."""
    if path.is_absolute():
        return []
    found: List[Path] = [root / path]
    if len(path.parts) > 1 and path.parts[0] == DEFAULT_ROOT_NAME:
        found.append(root.joinpath(*path.parts[1:]))
    if len(path.parts) == 1:
        found += [root / folder / path for folder in folders]
    unique: List[Path] = []
    for candidate in found:
        if candidate not in unique and candidate != path:
            unique.append(candidate)
    return unique


def resolve_user_file(
    path: Union[str, Path],
    root: Union[str, Path],
    *,
    option: str,
    what: str = "file",
    fix: Optional[str] = None,
    note: Optional[Callable[[str], None]] = None,
) -> Path:
    """The file the user meant by `option PATH` (see the module docstring); MissingFileError when none exists."""
    given = Path(path).expanduser()
    if given.is_file():
        return given
    root = Path(root)
    tried = candidates_under_root(given, root)
    for candidate in tried:
        if candidate.is_file():
            if note is not None:
                note(f"{option} {path}: not in {Path.cwd()}; using {candidate} (under the data root {root})")
            return candidate
    where = f"not found (looked in {Path.cwd()}"
    if tried:
        where += " and under the data root: " + ", ".join(str(p) for p in tried)
    where += ")"
    raise MissingFileError(f"{what} {where}", path=given.absolute(), fix=fix)
