"""`gtacli fetch` from the command line: results, exit codes, one-line errors, concurrent runs.

The download server is the fault-injecting local HTTP server of tests/assets/fault_server.py; the real
manifest URLs are pointed at it with --mirror.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "assets"))
from fault_server import FaultServer  # noqa: E402

from gtacli.assets.manifest import load_manifest  # noqa: E402
from gtacli.cli.app import app  # noqa: E402

LOG_TEXT = b"mmhuman3d training log line\n" * 20000
QUICK = {"GTACLI_MIRROR": "", "GTACLI_FETCH_RETRIES": "2", "GTACLI_FETCH_BACKOFF_S": "0.01"}


def _fetch(args, expect, env=None):
    result = CliRunner().invoke(app, ["fetch", *[str(a) for a in args]], env={**QUICK, **(env or {})})
    assert result.exit_code == expect, (result.exit_code, result.stdout[-2000:], result.stderr[-2000:])
    return result


def _error_lines(result):
    return [line for line in result.stderr.splitlines() if line.startswith("error:")]


@pytest.fixture()
def server():
    with FaultServer() as srv:
        yield srv


def test_nothing_to_fetch_is_a_usage_error(tmp_path):
    result = _fetch(["--data-root", tmp_path], expect=2)
    assert "nothing to fetch" in result.stderr


def test_unknown_group_is_a_usage_error(tmp_path):
    result = _fetch(["--group", "extra", "--data-root", tmp_path], expect=2)
    assert "unknown asset group 'extra'" in result.stderr and "extras" in result.stderr


def test_unknown_asset_name_is_one_line(tmp_path):
    result = _fetch(["J_regresor_extra", "--data-root", tmp_path], expect=2)  # a usage error (README)
    lines = _error_lines(result)
    assert len(lines) == 1 and "unknown asset name 'J_regresor_extra'" in lines[0]
    assert "did you mean J_regressor_extra" in lines[0]
    assert not any(tmp_path.iterdir())


def test_dry_run_json_lists_every_asset_without_network(tmp_path):
    result = _fetch(
        ["--all", "--dry-run", "--json", "--data-root", tmp_path, "--mirror", "http://127.0.0.1:9"], 0
    )
    doc = json.loads(result.stdout)
    names = [f["name"] for f in doc["files"]]
    assert names == load_manifest().names
    assert all(f["status"] == "would-download" for f in doc["files"])
    assert doc["files"][0]["url"].startswith("http://127.0.0.1:9/mmhuman3d/")
    assert not any(tmp_path.iterdir())


def test_fetch_then_verify_only_json(server, tmp_path):
    manifest = load_manifest()
    asset = manifest.get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, content_md5=True)
    result = _fetch([asset.name, "--mirror", server.url, "--data-root", tmp_path, "--json"], 0)
    doc = json.loads(result.stdout)  # exactly one JSON document
    (entry,) = doc["files"]
    assert entry["status"] == "downloaded" and entry["verified_by"] == "Content-MD5"
    assert entry["sha256"] == hashlib.sha256(LOG_TEXT).hexdigest()
    assert (tmp_path / asset.dest).read_bytes() == LOG_TEXT
    verify = json.loads(_fetch([asset.name, "--verify-only", "--data-root", tmp_path, "--json"], 0).stdout)
    assert verify["files"][0]["status"] == "ok" and "lock file" in verify["files"][0]["verified_by"]
    (tmp_path / asset.dest).write_bytes(LOG_TEXT[:-5])
    bad = _fetch([asset.name, "--verify-only", "--data-root", tmp_path], 1)
    assert len(_error_lines(bad)) == 1 and "lock-file" in _error_lines(bad)[0]


def test_verify_only_of_an_absent_file_names_the_file_and_the_fix(tmp_path):
    result = _fetch(["gmm_08", "--verify-only", "--data-root", tmp_path], 1)
    (line,) = _error_lines(result)
    dest = tmp_path / load_manifest().get("gmm_08").dest
    assert str(dest) in line and "not downloaded" in line and "Fix: gtacli fetch gmm_08" in line
    assert not tmp_path.joinpath(".gtacli-locks").exists() and not dest.exists()  # verifying writes nothing


def test_mirror_from_environment(server, tmp_path):
    asset = load_manifest().get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT)
    _fetch(
        [asset.name, "--data-root", tmp_path], 0, env={"GTACLI_MIRROR": f"http://127.0.0.1:9, {server.url}"}
    )
    assert (tmp_path / asset.dest).read_bytes() == LOG_TEXT


def test_unreachable_mirror_fails_with_one_line_per_file(tmp_path):
    result = _fetch(["gmm_08", "--mirror", "http://127.0.0.1:9", "--data-root", tmp_path], 1)
    lines = _error_lines(result)
    assert len(lines) == 1
    assert "gmm_08" in lines[0] and "127.0.0.1:9" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / "gmm_08.pkl").exists()


def _read_only_root(tmp_path: Path) -> Path:
    if os.geteuid() != 0:
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        return ro / "data"
    # root ignores permission bits; sysfs refuses new entries even to root
    candidate = Path("/sys/gtacli-test-data-root")
    try:
        candidate.mkdir()
    except OSError:
        return candidate
    candidate.rmdir()
    pytest.skip("no read-only location available")


def test_read_only_data_root_is_one_line(tmp_path):
    root = _read_only_root(tmp_path)
    result = _fetch(["gmm_08", "--data-root", root], 1)
    lines = _error_lines(result)
    assert len(lines) == 1 and "cannot write to the data root" in lines[0] and "--data-root" in lines[0]


def test_smpl_import_errors_are_one_line_and_leave_nothing(tmp_path):
    root = tmp_path / "data"
    corrupt = tmp_path / "SMPL_python_v.1.1.0.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    result = _fetch(["--smpl-from", corrupt, "--data-root", root], 1)
    lines = _error_lines(result)
    assert len(lines) == 1 and "zip" in lines[0] and str(corrupt) in lines[0]
    wrong = tmp_path / "SMPL_MALE.pkl"
    np.save(tmp_path / "x.npy", np.zeros(3))
    wrong.write_bytes((tmp_path / "x.npy").read_bytes())  # an .npy, not a pickle of a model
    result = _fetch(["--smpl-from", wrong, "--data-root", root], 1)
    assert len(_error_lines(result)) == 1 and str(wrong) in _error_lines(result)[0]
    slip = tmp_path / "slip.zip"
    with zipfile.ZipFile(slip, "w") as zf:
        zf.writestr("../basicmodel_m_lbs_10_207_0_v1.1.0.pkl", b"irrelevant")
    result = _fetch(["--smpl-from", slip, "--data-root", root], 1)
    assert "outside the archive" in _error_lines(result)[0]
    assert not (root / "body_models" / "smpl").exists() or not any((root / "body_models" / "smpl").iterdir())


@pytest.mark.slow
def test_two_concurrent_fetch_runs_do_not_corrupt_each_other(server, tmp_path):
    manifest = load_manifest()
    asset = manifest.get("resnet50_spin_gta_ft_log")
    data = LOG_TEXT * 4
    server.add(asset.url, data, content_md5=True, sticky_fault=("slow", 0.03))
    root = tmp_path / "data"
    cmd = [
        sys.executable,
        "-m",
        "gtacli",
        "fetch",
        asset.name,
        "--mirror",
        server.url,
        "--data-root",
        str(root),
        "--json",
    ]
    env = {**os.environ, **QUICK}
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env) for _ in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [o[1].decode()[-500:] for o in outs]
    statuses = sorted(json.loads(o[0])["files"][0]["status"] for o in outs)
    # one run downloaded, the other waited for the lock and found the verified file
    assert statuses == ["downloaded", "present"]
    assert (root / asset.dest).read_bytes() == data
    assert len(server.requests_for(asset.url)) == 1
    assert not list((root / "models").glob("*.part*"))
    lock = json.loads((root / "gtacli.lock.json").read_text())
    assert lock["files"][asset.name]["sha256"] == hashlib.sha256(data).hexdigest()


def test_an_announced_size_beyond_the_expected_is_one_line_and_leaves_nothing(server, tmp_path):
    asset = load_manifest().get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT, sticky_fault=("length", 1 << 60))  # an exabyte: no log is that long
    result = _fetch([asset.name, "--mirror", server.url, "--data-root", tmp_path], 1)
    lines = _error_lines(result)
    assert len(lines) == 1 and "more than the expected" in lines[0] and "Fix:" in lines[0]
    assert not (tmp_path / asset.dest).exists() and not list(tmp_path.rglob("*.part"))


def test_parallel_jobs_with_progress_bars(server, tmp_path):
    manifest = load_manifest()
    names = ["resnet50_spin_gta_ft_log", "lsp_fits", "coco_fits"]
    fits = io_npy(np.zeros((3, 82)))
    server.add(manifest.get(names[0]).url, LOG_TEXT, content_md5=True)
    for name in names[1:]:
        server.add(manifest.get(name).url, fits, content_md5=True, faults=[("cut", 100)])
    result = _fetch(
        [*names, "--jobs", "3", "--mirror", server.url, "--data-root", tmp_path], 0, {"GTACLI_PROGRESS": "1"}
    )
    assert result.stdout.count("downloaded") == 3
    assert (tmp_path / "static_fits" / "coco_fits.npy").read_bytes() == fits


def io_npy(arr) -> bytes:
    import io

    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("mirror", ["http://nonexistent.invalid", "http://127.0.0.1:9"])
def test_offline_fetch_all_gives_up_on_dead_hosts_at_once(tmp_path, mirror):
    """A real subprocess with the default retries (5, backoff 1 s): an unresolvable name and a closed port are
    tried once for the whole run; one summary line, each cause once, an 80-column table, in seconds."""
    import time

    env = {k: v for k, v in os.environ.items() if not k.startswith("GTACLI_FETCH_")}
    env.update(GTACLI_MIRROR="", COLUMNS="80", PYTHONPATH=str(Path(__file__).resolve().parents[2]))
    started = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "fetch", "--all", "--mirror", mirror, "--data-root", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    assert proc.returncode == 1, proc.stderr
    n = len(load_manifest().assets)
    assert seconds < 30, seconds  # before: ~3 minutes of retries with backoff
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    from urllib.parse import urlsplit

    hosts = {urlsplit(a.url).netloc for a in load_manifest().assets}
    assert len(errors) == len(hosts), proc.stderr  # each cause (dead mirror + dead origin) once, not per file
    assert all(mirror.split("//")[1] in line and "not retried" in line for line in errors)
    assert "retrying" not in proc.stderr
    summary = [line for line in proc.stdout.splitlines() if "fetched," in line]
    assert summary == [f"0 fetched, {n} failed, 0 skipped, 0.0 MB"], proc.stdout
    assert max(len(line) for line in proc.stdout.splitlines()) <= 80


def test_dry_run_lists_size_destination_verification_and_total(tmp_path):
    result = _fetch(["--all", "--dry-run", "--data-root", tmp_path], 0, env={"COLUMNS": "80"})
    assets = load_manifest().assets
    known = sum(a.size or 0 for a in assets)
    doc = json.loads(_fetch(["--all", "--dry-run", "--data-root", tmp_path, "--json"], 0).stdout)
    assert doc["total_bytes"] == known
    assert all(f["verified_by"] for f in doc["files"])
    sha = next(a for a in assets if a.sha256)
    assert next(f for f in doc["files"] if f["name"] == sha.name)["verified_by"].startswith("sha256")
    for asset in assets:
        assert asset.name[:12] in result.stdout  # long names fold inside the 80-column table
    assert f"{len(assets)} to fetch" in result.stdout
    # lines fit 80 columns, except where one path is longer by itself: it is printed whole, never split mid-token
    for line in result.stdout.splitlines():
        assert len(line) <= 80 or len(line.split()[-1]) > 80 - 15, line


def test_positional_group_name_selects_the_group(tmp_path):
    doc = json.loads(_fetch(["extras", "--dry-run", "--data-root", tmp_path, "--json"], 0).stdout)
    expected = [a.name for a in load_manifest().assets if a.group == "extras"]
    assert [f["name"] for f in doc["files"]] == expected


@pytest.mark.parametrize("name, value", [("GTACLI_FETCH_RETRIES", "many"), ("GTACLI_FETCH_TIMEOUT_S", "-1")])
def test_bad_fetch_environment_values_are_usage_errors(tmp_path, name, value):
    result = _fetch(["gmm_08", "--data-root", tmp_path], 2, env={name: value})
    assert name in result.stderr and len(result.stderr.strip().splitlines()) == 1 and not result.stdout


def test_group_help_names_every_manifest_group():
    """The --group help is a user's list of what exists: it must name each group of the manifest."""
    from gtacli.assets.manifest import load_manifest

    help_text = CliRunner().invoke(app, ["fetch", "--help"], env={"COLUMNS": "400"}).stdout
    for group in load_manifest().groups:
        assert group in help_text, group


def test_dry_run_table_has_a_status_per_row(tmp_path):
    """Issue 23: the summary counted 'to fetch' and 'present' but the rows did not say which is which."""
    present = load_manifest().get("gmm_08")
    (tmp_path / present.dest).parent.mkdir(parents=True, exist_ok=True)
    (tmp_path / present.dest).write_bytes(b"placed by hand")
    result = _fetch(["extras", "--dry-run", "--data-root", tmp_path], 0, env={"COLUMNS": "120"})
    rows = {line.split("│")[1].strip(): line.split("│")[2].strip() for line in result.stdout.splitlines()
            if line.startswith("│") and line.split("│")[1].strip()}  # fmt: skip
    extras = [a.name for a in load_manifest().assets if a.group == "extras"]
    assert rows == {name: "present" if name == "gmm_08" else "to fetch" for name in extras}


def test_quiet_prints_only_the_summary_and_the_errors(server, tmp_path):
    asset = load_manifest().get("resnet50_spin_gta_ft_log")
    server.add(asset.url, LOG_TEXT)
    result = _fetch([asset.name, "--quiet", "--mirror", server.url, "--data-root", tmp_path], 0)
    assert result.stdout.splitlines() == [f"1 fetched, 0 failed, 0 skipped, {len(LOG_TEXT) / 1e6:.1f} MB"]
    assert result.stderr == ""
    failed = _fetch(["gmm_08", "--quiet", "--mirror", server.url, "--data-root", tmp_path / "b"], 1)
    assert failed.stdout.splitlines() == ["0 fetched, 1 failed, 0 skipped, 0.0 MB"]
    assert len(_error_lines(failed)) == 1 and "gmm_08" in _error_lines(failed)[0]


def test_an_offline_run_says_unreachable_once_and_leaves_nothing(tmp_path):
    """One line per dead host (not one per row), and no lock files or folders in the empty root."""
    root = tmp_path / "root"
    root.mkdir()
    names = ["gmm_08", "J_regressor_extra", "lsp_fits", "spin_official"]
    result = _fetch(
        [*names, "--mirror", "http://127.0.0.1:9", "--data-root", root], 1, env={"COLUMNS": "100"}
    )
    assert "not retried" not in result.stdout  # the rows point to the error lines
    assert all(name in result.stdout for name in names) and result.stdout.count("see the error below") == 4
    errors = _error_lines(result)
    assert len(errors) == 1 and errors[0].count("127.0.0.1:9: unreachable") == 1
    assert list(root.iterdir()) == []  # no .gtacli-locks/, no empty destination folders


def test_progress_total_counts_the_files_the_manifest_has_no_size_for(server, tmp_path, shared_assets):
    """The total grows by the size each server announces, so the last record reads done == total."""
    manifest = load_manifest()
    server.add(manifest.get("resnet50_spin_gta_ft_log").url, LOG_TEXT)  # no size in the manifest
    gmm = (shared_assets / "gmm_08.pkl").read_bytes()
    server.add(manifest.get("gmm_08").url, gmm)
    env = {
        **os.environ,
        **QUICK,
        "GTACLI_PROGRESS_INTERVAL": "0",
        "PYTHONPATH": str(Path(__file__).parents[2]),
    }
    env.pop("GTACLI_PROGRESS", None)
    proc = subprocess.run(
        [sys.executable, "-m", "gtacli", "fetch", "gmm_08", "resnet50_spin_gta_ft_log", "--mirror", server.url,
         "--data-root", str(tmp_path), "--jobs", "1"],
        capture_output=True, text=True, env=env, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    last = [line for line in proc.stderr.splitlines() if line.startswith("fetch:")][-1]
    done, total = last.split()[1].split("/")
    assert done == total and float(total.removesuffix("M")) == round((len(gmm) + len(LOG_TEXT)) / 1e6, 1), (
        last
    )
