"""The ground floor: restricted checkpoint loading and atomic writes fail with one clear line."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from gtacli.errors import BadFileError, GtacliError, UnsafeFileError
from gtacli.io.atomic import atomic_path, atomic_write_bytes
from gtacli.io.safe import load_checkpoint, load_npz, load_pickle


class _RunsACommand:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_hostile_checkpoint_is_refused_without_running_anything(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pth"
    torch.save({"state_dict": {"w": torch.zeros(1)}, "x": _RunsACommand(str(marker))}, path)
    with pytest.raises(UnsafeFileError) as info:
        load_checkpoint(path)
    assert not marker.exists()
    message = str(info.value)
    assert "\n" not in message and "evil.pth" in message and "GLOBAL" in message


def test_text_file_is_not_a_checkpoint(tmp_path):
    path = tmp_path / "notes.pth"
    path.write_text("hello world\n")
    with pytest.raises(BadFileError) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value) and "notes.pth" in str(info.value) and "Fix:" in str(info.value)


def test_plain_checkpoint_with_numpy_meta_loads(tmp_path):
    path = tmp_path / "ok.pth"
    torch.save(
        {"state_dict": {"w": torch.arange(3.0)}, "meta": {"seed": np.int64(3), "eps": np.float32(0.5)}}, path
    )
    ckpt = load_checkpoint(path)
    assert torch.equal(ckpt["state_dict"]["w"], torch.arange(3.0)) and int(ckpt["meta"]["seed"]) == 3


def test_hostile_object_member_in_npz_is_refused(tmp_path):
    marker = tmp_path / "ran"
    path = tmp_path / "evil.npz"
    np.savez(path, smpl=np.array(_RunsACommand(str(marker)), dtype=object), ok=np.arange(2))
    npz = load_npz(path)
    assert npz["ok"].tolist() == [0, 1]
    with pytest.raises(UnsafeFileError):
        npz["smpl"]
    assert not marker.exists()


def test_pickle_of_plain_numpy_data_loads_and_code_does_not(tmp_path):
    good, bad = tmp_path / "good.pkl", tmp_path / "bad.pkl"
    good.write_bytes(pickle.dumps({"a": np.eye(2)}, protocol=4))
    bad.write_bytes(pickle.dumps(_RunsACommand(str(tmp_path / "ran")), protocol=4))
    assert np.array_equal(load_pickle(good)["a"], np.eye(2))
    with pytest.raises(UnsafeFileError):
        load_pickle(bad)
    assert not (tmp_path / "ran").exists()


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    final = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("crash mid-way")
    assert not final.exists() and list(tmp_path.iterdir()) == []
    atomic_write_bytes(final, b"whole")
    assert final.read_bytes() == b"whole" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_atomic_write_under_a_file_is_one_line_with_a_fix(tmp_path):
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(GtacliError) as info:
        atomic_write_bytes(blocker / "sub" / "out.bin", b"data")
    message = str(info.value)
    assert "\n" not in message and "Fix:" in message


def test_ensure_writable_dir_creates_or_probes_and_names_a_blocking_file(tmp_path):
    from gtacli.io.atomic import ensure_writable_dir

    made = tmp_path / "a" / "b"
    ensure_writable_dir(made, what="the thing", fix="pick another")
    assert made.is_dir() and list(made.iterdir()) == []  # the probe file is gone
    later = tmp_path / "c" / "d"
    ensure_writable_dir(later, what="the thing", fix="pick another", create=False)
    assert not (tmp_path / "c").exists()  # create=False creates nothing
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    for create in (True, False):
        with pytest.raises(GtacliError) as info:
            ensure_writable_dir(blocker / "out", what="the thing", fix="pick another", create=create)
        message = str(info.value)
        assert (
            "\n" not in message
            and f"{blocker} is a file, not a folder" in message
            and "pick another" in message
        )
