"""`gtacli demo` over a collection: input lists, output names, shards, manifests, resuming, bad inputs.

The CLI runs use copies of the shared media (../shared/assets; skipped when absent) in a temporary folder, the tiny
synthetic tree's checkpoint, a fixed --bbox (no detector), --no-render and --max-frames to stay short.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from interrupts import sigint_as_default
from typer.testing import CliRunner

from gtacli.cli.app import app
from gtacli.demo.collection import (
    expand_inputs,
    merge_manifests,
    output_names,
    parse_shard,
    plan,
    read_input_list,
    select_shard,
)
from gtacli.errors import UsageError

BOX = "10,10,100,150"  # inside the shared image (153 px wide) and the 1080x1920 videos


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


# ----------------------------------------------------------------------------------------------- fast: the list


def test_a_folder_of_videos_is_a_collection_a_folder_of_images_is_one_input(tmp_path):
    videos = tmp_path / "videos"
    for name in ("clip10.mp4", "clip2.mp4", "still.jpg", "notes.txt", ".hidden.mp4"):
        _touch(videos / name)
    frames = tmp_path / "frames"
    for name in ("0001.png", "0002.png"):
        _touch(frames / name)
    paths, collection = expand_inputs([videos])
    assert collection
    assert [p.name for p in paths] == ["clip2.mp4", "clip10.mp4", "still.jpg"]  # media only, natural order
    assert expand_inputs([frames]) == ([frames], False)
    assert expand_inputs([videos / "clip2.mp4"]) == ([videos / "clip2.mp4"], False)


def test_globs_lists_and_duplicates(tmp_path):
    for name in ("a.mp4", "b.mp4", "c.avi"):
        _touch(tmp_path / "clips" / name)
    listing = _touch(
        tmp_path / "lists" / "list.txt",
        b"# my clips\n../clips/b.mp4\n\n   ../clips/a.mp4  \n../clips/b.mp4\n",
    )
    assert [p.name for p in read_input_list(listing)] == ["b.mp4", "a.mp4", "b.mp4"]
    paths, collection = expand_inputs([tmp_path / "clips" / "*.mp4"], listing)
    assert collection
    assert [p.name for p in paths] == ["a.mp4", "b.mp4"]  # the glob first, then the list; each input once
    with pytest.raises(UsageError, match="matches no file"):
        expand_inputs([tmp_path / "clips" / "*.mkv"])
    with pytest.raises(UsageError, match="names no input"):
        expand_inputs([], _touch(tmp_path / "empty.txt", b"# nothing\n\n"))


def test_output_names_are_distinct_and_the_same_in_any_order(tmp_path):
    paths = [
        tmp_path / "a" / "clip.mp4",
        tmp_path / "b" / "clip.mp4",
        tmp_path / "a" / "clip.avi",
        tmp_path / "a" / "other.mp4",
        tmp_path / "frames",
    ]
    names = output_names(paths)
    assert len(set(n.casefold() for n in names)) == len(names)
    assert names[1] == "b_clip" and names[3] == "other" and names[4] == "frames"
    assert names[0].startswith("a_clip-") and names[2].startswith("a_clip-")  # parent too: hashed
    assert output_names(paths[::-1]) == names[::-1]  # from the path alone, not the position


def test_shard_parsing_and_two_shards_cover_every_input_once(tmp_path):
    assert parse_shard("2/4") == (2, 4)
    for bad in ("0/4", "5/4", "a/b", "3", "-1/2", ""):
        with pytest.raises(UsageError) as info:
            parse_shard(bad)
        assert info.value.exit_code == 2
    items = plan([tmp_path / f"v{i}.mp4" for i in range(7)])
    first, second = select_shard(items, (1, 2)), select_shard(items, (2, 2))
    assert sorted(i.index for i in first + second) == list(range(7))
    assert not {i.name for i in first} & {i.name for i in second}


@pytest.mark.parametrize("shard", ["0/4", "5/4", "a/b"])
def test_invalid_shard_exits_2_before_any_work(tmp_path, shard):
    result = CliRunner().invoke(
        app, ["demo", str(tmp_path / "x.mp4"), "--shard", shard, "-o", str(tmp_path / "o")]
    )
    assert result.exit_code == 2, result.stderr
    assert "--shard" in result.stderr and not (tmp_path / "o").exists()


def test_an_output_folder_of_another_command_is_refused(tmp_path, sample_tree):
    out = tmp_path / "workdir"
    _touch(out / "metrics.jsonl", b"{}\n")
    clips = tmp_path / "clips"
    _touch(clips / "a.mp4")
    _touch(clips / "b.mp4")
    ckpt = sample_tree / "pretrained_models" / "spin_official.pth"
    result = CliRunner().invoke(app, ["demo", str(clips), "--checkpoint", str(ckpt), "-o", str(out)])
    assert result.exit_code == 2, result.stderr
    assert "metrics.jsonl" in result.stderr and "did not write" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["metrics.jsonl"]


def test_merge_reports_a_missing_shard_and_keeps_the_best_status(tmp_path):
    def shard(k, n, entries):
        doc = {"kind": "gtacli-demo-collection", "shard": f"{k}/{n}", "inputs_total": 3, "inputs": entries}
        (tmp_path / f"manifest.shard-{k}-of-{n}.json").write_text(json.dumps(doc))

    shard(1, 3, [{"index": 0, "output": "a", "status": "done", "finished": "2026-01-01T00:00:00"}])
    shard(2, 3, [{"index": 1, "output": "b", "status": "failed", "error": "bad", "finished": "2026-01-01"}])
    merged = merge_manifests(tmp_path)
    assert merged["missing_shards"] == ["3/3"] and not merged["complete"]
    assert [e["output"] for e in merged["inputs"]] == ["a", "b"]
    # a rerun of shard 2 (with another shard count) that succeeded wins over the failure
    shard(1, 1, [{"index": 1, "output": "b", "status": "done", "finished": "2026-01-02"}])
    merged = merge_manifests(tmp_path)
    assert [e["status"] for e in merged["inputs"]] == ["done", "done"]
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["done"] == 2


# ----------------------------------------------------------------------------------------------- slow: the CLI


@pytest.fixture
def media(shared_assets, tmp_path):
    """Copies of the shared media: clips/ with two videos and an image, other/ with a video of the same name."""
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(shared_assets / "single_person_demo.mp4", clips / "walk.mp4")
    shutil.copy(shared_assets / "multi_person_demo.mp4", clips / "crowd.mp4")
    shutil.copy(shared_assets / "im1010.jpg", clips / "im1010.jpg")
    other = tmp_path / "other"
    other.mkdir()
    shutil.copy(shared_assets / "single_person_demo.mp4", other / "walk.mp4")
    return tmp_path


def _args(sample_tree, out, *extra):
    ckpt = sample_tree / "pretrained_models" / "spin_official.pth"
    return [
        "--checkpoint", str(ckpt), "--data-root", str(sample_tree), "--device", "cpu", "--output", str(out),
        "--bbox", BOX, "--no-render", *extra,
    ]  # fmt: skip


def _run(args, expect):
    result = CliRunner().invoke(app, ["demo", *[str(a) for a in args]], catch_exceptions=False)
    assert result.exit_code == expect, result.stderr[-3000:] + result.stdout[-2000:]
    return result


def _manifest(path: Path) -> dict:
    return json.loads(path.read_text())


def _leftovers(out: Path):
    return [p.name for p in out.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.slow
def test_collection_run_then_rerun_keeps_done_inputs_and_redoes_broken_ones(media, sample_tree):
    out = media / "out"
    listing = _touch(
        media / "list.txt", b"clips/walk.mp4\nother/walk.mp4\nclips/notes.txt\nclips/im1010.jpg\n"
    )
    _touch(media / "clips" / "notes.txt", b"not a video\n")
    result = _run(
        ["--inputs-from", listing, *_args(sample_tree, out, "--max-frames", "2", "--json")], expect=1
    )
    manifest = _manifest(out / "manifest.json")
    assert json.loads(result.stdout)["counts"] == manifest["counts"]
    entries = {e["input"]: e for e in manifest["inputs"]}
    assert [e["status"] for e in manifest["inputs"]] == ["done", "done", "failed", "done"]
    # same name in different folders: distinct output folders, each with today's contents
    assert entries[str(media / "clips" / "walk.mp4")]["output"] == "clips_walk"
    assert entries[str(media / "other" / "walk.mp4")]["output"] == "other_walk"
    for name in ("clips_walk", "other_walk", "im1010"):
        assert {"results.npz", "results.json", ".gtacli-demo.json"} <= {
            p.name for p in (out / name).iterdir()
        }
    walk = entries[str(media / "clips" / "walk.mp4")]
    assert (walk["frames"], walk["people"], walk["person_entries"]) == (2, 1, 2) and walk["seconds"] > 0
    failed = entries[str(media / "clips" / "notes.txt")]
    assert "notes.txt" in failed["error"] and "image or video" in failed["error"]
    assert not (out / "notes").exists()
    # progress: one line per finished input with the overall ETA
    lines = [line for line in result.stderr.splitlines() if line.startswith("demo: [")]
    assert len(lines) == 4 and "[1/4]" in lines[0] and "ETA" in lines[0]

    # rerun: the complete outputs are kept (their own record says so), a damaged one is redone
    (out / "other_walk" / "results.npz").write_bytes(b"truncated")
    stamp = (out / "clips_walk" / "results.npz").stat().st_mtime_ns
    _run(["--inputs-from", listing, *_args(sample_tree, out, "--max-frames", "2")], expect=1)
    entries = {e["output"]: e for e in _manifest(out / "manifest.json")["inputs"]}
    assert entries["clips_walk"]["reused"] and entries["im1010"]["reused"]
    assert entries["other_walk"]["status"] == "done" and not entries["other_walk"]["reused"]
    assert (out / "clips_walk" / "results.npz").stat().st_mtime_ns == stamp
    # another setting is another output: redone, not kept
    _run(["--inputs-from", listing, *_args(sample_tree, out, "--max-frames", "3")], expect=1)
    entries = {e["output"]: e for e in _manifest(out / "manifest.json")["inputs"]}
    assert entries["clips_walk"]["frames"] == 3 and not entries["clips_walk"]["reused"]
    assert _leftovers(out) == []


@pytest.mark.slow
def test_two_shards_cover_every_input_once_and_merge(media, sample_tree):
    out = media / "out"
    inputs = [media / "clips", media / "other" / "walk.mp4"]  # 4 inputs: crowd, im1010, walk, other/walk
    done = []
    for k in (1, 2):
        _run([*inputs, *_args(sample_tree, out, "--max-frames", "1", "--shard", f"{k}/2")], expect=0)
        manifest = _manifest(out / f"manifest.shard-{k}-of-2.json")
        assert manifest["shard"] == f"{k}/2" and manifest["inputs_total"] == 4
        done.append({e["output"] for e in manifest["inputs"] if e["status"] == "done"})
        if k == 1:  # only one shard so far: the merge says the collection is not complete
            result = _run(["--merge-manifests", out], expect=1)
            assert "2/2" in result.stdout
    assert not done[0] & done[1]
    assert done[0] | done[1] == {"crowd", "im1010", "clips_walk", "other_walk"}
    assert {p.name for p in out.iterdir() if p.is_dir()} == done[0] | done[1]
    _run(["--merge-manifests", out], expect=0)
    merged = _manifest(out / "manifest.json")
    assert merged["complete"] and len(merged["inputs"]) == 4 and merged["missing_shards"] == []


@pytest.mark.slow
def test_interrupted_run_keeps_completed_inputs_leaves_nothing_partial_and_resumes(media, sample_tree):
    """A real process stopped by SIGINT (Ctrl-C) while an input is being processed, then the same command."""
    out = media / "out"
    clips = media / "long"
    clips.mkdir()
    for name in ("one.mp4", "two.mp4", "three.mp4"):
        shutil.copy(media / "clips" / "walk.mp4", clips / name)
    command = [sys.executable, "-m", "gtacli", "demo", str(clips), *_args(sample_tree, out), "--quiet"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    child = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=sigint_as_default
    )
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and child.poll() is None:
        try:
            counts = _manifest(out / "manifest.json")["counts"]
        except (OSError, ValueError, KeyError):
            counts = {}
        if counts.get("done", 0) >= 1:
            break
        time.sleep(0.2)
    assert child.poll() is None, "the run ended before it could be interrupted"
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=300)
    assert child.returncode == 130, err.decode()[-2000:]
    manifest = _manifest(out / "manifest.json")
    done = [e["output"] for e in manifest["inputs"] if e["status"] == "done"]
    pending = [e["output"] for e in manifest["inputs"] if e["status"] == "pending"]
    assert done and pending and len(done) + len(pending) == 3
    assert _leftovers(out) == []  # the interrupted input's temporary folder is gone
    assert {p.name for p in out.iterdir() if p.is_dir()} == set(done)
    for name in done:
        assert (out / name / ".gtacli-demo.json").is_file()

    rerun = subprocess.run(command + ["--json"], env=env, capture_output=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr.decode()[-2000:]
    entries = {e["output"]: e for e in json.loads(rerun.stdout)["inputs"]}
    assert all(e["status"] == "done" for e in entries.values())
    assert {name for name, e in entries.items() if e["reused"]} == set(done)
