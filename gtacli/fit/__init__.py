"""SMPLify fitting and static fits (docs/reproduction.md §7).

* `priors`: GMoF, the GMM max-mixture pose prior (gmm_08.pkl), joint angle and shape priors.
* `smplify`: batched SMPLify (`SMPLify`, `SMPLifyConfig`), the registrant's keypoint term, `fit_dataset`.
* `fits_store`: `FitsStore`, per-dataset (N, 82) fits with frame-aware lookup/update, atomic save.
* `registration`: `Registrant` / `RegistrationConfig`, pseudo-GT targets of a training batch (static or in the loop).

Modules are imported on demand (`from gtacli.fit.smplify import SMPLify`), so importing the package is cheap.
"""
