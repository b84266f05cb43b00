"""Pickles built like the official SMPL files (chumpy `Ch` values, an old-path scipy csc `J_regressor`,
protocol 2) without chumpy or scipy installed: a throwaway `chumpy` package in a temporary folder and
stand-in `scipy`, `scipy.sparse`, `scipy.sparse.csc` modules in `sys.modules`, all removed afterwards."""

from __future__ import annotations

import pickle
import sys
import types
from pathlib import Path

import numpy as np

CHUMPY_INIT = "from .ch import Ch\n"
CHUMPY_CH = '''
import numpy as np


class Ch(object):
    """Mimics what chumpy pickles: a __dict__ with the value in x plus bookkeeping (a set, a dict)."""

    def __init__(self, x):
        self.x = np.asarray(x, dtype=np.float64)
        self._dirty_vars = set()
        self._itr = None
        self._depends_on_deps = {}
        self._make_dense = False
        self._make_sparse = False
'''


def official_pickles(tmp_dir: Path, arrays_by_gender: dict, protocol: int = 2) -> dict:
    """Pickle each model with chumpy Ch values and an old-path scipy sparse J_regressor."""
    pkg = tmp_dir / "fake_chumpy_site" / "chumpy"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text(CHUMPY_INIT)
    (pkg / "ch.py").write_text(CHUMPY_CH)
    site = str(pkg.parent)
    sys.path.insert(0, site)
    fake_modules = {name: types.ModuleType(name) for name in ("scipy", "scipy.sparse", "scipy.sparse.csc")}
    fake_csc = fake_modules["scipy.sparse.csc"]

    class csc_matrix:  # noqa: N801 - the historical class name
        pass

    csc_matrix.__module__ = "scipy.sparse.csc"
    csc_matrix.__qualname__ = "csc_matrix"
    fake_csc.csc_matrix = csc_matrix
    saved = {name: sys.modules.get(name) for name in fake_modules}
    sys.modules.update(fake_modules)
    try:
        import chumpy  # the throwaway package

        out = {}
        for gender, arrays in arrays_by_gender.items():
            if set(arrays) == {"v_template", "weights"}:  # a small model for opcode-level tests
                out[gender] = pickle.dumps({k: chumpy.Ch(v) for k, v in arrays.items()}, protocol=protocol)
                continue
            dense = arrays["J_regressor"]
            sparse = csc_matrix()
            nz_rows, nz_cols = np.nonzero(dense.T)  # CSC = column-major: walk columns
            sparse.__dict__.update(
                {
                    "_shape": dense.shape,
                    "data": dense[nz_cols, nz_rows],
                    "indices": nz_cols.astype(np.int32),
                    "indptr": np.concatenate(
                        [[0], np.cumsum(np.bincount(nz_rows, minlength=dense.shape[1]))]
                    ).astype(np.int32),
                    "maxprint": 50,
                    "format": "csc",
                }
            )
            model = {
                "v_template": chumpy.Ch(arrays["v_template"]),
                "shapedirs": chumpy.Ch(arrays["shapedirs"]),
                "posedirs": arrays["posedirs"],
                "J_regressor": sparse,
                "weights": chumpy.Ch(arrays["weights"]),
                "kintree_table": arrays["kintree_table"],
                "f": arrays["f"],
                "J": chumpy.Ch(dense @ arrays["v_template"]),
                "bs_type": "lrotmin",
                "bs_style": "lbs",
            }
            out[gender] = pickle.dumps(model, protocol=protocol)
        return out
    finally:
        sys.path.remove(site)
        for name in [m for m in sys.modules if m == "chumpy" or m.startswith("chumpy.")]:
            del sys.modules[name]
        for name, module in saved.items():
            if module is None:
                del sys.modules[name]
            else:
                sys.modules[name] = module
