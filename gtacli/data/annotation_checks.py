"""Checks of what an annotation holds, shared by `check-layout` and the commands that read it (eval), so both
refuse the same files with the same one line (a file check-layout fails is never scored, and the reverse).

* `check_finite(hd, key, path, rows)`: no NaN/inf in the rows of a per-frame member;
* `check_gt_smpl(hd, path, rows)`: the ground-truth SMPL has one row per frame with the expected shapes and is
  finite, and `meta.gender` holds one 'm'/'f' per frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Tuple

import numpy as np

from gtacli.data.human_data import HumanData
from gtacli.errors import BadFileError

GT_SMPL_SHAPES = {"betas": ((10,),), "global_orient": ((3,),), "body_pose": ((23, 3), (69,))}
GENDERS = {"m", "f"}
FIX = "re-create the annotation, or download it again (gtacli fetch pw3d_test)"


def _non_finite_rows(values: np.ndarray, rows: Optional[np.ndarray]) -> Optional[Tuple[int, int]]:
    """(how many frames hold NaN/inf, the first one's frame number in the file) for `values` (one row per frame,
    read at `rows` or at every frame), or None when all are finite."""
    bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    if not bad.any():
        return None
    first = int(np.argmax(bad))
    return int(bad.sum()), first if rows is None else int(np.asarray(rows)[first])


def check_finite(
    hd: HumanData, key: str, path: Path, rows: Optional[np.ndarray] = None, fix: str = FIX
) -> None:
    """Refuse NaN/inf in `key` (all rows, or `rows`), naming the count and the first bad frame."""
    values = np.asarray(hd.rows(key, rows))
    found = _non_finite_rows(values, rows)
    if found is not None:
        count, first = found
        raise BadFileError(
            f"{count} of {len(values)} frames have NaN/inf values in '{key}' (first: frame {first})",
            path=path,
            fix=fix,
        )


def check_gt_smpl(hd: HumanData, path: Path, rows: Optional[np.ndarray] = None) -> List[str]:
    """Shapes (one row per frame), finiteness and genders of the ground-truth SMPL; returns the genders of
    `rows` (all frames when None)."""
    n = len(hd)
    smpl = hd.smpl() if "smpl" in hd else {}  # memory-mapped when cached: shapes cost nothing
    for key, tails in GT_SMPL_SHAPES.items():
        shape = tuple(np.shape(smpl.get(key, np.zeros((0,)))))
        if shape[:1] != (n,) or shape[1:] not in tails:
            want = " or ".join(str((n, *t)) for t in tails)
            raise BadFileError(f"smpl.{key} has shape {shape}, expected {want}", path=path, fix=FIX)
    picked = hd.smpl(rows)
    for key in GT_SMPL_SHAPES:
        found = _non_finite_rows(np.asarray(picked[key], dtype=np.float64), rows)
        if found is not None:
            count, first = found
            raise BadFileError(
                f"{count} frames have NaN/inf in the ground-truth smpl.{key} (first: frame {first})",
                path=path,
                fix=FIX,
            )
    raw = np.asarray(hd.meta().get("gender", [])).ravel()
    genders = [g.decode() if isinstance(g, bytes) else str(g) for g in raw]
    if len(genders) != n or not set(genders) <= GENDERS:
        raise BadFileError(
            f"meta.gender must hold {n} values of 'm'/'f' (found {len(genders)}: {sorted(set(genders))[:4]})",
            path=path,
            fix=FIX,
        )
    return genders if rows is None else [genders[int(i)] for i in np.asarray(rows).ravel()]
