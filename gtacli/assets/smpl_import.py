"""Import licensed SMPL model files into `body_models/smpl/SMPL_{NEUTRAL,MALE,FEMALE}.pkl`.

Accepted sources (`gtacli fetch --smpl-from PATH`): the official SMPL zip (v1.0:
`basicModel_f_lbs_10_207_0_v1.0.0.pkl`, `basicmodel_m_lbs_10_207_0_v1.0.0.pkl`; v1.1:
`basicmodel_{f,m,neutral}_lbs_10_207_0_v1.1.0.pkl`), the SMPLify zip
(`basicModel_neutral_lbs_10_207_0_v1.0.0.pkl`), a folder containing such files, or single `.pkl` files.

The originals are Python-2 pickles holding chumpy objects (`chumpy.ch.Ch`) and old scipy sparse matrices
(`scipy.sparse.csc.csc_matrix`). They are read through the restricted unpickler of `gtacli.io.safe` with
inert stand-in classes for exactly those names: a stand-in only stores the pickled state; afterwards the
state is turned into numpy arrays. No chumpy is needed and nothing from the file is executed. The output
is a plain pickle of numpy arrays (what `smplx.SMPL` reads). Zip entries with `..` or absolute paths are
refused, and nothing is written outside `<data root>/body_models/smpl/`.
"""

from __future__ import annotations

import io
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from gtacli.errors import BadFileError, GtacliError, MissingFileError, PathLike, UnsafeFileError
from gtacli.io.atomic import atomic_write_bytes
from gtacli.io.safe import NUMPY_GLOBALS, RestrictedUnpickler
from gtacli.layout import GENDERS, DataLayout

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_JOINTS = 24
NUM_POSE_BASIS = 207  # 23 joints x 9 rotation-matrix entries
MIN_SHAPE_BASIS = 10
OUTPUT_PICKLE_PROTOCOL = 4  # plain numpy arrays; no _codecs/NEWOBJ tricks
MAX_PICKLE_BYTES = 2 << 30  # refuse absurd zip members before reading them into memory

# Where to get each gender (docs/reproduction.md §1.3).
SMPL_SOURCES = {
    "male": "https://smpl.is.tue.mpg.de/ (SMPL for Python, v1.0 or v1.1)",
    "female": "https://smpl.is.tue.mpg.de/ (SMPL for Python, v1.0 or v1.1)",
    "neutral": "https://smplify.is.tue.mpg.de/ (SMPLify code+model zip) or SMPL v1.1 from https://smpl.is.tue.mpg.de/",
}
# Keys copied to the output, with the shape each must have (None = free size).
REQUIRED_SHAPES: Dict[str, Tuple[Optional[int], ...]] = {
    "v_template": (NUM_VERTICES, 3),
    "f": (NUM_FACES, 3),
    "shapedirs": (NUM_VERTICES, 3, None),
    "posedirs": (NUM_VERTICES, 3, NUM_POSE_BASIS),
    "J_regressor": (NUM_JOINTS, NUM_VERTICES),
    "weights": (NUM_VERTICES, NUM_JOINTS),
    "kintree_table": (2, NUM_JOINTS),
}
OPTIONAL_KEYS = ("J", "bs_style", "bs_type", "joint2num", "vert_sym_idxs", "gender")


# --------------------------------------------------------------------------------------------------
# stand-ins for chumpy and old scipy.sparse classes


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
            fix="use the original .pkl from the SMPL/SMPLify zip",
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


# --------------------------------------------------------------------------------------------------
# checking and writing a model


def check_smpl_arrays(model: Any, source: PathLike) -> Dict[str, np.ndarray]:
    """The model's arrays if it is an SMPL model (6890 vertices ...), else `BadFileError` saying why."""
    if not isinstance(model, Mapping):
        raise BadFileError(
            f"not an SMPL model: the pickle holds a {type(model).__name__}, expected a dict of arrays",
            path=source,
            fix="pass the SMPL model .pkl (basicmodel_*_lbs_10_207_0_v1.*.pkl)",
        )
    missing = [k for k in REQUIRED_SHAPES if k not in model]
    if missing:
        raise BadFileError(
            f"not an SMPL model: missing {', '.join(missing)}",
            path=source,
            fix="pass the SMPL model .pkl (basicmodel_*_lbs_10_207_0_v1.*.pkl)",
        )
    arrays: Dict[str, np.ndarray] = {}
    for key, want in REQUIRED_SHAPES.items():
        arr = np.asarray(model[key])
        ok = arr.ndim == len(want) and all(w is None or s == w for s, w in zip(arr.shape, want))
        if key == "shapedirs" and ok and arr.shape[2] < MIN_SHAPE_BASIS:
            ok = False
        if not ok:
            raise BadFileError(
                f"not an SMPL model: {key} has shape {arr.shape}, expected "
                f"({', '.join('K' if w is None else str(w) for w in want)})",
                path=source,
                fix="pass the SMPL (not SMPL-H/SMPL-X/MANO) model .pkl",
            )
        if arr.dtype.kind not in "fiu":
            raise BadFileError(f"not an SMPL model: {key} has dtype {arr.dtype}", path=source)
        arrays[key] = arr
    return arrays


def plain_model(model: Mapping[str, Any], source: PathLike) -> Dict[str, Any]:
    """What we write: the required arrays (float64 / int64 / uint32 faces) plus harmless metadata."""
    arrays = check_smpl_arrays(model, source)
    out: Dict[str, Any] = {}
    for key, arr in arrays.items():
        if key == "f":
            out[key] = np.ascontiguousarray(arr, dtype=np.uint32)
        elif key == "kintree_table":
            out[key] = np.ascontiguousarray(arr, dtype=np.int64)
        else:
            out[key] = np.ascontiguousarray(arr, dtype=np.float64)
    for key in OPTIONAL_KEYS:
        value = model.get(key)
        if isinstance(value, (str, np.ndarray)):
            out[key] = value
    return out


# --------------------------------------------------------------------------------------------------
# finding the files


_GENDER_PATTERNS = [
    ("female", re.compile(r"(^|[^a-z])(f|female)([^a-z]|$)")),
    ("male", re.compile(r"(^|[^a-z])(m|male)([^a-z]|$)")),
    ("neutral", re.compile(r"(^|[^a-z])(n|neutral)([^a-z]|$)")),
]


# Other body-model families that share gendered names; inside a zip or folder they are skipped.
_OTHER_MODELS = re.compile(r"smplh|smpl_h|smplx|smpl_x|mano|flame|star_", re.IGNORECASE)


def gender_from_name(name: str) -> Optional[str]:
    """'basicModel_f_lbs_10_207_0_v1.0.0.pkl' -> 'female'; 'SMPL_NEUTRAL.pkl' -> 'neutral'; else None."""
    stem = PurePosixPath(name).name.lower()
    if _OTHER_MODELS.search(stem):
        return None
    if stem.endswith(".pkl"):
        stem = stem[:-4]
    for gender, pattern in _GENDER_PATTERNS:
        if pattern.search(stem):
            return gender
    return None


def _version_rank(name: str) -> Tuple[int, ...]:
    m = re.search(r"v(\d+)\.(\d+)\.(\d+)", name.lower())
    return tuple(int(x) for x in m.groups()) if m else (0, 0, 0)


def _is_junk(name: str) -> bool:
    parts = PurePosixPath(name).parts
    return any(p == "__MACOSX" for p in parts) or PurePosixPath(name).name.startswith("._")


def _check_zip_member(zip_path: Path, name: str) -> None:
    """Refuse zip-slip: absolute names, drive letters, '..' components."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or re.match(r"^[A-Za-z]:", norm) or ".." in PurePosixPath(norm).parts:
        raise UnsafeFileError(
            f"refusing zip entry '{name}': it points outside the archive (absolute path or '..')",
            path=zip_path,
            fix="use the original SMPL/SMPLify zip",
        )


@dataclass
class SmplCandidate:
    gender: str
    source: str  # shown to the user: file path or 'zip:member'
    read: Any  # () -> bytes
    version: Tuple[int, ...] = (0, 0, 0)


def _candidates_from_zip(path: Path) -> List[SmplCandidate]:
    try:
        zf = zipfile.ZipFile(path)
        infos = zf.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise BadFileError(
            f"not a readable zip archive ({exc})",
            path=path,
            fix="download the SMPL/SMPLify zip again (it may be truncated)",
        ) from None
    for info in infos:  # any unsafe entry refuses the whole archive
        _check_zip_member(path, info.filename)
    found = []
    for info in infos:
        name = info.filename
        if info.is_dir() or _is_junk(name) or not name.lower().endswith(".pkl"):
            continue
        gender = gender_from_name(name)
        if gender is None:
            continue
        if info.file_size > MAX_PICKLE_BYTES:
            raise BadFileError(f"zip entry '{name}' is implausibly large ({info.file_size} bytes)", path=path)

        def read(zf: zipfile.ZipFile = zf, info: zipfile.ZipInfo = info) -> bytes:
            try:
                return zf.read(info)
            except (zipfile.BadZipFile, OSError, EOFError, ValueError) as exc:
                raise BadFileError(
                    f"zip entry '{info.filename}' cannot be read ({exc})",
                    path=path,
                    fix="download the zip again (it is corrupt)",
                ) from None

        found.append(SmplCandidate(gender, f"{path}:{name}", read, _version_rank(name)))
    return found


def _candidate_from_file(path: Path, *, require_gender: bool) -> List[SmplCandidate]:
    gender = gender_from_name(path.name)
    if gender is None:
        if require_gender:
            raise GtacliError(
                "cannot tell the gender from the file name",
                path=path,
                fix="rename it to contain male/female/neutral (e.g. SMPL_MALE.pkl) or pass the original zip",
            )
        return []
    return [SmplCandidate(gender, str(path), path.read_bytes, _version_rank(path.name))]


def find_candidates(sources: Sequence[PathLike]) -> List[SmplCandidate]:
    found: List[SmplCandidate] = []
    for src in sources:
        path = Path(src).expanduser()
        if not path.exists():
            raise MissingFileError(
                "SMPL source not found", path=path, fix="pass the SMPL zip, a folder or .pkl files"
            )
        if path.is_dir():
            for item in sorted(path.rglob("*")):
                if item.is_file() and not _is_junk(str(item)):
                    if item.suffix.lower() == ".zip":
                        found += _candidates_from_zip(item)
                    elif item.suffix.lower() == ".pkl":
                        found += _candidate_from_file(item, require_gender=False)
        elif zipfile.is_zipfile(path):
            found += _candidates_from_zip(path)
        elif path.suffix.lower() == ".pkl":
            found += _candidate_from_file(path, require_gender=True)
        elif path.suffix.lower() == ".zip":
            raise BadFileError(
                "not a readable zip archive", path=path, fix="download the SMPL/SMPLify zip again"
            )
        else:
            raise GtacliError(
                "not a zip, folder or .pkl file", path=path, fix="pass the SMPL zip, a folder or .pkl files"
            )
    return found


# --------------------------------------------------------------------------------------------------
# the import


@dataclass
class ImportReport:
    written: Dict[str, str] = field(default_factory=dict)  # gender -> path written
    sources: Dict[str, str] = field(default_factory=dict)  # gender -> where it came from
    present: List[str] = field(default_factory=list)  # genders already in the data root, not imported now
    missing: List[str] = field(default_factory=list)  # genders still absent afterwards

    def missing_hint(self) -> str:
        if not self.missing:
            return ""
        where = "; ".join(f"{g}: {SMPL_SOURCES[g]}" for g in self.missing)
        return f"still missing SMPL {', '.join(self.missing)} — get {where}, then run gtacli fetch --smpl-from <zip>"

    def to_dict(self) -> Dict[str, Any]:
        return {
            "written": self.written,
            "sources": self.sources,
            "present": self.present,
            "missing": self.missing,
            "hint": self.missing_hint(),
        }


def import_smpl(sources: Sequence[PathLike], layout: DataLayout) -> ImportReport:
    """Convert every gendered SMPL model found in `sources` into the data root; report what is missing."""
    candidates = find_candidates(sources)
    if not candidates:
        raise BadFileError(
            "no SMPL model file found (expected names like basicmodel_m_lbs_10_207_0_v1.1.0.pkl)",
            path=", ".join(str(s) for s in sources),
            fix="pass the official SMPL zip, the SMPLify zip, a folder or .pkl files",
        )
    best: Dict[str, SmplCandidate] = {}
    for cand in candidates:  # several versions of one gender: the newest wins
        if cand.gender not in best or cand.version > best[cand.gender].version:
            best[cand.gender] = cand
    # Convert everything first, write afterwards: a bad file leaves nothing half-imported.
    converted: Dict[str, bytes] = {}
    for gender, cand in best.items():
        model = loads_smpl_pickle(cand.read(), cand.source)
        converted[gender] = pickle.dumps(plain_model(model, cand.source), protocol=OUTPUT_PICKLE_PROTOCOL)
    report = ImportReport()
    for gender, data in converted.items():
        dest = layout.smpl_model(gender)
        atomic_write_bytes(dest, data)
        report.written[gender] = str(dest)
        report.sources[gender] = best[gender].source
    for gender in GENDERS:
        if gender not in report.written:
            (report.present if layout.smpl_model(gender).is_file() else report.missing).append(gender)
    return report
