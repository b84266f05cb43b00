"""A hostile annotation reached through `gtacli eval`: a member name that would leave the memory-mapped cache
is refused with one line, exit 1, and nothing is written outside the data root."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.data import human_data
from gtacli.layout import DataLayout


@pytest.mark.slow
def test_eval_refuses_an_annotation_whose_member_escapes_the_cache(sample_tree, tmp_path, monkeypatch):
    root = tmp_path / "data"
    root.mkdir()
    for name in ("body_models", "datasets", "pretrained_models", "SYNTHETIC_DATA.json"):
        (root / name).symlink_to(sample_tree / name)
    layout = DataLayout(root)
    layout.preprocessed.mkdir()
    ann = layout.preprocessed / "pw3d_test.npz"
    ann.write_bytes(DataLayout(sample_tree).annotation("pw3d").read_bytes())
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.full(4, 7.0))
    with zipfile.ZipFile(ann, "a") as zf:
        zf.writestr("../../../../../escaped_eval.npy", buf.getvalue())
    monkeypatch.setattr(human_data, "CACHE_MIN_BYTES", 1)  # the >= 64 MiB path, reached with a small file
    result = CliRunner().invoke(
        app,
        ["eval", "--dataset", "pw3d", "--data-root", str(root), "--checkpoint",
         str(layout.spin_official), "--limit", "2", "--workers", "0", "--device", "cpu"],
    )  # fmt: skip
    errors = [line for line in result.stderr.splitlines() if line.startswith("error")]
    assert result.exit_code == 1 and len(errors) == 1, result.stderr
    assert "not a plain name" in errors[0] and str(ann) in errors[0]
    assert not list(tmp_path.parent.rglob("escaped_eval*")) and not list(root.rglob("escaped_eval*"))
