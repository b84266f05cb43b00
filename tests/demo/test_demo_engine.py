"""The demo engine's results: `Engine.infer` gives `CropPredictions`, `Engine.body` a `PeopleBody` with exactly
these fields (results.npz, the meshes and the overlays read them by name), on the synthetic sample tree."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from gtacli.body.camera import FOCAL_LENGTH, IMG_RES, cam_to_translation, crop_square
from gtacli.data.eval_dataset import read_image_bgr
from gtacli.data.human_data import HumanData
from gtacli.demo.config import DemoConfig, PeopleBody, Person, Timer
from gtacli.demo.engine import Engine
from gtacli.layout import DataLayout
from gtacli.model.predict import CropPredictions

# field -> shape after the people axis; the order is the dataclass's
BODY_FIELDS = {
    "pose_aa": (72,),
    "vertices": (6890, 3),
    "verts_cam": (6890, 3),
    "j49": (49, 3),
    "j24": (24, 3),
    "j14": (14, 3),
    "kp2d_49": (49, 2),
    "kp2d_14": (14, 2),
    "transl_crop": (3,),
    "transl": (3,),
    "focal": (),
    "K_img": (3, 3),
}


def test_the_fields_of_the_demo_results():
    assert [f.name for f in dataclasses.fields(PeopleBody)] == list(BODY_FIELDS)
    assert [f.name for f in dataclasses.fields(CropPredictions)] == ["rotmat", "betas", "cam"]


@pytest.mark.slow  # loads the estimator (seconds)
def test_engine_infer_and_body_return_their_dataclasses(sample_tree, tmp_path):
    layout = DataLayout(sample_tree)
    frame = read_image_bgr(
        layout.image("pw3d", HumanData.load(layout.annotation("pw3d")).image_paths([0])[0])
    )
    config = DemoConfig(
        input=tmp_path / "in.png",
        checkpoint=layout.spin_official,
        data_root=sample_tree,
        output=tmp_path / "out",
        device="cpu",
        engine="torch",
    )
    engine = Engine(config, notes=[])
    people = []
    for k, box in enumerate([[20.0, 10.0, 80.0, 160.0], [60.0, 30.0, 50.0, 100.0]]):
        center, side = crop_square(box)
        people.append(Person(0, np.array(box), 1.0, k, "given", center, side))
    timer = Timer()
    empty = engine.infer({0: frame}, [], timer)
    assert (
        type(empty) is CropPredictions and empty.rotmat.shape == (0, 24, 3, 3) and empty.cam.shape == (0, 3)
    )
    outputs = engine.infer({0: frame}, people, timer)
    assert type(outputs) is CropPredictions
    assert (
        outputs.rotmat.shape == (2, 24, 3, 3)
        and outputs.betas.shape == (2, 10)
        and outputs.cam.shape == (2, 3)
    )
    assert all(a.dtype == np.float64 for a in (outputs.rotmat, outputs.betas, outputs.cam))

    body = engine.body(people, outputs, {0: frame.shape[:2]}, timer)
    assert type(body) is PeopleBody
    for name, shape in BODY_FIELDS.items():
        value = getattr(body, name)
        assert isinstance(value, np.ndarray) and value.shape == (2, *shape) and value.dtype == np.float64, (
            name
        )
    # the crop translation is the network's camera; the drawn mesh is the body-model mesh moved there
    np.testing.assert_allclose(body.transl_crop, cam_to_translation(torch.as_tensor(outputs.cam)).numpy())
    np.testing.assert_array_equal(body.verts_cam, body.vertices + body.transl_crop[:, None])
    np.testing.assert_allclose(body.focal, FOCAL_LENGTH * np.array([p.side for p in people]) / IMG_RES)
    with pytest.raises(dataclasses.FrozenInstanceError):
        body.transl = body.transl_crop  # type: ignore[misc]
