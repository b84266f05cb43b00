"""A data root with synthetic SMPL models (neutral, male, female) and regressors, built once per session."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.layout import DataLayout


@pytest.fixture(scope="session")
def body_layout(tmp_path_factory) -> DataLayout:
    from gtacli.sample.synthetic_smpl import (
        make_synthetic_regressors,
        make_synthetic_smpl,
        write_synthetic_smpl,
    )

    layout = DataLayout(tmp_path_factory.mktemp("body_root") / "data")
    for gender in ("neutral", "male", "female"):
        write_synthetic_smpl(layout.smpl_model(gender), gender, seed=0)
    extra, h36m = make_synthetic_regressors(make_synthetic_smpl("neutral", 0))
    np.save(layout.j_regressor_extra, extra)
    np.save(layout.j_regressor_h36m, h36m)
    return layout
