"""SMPL fitting to 2D keypoints and the static fits (docs/reproduction.md §7).

* `registration`: `RegistrationConfig` (every number of registration and SMPLify), `build_fitter`, and the
  `Registrant` that makes the pseudo-GT targets of a training batch (static fits or in the loop).
* the fitters, one `Fitter` base (`fitter`): `smplify.SMPLify` (mmhuman3d's registrant), `spin_smplify.SpinSMPLify`
  (SPIN's SMPLify) and `one_stage.OneStageSMPLify` (gtacli's default); `camera_init` places and turns a start.
* `priors`: GMoF, the GMM max-mixture pose prior (gmm_08.pkl), joint angle and shape priors.
* `joints`, `optim`: the sparse 49-joint body evaluation and the Adam stage shared by the fitters.
* `dataset`: screening, batching and judging many samples; `runner`: `gtacli fit` as a pipeline with a report.
* `fits_store`: `FitsStore`, per-dataset (N, 82) fits with frame-aware lookup/update, atomic save.
"""
