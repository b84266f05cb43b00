"""Fixtures of the fit tests: a data root with a synthetic SMPL model, regressors, mean parameters and a GMM."""

from __future__ import annotations

import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from gtacli.layout import DataLayout


def _write_generated_gmm(path: Path, seed: int = 0) -> Path:
    """A small, well-conditioned 8 x 69-d GMM in gmm_08.pkl's format (used when ../shared is absent)."""
    rng = np.random.default_rng(seed)
    means = rng.normal(0.0, 0.15, (8, 69))
    basis = rng.normal(0.0, 1.0, (8, 69, 69))
    covars = np.einsum("mij,mkj->mik", basis, basis) / 69 * 0.05 + 0.01 * np.eye(69)
    weights = rng.random(8) + 0.5
    weights /= weights.sum()
    path.write_bytes(pickle.dumps({"means": means, "covars": covars, "weights": weights}, protocol=4))
    return path


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """The fits here run on tiny tensors: one intra-op thread is faster, and far faster on a busy machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def gmm_path(request, tmp_path_factory) -> Path:
    """The real gmm_08.pkl from ../shared/assets, or a generated one of the same format when it is absent."""
    try:
        shared = request.getfixturevalue("shared_assets")
        return shared / "gmm_08.pkl"
    except pytest.skip.Exception:
        return _write_generated_gmm(tmp_path_factory.mktemp("gmm") / "gmm_08.pkl")


@pytest.fixture(scope="session")
def fit_layout(tmp_path_factory, gmm_path) -> DataLayout:
    """A data root with a synthetic neutral SMPL, its regressors, mean parameters (SPIN layout) and the GMM."""
    from gtacli.sample.synthetic_smpl import (
        make_synthetic_regressors,
        make_synthetic_smpl,
        write_synthetic_smpl,
    )

    layout = DataLayout(tmp_path_factory.mktemp("fit_root") / "data")
    write_synthetic_smpl(layout.smpl_model("neutral"))
    extra, h36m = make_synthetic_regressors(make_synthetic_smpl())
    np.save(layout.j_regressor_extra, extra)
    np.save(layout.j_regressor_h36m, h36m)
    # smpl_mean_params.npz: joint 0 = 180° about x (diag(1, -1, -1)), the rest identity, in SPIN's 6D layout
    pose6d = np.tile(np.array([1.0, 0.0, 0.0, 1.0, 0.0, 0.0], np.float32), 24)
    pose6d[:6] = [1.0, 0.0, 0.0, -1.0, 0.0, 0.0]
    np.savez(
        layout.smpl_mean_params,
        pose=pose6d,
        shape=np.zeros(10, np.float32),
        cam=np.array([0.9, 0.0, 0.0], np.float32),
    )
    shutil.copyfile(gmm_path, layout.gmm_prior)
    return layout


@pytest.fixture(scope="session")
def body_model(fit_layout):
    from gtacli.body.smpl import BodyModel

    return BodyModel.from_layout(fit_layout, "neutral", h36m=False)


@pytest.fixture(scope="session")
def body_model64(fit_layout):
    import torch

    from gtacli.body.smpl import BodyModel

    return BodyModel.from_layout(fit_layout, "neutral", h36m=False, dtype=torch.float64)
