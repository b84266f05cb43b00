"""The fitting methods by name: the one module that knows all three fitters.

* `mmhuman3d`: `MMHuman3dSMPLify` (`smplify_mmhuman3d.py`), mmhuman3d's registrant, the training default;
* `spin`: `SpinSMPLify` (`smplify_spin.py`), SPIN's SMPLify;
* `gtacli`: `GtacliSMPLify` (`smplify_gtacli.py`), SPIN's objective in one stage, the default of `gtacli fit`.
"""

from __future__ import annotations

from typing import Any, Optional

from gtacli.errors import PathLike
from gtacli.fit.config import RegistrationConfig
from gtacli.fit.priors import MaxMixturePrior
from gtacli.fit.smplify_gtacli import GtacliSMPLify
from gtacli.fit.smplify_mmhuman3d import MMHuman3dSMPLify
from gtacli.fit.smplify_spin import SpinSMPLify

FITTERS = {"mmhuman3d": MMHuman3dSMPLify, "spin": SpinSMPLify, "gtacli": GtacliSMPLify}


def build_fitter(
    body_model: Any,
    gmm_path: Optional[PathLike],
    config: RegistrationConfig,
    *,
    pose_prior: Optional[MaxMixturePrior] = None,
) -> Any:
    """The fitter of `config.method` (`fit(init_pose, init_betas, init_transl, kp2d) -> dict`, `criterion`)."""
    return FITTERS[config.method](body_model, gmm_path, config, pose_prior=pose_prior)
