"""The fit results' contract: every fitter returns one `FitResult` with exactly these fields, each what its
docstring says, whichever method ran (the registrant, `gtacli fit`, the demo's --refine and the benchmarks read
them by name)."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gtacli.fit.config import FIT_METHODS, RegistrationConfig
from gtacli.fit.methods import build_fitter
from gtacli.fit.optim import StageReport
from gtacli.fit.result import FitResult

# field -> shape after the batch axis; the order is the dataclass's
FIT_TENSORS = {
    "pose": (72,),
    "betas": (10,),
    "transl": (3,),
    "vertices": (6890, 3),
    "joints": (49, 3),
    "loss": (),
    "keypoint_loss": (),
}
STAGES = {"mmhuman3d": 2, "spin": 2, "gtacli": 1}


def _problem(body_model, batch: int = 2):
    """Keypoints of a known body 40 m away, and a start near it."""
    gen = torch.Generator().manual_seed(5)
    pose = 0.1 * torch.randn(batch, 72, generator=gen)
    pose[:, 0] = 3.0  # facing the camera
    transl = torch.tensor([[0.1, 0.0, 40.0]]).expand(batch, 3)
    with torch.no_grad():
        cam = body_model(torch.zeros(batch, 10), pose[:, 3:], pose[:, :3]).joints + transl[:, None]
    kp = torch.cat([5000.0 * cam[..., :2] / cam[..., 2:] + 112.0, torch.ones(batch, 49, 1)], dim=-1)
    init_pose = pose + 0.05 * torch.randn(batch, 72, generator=gen)
    return init_pose, torch.zeros(batch, 10), transl + torch.tensor([0.0, 0.0, 2.0]), kp


def test_the_fields_of_a_fit_result():
    """A field that goes missing or is renamed breaks every consumer: the list is the contract."""
    assert [f.name for f in dataclasses.fields(FitResult)] == [*FIT_TENSORS, "stages"]
    assert set(STAGES) == set(FIT_METHODS)


@pytest.mark.parametrize("method", FIT_METHODS)
def test_every_fitter_returns_a_fit_result(body_model, gmm_path, method):
    config = RegistrationConfig(method=method, num_iters=3, spin_num_iters=3, one_stage_iters=3, ftol=0.0)
    fitter = build_fitter(body_model, gmm_path, config)
    init_pose, init_betas, init_transl, kp = _problem(body_model)
    result = fitter.fit(init_pose, init_betas, init_transl, kp)
    assert type(result) is FitResult
    for name, shape in FIT_TENSORS.items():
        value = getattr(result, name)
        assert isinstance(value, torch.Tensor) and value.shape == (2, *shape), name
        assert value.dtype == torch.float32 and not value.requires_grad, name
    assert len(result.stages) == STAGES[method]
    assert all(isinstance(stage, StageReport) for stage in result.stages)
    # the camera-frame fields are the body model's at the fitted parameters, translated
    with torch.no_grad():
        out = body_model(result.betas, result.pose[:, 3:], result.pose[:, :3])
        criterion = fitter.criterion(out.joints, result.transl, kp)
    torch.testing.assert_close(result.joints, out.joints + result.transl[:, None])
    torch.testing.assert_close(result.vertices, out.vertices + result.transl[:, None])
    torch.testing.assert_close(result.keypoint_loss, criterion)
    with pytest.raises(dataclasses.FrozenInstanceError):
        result.pose = torch.zeros(2, 72)  # type: ignore[misc]
    with pytest.raises(TypeError):  # no dict API left for a consumer to fall back on
        result["pose"]  # type: ignore[index]
