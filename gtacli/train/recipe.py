"""Training recipes: every number of docs/reproduction.md §6–7 in one typed object.

Two recipes are defined:

* ``gta-spin-ft`` (default of `gtacli finetune`): `configs/gta_human/spin/resnet50_spin_gta_ft.py` as
  mmhuman3d's code actually ran it (docs/reproduction.md decision 3–4, §6, §7.2): seven datasets mixed 50 % GTA,
  100,000 draws per epoch, 10 epochs, batch 32 per GPU, two Adams at a constant 3e-5, no gradient clipping,
  static fits read-only.
* ``spin`` (default of `gtacli train`): `configs/spin/resnet50_spin_pw3d.py` (docs/reproduction.md §7.4): six datasets, the
  SMPLify fitter in the loop, batch 8 per GPU, lr 3e-5 divided by 10 after epoch 3, SyncBN on CUDA.

A recipe is printed at the start of a run and saved in the run directory (`recipe.json`); the CLI overrides
fields with `--epochs/--batch-size/--lr/--num-data` and a generic `--set key=value` (type-checked here).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional, Tuple

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES
from gtacli.data.crop import NORM_MEAN_RGB, NORM_STD_RGB
from gtacli.errors import UsageError

# docs/reproduction.md §1.1 table order (mmhuman3d `data.train.configs`).
SPIN_DATASETS: Tuple[str, ...] = ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco")
GTA_SPIN_FT_DATASETS: Tuple[str, ...] = SPIN_DATASETS + ("gta",)


@dataclass(frozen=True)
class Recipe:
    """One training recipe. Units: lr per step, angles in degrees, image sizes in pixels, focal in pixels."""

    name: str
    description: str
    init: str  # what `--init` defaults to: 'spin_official' (a layout file), 'imagenet' or 'none'

    # data and sampling (docs/reproduction.md §6.5, "Product decisions" 4)
    datasets: Tuple[str, ...]
    partition: Tuple[float, ...]  # normalised by its sum at sampling time
    num_data: int = 100_000  # draws per epoch across all ranks
    epochs: int = 10
    batch_size: int = 32  # per GPU / per process
    workers: int = 2  # data-loader workers per process (mmhuman3d workers_per_gpu)
    prefetch_factor: int = 2

    # optimisation (docs/reproduction.md §6.4): two Adams (backbone, head)
    lr: float = 3e-5
    adam_beta1: float = 0.9
    adam_beta2: float = 0.999
    adam_eps: float = 1e-8
    weight_decay: float = 0.0
    lr_schedule: str = "fixed"  # 'fixed' | 'step'
    lr_steps: Tuple[int, ...] = ()  # epochs after which lr *= lr_gamma (step schedule)
    lr_gamma: float = 0.1
    grad_clip: bool = (
        False  # published run: off (docs/reproduction.md §10.1.2); the config's stated value below
    )
    grad_clip_max_norm: float = 35.0
    grad_clip_norm_type: float = 2.0
    # mixed precision on CUDA (ignored on CPU). Off by default: mmhuman3d's configs train in float32 (no fp16
    # section), and reduced precision changes the numbers; `--set amp=true` trades that for speed.
    amp: bool = False

    # losses (docs/reproduction.md §6.2)
    loss_keypoints3d_weight: float = 100.0
    loss_keypoints2d_weight: float = 10.0
    loss_vertex_weight: float = 2.0
    loss_smpl_pose_weight: float = 3.0
    loss_smpl_betas_weight: float = 0.02
    loss_camera_weight: float = 60.0
    camera_prior_scale: float = 10.0
    smooth_l1_beta: float = 1.0
    pelvis_joints: Tuple[int, int] = (27, 28)  # smpl_49 right/left hip (LSP) -> training pelvis
    openpose_confidence: str = (
        "detector"  # 'detector' (what ran) | 'zero' (the config's dead keypoint_weight)
    )
    num_openpose_keypoints: int = 25  # smpl_49 indices 0..24

    # augmentation (docs/reproduction.md §6.6)
    noise_factor: float = 0.4  # channel gains ~ U[1-f, 1+f]
    flip_prob: float = 0.5
    rot_factor: float = 30.0  # degrees, r = clip(N(0,1)*f, -2f, 2f)
    rot_prob: float = 0.6
    scale_factor: float = 0.25  # s = clip(N(0,1)*f + 1, 1-f, 1+f)
    img_res: int = IMG_RES
    img_norm_mean: Tuple[float, float, float] = NORM_MEAN_RGB  # RGB, 0..255 (the eval crop's constants)
    img_norm_std: Tuple[float, float, float] = NORM_STD_RGB

    # camera (docs/reproduction.md §4.4)
    focal_length: float = FOCAL_LENGTH

    # registration and fits (docs/reproduction.md §7)
    registration_mode: str = "static"  # 'static' | 'in_the_loop'
    registration_threshold: float = 10.0
    fits_missing_ok: Tuple[str, ...] = ("gta",)  # every sample has GT SMPL: fits never read (decision 3)
    # SMPLify in the loop (used by registration_mode 'in_the_loop' only): Adam, two stages (docs/reproduction.md §7.4)
    smplify_iters_per_stage: int = 50
    smplify_lr: float = 1e-2
    smplify_ftol: float = 1e-4

    # model behaviour in training
    bn_eval: bool = False  # True freezes BatchNorm statistics (eval mode); published: train mode
    dropout: bool = True  # False switches the head's dropout off (for exact comparisons)
    sync_bn: bool = False  # SyncBatchNorm across GPUs (CUDA DDP only)

    # run bookkeeping
    log_interval: int = 50  # steps between JSONL/TensorBoard records
    eval_each_epoch: bool = True  # 3DPW eval after each epoch when its files exist

    def to_dict(self) -> Dict[str, Any]:
        return {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @property
    def normalized_partition(self) -> Tuple[float, ...]:
        total = float(sum(self.partition))
        return tuple(p / total for p in self.partition)

    def override(self, **values: Any) -> Recipe:
        """A copy with some fields replaced (values already typed); validates the result."""
        unknown = [k for k in values if k not in _FIELDS]
        if unknown:
            raise UsageError(
                f"unknown recipe field(s): {', '.join(unknown)}",
                fix="see `recipe.json` of a run for field names",
            )
        new = dataclasses.replace(self, **values)
        new.validate()
        return new

    def with_settings(self, settings: Mapping[str, str]) -> Recipe:
        """Apply `--set key=value` strings, converting each to the field's type (UsageError when it cannot)."""
        return self.override(**{k: parse_field_value(k, v) for k, v in settings.items()})

    def validate(self) -> None:
        def bad(message: str) -> UsageError:
            return UsageError(f"recipe {self.name}: {message}")

        if len(self.datasets) != len(self.partition) or not self.datasets:
            raise bad(f"{len(self.datasets)} datasets but {len(self.partition)} partition values")
        if any(p < 0 for p in self.partition) or sum(self.partition) <= 0:
            raise bad("partition values must be >= 0 with a positive sum")
        for name, value in (
            ("num_data", self.num_data),
            ("epochs", self.epochs),
            ("batch_size", self.batch_size),
        ):
            if value < 1:
                raise bad(f"{name} must be >= 1 (got {value})")
        if self.workers < 0:
            raise bad("workers must be >= 0")
        if self.lr <= 0:
            raise bad(f"lr must be > 0 (got {self.lr})")
        if self.lr_schedule not in ("fixed", "step"):
            raise bad(f"lr_schedule must be 'fixed' or 'step' (got {self.lr_schedule!r})")
        if self.registration_mode not in ("static", "in_the_loop"):
            raise bad(f"registration_mode must be 'static' or 'in_the_loop' (got {self.registration_mode!r})")
        if self.openpose_confidence not in ("detector", "zero"):
            raise bad(f"openpose_confidence must be 'detector' or 'zero' (got {self.openpose_confidence!r})")
        if not 0 <= self.flip_prob <= 1 or not 0 <= self.rot_prob <= 1:
            raise bad("flip_prob and rot_prob must be in [0, 1]")
        if self.img_res < 8:
            raise bad("img_res must be >= 8")


_FIELDS = {f.name: f for f in dataclasses.fields(Recipe)}


def _jsonable(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


def _field_kind(name: str) -> str:
    """'bool' | 'int' | 'float' | 'str' | 'tuple[int]' | 'tuple[float]' | 'tuple[str]' from the annotation text."""
    annotation = str(_FIELDS[name].type).replace("typing.", "")
    for kind in ("bool", "int", "float", "str"):
        if annotation == kind:
            return kind
    if annotation.startswith("Tuple["):
        inner = annotation[len("Tuple[") :].split(",")[0].strip(" ]")
        return f"tuple[{inner}]"
    raise TypeError(f"recipe field {name} has an unsupported type {annotation}")  # pragma: no cover


def parse_field_value(name: str, text: str) -> Any:
    """Convert `--set name=text` to the field's type: `true/false`, numbers, comma-separated tuples."""
    if name not in _FIELDS:
        close = [f for f in _FIELDS if name.split("_")[0] in f][:5]
        raise UsageError(
            f"--set {name}: no such recipe field",
            fix=f"use one of the fields in recipe.json{' (e.g. ' + ', '.join(close) + ')' if close else ''}",
        )
    kind = _field_kind(name)
    try:
        if kind.startswith("tuple["):
            inner = kind[6:-1]
            parts = [p.strip() for p in text.strip("()[] ").split(",") if p.strip()]
            return tuple(_scalar(inner, p) for p in parts)
        return _scalar(kind, text.strip())
    except ValueError:
        raise UsageError(
            f"--set {name}={text}: not a valid {kind}", fix=f"give {name} a {kind} value"
        ) from None


def _scalar(kind: str, text: str) -> Any:
    if kind == "bool":
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise ValueError(text)
    if kind == "int":
        return int(text)
    if kind == "float":
        return float(text)
    return text


GTA_SPIN_FT = Recipe(
    name="gta-spin-ft",
    description=(
        "mmhuman3d configs/gta_human/spin/resnet50_spin_gta_ft.py as its code ran (3DPW 83.20 / 51.98): "
        "static fits, constant lr, no gradient clipping, OpenPose keypoints with detector confidences"
    ),
    init="spin_official",
    datasets=GTA_SPIN_FT_DATASETS,
    partition=(0.35, 0.15, 0.1, 0.1, 0.1, 0.2, 1.0),  # sum 2.0 -> GTA 50 % (docs/reproduction.md §6.5)
)

SPIN = Recipe(
    name="spin",
    description=(
        "mmhuman3d configs/spin/resnet50_spin_pw3d.py: SMPLify in the loop (fits updated, synchronised and "
        "saved with every checkpoint), lr 3e-5 /10 after epoch 3"
    ),
    init="imagenet",
    datasets=SPIN_DATASETS,
    partition=(0.35, 0.15, 0.1, 0.1, 0.1, 0.2),
    batch_size=8,
    workers=1,
    lr_schedule="step",
    lr_steps=(3,),
    registration_mode="in_the_loop",
    fits_missing_ok=(),
    sync_bn=True,
)

RECIPES: Dict[str, Recipe] = {r.name: r for r in (GTA_SPIN_FT, SPIN)}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise UsageError(f"unknown recipe {name!r}", fix=f"use one of: {', '.join(RECIPES)}")
    return RECIPES[name]


def recipe_from_dict(data: Mapping[str, Any]) -> Recipe:
    """Rebuild a recipe saved by `to_dict` (e.g. from a checkpoint); unknown keys are refused."""
    values: Dict[str, Any] = {}
    for key, value in data.items():
        if key not in _FIELDS:
            raise UsageError(f"saved recipe has an unknown field {key!r}")
        values[key] = tuple(value) if isinstance(value, list) else value
    recipe = Recipe(**values)
    recipe.validate()
    return recipe


def recipe_differences(a: Recipe, b: Recipe) -> Dict[str, Tuple[Any, Any]]:
    """Fields whose values differ: {name: (a value, b value)}."""
    da, db = a.to_dict(), b.to_dict()
    return {k: (da[k], db[k]) for k in da if da[k] != db[k]}


def apply_cli_overrides(
    recipe: Recipe,
    *,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    lr: Optional[float] = None,
    num_data: Optional[int] = None,
    workers: Optional[int] = None,
    settings: Optional[Mapping[str, str]] = None,
) -> Recipe:
    """The recipe after `--set key=value` pairs, then the dedicated options (which win)."""
    if settings:
        recipe = recipe.with_settings(settings)
    direct = {
        k: v
        for k, v in (
            ("epochs", epochs),
            ("batch_size", batch_size),
            ("lr", lr),
            ("num_data", num_data),
            ("workers", workers),
        )
        if v is not None
    }
    return recipe.override(**direct) if direct else recipe


__all__ = [
    "GTA_SPIN_FT",
    "RECIPES",
    "SPIN",
    "Recipe",
    "apply_cli_overrides",
    "get_recipe",
    "parse_field_value",
    "recipe_differences",
    "recipe_from_dict",
]
