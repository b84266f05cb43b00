"""`io/atomic.StagedFolder`: a folder written under a temporary name, its record written last, moved into place
whole (the HumanData cache and the demo output use it); `read_record` reads such records back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gtacli.io.atomic import StagedFolder, read_record


def _leftovers(parent: Path) -> list:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


def test_commit_moves_the_folder_into_place_with_its_record(tmp_path):
    final = tmp_path / "out"
    with StagedFolder(final, "record.json", indent=1) as staged:
        (staged.path / "sub").mkdir()
        (staged.path / "sub" / "a.txt").write_text("a")
        (staged.path / "b.bin").write_bytes(b"b")
        assert not final.exists()
        files = staged.files()
        assert staged.commit({"kind": "test", "files": files}) is True
    assert files == ["b.bin", "sub/a.txt"]
    assert (final / "sub" / "a.txt").read_text() == "a"
    assert (final / "record.json").read_text() == json.dumps({"kind": "test", "files": files}, indent=1)
    assert read_record(final / "record.json") == {"kind": "test", "files": files}
    assert _leftovers(tmp_path) == []


def test_an_error_inside_leaves_nothing(tmp_path):
    final = tmp_path / "out"
    with pytest.raises(RuntimeError), StagedFolder(final, "record.json") as staged:
        (staged.path / "half.bin").write_bytes(b"x")
        raise RuntimeError("interrupted")
    assert not final.exists() and _leftovers(tmp_path) == []


def test_without_replace_a_finished_concurrent_writer_wins(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "record.json").write_text('{"who": "first"}')
    with StagedFolder(final, "record.json") as staged:
        (staged.path / "x").write_text("second")
        assert staged.commit({"who": "second"}) is False
    assert read_record(final / "record.json") == {"who": "first"} and not (final / "x").exists()
    assert _leftovers(tmp_path) == []


def test_without_replace_a_folder_without_record_is_an_error(tmp_path):
    final = tmp_path / "cache"
    final.mkdir()
    (final / "stray").write_text("?")
    with pytest.raises(OSError), StagedFolder(final, "record.json") as staged:
        staged.commit({})
    assert (final / "stray").exists() and _leftovers(tmp_path) == []


def test_replace_swaps_the_old_folder_unless_the_check_refuses(tmp_path):
    final = tmp_path / "out"
    final.mkdir()
    (final / "old.txt").write_text("old")
    seen = []
    with StagedFolder(final, "record.json") as staged:
        (staged.path / "new.txt").write_text("new")
        staged.commit({"files": ["new.txt"]}, replace=True, before_replace=seen.append)
    assert seen == [final] and sorted(p.name for p in final.iterdir()) == ["new.txt", "record.json"]
    assert _leftovers(tmp_path) == []

    def refuse(folder: Path) -> None:
        raise ValueError(f"{folder} changed")

    with pytest.raises(ValueError), StagedFolder(final, "record.json") as staged:
        (staged.path / "newer.txt").write_text("newer")
        staged.commit({}, replace=True, before_replace=refuse)
    assert (final / "new.txt").exists() and not (final / "newer.txt").exists()
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("content", [None, b"", b"{not json", b"[1, 2]", b"\xff\xfe", b'"text"'])
def test_read_record_is_empty_for_absent_or_bad_records(tmp_path, content):
    path = tmp_path / "record.json"
    if content is not None:
        path.write_bytes(content)
    assert read_record(path) == {}
    assert read_record(tmp_path) == {}  # a folder where the record should be
