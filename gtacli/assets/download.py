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

Any failure leaves nothing at the destination; the error is returned in the `FetchResult`, so one failed
file does not stop the others.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import json
import os
import re
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

from gtacli.assets.manifest import Asset, validate_asset
from gtacli.errors import DownloadError, GtacliError, UsageError
from gtacli.io.atomic import atomic_write_json, ensure_writable_dir
from gtacli.io.hashing import MultiHasher
from gtacli.layout import DataLayout

# Tunables; environment overrides (read when a FetchOptions is made) let slow links and tests change them.
DEFAULT_RETRIES = 5  # attempts per URL ($GTACLI_FETCH_RETRIES)
DEFAULT_BACKOFF_S = 1.0  # first wait, doubles per retry ($GTACLI_FETCH_BACKOFF_S)
MAX_BACKOFF_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_READ_TIMEOUT_S = 60.0  # ($GTACLI_FETCH_TIMEOUT_S)
STREAM_CHUNK_BYTES = 64 << 10  # small: a broken connection loses at most this much of what arrived
FREE_SPACE_MARGIN_BYTES = 64 << 20  # keep this much free beyond what the download needs
LOCK_DIR_NAME = ".gtacli-locks"
PART_SUFFIX = ".part"
USER_AGENT = "gtacli-fetch"

_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


# --------------------------------------------------------------------------------------------------
# results and progress


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

    @property
    def ok(self) -> bool:
        return self.status in ("downloaded", "present", "ok", "would-download", "would-resume")

    def to_dict(self) -> Dict[str, Any]:
        d = asdict(self)
        d["ok"] = self.ok
        return d


class Progress:
    """Progress sink; the CLI passes a rich-backed one. Methods are called from worker threads."""

    def start(self, name: str, total: Optional[int], completed: int = 0) -> None: ...

    def advance(self, name: str, nbytes: int) -> None: ...

    def reset(self, name: str, total: Optional[int], completed: int = 0) -> None:
        self.start(name, total, completed)

    def finish(self, name: str) -> None: ...

    def message(self, text: str) -> None: ...


def _env(name: str, default: Any) -> Any:
    value = os.environ.get(name, "").strip()
    return value if value else default


@dataclass
class FetchOptions:
    mirrors: Sequence[str] = ()
    force: bool = False
    retries: int = field(default_factory=lambda: int(_env("GTACLI_FETCH_RETRIES", DEFAULT_RETRIES)))
    backoff_s: float = field(default_factory=lambda: float(_env("GTACLI_FETCH_BACKOFF_S", DEFAULT_BACKOFF_S)))
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = field(
        default_factory=lambda: float(_env("GTACLI_FETCH_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S))
    )
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: workers stop soon


# --------------------------------------------------------------------------------------------------
# URLs and mirrors


def parse_mirrors(values: Sequence[str] = (), env: Optional[str] = None) -> List[str]:
    """`--mirror` values then `$GTACLI_MIRROR` (comma/space separated); each must be scheme://host[:port]."""
    env = os.environ.get("GTACLI_MIRROR", "") if env is None else env
    items = [v for value in values for v in re.split(r"[,\s]+", value) if v]
    items += [v for v in re.split(r"[,\s]+", env) if v]
    result: List[str] = []
    for item in items:
        parts = urlsplit(item)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise UsageError(
                f"mirror '{item}' is not a URL like https://host[:port]",
                fix="pass --mirror https://your.mirror.host (path and query of each file are kept)",
            )
        if item not in result:
            result.append(item)
    return result


def mirror_url(url: str, mirror: str) -> str:
    """Replace scheme and host of `url` by the mirror's; keep path and query. A mirror with a path
    prefix (https://host/prefix) puts that prefix in front of the original path."""
    src = urlsplit(url)
    m = urlsplit(mirror)
    path = m.path.rstrip("/") + src.path
    return urlunsplit((m.scheme, m.netloc, path, src.query, ""))


def candidate_urls(url: str, mirrors: Sequence[str]) -> List[str]:
    return [mirror_url(url, m) for m in mirrors] + [url]


# --------------------------------------------------------------------------------------------------
# locks and the lock file


@contextlib.contextmanager
def file_lock(path: Path, *, on_wait: Optional[Callable[[], None]] = None) -> Iterator[None]:
    """Exclusive cross-process lock (fcntl.flock) held while the block runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if on_wait:
                on_wait()
            fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


_THREAD_LOCK = threading.Lock()  # flock is per open file, so threads of one process also need this


def read_lock_file(layout: DataLayout) -> Dict[str, Any]:
    """The lock file's records by asset name ({} when absent or unreadable)."""
    path = layout.lock_file
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    files = data.get("files") if isinstance(data, dict) else None
    return files if isinstance(files, dict) else {}


def record_in_lock_file(layout: DataLayout, name: str, record: Dict[str, Any]) -> None:
    """Add/replace one record; read-modify-write under a cross-process lock, written atomically."""
    with _THREAD_LOCK, file_lock(layout.root / LOCK_DIR_NAME / "lockfile.lock"):
        files = read_lock_file(layout)
        files[name] = record
        atomic_write_json(layout.lock_file, {"version": 1, "files": files})


def lock_record(
    asset_name: str, url: str, dest: Path, root: Path, size: int, sha256: str, **extra: Any
) -> Dict[str, Any]:
    """One lock-file entry; `dest` is stored relative to the data root so the tree can move."""
    st = dest.stat()
    record = {
        "name": asset_name,
        "url": url,
        "dest": dest.relative_to(root).as_posix() if dest.is_relative_to(root) else str(dest),
        "size": size,
        "sha256": sha256,
        "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "mtime_ns": st.st_mtime_ns,
    }
    record.update(extra)
    return record


# --------------------------------------------------------------------------------------------------
# checks before starting


def ensure_writable_root(root: Path) -> None:
    """Create the data root if needed and prove we can write in it (one clear error otherwise)."""
    ensure_writable_dir(
        root,
        what="to the data root",
        fix="choose a writable folder with --data-root or $GTACLI_DATA_ROOT, or fix its permissions",
    )


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Raise before downloading when `needed_bytes` (+ a margin) does not fit on the folder's disk."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes + FREE_SPACE_MARGIN_BYTES > free:
        raise DownloadError(
            f"not enough free disk space for {what}: need {_human(needed_bytes)} "
            f"(+{_human(FREE_SPACE_MARGIN_BYTES)} margin), {_human(free)} free",
            path=folder,
            fix="free disk space or use another --data-root, then run again (partial files resume)",
        )


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n} B"


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


# --------------------------------------------------------------------------------------------------
# one HTTP transfer


class _Retryable(Exception):
    """A transient failure: retry the same URL after a backoff (resuming from the .part)."""


class _NextUrl(Exception):
    """This URL cannot deliver the file (4xx, wrong bytes): try the next candidate.

    `bad_bytes`: what arrived is wrong (hash, content, length), so the `.part` must not be resumed."""

    def __init__(self, message: str, *, bad_bytes: bool = False):
        super().__init__(message)
        self.bad_bytes = bad_bytes


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def _part_meta_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX + ".json")


def _read_meta(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _object_key(url: str) -> str:
    """What identifies the remote object whatever mirror serves it: path and query."""
    parts = urlsplit(url)
    return urlunsplit(("", "", parts.path, parts.query, ""))


def _server_checksums(headers: Any, full_body: bool) -> Dict[str, str]:
    sums: Dict[str, str] = {}
    crc = headers.get("x-oss-hash-crc64ecma")
    if crc and crc.strip().isdigit():
        sums["crc64"] = crc.strip()
    etag = headers.get("ETag")
    if etag and not etag.startswith("W/"):
        m = _MD5_ETAG.match(etag.strip())
        if m:
            sums["etag_md5"] = m.group(1).lower()
    md5 = headers.get("Content-MD5")
    if md5 and full_body:  # on a 206 it would describe only the range
        with contextlib.suppress(ValueError):
            sums["content_md5"] = base64.b64decode(md5.strip(), validate=True).hex()
    return sums


def _remove(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def _transfer(session: Any, url: str, dest: Path, opts: FetchOptions, name: str) -> Dict[str, Any]:
    """One attempt to complete `<dest>.part` from `url`. Returns the part's metadata on success."""
    import requests

    part = part_path(dest)
    meta_path = _part_meta_path(dest)
    meta = _read_meta(meta_path) if part.exists() else {}
    have = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    resuming = have > 0 and meta.get("key") == _object_key(url)
    if have > 0 and not resuming:
        _remove(part, meta_path)  # unknown origin: cannot resume safely
        have, meta = 0, {}
    if resuming:
        headers["Range"] = f"bytes={have}-"
        validator = meta.get("etag") or meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    try:
        resp = session.get(
            url, headers=headers, stream=True, timeout=(opts.connect_timeout_s, opts.read_timeout_s)
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise _Retryable(_short_exc(exc)) from None
    with contextlib.closing(resp):
        status = resp.status_code
        if status == 416 and resuming:
            total = meta.get("total")
            if total is not None and have == total:
                return meta  # the .part was already complete
            _remove(part, meta_path)
            raise _Retryable("server refused the resume range; starting over")
        if status >= 500 or status == 429:
            raise _Retryable(f"HTTP {status} {resp.reason}")
        if status >= 400:
            raise _NextUrl(f"HTTP {status} {resp.reason}")
        if status not in (200, 206):
            raise _NextUrl(f"unexpected HTTP {status}")

        etag = resp.headers.get("ETag")
        last_modified = resp.headers.get("Last-Modified")
        mode = "wb"
        start = 0
        if status == 206 and resuming:
            m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
            changed = (meta.get("etag") and etag and etag != meta["etag"]) or (
                meta.get("last_modified") and last_modified and last_modified != meta["last_modified"]
            )
            if not m or int(m.group(1)) != have or changed:
                _remove(part, meta_path)
                why = "the file changed on the server" if changed else "the server answered a different range"
                raise _Retryable(f"{why}; starting over")
            mode, start = "ab", have
            total = int(m.group(3)) if m.group(3) != "*" else None
            sums = dict(meta.get("checksums") or {})
            sums.update(_server_checksums(resp.headers, full_body=False))
        else:
            if status == 206:  # a range we did not ask for
                raise _NextUrl("server sent a partial response to a full request")
            if resuming:
                opts.progress.message(
                    f"{name}: the server ignored the resume request or the file changed; starting over"
                )
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            sums = _server_checksums(resp.headers, full_body=True)
        if total is not None:
            check_free_space(dest.parent, total - start, f"{name} ({_human(total)})")
        meta = {
            "key": _object_key(url),
            "url": url,
            "etag": etag,
            "last_modified": last_modified,
            "total": total,
            "checksums": sums,
        }
        meta_path.write_text(json.dumps(meta), encoding="utf-8")
        opts.progress.reset(name, total, start)
        got = start
        try:
            with open(part, mode) as fp:
                for chunk in resp.iter_content(chunk_size=STREAM_CHUNK_BYTES):
                    if not chunk:
                        continue
                    fp.write(chunk)
                    got += len(chunk)
                    opts.progress.advance(name, len(chunk))
                    if opts.cancel.is_set():
                        raise DownloadError("interrupted", path=part, fix="run again to resume")
        except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection broke after {_human(got)} ({_short_exc(exc)})") from None
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise DownloadError(
                    "no space left on the device while downloading",
                    path=part,
                    fix="free disk space and run again (the partial file resumes)",
                ) from None
            raise
        if total is not None and got < total:
            raise _Retryable(f"short read: got {got} of {total} bytes")
        if total is not None and got > total:
            _remove(part, meta_path)
            raise _NextUrl(f"server sent {got} bytes, more than the announced {total}", bad_bytes=True)
        meta["size"] = got
        return meta


def _short_exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    m = re.search(
        r"(NameResolutionError|Connection refused|Read timed out|timed out|IncompleteRead[^)]*\))", text
    )
    return m.group(0) if m else (text[:160] or type(exc).__name__)


def _download_one_url(session: Any, url: str, dest: Path, opts: FetchOptions, name: str) -> Dict[str, Any]:
    """Retry `_transfer` with exponential backoff on transient failures."""
    last = ""
    for attempt in range(max(opts.retries, 1)):
        try:
            return _transfer(session, url, dest, opts, name)
        except _Retryable as exc:
            last = str(exc)
            if attempt + 1 < opts.retries:
                wait = min(opts.backoff_s * (2**attempt), MAX_BACKOFF_S)
                opts.progress.message(f"{name}: {last}; retrying in {wait:.1f} s")
                time.sleep(wait)
    raise _NextUrl(f"gave up after {opts.retries} attempts: {last}")


# --------------------------------------------------------------------------------------------------
# verification


def verify_bytes(asset: Asset, path: Path, checksums: Dict[str, str]) -> tuple:
    """Hash `path` and compare with what is known. Returns (sha256, how it was verified).
    Raises `_NextUrl` on a mismatch."""
    use_server = not (asset.sha256 or asset.sha256_prefix)
    has_md5 = "content_md5" in checksums or "etag_md5" in checksums
    # CRC-64 in numpy is ~10x slower than hashlib's MD5: use it only when the server gives no MD5.
    hasher = MultiHasher(
        md5=use_server and has_md5, crc64=use_server and not has_md5 and "crc64" in checksums
    )
    with open(path, "rb") as fp:
        hasher.update_from_file(fp)
    sha = hasher.sha256.hexdigest()
    if asset.size is not None and hasher.length != asset.size:
        raise _NextUrl(f"size {hasher.length} bytes, the manifest says {asset.size}", bad_bytes=True)
    verdict = asset.check_sha256(sha)
    if verdict is False:
        want = asset.sha256 or f"{asset.sha256_prefix}..."
        raise _NextUrl(f"sha256 mismatch: got {sha[:16]}..., expected {want[:16]}...", bad_bytes=True)
    if verdict:
        return sha, "sha256" if asset.sha256 else "sha256 prefix"
    how = []
    if hasher.md5 is not None:
        md5 = hasher.md5.hexdigest()
        if "content_md5" in checksums:
            if md5 != checksums["content_md5"]:
                raise _NextUrl("Content-MD5 mismatch: the bytes are corrupt", bad_bytes=True)
            how.append("Content-MD5")
        if "etag_md5" in checksums:
            if md5 == checksums["etag_md5"]:
                how.append("ETag MD5")
            elif not how and "crc64" not in checksums:
                raise _NextUrl("MD5 does not match the server's ETag: the bytes are corrupt", bad_bytes=True)
    if hasher.crc64 is not None:
        if str(hasher.crc64.value) != checksums["crc64"]:
            raise _NextUrl("CRC-64 mismatch with x-oss-hash-crc64ecma: the bytes are corrupt", bad_bytes=True)
        how.append("CRC-64")
    return sha, " + ".join(how) if how else "unverified (no known hash)"


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


# --------------------------------------------------------------------------------------------------
# one asset, many assets


def _session() -> Any:
    import requests

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
                    meta = _download_one_url(session, url, dest, opts, asset.name)
                    part = part_path(dest)
                    sha, how = verify_bytes(asset, part, meta.get("checksums") or {})
                    try:
                        detail = validate_asset(asset, part)
                    except GtacliError as exc:
                        raise _NextUrl(f"content check failed: {exc.problem}", bad_bytes=True) from None
                    os.replace(part, dest)
                    _remove(_part_meta_path(dest))
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
                except _NextUrl as exc:
                    errors.append(f"{urlsplit(url).netloc}: {exc}")
                    if exc.bad_bytes:
                        _remove(part_path(dest), _part_meta_path(dest))  # bad bytes: never resume from them
                finally:
                    opts.progress.finish(asset.name)
            raise DownloadError(
                "download failed (" + "; ".join(errors) + ")",
                path=dest,
                fix="check the network or --mirror and run again (partial downloads resume)",
            )
    except GtacliError as exc:
        result.detail = exc.one_line()
    except OSError as exc:
        result.detail = f"{dest}: {exc.strerror or exc}"
    return result


def prepare_human_data_cache(asset: Asset, dest: Path, layout: DataLayout) -> str:
    """Build the memory-mapped cache of a large HumanData file right after its download.

    Opening a GTA-size annotation (1.4 M frames) the first time means inflating ~1 GB and unpickling its
    `smpl` dict (10-20 s); paying that once here makes every later open (eval, training, check-layout) take
    milliseconds. Best effort: a cache that cannot be written (read-only cache/, full disk) is not an error,
    readers fall back to decoding the npz.
    """
    from gtacli.data import human_data

    if (asset.validator or {}).get("kind") != "human_data":
        return ""
    if dest.stat().st_size < human_data.CACHE_MIN_BYTES:
        return ""
    try:
        folder = human_data.ensure_cache(dest, cache_root=layout.cache)
    except (GtacliError, OSError) as exc:
        return f"no memory-mapped cache ({exc})"
    return f"memory-mapped cache in {folder}"


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
            FetchResult(asset.name, status, str(dest), url=urls[0], size=asset.size, detail=detail)
        )
    return results
