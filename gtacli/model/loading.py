"""The one way to build an estimator from a checkpoint file, with one policy for missing weights.

Every command that turns a `.pth` into a model (eval, demo, `fit --init CKPT`, finetune/train `--init`, the
after-epoch evaluation) calls `load_estimator`. The policy, by what the caller needs from the file:

* ``require="model"`` (inference and fine-tuning): every backbone and head weight must come from the file.
  The head's mean-parameter buffers (`head.init_pose/shape/cam`) may come from the file or, when the file
  lacks them (some SPIN exports), from `smpl_mean_params.npz`; missing from both is refused.
* ``require="backbone"`` (training from ImageNet): every backbone weight must come from the file; the head
  starts from its random initialisation and the mean parameters (so `smpl_mean_params.npz` is needed).

BatchNorm `num_batches_tracked` counters never count as missing. A file whose weights hold NaN or inf is
refused (a model that predicts NaN everywhere is never what the user wants). Unexpected keys are reported
in `LoadReport.unexpected`, never fatal (a newer gtacli may add a buffer); the SMPL buffers of mmhuman3d
files are `ignored`, and non-tensor entries (SPIN's optimiser state) are skipped.

`inference=True` also puts the model in the fastest exact form for its device: BatchNorms folded into the
convolutions (`gtacli.model.fold`) and channels-last weights on CPU and CUDA (`gtacli.model.memory_format`);
both change outputs by float32 rounding only. It also applies the thread count of GTACLI_THREADS (or of an
earlier `--threads`, `gtacli.device.configure_threads`), so every command that loads a model for inference
honours it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Tuple, Union

import numpy as np
import torch

from gtacli.device import DeviceLike, configure_threads, resolve_device
from gtacli.errors import BadFileError, MissingFileError, PathLike
from gtacli.layout import DataLayout
from gtacli.model.checkpoint import LoadReport, load_weights
from gtacli.model.estimator import HMREstimator, build_estimator, load_mean_params
from gtacli.model.fold import fold_batchnorm
from gtacli.model.hmr_head import CAM_DIM, POSE_6D_DIM, SHAPE_DIM
from gtacli.model.memory_format import NCHW, inference_memory_format, set_memory_format

REQUIREMENTS = ("model", "backbone")
MEAN_PARAM_BUFFERS = ("head.init_pose", "head.init_shape", "head.init_cam")
CHECKPOINT_FIX = "pass a ResNet-50 HMR checkpoint (mmhuman3d, SPIN or gtacli), e.g. spin_official.pth"

MeanParamsSource = Union[DataLayout, str, Path, Mapping[str, Any], None]


def load_estimator(
    checkpoint: PathLike,
    mean_params: MeanParamsSource,
    device: DeviceLike = "auto",
    *,
    require: str = "model",
    inference: bool = True,
    memory_format: Optional[torch.memory_format] = None,
    fold: Optional[bool] = None,
) -> Tuple[HMREstimator, LoadReport]:
    """(estimator on `device`, load report). `inference=True` returns it in eval mode without gradients, in
    `memory_format` (default: `inference_memory_format(device)`, channels-last on CPU and CUDA); otherwise
    (training) in `memory_format` or, by default, NCHW as the published recipe runs it. `fold` (default:
    `inference`) folds the BatchNorms into the convolutions; `memory_format=NCHW, fold=False` with
    `inference=True` gives the plain float32 network as SPIN and mmhuman3d run it.

    `mean_params` is a `DataLayout` (its `smpl_mean_params.npz`, when present), a path to that file, a dict
    {'pose','shape','cam'}, or None (then the checkpoint must carry the head's mean-parameter buffers).
    """
    if require not in REQUIREMENTS:
        raise ValueError(f"require must be one of {REQUIREMENTS}, got {require!r}")
    path = Path(checkpoint)
    if not path.is_file():
        raise MissingFileError("checkpoint not found", path=path, fix=CHECKPOINT_FIX)
    dev = resolve_device(device)
    params = _mean_params(mean_params)
    if params is None and require == "backbone":
        raise MissingFileError(
            "smpl_mean_params.npz is needed to start the HMR head from the mean body",
            path=mean_params if isinstance(mean_params, (str, Path)) else None,
            fix="run `gtacli fetch smpl_mean_params`",
        )
    placeholder = params is None
    if placeholder:  # the checkpoint must bring head.init_*; zeros are only placeholders, checked below
        params = {"pose": np.zeros(POSE_6D_DIM), "shape": np.zeros(SHAPE_DIM), "cam": np.zeros(CAM_DIM)}
    # A complete load overwrites every weight, so random initialisation (~0.5 s) is skipped for it.
    model = build_estimator(params, init_weights=(require != "model"))
    report = load_weights(model, path)
    _check_required(report, path, require, mean_params_available=not placeholder)
    _check_finite(model, report, path)
    if memory_format is None:
        memory_format = inference_memory_format(dev) if inference else NCHW
    if inference:
        configure_threads(None)
        model.eval()
        model.requires_grad_(False)
    if fold is None:
        fold = inference
    if fold:
        fold_batchnorm(model)
    model = set_memory_format(model.to(dev), memory_format)
    return model, report


def _mean_params(source: MeanParamsSource) -> Optional[Mapping[str, Any]]:
    if source is None:
        return None
    if isinstance(source, DataLayout):
        return load_mean_params(source.smpl_mean_params) if source.smpl_mean_params.is_file() else None
    if isinstance(source, (str, Path)):
        return load_mean_params(source) if Path(source).is_file() else None
    return source


def _check_required(report: LoadReport, path: Path, require: str, *, mean_params_available: bool) -> None:
    missing = report.significant_missing
    if mean_params_available:  # the mean-parameter buffers were filled from smpl_mean_params.npz
        missing = [k for k in missing if k not in MEAN_PARAM_BUFFERS]
    if require == "backbone":
        missing = [k for k in missing if k.startswith("backbone.")]
        what = "the ResNet-50 backbone"
    else:
        what = "the ResNet-50 + HMR model"
    if not missing:
        return
    parts = sorted({".".join(k.split(".")[:2]) for k in missing})
    hint = ""
    if all(k in MEAN_PARAM_BUFFERS for k in missing):
        hint = " (the head's mean parameters: run `gtacli fetch smpl_mean_params`)"
    raise BadFileError(
        f"a {report.source_format or 'state_dict'} checkpoint without {len(missing)} tensors of {what} "
        f"({', '.join(parts[:3])}{', ...' if len(parts) > 3 else ''}){hint}",
        path=path,
        fix=CHECKPOINT_FIX,
    )


def _check_finite(model: torch.nn.Module, report: LoadReport, path: Path) -> None:
    loaded = set(report.loaded)
    # a sum is NaN/inf when any element is (or, harmlessly, on overflow): one cheap reduction per tensor,
    # the element-wise test only for the tensors it flags
    bad = [
        name
        for name, tensor in model.state_dict().items()
        if name in loaded
        and tensor.is_floating_point()
        and not bool(torch.isfinite(tensor.sum()))
        and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        raise BadFileError(
            f"{len(bad)} weight tensors hold NaN or inf (first: {bad[0]}); the model would predict nothing useful",
            path=path,
            fix="use an earlier checkpoint of the run, or download the file again",
        )
