"""Where the project's documents are: inside an installed package (`gtacli/docs/`, copied there by the
build) or, in a clone / editable install, the repository's `docs/` folder. Help lines and errors cite
`docs/reproduction.md §N`; `gtacli --docs` prints the folder that holds it on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

PACKAGE = Path(__file__).resolve().parents[1]  # gtacli/


def docs_dir() -> Optional[Path]:
    """The folder holding reproduction.md (installed copy first), or None when neither exists."""
    for folder in (PACKAGE / "docs", PACKAGE.parent / "docs"):
        if (folder / "reproduction.md").is_file():
            return folder
    return None
