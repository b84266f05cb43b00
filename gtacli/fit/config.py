"""`RegistrationConfig`: every number of registration and SMPLify, and the names of the fitting methods and
registration modes (docs/reproduction.md §7.1–7.4). The bottom of `gtacli.fit`: it imports no fitter.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Dict, Optional, Tuple

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES
from gtacli.body.conventions import REGISTRANT_IGNORE
from gtacli.fit.priors import (
    JOINT_PRIOR_WEIGHT,
    KEYPOINT_GMOF_SIGMA,
    POSE_PRIOR_WEIGHT,
    SHAPE_PRIOR_WEIGHT,
)

REGISTRATION_MODES = ("static", "in_the_loop")
FACING_SEARCH = ("auto", "always", "never")
# SMPLify formulations: mmhuman3d's registrant (the reproduction default), SPIN's `smplify/smplify.py`, and
# gtacli's one-stage fitter on SPIN's objective (`gtacli.fit.smplify_gtacli`, the default of `gtacli fit`).
FIT_METHODS = ("mmhuman3d", "spin", "gtacli")
MEAN_CAMERA = (0.9, 0.0, 0.0)  # smpl_mean_params cam: fallback camera when no prediction is given


@dataclass
class RegistrationConfig:
    """Every number of registration and SMPLify (docs/reproduction.md §7.1–7.4), one flat set of plain fields.

    Defaults are mmhuman3d's registrant (configs/spin/resnet50_spin_pw3d.py `registrant`, `run_registration`);
    the `spin_*` fields are SPIN's own (`smplify/smplify.py`, `smplify/losses.py`, `utils/train_options.py`)
    and apply when `method="spin"`. Training composes its recipe with one of these (`--set registration.x=...`).
    """

    # 'mmhuman3d' (its registrant: GMoF of squared normalised residuals, every stage on the full objective)
    # or 'spin' (SPIN's SMPLify: torso camera stage, GMoF on pixel residuals weighted by confidence²)
    # or 'gtacli' (SPIN's objective in one stage with the translation free; judged by SPIN's criterion)
    method: str = "mmhuman3d"
    mode: str = "static"  # 'static' (fits read-only) or 'in_the_loop' (SMPLify + accept-if-better + update)
    threshold: float = (
        10.0  # run_registration's `threshold`: valid_fit = keypoint loss < this (method mmhuman3d)
    )
    max_abs_beta: float = 3.0  # rows with any |β| above this are zeroed (docs/reproduction.md §7.1 step 7)
    # mmhuman3d subtracts the *initial* translation from the fitted (translated) vertices, leaving an offset
    # of t_fit − t_init in opt_vertices (docs/reproduction.md §7.4, §10.1). True reproduces it; False subtracts t_fit.
    mmhuman3d_vertex_offset: bool = True
    num_iters: int = 50  # Adam iterations per stage (two stages), mmhuman3d's registrant
    lr: float = 1e-2
    adam_betas: Tuple[float, float] = (0.9, 0.999)
    ftol: float = 1e-4  # mmhuman3d's relative-change early stop per stage; <= 0 disables it
    focal_length: float = FOCAL_LENGTH
    img_res: int = IMG_RES
    ignore_keypoints: Tuple[int, ...] = REGISTRANT_IGNORE  # smpl_49 joints with weight 0 (same list in SPIN)
    keypoint_weight: float = 1.0
    gmof_sigma: float = KEYPOINT_GMOF_SIGMA
    shape_prior_weight: float = SHAPE_PRIOR_WEIGHT
    joint_prior_weight: float = JOINT_PRIOR_WEIGHT
    pose_prior_weight: float = POSE_PRIOR_WEIGHT
    spin_num_iters: int = 100  # SPIN --num_smplify_iters, per stage, no early stop
    spin_threshold: float = 100.0  # SPIN --smplify_threshold on its per-sample fitting loss (px²)
    spin_depth_loss_weight: float = 100.0  # SPIN camera_fitting_loss: 100²·(t_z − t_z,init)²
    # method 'gtacli' (benchmarks/bench_fitter.py): one_stage_iters Adam steps in its single stage, with
    # moment decays faster than the stock (0.9, 0.999) (fewer steps to the same fit on this objective);
    # stopping early when the batch loss changes by less than one_stage_ftol (relative) in a step, off (<= 0)
    # by default: any tolerance that saves steps stopped on a noisy step and cost LSP reprojection accuracy
    one_stage_iters: int = 30
    one_stage_lr: float = 6e-2
    one_stage_ftol: float = 0.0
    one_stage_adam_betas: Tuple[float, float] = (0.7, 0.95)
    # the last one_stage_lr_decay (fraction) of the steps take the learning rate linearly down towards 0; off
    # (0) for `gtacli fit`. Adam's steps stay ~lr long at the optimum, so a constant-rate fit ends anywhere in
    # a ~lr-wide band around it, a different place for each sample: invisible in one fit, jitter between a
    # video's frames (demo --refine turns it on: `gtacli.demo.refine.REFINE_LR_DECAY`)
    one_stage_lr_decay: float = 0.0
    # method 'gtacli': when the facing-direction search runs (`gtacli.fit.camera_init.best_facing`):
    # 'auto' only where the start's left/right torso joints contradict the keypoints (a network's start
    # keeps its facing direction), 'always' for every sample (a start from the mean parameters carries no
    # facing information: `gtacli fit` without --init), 'never'.
    facing_search: str = "auto"
    # Evaluate the 49 joints from the vertices they need only, and camera stages as a rigid transform (same result).
    fast_joints: bool = True
    # CPU intra-op threads while fitting; None = 1 thread for small batches (see gtacli.fit.optim), else torch's.
    cpu_threads: Optional[int] = None

    def __post_init__(self) -> None:
        if self.mode not in REGISTRATION_MODES:
            raise ValueError(f"registration mode must be one of {REGISTRATION_MODES}, got {self.mode!r}")
        if self.method not in FIT_METHODS:
            raise ValueError(f"registration method must be one of {FIT_METHODS}, got {self.method!r}")
        if self.facing_search not in FACING_SEARCH:
            raise ValueError(f"facing_search must be one of {FACING_SEARCH}, got {self.facing_search!r}")

    def as_dict(self) -> Dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def acceptance_threshold(self) -> float:
        """The valid-fit threshold of this config's method (its own criterion's units)."""
        return self.threshold if self.method == "mmhuman3d" else self.spin_threshold
