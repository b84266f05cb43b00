"""A full disk during an atomic write (checkpoint saves included) is one line: "no space left on device:
PATH, needs ~N MB"; nothing is left behind. Real: a 2 MiB tmpfs (skipped where mounting is not permitted)."""

from __future__ import annotations

import errno
import gc
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from gtacli.errors import GtacliError
from gtacli.io.atomic import atomic_path, atomic_write_bytes, atomic_write_with

TMPFS_BYTES = 2 << 20


@pytest.fixture()
def tiny_disk(tmp_path):
    mount = tmp_path / "tiny"
    mount.mkdir()
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_BYTES}", "tmpfs", str(mount)], capture_output=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode(errors='replace').strip()[:100]}")
    try:
        yield mount
    finally:
        gc.collect()  # torch's failed zip writer can hold the temp file open until collected
        subprocess.run(["umount", "-l", str(mount)], check=False)  # lazy: never leave the mount behind


def test_torch_save_on_a_full_disk_says_no_space_and_the_size(tiny_disk):
    target = tiny_disk / "ckpt" / "latest.pth"
    payload = {"w": torch.zeros(1_000_000)}  # 4 MB of float32 on a 2 MiB disk
    need = 4_000_000
    with pytest.raises(GtacliError) as info:
        atomic_write_with(target, lambda tmp: torch.save(payload, tmp), expected_bytes=need)
    text = str(info.value)
    assert text.startswith(f"no space left on device: {target}, needs ~4.0 MB"), text
    assert "\n" not in text and "inline_container" not in text
    assert [p for p in tiny_disk.rglob("*") if p.is_file()] == []  # the partial temp file is gone
    usage = shutil.disk_usage(tiny_disk)
    assert usage.free >= usage.total - (64 << 10)  # and its space given back (no open handle keeps it)


def test_checkpoint_saver_reports_a_full_disk(tiny_disk):
    from gtacli.model.checkpoint import save_checkpoint

    model = torch.nn.Linear(1000, 1000)  # 4 MB of weights
    # the space the checkpoint needs (its tensors' bytes), not the little that was written before the disk filled
    with pytest.raises(GtacliError, match=r"^no space left on device: .*latest\.pth, needs ~4\.0 MB"):
        save_checkpoint(tiny_disk / "latest.pth", model, {"epoch": 1})
    assert not any(tiny_disk.iterdir())


def test_the_work_dir_lock_on_a_full_disk_is_one_line_and_leaves_no_empty_lock(tiny_disk):
    from gtacli.train.workdir import LOCK_NAME, WorkDirLock

    work = tiny_disk / "run"
    work.mkdir()
    filler = tiny_disk / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT)  # fill the disk to the last block
    try:
        while os.write(fd, b"x" * 4096):
            pass
    except OSError:
        pass
    finally:
        os.close(fd)
    with pytest.raises(GtacliError, match=r"^no space left on device: .*\.gtacli-train\.lock"):
        WorkDirLock(work).acquire(lambda message: None)
    assert not (work / LOCK_NAME).exists()


def test_plain_bytes_on_a_full_disk(tiny_disk):
    target = tiny_disk / "big.bin"
    with pytest.raises(GtacliError, match=r"^no space left on device: .*big\.bin, needs more than"):
        atomic_write_bytes(target, os.urandom(3 << 20))
    assert not any(tiny_disk.iterdir())


def test_enospc_and_torch_writer_errors_are_mapped_only_when_the_disk_is_full(tmp_path, monkeypatch):
    """The mapping itself, on a normal disk: free space decides whether a write failure is a full disk."""
    import gtacli.io.atomic as atomic

    target = tmp_path / "x.pth"

    def torch_failure(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 1000)
        raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534")

    with pytest.raises(RuntimeError, match="inline_container"):  # plenty of space: not a disk-full story
        atomic_write_with(target, torch_failure)
    usage = type("Usage", (), {"free": 10_000})
    monkeypatch.setattr(atomic.shutil, "disk_usage", lambda _: usage)
    with pytest.raises(
        GtacliError, match=r"no space left on device: .*x\.pth, needs ~2\.0 MB \(0\.0 MB free\)"
    ):
        atomic_write_with(target, torch_failure, expected_bytes=2_000_000)

    def enospc(tmp: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    with pytest.raises(GtacliError, match=r"no space left on device: .*x\.pth"):
        with atomic_path(target) as tmp:
            enospc(tmp)
    assert list(tmp_path.iterdir()) == []


def test_the_demo_on_a_full_disk_names_the_output_not_its_hidden_staging_folder(tiny_disk, sample_tree):
    from typer.testing import CliRunner

    from gtacli.cli.app import app

    image = sorted((sample_tree / "datasets" / "pw3d").rglob("*.jpg"))[0]
    filler = tiny_disk / "filler"  # leave ~100 kB: the overlay fits, the mesh (~700 kB) does not
    filler.write_bytes(b"x" * (shutil.disk_usage(tiny_disk).free - (100 << 10)))
    out = tiny_disk / "demo_out"
    result = CliRunner().invoke(
        app,
        ["demo", str(image), "--checkpoint", str(sample_tree / "pretrained_models" / "spin_official.pth"),
         "--data-root", str(sample_tree), "--bbox", "10,10,60,120", "--device", "cpu", "--export-mesh",
         "--output", str(out)],
    )  # fmt: skip
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert result.exit_code == 1 and len(errors) == 1, result.output
    assert str(out) in errors[0] and ".tmp-" not in errors[0], errors[0]
    assert [p.name for p in tiny_disk.iterdir()] == ["filler"]
