"""Load and save estimator weights in every published layout (docs/reproduction.md §5, "Product decisions" 6).

Layouts read by `load_weights` (always through `gtacli.io.safe.load_checkpoint`, i.e. `weights_only=True`):

* ``mmhuman3d``: `{'meta', 'state_dict': {backbone.*, head.*, body_model_train.*, body_model_test.*}}`
  (the `body_model_*` SMPL buffers are ignored: SMPL is built from the .pkl instead);
* ``spin``: SPIN's `{'model': {conv1.*, layer*.*, fc1.*, decpose.*, init_pose, ...}, 'optimizer', ...}`;
  unprefixed names get `backbone.`/`head.` by the rule of docs/reproduction.md §5.4;
* ``torchvision``: a bare ImageNet ResNet-50 state_dict (backbone only; its classifier `fc.*` is ignored);
* ``gtacli``: `{'state_dict', 'meta': {'format': 'gtacli', ...}, 'optimizers'?, ...}` written by `save_checkpoint`.

`module.` (DataParallel/DDP) components are stripped everywhere. Every key of the file ends up in exactly
one of `loaded`, `unexpected` or `ignored`, every key of the model in `loaded` or `missing`. A file whose
tensors do not fit the model (wrong architecture) or that loads nothing is refused with one line.
"""

from __future__ import annotations

import datetime as _dt
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple

import torch
from torch import nn

from gtacli.errors import BadFileError, PathLike
from gtacli.io.atomic import atomic_write_with
from gtacli.io.safe import load_checkpoint

GTACLI_FORMAT = "gtacli"
GTACLI_FORMAT_VERSION = 1
LAYOUTS = ("gtacli", "mmhuman3d")

# docs/reproduction.md §5.4: which unprefixed top-level names belong to the backbone and which to the head.
BACKBONE_ROOTS = ("conv1", "bn1", "layer1", "layer2", "layer3", "layer4")
HEAD_ROOTS = ("fc1", "fc2", "decpose", "decshape", "deccam", "init_pose", "init_shape", "init_cam")
# Keys that are in published files but are not estimator weights (reported as `ignored`).
IGNORED_ROOTS = ("body_model_train", "body_model_test", "body_model", "fc", "avgpool")
# A missing BatchNorm counter is harmless (old torchvision files predate it); it never makes a load "partial".
HARMLESS_MISSING_SUFFIX = "num_batches_tracked"


@dataclass
class LoadReport:
    """What `load_weights` did. Keys are model names (after prefixing), except `ignored` (file names)."""

    source_format: str
    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    ignored: List[str] = field(default_factory=list)
    meta: Dict[str, Any] = field(default_factory=dict)
    path: Optional[str] = None

    @property
    def significant_missing(self) -> List[str]:
        """Missing keys that matter (BatchNorm `num_batches_tracked` counters are not weights)."""
        return [k for k in self.missing if not k.endswith(HARMLESS_MISSING_SUFFIX)]

    @property
    def complete(self) -> bool:
        return not self.significant_missing and not self.unexpected

    def summary(self) -> str:
        text = f"{self.source_format} checkpoint: {len(self.loaded)} tensors loaded"
        if self.ignored:
            text += f", {len(self.ignored)} ignored ({_roots(self.ignored)})"
        if self.significant_missing:
            text += f", {len(self.significant_missing)} missing ({_roots(self.significant_missing)})"
        if self.unexpected:
            text += f", {len(self.unexpected)} unexpected ({_roots(self.unexpected)})"
        return text


def read_state_dict(path: PathLike) -> Tuple[Dict[str, torch.Tensor], str, Dict[str, Any], List[str]]:
    """(state_dict with model names, source format, meta, ignored file keys) of a checkpoint file."""
    raw = load_checkpoint(path)
    if not isinstance(raw, Mapping):
        raise BadFileError(
            f"not a checkpoint dictionary (found {type(raw).__name__})",
            path=path,
            fix="pass an mmhuman3d, SPIN, torchvision ResNet-50 or gtacli checkpoint",
        )
    meta: Dict[str, Any] = {}
    if "state_dict" in raw and isinstance(raw["state_dict"], Mapping):
        meta = dict(raw.get("meta") or {})
        source = GTACLI_FORMAT if meta.get("format") == GTACLI_FORMAT else "mmhuman3d"
        tensors = raw["state_dict"]
    elif "model" in raw and isinstance(raw["model"], Mapping):
        source, tensors = "spin", raw["model"]
    else:
        tensors, source = raw, ""
    state: Dict[str, torch.Tensor] = {}
    ignored: List[str] = []
    for key, value in tensors.items():
        if not isinstance(value, torch.Tensor):
            ignored.append(str(key))
            continue
        name = ".".join(part for part in str(key).split(".") if part != "module")
        if name.split(".")[0] in IGNORED_ROOTS:
            ignored.append(str(key))
            continue
        state[_prefixed(name)] = value
    if not source:  # a bare state_dict: torchvision if it has no head, else an unwrapped mmhuman3d/SPIN dict
        has_head = any(k.startswith("head.") for k in state)
        bare_torchvision = any(str(k).split(".")[0] == "fc" for k in tensors) or not has_head
        source = "torchvision" if bare_torchvision and not has_head else "state_dict"
    return state, source, meta, ignored


def load_weights(model: nn.Module, path: PathLike) -> LoadReport:
    """Load a checkpoint of any supported layout into an `HMREstimator`; refuse wrong architectures.

    Raises `BadFileError` (one line naming the file) when a tensor's shape does not fit the model or when
    no tensor of the file matches a model key.
    """
    state, source, meta, ignored = read_state_dict(path)
    own = model.state_dict()
    report = LoadReport(source_format=source, meta=meta, ignored=ignored, path=str(path))
    to_load: Dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if key not in own:
            report.unexpected.append(key)
            continue
        if tuple(value.shape) != tuple(own[key].shape):
            raise BadFileError(
                f"wrong architecture: '{key}' has shape {tuple(value.shape)} in the file, "
                f"the ResNet-50 + HMR model needs {tuple(own[key].shape)}",
                path=path,
                fix="pass a ResNet-50 HMR/SPIN checkpoint (mmhuman3d, SPIN, torchvision resnet50 or gtacli)",
            )
        to_load[key] = value
    if not to_load:
        example = next(iter(state), next(iter(ignored), "nothing"))
        raise BadFileError(
            f"no weight in this file matches the ResNet-50 + HMR model (first key: '{example}')",
            path=path,
            fix="pass an mmhuman3d, SPIN, torchvision resnet50 or gtacli checkpoint",
        )
    model.load_state_dict(to_load, strict=False)
    report.loaded = [k for k in own if k in to_load]
    report.missing = [k for k in own if k not in to_load]
    return report


def save_checkpoint(
    path: PathLike,
    model: nn.Module,
    meta: Optional[Mapping[str, Any]] = None,
    extra: Optional[Mapping[str, Any]] = None,
    layout: str = "gtacli",
) -> Path:
    """Write `model`'s weights atomically (temp file beside `path`, then rename).

    * ``gtacli``: `{'state_dict', 'meta': {'format': 'gtacli', 'format_version', 'saved_at', **meta}, **extra}`;
      `meta` should carry recipe, epoch, iteration, seed, git revision (`git_revision()`) and asset hashes
      — whatever the caller passes is stored (plain types only, so `weights_only=True` reads it back);
      `extra` holds e.g. `optimizers`, `fits`.
    * ``mmhuman3d``: exactly `{'meta': {...}, 'state_dict': {backbone.*, head.*}}`, loadable by mmhuman3d's
      `load_checkpoint` (no `extra`: mmhuman3d would not read it).
    """
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    module = model.module if hasattr(model, "module") else model  # unwrap DDP
    state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    plain_meta = _plain(dict(meta or {}))
    plain_meta.setdefault("saved_at", _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    if layout == "gtacli":
        payload: Dict[str, Any] = {
            "meta": {"format": GTACLI_FORMAT, "format_version": GTACLI_FORMAT_VERSION, **plain_meta},
            "state_dict": state,
        }
        for key, value in (extra or {}).items():
            if key in payload:
                raise ValueError(f"extra key {key!r} would overwrite the checkpoint's {key!r}")
            payload[key] = value
    else:
        if extra:
            raise ValueError(
                "the mmhuman3d layout holds only 'meta' and 'state_dict'; save extras with layout='gtacli'"
            )
        payload = {"meta": plain_meta, "state_dict": state}
    # the size it will take (tensors' bytes), so a full disk is reported with the space really needed
    expected = _tensor_bytes(payload)
    return atomic_write_with(path, lambda tmp: torch.save(payload, tmp), expected_bytes=expected)


def _tensor_bytes(obj: Any) -> int:
    """Bytes of the tensors in a nested dict/list (what torch.save writes, give or take its small headers)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(_tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(_tensor_bytes(v) for v in obj)
    return 0


def git_revision(repo: Optional[PathLike] = None) -> Optional[str]:
    """The git commit of the gtacli source tree (with '+dirty' when modified), or None outside a checkout."""
    where = Path(repo) if repo is not None else Path(__file__).resolve().parents[2]
    # Only a source checkout of gtacli itself has a revision: an installed wheel lives in site-packages, which may
    # sit inside some unrelated clone (a venv in a project folder) whose HEAD would otherwise be reported.
    if not (where / ".git").exists() or not (where / "gtacli" / "__init__.py").is_file():
        return None
    try:
        rev = subprocess.run(
            ["git", "-C", str(where), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            # --no-optional-locks: `status` would otherwise refresh (rewrite) the checkout's .git/index
            ["git", "--no-optional-locks", "-C", str(where), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{rev}+dirty" if dirty else rev or None


def _prefixed(name: str) -> str:
    root = name.split(".")[0]
    if root in BACKBONE_ROOTS:
        return f"backbone.{name}"
    if root in HEAD_ROOTS:
        return f"head.{name}"
    return name


def _roots(keys: List[str]) -> str:
    seen: List[str] = []
    for key in keys:
        parts = key.split(".")
        root = ".".join(parts[:2]) if parts[0] in ("backbone", "head") and len(parts) > 1 else parts[0]
        if root not in seen:
            seen.append(root)
    return ", ".join(seen[:4]) + (", ..." if len(seen) > 4 else "")


def _plain(value: Any) -> Any:
    """Meta values as types `torch.load(weights_only=True)` accepts (dict/list/str/int/float/bool/None)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        return value.item()
    if hasattr(value, "tolist"):
        return value.tolist()
    return str(value)
