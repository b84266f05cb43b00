"""`--amp` on the engine layer: the torch engine under autocast (bfloat16 on the CPU), what `auto` resolves to with
it, the refusals, and the warning on a CPU that would emulate bfloat16."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_fixtures import image_dependent_checkpoint

from gtacli.errors import UsageError
from gtacli.layout import DataLayout
from gtacli.model import engines
from gtacli.model.engines import TorchEngine, cpu_has_bfloat16_units, load_engine, resolve_engine

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, sample_tree) -> Path:
    return image_dependent_checkpoint(sample_tree, tmp_path_factory.mktemp("ckpt") / "random.pth")


def test_amp_resolves_to_torch_and_refuses_onnxruntime():
    assert resolve_engine("auto", CPU, amp=True) == "torch"  # even where gtacli[onnx] is installed
    assert resolve_engine("torch", CPU, amp=True) == "torch"
    assert resolve_engine("auto", torch.device("cuda:0"), amp=True) == "torch"
    for engine, checkpoint in (("onnxruntime", None), ("auto", "model.onnx"), ("onnxruntime", "model.onnx")):
        with pytest.raises(UsageError, match="--amp runs the torch engine"):
            resolve_engine(engine, CPU, checkpoint, amp=True)


def test_the_bfloat16_probe_agrees_with_the_kernels_cpu_flags():
    cpuinfo = Path("/proc/cpuinfo")
    if not cpuinfo.is_file():
        pytest.skip("the CPU's flags are read from /proc/cpuinfo (Linux)")
    flags = set()
    for line in cpuinfo.read_text().splitlines():
        if line.startswith("flags"):
            flags.update(line.split(":", 1)[1].split())
    answer = cpu_has_bfloat16_units()
    if answer is None:
        pytest.skip("this torch has no CPU feature probes")
    assert answer == bool({"amx_tile", "avx512_bf16"} & flags)


def test_amp_engine_runs_bfloat16_and_returns_float32(sample_tree, checkpoint):
    layout = DataLayout(sample_tree)
    plain = load_engine(checkpoint, layout, CPU, "torch")
    amp = load_engine(checkpoint, layout, CPU, "auto", amp=True)
    assert isinstance(amp, TorchEngine) and amp.amp and not plain.amp
    assert amp.info.precision == "bfloat16" and plain.info.precision == "float32"
    assert "; --amp: bfloat16 autocast)" in amp.info.detail
    assert amp.info.to_json()["precision"] == "bfloat16"
    torch.manual_seed(1)
    img = torch.randn(2, 3, 224, 224).contiguous(memory_format=plain.memory_format)
    full, reduced = plain(img), amp(img)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        expected = amp.model(img)  # the same module under autocast, called here directly
    for key in ("pred_pose", "pred_shape", "pred_cam"):
        assert reduced[key].dtype == torch.float32 and reduced[key].shape == full[key].shape
        torch.testing.assert_close(reduced[key], expected[key].float(), rtol=0, atol=1e-6)
    # and it is not float32's result (the random weights here magnify bfloat16's rounding: no bound is
    # claimed from them; the figures for --amp are the benchmark's)
    assert (reduced["pred_pose"] - full["pred_pose"]).abs().max().item() > 1e-4


def test_amp_on_a_cpu_without_bfloat16_units_says_it_will_be_slower(sample_tree, checkpoint, monkeypatch):
    said = []
    # the probe reads the CPU's flags; this machine's answer is whatever it is, so both answers are given here
    monkeypatch.setattr(engines, "cpu_has_bfloat16_units", lambda: False)
    load_engine(checkpoint, DataLayout(sample_tree), CPU, "auto", amp=True, info=said.append)
    assert len(said) == 1 and "no bfloat16 units" in said[0] and "slower" in said[0]
    monkeypatch.setattr(engines, "cpu_has_bfloat16_units", lambda: True)
    said.clear()
    load_engine(checkpoint, DataLayout(sample_tree), CPU, "auto", amp=True, info=said.append)
    load_engine(checkpoint, DataLayout(sample_tree), CPU, "torch", info=said.append)  # no --amp: nothing
    assert said == []
