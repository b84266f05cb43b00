"""What a run reads, checked before anything is written: data files, `--init` weights, the registrant."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from gtacli.errors import MissingFileError
from gtacli.fit.registration import Registrant
from gtacli.layout import DataLayout
from gtacli.model.estimator import HMREstimator, build_estimator
from gtacli.model.loading import load_estimator
from gtacli.train.recipe import Recipe

# torchvision's ImageNet ResNet-50 (ResNet50_Weights.IMAGENET1K_V1) file, expected under the data root for
# `--init imagenet` (nothing is downloaded by training).
IMAGENET_WEIGHTS = Path("pretrained_models") / "resnet50-0676ba61.pth"


def in_the_loop(recipe: Recipe) -> bool:
    return recipe.registration.mode == "in_the_loop"


def check_inputs(layout: DataLayout, recipe: Recipe, command: str) -> None:
    """Every file the recipe reads exists (else one MissingFileError naming them, pointing to check-layout)."""
    data = recipe.data
    needed: List[Path] = [layout.smpl_model("neutral"), layout.j_regressor_extra, layout.smpl_mean_params]
    needed += [layout.annotation(ds) for ds in data.datasets]
    needed += [layout.static_fits(ds) for ds in data.datasets if ds not in data.fits_missing_ok]
    if in_the_loop(recipe):
        needed.append(layout.gmm_prior)
    missing = [p for p in needed if not p.exists()]
    if missing:
        names = ", ".join(
            str(p.relative_to(layout.root)) if p.is_relative_to(layout.root) else str(p) for p in missing[:4]
        )
        more = f" and {len(missing) - 4} more" if len(missing) > 4 else ""
        raise MissingFileError(
            f"recipe {recipe.name} needs {names}{more}",
            path=layout.root,
            fix=f"run `gtacli check-layout --for {command}` to see what to fetch or build",
        )


def resolve_init(init: Optional[str], layout: DataLayout) -> Optional[Path]:
    """The weights file of `--init` ('spin_official', 'imagenet', a path; None for 'none')."""
    if init in ("none", ""):
        return None
    if init == "spin_official":
        path = layout.spin_official
    elif init == "imagenet":
        path = layout.root / IMAGENET_WEIGHTS
    else:
        path = Path(str(init))
    if not path.is_file():
        if init == "imagenet":
            fix = (
                "run `gtacli fetch resnet50_imagenet` (torchvision's ImageNet ResNet-50), or pass --init PATH"
            )
            if layout.is_synthetic:  # the sample tree ships no ImageNet weights (size budget)
                fix += f" (on this synthetic tree: --init {layout.spin_official} or --init none)"
        else:
            fix = "run `gtacli fetch spin_official` or pass --init PATH"
        raise MissingFileError("--init weights not found", path=path, fix=fix)
    return path


def build_initial_model(
    init: Optional[str], command: str, layout: DataLayout, device: torch.device
) -> Tuple[HMREstimator, Dict[str, Any]]:
    """The model a new run starts from, and what it was loaded from.

    `finetune` needs the whole ResNet-50 + HMR model from the file; `train` needs its backbone (an ImageNet
    ResNet-50 is the normal start). Weights holding NaN/inf are refused (`load_estimator`'s policy)."""
    path = resolve_init(init, layout)
    if path is None:
        return build_estimator(layout).to(device), {}
    require = "model" if command == "finetune" else "backbone"
    model, report = load_estimator(path, layout, device, require=require, inference=False)
    info = {"path": str(path), "format": report.source_format, "loaded": len(report.loaded)}
    return model, info


def build_registrant(body_model: Any, fits: Any, recipe: Recipe, layout: DataLayout) -> Registrant:
    """The registrant with the recipe's registration settings (the GMM prior only in the loop)."""
    gmm = layout.gmm_prior if in_the_loop(recipe) else None
    return Registrant(body_model, fits, recipe.registration, gmm_path=gmm)
