"""gtacli's own fitter (`--method gtacli`, the default of `gtacli fit`): SPIN's objective, one joint stage.

Measured on synthetic bodies with known ground truth (benchmarks/bench_fitter.py), SPIN's camera stage adds
little once the initial translation is the least-squares solution on the keypoints (`estimate_translation`,
what both trainers compute for a fit anyway), and fixing the translation during the body stage costs
accuracy: a torso that is a few centimetres off in depth must then be absorbed by bending the limbs. So:

* start: the given orientation with its least-squares translation; where the start carries no facing
  information (`facing_search="always"`, the mean parameters) or its left/right torso joints contradict the
  keypoints, the turn (0/90/180/270° about the vertical and the optical axis) that explains the keypoints
  best without swapping the torso's sides (`gtacli.fit.camera_init.best_facing` has the rule);
* objective: SPIN's `body_fitting_loss` (GMoF σ = 100 on pixel residuals weighted by confidence², GMM,
  angle and shape priors; `gtacli.fit.smplify_spin`), so fits are judged by SPIN's fitting loss;
* one Adam stage on global orient + body pose + betas + translation together (depth as a log-scale of the
  start, so a step moves it in proportion to the distance): `one_stage_iters` steps at `one_stage_lr` with
  Adam moment decays `one_stage_adam_betas`, shorter-memory than the stock (0.9, 0.999), which reach the
  same accuracy in fewer steps (benchmarks/results/fitter.json); optionally stopping early when the batch loss changes by less than
  `one_stage_ftol` in a step (mmhuman3d's rule, off by default; all in `RegistrationConfig`); optionally
  (`one_stage_lr_decay`, on for the demo's refinement) with the last steps' learning rate falling towards 0.

A step costs what a step of SPIN's body stage costs (one sparse body forward and backward), so the time is
mostly the step count, `one_stage_iters` against SPIN's two stages of `spin_num_iters` (its camera steps are
cheap); benchmarks/results/fitter.json has the measured ratio. The facing candidates share one rigid
skeleton (one body evaluation for all turns).
"""

from __future__ import annotations

from typing import Callable, Optional

import torch

from gtacli.fit.camera_init import best_facing
from gtacli.fit.optim import FitTrace, cpu_threads, now, run_adam_stage, threads_for
from gtacli.fit.result import FitResult
from gtacli.fit.smplify_spin import SpinSMPLify


class GtacliSMPLify(SpinSMPLify):
    """SPIN's objective minimised in one stage with the translation free (see the module docstring)."""

    def fit(
        self,
        init_pose: torch.Tensor,
        init_betas: torch.Tensor,
        init_transl: torch.Tensor,
        kp2d: torch.Tensor,
        *,
        torso_from_openpose: bool = True,
        trace: Optional[FitTrace] = None,
        extra_loss: Optional[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = None,
    ) -> FitResult:
        """Same inputs and outputs as `SpinSMPLify.fit` (`torso_from_openpose` has no stage to act on here).

        `extra_loss(joints (B, 49, 3) root frame, transl (B, 3)) -> (B,)` is added to the objective while
        fitting (the demo's temporal term, `gtacli.demo.refine`); the reported `loss` is the objective alone."""
        c = self.config
        kp2d, global_orient, body_pose, betas, transl = self.start(init_pose, init_betas, init_transl, kp2d)
        global_orient, transl, _ = best_facing(self, global_orient, body_pose, betas, transl, kp2d)
        # depth as a log-scale of the start: one Adam step moves it by a fraction of the distance, not by a
        # fixed number of metres (~45 m away a plain 0.04 m step is too small to matter)
        shift, depth0 = transl[:, :2].clone(), transl[:, 2:].clone()
        log_scale = torch.zeros_like(depth0)
        for param in (global_orient, body_pose, betas, shift, log_scale):
            param.requires_grad_(True)

        def translation() -> torch.Tensor:
            return torch.cat([shift, depth0 * torch.exp(log_scale)], dim=1)

        with torch.enable_grad(), cpu_threads(self.device, threads_for(c.cpu_threads, kp2d.shape[0])):

            def loss() -> torch.Tensor:
                joints, transl = self.joints49(global_orient, body_pose, betas), translation()
                value = self.objective(joints, transl, kp2d, body_pose, betas)
                return value if extra_loss is None else value + extra_loss(joints, transl)

            report = run_adam_stage(
                [global_orient, body_pose, betas, shift, log_scale],
                loss,
                iterations=c.one_stage_iters,
                lr=c.one_stage_lr,
                betas=c.one_stage_adam_betas,
                ftol=c.one_stage_ftol,
                lr_decay=c.one_stage_lr_decay,
                trace=trace,
                t0=now(),
            )
        with torch.no_grad():
            transl = translation()
        return self.finish(global_orient, body_pose, betas, transl, kp2d, [report], trace)
