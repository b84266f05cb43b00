"""`gtacli fetch`: download, verify and place the public assets; import licensed SMPL files."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, QuietOpt
from gtacli.errors import UsageError


class _RichProgress:
    """Per-file progress bars (bytes, speed, ETA) on stderr; messages printed above the bars."""

    def __init__(self, out: Output):
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        self._out = out
        self._lock = threading.Lock()
        self._tasks: Dict[str, Any] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=out.err,
            transient=True,
        )

    def __enter__(self) -> _RichProgress:
        self._progress.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._progress.stop()

    def start(self, name: str, total: Optional[int], completed: int = 0) -> None:
        with self._lock:
            if name in self._tasks:
                self._progress.update(self._tasks[name], total=total, completed=completed, visible=True)
            else:
                self._tasks[name] = self._progress.add_task(name, total=total, completed=completed)

    reset = start

    def advance(self, name: str, nbytes: int) -> None:
        with self._lock:
            if name in self._tasks:
                self._progress.advance(self._tasks[name], nbytes)

    def finish(self, name: str) -> None:
        with self._lock:
            if name in self._tasks:
                self._progress.update(self._tasks[name], visible=False)

    def message(self, text: str) -> None:
        if not self._out.quiet:
            self._progress.console.print(text, markup=False, highlight=False)


class _QuietProgress:
    """No bars (not a terminal, --quiet or --json): only retry/wait messages, on stderr."""

    def __init__(self, out: Output):
        self._out = out

    def __enter__(self) -> _QuietProgress:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def start(self, name: str, total: Optional[int], completed: int = 0) -> None: ...

    reset = start

    def advance(self, name: str, nbytes: int) -> None: ...

    def finish(self, name: str) -> None: ...

    def message(self, text: str) -> None:
        self._out.info(text)


def fetch_command(
    data_root: DataRootOpt,
    names: Annotated[
        Optional[List[str]],
        typer.Argument(help="Asset names (see `gtacli fetch --all --dry-run`).", show_default=False),
    ] = None,
    group: Annotated[
        Optional[List[str]],
        typer.Option(
            "--group", "-g", help="Fetch a group: extras, fits, pretrained, models, annotations. Repeatable."
        ),
    ] = None,
    all_assets: Annotated[bool, typer.Option("--all", help="Fetch every group.")] = False,
    mirror: Annotated[
        Optional[List[str]],
        typer.Option(
            "--mirror",
            help="Replace scheme and host of every URL (path and query kept). Repeatable: tried in order, then the "
            "original host. Also read from $GTACLI_MIRROR (comma/space separated).",
        ),
    ] = None,
    jobs: Annotated[
        int, typer.Option("--jobs", "-j", min=1, max=32, help="Files downloaded in parallel.")
    ] = 2,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be fetched; no network, no writes.")
    ] = False,
    force: Annotated[
        bool, typer.Option("--force", help="Download again even if the file is present and verifies.")
    ] = False,
    verify_only: Annotated[
        bool,
        typer.Option(
            "--verify-only", help="Only verify files already present (hash + content); download nothing."
        ),
    ] = False,
    smpl_from: Annotated[
        Optional[List[Path]],
        typer.Option(
            "--smpl-from",
            help="Import SMPL from the official SMPL zip (v1.0/v1.1), the SMPLify zip, a folder or .pkl files. Repeatable.",
        ),
    ] = None,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Download the public assets of the GTA-Human SPIN recipe into the data root, verified and resumable.

    Each file streams to `<dest>.part` (resumed with HTTP Range after an interruption), is verified by its
    known sha256 (or the server's Content-MD5 / ETag MD5 / CRC-64), checked at content level, and only then
    moved into place; the lock file `gtacli.lock.json` records what was fetched. Files already present
    that verify are skipped. Exit 1 if any file fails.

    Tuning (environment): GTACLI_FETCH_RETRIES (attempts per URL, default 5), GTACLI_FETCH_BACKOFF_S
    (first retry wait, doubles, default 1), GTACLI_FETCH_TIMEOUT_S (read timeout, default 60).

    Examples:

      gtacli fetch --all

      gtacli fetch --group extras --group fits --jobs 4

      gtacli fetch spin_official pw3d_test --mirror https://my-mirror.example.org

      gtacli fetch --smpl-from ~/Downloads/SMPL_python_v.1.1.0.zip

      gtacli fetch --all --verify-only --json
    """
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)

    def body() -> int:
        from gtacli.assets.download import (
            FetchOptions,
            fetch_assets,
            parse_mirrors,
            verify_present,
        )
        from gtacli.assets.download import (
            dry_run as plan,
        )
        from gtacli.assets.manifest import load_manifest
        from gtacli.layout import DataLayout

        layout = DataLayout(data_root)
        manifest = load_manifest()
        assets = manifest.select(names or [], group or [], all_assets)
        if not assets and not smpl_from:
            raise UsageError(
                "nothing to fetch",
                fix="name assets, or use --group G / --all / --smpl-from PATH (list: gtacli fetch --all --dry-run)",
            )
        if dry_run and verify_only:
            raise UsageError("--dry-run and --verify-only exclude each other", fix="use one of them")
        mirrors = parse_mirrors(mirror or [])
        payload: Dict[str, Any] = {"data_root": str(layout.root), "mirrors": mirrors}
        failed = False

        if smpl_from:
            if dry_run:
                from gtacli.assets.smpl_import import find_candidates

                found = find_candidates(smpl_from)
                payload["smpl_import"] = {"would_import": {c.gender: c.source for c in found}}
            else:
                from gtacli.assets.download import ensure_writable_root
                from gtacli.assets.smpl_import import import_smpl

                ensure_writable_root(layout.root)
                report = import_smpl(smpl_from, layout)
                payload["smpl_import"] = report.to_dict()
                if report.missing:
                    out.warn(report.missing_hint())

        if assets:
            if layout.is_synthetic:
                out.once(
                    "synthetic", f"{layout.root} is a SYNTHETIC sample tree; real assets do not belong here"
                )
            opts = FetchOptions(mirrors=mirrors, force=force)
            if dry_run:
                results = plan(assets, layout, opts)
            elif verify_only:
                results = [verify_present(a, layout, deep=True) for a in assets]
            else:
                progress = _RichProgress(out) if out.show_progress else _QuietProgress(out)
                opts.progress = progress
                with progress:
                    results = fetch_assets(assets, layout, opts, jobs=jobs)
            failed = any(not r.ok for r in results)
            payload["files"] = [r.to_dict() for r in results]
            payload["ok"] = not failed

            def human() -> None:
                title = "fetch (dry run)" if dry_run else ("verify" if verify_only else "fetch")
                out.table(
                    title,
                    ["name", "status", "size", "verified by", "detail"],
                    [
                        (r.name, r.status, _size(r.size), r.verified_by or "", r.detail or r.dest)
                        for r in results
                    ],
                )

            out.result(payload, human=lambda: (_print_smpl(out, payload), human()))
            for r in results:
                if not r.ok:  # one line per failed file, on stderr
                    out.err.print(f"error: {r.name}: {r.detail}", markup=False, style="red")
        else:
            out.result(payload, human=lambda: _print_smpl(out, payload))
        return 1 if failed else 0

    return body()


def _print_smpl(out: Output, payload: Dict[str, Any]) -> None:
    info = payload.get("smpl_import")
    if not info:
        return
    for gender, source in info.get("would_import", {}).items():
        out.out.print(f"would import SMPL {gender} from {source}", markup=False)
    for gender, dest in info.get("written", {}).items():
        out.out.print(f"SMPL {gender}: {dest} (from {info['sources'][gender]})", markup=False)
    for gender in info.get("present", []):
        out.out.print(f"SMPL {gender}: already present", markup=False)


def _size(n: Optional[int]) -> str:
    if n is None:
        return ""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)
