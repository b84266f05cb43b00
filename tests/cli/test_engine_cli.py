"""Issue 20 end to end from the CLI: `gtacli export` writes a verified model; eval, demo and `fit --init` run with
each engine and say which ran; bad ONNX files, a failing verification and a missing onnxruntime are one line."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest
from engine_fixtures import image_dependent_checkpoint, writable_root
from onnx_bytes import relu_model
from typer.testing import CliRunner

from gtacli.cli.app import app

pytest.importorskip("onnx", reason="the ONNX engine needs gtacli[onnx]")
pytest.importorskip("onnxruntime", reason="the ONNX engine needs gtacli[onnx]")

BOX = "100,40,120,160"


def _run(*args: str):
    result = CliRunner().invoke(app, [str(a) for a in args])
    return result, result.stdout, result.stderr


@pytest.fixture(scope="module")
def setup(tmp_path_factory, sample_tree):
    """A writable data root, an image-dependent checkpoint and its export by `gtacli export` (done once)."""
    base = tmp_path_factory.mktemp("engines")
    layout = writable_root(sample_tree, base / "data")
    checkpoint = image_dependent_checkpoint(sample_tree, base / "random.pth")
    model = base / "model.onnx"
    result, stdout, stderr = _run("export", checkpoint, "--output", model, "--data-root", layout.root)
    assert result.exit_code == 0, stderr
    return {"root": layout.root, "checkpoint": checkpoint, "onnx": model, "stdout": stdout, "base": base}


@pytest.mark.slow
def test_export_writes_a_verified_model_and_eval_runs_it_as_given(setup):
    verified = next(line for line in setup["stdout"].splitlines() if line.startswith("verified"))
    assert "onnxruntime vs torch on 4 crops of pw3d_test.npz: largest difference" in verified
    assert "dynamic batch axis" in setup["stdout"] and setup["onnx"].stat().st_size > 50e6
    result, stdout, stderr = _run(
        "eval", "--checkpoint", setup["onnx"], "--data-root", setup["root"], "--limit", "3", "--json"
    )
    assert result.exit_code == 0, stderr
    doc = json.loads(stdout)
    assert doc["engine"] == "onnxruntime" and doc["engine_info"]["onnx_source"] == "given"
    assert doc["engine_info"]["verification"]["crops"] == 4
    assert doc["checkpoint_format"] == "onnx export of a gtacli"
    # human output names the engine and its exactness, as it names the layout
    result, stdout, stderr = _run(
        "eval", "--checkpoint", setup["onnx"], "--data-root", setup["root"], "--limit", "2"
    )
    engine_line = next(line for line in stdout.splitlines() if line.startswith("engine"))
    assert "onnxruntime" in engine_line and "within 0.01 mm" in engine_line and "as given" in engine_line


@pytest.mark.slow
def test_torchscript_export_reloads_and_matches(setup, tmp_path):
    import torch

    target = tmp_path / "model.pt"
    result, stdout, stderr = _run(
        "export",
        setup["checkpoint"],
        "--format",
        "torchscript",
        "-o",
        target,
        "--data-root",
        setup["root"],
        "--json",
    )
    assert result.exit_code == 0, stderr
    doc = json.loads(stdout)
    assert doc["format"] == "torchscript" and doc["verification"]["max_abs_diff"] <= 1e-3
    extra = {"gtacli.json": ""}
    with pytest.warns(DeprecationWarning):  # torch.jit.load announces torch.export
        loaded = torch.jit.load(str(target), _extra_files=extra)
    assert json.loads(extra["gtacli.json"])["checkpoint_sha256"] == doc["checkpoint_sha256"]
    assert [t.shape for t in loaded(torch.zeros(3, 3, 224, 224))] == [(3, 24, 3, 3), (3, 10), (3, 3)]


@pytest.mark.slow
def test_failed_verification_writes_nothing_and_prints_the_largest_difference(setup, tmp_path):
    target = tmp_path / "model.onnx"
    result, stdout, stderr = _run(
        "export", setup["checkpoint"], "-o", target, "--data-root", setup["root"], "--tolerance", "0"
    )
    assert result.exit_code == 1 and stdout == ""
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "differ by up to" in errors[0] and "nothing was written" in errors[0]
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_bad_onnx_files_are_one_line_errors(setup, tmp_path):
    relu = tmp_path / "relu.onnx"
    relu.write_bytes(relu_model())
    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(setup["onnx"].read_bytes()[:100_000])
    for path, problem in (
        (relu, "not a gtacli estimator export: input x"),
        (truncated, "not a readable ONNX model"),
    ):
        result, stdout, stderr = _run(
            "eval", "--checkpoint", path, "--data-root", setup["root"], "--limit", "1"
        )
        assert result.exit_code == 1 and stdout == ""
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and problem in errors[0] and str(path) in errors[0], stderr
    # an ONNX file asked to run in torch, and an export over an existing file
    result, _, stderr = _run("eval", "--checkpoint", relu, "--engine", "torch", "--data-root", setup["root"])
    assert result.exit_code == 2 and "only onnxruntime runs" in stderr
    result, _, stderr = _run("export", setup["checkpoint"], "-o", relu, "--data-root", setup["root"])
    assert result.exit_code == 2 and "--force" in stderr and relu.read_bytes() == relu_model()


@pytest.mark.slow
def test_without_onnxruntime_the_engine_is_exit_2_with_the_install_command(setup, tmp_path):
    # a real process in which `import onnxruntime` fails, as where gtacli[onnx] is not installed
    script = (
        "import sys; sys.modules['onnxruntime'] = None\n"
        "from gtacli.cli.app import main\n"
        "sys.argv = ['gtacli'] + sys.argv[1:]\n"
        "main()\n"
    )
    common = ["--data-root", str(setup["root"]), "--limit", "1", "--workers", "0"]
    for args in (
        ["eval", "--checkpoint", str(setup["checkpoint"]), "--engine", "onnxruntime", *common],
        [
            "export",
            str(setup["checkpoint"]),
            "-o",
            str(tmp_path / "m.onnx"),
            "--data-root",
            str(setup["root"]),
        ],
    ):
        proc = subprocess.run(
            [sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 2, proc.stderr
        assert proc.stderr.count("\n") == 1 and "pip install 'gtacli[onnx]'" in proc.stderr
    # auto falls back to torch
    proc = subprocess.run(
        [sys.executable, "-c", script, "eval", "--checkpoint", str(setup["checkpoint"]), *common, "--json"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["engine"] == "torch"
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_demo_runs_with_each_engine_and_says_which(setup, tmp_path):
    rng = np.random.default_rng(3)
    image = cv2.resize(
        rng.integers(0, 255, (30, 40, 3), dtype=np.uint8), (320, 240), interpolation=cv2.INTER_CUBIC
    )
    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), image)
    results = {}
    for engine in ("torch", "onnxruntime"):
        out = tmp_path / engine
        result, stdout, stderr = _run(
            "demo", photo, "--checkpoint", setup["checkpoint"], "--data-root", setup["root"], "--device", "cpu",
            "--output", out, "--bbox", BOX, "--no-render", "--engine", engine, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, stderr
        summary = json.loads(stdout)
        assert summary["engine"]["name"] == engine
        assert json.loads((out / "results.json").read_text())["engine"]["name"] == engine
        results[engine] = np.load(out / "results.npz")
    for key in ("pred_cam", "pred_betas", "pred_pose"):
        if key in results["torch"]:
            np.testing.assert_allclose(results["onnxruntime"][key], results["torch"][key], atol=1e-4)
    assert "pred_cam" in results["torch"]


@pytest.mark.slow
def test_fit_init_runs_with_each_engine_and_says_which(setup, tmp_path):
    payloads = {}
    for engine in ("torch", "onnxruntime"):
        target = tmp_path / f"{engine}.npy"
        result, stdout, stderr = _run(
            "fit", "--data-root", setup["root"], "--dataset", "lsp", "--limit", "2", "--iterations", "1",
            "--init", setup["checkpoint"], "--engine", engine, "--output", target, "--json",
        )  # fmt: skip
        assert result.exit_code == 0, stderr
        payloads[engine] = json.loads(stdout)
        assert payloads[engine]["engine"]["name"] == engine
    fits = [np.load(tmp_path / f"{e}.npy") for e in ("torch", "onnxruntime")]
    np.testing.assert_allclose(fits[0], fits[1], atol=1e-3)
    result, _, stderr = _run(
        "fit",
        "--data-root",
        setup["root"],
        "--dataset",
        "lsp",
        "--init",
        setup["checkpoint"],
        "--engine",
        "nope",
    )
    assert result.exit_code == 2 and "not an engine" in stderr


@pytest.mark.slow
def test_amp_runs_the_torch_engine_in_reduced_precision_and_says_so(setup, tmp_path):
    common = ["--checkpoint", setup["checkpoint"], "--data-root", setup["root"], "--limit", "3"]
    result, stdout, stderr = _run("eval", *common, "--engine", "torch", "--json")
    assert result.exit_code == 0, stderr
    full = json.loads(stdout)
    # auto with --amp: torch (onnxruntime runs the float32 export), bfloat16 on the CPU, never called exact
    result, stdout, stderr = _run("eval", *common, "--amp", "--json")
    assert result.exit_code == 0, stderr
    doc = json.loads(stdout)
    assert doc["engine"] == "torch" and doc["engine_info"]["precision"] == "bfloat16"
    assert doc["amp"] is True and doc["exact"] is False
    assert "bfloat16 autocast (--amp: not the exact numbers)" in stderr
    assert 0 < abs(doc["mpjpe_mm"] - full["mpjpe_mm"]) < 1.0  # moved, by less than a millimetre
    assert full["engine_info"]["precision"] == "float32" and full["exact"] is True
    result, stdout, stderr = _run("eval", *common, "--amp")
    engine_line = next(line for line in stdout.splitlines() if line.startswith("engine"))
    assert "--amp: bfloat16 autocast" in engine_line and "not exact" in stdout

    photo = tmp_path / "photo.png"
    cv2.imwrite(str(photo), np.full((240, 320, 3), 128, np.uint8))
    out = tmp_path / "demo"
    result, stdout, stderr = _run(
        "demo", photo, "--checkpoint", setup["checkpoint"], "--data-root", setup["root"], "--device", "cpu",
        "--output", out, "--bbox", BOX, "--no-render", "--amp", "--json",
    )  # fmt: skip
    assert result.exit_code == 0, stderr
    assert json.loads(stdout)["engine"]["precision"] == "bfloat16"
    assert json.loads((out / "results.json").read_text())["engine"]["name"] == "torch"

    # onnxruntime runs float32 only: --amp with it is a usage error, one line, nothing written
    for args in (
        ["eval", *common, "--engine", "onnxruntime", "--amp"],
        ["eval", "--checkpoint", setup["onnx"], "--data-root", setup["root"], "--amp"],
        ["demo", photo, "--checkpoint", setup["checkpoint"], "--data-root", setup["root"], "--bbox", BOX,
         "--output", tmp_path / "refused", "--engine", "onnxruntime", "--amp"],
    ):  # fmt: skip
        result, stdout, stderr = _run(*args)
        errors = [line for line in stderr.splitlines() if line.startswith("error:")]
        assert result.exit_code == 2 and len(errors) == 1 and "--amp runs the torch engine" in errors[0]
    assert not (tmp_path / "refused").exists()
