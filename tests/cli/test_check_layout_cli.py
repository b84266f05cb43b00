"""`gtacli check-layout` from the command line: table / JSON, exit codes, red to green, synthetic trees."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
from layout_builder import TreeBuilder  # noqa: E402

from gtacli.cli.app import app  # noqa: E402


def _check(args, expect):
    result = CliRunner().invoke(app, ["check-layout", *[str(a) for a in args]])
    assert result.exit_code == expect, (result.exit_code, result.stdout[-3000:], result.stderr[-2000:])
    return result


def test_json_items_go_red_to_green(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    doc = json.loads(_check(["--for", "demo", "--data-root", b.root, "--json"], 1).stdout)
    assert doc["ok"] is False and doc["job"] == "demo"
    for item in doc["items"]:
        assert {"item", "path", "ok", "detail", "fix"} <= set(item)
        assert item["ok"] is False and item["fix"]
    b.demo()
    doc = json.loads(_check(["--for", "demo", "--data-root", b.root, "--json"], 0).stdout)
    assert doc["ok"] is True and all(i["ok"] for i in doc["items"])


def test_table_names_the_fix_command(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.smpl("neutral")
    result = _check(["--for", "demo", "--data-root", b.root], 1)
    assert "gtacli fetch smpl_mean_params" in result.stdout
    assert "demo: can NOT run" in result.stdout
    b.mean_params()
    b.checkpoint(b.layout.models / "m.pth")
    assert "demo: can run" in _check(["--for", "demo", "--data-root", b.root], 0).stdout


def test_unknown_job_is_a_usage_error(tmp_path):
    result = CliRunner().invoke(app, ["check-layout", "--for", "everything", "--data-root", str(tmp_path)])
    assert result.exit_code == 2 and "unknown job 'everything'" in result.stderr


def test_absent_data_root_is_named_on_stderr_and_json_stays_clean(tmp_path):
    root = tmp_path / "nowhere"
    result = _check(["--for", "demo", "--data-root", root, "--json"], 1)
    doc = json.loads(result.stdout)  # still exactly one JSON document on stdout
    assert doc["ok"] is False and all(not i["ok"] for i in doc["items"])
    assert f"the data root {root} does not exist" in result.stderr and "--data-root" in result.stderr
    assert not root.exists()  # checking creates nothing


def test_synthetic_tree_is_reported_once(tmp_path):
    b = TreeBuilder(tmp_path / "data")
    b.demo()
    b.layout.synthetic_marker.write_text("{}")
    result = _check(["--for", "demo", "--data-root", b.root, "--json"], 0)
    assert json.loads(result.stdout)["synthetic"] is True
    assert result.stderr.count("SYNTHETIC") == 1


def test_sample_tree_passes_for_all(request):
    pytest.importorskip("gtacli.sample.tree", reason="gtacli/sample/tree.py is not built yet")
    root = request.getfixturevalue("sample_tree")
    result = _check(["--for", "all", "--data-root", root, "--json"], 0)
    doc = json.loads(result.stdout)
    assert doc["ok"] and doc["synthetic"]
    assert result.stderr.count("SYNTHETIC") == 1


def _failed_item(b, job: str, name: str) -> dict:
    doc = json.loads(_check(["--for", job, "--data-root", b.root, "--json"], 1).stdout)
    item = {i["item"]: i for i in doc["items"]}[name]
    assert not item["ok"]
    return item


def _rewrite_annotation(path: Path, **changes) -> None:
    import numpy as np

    from gtacli.io.safe import load_npz

    with load_npz(path) as npz:
        fields = {k: npz[k] for k in npz}
    fields.update(changes)
    np.savez_compressed(path, **fields)


@pytest.mark.parametrize("member", ["bbox_xywh", "keypoints2d"])
def test_non_finite_annotation_values_are_reported_per_file(tmp_path, member):
    import numpy as np

    b = TreeBuilder(tmp_path / "data")
    b.eval_pw3d()
    ann = b.layout.annotation("pw3d")
    with np.load(ann) as npz:
        values = np.array(npz[member], dtype=np.float32)
    values[1, 0] = np.nan
    values[3, 0] = np.inf
    _rewrite_annotation(ann, **{member: values})
    item = _failed_item(b, "eval-pw3d", "annotation pw3d")
    assert f"2 of {b.n} frames have NaN/inf values in '{member}'" in item["detail"]


def test_all_nan_static_fits_are_not_ok(tmp_path):
    import numpy as np

    b = TreeBuilder(tmp_path / "data")
    b.finetune()
    np.save(b.layout.static_fits("lsp"), np.full((b.n, 82), np.nan))
    assert f"{b.n} of {b.n} rows hold NaN/inf" in _failed_item(b, "finetune", "static fits lsp")["detail"]


def test_annotation_with_a_member_name_that_leaves_the_cache_is_refused(tmp_path):
    import io
    import zipfile

    import numpy as np

    b = TreeBuilder(tmp_path / "data")
    b.eval_pw3d()
    ann = b.layout.annotation("pw3d")
    buf = io.BytesIO()
    np.lib.format.write_array(buf, np.zeros(3))
    with zipfile.ZipFile(ann, "a") as zf:
        zf.writestr("../../../../escaped_x.npy", buf.getvalue())
    assert "not a plain name" in _failed_item(b, "eval-pw3d", "annotation pw3d")["detail"]
    assert not list(tmp_path.parent.rglob("escaped_x*"))
