"""Male and female variants of the synthetic neutral body model that share its mesh topology.

Real SMPL's three genders have the same 6890 vertices in the same order and the same 13776 triangles: only
the template and the blend shapes differ. Everything downstream relies on that: `J_regressor_extra` and
`J_regressor_h36m` are one matrix for all genders (3DPW ground truth regresses H36M joints from gendered
meshes), and PVE compares a neutral prediction with a gendered ground-truth mesh vertex by vertex.

The sample tree therefore derives its male and female models from the neutral one: the template is moved
along the neutral model's own shape directions (`GENDER_BETAS`, e.g. taller with broader shoulders; shorter
with wider hips), the joint locations are re-regressed from it, and faces, skinning weights, joint regressor,
shape and pose directions are kept. The result is an SMPL-format dict that smplx loads unchanged.
"""

from __future__ import annotations

from typing import Dict

import numpy as np

# Template offsets in units of the neutral model's shape coefficients (synthetic_smpl._shape_directions:
# 0 size, 1 girth, 2 leg length, 3 shoulder width, 4 belly, 5 hip width, 6 head size, 7 arm length,
# 8 chest depth, 9 torso length).
GENDER_BETAS: Dict[str, tuple] = {
    "male": (0.9, 0.4, 0.3, 0.9, 0.2, -0.4, 0.1, 0.3, 0.5, 0.2),
    "female": (-0.9, -0.4, -0.2, -0.8, -0.2, 0.9, -0.1, -0.3, -0.4, -0.2),
}


def gendered_variant(neutral: Dict[str, object], gender: str) -> Dict[str, object]:
    """The `gender` ('male' / 'female') model derived from a neutral SMPL-format dict (same topology)."""
    if gender not in GENDER_BETAS:
        raise ValueError(f"gender must be one of {sorted(GENDER_BETAS)}, got {gender!r}")
    model = {k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in neutral.items()}
    shapedirs = np.asarray(neutral["shapedirs"], dtype=np.float64)
    betas = np.zeros(shapedirs.shape[2])
    betas[: len(GENDER_BETAS[gender])] = GENDER_BETAS[gender]
    template = np.asarray(neutral["v_template"], dtype=np.float64) + shapedirs @ betas
    model["v_template"] = template
    model["J"] = np.asarray(neutral["J_regressor"], dtype=np.float64) @ template
    if "gtacli_gender" in model:
        model["gtacli_gender"] = gender
    return model
