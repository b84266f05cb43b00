"""The estimator: ResNet-50 backbone + HMR head -> SMPL rotation matrices, betas, weak-perspective camera.

State-dict keys are `backbone.*` (torchvision names) and `head.*` (docs/reproduction.md §5.1), so an mmhuman3d checkpoint's
`state_dict` (minus `body_model_*`) loads as is. Vertices and joints (docs/reproduction.md §4.6) come from passing the
output through a body model (`gtacli.body.smpl.BodyModel`), see `predict_body`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Dict, Iterator, Mapping, Union

import numpy as np
import torch
from torch import nn

from gtacli.body.rotations import rot6d_to_rotmat
from gtacli.errors import BadFileError
from gtacli.io.safe import load_npz
from gtacli.layout import DataLayout
from gtacli.model.hmr_head import MEAN_PARAM_KEYS, NUM_JOINTS, HMRHead
from gtacli.model.resnet import ResNet50


class HMREstimator(nn.Module):
    """`forward(img (B,3,224,224)) -> {'pred_pose' (B,24,3,3), 'pred_shape' (B,10), 'pred_cam' (B,3)}`."""

    def __init__(self, mean_params: Mapping[str, np.ndarray], init_weights: bool = True):
        super().__init__()
        self.backbone = ResNet50(init_weights=init_weights)
        self.head = HMRHead(mean_params, init_weights=init_weights)

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.head(self.backbone(img))
        batch = img.shape[0]
        rotmat = rot6d_to_rotmat(out["pred_pose_6d"].reshape(batch, NUM_JOINTS, 6)).reshape(
            batch, NUM_JOINTS, 3, 3
        )
        return {"pred_pose": rotmat, "pred_shape": out["pred_shape"], "pred_cam": out["pred_cam"]}


def load_mean_params(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """`smpl_mean_params.npz` -> {'pose' (144,), 'shape' (10,), 'cam' (3,)} float32 (restricted loading)."""
    npz = load_npz(path)
    params: Dict[str, np.ndarray] = {}
    for key, shape in MEAN_PARAM_KEYS.items():
        if key not in npz:
            raise BadFileError(
                f"missing array '{key}' (a SMPL mean-parameter file has pose, shape, cam)",
                path=path,
                fix="download smpl_mean_params.npz again (gtacli fetch smpl_mean_params)",
            )
        value = np.asarray(npz[key])
        if value.shape != shape:
            raise BadFileError(f"array '{key}' has shape {value.shape}, expected {shape}", path=path)
        params[key] = value.astype(np.float32)
    return params


def build_estimator(
    source: Union[DataLayout, str, Path, Mapping[str, Any]],
    device: Union[str, torch.device, None] = None,
    *,
    init_weights: bool = True,
) -> HMREstimator:
    """An estimator whose mean-parameter buffers come from a DataLayout, a `smpl_mean_params.npz` path or a dict.

    `init_weights=False` only allocates the weights (uninitialised memory, BatchNorm counters zero): for a
    caller that loads a complete checkpoint right after, it skips the (slow, wasted) random initialisation.
    """
    if isinstance(source, DataLayout):
        params = load_mean_params(source.smpl_mean_params)
    elif isinstance(source, (str, Path)):
        params = load_mean_params(source)
    else:
        params = {k: np.asarray(v, np.float32) for k, v in source.items()}
    if init_weights:
        model = HMREstimator(params)
    else:
        with _no_random_init():
            model = HMREstimator(params, init_weights=False)
    return model.to(device) if device is not None else model


@contextlib.contextmanager
def _no_random_init() -> Iterator[None]:
    """Conv/Linear layers built inside keep torch.empty weights (their default random init is skipped).
    (A 'meta' device build would do the same but costs seconds of one-off imports in a fresh process.)"""
    saved = {cls: cls.reset_parameters for cls in (nn.Conv2d, nn.Linear)}
    try:
        for cls in saved:
            cls.reset_parameters = _no_reset  # type: ignore[method-assign]
        yield
    finally:
        for cls, method in saved.items():
            cls.reset_parameters = method  # type: ignore[method-assign]


def _no_reset(self: nn.Module) -> None:
    return None
