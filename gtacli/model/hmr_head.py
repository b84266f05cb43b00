"""HMR iterative regressor (docs/reproduction.md §4.2; same maths as SPIN's `hmr.py` and mmhuman3d's `HMRHead`).

Global-average-pooled features are concatenated with the current (pose 6D x24, betas, camera) estimate and
refined `HMR_ITERATIONS` times by a shared MLP, starting from the SMPL mean parameters (buffers, saved in the
state_dict as `init_pose`, `init_shape`, `init_cam`).
"""

from __future__ import annotations

from typing import Dict, Mapping

import numpy as np
import torch
from torch import nn

from gtacli.model.resnet import FEATURE_CHANNELS

NUM_JOINTS = 24
POSE_6D_DIM = NUM_JOINTS * 6  # 144
SHAPE_DIM = 10
CAM_DIM = 3
HIDDEN_DIM = 1024
HMR_ITERATIONS = 3
DROPOUT_P = 0.5
DECODER_INIT_GAIN = 0.01  # xavier_uniform gain on decpose/decshape/deccam (irrelevant once weights load)
MEAN_PARAM_KEYS = {"pose": (POSE_6D_DIM,), "shape": (SHAPE_DIM,), "cam": (CAM_DIM,)}


class HMRHead(nn.Module):
    """`forward(features (B,2048,h,w) or (B,2048)) -> {'pred_pose_6d' (B,144), 'pred_shape' (B,10), 'pred_cam' (B,3)}`.

    `mean_params` holds `pose` (144,), `shape` (10,), `cam` (3,) as in `smpl_mean_params.npz`; they are
    stored as float32 buffers (mmhuman3d uses them at their stored float32 dtype).
    """

    def __init__(
        self, mean_params: Mapping[str, np.ndarray], n_iter: int = HMR_ITERATIONS, init_weights: bool = True
    ):
        super().__init__()
        self.n_iter = n_iter
        in_dim = FEATURE_CHANNELS + POSE_6D_DIM + SHAPE_DIM + CAM_DIM  # 2205
        self.fc1 = nn.Linear(in_dim, HIDDEN_DIM)
        self.drop1 = nn.Dropout(p=DROPOUT_P)
        self.fc2 = nn.Linear(HIDDEN_DIM, HIDDEN_DIM)
        self.drop2 = nn.Dropout(p=DROPOUT_P)
        self.decpose = nn.Linear(HIDDEN_DIM, POSE_6D_DIM)
        self.decshape = nn.Linear(HIDDEN_DIM, SHAPE_DIM)
        self.deccam = nn.Linear(HIDDEN_DIM, CAM_DIM)
        if init_weights:
            for layer in (self.decpose, self.decshape, self.deccam):
                nn.init.xavier_uniform_(layer.weight, gain=DECODER_INIT_GAIN)
        self.register_buffer("init_pose", torch.zeros(1, POSE_6D_DIM))
        self.register_buffer("init_shape", torch.zeros(1, SHAPE_DIM))
        self.register_buffer("init_cam", torch.zeros(1, CAM_DIM))
        self.set_mean_params(mean_params)

    @torch.no_grad()
    def set_mean_params(self, mean_params: Mapping[str, np.ndarray]) -> None:
        """Copy `pose` (144,), `shape` (10,), `cam` (3,) into the float32 buffers `init_*`."""
        for key, shape in MEAN_PARAM_KEYS.items():
            value = np.asarray(mean_params[key], dtype=np.float32)
            if value.shape != shape:
                raise ValueError(f"mean parameter '{key}' has shape {value.shape}, expected {shape}")
            getattr(self, f"init_{key}").copy_(torch.from_numpy(value)[None])

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        # width then height, as mmhuman3d's HMRHead: a one-shot mean over both axes rounds differently
        x = features.mean(dim=-1).mean(dim=-1) if features.dim() == 4 else features  # (B,2048)
        batch = x.shape[0]
        pose = self.init_pose.expand(batch, -1).to(x.dtype)
        shape = self.init_shape.expand(batch, -1).to(x.dtype)
        cam = self.init_cam.expand(batch, -1).to(x.dtype)
        for _ in range(self.n_iter):
            xc = torch.cat([x, pose, shape, cam], dim=1)
            xc = self.drop2(self.fc2(self.drop1(self.fc1(xc))))
            pose = pose + self.decpose(xc)
            shape = shape + self.decshape(xc)
            cam = cam + self.deccam(xc)
        return {"pred_pose_6d": pose, "pred_shape": shape, "pred_cam": cam}
