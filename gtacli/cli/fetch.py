"""`gtacli fetch`: download, verify and place the public assets; import licensed SMPL files."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, ProgressBar, QuietOpt
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

    Each file streams to `<dest>.part` (resumed with HTTP Range after an interruption), is verified by its known sha256 (or the server's Content-MD5 / ETag MD5 / CRC-64), checked at content level, and only then moved into place; the lock file `gtacli.lock.json` records what was fetched. Files already present that verify are skipped. Exit 1 if any file fails.

    Tuning (environment): GTACLI_FETCH_RETRIES (attempts per URL, default 5), GTACLI_FETCH_BACKOFF_S (first retry wait, doubles, default 1), GTACLI_FETCH_TIMEOUT_S (read timeout, default 60). A host that cannot be resolved or refuses connections is given up after one attempt for the whole run. The run ends with one line: `N fetched, M failed, K skipped, X MB`; with --quiet only that line and the errors are printed. A failure cause shared by several files (an unreachable host) is said once, below the table.

    Examples:

      gtacli fetch --all

      gtacli fetch --group extras --group fits --jobs 4

      gtacli fetch spin_official pw3d_test --mirror https://my-mirror.example.org

      gtacli fetch --smpl-from ~/Downloads/SMPL_python_v.1.1.0.zip

      gtacli fetch --all --verify-only --json
    """
    from gtacli.assets.fetch_run import FetchRequest, plan_fetch, run_fetch
    from gtacli.assets.transfer import Progress

    request = FetchRequest(
        data_root=data_root,
        names=names or [],
        groups=group or [],
        all_assets=all_assets,
        mirrors=mirror or [],
        jobs=jobs,
        dry_run=dry_run,
        force=force,
        verify_only=verify_only,
        smpl_from=smpl_from or [],
    )
    plan = plan_fetch(request)  # usage first: nothing is printed before the options are known to work
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    if plan.assets and plan.layout.is_synthetic:
        out.once(
            "synthetic", f"{plan.layout.root} is a SYNTHETIC sample tree; real assets do not belong here"
        )
    if request.mode == "fetch" and plan.assets:
        with ProgressBar(out, "fetch", rate_unit="B") as update:
            report = run_fetch(plan, Progress(update, out.info, sizes=plan.expected_sizes()))
    else:
        report = run_fetch(plan)
    if report.smpl_hint:
        out.warn(report.smpl_hint)
    out.result(report.payload(), human=lambda: _print_report(out, report))
    _print_errors(out, report.errors)
    return 1 if report.failed else 0


def _print_report(out: Output, report: Any) -> None:
    """Tables (unless --quiet) and the one summary line."""
    _print_smpl(out, report.payload())
    if not report.plan.assets:
        return
    mode, results, root = report.plan.request.mode, report.results, report.plan.layout.root
    if mode == "dry-run":
        if not out.quiet:
            out.table(
                "fetch (dry run)",
                ["name", "status", "size", "destination", "verified by"],
                [
                    (
                        r.name,
                        DRY_RUN_STATUS.get(r.status, r.status),
                        _size(r.size),
                        _relative(r.dest, root),
                        r.verified_by,
                    )
                    for r in results
                ],
            )
        todo = report.to_fetch
        unknown = sum(r.size is None for r in todo)
        total = _size(sum(r.size or 0 for r in todo)) or "0 B"
        out.out.print(
            f"{len(todo)} to fetch, {total} in total"
            + (f" ({unknown} of unknown size)" if unknown else "")
            + f"; {len(results) - len(todo)} present",
            markup=False,
        )
        return
    if not out.quiet:
        out.table(
            "verify" if mode == "verify" else "fetch",
            ["name", "status", "size", "detail"],
            [(r.name, r.status, _size(r.size), _detail(r, report.errors)) for r in results],
        )
    if mode == "fetch":
        out.out.print(report.summary.line(), markup=False)


# what --dry-run's status column says (the JSON keeps the status names)
DRY_RUN_STATUS = {"would-download": "to fetch", "would-resume": "to resume", "present": "present"}


def _detail(result: Any, errors: List[Any]) -> str:
    """A row's detail: how it was verified, or why it failed; a cause shared by several files is written once
    below the table (an offline run: one line per host, not one per row) and the row points to it."""
    if result.ok:
        return result.verified_by or ""
    cause = result.error or result.detail
    for number, (text, files) in enumerate(errors, 1):
        if text == cause and len(files) > 1:
            return "see the error below" if len(errors) == 1 else f"see error [{number}] below"
    return _last_cause(cause)


def _print_errors(out: Output, errors: List[Any]) -> None:
    """Each failure cause once on stderr, with the files it hit (numbered when there are several)."""
    for number, (cause, files) in enumerate(errors, 1):
        which = files[0] if len(files) == 1 else f"{len(files)} files: {', '.join(files[:4])}"
        which += ", ..." if len(files) > 4 else ""
        fix = (
            ""
            if "Fix:" in cause
            else ". Fix: check the network or --mirror, then run again (downloads resume)"
        )
        label = f"[{number}] " if len(errors) > 1 else ""
        out.err.print(f"error: {label}{cause} ({which}){fix}", markup=False, style="red")


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
