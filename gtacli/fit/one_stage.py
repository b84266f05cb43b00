"""gtacli's own fitter (`--method gtacli`, the default of `gtacli fit`): SPIN's objective, one joint stage.

Measured on synthetic bodies with known ground truth (benchmarks/bench_fitter.py), SPIN's camera stage adds
little once the initial translation is the least-squares solution on the keypoints (`estimate_translation`,
what both trainers compute for a fit anyway), and fixing the translation during the body stage costs
accuracy: a torso that is a few centimetres off in depth must then be absorbed by bending the limbs. So:

* objective: SPIN's `body_fitting_loss` (GMoF σ = 100 on pixel residuals weighted by confidence², GMM,
  angle and shape priors; `gtacli.fit.spin_smplify`), so fits are judged by SPIN's fitting loss;
* one Adam stage on global orient + body pose + betas + translation together, `one_stage_iters` steps at
  `one_stage_lr` (both in `RegistrationConfig`), with mmhuman3d's relative-change early stop.
"""

from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from gtacli.fit.optim import FitTrace, cpu_threads, now, run_adam_stage, threads_for
from gtacli.fit.spin_smplify import SpinSMPLify


class OneStageSMPLify(SpinSMPLify):
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
    ) -> Dict[str, Any]:
        c = self.config
        kw = {"device": self.device, "dtype": self.dtype}
        kp2d = kp2d.detach().to(**kw)
        batch = kp2d.shape[0]
        global_orient = init_pose[:, :3].detach().to(**kw).clone().requires_grad_(True)
        body_pose = init_pose[:, 3:].detach().to(**kw).clone().requires_grad_(True)
        betas = init_betas.detach().to(**kw).reshape(batch, -1).clone().requires_grad_(True)
        transl = init_transl.detach().to(**kw).reshape(batch, 3).clone().requires_grad_(True)
        with torch.enable_grad(), cpu_threads(self.device, threads_for(c.cpu_threads, batch)):
            report = run_adam_stage(
                [global_orient, body_pose, betas, transl],
                lambda: self.body_loss(
                    self.joints49(global_orient, body_pose, betas), transl, kp2d, body_pose, betas
                ),
                iterations=c.one_stage_iters,
                lr=c.one_stage_lr,
                betas=c.adam_betas,
                ftol=c.ftol,
                trace=trace,
                t0=now(),
            )
        with torch.no_grad():
            pose = torch.cat([global_orient, body_pose], dim=1).detach()
            betas = betas.detach()
            transl = transl.detach()
            out = self.body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True)
            loss = self.body_loss(out.joints, transl, kp2d, pose[:, 3:], betas)
            crit = self.criterion(out.joints, transl, kp2d)
        if trace is not None:
            trace.stages.append(report)
        return {
            "pose": pose,
            "betas": betas,
            "transl": transl,
            "vertices": out.vertices + transl[:, None, :],
            "joints": out.joints + transl[:, None, :],
            "loss": loss,
            "keypoint_loss": crit,
            "stages": [report],
        }
