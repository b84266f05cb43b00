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
