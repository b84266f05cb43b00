"""HumanData `.npz` files (docs/reproduction.md §2.1): read lazily and safely, convert keypoints to smpl_49, write mmhuman3d's format.

Reading never uses `allow_pickle=True`: numeric and string members are read as plain `.npy` data, the 0-d
object members (`smpl`, `meta`, `misc` dicts) through the restricted unpickler of `gtacli.io.safe`.

Large files (choice documented here, measured by `benchmarks/bench_eval.py`): members of an `.npz` written by
`np.savez_compressed` are deflate streams and cannot be memory-mapped, and a 1.4 M-frame GTA file holds
gigabytes once inflated. So:

* members are decoded lazily, only when first accessed (opening reads only the zip directory and, for the
  length, one `.npy` header);
* files of `CACHE_MIN_BYTES` or more get a per-file cache on first open, after their members' shapes were checked
  against the frame count and their declared total against `CACHE_MAX_INFLATION` times the file's size: every
  numeric member HumanData reads (header, boxes, keypoints, image paths, SMPL, meta; others are left out) is inflated
  straight to `<cache>/human_data/<name>-<size>-<mtime_ns>/<key>.npy` (the member *is* an `.npy` file, so this
  is a streamed copy), the arrays of the dict members (`smpl`, `meta`, ...) are saved as `<key>.<sub>.npy`,
  and small values go to `manifest.json`. The folder is built under a temporary name and renamed when
  complete, so a crash never leaves a half cache; a changed file (size or mtime) gets a new folder.
  Later opens memory-map those `.npy` files: opening costs milliseconds, and reading a batch touches
  only its rows. If the cache folder cannot be written (read-only data root, full disk) the file is read
  lazily from the npz instead. The cache lives in the data root's `cache/` (the parent of `preprocessed_datasets/`) or
  wherever `cache_dir` says.

Compressed keypoints (`__keypoints_compressed__`) stay compressed in memory; `keypoints2d_smpl49(index)`
gathers the smpl_49 columns of the requested rows only (docs/reproduction.md §2.2 step 2: exact-name mapping through
`SMPL_49_TO_HUMAN_DATA`, confidence copied unchanged, joints absent from the mask are zero).
"""

from __future__ import annotations

import json
import shutil
import zipfile
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from gtacli.body.conventions import HUMAN_DATA_NUM_KEYPOINTS, SMPL_49_TO_HUMAN_DATA
from gtacli.errors import BadFileError, PathLike, UnsafeFileError
from gtacli.io.atomic import StagedFolder, atomic_path, read_record
from gtacli.io.safe import SafeNpz, load_npy, load_npz

# Files at least this big get a memory-mappable .npy cache on first open (smaller ones decode fast enough).
CACHE_MIN_BYTES = 64 * 1024 * 1024
CACHE_SUBDIR = "human_data"
CACHE_MANIFEST = "manifest.json"
CACHE_THREADS = 4  # members inflated in parallel when the cache is built
CACHE_FORMAT_VERSION = 1
# the cache holds at most this many times the file's size (keypoint arrays inflate ~5-20x; a bomb far more)
CACHE_MAX_INFLATION = 32
USED_MEMBERS = ("image_path", "smpl", "has_smpl", "meta", "config")
HEADER_KEYS = ("__data_len__", "__key_strict__", "__keypoints_compressed__", "__temporal_len__")
DEFAULT_BBOX_SCORE = 1.0  # score appended to (N,4) boxes at load (mmhuman3d pads the same way)

Index = Union[None, int, slice, Sequence[int], np.ndarray]


class HumanData(Mapping[str, Any]):
    """A HumanData file opened lazily. `hd[key]` gives the value as mmhuman3d's `HumanData.__getitem__`
    would (keypoints decompressed to HUMAN_DATA's 190 slots, boxes padded to (N,5), dicts as dicts).

    Row-wise helpers read only the rows asked for: `rows(key, index)`, `keypoints2d_smpl49(index)` (…,49,3),
    `keypoints3d_smpl49(index)` (…,49,4), `bbox_xywh(index)` (…,5), `image_paths(index)`, `smpl(index)`.
    """

    def __init__(self, path: Path, source: _Source):
        self.path = path
        self._src = source
        self.key_strict = bool(source.scalar("__key_strict__", False))
        self.keypoints_compressed = bool(source.scalar("__keypoints_compressed__", False))
        self._len = self._data_len()
        self._check_shapes()

    # -- opening -------------------------------------------------------------------------------------
    @classmethod
    def load(
        cls, path: PathLike, *, cache_dir: Optional[PathLike] = None, use_cache: Optional[bool] = None
    ) -> HumanData:
        """Open `path`. `use_cache=None` caches files >= CACHE_MIN_BYTES when a cache folder is known
        (`cache_dir`, else the data root's `cache/` for files under `preprocessed_datasets/`)."""
        path = Path(path)
        npz = load_npz(path)
        cache_root = Path(cache_dir) if cache_dir is not None else _default_cache_root(path)
        if use_cache is None:
            use_cache = cache_root is not None and path.stat().st_size >= CACHE_MIN_BYTES
        if use_cache:
            if cache_root is None:
                raise ValueError("use_cache=True needs cache_dir for files outside a data root")
            lazy = cls(
                path, _NpzSource(path, npz)
            )  # the members' shapes, from their headers (nothing inflated)
            try:
                folder = ensure_cache(path, npz, cache_root, frames=len(lazy))
            except (OSError, CacheUnsupported):
                # read-only or full cache folder, or members the cache cannot hold (a dict inside a dict):
                # decode lazily from the npz instead
                folder = None
            if folder is not None:
                npz.close()
                return cls(path, _CachedSource(path, folder))
            return lazy
        return cls(path, _NpzSource(path, npz))

    fromfile = load  # mmhuman3d's spelling

    def _data_len(self) -> int:
        if self._src.has("__data_len__"):
            return int(self._src.scalar("__data_len__"))
        # legacy header (`__temporal_len__`, e.g. gta_human_4x.npz) or none: N = frames of the first framed key
        for key in ("bbox_xywh", "keypoints2d", "keypoints3d", "image_path"):
            if self._src.has(key):
                return int(self._src.shape(key)[0])
        smpl = self._src.dict_shapes("smpl")
        if smpl:
            return int(next(iter(smpl.values()))[0])
        raise BadFileError(
            "no __data_len__ and no per-frame array to infer the number of frames from",
            path=self.path,
            fix="is this a HumanData file? It needs bbox_xywh, image_path or keypoints",
        )

    def _check_shapes(self) -> None:
        """Per-frame members must have N rows and keypoints (N, K, 3|4): one `BadFileError` naming the member
        now, instead of an IndexError deep inside a training or evaluation run."""
        n = self._len
        for key, tail in (("bbox_xywh", ((4,), (5,))), ("keypoints2d", None), ("keypoints3d", None)):
            if not self._src.has(key):
                continue
            shape = tuple(self._src.shape(key))
            if key.startswith("keypoints"):
                dim = 3 if key == "keypoints2d" else 4
                if self._is_compressed_keypoints(key):
                    slots = int((self._mask(key) == 1).sum())  # type: ignore[union-attr]
                else:
                    slots = HUMAN_DATA_NUM_KEYPOINTS
                want = f"({n}, {slots}, {dim})"
                good = len(shape) == 3 and shape[0] == n and shape[1] == slots and shape[2] == dim
            else:
                want = f"({n}, 4|5)"
                good = len(shape) == 2 and shape[0] == n and shape[1:] in tail  # type: ignore[operator]
            if not good:
                raise BadFileError(
                    f"member '{key}' has shape {shape}, expected {want} for its {n} frames",
                    path=self.path,
                    fix="re-create or download the annotation again",
                )
        if self._src.has("image_path"):
            rows = self._src.shape("image_path")
            if not rows or rows[0] != n:
                raise BadFileError(
                    f"member 'image_path' has {rows[0] if rows else 0} entries, expected {n}",
                    path=self.path,
                    fix="re-create or download the annotation again",
                )

    # -- Mapping ---------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._len

    def __iter__(self) -> Iterator[str]:
        return (k for k in self._src.keys() if k not in HEADER_KEYS)

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and key not in HEADER_KEYS and self._src.has(key)

    def __getitem__(self, key: str) -> Any:
        if key not in self:
            raise KeyError(key)
        if key == "bbox_xywh":
            return self.bbox_xywh()
        if self._is_compressed_keypoints(key):
            return self._decompress(key, None)
        return self._src.value(key)

    def keys(self) -> List[str]:  # type: ignore[override]
        return list(iter(self))

    # -- row-wise access ----------------------------------------------------------------------------------
    def rows(self, key: str, index: Index = None) -> np.ndarray:
        """Rows of a per-frame array as stored (keypoints compressed if the file is), without reading the rest."""
        return _take(self._src.array(key), index)

    def keypoints(self, key: str, index: Index = None) -> np.ndarray:
        """Rows of a keypoints array with all HUMAN_DATA slots (decompressed when the file is compressed)."""
        if self._is_compressed_keypoints(key):
            return self._decompress(key, index)
        return np.asarray(_take(self._src.array(key), index))

    def bbox_xywh(self, index: Index = None) -> np.ndarray:
        """(…,5) `[x, y, w, h, score]`; (N,4) files padded with score 1."""
        boxes = np.asarray(_take(self._src.array("bbox_xywh"), index))
        if boxes.shape[-1] == 4:
            pad = np.full(boxes.shape[:-1] + (1,), DEFAULT_BBOX_SCORE, dtype=boxes.dtype)
            boxes = np.concatenate([boxes, pad], axis=-1)
        return boxes

    def image_paths(self, index: Index = None) -> List[str]:
        value = self._src.array("image_path")
        picked = _take(value, index)
        if isinstance(picked, np.ndarray):
            return [str(p) for p in picked.reshape(-1)] if picked.ndim else [str(picked)]
        return [str(picked)]

    def smpl(self, index: Index = None) -> Dict[str, np.ndarray]:
        """The `smpl` dict (`body_pose` (…,23,3), `global_orient` (…,3), `betas` (…,10), …), rows `index`."""
        out = {}
        for key, value in self._src.dict_value("smpl").items():
            picked = _take(value, index)  # memory-mapped rows stay memory-mapped
            out[key] = picked if isinstance(picked, np.ndarray) else np.asarray(picked)
        return out

    def meta(self) -> Dict[str, Any]:
        return dict(self._src.dict_value("meta")) if self._src.has("meta") else {}

    def keypoints2d_smpl49(self, index: Index = None) -> np.ndarray:
        """(…,49,3) `keypoints2d` in smpl_49 order (zeros where absent; conf copied unchanged)."""
        return self._to_smpl49("keypoints2d", index, dim=3)

    def keypoints3d_smpl49(self, index: Index = None) -> np.ndarray:
        """(…,49,4) `keypoints3d` in smpl_49 order (zeros where absent; conf copied unchanged)."""
        return self._to_smpl49("keypoints3d", index, dim=4)

    # -- keypoints ---------------------------------------------------------------------------------------
    def _is_compressed_keypoints(self, key: str) -> bool:
        return self.keypoints_compressed and key.startswith("keypoints") and self._src.has(f"{key}_mask")

    def _mask(self, key: str) -> Optional[np.ndarray]:
        return (
            np.asarray(self._src.array(f"{key}_mask")).reshape(-1) if self._src.has(f"{key}_mask") else None
        )

    def _decompress(self, key: str, index: Index) -> np.ndarray:
        stored = np.asarray(_take(self._src.array(key), index))
        mask = self._mask(key)
        assert mask is not None
        full = np.zeros(stored.shape[:-2] + (len(mask), stored.shape[-1]), dtype=stored.dtype)
        full[..., np.flatnonzero(mask == 1), :] = stored
        return full

    def _to_smpl49(self, key: str, index: Index, dim: int) -> np.ndarray:
        if not self._src.has(key):  # docs/reproduction.md §2.2: zeros when the file has no such keypoints
            picked = np.arange(self._len)[index] if index is not None else np.arange(self._len)
            return np.zeros(np.shape(picked) + (len(SMPL_49_TO_HUMAN_DATA), dim), np.float32)
        stored = np.asarray(_take(self._src.array(key), index))
        mask = self._mask(key)
        slots = np.asarray(SMPL_49_TO_HUMAN_DATA)
        out = np.zeros(stored.shape[:-2] + (len(slots), stored.shape[-1]), dtype=stored.dtype)
        if self._is_compressed_keypoints(key):
            present = np.flatnonzero(mask == 1)
            column = np.full(len(mask), -1)
            column[present] = np.arange(len(present))
            src = column[slots]
            have = src >= 0
            out[..., have, :] = stored[..., src[have], :]
        else:
            if stored.shape[-2] != HUMAN_DATA_NUM_KEYPOINTS:
                raise BadFileError(
                    f"'{key}' has {stored.shape[-2]} keypoints; expected {HUMAN_DATA_NUM_KEYPOINTS} (human_data)",
                    path=self.path,
                )
            out[...] = stored[..., slots, :]
        return out


# ------------------------------------------------------------------------------------------------------
# sources: the npz itself (lazy decode) or the .npy cache (memory-mapped)


class _Source:
    def keys(self) -> List[str]: ...
    def has(self, key: str) -> bool: ...
    def array(self, key: str) -> Any: ...
    def value(self, key: str) -> Any: ...
    def shape(self, key: str) -> Tuple[int, ...]: ...
    def dict_value(self, key: str) -> Dict[str, Any]: ...
    def dict_shapes(self, key: str) -> Dict[str, Tuple[int, ...]]: ...

    def scalar(self, key: str, default: Any = None) -> Any:
        if not self.has(key):
            return default
        value = self.value(key)
        return value.item() if isinstance(value, np.ndarray) and value.ndim == 0 else value


class _NpzSource(_Source):
    def __init__(self, path: Path, npz: SafeNpz):
        self.path = path
        self.npz = npz

    def keys(self) -> List[str]:
        return list(self.npz)

    def has(self, key: str) -> bool:
        return key in self.npz

    def array(self, key: str) -> Any:
        return self.npz[key]

    def value(self, key: str) -> Any:
        return _unwrap(self.npz[key])

    def shape(self, key: str) -> Tuple[int, ...]:
        shape, dtype = self.npz.header(key)
        if dtype.hasobject:
            value = self.npz[key]
            return tuple(np.shape(value)) if not isinstance(value, list) else (len(value),)
        return tuple(shape)

    def dict_value(self, key: str) -> Dict[str, Any]:
        if not self.has(key):
            raise KeyError(key)
        value = self.npz[key]
        if not isinstance(value, Mapping):
            raise BadFileError(f"'{key}' is not a dict", path=self.path, fix="is this a HumanData file?")
        return dict(value)

    def dict_shapes(self, key: str) -> Dict[str, Tuple[int, ...]]:
        if not self.has(key):
            return {}
        return {k: np.shape(v) for k, v in self.dict_value(key).items() if np.ndim(v) > 0}


class _CachedSource(_Source):
    def __init__(self, path: Path, folder: Path):
        self.path = path
        self.folder = folder
        manifest = json.loads((folder / CACHE_MANIFEST).read_text(encoding="utf-8"))
        self._entries: Dict[str, Dict[str, Any]] = manifest["members"]
        self._arrays: Dict[str, np.ndarray] = {}

    def _npy(self, name: str) -> np.ndarray:
        if name not in self._arrays:
            self._arrays[name] = load_npy(self.folder / f"{name}.npy", mmap=True)
        return self._arrays[name]

    def keys(self) -> List[str]:
        return list(self._entries)

    def has(self, key: str) -> bool:
        return key in self._entries

    def array(self, key: str) -> Any:
        entry = self._entries[key]
        if entry["kind"] == "array":
            return self._npy(key)
        if entry["kind"] == "json":
            return entry["value"]
        return self.dict_value(key)

    def value(self, key: str) -> Any:
        entry = self._entries[key]
        if entry["kind"] == "array":
            return _unwrap(self._npy(key))
        if entry["kind"] == "json":
            return entry["value"]
        return self.dict_value(key)

    def shape(self, key: str) -> Tuple[int, ...]:
        entry = self._entries[key]
        if entry["kind"] == "array":
            return tuple(self._npy(key).shape)
        return tuple(np.shape(entry.get("value")))

    def dict_value(self, key: str) -> Dict[str, Any]:
        entry = self._entries[key]
        if entry["kind"] != "dict":
            raise BadFileError(f"'{key}' is not a dict", path=self.path)
        out: Dict[str, Any] = {}
        for sub, info in entry["items"].items():
            out[sub] = self._npy(f"{key}.{sub}") if info["kind"] == "array" else info["value"]
        return out

    def dict_shapes(self, key: str) -> Dict[str, Tuple[int, ...]]:
        if not self.has(key) or self._entries[key]["kind"] != "dict":
            return {}
        return {k: np.shape(v) for k, v in self.dict_value(key).items() if np.ndim(v) > 0}


# ------------------------------------------------------------------------------------------------------
# the cache


class CacheUnsupported(Exception):
    """A member the .npy cache cannot hold (e.g. a dict inside a dict); readers use the npz directly."""


def cache_file_name(path: Path, *parts: str) -> str:
    """`<key>[.<sub>].npy` for a member, refusing names that are not plain file names.

    Member names come from the file (a hostile mirror controls them): a separator, `..`, an absolute path
    or a control character would let a name such as `../../../../tmp/x` write outside the cache folder.
    """
    for part in parts:
        bad = (
            not part
            or part in (".", "..")
            or "/" in part
            or "\\" in part
            or part.startswith(".")
            or any(ord(c) < 32 for c in part)
            or len(part) > 200
        )
        if bad:
            raise UnsafeFileError(
                f"member name {part!r} is not a plain name (path separators, '..' and absolute paths are refused)",
                path=path,
                fix="this is not a genuine HumanData file; download or create it again from a trusted source",
            )
    return ".".join(parts) + ".npy"


def _inside(folder: Path, name: str) -> Path:
    """`folder / name`, checked to resolve inside `folder` (belt and braces after `cache_file_name`)."""
    target = (folder / name).resolve()
    if target.parent != folder.resolve():
        raise UnsafeFileError(f"cache file {name!r} would be written outside {folder}", path=folder)
    return target


def is_cache_folder(folder: Path) -> bool:
    """True for a folder `ensure_cache` wrote (a real folder holding its manifest), which may be removed."""
    if folder.is_symlink() or not folder.is_dir():
        return False
    manifest = read_record(folder / CACHE_MANIFEST)
    return "format_version" in manifest and "members" in manifest


def cache_folder(path: PathLike, cache_root: PathLike) -> Path:
    """Where the cache of `path` lives: keyed by file name, size and mtime (a changed file gets a new folder)."""
    stat = Path(path).stat()
    return Path(cache_root) / CACHE_SUBDIR / f"{Path(path).stem}-{stat.st_size}-{stat.st_mtime_ns}"


def _is_used(key: str) -> bool:
    """Members HumanData reads: the header, boxes, keypoints (and masks), image paths, SMPL, meta."""
    return key in HEADER_KEYS or key in USED_MEMBERS or key.startswith(("keypoints", "bbox_"))


def _check_cacheable(path: Path, npz: SafeNpz, numeric: Sequence[str], frames: Optional[int]) -> None:
    """Before inflating anything: per-frame members have one row per frame, and what the members declare in
    all (zip directory and .npy headers) is at most CACHE_MAX_INFLATION times the file's size."""
    declared = 0
    for key in numeric:
        shape, dtype = npz.header(key)
        nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        declared += max(nbytes, npz.member_info(key).file_size)
        per_frame = key.startswith(("keypoints", "bbox_")) or key in ("image_path", "has_smpl")
        per_frame = per_frame and not key.endswith("_mask")
        if frames is not None and per_frame and (not shape or shape[0] != frames):
            raise BadFileError(
                f"member '{key}' has shape {tuple(shape)}, expected {frames} rows (one per frame)",
                path=path,
                fix="re-create or download the annotation again",
            )
    size = path.stat().st_size
    if declared > CACHE_MAX_INFLATION * size + CACHE_MIN_BYTES:
        raise BadFileError(
            f"its arrays declare {declared / 1e9:.1f} GB, more than {CACHE_MAX_INFLATION}x the file's "
            f"{size / 1e6:.0f} MB (a decompression bomb, or a damaged file)",
            path=path,
            fix="re-create or download the annotation again",
        )


def ensure_cache(
    path: PathLike,
    npz: Optional[SafeNpz] = None,
    cache_root: Optional[PathLike] = None,
    *,
    frames: Optional[int] = None,
) -> Path:
    """Build (once) the memory-mappable cache of a HumanData file and return its folder. Only the members
    HumanData reads are inflated (others are left out of the cache), after `_check_cacheable`."""
    path = Path(path)
    root = Path(cache_root) if cache_root is not None else _default_cache_root(path)
    if root is None:
        raise ValueError(f"no cache folder known for {path}; pass cache_root")
    folder = cache_folder(path, root)
    if (folder / CACHE_MANIFEST).is_file():
        return folder
    own = npz is None
    npz = npz or load_npz(path)
    try:
        for key in npz:  # every name checked before anything is written (a hostile name refuses the file)
            cache_file_name(path, key)
        used = [key for key in npz if _is_used(key)]
        numeric = [key for key in used if not npz.header(key)[1].hasobject]
        _check_cacheable(path, npz, numeric, frames)
        # built under a temporary name, the manifest written last, then renamed: a concurrent builder that
        # finished first wins and ours is dropped
        with StagedFolder(folder, CACHE_MANIFEST) as staged:
            tmp = staged.path
            members: Dict[str, Any] = {}
            # numeric members are complete .npy files: inflate each straight to disk (no copy in memory), in
            # parallel (zlib releases the GIL); object members are unpickled (restricted) meanwhile
            with ThreadPoolExecutor(max_workers=min(CACHE_THREADS, max(1, len(numeric)))) as pool:
                jobs = [
                    pool.submit(
                        _inflate_member, path, npz.member_info(key), _inside(tmp, cache_file_name(path, key))
                    )
                    for key in numeric
                ]
                for key in used:
                    if key in numeric:
                        members[key] = {"kind": "array"}
                    else:
                        members[key] = _cache_object_member(path, key, npz[key], tmp)
                for job in jobs:
                    job.result()
            staged.commit({"format_version": CACHE_FORMAT_VERSION, "source": str(path), "members": members})
    except (zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise BadFileError(
            f"cannot be read ({type(exc).__name__}: {exc})",
            path=path,
            fix="the file is truncated or corrupt; download or create it again",
        ) from exc
    finally:
        if own:
            npz.close()
    return folder


def _inflate_member(path: Path, info: zipfile.ZipInfo, target: Path) -> None:
    with zipfile.ZipFile(path) as archive, archive.open(info) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst, length=16 * 1024 * 1024)  # the CRC is checked at the end of the member


def _cache_object_member(path: Path, key: str, value: Any, folder: Path) -> Dict[str, Any]:
    if isinstance(value, Mapping):
        items: Dict[str, Any] = {}
        for sub, subvalue in value.items():
            if _json_safe(subvalue):
                items[str(sub)] = {"kind": "json", "value": subvalue}
            else:
                _save_plain(_inside(folder, cache_file_name(path, key, str(sub))), subvalue, key)
                items[str(sub)] = {"kind": "array"}
        return {"kind": "dict", "items": items}
    if _json_safe(value):
        return {"kind": "json", "value": value}
    _save_plain(_inside(folder, cache_file_name(path, key)), value, key)
    return {"kind": "array"}


def _save_plain(target: Path, value: Any, key: str) -> None:
    array = np.asarray(value)
    if array.dtype.hasobject:  # a dict in a dict, ragged lists...: not memory-mappable
        raise CacheUnsupported(f"member '{key}' holds nested objects")
    np.save(target, array, allow_pickle=False)


def _default_cache_root(path: Path) -> Optional[Path]:
    parent = path.resolve().parent
    if parent.name == "preprocessed_datasets":
        return parent.parent / "cache"
    return None


def _json_safe(value: Any) -> bool:
    if isinstance(value, np.ndarray):
        return False
    if isinstance(value, (str, int, float, bool)) or value is None:
        return True
    if isinstance(value, (list, tuple)) and len(value) <= 64:
        return all(isinstance(v, (str, int, float, bool)) or v is None for v in value)
    return False


def _unwrap(value: Any) -> Any:
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value.item()
    return value


def _take(value: Any, index: Index) -> Any:
    if index is None:
        return value
    if isinstance(value, list):
        if isinstance(index, (int, np.integer, slice)):
            return value[index]
        return [value[int(i)] for i in np.asarray(index).reshape(-1)]
    if isinstance(index, (int, np.integer, slice)):
        return value[index]
    return value[np.asarray(index)]


# ------------------------------------------------------------------------------------------------------
# writing


def write_human_data(path: PathLike, fields: Mapping[str, Any], compress: bool = True) -> Path:
    """Write `fields` as mmhuman3d's `HumanData.dump` does: `np.savez_compressed` of the header keys
    (`__key_strict__`, `__data_len__`, `__keypoints_compressed__`) plus every field; dicts become 0-d object
    arrays, lists of strings string arrays (what numpy does with them). With `compress`, every
    `keypoints*` array that has a `keypoints*_mask` keeps only its mask==1 columns. Atomic."""
    data = dict(fields)
    key_strict = bool(data.pop("__key_strict__", False))
    data.pop("__keypoints_compressed__", None)
    data_len = data.pop("__data_len__", None)
    if data_len is None:
        data_len = _infer_len(data)
    compressed = False
    if compress:
        for key in list(data):
            if key.startswith("keypoints") and not key.endswith("_mask") and f"{key}_mask" in data:
                mask = np.asarray(data[f"{key}_mask"]).reshape(-1)
                array = np.asarray(data[key])
                if array.shape[-2] != len(mask):
                    raise ValueError(f"{key} has {array.shape[-2]} keypoints but its mask has {len(mask)}")
                data[key] = array[..., np.flatnonzero(mask == 1), :]
                compressed = True
    payload: Dict[str, Any] = {
        "__key_strict__": key_strict,
        "__data_len__": int(data_len),
        "__keypoints_compressed__": compressed,
    }
    for key, value in data.items():
        payload[key] = _object_array(value) if isinstance(value, Mapping) else value
    path = Path(path)
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **payload)
    return path


def _object_array(value: Mapping[str, Any]) -> np.ndarray:
    holder = np.empty((), dtype=object)
    holder[()] = dict(value)
    return holder


def _infer_len(data: Mapping[str, Any]) -> int:
    for key in ("bbox_xywh", "image_path", "keypoints2d", "keypoints3d"):
        if key in data:
            return len(data[key])
    smpl = data.get("smpl")
    if isinstance(smpl, Mapping) and smpl:
        return len(next(iter(smpl.values())))
    return -1
