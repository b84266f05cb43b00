"""SMPL body models through smplx, with the joint sets the pipeline needs (docs/reproduction.md §3.1-3.4, §4.5).

`BodyModel` wraps `smplx.SMPL` built from arrays we loaded ourselves (restricted unpickling: smplx is never
allowed to unpickle a file) and adds mmhuman3d's outputs:

* `joints54`: SMPL's 24 kinematic joints, smplx's 21 vertex joints, then `J_regressor_extra @ vertices` (9);
* `joints`: the smpl_49 selection of those 54 (docs/reproduction.md §3.2 approximate mapping = SPIN's JOINT_MAP);
* `joints_h36m`: `J_regressor_h36m @ vertices` (17), the evaluation joints.

No translation is applied: meshes live in the SMPL root frame, as in training and evaluation.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

import numpy as np
import smplx
import torch
from smplx.utils import Struct
from torch import nn

from gtacli.body.conventions import SMPL_54_TO_SMPL_49
from gtacli.errors import BadFileError, PathLike
from gtacli.io.legacy_pickle import loads_smpl_pickle
from gtacli.io.safe import load_npy, read_bytes

NUM_VERTICES = 6890
NUM_FACES = 13776
NUM_BETAS = 10
NUM_BODY_JOINTS = 23
NUM_EXTRA_JOINTS = 9
NUM_H36M_JOINTS = 17

# What each array of an SMPL pickle must look like: key -> shape with None for "any" (V = vertices).
_REQUIRED_SHAPES: Dict[str, tuple] = {
    "v_template": ("V", 3),
    "f": (None, 3),
    "shapedirs": ("V", 3, None),
    "posedirs": ("V", 3, 207),
    "J_regressor": (24, "V"),
    "weights": ("V", 24),
    "kintree_table": (2, 24),
}
# Gender spellings: words, letters and the codes of mmhuman3d's GenderedSMPL (docs/reproduction.md §4.5, §8):
# -1 neutral, 0 male, 1 female.
_GENDER_ALIASES = {
    "n": "neutral", "neutral": "neutral", "-1": "neutral",
    "m": "male", "male": "male", "0": "male",
    "f": "female", "female": "female", "1": "female",
}  # fmt: skip


def load_smpl_arrays(path: PathLike) -> Dict[str, np.ndarray]:
    """Read an SMPL model pickle: plain numpy (our importer, the synthetic generator) or the official file as
    mmhuman3d users keep it (v1.0.0 / v1.1.0 / SMPLify neutral renamed to `SMPL_<GENDER>.pkl`, with chumpy
    objects and scipy sparse regressors) through `gtacli.io.legacy_pickle`'s stand-ins: nothing in the file is
    executed and a pickle that references anything else is refused. Checks the keys and shapes smplx needs.
    Returns a dict of numpy arrays (extra keys are kept).
    """
    path = Path(path)
    data = loads_smpl_pickle(read_bytes(path), path)
    if not isinstance(data, dict):
        raise BadFileError(f"expected a dict of arrays, found {type(data).__name__}", path=path)
    arrays = {str(key): value for key, value in data.items()}
    check_smpl_arrays(arrays, path)
    return arrays


def check_smpl_arrays(
    model: Any, path: Optional[PathLike], *, num_vertices: Optional[int] = None
) -> Dict[str, np.ndarray]:
    """The arrays smplx needs if `model` is an SMPL-format model, else one `BadFileError` saying why.

    Shapes follow the model's own vertex count V (the synthetic test models use SMPL's 6890 too);
    `num_vertices=NUM_VERTICES` also demands SMPL proper (not SMPL-H/SMPL-X/MANO sized).
    Returns {key: array} for the keys of `_REQUIRED_SHAPES`.
    """
    fix = "import the official SMPL files with `gtacli fetch --smpl-from PATH`"
    if not isinstance(model, Mapping):
        raise BadFileError(
            f"not an SMPL model: the pickle holds a {type(model).__name__}, expected a dict of arrays",
            path=path,
            fix=fix,
        )
    missing = [k for k in _REQUIRED_SHAPES if k not in model]
    if missing:
        raise BadFileError(f"not an SMPL model: missing {', '.join(missing)}", path=path, fix=fix)
    num_v = num_vertices if num_vertices is not None else np.shape(model["v_template"])[0]
    arrays: Dict[str, np.ndarray] = {}
    for key, want in _REQUIRED_SHAPES.items():
        value = model[key]
        shape = np.shape(value)
        expect = tuple(num_v if w == "V" else w for w in want)
        good = (
            isinstance(value, np.ndarray)
            and len(shape) == len(expect)
            and all(e is None or s == e for s, e in zip(shape, expect))
            and not (key == "shapedirs" and shape[2] < NUM_BETAS)
        )
        if not good:
            want_text = ", ".join("K" if e is None else str(e) for e in expect)
            raise BadFileError(
                f"not an SMPL model: {key} has shape {shape} ({type(value).__name__}), expected ({want_text})",
                path=path,
                fix=fix,
            )
        if value.dtype.kind not in "fiu":
            raise BadFileError(f"not an SMPL model: {key} has dtype {value.dtype}", path=path, fix=fix)
        arrays[key] = value
    return arrays


def _load_regressor(path: Path, rows: int, num_vertices: int) -> np.ndarray:
    reg = load_npy(path)
    if reg.ndim != 2 or reg.shape != (rows, num_vertices) or not np.issubdtype(reg.dtype, np.floating):
        raise BadFileError(
            f"expected a float ({rows}, {num_vertices}) joint regressor, found {reg.dtype} {reg.shape}",
            path=path,
            fix="download the file again (gtacli fetch) or rebuild the sample tree",
        )
    return np.asarray(reg, dtype=np.float64)


@dataclass
class BodyOutput:
    """Outputs of `BodyModel`; all in metres in the SMPL root frame (no translation)."""

    vertices: torch.Tensor  # (B, 6890, 3)
    joints: Optional[torch.Tensor]  # (B, 49, 3) smpl_49; None without J_regressor_extra
    joints_h36m: Optional[torch.Tensor]  # (B, 17, 3); None without J_regressor_h36m
    joints54: Optional[torch.Tensor]  # (B, 54, 3) smpl_54; None without J_regressor_extra
    joints_smpl: torch.Tensor  # (B, 24, 3) SMPL kinematic joints (posed)


def _gender_name(gender: Union[str, int]) -> str:
    key = str(int(gender)) if isinstance(gender, (int, np.integer)) else str(gender).strip().lower()
    if key not in _GENDER_ALIASES:
        raise BadFileError(
            f"unknown gender {gender!r}",
            fix="use 'm'/'f'/'n' (or male/female/neutral, or 0/1/-1 as mmhuman3d codes them)",
        )
    return _GENDER_ALIASES[key]


class BodyModel(nn.Module):
    """SMPL (smplx) plus mmhuman3d's extra and H36M joint regressors.

    Build with `BodyModel.from_layout(DataLayout(root), gender="neutral")` or from arrays. Gradients flow to the
    inputs; the model's own buffers are constants.
    """

    def __init__(
        self,
        smpl_arrays: Mapping[str, Any],
        j_regressor_extra: Optional[np.ndarray] = None,
        j_regressor_h36m: Optional[np.ndarray] = None,
        gender: str = "neutral",
        dtype: torch.dtype = torch.float32,
        model_path: Optional[PathLike] = None,
    ) -> None:
        super().__init__()

        check_smpl_arrays(smpl_arrays, model_path)
        self.gender = _gender_name(gender)
        self.dtype = dtype
        # smplx prints a warning to stdout for 10-component shape spaces; keep stdout clean for --json.
        with contextlib.redirect_stdout(io.StringIO()):
            self.smpl = smplx.SMPL(
                model_path=str(model_path or ""),
                data_struct=Struct(**dict(smpl_arrays)),
                gender=self.gender,
                num_betas=NUM_BETAS,
                create_betas=False,
                create_global_orient=False,
                create_body_pose=False,
                create_transl=False,
                dtype=dtype,
            )
        num_v = self.smpl.v_template.shape[0]
        self.faces = np.asarray(smpl_arrays["f"], dtype=np.int64)
        self.has_extra = j_regressor_extra is not None
        self.has_h36m = j_regressor_h36m is not None
        for name, reg, rows in (
            ("j_regressor_extra", j_regressor_extra, NUM_EXTRA_JOINTS),
            ("j_regressor_h36m", j_regressor_h36m, NUM_H36M_JOINTS),
        ):
            if reg is not None and np.shape(reg) != (rows, num_v):
                raise BadFileError(f"{name} has shape {np.shape(reg)}, expected {(rows, num_v)}")
            tensor = (
                torch.as_tensor(np.asarray(reg), dtype=dtype)
                if reg is not None
                else torch.zeros(0, num_v, dtype=dtype)
            )
            self.register_buffer(name, tensor, persistent=False)
        self.register_buffer("smpl_54_to_49", torch.as_tensor(SMPL_54_TO_SMPL_49), persistent=False)
        self.requires_grad_(False)

    @classmethod
    def from_layout(
        cls,
        layout: Any,
        gender: str = "neutral",
        h36m: bool = True,
        extra: bool = True,
        device: Union[str, torch.device, None] = None,
        dtype: torch.dtype = torch.float32,
    ) -> BodyModel:
        """Load SMPL_<GENDER>.pkl and the regressors from a `gtacli.layout.DataLayout` (docs/reproduction.md §1.2)."""
        gender = _gender_name(gender)
        path = layout.smpl_model(gender)
        arrays = load_smpl_arrays(path)
        num_v = arrays["v_template"].shape[0]
        reg_extra = _load_regressor(layout.j_regressor_extra, NUM_EXTRA_JOINTS, num_v) if extra else None
        reg_h36m = _load_regressor(layout.j_regressor_h36m, NUM_H36M_JOINTS, num_v) if h36m else None
        model = cls(arrays, reg_extra, reg_h36m, gender=gender, dtype=dtype, model_path=path)
        return model.to(device) if device is not None else model

    @property
    def faces_tensor(self) -> torch.Tensor:
        return self.smpl.faces_tensor

    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    def forward(
        self,
        betas: torch.Tensor,
        body_pose: torch.Tensor,
        global_orient: torch.Tensor,
        pose2rot: Optional[bool] = None,
    ) -> BodyOutput:
        """betas (B, 10); body_pose (B, 69) / (B, 23, 3) axis-angle or (B, 23, 3, 3) rotation matrices;
        global_orient (B, 3) / (B, 1, 3) or (B, 1, 3, 3) / (B, 3, 3). `pose2rot=None` decides from the shapes."""
        if pose2rot is None:
            pose2rot = not (body_pose.dim() >= 3 and tuple(body_pose.shape[-2:]) == (3, 3))
        batch = body_pose.shape[0]
        ref = self.smpl.v_template
        betas = betas.to(device=ref.device, dtype=ref.dtype).reshape(batch, betas.shape[-1])[:, :NUM_BETAS]
        if pose2rot:
            body_pose = body_pose.reshape(batch, NUM_BODY_JOINTS * 3)
            global_orient = global_orient.reshape(batch, 3)
        else:
            body_pose = body_pose.reshape(batch, NUM_BODY_JOINTS, 3, 3)
            global_orient = global_orient.reshape(batch, 1, 3, 3)
        body_pose = body_pose.to(device=ref.device, dtype=ref.dtype)
        global_orient = global_orient.to(device=ref.device, dtype=ref.dtype)
        if batch == 0:  # smplx cannot reshape empty batches; the answer is known
            empty = ref.new_zeros
            return BodyOutput(
                vertices=empty(0, self.num_vertices, 3),
                joints=empty(0, 49, 3) if self.has_extra else None,
                joints_h36m=empty(0, NUM_H36M_JOINTS, 3) if self.has_h36m else None,
                joints54=empty(0, 54, 3) if self.has_extra else None,
                joints_smpl=empty(0, 24, 3),
            )
        out = self.smpl(betas=betas, body_pose=body_pose, global_orient=global_orient, pose2rot=pose2rot)
        vertices = out.vertices  # (B, V, 3)
        joints45 = out.joints  # 24 kinematic + 21 vertex joints (smplx VertexJointSelector, smplh ids)
        joints54 = joints49 = joints_h36m = None
        if self.has_extra:
            extra = torch.einsum("jv,bvc->bjc", self.j_regressor_extra, vertices)
            joints54 = torch.cat((joints45, extra), dim=1)
            joints49 = joints54[:, self.smpl_54_to_49]
        if self.has_h36m:
            joints_h36m = torch.einsum("jv,bvc->bjc", self.j_regressor_h36m, vertices)
        return BodyOutput(
            vertices=vertices,
            joints=joints49,
            joints_h36m=joints_h36m,
            joints54=joints54,
            joints_smpl=joints45[:, :24],
        )

    def vertex_joint_ids(self) -> Sequence[int]:
        """The vertex ids smplx reads the 21 vertex joints from (smpl_54 24..44)."""
        return tuple(int(i) for i in self.smpl.vertex_joint_selector.extra_joints_idxs)


class GenderedBodyModel(nn.Module):
    """Neutral / male / female `BodyModel`s run on the rows of their gender (docs/reproduction.md §4.5, §8: 3DPW GT)."""

    def __init__(self, models: Mapping[str, BodyModel]) -> None:
        super().__init__()
        self.models = nn.ModuleDict({_gender_name(g): m for g, m in models.items()})
        first = next(iter(self.models.values()))
        self.faces = first.faces

    @classmethod
    def from_layout(
        cls,
        layout: Any,
        genders: Sequence[str] = ("male", "female", "neutral"),
        h36m: bool = True,
        extra: bool = True,
        device: Union[str, torch.device, None] = None,
        dtype: torch.dtype = torch.float32,
    ) -> GenderedBodyModel:
        models = {
            _gender_name(g): BodyModel.from_layout(
                layout, g, h36m=h36m, extra=extra, device=device, dtype=dtype
            )
            for g in genders
        }
        return cls(models)

    @staticmethod
    def gender_names(gender: Union[Sequence[Any], np.ndarray, torch.Tensor]) -> list:
        """Per-sample genders ('m'/'f'/'n', words, or mmhuman3d codes -1/0/1) -> 'neutral'/'male'/'female'."""
        if isinstance(gender, torch.Tensor):
            gender = gender.detach().cpu().numpy()
        return [
            _gender_name(g.item() if isinstance(g, np.generic) else g) for g in np.asarray(gender).reshape(-1)
        ]

    def forward(
        self,
        betas: torch.Tensor,
        body_pose: torch.Tensor,
        global_orient: torch.Tensor,
        gender: Union[Sequence[Any], np.ndarray, torch.Tensor],
        pose2rot: Optional[bool] = None,
    ) -> BodyOutput:
        names = self.gender_names(gender)
        batch = body_pose.shape[0]
        if len(names) != batch:
            raise ValueError(f"{len(names)} genders for a batch of {batch}")
        missing = sorted(set(names) - set(self.models))
        if missing:
            raise BadFileError(
                f"no {'/'.join(missing)} body model loaded", fix="load it with from_layout(genders=...)"
            )
        parts: Dict[str, BodyOutput] = {}
        rows: Dict[str, torch.Tensor] = {}
        for name in sorted(set(names)):
            idx = torch.as_tensor([i for i, n in enumerate(names) if n == name], device=body_pose.device)
            rows[name] = idx
            parts[name] = self.models[name](betas[idx], body_pose[idx], global_orient[idx], pose2rot=pose2rot)
        if not parts:  # empty batch
            return next(iter(self.models.values()))(betas, body_pose, global_orient, pose2rot=pose2rot)

        def gather(field: str) -> Optional[torch.Tensor]:
            values = [getattr(p, field) for p in parts.values()]
            if any(v is None for v in values):
                return None
            out = values[0].new_empty((batch, *values[0].shape[1:]))
            for name, value in zip(parts, values):
                out[rows[name].to(out.device)] = value
            return out

        return BodyOutput(
            vertices=gather("vertices"),  # type: ignore[arg-type]
            joints=gather("joints"),
            joints_h36m=gather("joints_h36m"),
            joints54=gather("joints54"),
            joints_smpl=gather("joints_smpl"),  # type: ignore[arg-type]
        )
