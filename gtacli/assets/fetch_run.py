"""What one `gtacli fetch` does, apart from printing: check the request, import SMPL files, then plan, verify
or download the selected assets, and report (results, summary, each failure cause once).

`plan_fetch` raises every usage error before anything is written or printed; `run_fetch` does the work. The
command (`gtacli/cli/fetch.py`) maps options to a `FetchRequest` and prints the `FetchReport`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from gtacli.assets.download import (
    FetchResult,
    FetchSummary,
    dry_run,
    ensure_writable_root,
    fetch_assets,
    grouped_errors,
    summarize,
    verify_present,
)
from gtacli.assets.manifest import Asset, load_manifest
from gtacli.assets.transfer import FetchOptions, Progress, parse_mirrors
from gtacli.errors import UsageError
from gtacli.layout import DataLayout


@dataclass
class FetchRequest:
    """The command line of `gtacli fetch`, as plain values."""

    data_root: Path
    names: Sequence[str] = ()
    groups: Sequence[str] = ()
    all_assets: bool = False
    mirrors: Sequence[str] = ()
    jobs: int = 2
    dry_run: bool = False
    force: bool = False
    verify_only: bool = False
    smpl_from: Sequence[Path] = ()

    @property
    def mode(self) -> str:
        return "dry-run" if self.dry_run else "verify" if self.verify_only else "fetch"


@dataclass
class FetchPlan:
    """A checked request: the data root, the assets and the transfer options."""

    request: FetchRequest
    layout: DataLayout
    assets: List[Asset]
    opts: FetchOptions

    def expected_sizes(self) -> Dict[str, int]:
        """Bytes each file to download brings, as far as the manifest knows sizes (files of unknown size add
        theirs when the server announces it; files present are skipped and bring none)."""
        return {
            a.name: a.size
            for a in self.assets
            if a.size and (self.opts.force or not a.path(self.layout.root).exists())
        }


@dataclass
class FetchReport:
    plan: FetchPlan
    results: List[FetchResult] = field(default_factory=list)
    smpl_import: Optional[Dict[str, Any]] = None
    smpl_hint: str = ""  # what to do about SMPL genders not found

    @property
    def failed(self) -> bool:
        return any(not r.ok for r in self.results)

    @property
    def summary(self) -> FetchSummary:
        return summarize(self.results)

    @property
    def errors(self) -> List[Tuple[str, List[str]]]:
        return grouped_errors(self.results)

    @property
    def to_fetch(self) -> List[FetchResult]:
        return [r for r in self.results if r.status != "present"]

    def payload(self) -> Dict[str, Any]:
        """The `--json` document."""
        plan = self.plan
        doc: Dict[str, Any] = {"data_root": str(plan.layout.root), "mirrors": list(plan.opts.mirrors)}
        if self.smpl_import is not None:
            doc["smpl_import"] = self.smpl_import
        if not plan.assets:
            return doc
        doc["files"] = [r.to_dict() for r in self.results]
        doc["ok"] = not self.failed
        if plan.request.dry_run:
            doc["total_bytes"] = sum(r.size or 0 for r in self.to_fetch)
        else:
            doc["summary"] = self.summary.to_dict()
        return doc


def plan_fetch(request: FetchRequest) -> FetchPlan:
    """Check the request (every usage error is raised here, before any work)."""
    if request.dry_run and request.verify_only:
        raise UsageError("--dry-run and --verify-only exclude each other", fix="use one of them")
    layout = DataLayout(request.data_root)
    assets = load_manifest().select(list(request.names), list(request.groups), request.all_assets)
    if not assets and not request.smpl_from:
        raise UsageError(
            "nothing to fetch",
            fix="name assets or groups, or use --group G / --all / --smpl-from PATH "
            "(list: gtacli fetch --all --dry-run)",
        )
    mirrors = parse_mirrors(list(request.mirrors))
    opts = FetchOptions(
        mirrors=mirrors, force=request.force
    )  # reads $GTACLI_FETCH_*: a bad value is a usage error
    return FetchPlan(request, layout, assets, opts)


def import_requested_smpl(plan: FetchPlan, report: FetchReport) -> None:
    """`--smpl-from`: import (or, in a dry run, list) the SMPL files found."""
    from gtacli.assets.smpl_import import find_candidates, import_smpl

    request = plan.request
    if not request.smpl_from:
        return
    if request.dry_run:
        found = find_candidates(list(request.smpl_from))
        report.smpl_import = {"would_import": {c.gender: c.source for c in found}}
        return
    ensure_writable_root(plan.layout.root)
    imported = import_smpl(list(request.smpl_from), plan.layout)
    report.smpl_import = imported.to_dict()
    if imported.missing:
        report.smpl_hint = imported.missing_hint()


def run_fetch(plan: FetchPlan, progress: Optional[Progress] = None) -> FetchReport:
    """Import SMPL files, then plan / verify / download the assets; failures are in the report, not raised."""
    report = FetchReport(plan)
    import_requested_smpl(plan, report)
    if not plan.assets:
        return report
    if plan.request.dry_run:
        report.results = dry_run(plan.assets, plan.layout, plan.opts)
    elif plan.request.verify_only:
        report.results = [verify_present(a, plan.layout, deep=True) for a in plan.assets]
    else:
        if progress is not None:
            plan.opts.progress = progress
        report.results = fetch_assets(plan.assets, plan.layout, plan.opts, jobs=plan.request.jobs)
    return report
