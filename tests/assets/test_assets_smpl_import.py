"""SMPL import from zips/folders/pickles shaped like the official files, without chumpy installed.

The official SMPL pickles hold `chumpy.ch.Ch` objects and `scipy.sparse.csc.csc_matrix`. We make such
pickles here with a throwaway `chumpy` package written to a temporary folder and a stand-in class
registered as `scipy.sparse.csc.csc_matrix` (stand-in `scipy`, `scipy.sparse` and `scipy.sparse.csc`
modules in `sys.modules`: scipy is not installed and must not be needed), pickle them with protocol 2,
then remove all of them from `sys.modules`/`sys.path` before loading, so the loaders never see the real
classes.
"""

from __future__ import annotations

import io
import os
import pickle
import sys
import zipfile

import numpy as np
import pytest
from official_pickles import official_pickles

from gtacli.assets.smpl_import import gender_from_name, import_smpl, loads_smpl_pickle
from gtacli.errors import BadFileError, GtacliError, MissingFileError, UnsafeFileError
from gtacli.io.safe import load_pickle
from gtacli.layout import DataLayout

N_V, N_F, N_J = 6890, 13776, 24
SMPL_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
V11_NAMES = {
    g: f"SMPL_python_v.1.1.0/smpl/models/basicmodel_{g[0] if g != 'neutral' else 'neutral'}_lbs_10_207_0_v1.1.0.pkl"
    for g in ("female", "male", "neutral")
}


def _model_arrays(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    j_reg = np.zeros((N_J, N_V))
    for j in range(N_J):  # each joint = mean of 4 vertices
        j_reg[j, rng.choice(N_V, 4, replace=False)] = 0.25
    weights = np.zeros((N_V, N_J))
    weights[np.arange(N_V), rng.integers(0, N_J, N_V)] = 1.0
    return {
        "v_template": rng.normal(0, 0.3, (N_V, 3)),
        "shapedirs": rng.normal(0, 0.01, (N_V, 3, 10)),
        "posedirs": np.zeros((N_V, 3, 207)),
        "J_regressor": j_reg,
        "weights": weights,
        "kintree_table": np.stack([np.array(SMPL_PARENTS, dtype=np.int64) % (2**32), np.arange(N_J)]).astype(
            np.uint32
        ),
        "f": rng.integers(0, N_V, (N_F, 3)).astype(np.uint32),
    }


@pytest.fixture(scope="module")
def official_like(tmp_path_factory):
    """(arrays by gender, protocol-2 pickles by gender, a v1.1-style zip path)."""
    tmp = tmp_path_factory.mktemp("smpl_src")
    arrays = {g: _model_arrays(i) for i, g in enumerate(("female", "male", "neutral"))}
    pickles = official_pickles(tmp, arrays)
    assert b"chumpy.ch" in pickles["male"] and b"scipy.sparse.csc" in pickles["male"]
    zip_path = tmp / "SMPL_python_v.1.1.0.zip"
    with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for gender, data in pickles.items():
            zf.writestr(V11_NAMES[gender], data)
        zf.writestr("SMPL_python_v.1.1.0/readme.txt", "licence text")
    return arrays, pickles, zip_path


def test_gender_from_official_names():
    assert gender_from_name("basicModel_f_lbs_10_207_0_v1.0.0.pkl") == "female"
    assert gender_from_name("basicmodel_m_lbs_10_207_0_v1.0.0.pkl") == "male"
    assert gender_from_name("smpl/models/basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl") == "neutral"
    assert gender_from_name("basicModel_neutral_lbs_10_207_0_v1.0.0.pkl") == "neutral"
    assert gender_from_name("SMPL_FEMALE.pkl") == "female"
    assert gender_from_name("SMPL_MALE.pkl") == "male"
    assert gender_from_name("gmm_08.pkl") is None
    assert gender_from_name("SMPLH_male.pkl") is None and gender_from_name("SMPLX_FEMALE.pkl") is None


def test_import_from_official_zip_loads_in_smplx(official_like, tmp_path):
    import smplx
    import torch

    arrays, _, zip_path = official_like
    assert "chumpy" not in sys.modules
    layout = DataLayout(tmp_path / "data")
    report = import_smpl([zip_path], layout)
    assert "chumpy" not in sys.modules  # nothing imported chumpy
    assert set(report.written) == {"female", "male", "neutral"} and report.missing == []
    for gender in ("female", "male", "neutral"):
        path = layout.smpl_model(gender)
        plain = load_pickle(path)  # the output itself passes the restricted loader
        np.testing.assert_array_equal(plain["J_regressor"], arrays[gender]["J_regressor"])
        np.testing.assert_array_equal(plain["v_template"], arrays[gender]["v_template"])
        model = smplx.SMPL(model_path=str(layout.smpl_dir), gender=gender)
        betas = torch.tensor([[0.5, -1.0, 0, 0, 0, 0, 0, 0, 0, 2.0]])
        out = model(betas=betas)
        # zero pose: vertices = template + shape blend (posedirs contribute nothing at identity rotations)
        expected = arrays[gender]["v_template"] + arrays[gender]["shapedirs"] @ betas[0].double().numpy()
        np.testing.assert_allclose(out.vertices[0].detach().numpy(), expected, atol=1e-5)
        np.testing.assert_array_equal(model.parents.numpy(), SMPL_PARENTS)


def test_single_pickle_and_folder_sources_and_missing_genders(official_like, tmp_path):
    _, pickles, _ = official_like
    src = tmp_path / "src"
    src.mkdir()
    single = src / "basicModel_neutral_lbs_10_207_0_v1.0.0.pkl"  # the SMPLify file name
    single.write_bytes(pickles["neutral"])
    report = import_smpl([single], DataLayout(tmp_path / "a"))
    assert list(report.written) == ["neutral"]
    assert report.missing == ["male", "female"]
    hint = report.missing_hint()
    assert "smpl.is.tue.mpg.de" in hint and "male" in hint
    (src / "basicmodel_m_lbs_10_207_0_v1.0.0.pkl").write_bytes(pickles["male"])
    (src / "basicModel_f_lbs_10_207_0_v1.0.0.pkl").write_bytes(pickles["female"])
    folder_report = import_smpl([src], DataLayout(tmp_path / "b"))
    assert set(folder_report.written) == {"neutral", "male", "female"}


def test_protocol0_pickle_with_reconstructor(tmp_path):
    arrays = _model_arrays(3)
    small = {k: arrays[k] for k in ("v_template", "weights")}
    data = official_pickles(tmp_path, {"male": small}, protocol=0)["male"]
    assert b"copy_reg\n_reconstructor" in data
    loaded = loads_smpl_pickle(data, "test.pkl")
    np.testing.assert_array_equal(loaded["v_template"], arrays["v_template"])


def test_hostile_pickle_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bad = tmp_path / "basicmodel_m_lbs_10_207_0_v1.1.0.pkl"
    bad.write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(UnsafeFileError) as err:
        import_smpl([bad], layout)
    assert "system" in str(err.value) and "\n" not in str(err.value)
    assert not marker.exists()
    assert not layout.smpl_model("male").exists()


def test_zip_slip_entry_is_refused(official_like, tmp_path):
    _, pickles, _ = official_like
    evil_zip = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil_zip, "w") as zf:
        zf.writestr("../../outside/basicmodel_f_lbs_10_207_0_v1.1.0.pkl", pickles["female"])
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(UnsafeFileError, match="outside the archive"):
        import_smpl([evil_zip], layout)
    assert not (tmp_path / "outside").exists() and not layout.smpl_dir.exists()
    abs_zip = tmp_path / "abs.zip"
    with zipfile.ZipFile(abs_zip, "w") as zf:
        zf.writestr("/tmp/basicmodel_f_lbs_10_207_0_v1.1.0.pkl", pickles["female"])
    with pytest.raises(UnsafeFileError):
        import_smpl([abs_zip], layout)


def test_corrupt_zip_and_wrong_kind_of_pickle(official_like, tmp_path):
    _, _, zip_path = official_like
    truncated = tmp_path / "SMPL_python_v.1.1.0.zip"
    truncated.write_bytes(zip_path.read_bytes()[:5000])
    layout = DataLayout(tmp_path / "data")
    with pytest.raises(BadFileError, match="zip"):
        import_smpl([truncated], layout)
    gmm_like = tmp_path / "SMPL_MALE.pkl"
    gmm_like.write_bytes(pickle.dumps({"means": np.zeros((8, 69)), "weights": np.ones(8) / 8}, protocol=2))
    with pytest.raises(BadFileError, match="not an SMPL model"):
        import_smpl([gmm_like], layout)
    mano_like = tmp_path / "SMPL_NEUTRAL.pkl"
    small = _model_arrays(5)
    small["v_template"] = small["v_template"][:778]
    mano_like.write_bytes(pickle.dumps(small, protocol=2))
    with pytest.raises(BadFileError, match="v_template has shape"):
        import_smpl([mano_like], layout)
    assert not layout.smpl_dir.exists() or not any(layout.smpl_dir.iterdir())


def test_bad_sources_are_one_line_errors(tmp_path):
    with pytest.raises(MissingFileError):
        import_smpl([tmp_path / "nope.zip"], DataLayout(tmp_path))
    unnamed = tmp_path / "model.pkl"
    unnamed.write_bytes(pickle.dumps({}, protocol=2))
    with pytest.raises(GtacliError, match="gender"):
        import_smpl([unnamed], DataLayout(tmp_path))
    empty_zip = tmp_path / "empty.zip"
    with zipfile.ZipFile(empty_zip, "w") as zf:
        zf.writestr("readme.txt", "x")
    with pytest.raises(BadFileError, match="no SMPL model file"):
        import_smpl([empty_zip], DataLayout(tmp_path))


def test_written_pickle_holds_only_plain_data(official_like, tmp_path):
    arrays, pickles, _ = official_like
    src = tmp_path / "basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl"
    src.write_bytes(pickles["neutral"])
    layout = DataLayout(tmp_path / "d")
    import_smpl([src], layout)
    raw = layout.smpl_model("neutral").read_bytes()
    assert b"chumpy" not in raw and b"scipy" not in raw
    plain = pickle.load(io.BytesIO(raw))  # our own freshly written file, plain numpy only
    assert plain["posedirs"].shape == (N_V, 3, 207) and plain["f"].dtype == np.uint32


def test_official_pickles_are_read_in_place_where_mmhuman3d_keeps_them(official_like, tmp_path):
    """mmhuman3d's docs rename the official files to body_models/smpl/SMPL_<GENDER>.pkl: they load as they are."""
    from gtacli.assets.layout_check import check_layout
    from gtacli.body.smpl import BodyModel, load_smpl_arrays

    arrays, pickles, _ = official_like
    layout = DataLayout(tmp_path / "data")
    layout.smpl_dir.mkdir(parents=True)
    for gender in ("male", "female", "neutral"):
        layout.smpl_model(gender).write_bytes(pickles[gender])  # what mmhuman3d's docs tell users to do
    assert "scipy" not in sys.modules and "chumpy" not in sys.modules
    for gender in ("male", "female", "neutral"):
        loaded = load_smpl_arrays(layout.smpl_model(gender))
        # the csc J_regressor densified exactly, chumpy values unwrapped
        np.testing.assert_array_equal(loaded["J_regressor"], arrays[gender]["J_regressor"])
        np.testing.assert_array_equal(loaded["shapedirs"], arrays[gender]["shapedirs"])
        item = {i.item: i for i in check_layout(layout.root, "eval-pw3d").items}[f"SMPL {gender}"]
        assert item.ok and "read in place" in item.detail, item.detail
    assert "scipy" not in sys.modules and "chumpy" not in sys.modules
    model = BodyModel(load_smpl_arrays(layout.smpl_model("male")), gender="male")
    import torch

    betas = torch.tensor([[0.5, -1.0, 0, 0, 0, 0, 0, 0, 0, 2.0]])
    out = model(betas, torch.zeros(1, 69), torch.zeros(1, 3))
    expected = arrays["male"]["v_template"] + arrays["male"]["shapedirs"] @ betas[0].double().numpy()
    np.testing.assert_allclose(out.vertices[0].numpy(), expected, atol=1e-4)
    report = import_smpl([layout.smpl_model("male")], layout)  # `fetch --smpl-from` still converts in place
    assert report.written == {"male": str(layout.smpl_model("male"))}
    assert b"chumpy" not in layout.smpl_model("male").read_bytes()


def test_hostile_pickle_in_the_smpl_folder_is_still_refused(tmp_path):
    from gtacli.body.smpl import load_smpl_arrays

    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    layout = DataLayout(tmp_path / "data")
    layout.smpl_dir.mkdir(parents=True)
    layout.smpl_model("neutral").write_bytes(pickle.dumps({"v_template": Evil()}, protocol=2))
    with pytest.raises(UnsafeFileError, match="posix.system|os.system"):
        load_smpl_arrays(layout.smpl_model("neutral"))
    assert not (tmp_path / "pwned").exists()
