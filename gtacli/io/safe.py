"""Restricted loading of files that come from the internet or from users.

The one place in gtacli that deserialises pickles, npz/npy files and torch checkpoints. Rules:

* pickles go through `RestrictedUnpickler`, which resolves only an explicit allow-list of globals
  (numpy array/scalar reconstruction by default) and raises `UnsafeFileError` for anything else, so a
  hostile `__reduce__` never runs;
* `.npz`/`.npy` are read with `allow_pickle=False`; object members (HumanData stores dicts and lists as
  0-d object arrays) are unpickled member by member through the restricted unpickler;
* checkpoints load with `torch.load(weights_only=True)`.

Other modules extend the allow-list by passing `extra_globals` (e.g. the SMPL importer maps chumpy and old
scipy.sparse classes to harmless stand-ins).
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Tuple

import numpy as np
import torch

from gtacli.errors import BadFileError, MissingFileError, PathLike, UnsafeFileError

GlobalKey = Tuple[str, str]


def _numpy_globals() -> Dict[GlobalKey, Any]:
    """What numpy's own pickles of arrays and scalars reference, under numpy 1.x and 2.x module names."""
    try:
        from numpy._core import multiarray as _ma  # numpy >= 2
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray as _ma  # type: ignore[no-redef]
    allowed: Dict[GlobalKey, Any] = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed[(module, "_reconstruct")] = _ma._reconstruct
        allowed[(module, "scalar")] = _ma.scalar
    for module in ("numpy", "numpy.core.numeric", "numpy._core.numeric"):
        allowed[(module, "ndarray")] = np.ndarray
        allowed[(module, "dtype")] = np.dtype
    # dtype classes pickled by numpy >= 1.25 (e.g. numpy.dtypes.Float64DType)
    for name in dir(np.dtypes) if hasattr(np, "dtypes") else []:
        if name.endswith("DType"):
            allowed[("numpy.dtypes", name)] = getattr(np.dtypes, name)
    allowed[("collections", "OrderedDict")] = __import__("collections").OrderedDict
    return allowed


NUMPY_GLOBALS: Dict[GlobalKey, Any] = _numpy_globals()


class RestrictedUnpickler(pickle.Unpickler):
    """An unpickler that resolves only allow-listed globals; anything else is refused before it runs."""

    def __init__(
        self,
        file: Any,
        *,
        allowed: Optional[Mapping[GlobalKey, Any]] = None,
        encoding: str = "latin1",
        source: Optional[PathLike] = None,
    ):
        super().__init__(file, encoding=encoding)
        self._allowed = dict(NUMPY_GLOBALS if allowed is None else allowed)
        self._source = source

    def find_class(self, module: str, name: str) -> Any:  # noqa: D401 - pickle API
        try:
            return self._allowed[(module, name)]
        except KeyError:
            raise UnsafeFileError(
                f"refusing to unpickle: it references {module}.{name}, which is not plain data",
                path=self._source,
                fix="only load files from trusted sources; re-create the file with plain numpy arrays",
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafeFileError("refusing to unpickle: persistent ids are not allowed", path=self._source)


def loads_restricted(
    data: bytes,
    *,
    extra_globals: Optional[Mapping[GlobalKey, Any]] = None,
    encoding: str = "latin1",
    source: Optional[PathLike] = None,
) -> Any:
    allowed = dict(NUMPY_GLOBALS)
    if extra_globals:
        allowed.update(extra_globals)
    try:
        return RestrictedUnpickler(io.BytesIO(data), allowed=allowed, encoding=encoding, source=source).load()
    except UnsafeFileError:
        raise
    except Exception as exc:  # truncated, not a pickle, wrong protocol...
        raise BadFileError(
            f"not a readable pickle ({type(exc).__name__}: {exc})",
            path=source,
            fix="download or create the file again",
        ) from exc


def load_pickle(
    path: PathLike,
    *,
    extra_globals: Optional[Mapping[GlobalKey, Any]] = None,
    encoding: str = "latin1",
) -> Any:
    """Load a pickle file through the restricted unpickler (latin1 so Python-2 pickles such as gmm_08.pkl load)."""
    path = Path(path)
    data = read_bytes(path)
    return loads_restricted(data, extra_globals=extra_globals, encoding=encoding, source=path)


def load_npy(path: PathLike, *, mmap: bool = False) -> np.ndarray:
    """A `.npy` array without pickle; `mmap=True` maps it read-only instead of reading it."""
    path = Path(path)
    _require_file(path)
    try:
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except Exception as exc:
        raise BadFileError(
            f"not a readable .npy array ({type(exc).__name__}: {exc})",
            path=path,
            fix="download or create the file again",
        ) from exc


class SafeNpz(Mapping[str, Any]):
    """Read-only, lazy view of an .npz file: members are decoded on first access.

    Numeric/string members are read with `allow_pickle=False`; object members (HumanData's 0-d dicts
    and lists) through the restricted unpickler and returned as the Python object they hold (`.item()`
    of a 0-d object array, a list for 1-d object arrays).
    """

    def __init__(self, path: PathLike, *, extra_globals: Optional[Mapping[GlobalKey, Any]] = None):
        self.path = Path(path)
        _require_file(self.path)
        self._extra = dict(extra_globals or {})
        try:
            self._zip = zipfile.ZipFile(self.path)
            names = self._zip.namelist()
        except (zipfile.BadZipFile, OSError, EOFError) as exc:
            raise BadFileError(
                f"not a readable .npz archive ({exc})",
                path=self.path,
                fix="the file is truncated or corrupt; download or create it again",
            ) from exc
        self._members = {n[:-4] if n.endswith(".npy") else n: n for n in names}
        if len(self._members) != len(names):  # two members of one name: which one a reader gets is arbitrary
            seen: set = set()
            twice = next(
                k for k in (n[:-4] if n.endswith(".npy") else n for n in names) if k in seen or seen.add(k)
            )
            self._zip.close()
            raise BadFileError(
                f"holds member '{twice}' twice (a tampered or badly merged file)",
                path=self.path,
                fix="create or download the file again",
            )
        self._cache: Dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        if key in self._cache:
            return self._cache[key]
        if key not in self._members:
            raise KeyError(key)
        value = self._read_member(self._members[key], key)
        self._cache[key] = value
        return value

    def __iter__(self):
        return iter(self._members)

    def __len__(self) -> int:
        return len(self._members)

    def member_info(self, key: str) -> zipfile.ZipInfo:
        return self._zip.getinfo(self._members[key])

    def header(self, key: str) -> Tuple[Tuple[int, ...], np.dtype]:
        """(shape, dtype) of a member without reading its data."""
        with self._zip.open(self._members[key]) as fp:
            version = np.lib.format.read_magic(fp)
            shape, _fortran, dtype = _read_header(fp, version)
        return shape, dtype

    def close(self) -> None:
        self._zip.close()

    def __enter__(self) -> SafeNpz:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _read_member(self, member: str, key: str) -> Any:
        try:
            with self._zip.open(member) as fp:
                version = np.lib.format.read_magic(fp)
                shape, fortran, dtype = _read_header(fp, version)
                if dtype.hasobject:
                    obj = RestrictedUnpickler(
                        io.BytesIO(fp.read()),
                        allowed={**NUMPY_GLOBALS, **self._extra},
                        source=f"{self.path}:{key}",
                    ).load()
                    return _unwrap_object_array(obj)
            with self._zip.open(member) as fp:
                return np.lib.format.read_array(fp, allow_pickle=False)
        except UnsafeFileError:
            raise
        except Exception as exc:
            raise BadFileError(
                f"member '{key}' cannot be read ({type(exc).__name__}: {exc})",
                path=self.path,
                fix="the file is truncated or corrupt; download or create it again",
            ) from exc


def load_npz(path: PathLike, *, extra_globals: Optional[Mapping[GlobalKey, Any]] = None) -> SafeNpz:
    return SafeNpz(path, extra_globals=extra_globals)


def load_checkpoint(path: PathLike, *, map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)` with numpy scalars allowed (mmcv metas contain them) and errors as one line."""
    path = Path(path)
    _require_file(path)
    _check_declared_sizes(path)
    safe = [np.dtype, np.ndarray]
    try:
        from numpy._core.multiarray import scalar as _np_scalar
    except ImportError:  # pragma: no cover
        from numpy.core.multiarray import scalar as _np_scalar  # type: ignore[no-redef]
    safe.append(_np_scalar)
    if hasattr(np, "dtypes"):
        safe.extend(getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType"))
    try:
        with torch.serialization.safe_globals(safe), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch's protocol notices; failures are reported below
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = _weights_only_reason(str(exc))
        if "global" in reason.lower():  # the file references code: refuse it as unsafe
            raise UnsafeFileError(
                f"refusing to load: the checkpoint needs code beyond tensors and plain data ({reason})",
                path=path,
                fix="use a checkpoint saved as a plain state_dict, or re-save it with torch.save(model.state_dict())",
            ) from exc
        raise BadFileError(
            f"not a PyTorch checkpoint ({reason})",
            path=path,
            fix="check the path; if it is a download, fetch it again (gtacli fetch --force NAME)",
        ) from exc
    except Exception as exc:  # truncated zip, text file, wrong format: torch raises many types
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise BadFileError(
            f"not a readable PyTorch checkpoint ({type(exc).__name__}: {first[:200]})",
            path=path,
            fix="the file is truncated, corrupt or not a checkpoint; download it again (gtacli fetch --force NAME)",
        ) from exc


# torch.save stores tensors uncompressed, so the bytes a checkpoint's zip directory declares are at most its size
# on disk; a little compression (a re-zipped file) is tolerated, a bomb is refused before torch inflates it.
MAX_INFLATION = 4


def _check_declared_sizes(path: Path) -> None:
    """Refuse a zip checkpoint whose members declare far more bytes than the file holds (read from the zip's
    directory only, before `torch.load` allocates them)."""
    try:
        if not zipfile.is_zipfile(path):
            return  # the legacy (pickle) format: its storages are not compressed
        with zipfile.ZipFile(path) as zf:
            declared = sum(info.file_size for info in zf.infolist())
    except (zipfile.BadZipFile, OSError, EOFError, ValueError):
        return  # torch.load reports the damage in its own words
    size = path.stat().st_size
    if declared > MAX_INFLATION * size + (1 << 20):
        raise BadFileError(
            f"not a checkpoint torch wrote: its tensors declare {declared / 1e6:.0f} MB inflated from a "
            f"{size / 1e6:.1f} MB file",
            path=path,
            fix="use the original checkpoint file (download it again: gtacli fetch --force NAME)",
        )


def _weights_only_reason(message: str) -> str:
    """The one informative line of torch's long 'Weights only load failed ...' message."""
    boilerplate = ("Weights only load failed", "Please file an issue", "Check the documentation")
    for line in message.splitlines():
        line = line.strip()
        if "WeightsUnpickler error:" in line:
            line = line.split("WeightsUnpickler error:", 1)[1].strip()
        if line and not line.startswith(boilerplate):
            return line.rstrip(".")[:200]
    return "unreadable"


def _unwrap_object_array(obj: Any) -> Any:
    if isinstance(obj, np.ndarray) and obj.dtype.hasobject:
        if obj.ndim == 0:
            return obj.item()
        return obj.tolist()
    return obj


def _read_header(fp: Any, version: Tuple[int, int]) -> Tuple[Tuple[int, ...], bool, np.dtype]:
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(fp)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(fp)
    return np.lib.format._read_array_header(fp, version)  # type: ignore[attr-defined]


def read_bytes(path: PathLike) -> bytes:
    """A file's bytes, or a one-line MissingFileError / BadFileError."""
    path = Path(path)
    _require_file(path)
    try:
        return path.read_bytes()
    except OSError as exc:
        raise BadFileError(f"cannot read: {exc.strerror}", path=path) from exc


def _require_file(path: Path) -> None:
    if not path.is_file():
        raise MissingFileError(
            "file not found", path=path, fix="check the path, or run `gtacli check-layout`"
        )
