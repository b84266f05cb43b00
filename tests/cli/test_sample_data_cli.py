"""`gtacli sample-data` as a user runs it: one JSON document on stdout, a synthetic warning on stderr,
one-line errors with exit codes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from gtacli.io.safe import load_checkpoint, load_npz


def _gtacli(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gtacli", "sample-data", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.slow
def test_json_summary_then_a_rebuild_with_another_seed_gives_the_seeded_tree(
    tmp_path: Path, sample_tree: Path
) -> None:
    root = tmp_path / "data"
    proc = _gtacli("--data-root", str(root), "--size", "tiny", "--seed", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    summary = json.loads(proc.stdout)  # exactly one JSON document
    assert set(summary) >= {"root", "files", "bytes", "seconds", "size", "seed"}
    assert Path(summary["root"]) == root and summary["size"] == "tiny" and summary["seed"] == 3
    files = [p for p in root.rglob("*") if p.is_file()]
    assert summary["files"] == len(files)
    assert summary["bytes"] == sum(p.stat().st_size for p in files)
    assert summary["seconds"] > 0
    assert "SYNTHETIC" in proc.stderr
    marker = json.loads((root / "SYNTHETIC_DATA.json").read_text())
    assert marker["seed"] == 3 and marker["size"] == "tiny" and marker["synthetic"] is True
    image = "datasets/lsp/images/im0001.jpg"
    assert (root / image).read_bytes() != (sample_tree / image).read_bytes()  # the seed matters

    # Re-running on a synthetic tree rebuilds it in place (no --force needed): files of the earlier build that
    # this one does not write go, caches of the old annotations go, the user's own files stay.
    from gtacli.sample.tree import build_sample_tree

    stale = root / "datasets/lsp/images/im9999.jpg"
    stale.write_bytes(b"from an earlier, bigger build")
    marker["files"].append("datasets/lsp/images/im9999.jpg")
    st = stale.stat()
    marker["stamps"]["datasets/lsp/images/im9999.jpg"] = [st.st_size, st.st_mtime_ns]  # as if we wrote it
    (root / "SYNTHETIC_DATA.json").write_text(json.dumps(marker))
    # a real HumanData cache of the old annotation (what eval / finetune would have left) goes; a file of the
    # user's in cache/ that no cache wrote stays (removal by record only, never by name)
    from gtacli.data.human_data import CACHE_SUBDIR, HumanData

    HumanData.load(root / "preprocessed_datasets/spin_lsp_train.npz", use_cache=True).keypoints2d_smpl49(
        range(2)
    )
    (old_cache,) = list((root / "cache" / CACHE_SUBDIR).iterdir())
    users_cache_file = root / "cache/spin_lsp_train_smpl_49.npz"
    users_cache_file.write_bytes(b"not written by gtacli")
    mine = root / "datasets/lsp/my_notes.txt"
    mine.write_text("mine")
    build_sample_tree(root, size="tiny", seed=0)
    assert not stale.exists() and mine.read_text() == "mine"
    assert not old_cache.exists() and users_cache_file.read_bytes() == b"not written by gtacli"
    mine.unlink()
    users_cache_file.unlink()
    _assert_same_tree(root, sample_tree)  # deterministic: seed 0 again gives the session's seed-0 tree


def test_refuses_a_folder_that_is_not_a_sample_tree(tmp_path: Path) -> None:
    root = tmp_path / "data"
    root.mkdir()
    (root / "spin_official.pth").write_bytes(b"a real checkpoint")
    proc = _gtacli("--data-root", str(root), "--size", "tiny", "--quiet")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert len(lines) == 1 and "--force" in lines[0]
    assert (root / "spin_official.pth").read_bytes() == b"a real checkpoint"
    assert sorted(p.name for p in root.iterdir()) == ["spin_official.pth"]


def test_unknown_size_is_a_usage_error(tmp_path: Path) -> None:
    proc = _gtacli("--data-root", str(tmp_path / "data"), "--size", "huge")
    assert proc.returncode == 2
    assert "--size" in proc.stderr and not (tmp_path / "data").exists()


def test_unwritable_data_root_is_one_line_and_writes_nothing(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"  # a regular file where a folder is needed: unwritable even for root
    blocker.write_text("not a folder")
    root = blocker / "data"
    proc = _gtacli("--data-root", str(root), "--size", "tiny")
    assert proc.returncode == 1
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr  # the error alone: no traceback, no synthetic banner before it
    assert lines[0].startswith("error:") and str(root) in lines[0] and "--data-root" in lines[0]
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert blocker.read_text() == "not a folder"


def _assert_same_tree(a: Path, b: Path) -> None:
    """Same files with the same content (npz/pth compared by value: zip members carry write times)."""
    # cache/ holds what commands derived at run time (the session tree gets ONNX exports from the eval tests)
    files_a = sorted(
        p.relative_to(a).as_posix()
        for p in a.rglob("*")
        if p.is_file() and "cache" not in p.relative_to(a).parts[:1]
    )
    files_b = sorted(
        p.relative_to(b).as_posix()
        for p in b.rglob("*")
        if p.is_file() and "cache" not in p.relative_to(b).parts[:1]
    )
    assert files_a == files_b
    for rel in files_a:
        pa, pb = a / rel, b / rel
        if rel.endswith(".npz"):
            with load_npz(pa) as za, load_npz(pb) as zb:
                assert sorted(za) == sorted(zb), rel
                for key in za:
                    _assert_equal_values(za[key], zb[key], f"{rel}:{key}")
        elif rel.endswith(".pth"):
            sa, sb = load_checkpoint(pa)["state_dict"], load_checkpoint(pb)["state_dict"]
            assert sa.keys() == sb.keys(), rel
            for k in sa:  # BatchNorm statistics come from a CPU forward pass: equal up to summation order
                assert torch.allclose(sa[k].double(), sb[k].double(), rtol=1e-5, atol=1e-7), (rel, k)
        elif rel == "SYNTHETIC_DATA.json":  # the same, up to the mtimes stamped for each file
            ma, mb = json.loads(pa.read_text()), json.loads(pb.read_text())
            assert ma.pop("stamps").keys() == mb.pop("stamps").keys() and ma == mb
        else:
            assert pa.read_bytes() == pb.read_bytes(), rel


def _assert_equal_values(x, y, where: str) -> None:
    if isinstance(x, dict):
        assert x.keys() == y.keys(), where
        for key in x:
            _assert_equal_values(x[key], y[key], f"{where}.{key}")
    else:
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y), err_msg=where)


def _copy_tree(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest, symlinks=True)
    return dest


def test_force_never_replaces_files_sample_data_did_not_write(tmp_path: Path, sample_tree: Path) -> None:
    """A licensed SMPL model, a real checkpoint and real images in a folder: --force writes beside them or
    stops with one line naming the file, and they stay byte for byte."""
    from gtacli.errors import GtacliError
    from gtacli.layout import DataLayout
    from gtacli.sample.tree import build_sample_tree

    for rel in ("body_models/smpl/SMPL_NEUTRAL.pkl", "pretrained_models/spin_official.pth"):
        root = tmp_path / rel.split("/")[-1] / "data"
        target = root / rel
        target.parent.mkdir(parents=True)
        target.write_bytes(b"licensed bytes")
        try:
            build_sample_tree(root, size="tiny", force=True)
        except GtacliError as exc:
            assert str(target) in str(exc) and "not written by gtacli sample-data" in str(exc)
        else:
            raise AssertionError("--force replaced a file it did not write")
        assert target.read_bytes() == b"licensed bytes"
        assert not (root / "SYNTHETIC_DATA.json").exists()  # refused before anything was written

    # a synthetic tree where the user put the real model over ours: a rebuild leaves it alone
    tree = _copy_tree(sample_tree, tmp_path / "synthetic")
    smpl = DataLayout(tree).smpl_model("neutral")
    smpl.write_bytes(b"the licensed SMPL_NEUTRAL.pkl")
    proc = _gtacli("--data-root", str(tree), "--size", "tiny", "--force", "--quiet")
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error")]
    assert proc.returncode == 1 and len(errors) == 1 and str(smpl) in errors[0]
    assert smpl.read_bytes() == b"the licensed SMPL_NEUTRAL.pkl"


def test_real_images_are_never_replaced(tmp_path: Path, sample_tree: Path) -> None:
    from gtacli.errors import GtacliError
    from gtacli.sample.tree import build_sample_tree

    tree = _copy_tree(sample_tree, tmp_path / "synthetic")
    image = tree / "datasets/lsp/images/im0001.jpg"
    image.write_bytes(b"a real photo")
    try:
        build_sample_tree(tree, size="tiny", force=True)
    except GtacliError as exc:
        assert str(image) in str(exc)
    else:
        raise AssertionError("a real image was replaced")
    assert image.read_bytes() == b"a real photo"


def test_never_writes_through_a_symlink_that_leaves_the_root(tmp_path: Path) -> None:
    from gtacli.errors import UnsafeFileError
    from gtacli.sample.tree import build_sample_tree

    outside = tmp_path / "outside"
    outside.mkdir()
    root = tmp_path / "data"
    root.mkdir()
    (root / "datasets").symlink_to(outside)
    try:
        build_sample_tree(root, size="tiny", force=True)
    except UnsafeFileError as exc:
        assert "symlink that leaves the data root" in str(exc) and "\n" not in str(exc)
    else:
        raise AssertionError("wrote through a symlink out of the root")
    assert list(outside.iterdir()) == []
    assert sorted(p.name for p in root.iterdir()) == ["datasets"]  # nothing written before the refusal
    (root / "datasets").unlink()
    (root / "datasets").symlink_to("/")
    proc = _gtacli("--data-root", str(root), "--size", "tiny", "--force", "--quiet")
    assert proc.returncode == 1 and "symlink" in proc.stderr
    assert not Path("/lsp").exists() and not Path("/h36m").exists()
