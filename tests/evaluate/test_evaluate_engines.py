"""Issue 20: `gtacli eval` with onnxruntime gives the torch engine's 3DPW metrics within 0.01 mm on the sample
tree, says which engine ran, and reuses the cached export on the next run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from engine_fixtures import image_dependent_checkpoint, writable_root

from gtacli.evaluate.runner import EvalConfig, run_evaluation

pytest.importorskip("onnx", reason="the ONNX engine needs gtacli[onnx]")
pytest.importorskip("onnxruntime", reason="the ONNX engine needs gtacli[onnx]")


@pytest.mark.slow
def test_onnxruntime_3dpw_metrics_equal_torch_within_0_01_mm(tmp_path: Path, sample_tree: Path) -> None:
    layout = writable_root(sample_tree, tmp_path / "data")
    checkpoint = image_dependent_checkpoint(sample_tree, tmp_path / "random.pth")

    def run(engine: str):
        config = EvalConfig(
            dataset="pw3d",
            checkpoint=checkpoint,
            data_root=layout.root,
            batch_size=3,
            workers=1,
            engine=engine,
        )
        return run_evaluation(config).to_json()

    torch_doc, onnx_doc = run("torch"), run("onnxruntime")
    assert torch_doc["engine"] == "torch" and torch_doc["layout"] == "channels-last"
    assert onnx_doc["engine"] == "onnxruntime" and onnx_doc["layout"] == "NCHW"
    assert onnx_doc["engine_info"]["onnx_source"] == "exported"
    assert onnx_doc["checkpoint_sha256"] == torch_doc["checkpoint_sha256"]
    assert onnx_doc["frames"] == torch_doc["frames"] >= 8
    for name in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"):
        assert torch_doc[name] > 1.0  # real errors, not a degenerate zero
        assert abs(onnx_doc[name] - torch_doc[name]) < 0.01, name
    for a, b in zip(onnx_doc["per_sequence"], torch_doc["per_sequence"]):
        assert all(abs(a[m] - b[m]) < 0.01 for m in ("mpjpe_mm", "pa_mpjpe_mm", "pve_mm"))
    again = run("auto")  # auto on the CPU with gtacli[onnx]: onnxruntime, from the cache this time
    assert again["engine"] == "onnxruntime" and again["engine_info"]["onnx_source"] == "cache"
    assert again["mpjpe_mm"] == onnx_doc["mpjpe_mm"]
    assert torch.get_num_threads() == onnx_doc["engine_info"]["threads"]
