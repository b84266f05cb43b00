"""Verified, resumable downloads of manifest assets into a data root.

For each asset (`fetch_asset`):

1. take a per-asset cross-process lock (`fcntl.flock` on `<root>/.gtacli-locks/<name>.lock`), so two
   `gtacli fetch` runs on one root wait for each other instead of writing the same `.part`;
2. if the destination exists and verifies (manifest sha256 / prefix, else the lock-file record, plus the
   content validator), skip it (unless `force`);
3. for each URL candidate — the mirrors in order (scheme and host replaced, path and query kept), then the
   original — stream into `<dest>.part`; an existing `.part` is resumed with `Range` (+ `If-Range`) and
   restarted when the server ignores Range or the object changed (ETag / Last-Modified, kept in
   `<dest>.part.json`); connection errors, timeouts, 5xx and short reads are retried with exponential
   backoff (the retry resumes from what arrived);
4. verify the bytes: manifest sha256 (or its prefix) when known, else the server's own checksums
   (`Content-MD5`, an `ETag` that is a plain MD5, `x-oss-hash-crc64ecma` = CRC-64/XZ);
5. validate the content (`manifest.validate_asset`);
6. only then `os.replace` the `.part` onto the destination (same folder: atomic) and record name, URL,
   size, sha256 and time in the lock file (`DataLayout.lock_file`, updated under its own flock).

The jobs live in separate modules: `transfer` (one HTTP transfer with resume, retries, verification),
`lockfile` (the lock file and cross-process locks), `postprocess` (the HumanData cache after a download);
this module orchestrates them. Any failure leaves nothing at the destination; the error is returned in the `FetchResult`, so one failed
file does not stop the others.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import urlsplit

import requests

from gtacli.assets.lockfile import LOCK_DIR_NAME, file_lock, lock_record, read_lock_file, record_in_lock_file
from gtacli.assets.manifest import Asset, validate_asset
from gtacli.assets.postprocess import prepare_human_data_cache
from gtacli.assets.transfer import (
    PART_SUFFIX,
    USER_AGENT,
    FetchOptions,
    NextUrl,
    candidate_urls,
    check_free_space,
    download_one_url,
    part_meta_path,
    part_path,
    remove_files,
    verify_bytes,
)
from gtacli.errors import DownloadError, GtacliError
from gtacli.io.atomic import ensure_writable_dir
from gtacli.io.hashing import MultiHasher
from gtacli.io.sizes import format_bytes
from gtacli.layout import DataLayout


@dataclass
class FetchResult:
    name: str
    status: str  # downloaded | present | failed | missing | ok | would-download | would-resume
    dest: str
    url: Optional[str] = None
    size: Optional[int] = None
    sha256: Optional[str] = None
    verified_by: Optional[str] = None
    detail: str = ""
    error: str = ""  # why it failed, without the file name (identical causes are listed once)

    @property
    def ok(self) -> bool:
        return self.status in ("downloaded", "present", "ok", "would-download", "would-resume")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


def ensure_writable_root(root: Path) -> None:
    """Create the data root if needed and prove we can write in it (one clear error otherwise)."""
    ensure_writable_dir(
        root,
        what="to the data root",
        fix="choose a writable folder with --data-root or $GTACLI_DATA_ROOT, or fix its permissions",
    )


def planned_bytes(assets: Sequence[Asset], layout: DataLayout) -> int:
    """Bytes still to download for assets whose size the manifest knows (partial files count as done)."""
    total = 0
    for asset in assets:
        if not asset.size:
            continue
        dest = asset.path(layout.root)
        if dest.exists():
            continue
        part = part_path(dest)
        have = part.stat().st_size if part.exists() else 0
        total += max(asset.size - have, 0)
    return total


def verify_present(
    asset: Asset, layout: DataLayout, *, deep: bool = True, lock: Optional[Dict] = None
) -> FetchResult:
    """Check an existing destination: hash (manifest, else lock-file record) and content validator.

    `deep=False` trusts the lock-file record when size and mtime match it (no re-hash of large files).
    """
    dest = asset.path(layout.root)
    result = FetchResult(asset.name, "ok", str(dest), url=asset.url)
    if not dest.is_file():
        result.status = "missing"
        result.detail = f"{dest}: not downloaded. Fix: gtacli fetch {asset.name}"
        return result
    lock = read_lock_file(layout) if lock is None else lock
    record = lock.get(asset.name) or {}
    st = dest.stat()
    result.size = st.st_size
    try:
        if not deep and record.get("size") == st.st_size and record.get("mtime_ns") == st.st_mtime_ns:
            sha = record.get("sha256", "")
            result.verified_by = "lock file (size, mtime)"
        else:
            hasher = MultiHasher()
            with open(dest, "rb") as fp:
                hasher.update_from_file(fp)
            sha = hasher.sha256.hexdigest()
            result.verified_by = "sha256"
        result.sha256 = sha
        verdict = asset.check_sha256(sha)
        if verdict is False:
            raise GtacliError(
                "sha256 does not match the manifest", path=dest, fix=f"gtacli fetch --force {asset.name}"
            )
        if verdict is None:
            if record.get("sha256"):
                if record["sha256"] != sha:
                    raise GtacliError(
                        "sha256 differs from the lock-file record (file changed since it was fetched)",
                        path=dest,
                        fix=f"gtacli fetch --force {asset.name}",
                    )
                result.verified_by = f"{result.verified_by} = lock file"
            else:
                result.verified_by = "content only (no known hash)"
        result.detail = validate_asset(asset, dest)
    except GtacliError as exc:
        result.status, result.detail = "invalid", exc.one_line()
    return result


def _session() -> Any:
    session = requests.Session()
    session.headers["User-Agent"] = USER_AGENT
    return session


def fetch_asset(asset: Asset, layout: DataLayout, opts: FetchOptions, session: Any = None) -> FetchResult:
    """Download, verify, validate and move one asset into place; never raises for download problems."""
    dest = asset.path(layout.root)
    result = FetchResult(asset.name, "failed", str(dest), url=asset.url)
    session = session or _session()

    def waiting() -> None:
        opts.progress.message(f"{asset.name}: another gtacli fetch is working on this file; waiting")

    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        with file_lock(layout.root / LOCK_DIR_NAME / f"{asset.name}.lock", on_wait=waiting):
            if dest.exists() and not opts.force:
                present = verify_present(asset, layout, deep=False)
                if present.status == "ok":
                    present.status = "present"
                    return present
                opts.progress.message(
                    f"{asset.name}: existing file does not verify ({present.detail}); downloading"
                )
            errors: List[str] = []
            for url in candidate_urls(asset.url, opts.mirrors):
                opts.progress.start(asset.name, asset.size, 0)
                try:
                    meta = download_one_url(session, url, dest, opts, asset.name, asset.max_bytes)
                    part = part_path(dest)
                    sha, how = verify_bytes(asset, part, meta.get("checksums") or {})
                    try:
                        detail = validate_asset(asset, part)
                    except GtacliError as exc:
                        raise NextUrl(f"content check failed: {exc.problem}", bad_bytes=True) from None
                    os.replace(part, dest)
                    remove_files(part_meta_path(dest))
                    size = dest.stat().st_size
                    record_in_lock_file(
                        layout,
                        asset.name,
                        lock_record(asset.name, url, dest, layout.root, size, sha, verified_by=how),
                    )
                    result.status, result.url, result.size, result.sha256 = "downloaded", url, size, sha
                    result.verified_by, result.detail = how, detail
                    note = prepare_human_data_cache(asset, dest, layout)
                    if note:
                        result.detail = f"{detail}; {note}"
                    return result
                except NextUrl as exc:
                    errors.append(f"{urlsplit(url).netloc}: {exc}")
                    if exc.bad_bytes:
                        remove_files(
                            part_path(dest), part_meta_path(dest)
                        )  # bad bytes: never resume from them
                finally:
                    opts.progress.finish(asset.name)
            result.error = "; ".join(errors)
            raise DownloadError(
                f"download failed ({result.error})",
                path=dest,
                fix="check the network or --mirror and run again (partial downloads resume)",
            )
    except GtacliError as exc:
        result.detail = exc.one_line()
        result.error = result.error or exc.problem
    except OSError as exc:
        result.detail = f"{dest}: {exc.strerror or exc}"
        result.error = str(exc.strerror or exc)
    return result


def _remove_empty(folders: Sequence[Path]) -> None:
    for folder in folders:  # deepest first
        try:
            folder.rmdir()
        except OSError:
            pass  # not empty (or gone): keep it


@dataclass
class FetchSummary:
    fetched: int
    failed: int
    skipped: int
    bytes: int

    def line(self) -> str:
        return f"{self.fetched} fetched, {self.failed} failed, {self.skipped} skipped, {format_bytes(self.bytes, 'MB')}"

    def to_dict(self) -> Dict[str, Any]:
        return asdict(self)


def summarize(results: Sequence[FetchResult]) -> FetchSummary:
    """Counts of a run: fetched (downloaded now), failed, skipped (already present); MB downloaded."""
    fetched = [r for r in results if r.status == "downloaded"]
    return FetchSummary(
        fetched=len(fetched),
        failed=sum(not r.ok for r in results),
        skipped=sum(r.status == "present" for r in results),
        bytes=sum(r.size or 0 for r in fetched),
    )


def grouped_errors(results: Sequence[FetchResult]) -> List[Tuple[str, List[str]]]:
    """Each distinct failure cause once, with the files it hit (an offline run: one line, not 25)."""
    groups: Dict[str, List[str]] = {}
    for r in results:
        if not r.ok:
            groups.setdefault(r.error or r.detail, []).append(r.name)
    return list(groups.items())


def verification_method(asset: Asset) -> str:
    """How a download of `asset` is verified (shown by --dry-run)."""
    if asset.sha256:
        how = "sha256"
    elif asset.sha256_prefix:
        how = "sha256 prefix"
    else:
        how = "server MD5/CRC-64"
    kind = (asset.validator or {}).get("kind")
    return f"{how} + {kind}" if kind else how


def fetch_assets(
    assets: Sequence[Asset], layout: DataLayout, opts: FetchOptions, *, jobs: int = 1
) -> List[FetchResult]:
    """Fetch several assets (`jobs` at a time); results in input order."""
    ensure_writable_root(layout.root)
    if not opts.force:
        needed = planned_bytes(assets, layout)
        if needed:
            check_free_space(layout.root, needed, f"{len(assets)} file(s)")
    else:
        check_free_space(layout.root, sum(a.size or 0 for a in assets), f"{len(assets)} file(s)")
    # folders the destinations need that do not exist yet: those left empty by failed files are removed at the
    # end (not per file: another worker may be about to write into the same folder)
    made = sorted(
        {p for a in assets for p in _missing_folders(a.path(layout.root).parent, layout.root)},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    try:
        if jobs <= 1 or len(assets) <= 1:
            session = _session()
            return [fetch_asset(a, layout, opts, session) for a in assets]
        pool = ThreadPoolExecutor(max_workers=jobs)
        try:
            return list(pool.map(lambda a: fetch_asset(a, layout, opts), assets))
        except BaseException:  # Ctrl-C: stop the workers (their .part files stay for resuming)
            opts.cancel.set()
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        finally:
            pool.shutdown(wait=True)
    finally:
        _remove_empty(made)  # a resumable .part keeps its folder


def _missing_folders(folder: Path, root: Path) -> List[Path]:
    return [p for p in (folder, *folder.parents) if p != root and root in p.parents and not p.exists()]


def dry_run(assets: Sequence[Asset], layout: DataLayout, opts: FetchOptions) -> List[FetchResult]:
    """What `fetch` would do, without network: present / would-download / would-resume per asset."""
    results = []
    for asset in assets:
        dest = asset.path(layout.root)
        urls = candidate_urls(asset.url, opts.mirrors)
        if dest.exists() and not opts.force:
            status, detail = "present", "exists (verified when fetched)"
        elif part_path(dest).exists():
            status, detail = (
                "would-resume",
                f"{part_path(dest).stat().st_size} bytes already in {PART_SUFFIX}",
            )
        else:
            status, detail = "would-download", "from " + " then ".join(urlsplit(u).netloc for u in urls)
        results.append(
            FetchResult(
                asset.name,
                status,
                str(dest),
                url=urls[0],
                size=asset.size,
                verified_by=verification_method(asset),
                detail=detail,
            )
        )
    return results
