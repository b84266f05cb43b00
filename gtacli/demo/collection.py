"""The demo over a collection of inputs: one output folder per input, a manifest, resuming and shards.

`gtacli demo` takes several inputs, a folder of videos, a glob or `--inputs-from list.txt` (`expand_inputs`).
Each input gets its own subfolder of the output folder (`output_names`: named after the input; names that
collide get their parent folder's name, then a hash of the path, so every machine derives the same names from
the same list), filled by `run_demo` exactly as a single input would be. `manifest.json` at the top lists every
input with its status (done / failed with the one-line error / pending), frames, people and seconds, rewritten
atomically after each input, so an interrupted run leaves a true record.

Resuming: an input whose folder holds a complete output of the same input and settings, by the folder's own
record (`gtacli.demo.output.completed_output`), is kept; failed, partial or stale ones are redone. Ctrl-C stops
inside `run_demo`, which discards the input's temporary folder: completed inputs stay, nothing partial is left.

Sharding (`--shard K/N`, 1 <= K <= N): input i of the expanded list (0-based) belongs to shard i mod N + 1, so
N processes started with the same command split the list without talking to each other (a SLURM array, any job
launcher). Each writes its own `manifest.shard-K-of-N.json`; `merge_manifests` (`--merge-manifests OUT`) joins
them into `manifest.json`.
"""

from __future__ import annotations

import glob
import hashlib
import json
import re
import shutil
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from gtacli.demo.config import DemoConfig
from gtacli.demo.output import MANIFEST, completed_output, display_name
from gtacli.errors import BadFileError, GtacliError, MissingFileError, UsageError
from gtacli.io import video
from gtacli.io.atomic import atomic_write_json
from gtacli.progress import ProgressFn

COLLECTION_KIND = "gtacli-demo-collection"
MANIFEST_JSON = "manifest.json"
SHARD_MANIFEST = "manifest.shard-{k}-of-{n}.json"
SHARD_MANIFEST_RE = re.compile(r"^manifest\.shard-(\d+)-of-(\d+)\.json$")
GLOB_CHARS = re.compile(r"[*?\[]")
STATUS_RANK = {"done": 2, "failed": 1, "pending": 0}  # merging: the best status of an input wins
NOT_A_COLLECTION_FIX = "choose a new or empty --output folder for a collection"


@dataclass
class CollectionInput:
    """One input of the collection: its path, its position in the full list and its output subfolder."""

    path: Path
    index: int
    name: str


# ----------------------------------------------------------------------------------------------- the input list


def expand_inputs(args: Sequence[Path], inputs_from: Optional[Path] = None) -> Tuple[List[Path], bool]:
    """The inputs named by INPUT arguments and `--inputs-from`, in order, each once; and whether they form a
    collection (more than one input, a list file, a glob or a folder of videos) rather than one input as before.

    A folder holding a video is a folder of inputs (its images and videos, natural order); a folder of images
    only is one input, as always. A pattern (`*`, `?`, `[`) that is not an existing path is expanded."""
    entries: List[Tuple[Path, Optional[Path]]] = [(Path(a), None) for a in args]
    if inputs_from is not None:
        entries += [(p, inputs_from) for p in read_input_list(Path(inputs_from))]
    collection = inputs_from is not None or len(entries) > 1
    out: List[Path] = []
    for path, listed_in in entries:
        if not path.exists() and GLOB_CHARS.search(str(path)):
            matches = sorted(glob.glob(str(path)), key=video.natural_key)
            if not matches:
                where = f" (listed in {display_name(str(listed_in))})" if listed_in else ""
                raise UsageError(
                    f"the pattern {display_name(str(path))}{where} matches no file",
                    fix="check the pattern, or quote it so that gtacli expands it",
                )
            out += [Path(m) for m in matches]
            collection = True
        elif path.is_dir() and _holds_video(path):
            out += _media_in(path)
            collection = True
        else:
            out.append(path)
    seen, unique = set(), []
    for path in out:
        key = str(path.resolve()) if path.exists() else str(path.absolute())
        if key not in seen:
            seen.add(key)
            unique.append(path)
    return unique, collection


def read_input_list(path: Path) -> List[Path]:
    """`--inputs-from`: one input per line (blank lines and `#` comments skipped); a relative path is taken
    from the list file's folder, so the list works from any working directory."""
    if not path.is_file():
        raise MissingFileError(
            "input list not found", path=path, fix="give a text file with one input per line"
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise BadFileError(
            f"cannot read the input list ({exc})",
            path=path,
            fix="give a UTF-8 text file with one input per line",
        ) from None
    lines = [line.strip() for line in text.splitlines()]
    items = [Path(line) for line in lines if line and not line.startswith("#")]
    if not items:
        raise UsageError(f"the input list {display_name(str(path))} names no input", fix="one input per line")
    return [item if item.is_absolute() else path.parent / item for item in items]


def _holds_video(folder: Path) -> bool:
    try:
        return any(p.suffix.lower() in video.VIDEO_EXTENSIONS and p.is_file() for p in folder.iterdir())
    except OSError:
        return False


def _media_in(folder: Path) -> List[Path]:
    media = video.VIDEO_EXTENSIONS + video.IMAGE_EXTENSIONS
    found = [
        p
        for p in folder.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in media
    ]
    return sorted(found, key=lambda p: video.natural_key(p.name))


def output_names(paths: Sequence[Path]) -> List[str]:
    """One subfolder name per input, distinct and derived from the paths alone (the same on every machine):
    the file's stem (a folder's name); names that collide take their parent folder's name in front, and any
    still colliding a short hash of the absolute path."""
    base = [_clean(p.name if p.is_dir() else p.stem) for p in paths]
    names = list(base)
    for step in (_with_parent, _with_hash):
        counts: Dict[str, int] = {}
        for name in names:
            counts[name.casefold()] = counts.get(name.casefold(), 0) + 1
        names = [step(p, n) if counts[n.casefold()] > 1 else n for p, n in zip(paths, names)]
    return names


def _clean(name: str) -> str:
    name = display_name(name).replace("/", "_").lstrip(".")
    return name or "input"


def _with_parent(path: Path, name: str) -> str:
    parent = _clean(path.absolute().parent.name)
    return f"{parent}_{name}"


def _with_hash(path: Path, name: str) -> str:
    digest = hashlib.sha1(display_name(str(path.absolute())).encode("utf-8")).hexdigest()[:8]
    return f"{name}-{digest}"


# ----------------------------------------------------------------------------------------------- shards


def parse_shard(text: str) -> Tuple[int, int]:
    """`K/N` with 1 <= K <= N -> (K, N); anything else is a usage error (exit 2)."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text or "")
    if match:
        k, n = int(match.group(1)), int(match.group(2))
        if 1 <= k <= n:
            return k, n
    raise UsageError(
        f"--shard {text!r} is not K/N with 1 <= K <= N",
        fix="e.g. --shard 1/4; in a SLURM array started with --array=1-N use "
        "--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT",
    )


def select_shard(items: Sequence[CollectionInput], shard: Optional[Tuple[int, int]]) -> List[CollectionInput]:
    """The inputs of shard K of N: every N-th one from the K-th (long and short inputs spread evenly)."""
    if shard is None:
        return list(items)
    k, n = shard
    return [item for item in items if item.index % n == k - 1]


def manifest_name(shard: Optional[Tuple[int, int]]) -> str:
    return MANIFEST_JSON if shard is None else SHARD_MANIFEST.format(k=shard[0], n=shard[1])


# ----------------------------------------------------------------------------------------------- the output folder


def check_collection_dir(folder: Path, names: Sequence[str]) -> None:
    """Refuse, before any work, an output folder that is a file, a single demo output, or holds anything a
    collection run did not write (manifests, per-input folders, temporary names)."""
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--output {display_name(str(folder))} is a file", fix="give a folder path")
    if not folder.is_dir():
        return
    if (folder / MANIFEST).exists():
        raise UsageError(
            f"--output {display_name(str(folder))} holds the output of a single demo input",
            fix=NOT_A_COLLECTION_FIX,
        )
    ours = {n.casefold() for n in names}
    for entry in sorted(folder.iterdir()):
        name = entry.name
        if name == MANIFEST_JSON or SHARD_MANIFEST_RE.match(name):
            continue
        if name.startswith(".") and (".tmp-" in name or ".old-" in name):
            continue  # a run's temporary folder or file (this one's or another shard's)
        if (
            entry.is_dir()
            and not entry.is_symlink()
            and (name.casefold() in ours or (entry / MANIFEST).exists())
        ):
            continue
        raise UsageError(
            f"--output {display_name(str(folder))} holds files the demo did not write (e.g. {display_name(name)})",
            fix=NOT_A_COLLECTION_FIX,
        )


def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """An input's temporary folders left by a killed run (its shard owns the name: no one else writes it)."""
    for entry in folder.glob(f".{glob.escape(name)}.*"):
        if (".tmp-" in entry.name or ".old-" in entry.name) and entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)


# ----------------------------------------------------------------------------------------------- the run

InputDone = Callable[[Dict[str, Any], int, int, Optional[float]], None]


def plan(paths: Sequence[Path]) -> List[CollectionInput]:
    return [CollectionInput(p, i, n) for i, (p, n) in enumerate(zip(paths, output_names(paths)))]


def run_collection(
    template: DemoConfig,
    paths: Sequence[Path],
    output: Path,
    shard: Optional[Tuple[int, int]] = None,
    run_one: Optional[Callable[..., Dict[str, Any]]] = None,
    progress: Optional[ProgressFn] = None,
    log: Optional[Callable[[str], None]] = None,
    on_input: Optional[InputDone] = None,
) -> Dict[str, Any]:
    """Run the demo on each input of this shard into `output/<name>`; returns the manifest.

    `run_one(config, progress=, log=)` is `gtacli.demo.pipeline.run_demo` (passed in by the caller). `on_input`
    hears of each finished input: (entry, position, count, ETA in seconds or None)."""
    if run_one is None:
        from gtacli.demo.pipeline import run_demo as run_one
    output = Path(output)
    items = plan(list(paths))
    check_collection_dir(output, [item.name for item in items])
    mine = select_shard(items, shard)
    output.mkdir(parents=True, exist_ok=True)
    manifest = {
        "kind": COLLECTION_KIND,
        "shard": f"{shard[0]}/{shard[1]}" if shard else None,
        "inputs_total": len(items),
        "inputs": [_entry(item, "pending") for item in mine],
    }
    target = output / manifest_name(shard)
    _write_manifest(target, manifest)
    worked_s: List[float] = []
    if progress is not None:
        progress(0, len(mine), None)
    for position, (item, entry) in enumerate(zip(mine, manifest["inputs"]), start=1):
        config = replace(template, input=item.path, output=output / item.name)
        _remove_stale_temporaries(output, item.name)
        started = time.perf_counter()
        summary = completed_output(config.output, config)
        if summary is not None:
            _fill(entry, summary, reused=True)
        else:
            # the collection's progress counts inputs; the frames of the one being processed go beside
            def frames_progress(done, total=None, description=None, _name=item.name, _done=position - 1):
                if progress is not None:
                    progress(
                        _done, len(mine), f"{_name}: {done}/{total if total is not None else '?'} frames"
                    )

            notes: List[str] = []
            try:
                summary = run_one(config, progress=frames_progress, log=notes.append)
            except GtacliError as exc:
                entry.update(status="failed", error=str(exc))
            except Exception as exc:  # a bug met on one input must not stop the others
                entry.update(
                    status="failed", error=f"internal error: {type(exc).__name__}: {exc}".splitlines()[0]
                )
            else:
                _fill(entry, summary, reused=False)
            for note in notes:
                if log is not None:
                    log(f"{item.name}: {note}")
            entry["seconds"] = round(time.perf_counter() - started, 3)
            worked_s.append(entry["seconds"])
        entry["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        manifest["counts"] = _counts(manifest["inputs"])
        _write_manifest(target, manifest)
        remaining = len(mine) - position
        eta = sum(worked_s) / len(worked_s) * remaining if worked_s else None
        if on_input is not None:
            on_input(entry, position, len(mine), eta if remaining else 0.0)
        if progress is not None:
            progress(position, len(mine), f"{item.name}: {entry['status']}")
    manifest["counts"] = _counts(manifest["inputs"])
    _write_manifest(target, manifest)
    return {**manifest, "output": display_name(str(output)), "manifest": display_name(str(target))}


def _entry(item: CollectionInput, status: str) -> Dict[str, Any]:
    return {
        "index": item.index,
        "input": display_name(str(item.path)),
        "output": item.name,
        "status": status,
        "error": None,
        "frames": None,
        "people": None,
        "seconds": None,
        "reused": False,
    }


def _fill(entry: Dict[str, Any], summary: Dict[str, Any], reused: bool) -> None:
    entry.update(
        status="done",
        error=None,
        frames=summary.get("frames"),
        people=summary.get("tracks"),
        person_entries=summary.get("person_entries"),
        reused=reused,
    )
    if reused:  # the time the output took when it was made
        entry["seconds"] = (summary.get("timings_s") or {}).get("total")


def _counts(entries: Sequence[Dict[str, Any]]) -> Dict[str, int]:
    counts = {status: 0 for status in STATUS_RANK}
    for entry in entries:
        counts[entry["status"]] = counts.get(entry["status"], 0) + 1
    counts["reused"] = sum(1 for e in entries if e.get("reused"))
    return counts


def _write_manifest(path: Path, manifest: Dict[str, Any]) -> None:
    manifest["counts"] = _counts(manifest["inputs"])
    manifest["updated"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    atomic_write_json(path, manifest)


# ----------------------------------------------------------------------------------------------- merging


def merge_manifests(folder: Path) -> Dict[str, Any]:
    """Join the shard manifests of `folder` into its manifest.json; returns it, with `complete` = every input of
    the collection is there and done, and `missing_shards` naming shards that wrote no manifest."""
    folder = Path(folder)
    if not folder.is_dir():
        raise MissingFileError(
            "no such output folder", path=folder, fix="give the --output folder of the shards"
        )
    files = sorted(p for p in folder.iterdir() if SHARD_MANIFEST_RE.match(p.name))
    if not files:
        raise MissingFileError(
            "holds no shard manifest (manifest.shard-K-of-N.json)",
            path=folder,
            fix="run `gtacli demo ... --shard K/N --output` into this folder first",
        )
    best: Dict[str, Dict[str, Any]] = {}
    total = 0
    shards_seen: Dict[int, set] = {}
    for path in files:
        data = _read_shard_manifest(path)
        k, n = (int(x) for x in SHARD_MANIFEST_RE.match(path.name).groups())  # type: ignore[union-attr]
        shards_seen.setdefault(n, set()).add(k)
        total = max(total, int(data.get("inputs_total") or 0))
        for entry in data["inputs"]:
            key = entry["output"]
            rank = (STATUS_RANK.get(entry.get("status"), -1), entry.get("finished") or "")
            if key not in best or rank > (
                STATUS_RANK.get(best[key].get("status"), -1),
                best[key].get("finished") or "",
            ):
                best[key] = entry
    entries = sorted(best.values(), key=lambda e: (e.get("index", 0), e["output"]))
    missing = [f"{k}/{n}" for n, ks in sorted(shards_seen.items()) for k in range(1, n + 1) if k not in ks]
    counts = _counts(entries)
    merged = {
        "kind": COLLECTION_KIND,
        "shard": None,
        "merged_from": [p.name for p in files],
        "missing_shards": missing,
        "inputs_total": total,
        "inputs": entries,
        "complete": counts["done"] == total and len(entries) == total,
    }
    _write_manifest(folder / MANIFEST_JSON, merged)
    return {
        **merged,
        "output": display_name(str(folder)),
        "manifest": display_name(str(folder / MANIFEST_JSON)),
    }


def _read_shard_manifest(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise BadFileError(
            f"is not a readable shard manifest ({exc})", path=path, fix="rerun that shard"
        ) from None
    ok = (
        isinstance(data, dict)
        and data.get("kind") == COLLECTION_KIND
        and isinstance(data.get("inputs"), list)
        and all(isinstance(e, dict) and isinstance(e.get("output"), str) for e in data["inputs"])
    )
    if not ok:
        raise BadFileError("is not a gtacli demo shard manifest", path=path, fix="rerun that shard")
    return data
