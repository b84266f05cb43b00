"""What each test set is evaluated on, in the form mmhuman3d uses (docs/reproduction.md §8 for 3DPW).

* ``pw3d`` (the reproduction target): GT = gendered SMPL (`meta.gender` 'm' -> male, anything else -> female,
  as mmhuman3d) through `J_regressor_h36m`; prediction = neutral SMPL through the same regressor; pelvis =
  H36M joint 0 for both; the 14 LSP joints `H36M_TO_J14`; metres -> mm. Metrics MPJPE, PA-MPJPE, and PVE
  (decision 10: neutral predicted vs gendered GT vertices, both with their H36M pelvis at the origin) plus
  on request mmhuman3d's own `pve` (predicted vertices from the *GT-gender* model, no alignment) as
  `pve_mmhuman3d_mm` (`gtacli eval --mmhuman3d-pve`; one more SMPL pass per batch, so off by default).
  File: `pw3d_test.npz` (or `spin_pw3d_test.npz` only if it has `smpl` and `meta.gender`).
* ``h36m`` (protocol 2, mmhuman3d's `h36m_valid_protocol2.npz`: frontal camera, S9/S11): GT =
  `keypoints3d` of the file (HUMAN_DATA slots picked by H36M joint names, as mmhuman3d's
  `get_mapping('human_data', 'h36m')`; a file already holding 17 H36M joints is used as is); pelvis = joint 0;
  `H36M_TO_J14`; MPJPE and PA-MPJPE.
* ``mpi_inf_3dhp`` (mmhuman3d's `mpi_inf_3dhp_test.npz`, evaluated as mmhuman3d's HybrIK dataset does — its
  HumanImageDataset has no 3DHP branch): GT = the 17 `mpi_inf_3dhp_test` joints of `keypoints3d` reordered to
  H36M order (equivalently: picked by H36M joint name), all 17 joints, pelvis-centred; MPJPE, PA-MPJPE,
  3DPCK@150 mm and AUC over thresholds 0..150 mm (31 steps), in percent.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import numpy as np
import torch

from gtacli.body.conventions import (
    H36M_17,
    H36M_PELVIS,
    H36M_TO_J14,
    HUMAN_DATA_NUM_KEYPOINTS,
    SMPL_49,
    SMPL_49_TO_HUMAN_DATA,
)
from gtacli.errors import BadFileError, UsageError
from gtacli.layout import DataLayout

METRES_TO_MM = 1000.0
SMPL_GT_KEYS = ("betas", "body_pose", "global_orient")
# HUMAN_DATA slot of each H36M joint (by name; every H36M name is also an smpl_49 name).
H36M_HUMAN_DATA_SLOTS: Tuple[int, ...] = tuple(SMPL_49_TO_HUMAN_DATA[SMPL_49.index(n)] for n in H36M_17)


@dataclass(frozen=True)
class Protocol:
    name: str
    image_dataset: str  # folder under data/datasets/
    annotation_files: Tuple[str, ...]  # tried in order under preprocessed_datasets/
    gt_source: str  # "smpl_gendered" or "keypoints3d"
    eval_joints: Optional[Tuple[int, ...]]  # indices into the 17 H36M joints; None = all 17
    metrics: Tuple[str, ...]
    summary: str
    pelvis: int = H36M_PELVIS

    def describe(self) -> Dict[str, object]:
        return {
            "name": self.name,
            "gt": self.gt_source,
            "regressor": "J_regressor_h36m",
            "joints": "H36M_TO_J14" if self.eval_joints == H36M_TO_J14 else "H36M_17",
            "pelvis": f"H36M joint {self.pelvis}",
            "metrics": list(self.metrics),
            "summary": self.summary,
        }


PROTOCOLS: Dict[str, Protocol] = {
    "pw3d": Protocol(
        name="pw3d",
        image_dataset="pw3d",
        annotation_files=("pw3d_test.npz", "spin_pw3d_test.npz"),
        gt_source="smpl_gendered",
        eval_joints=H36M_TO_J14,
        metrics=("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"),
        summary="gendered SMPL GT, J_regressor_h36m, 14 LSP joints, pelvis = H36M joint 0, mm (docs/reproduction.md §8)",
    ),
    "h36m": Protocol(
        name="h36m",
        image_dataset="h36m",
        annotation_files=("h36m_valid_protocol2.npz",),
        gt_source="keypoints3d",
        eval_joints=H36M_TO_J14,
        metrics=("mpjpe_mm", "pa_mpjpe_mm"),
        summary="Human3.6M protocol 2: keypoints3d GT (H36M 17 -> 14 LSP joints), pelvis = joint 0, mm",
    ),
    "mpi_inf_3dhp": Protocol(
        name="mpi_inf_3dhp",
        image_dataset="mpi_inf_3dhp",
        annotation_files=("mpi_inf_3dhp_test.npz",),
        gt_source="keypoints3d",
        eval_joints=None,
        metrics=("mpjpe_mm", "pa_mpjpe_mm", "pck_150mm", "auc"),
        summary="MPI-INF-3DHP test: keypoints3d GT (17 joints, H36M order), pelvis = joint 0, PCK@150mm, AUC",
    ),
}


# Other spellings accepted for `--dataset` (3DPW's own name starts with a digit, so its key is "pw3d").
DATASET_ALIASES: Dict[str, str] = {"3dpw": "pw3d"}


def protocol_named(name: str) -> Protocol:
    """The protocol of a `--dataset` value (case-insensitive; aliases allowed); unknown names are a `UsageError`."""
    key = DATASET_ALIASES.get(str(name).strip().lower(), str(name).strip().lower())
    if key not in PROTOCOLS:
        raise UsageError(
            f"--dataset {name!r} is not a test set gtacli evaluates",
            fix=f"use one of: {', '.join(PROTOCOLS)}",
        )
    return PROTOCOLS[key]


def annotation_path(layout: DataLayout, protocol: Protocol) -> Path:
    """The first existing annotation file of the protocol (pw3d: `DataLayout.annotation('pw3d')`)."""
    if protocol.name == "pw3d":
        return layout.annotation("pw3d")
    for name in protocol.annotation_files:
        if (layout.preprocessed / name).exists():
            return layout.preprocessed / name
    return layout.preprocessed / protocol.annotation_files[0]


def check_annotation(human_data, protocol: Protocol, path: Path) -> None:
    """Refuse, with one line, a file that cannot give this protocol's ground truth."""
    if len(human_data) == 0:
        raise BadFileError("the annotation file has no frames", path=path)
    for key in ("image_path", "bbox_xywh"):
        if key not in human_data:
            raise BadFileError(
                f"the annotation has no '{key}'", path=path, fix="use mmhuman3d's preprocessed file"
            )
    if protocol.gt_source == "smpl_gendered":
        smpl = human_data.smpl() if "smpl" in human_data else {}
        missing = [k for k in SMPL_GT_KEYS if k not in smpl]
        if missing:
            raise BadFileError(
                f"the annotation has no SMPL ground truth ('smpl' with {', '.join(SMPL_GT_KEYS)}; missing: "
                f"{', '.join(missing)})",
                path=path,
                fix="use mmhuman3d's pw3d_test.npz (gtacli fetch pw3d_test) — spin_pw3d_test.npz lacks SMPL",
            )
        if "gender" not in human_data.meta():
            raise BadFileError(
                "the annotation has no meta.gender, needed for the gendered SMPL ground truth",
                path=path,
                fix="use mmhuman3d's pw3d_test.npz (gtacli fetch pw3d_test)",
            )
    else:
        if "keypoints3d" not in human_data:
            raise BadFileError(
                "the annotation has no keypoints3d ground truth",
                path=path,
                fix=f"use mmhuman3d's {protocol.annotation_files[0]}",
            )


def gt_keypoints_h36m(keypoints3d: np.ndarray, path: Optional[Path] = None) -> np.ndarray:
    """(N,K,≥3) keypoints3d -> (N,17,3) in H36M order: K=190 (HUMAN_DATA) by joint names, K=17 as is."""
    kp = np.asarray(keypoints3d)
    if kp.shape[-2] == len(H36M_17):
        return kp[..., :3]
    if kp.shape[-2] == HUMAN_DATA_NUM_KEYPOINTS:
        return kp[..., list(H36M_HUMAN_DATA_SLOTS), :3]
    raise BadFileError(
        f"keypoints3d has {kp.shape[-2]} joints; expected 190 (human_data) or 17 (h36m)",
        path=path,
    )


def eval_joints(joints_h36m: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """(B,17,3) metres -> (B,J,3) mm, pelvis (H36M joint 0) at the origin, protocol's joint subset, float64."""
    joints = joints_h36m.to(torch.float64)
    centred = (joints - joints[:, protocol.pelvis : protocol.pelvis + 1]) * METRES_TO_MM
    if protocol.eval_joints is not None:
        centred = centred[:, list(protocol.eval_joints)]
    return centred


def gendered_names(genders) -> list:
    """mmhuman3d's rule: 'm' -> male, anything else -> female."""
    return ["male" if str(g) == "m" else "female" for g in genders]
