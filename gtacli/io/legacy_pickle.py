"""The original SMPL pickles, read without chumpy or scipy and without running anything from the file.

The official SMPL v1.0.0 / v1.1.0 and SMPLify model files are Python-2 pickles holding chumpy objects
(`chumpy.ch.Ch`, a few reordering ops) and old scipy sparse matrices (`scipy.sparse.csc.csc_matrix`, the
`J_regressor`). `SmplUnpickler` extends the restricted unpickler of `gtacli.io.safe` with inert stand-in
classes for exactly those names: a stand-in only stores the pickled state, which is afterwards turned into
numpy arrays (`loads_smpl_pickle`). Any other global is still refused, so a hostile pickle never runs code.

Both the importer (`gtacli fetch --smpl-from`) and the body model (`gtacli.body.smpl`, reading mmhuman3d's
renamed `SMPL_*.pkl` in place) load through this module.
"""

from __future__ import annotations

import io
import re
from typing import Any, Dict, Tuple

import numpy as np

from gtacli.errors import BadFileError, PathLike, UnsafeFileError
from gtacli.io.safe import NUMPY_GLOBALS, RestrictedUnpickler


class _StandIn:
    """An inert object that only records what the pickle tried to put in it."""

    origin: Tuple[str, str] = ("", "")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._args = args
        self._state: Any = None

    def __setstate__(self, state: Any) -> None:
        self._state = state

    def __repr__(self) -> str:
        return f"<stand-in for {'.'.join(self.origin)}>"


class ChumpyStandIn(_StandIn):
    pass


class SparseStandIn(_StandIn):
    pass


_STANDIN_CLASSES: Dict[Tuple[str, str], type] = {}


def _standin_class(module: str, name: str, base: type) -> type:
    key = (module, name)
    if key not in _STANDIN_CLASSES:
        _STANDIN_CLASSES[key] = type(f"StandIn_{name}", (base,), {"origin": key})
    return _STANDIN_CLASSES[key]


def _safe_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """`copy_reg._reconstructor` of protocol-0/1 pickles, limited to our stand-ins."""
    if not (isinstance(cls, type) and issubclass(cls, _StandIn)) or base is not object:
        raise UnsafeFileError(f"refusing to unpickle: reconstructs {cls!r}, which is not a SMPL data class")
    return cls.__new__(cls)


def _latin1_encode(text: str, encoding: str = "latin1") -> bytes:
    """Python 3 writes bytes in protocol-2 pickles as `_codecs.encode(str, 'latin1')`; only that is allowed."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise UnsafeFileError("refusing to unpickle: unexpected use of _codecs.encode")
    return text.encode("latin1")


_SPARSE_MODULE = re.compile(r"^scipy\.sparse(\.[A-Za-z_]+)*$")
_SPARSE_NAMES = {"csc_matrix", "csr_matrix", "coo_matrix", "csc_array", "csr_array", "coo_array"}

_SMPL_EXTRA_GLOBALS: Dict[Tuple[str, str], Any] = {
    ("copy_reg", "_reconstructor"): _safe_reconstructor,
    ("copyreg", "_reconstructor"): _safe_reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "set"): set,
    ("builtins", "set"): set,
    ("__builtin__", "frozenset"): frozenset,
    ("builtins", "frozenset"): frozenset,
    ("_codecs", "encode"): _latin1_encode,
}


class SmplUnpickler(RestrictedUnpickler):
    """The project's restricted unpickler plus stand-ins for chumpy.* and scipy.sparse.* matrix classes."""

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        if module == "chumpy" or module.startswith("chumpy."):
            if not name.isidentifier():
                raise UnsafeFileError(f"refusing to unpickle: odd chumpy name {name!r}", path=self._source)
            return _standin_class(module, name, ChumpyStandIn)
        if _SPARSE_MODULE.match(module) and name in _SPARSE_NAMES:
            return _standin_class(module, name, SparseStandIn)
        return super().find_class(module, name)


def loads_smpl_pickle(data: bytes, source: PathLike) -> Any:
    """Restricted load of a (Python 2) SMPL pickle; stand-ins are then converted to numpy."""
    allowed = {**NUMPY_GLOBALS, **_SMPL_EXTRA_GLOBALS}
    try:
        obj = SmplUnpickler(io.BytesIO(data), allowed=allowed, encoding="latin1", source=source).load()
    except UnsafeFileError as exc:
        if exc.path is None:
            raise UnsafeFileError(exc.problem, path=source, fix=exc.fix) from None
        raise
    except Exception as exc:
        raise BadFileError(
            f"not a readable pickle ({type(exc).__name__}: {exc})",
            path=source,
            fix="use the original .pkl from the SMPL/SMPLify zip, or a plain-numpy model",
        ) from None
    return _to_plain(obj, source)


def _state_dict(obj: _StandIn) -> Dict[str, Any]:
    state = obj._state
    if isinstance(state, tuple) and len(state) == 2 and isinstance(state[1], dict):  # (dict, slots)
        state = {**(state[0] or {}), **state[1]}
    return state if isinstance(state, dict) else {}


def _chumpy_to_array(obj: ChumpyStandIn, source: PathLike) -> np.ndarray:
    state = _state_dict(obj)
    module, name = obj.origin
    if "x" in state:  # a plain Ch holds its value in `x`
        return np.asarray(_to_plain(state["x"], source))
    # A few reordering ops appear in some model files; evaluate them on their input.
    if "a" in state:
        a = np.asarray(_to_plain(state["a"], source))
        if name == "Select" and "idxs" in state:
            return a.ravel()[np.asarray(state["idxs"])].reshape(state.get("preferred_shape") or (-1,))
        if name in ("Reshape", "reshape") and "newshape" in state:
            return a.reshape(state["newshape"])
        if name == "transpose":
            return np.transpose(a, state.get("axes"))
    raise BadFileError(
        f"contains a chumpy object {module}.{name} that cannot be converted to an array",
        path=source,
        fix="use the original SMPL/SMPLify .pkl files",
    )


def _sparse_to_dense(obj: SparseStandIn, source: PathLike) -> np.ndarray:
    state = _state_dict(obj)
    shape = state.get("_shape", state.get("shape"))
    name = obj.origin[1][:3]
    try:
        shape = tuple(int(s) for s in shape)
        dense = np.zeros(shape, dtype=np.float64)
        if name in ("csc", "csr"):
            data = np.asarray(state["data"], dtype=np.float64)
            indices = np.asarray(state["indices"], dtype=np.int64)
            indptr = np.asarray(state["indptr"], dtype=np.int64)
            outer = np.repeat(np.arange(len(indptr) - 1), np.diff(indptr))
            rows, cols = (indices, outer) if name == "csc" else (outer, indices)
            np.add.at(dense, (rows, cols), data)
        else:  # coo
            rows = np.asarray(state["row"], dtype=np.int64)
            cols = np.asarray(state["col"], dtype=np.int64)
            np.add.at(dense, (rows, cols), np.asarray(state["data"], dtype=np.float64))
        return dense
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise BadFileError(
            f"sparse matrix {'.'.join(obj.origin)} has an unexpected layout ({exc})", path=source
        ) from None


def _to_plain(obj: Any, source: PathLike) -> Any:
    if isinstance(obj, ChumpyStandIn):
        return _chumpy_to_array(obj, source)
    if isinstance(obj, SparseStandIn):
        return _sparse_to_dense(obj, source)
    if isinstance(obj, dict):
        return {
            (k.decode("latin1") if isinstance(k, bytes) else k): _to_plain(v, source) for k, v in obj.items()
        }
    if isinstance(obj, list):
        return [_to_plain(v, source) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_to_plain(v, source) for v in obj)
    return obj
