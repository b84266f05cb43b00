"""The asset registry (`manifest.json`, kept as data) and the content validators of its files.

Each asset has a name, a URL (docs/reproduction.md §1.3, verbatim), a destination relative to the data root (docs/reproduction.md §1.2
tree), a group, optionally its size and sha256 (or a sha256 prefix, for result checkpoints whose name
carries `sha256[:8]`), and a validator that checks the content once the bytes are verified:

* `npy`: shape (None = any length) and dtype kind, from the header (memory-mapped, nothing read);
* `npz`: member names, shapes and dtype kinds, from the member headers;
* `human_data`: a HumanData annotation npz (docs/reproduction.md §2.1): required keys, the frame count, the
  shapes of boxes and keypoints, plain member names, and finite boxes and keypoints;
* `gmm`: the GMM pose prior pickle through the restricted unpickler;
* `checkpoint`: `torch.load(weights_only=True)` and the expected state_dict keys;
* `text`: UTF-8 text (the training log);
* `onnx`: an ONNX network loaded with OpenCV's `cv2.dnn.readNetFromONNX` (the demo's detector);
* `onnx_zip`: a zip archive holding exactly one non-empty `.onnx` member (OpenMMLab's ONNX SDK releases:
  the keypoint model, which `gtacli.demo.keypoints` reads from the archive).

Every validator raises `BadFileError` (one line: file, problem, fix) or returns a short detail string.
"""

from __future__ import annotations

import difflib
import json
import zipfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import cv2
import numpy as np

from gtacli.data.human_data import HumanData, cache_file_name
from gtacli.errors import BadFileError, PathLike, UsageError
from gtacli.io.safe import load_checkpoint, load_npy, load_npz, load_pickle

MANIFEST_PATH = Path(__file__).with_name("manifest.json")
TEXT_CHECK_BYTES = 1 << 20  # how much of a text asset must decode as UTF-8
# Members scanned for NaN/inf (boxes, keypoints). Bigger ones are only scanned with check-layout --deep.
FINITE_CHECK_MAX_BYTES = 512 << 20
FINITE_CHECKED_KEYS = ("bbox_xywh", "keypoints2d", "keypoints3d")


# Upper bounds for files whose exact size the manifest does not pin, by content kind: several times the largest
# such file of the recipe (fits ~100 MB, checkpoints ~300 MB, annotations up to a few GB).
SIZE_CAPS = {
    "npy": 1 << 30,
    "npz": 64 << 20,
    "gmm": 64 << 20,
    "text": 64 << 20,
    "checkpoint": 2 << 30,
    "onnx": 1 << 30,
    "human_data": 32 << 30,
}
DEFAULT_SIZE_CAP = 4 << 30


@dataclass(frozen=True)
class Asset:
    """One public file of the recipe."""

    name: str
    url: str
    dest: str  # relative to the data root
    group: str
    validator: Mapping[str, Any] = field(default_factory=dict)
    size: Optional[int] = None
    sha256: Optional[str] = None
    sha256_prefix: Optional[str] = None
    dataset: Optional[str] = None

    def path(self, root: PathLike) -> Path:
        return Path(root) / self.dest

    @property
    def max_bytes(self) -> int:
        """The most bytes a download of this file may bring: its size when the manifest knows it, else a
        generous cap for its kind (a mirror that streams without end stops here, not at a full disk)."""
        if self.size is not None:
            return self.size
        kind = (self.validator or {}).get("kind", "")
        return SIZE_CAPS.get(kind, DEFAULT_SIZE_CAP)

    @property
    def fix_command(self) -> str:
        return f"gtacli fetch {self.name}"

    def check_sha256(self, digest: str) -> Optional[bool]:
        """True/False when the manifest knows the hash (full or prefix), None when it does not."""
        if self.sha256:
            return digest.lower() == self.sha256.lower()
        if self.sha256_prefix:
            return digest.lower().startswith(self.sha256_prefix.lower())
        return None


class Manifest:
    """The registry: lookup by name and group, selection for `gtacli fetch`."""

    def __init__(self, assets: Sequence[Asset], groups: Mapping[str, str]):
        self.assets: List[Asset] = list(assets)
        self.groups: Dict[str, str] = dict(groups)
        self._by_name = {a.name: a for a in self.assets}
        if len(self._by_name) != len(self.assets):
            raise ValueError("manifest has duplicate asset names")

    @property
    def names(self) -> List[str]:
        return [a.name for a in self.assets]

    @property
    def group_names(self) -> List[str]:
        """The declared groups, then any group an entry names without a description."""
        return list(dict.fromkeys([*self.groups, *(a.group for a in self.assets)]))

    def get(self, name: str) -> Asset:
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, self.names, n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise UsageError(  # a mistyped name is a usage error (exit 2), as an unknown group is
                f"unknown asset name '{name}'",
                fix=f"{hint}list the names with `gtacli fetch --all --dry-run`",
            ) from None

    def in_group(self, group: str) -> List[Asset]:
        if group not in self.groups and not any(a.group == group for a in self.assets):
            raise UsageError(
                f"unknown asset group '{group}'",
                fix=f"use one of: {', '.join(self.group_names)}",
            )
        return [a for a in self.assets if a.group == group]

    def select(
        self, names: Iterable[str] = (), groups: Iterable[str] = (), everything: bool = False
    ) -> List[Asset]:
        """Assets named, in the groups given, or all; manifest order, no duplicates."""
        if everything:
            return list(self.assets)
        wanted = set()
        groups = list(groups)
        for name in names:  # a positional name is an entry, else a group (`gtacli fetch detector`)
            if name in self._by_name:
                wanted.add(name)
            elif name in self.group_names:
                groups.append(name)
            else:
                self.get(name)  # raises with "did you mean"
        for group in groups:
            wanted.update(a.name for a in self.in_group(group))
        return [a for a in self.assets if a.name in wanted]

    def by_dest(self, dest: PathLike) -> Optional[Asset]:
        dest = str(dest)
        for asset in self.assets:
            if asset.dest == dest:
                return asset
        return None


def _asset_from_dict(raw: Mapping[str, Any]) -> Asset:
    known = {f for f in Asset.__dataclass_fields__}
    return Asset(**{k: v for k, v in raw.items() if k in known})


@lru_cache(maxsize=4)
def _load_cached(path: str) -> Manifest:
    raw = json.loads(Path(path).read_text(encoding="utf-8"))
    return Manifest([_asset_from_dict(a) for a in raw["assets"]], raw.get("groups", {}))


def load_manifest(path: Optional[PathLike] = None) -> Manifest:
    """The built-in registry (`gtacli/assets/manifest.json`), or another file with the same schema."""
    return _load_cached(str(Path(path) if path else MANIFEST_PATH))


# --------------------------------------------------------------------------------------------------
# content validators


def _dtype_ok(dtype: np.dtype, want: Optional[str]) -> bool:
    if not want:
        return True
    kinds = {"float": "f", "int": "iu", "uint": "u", "bool": "b", "str": "US", "object": "O"}
    return dtype.kind in kinds.get(want, want)


def _shape_ok(shape: Tuple[int, ...], want: Optional[Sequence[Optional[int]]]) -> bool:
    if want is None:
        return True
    return len(shape) == len(want) and all(w is None or s == w for s, w in zip(shape, want))


def _fmt_shape(want: Sequence[Optional[int]]) -> str:
    return "(" + ", ".join("N" if w is None else str(w) for w in want) + ")"


def validate_npy(
    path: PathLike,
    shape: Optional[Sequence[Optional[int]]] = None,
    dtype: Optional[str] = None,
    fix: str = "",
) -> str:
    """Header-level check of an .npy array (memory-mapped; a truncated file fails here)."""
    arr = load_npy(path, mmap=True)
    try:
        if not _shape_ok(arr.shape, shape):
            raise BadFileError(
                f"array has shape {tuple(arr.shape)}, expected {_fmt_shape(shape or [])}", path=path, fix=fix
            )
        if not _dtype_ok(arr.dtype, dtype):
            raise BadFileError(f"array has dtype {arr.dtype}, expected {dtype}", path=path, fix=fix)
        return f"{arr.dtype} {tuple(arr.shape)}"
    finally:
        del arr


def validate_npz(path: PathLike, members: Mapping[str, Mapping[str, Any]], fix: str = "") -> str:
    with load_npz(path) as npz:
        for key, spec in members.items():
            if key not in npz:
                raise BadFileError(
                    f"member '{key}' is missing (has: {', '.join(sorted(npz))})", path=path, fix=fix
                )
            shape, dtype = npz.header(key)
            if not _shape_ok(shape, spec.get("shape")):
                raise BadFileError(
                    f"member '{key}' has shape {shape}, expected {_fmt_shape(spec['shape'])}",
                    path=path,
                    fix=fix,
                )
            if not _dtype_ok(dtype, spec.get("dtype")):
                raise BadFileError(
                    f"member '{key}' has dtype {dtype}, expected {spec['dtype']}", path=path, fix=fix
                )
        return ", ".join(f"{k} {npz.header(k)[0]}" for k in members)


def validate_human_data(
    path: PathLike, keys: Sequence[str] = (), fix: str = "", *, deep: bool = False
) -> Tuple[int, str]:
    """Keys present, plain member names, `bbox_xywh` (N, 4|5), keypoints (N, K, 3|4), `image_path` of length
    N, and no NaN/inf in boxes and keypoints (members over `FINITE_CHECK_MAX_BYTES` only with `deep`).
    Returns (N, detail)."""
    with load_npz(path) as npz:
        for key in npz:  # a name that is not a plain file name is how a hostile file escapes the cache
            cache_file_name(Path(path), key)
        missing = [k for k in keys if k not in npz]
        if missing:
            raise BadFileError(
                f"HumanData keys missing: {', '.join(missing)} (has: {', '.join(sorted(npz))})",
                path=path,
                fix=fix,
            )
        nbytes = {}
        for key in FINITE_CHECKED_KEYS:
            if key in npz:
                shape, dtype = npz.header(key)
                nbytes[key] = int(np.prod(shape)) * dtype.itemsize
    hd = HumanData.load(path, use_cache=False)  # checks every per-frame member's shape
    n = len(hd)
    skipped = []
    for key, size in nbytes.items():
        if not deep and size > FINITE_CHECK_MAX_BYTES:
            skipped.append(key)
            continue
        values = np.asarray(hd.rows(key))
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
        if bad.any():
            raise BadFileError(
                f"{int(bad.sum())} of {n} frames have NaN/inf values in '{key}' (first: frame {int(np.argmax(bad))})",
                path=path,
                fix=fix or "re-create the annotation without non-finite values (they would poison training)",
            )
    detail = f"{n} frames"
    if skipped:
        detail += f"; {', '.join(skipped)} not scanned for NaN/inf (large; use --deep)"
    return n, detail


def validate_gmm(path: PathLike, num_gaussians: int = 8, dim: int = 69, fix: str = "") -> str:
    """gmm_08.pkl: dict with means (K, D), covars (K, D, D), weights (K,) — restricted unpickling only."""
    data = load_pickle(path)
    if isinstance(data, dict):
        data = {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}
    want = {"means": (num_gaussians, dim), "covars": (num_gaussians, dim, dim), "weights": (num_gaussians,)}
    if not isinstance(data, dict) or any(k not in data for k in want):
        raise BadFileError(
            f"not a GMM prior: expected a dict with {', '.join(want)}",
            path=path,
            fix=fix or "download it again",
        )
    for key, shape in want.items():
        arr = np.asarray(data[key])
        if arr.shape != shape:
            raise BadFileError(f"GMM '{key}' has shape {arr.shape}, expected {shape}", path=path, fix=fix)
    return f"{num_gaussians} gaussians x {dim}"


def checkpoint_state_dict(ckpt: Any) -> Mapping[str, Any]:
    """The state_dict inside a checkpoint: mmcv `state_dict`, SPIN `model`, or the dict itself."""
    if isinstance(ckpt, Mapping):
        for key in ("state_dict", "model"):
            if isinstance(ckpt.get(key), Mapping):
                return ckpt[key]
        return ckpt
    return {}


def validate_checkpoint(path: PathLike, keys: Sequence[str] = (), fix: str = "") -> str:
    """Expected keys present, with or without the `backbone.`/`head.` prefix and `module.`."""
    sd = checkpoint_state_dict(load_checkpoint(path))
    present = set()
    for key in sd:
        k = key[len("module.") :] if key.startswith("module.") else key
        present.add(k)
        present.add(k.split(".", 1)[1] if k.startswith(("backbone.", "head.")) else k)
    missing = [k for k in keys if k not in present and k.split(".", 1)[-1] not in present]
    if missing:
        raise BadFileError(
            f"checkpoint lacks {', '.join(missing)} ({len(sd)} tensors found)",
            path=path,
            fix=fix or "download it again",
        )
    return f"{len(sd)} tensors"


def validate_text(path: PathLike, fix: str = "") -> str:
    with open(path, "rb") as fp:
        head = fp.read(TEXT_CHECK_BYTES)
    if not head:
        raise BadFileError("file is empty", path=path, fix=fix)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut by the read limit is fine
            raise BadFileError("not UTF-8 text", path=path, fix=fix) from None
    return f"{Path(path).stat().st_size} bytes of text"


def validate_onnx(path: PathLike, fix: str = "") -> str:
    """An ONNX network that OpenCV's DNN module (what the demo's detector uses) can load."""
    try:
        net = cv2.dnn.readNetFromONNX(str(path))
    except cv2.error as exc:
        first = next((line for line in str(exc).splitlines() if line.strip()), "unreadable")
        raise BadFileError(
            f"not an ONNX network OpenCV can load ({first.strip()[:160]})", path=path, fix=fix
        ) from None
    if net.empty():
        raise BadFileError("OpenCV loaded an empty ONNX network", path=path, fix=fix)
    return f"ONNX network, {len(net.getLayerNames())} layers"


def validate_onnx_zip(path: PathLike, fix: str = "") -> str:
    """A zip with exactly one non-empty .onnx member (its loading is checked where it is used)."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [i for i in archive.infolist() if i.filename.lower().endswith(".onnx")]
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise BadFileError(f"not a readable zip archive ({exc})", path=path, fix=fix) from None
    if bad is not None:
        raise BadFileError(f"zip member {bad} is corrupt (CRC mismatch)", path=path, fix=fix)
    if len(members) != 1 or members[0].file_size == 0:
        raise BadFileError(
            f"expected one non-empty .onnx file in the archive, found {len(members)}", path=path, fix=fix
        )
    return f"zip with {members[0].filename} ({members[0].file_size} bytes)"


def validate_asset(asset: Asset, path: Optional[PathLike] = None, *, root: Optional[PathLike] = None) -> str:
    """Run the asset's content validator on `path` (default: its destination under `root`)."""
    if path is None:
        if root is None:
            raise ValueError("give path or root")
        path = asset.path(root)
    spec = dict(asset.validator)
    kind = spec.pop("kind", None)
    fix = f"download it again: gtacli fetch --force {asset.name}"
    if kind == "npy":
        return validate_npy(path, spec.get("shape"), spec.get("dtype"), fix=fix)
    if kind == "npz":
        return validate_npz(path, spec.get("members", {}), fix=fix)
    if kind == "human_data":
        return validate_human_data(path, spec.get("keys", ()), fix=fix)[1]
    if kind == "gmm":
        return validate_gmm(path, spec.get("num_gaussians", 8), spec.get("dim", 69), fix=fix)
    if kind == "checkpoint":
        return validate_checkpoint(path, spec.get("keys", ()), fix=fix)
    if kind == "text":
        return validate_text(path, fix=fix)
    if kind == "onnx":
        return validate_onnx(path, fix=fix)
    if kind == "onnx_zip":
        return validate_onnx_zip(path, fix=fix)
    if kind is None:
        return "no content check"
    raise UsageError(f"manifest entry {asset.name} has unknown validator kind '{kind}'")
