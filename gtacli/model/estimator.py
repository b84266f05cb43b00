"""The estimator: ResNet-50 backbone + HMR head -> SMPL rotation matrices, betas, weak-perspective camera.

State-dict keys are `backbone.*` (torchvision names) and `head.*` (SPEC §5.1), so an mmhuman3d checkpoint's
`state_dict` (minus `body_model_*`) loads as is. Vertices and joints (SPEC §4.6) come from passing the
output through a body model (`gtacli.body.smpl.BodyModel`), see `predict_body`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Mapping, Union

import numpy as np
import torch
from torch import nn

from gtacli.errors import BadFileError
from gtacli.layout import DataLayout
from gtacli.model.hmr_head import MEAN_PARAM_KEYS, NUM_JOINTS, HMRHead
from gtacli.model.resnet import ResNet50

try:
    from gtacli.body.rotations import rot6d_to_rotmat
except ImportError:  # pragma: no cover - only while body/rotations.py is being written
    from gtacli.model._rot6d import rot6d_to_rotmat  # type: ignore[no-redef]


class HMREstimator(nn.Module):
    """`forward(img (B,3,224,224)) -> {'pred_pose' (B,24,3,3), 'pred_shape' (B,10), 'pred_cam' (B,3)}`."""

    def __init__(self, mean_params: Mapping[str, np.ndarray]):
        super().__init__()
        self.backbone = ResNet50()
        self.head = HMRHead(mean_params)

    def forward(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        out = self.head(self.backbone(img))
        batch = img.shape[0]
        rotmat = rot6d_to_rotmat(out["pred_pose_6d"].reshape(batch, NUM_JOINTS, 6)).reshape(batch, NUM_JOINTS, 3, 3)
        return {"pred_pose": rotmat, "pred_shape": out["pred_shape"], "pred_cam": out["pred_cam"]}


def load_mean_params(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """`smpl_mean_params.npz` -> {'pose' (144,), 'shape' (10,), 'cam' (3,)} float32 (restricted loading)."""
    from gtacli.io.safe import load_npz

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
    source: Union[DataLayout, str, Path, Mapping[str, Any]], device: Union[str, torch.device, None] = None
) -> HMREstimator:
    """An estimator whose mean-parameter buffers come from a DataLayout, a `smpl_mean_params.npz` path or a dict."""
    if isinstance(source, DataLayout):
        params = load_mean_params(source.smpl_mean_params)
    elif isinstance(source, (str, Path)):
        params = load_mean_params(source)
    else:
        params = {k: np.asarray(v, np.float32) for k, v in source.items()}
    model = HMREstimator(params)
    return model.to(device) if device is not None else model


def resolve_device(device: Union[str, torch.device, None] = "auto") -> torch.device:
    """'auto' -> CUDA when present, else CPU; anything else as torch understands it."""
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)
