"""`gtacli fetch`: download, verify and place the public assets; import licensed SMPL files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, ProgressBar, QuietOpt
from gtacli.errors import UsageError
from gtacli.io.sizes import format_bytes as _size  # (a small module: the command's start-up stays light)


def fetch_command(
    data_root: DataRootOpt,
    names: Annotated[
        Optional[List[str]],
        typer.Argument(help="Asset or group names (see `gtacli fetch --all --dry-run`).", show_default=False),
    ] = None,
    group: Annotated[
        Optional[List[str]],
        typer.Option(
            "--group",
            "-g",
            help="Fetch a group: extras, fits, pretrained, models, annotations, detector, keypoints. Repeatable.",
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

    NAMES are entry names or group names (`gtacli fetch detector`, `gtacli fetch extras spin_official`).

    Each file streams to `<dest>.part` (resumed with HTTP Range after an interruption), is verified by its
    known sha256 (or the server's Content-MD5 / ETag MD5 / CRC-64), checked at content level, and only then
    moved into place; the lock file `gtacli.lock.json` records what was fetched. Files already present
    that verify are skipped. Exit 1 if any file fails.

    Tuning (environment): GTACLI_FETCH_RETRIES (attempts per URL, default 5), GTACLI_FETCH_BACKOFF_S
    (first retry wait, doubles, default 1), GTACLI_FETCH_TIMEOUT_S (read timeout, default 60). A host that
    cannot be resolved or refuses connections is given up after one attempt for the whole run. The run
    ends with one line: `N fetched, M failed, K skipped, X MB`.

    Examples:

      gtacli fetch --all

      gtacli fetch --group extras --group fits --jobs 4

      gtacli fetch spin_official pw3d_test --mirror https://my-mirror.example.org

      gtacli fetch --smpl-from ~/Downloads/SMPL_python_v.1.1.0.zip

      gtacli fetch --all --verify-only --json
    """
    from gtacli.assets.download import (
        dry_run as plan,
    )
    from gtacli.assets.download import (
        ensure_writable_root,
        fetch_assets,
        grouped_errors,
        summarize,
        verify_present,
    )
    from gtacli.assets.manifest import load_manifest
    from gtacli.assets.smpl_import import find_candidates, import_smpl
    from gtacli.assets.transfer import FetchOptions, Progress, parse_mirrors
    from gtacli.layout import DataLayout

    # usage first: nothing is printed before the options are known to work
    if dry_run and verify_only:
        raise UsageError("--dry-run and --verify-only exclude each other", fix="use one of them")
    layout = DataLayout(data_root)
    manifest = load_manifest()
    assets = manifest.select(names or [], group or [], all_assets)
    if not assets and not smpl_from:
        raise UsageError(
            "nothing to fetch",
            fix="name assets or groups, or use --group G / --all / --smpl-from PATH "
            "(list: gtacli fetch --all --dry-run)",
        )
    mirrors = parse_mirrors(mirror or [])
    opts = FetchOptions(mirrors=mirrors, force=force)  # reads $GTACLI_FETCH_*: a bad value is a usage error
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    payload: Dict[str, Any] = {"data_root": str(layout.root), "mirrors": mirrors}
    failed = False

    if smpl_from:
        if dry_run:
            found = find_candidates(smpl_from)
            payload["smpl_import"] = {"would_import": {c.gender: c.source for c in found}}
        else:
            ensure_writable_root(layout.root)
            report = import_smpl(smpl_from, layout)
            payload["smpl_import"] = report.to_dict()
            if report.missing:
                out.warn(report.missing_hint())

    if not assets:
        out.result(payload, human=lambda: _print_smpl(out, payload))
        return 0
    if layout.is_synthetic:
        out.once("synthetic", f"{layout.root} is a SYNTHETIC sample tree; real assets do not belong here")
    if dry_run:
        results = plan(assets, layout, opts)
    elif verify_only:
        results = [verify_present(a, layout, deep=True) for a in assets]
    else:
        total = sum(a.size or 0 for a in assets) or None
        with ProgressBar(out, "fetch", rate_unit="B") as update:
            opts.progress = Progress(update, out.info, total)
            results = fetch_assets(assets, layout, opts, jobs=jobs)
    failed = any(not r.ok for r in results)
    summary = summarize(results)
    errors = grouped_errors(results)
    payload["files"] = [r.to_dict() for r in results]
    payload["ok"] = not failed
    if dry_run:
        payload["total_bytes"] = sum(r.size or 0 for r in results if r.status != "present")
    else:
        payload["summary"] = summary.to_dict()

    def human() -> None:
        _print_smpl(out, payload)
        if dry_run:
            out.table(
                "fetch (dry run)",
                ["name", "size", "destination", "verified by"],
                [(r.name, _size(r.size), _relative(r.dest, layout.root), r.verified_by) for r in results],
            )
            todo = [r for r in results if r.status != "present"]
            unknown = sum(r.size is None for r in todo)
            out.out.print(
                f"{len(todo)} to fetch, {_size(payload['total_bytes']) or '0 B'} in total"
                + (f" ({unknown} of unknown size)" if unknown else "")
                + f"; {len(results) - len(todo)} present",
                markup=False,
            )
            return
        out.table(
            "verify" if verify_only else "fetch",
            ["name", "status", "size", "detail"],
            [
                (
                    r.name,
                    r.status,
                    _size(r.size),
                    _last_cause(r.error or r.detail) if not r.ok else (r.verified_by or ""),
                )
                for r in results
            ],
        )
        if not verify_only:
            out.out.print(summary.line(), markup=False)

    out.result(payload, human=human)
    for cause, files in errors:  # each cause once, on stderr
        which = files[0] if len(files) == 1 else f"{len(files)} files: {', '.join(files[:4])}"
        which += ", ..." if len(files) > 4 else ""
        fix = (
            ""
            if "Fix:" in cause
            else ". Fix: check the network or --mirror, then run again (downloads resume)"
        )
        out.err.print(f"error: {cause} ({which}){fix}", markup=False, style="red")
    return 1 if failed else 0


def _last_cause(error: str, width: int = 48) -> str:
    """The table's short form of an error: the last URL's cause without its host (the full text is below)."""
    text = error.split("; ")[-1].split(": ", 1)[-1]
    return text if len(text) <= width else text[: width - 3] + "..."


def _relative(dest: str, root: Path) -> str:
    path = Path(dest)
    return path.relative_to(root).as_posix() if path.is_relative_to(root) else dest


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
