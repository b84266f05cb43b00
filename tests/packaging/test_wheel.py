"""A non-editable install works: the wheel carries every runtime data file and the CLI runs from it alone.

Builds the wheel as an index would serve it, installs it into a plain folder (no editable hook, no source tree
on the path) and runs the commands that read package data, from a working folder outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Dict, List

import pytest

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def _git_files(*args: str) -> List[str]:
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout to list the project's files")
    return subprocess.run(
        ["git", "-C", str(REPO), "ls-files", *args], capture_output=True, text=True, check=True
    ).stdout.splitlines()


def _tracked_package_data() -> List[str]:
    """Every file under gtacli/ that git tracks and that is not Python source: what the package opens."""
    return sorted(p for p in _git_files("gtacli") if not p.endswith(".py"))


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Dict[str, Path]:
    """The wheel built from a clean copy of the checkout and a folder it is installed into (`--target`).

    The copy holds what a fresh clone would (tracked and new, not ignored, files): a build in the checkout itself
    would reuse a stale build/ or *.egg-info/SOURCES.txt there and carry files a clean build leaves out.
    """
    tmp = tmp_path_factory.mktemp("wheel")
    source = tmp / "source"
    for name in _git_files("--cached", "--others", "--exclude-standard"):
        if (REPO / name).is_file():
            (source / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, source / name)
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
    )
    if build.returncode != 0 and "No module named" in build.stderr and "setuptools" in build.stderr:
        pytest.skip("setuptools is not installed (needed to build without isolation)")
    assert build.returncode == 0, build.stderr[-3000:]
    wheels = list(tmp.glob("gtacli-*.whl"))
    assert len(wheels) == 1, wheels
    site = tmp / "site"
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            "--no-index",
            "--target",
            str(site),
            str(wheels[0]),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    run_dir = tmp / "elsewhere"  # the working folder of the commands: neither the checkout nor the copy
    run_dir.mkdir()
    return {"wheel": wheels[0], "site": site, "cwd": run_dir}


def _run_installed(installed: Dict[str, Path], *args: str) -> subprocess.CompletedProcess:
    """`python ARGS` with only the installed folder on the path, from a folder outside the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GTACLI_")}
    env["PYTHONPATH"] = str(installed["site"])  # replaces the checkout on the path
    env["GTACLI_DATA_ROOT"] = str(installed["cwd"] / "data")
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=installed["cwd"],
        env=env,
    )


def test_wheel_contains_every_tracked_data_file(installed: Dict[str, Path]) -> None:
    data_files = _tracked_package_data()
    assert "gtacli/assets/manifest.json" in data_files
    with zipfile.ZipFile(installed["wheel"]) as wheel:
        names = set(wheel.namelist())
    missing = [p for p in data_files if p not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "docs/"))]  # docs: gtacli/docs/


def test_installed_package_is_imported_from_the_install_not_the_checkout(installed: Dict[str, Path]) -> None:
    proc = _run_installed(
        installed,
        "-c",
        "import gtacli, gtacli.assets.manifest as m; print(gtacli.__file__); print(m.MANIFEST_PATH)",
    )
    assert proc.returncode == 0, proc.stderr
    module_file, manifest = (Path(line) for line in proc.stdout.split())
    assert module_file.is_relative_to(installed["site"]) and not module_file.is_relative_to(REPO)
    assert manifest.is_file() and manifest.is_relative_to(installed["site"])


def test_installed_cli_check_layout_and_fetch_dry_run(installed: Dict[str, Path]) -> None:
    layout = _run_installed(installed, "-m", "gtacli", "check-layout", "--for", "eval-pw3d", "--json")
    # an empty data root fails the check (exit 1) with a report; what must not happen is a crash (manifest absent)
    assert layout.returncode in (0, 1), layout.stderr
    assert "FileNotFoundError" not in layout.stderr and "Traceback" not in layout.stderr, layout.stderr
    assert '"ok"' in layout.stdout
    fetch = _run_installed(installed, "-m", "gtacli", "fetch", "--all", "--dry-run", "--json")
    assert fetch.returncode == 0, fetch.stderr[-3000:]
    assert "manifest.json" not in fetch.stderr
    assert not (installed["cwd"] / "data").exists() or not any((installed["cwd"] / "data").rglob("*.npz"))


def test_installed_copy_carries_the_docs_it_cites(installed: Dict[str, Path]) -> None:
    """Help lines and errors cite docs/reproduction.md: the wheel carries it and `gtacli --docs` says where."""
    proc = _run_installed(installed, "-m", "gtacli", "--docs")
    assert proc.returncode == 0, proc.stderr
    paths = [Path(line) for line in proc.stdout.split()]
    assert [p.name for p in paths] == ["reproduction.md", "ARCHITECTURE.md"]
    for path in paths:
        assert path.is_file() and path.is_relative_to(installed["site"]), path
        assert path.read_text(encoding="utf-8") == (REPO / "docs" / path.name).read_text(encoding="utf-8")
