"""SMPL fitting to 2D keypoints and the static fits (docs/reproduction.md §7).

Imports point one way, from the bottom up:

* `config` (`RegistrationConfig`, the method and mode names) and `priors` (GMoF, the GMM pose prior, joint angle
  and shape priors);
* `losses`: keypoint weights, the reprojection terms of each formulation, the acceptance criteria;
* `joints`, `optim`, `camera_init`: the sparse 49-joint body evaluation, the shared Adam stage, where a fit starts;
* `result`: `FitResult`, what every fitter returns;
* the fitters on one `Fitter` base (`fitter`): `smplify_mmhuman3d.MMHuman3dSMPLify` (method `mmhuman3d`),
  `smplify_spin.SpinSMPLify` (method `spin`) and `smplify_gtacli.GtacliSMPLify` (method `gtacli`);
* `methods`: the method -> fitter table (`build_fitter`), the only module that knows all three;
* `registration`: the `Registrant` that makes the pseudo-GT targets (`RegistrationTargets`) of a training
  batch; `fits_store`: `FitsStore`, per-dataset (N, 82) fits with frame-aware lookup/update; `batch`: screening,
  batching and judging many samples; `runner`: `gtacli fit` as a pipeline with a report.
"""
