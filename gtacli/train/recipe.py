"""Training recipes: every number of docs/reproduction.md §6–7, composed from the configs of the code that uses them.

A `Recipe` is a name, a description, the default `--init`, and one part per consumer, each defined beside it:

* ``data``: `gtacli.data.mixed.MixConfig` (datasets, partition, loader workers);
* ``optim``: `gtacli.train.optim.OptimConfig` (epochs, batch, draws per epoch, lr, Adam, schedule, clipping);
* ``augment``: `gtacli.data.augment.AugmentConfig`;
* ``losses``: `gtacli.train.losses.LossConfig`;
* ``registration``: `gtacli.fit.registration.RegistrationConfig` (static fits or SMPLify in the loop);

plus run settings (mixed precision, memory layout, log interval, the after-epoch evaluation).

Two recipes are defined:

* ``gta-spin-ft`` (default of `gtacli finetune`): `configs/gta_human/spin/resnet50_spin_gta_ft.py` as
  mmhuman3d's code actually ran it (docs/reproduction.md decision 3–4, §6, §7.2): seven datasets mixed 50 % GTA,
  100,000 draws per epoch, 10 epochs, batch 32 per GPU, two Adams at a constant 3e-5, no gradient clipping,
  static fits read-only.
* ``spin`` (default of `gtacli train`): `configs/spin/resnet50_spin_pw3d.py` (docs/reproduction.md §7.4): six
  datasets, the SMPLify fitter in the loop, batch 8 per GPU, lr 3e-5 divided by 10 after epoch 3, SyncBN on CUDA.

A recipe is printed at the start of a run and saved in the run directory (`recipe.json`); the CLI overrides
fields with `--epochs/--batch-size/--lr/--num-data/--workers` and `--set part.field=value` (e.g.
`--set losses.keypoints3d=50`, `--set registration.method=spin`, `--set eval_each_epoch=false`), typed here;
an unknown key is a usage error.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Optional, Tuple

from gtacli.data.augment import AugmentConfig
from gtacli.data.mixed import MixConfig
from gtacli.errors import UsageError
from gtacli.fit.config import RegistrationConfig
from gtacli.layout import TRAIN_DATASETS
from gtacli.train.losses import LossConfig
from gtacli.train.optim import OptimConfig

AMP_DTYPES = ("float16", "bfloat16")
# the SPIN recipe's datasets: every training dataset but GTA-Human (docs/reproduction.md §1.1 table order)
SPIN_DATASETS: Tuple[str, ...] = tuple(name for name in TRAIN_DATASETS if name != "gta")


@dataclass(frozen=True)
class Recipe:
    """One training recipe: named parts, each owned by the code that reads it."""

    name: str
    description: str
    init: str  # what `--init` defaults to: 'spin_official' (a layout file), 'imagenet' or 'none'
    data: MixConfig
    optim: OptimConfig = OptimConfig()
    augment: AugmentConfig = AugmentConfig()
    losses: LossConfig = LossConfig()
    registration: RegistrationConfig = field(default_factory=RegistrationConfig)
    # mixed precision on CUDA (ignored on CPU). Off by default: mmhuman3d's configs train in float32 (no fp16
    # section), and reduced precision changes the numbers; `--set amp=true` trades that for speed.
    amp: bool = False
    amp_dtype: str = "float16"  # 'float16' (with a gradient scaler) or 'bfloat16' (CUDA with bf16 support)
    # channels-last memory layout for the model and the batches: same maths, faster convolutions
    channels_last: bool = True
    log_interval: int = 50  # steps between metrics.jsonl/TensorBoard records
    eval_each_epoch: bool = True  # 3DPW eval after each epoch when its files exist

    def to_dict(self) -> Dict[str, Any]:
        return _to_plain(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    def override(self, values: Mapping[str, Any]) -> Recipe:
        """A copy with dotted fields replaced (`{"optim.lr": 1e-4}`; values already typed); validated."""
        recipe = self
        for key, value in values.items():
            recipe = _replace_path(recipe, key.split("."), value, key)
        recipe.validate()
        return recipe

    def with_settings(self, settings: Mapping[str, str]) -> Recipe:
        """Apply `--set key=value` strings, converting each to the field's type (UsageError when it cannot)."""
        return self.override({k: parse_field_value(self, k, v) for k, v in settings.items()})

    def validate(self) -> None:
        """UsageError naming the first value that cannot work (every float must be finite)."""
        for key, value in flatten(self).items():
            if isinstance(value, float) and not math.isfinite(value):
                raise UsageError(f"recipe {self.name}: {key} must be a finite number (got {value})")
            if isinstance(value, tuple) and any(isinstance(v, float) and not math.isfinite(v) for v in value):
                raise UsageError(f"recipe {self.name}: {key} must hold finite numbers (got {value})")
        for part in ("data", "optim", "augment", "losses"):
            try:
                getattr(self, part).validate()
            except ValueError as exc:
                raise UsageError(f"recipe {self.name}: {part}: {exc}") from None
        if self.amp_dtype not in AMP_DTYPES:
            raise UsageError(f"recipe {self.name}: amp_dtype must be one of {', '.join(AMP_DTYPES)}")
        if self.log_interval < 1:
            raise UsageError(f"recipe {self.name}: log_interval must be >= 1")
        # the crop geometry is read by three parts: they must agree
        res = {"augment": self.augment.img_res, "losses": self.losses.img_res}
        focal = {"losses": self.losses.focal_length}
        for name, values in (("img_res", res), ("focal_length", focal)):
            if hasattr(self.registration, name):
                values["registration"] = getattr(self.registration, name)
            if len(set(values.values())) > 1:
                parts = ", ".join(f"{k}.{name}={v}" for k, v in values.items())
                raise UsageError(f"recipe {self.name}: {parts} differ", fix=f"set {name} in every part")


def _to_plain(obj: Any) -> Any:
    if dataclasses.is_dataclass(obj):
        return {f.name: _to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (tuple, list)):
        return [_to_plain(v) for v in obj]
    return obj


def flatten(obj: Any, prefix: str = "") -> Dict[str, Any]:
    """{dotted name: leaf value} of a (nested) dataclass."""
    out: Dict[str, Any] = {}
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, f"{prefix}{f.name}."))
        else:
            out[f"{prefix}{f.name}"] = value
    return out


def _field_type(obj: Any, path: str) -> Any:
    """The annotated type of a dotted field of `obj` (UsageError naming the key when there is none)."""
    parts = path.split(".")
    current: Any = obj
    for depth, name in enumerate(parts):
        names = {f.name for f in dataclasses.fields(current)} if dataclasses.is_dataclass(current) else set()
        if name not in names:
            raise UsageError(f"--set {path}: no such recipe field", fix=_suggest(obj, path))
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(current, name)):
                raise UsageError(f"--set {path}: a group, not a field", fix=f"set {path}.FIELD=VALUE")
            return typing.get_type_hints(type(current))[name]
        current = getattr(current, name)
    raise AssertionError("unreachable")  # pragma: no cover


def _suggest(obj: Any, path: str) -> str:
    leaf = path.split(".")[-1]
    matches = [k for k in flatten(obj) if k.split(".")[-1] == leaf]
    if matches:
        return f"did you mean {' or '.join(matches[:3])}?"
    # a typo of a whole dotted name (optim.lrr -> optim.lr)
    close = difflib.get_close_matches(path, list(flatten(obj)), n=3, cutoff=0.75)
    if close:
        return f"did you mean {' or '.join(close)}?"
    groups = ", ".join(f.name for f in dataclasses.fields(obj))
    return f"see recipe.json of a run (or the printed recipe) for names; top-level keys: {groups}"


def _replace_path(obj: Any, parts: list, value: Any, key: str) -> Any:
    name = parts[0]
    if not dataclasses.is_dataclass(obj) or name not in {f.name for f in dataclasses.fields(obj)}:
        raise UsageError(f"recipe field {key!r} does not exist")
    if len(parts) > 1:
        value = _replace_path(getattr(obj, name), parts[1:], value, key)
    try:
        return dataclasses.replace(obj, **{name: value})
    except (ValueError, TypeError) as exc:  # a part's own checks (e.g. RegistrationConfig's mode)
        raise UsageError(f"--set {key}: {exc}") from None


def parse_field_value(recipe: Recipe, key: str, text: str) -> Any:
    """Convert `--set key=text` to the field's type: `true/false`, numbers, comma-separated tuples."""
    annotation = _field_type(recipe, key)
    try:
        return _convert(annotation, text.strip())
    except ValueError:
        raise UsageError(
            f"--set {key}={text}: not a valid {_type_name(annotation)}",
            fix=f"give {key} a {_type_name(annotation)} value",
        ) from None


def _type_name(annotation: Any) -> str:
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _convert(annotation: Any, text: str) -> Any:
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Union:  # Optional[X]
        if text.lower() in ("none", "null", ""):
            return None
        return _convert(next(a for a in args if a is not type(None)), text)
    if origin in (tuple, Tuple):
        parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
        inner = args[0] if args else str
        if len(args) == 2 and args[1] is Ellipsis or len(args) <= 1:
            return tuple(_convert(inner, p) for p in parts)
        if len(parts) != len(args):
            raise ValueError(text)
        return tuple(_convert(a, p) for a, p in zip(args, parts))
    if annotation is bool:
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if annotation is int:
        return int(text)
    if annotation is float:
        return float(text)
    if annotation is str:
        return text
    raise ValueError(f"unsupported type {annotation}")


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Rebuild a recipe saved by `to_dict` (e.g. from a checkpoint); unknown keys are refused."""
    recipe = _from_plain(Recipe, data, "")
    recipe.validate()
    return recipe


def _from_plain(cls: type, data: Mapping[str, Any], prefix: str) -> Any:
    if not isinstance(data, Mapping):
        raise UsageError(f"saved recipe: {prefix.rstrip('.') or 'recipe'} is not a mapping")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = [k for k in data if k not in names]
    if unknown:
        raise UsageError(f"saved recipe has unknown field(s) {', '.join(prefix + k for k in unknown)}")
    values: Dict[str, Any] = {}
    for key, value in data.items():
        kind = hints[key]
        if dataclasses.is_dataclass(kind):
            values[key] = _from_plain(kind, value, f"{prefix}{key}.")
        elif isinstance(value, list):
            values[key] = tuple(value)
        else:
            values[key] = value
    try:
        return cls(**values)
    except (TypeError, ValueError) as exc:
        raise UsageError(f"saved recipe: {prefix.rstrip('.') or 'recipe'}: {exc}") from None


def recipe_differences(a: Recipe, b: Recipe) -> Dict[str, Tuple[Any, Any]]:
    """Dotted fields whose values differ: {name: (a value, b value)}."""
    da, db = flatten(a), flatten(b)
    return {k: (da[k], db.get(k)) for k in da if da[k] != db.get(k)}


GTA_SPIN_FT = Recipe(
    name="gta-spin-ft",
    description=(
        "mmhuman3d configs/gta_human/spin/resnet50_spin_gta_ft.py as its code ran (3DPW 83.20 / 51.98): "
        "static fits, constant lr, no gradient clipping, OpenPose keypoints with detector confidences"
    ),
    init="spin_official",
    data=MixConfig(
        datasets=tuple(TRAIN_DATASETS),
        partition=(0.35, 0.15, 0.1, 0.1, 0.1, 0.2, 1.0),  # sum 2.0 -> GTA 50 % (docs/reproduction.md §6.5)
        fits_missing_ok=("gta",),
    ),
)

SPIN = Recipe(
    name="spin",
    description=(
        "mmhuman3d configs/spin/resnet50_spin_pw3d.py: SMPLify in the loop (fits updated, synchronised and "
        "saved with every checkpoint), lr 3e-5 /10 after epoch 3"
    ),
    init="imagenet",
    data=MixConfig(datasets=SPIN_DATASETS, partition=(0.35, 0.15, 0.1, 0.1, 0.1, 0.2), workers=1),
    optim=OptimConfig(batch_size=8, lr_schedule="step", lr_steps=(3,), sync_bn=True),
    registration=dataclasses.replace(RegistrationConfig(), mode="in_the_loop"),
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in (GTA_SPIN_FT, SPIN)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}", fix=f"use one of: {', '.join(RECIPES)}")
    return RECIPES[name]


# the dedicated CLI options and the recipe fields they set
CLI_FIELDS = {
    "epochs": "optim.epochs",
    "batch_size": "optim.batch_size",
    "lr": "optim.lr",
    "num_data": "optim.num_data",
    "workers": "data.workers",
}


def cli_override_values(
    recipe: Recipe, settings: Optional[Mapping[str, str]] = None, **direct: Optional[Any]
) -> Dict[str, Any]:
    """{dotted field: typed value} of what the command line set: `--set key=value` pairs, then the dedicated
    options of `CLI_FIELDS` (which win). A resumed run applies only these, never the recipe's defaults."""
    values = {k: parse_field_value(recipe, k, v) for k, v in (settings or {}).items()}
    values.update({CLI_FIELDS[k]: v for k, v in direct.items() if v is not None})
    return values


def apply_cli_overrides(
    recipe: Recipe, settings: Optional[Mapping[str, str]] = None, **direct: Optional[Any]
) -> Recipe:
    """The recipe after `--set key=value` pairs, then the dedicated options of `CLI_FIELDS` (which win)."""
    values = cli_override_values(recipe, settings, **direct)
    return recipe.override(values) if values else recipe


__all__ = [
    "GTA_SPIN_FT",
    "RECIPES",
    "SPIN",
    "Recipe",
    "apply_cli_overrides",
    "cli_override_values",
    "get_recipe",
    "recipe_differences",
    "recipe_from_dict",
]
