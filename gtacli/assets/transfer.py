"""One HTTP transfer with resume, retries and verification (the transport layer of `gtacli fetch`).

* `FetchOptions`: mirrors, retries, timeouts (environment overrides checked here: a bad value is a usage
  error naming the variable), the progress sink, cancellation, and the hosts found unreachable in this run;
* `download_one_url`: stream into `<dest>.part`, resuming an existing `.part` with `Range` (+ `If-Range`)
  and restarting when the server ignores Range or the object changed (ETag / Last-Modified, kept in
  `<dest>.part.json`); connection errors, timeouts, 5xx and short reads are retried with exponential backoff.
  A host that cannot be resolved or refuses connections is given up after one attempt for the whole run
  (an offline machine fails in seconds, not minutes); other errors keep their retries;
* `verify_bytes`: the manifest sha256 (or its prefix) when known, else the server's own checksums
  (`Content-MD5`, an `ETag` that is a plain MD5, `x-oss-hash-crc64ecma` = CRC-64/XZ).
"""

from __future__ import annotations

import base64
import contextlib
import errno
import json
import os
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence
from urllib.parse import urlsplit, urlunsplit

import requests

from gtacli.assets.manifest import Asset
from gtacli.errors import DownloadError, UsageError
from gtacli.io.hashing import MultiHasher
from gtacli.io.sizes import format_bytes
from gtacli.progress import ProgressFn

# Tunables; environment overrides (read when a FetchOptions is made) let slow links and tests change them.
DEFAULT_RETRIES = 5  # attempts per URL ($GTACLI_FETCH_RETRIES)
DEFAULT_BACKOFF_S = 1.0  # first wait, doubles per retry ($GTACLI_FETCH_BACKOFF_S)
MAX_BACKOFF_S = 30.0
DEFAULT_CONNECT_TIMEOUT_S = 15.0
DEFAULT_READ_TIMEOUT_S = 60.0  # ($GTACLI_FETCH_TIMEOUT_S)
STREAM_CHUNK_BYTES = 64 << 10  # small: a broken connection loses at most this much of what arrived
FREE_SPACE_MARGIN_BYTES = 64 << 20  # keep this much free beyond what the download needs
SPACE_CHECK_BYTES = 64 << 20  # while streaming, check the free space after each this many bytes
DEFAULT_MAX_BYTES = 4 << 30  # a transfer's bound when the caller names none
PART_SUFFIX = ".part"
USER_AGENT = "gtacli-fetch"

_MD5_ETAG = re.compile(r'^"?([0-9a-fA-F]{32})"?$')


class Progress:
    """A download run's progress, fed from worker threads: the bytes of every file added up and reported through
    the one progress callback (`update(done, total, "<file> (<its size so far>)")`, e.g. the CLI's `ProgressBar`);
    retry and wait notes go to `message`. Both default to nothing."""

    def __init__(
        self,
        update: Optional[ProgressFn] = None,
        message: Optional[Callable[[str], None]] = None,
        total: Optional[int] = None,
        sizes: Optional[Dict[str, int]] = None,
    ):
        self._update = update
        self._message = message
        self._total = total
        # the real total: the expected size of each file to download, replaced by what its server announces
        self._sizes: Dict[str, int] = dict(sizes or {})
        self._lock = threading.Lock()
        self._done: Dict[str, int] = {}

    def _show(self, name: str) -> None:
        if self._update is not None:
            done = sum(self._done.values())
            total = sum(self._sizes.values()) or self._total
            self._update(done, total, f"{name} ({format_bytes(done, 'MB')})")

    def start(self, name: str, total: Optional[int], completed: int = 0) -> None:
        with self._lock:
            self._done[name] = completed
            if total:
                self._sizes[name] = total
            self._show(name)

    reset = start  # a resumed or restarted transfer: what the file holds now

    def advance(self, name: str, nbytes: int) -> None:
        with self._lock:
            self._done[name] = self._done.get(name, 0) + nbytes
            self._show(name)

    def finish(self, name: str) -> None: ...

    def message(self, text: str) -> None:
        if self._message is not None:
            self._message(text)


def env_number(name: str, default: float, *, integer: bool = False, minimum: float = 0.0) -> Any:
    """`$name` as a number >= minimum, else `default` when unset; a bad value is a usage error naming it."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw) if integer else float(raw)
    except ValueError:
        value = None
    if value is None or value != value or value in (float("inf"), float("-inf")) or value < minimum:
        kind = "an integer" if integer else "a number"
        raise UsageError(
            f"environment variable {name}={raw!r} is not {kind} >= {minimum:g}",
            fix=f"unset {name} or set it to e.g. {default}",
        )
    return value


class UnreachableHosts:
    """Hosts that could not be resolved or refused a connection in this run, with the reason (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._hosts: Dict[str, str] = {}

    def add(self, host: str, reason: str) -> str:
        with self._lock:
            return self._hosts.setdefault(host, reason)

    def get(self, host: str) -> Optional[str]:
        with self._lock:
            return self._hosts.get(host)


@dataclass
class FetchOptions:
    mirrors: Sequence[str] = ()
    force: bool = False
    retries: int = field(
        default_factory=lambda: env_number("GTACLI_FETCH_RETRIES", DEFAULT_RETRIES, integer=True, minimum=1)
    )
    backoff_s: float = field(default_factory=lambda: env_number("GTACLI_FETCH_BACKOFF_S", DEFAULT_BACKOFF_S))
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    read_timeout_s: float = field(
        default_factory=lambda: env_number("GTACLI_FETCH_TIMEOUT_S", DEFAULT_READ_TIMEOUT_S, minimum=0.001)
    )
    progress: Progress = field(default_factory=Progress)
    cancel: threading.Event = field(default_factory=threading.Event)  # set on Ctrl-C: workers stop soon
    unreachable: UnreachableHosts = field(default_factory=UnreachableHosts)


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


def check_free_space(folder: Path, needed_bytes: int, what: str) -> None:
    """Raise before downloading when `needed_bytes` (+ a margin) does not fit on the folder's disk."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if needed_bytes + FREE_SPACE_MARGIN_BYTES > free:
        raise DownloadError(
            f"not enough free disk space for {what}: need {format_bytes(needed_bytes)} "
            f"(+{format_bytes(FREE_SPACE_MARGIN_BYTES)} margin), {format_bytes(free)} free",
            path=folder,
            fix="free disk space or use another --data-root, then run again (partial files resume)",
        )


class _Retryable(Exception):
    """A transient failure: retry the same URL after a backoff (resuming from the .part)."""


class Unreachable(Exception):
    """The host cannot be resolved or refuses connections: no retry, and no other file tries it again."""


def unreachable_reason(exc: BaseException) -> str:
    """'cannot resolve host' / 'connection refused' when that is what `exc` (or its causes) is, else ''."""
    seen = set()
    stack = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, socket.gaierror):
            return "cannot resolve host"
        if isinstance(e, ConnectionRefusedError):
            return "connection refused"
        stack += [e.__cause__, e.__context__] + [
            a for a in getattr(e, "args", ()) if isinstance(a, BaseException)
        ]
        reason = getattr(e, "reason", None)
        if isinstance(reason, BaseException):
            stack.append(reason)
    text = str(exc)
    if "NameResolutionError" in text or "Failed to resolve" in text or "Name or service not known" in text:
        return "cannot resolve host"
    if "Connection refused" in text or "[Errno 111]" in text:
        return "connection refused"
    return ""


class NextUrl(Exception):
    """This URL cannot deliver the file (4xx, wrong bytes): try the next candidate.

    `bad_bytes`: what arrived is wrong (hash, content, length), so the `.part` must not be resumed."""

    def __init__(self, message: str, *, bad_bytes: bool = False):
        super().__init__(message)
        self.bad_bytes = bad_bytes


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + PART_SUFFIX)


def part_meta_path(dest: Path) -> Path:
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


def remove_files(*paths: Path) -> None:
    for p in paths:
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


@dataclass
class _PartState:
    """What an existing `<dest>.part` allows: resume it (same remote object) or start over."""

    part: Path
    meta_path: Path
    have: int = 0
    meta: Dict[str, Any] = field(default_factory=dict)
    resuming: bool = False


@dataclass
class _Plan:
    """How to write the response: append from `start` or write anew; the total and the server's checksums."""

    mode: str
    start: int
    total: Optional[int]
    checksums: Dict[str, str]


def _part_state(url: str, dest: Path) -> _PartState:
    state = _PartState(part_path(dest), part_meta_path(dest))
    if not state.part.exists():
        return state
    state.meta = _read_meta(state.meta_path)
    state.have = state.part.stat().st_size
    state.resuming = state.have > 0 and state.meta.get("key") == _object_key(url)
    if state.have > 0 and not state.resuming:
        remove_files(state.part, state.meta_path)  # unknown origin: cannot resume safely
        state.have, state.meta = 0, {}
    return state


def _request_headers(state: _PartState) -> Dict[str, str]:
    headers = {"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
    if state.resuming:
        headers["Range"] = f"bytes={state.have}-"
        validator = state.meta.get("etag") or state.meta.get("last_modified")
        if validator:
            headers["If-Range"] = validator
    return headers


def _send(session: Any, url: str, headers: Dict[str, str], opts: FetchOptions) -> Any:
    try:
        return session.get(
            url, headers=headers, stream=True, timeout=(opts.connect_timeout_s, opts.read_timeout_s)
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        reason = unreachable_reason(exc)
        if reason:
            raise Unreachable(reason) from None
        raise _Retryable(_short_exc(exc)) from None


def _check_status(resp: Any, state: _PartState) -> bool:
    """Raise for a status that cannot deliver the file; True when a 416 says the `.part` is already whole."""
    status = resp.status_code
    if status == 416 and state.resuming:
        total = state.meta.get("total")
        if total is not None and state.have == total:
            return True
        remove_files(state.part, state.meta_path)
        raise _Retryable("server refused the resume range; starting over")
    if status >= 500 or status == 429:
        raise _Retryable(f"HTTP {status} {resp.reason}")
    if status >= 400:
        raise NextUrl(f"HTTP {status} {resp.reason}")
    if status not in (200, 206):
        raise NextUrl(f"unexpected HTTP {status}")
    return False


def _plan_response(resp: Any, state: _PartState, opts: FetchOptions, name: str) -> _Plan:
    """Append to the `.part` (a 206 continuing it) or write it anew (a 200); raise when neither is safe."""
    etag, last_modified = resp.headers.get("ETag"), resp.headers.get("Last-Modified")
    if resp.status_code == 206:
        if not state.resuming:  # a range we did not ask for
            raise NextUrl("server sent a partial response to a full request")
        m = re.match(r"bytes (\d+)-(\d+)/(\d+|\*)", resp.headers.get("Content-Range", ""))
        meta = state.meta
        changed = (meta.get("etag") and etag and etag != meta["etag"]) or (
            meta.get("last_modified") and last_modified and last_modified != meta["last_modified"]
        )
        if not m or int(m.group(1)) != state.have or changed:
            remove_files(state.part, state.meta_path)
            why = "the file changed on the server" if changed else "the server answered a different range"
            raise _Retryable(f"{why}; starting over")
        sums = dict(meta.get("checksums") or {})
        sums.update(_server_checksums(resp.headers, full_body=False))
        return _Plan("ab", state.have, int(m.group(3)) if m.group(3) != "*" else None, sums)
    if state.resuming:
        opts.progress.message(
            f"{name}: the server ignored the resume request or the file changed; starting over"
        )
    length = resp.headers.get("Content-Length")
    total = int(length) if length and length.isdigit() else None
    return _Plan("wb", 0, total, _server_checksums(resp.headers, full_body=True))


def _stream(resp: Any, state: _PartState, plan: _Plan, limit: int, opts: FetchOptions, name: str) -> int:
    """Write the body into the `.part`; stop (and drop the bytes) as soon as more than `limit` bytes in all
    arrived, and before the disk is full. Returns the `.part`'s size."""
    got = plan.start
    next_space_check = got + SPACE_CHECK_BYTES
    try:
        with open(state.part, plan.mode) as fp:
            for chunk in resp.iter_content(chunk_size=STREAM_CHUNK_BYTES):
                if not chunk:
                    continue
                if got + len(chunk) > limit:
                    raise _TooLong(got + len(chunk))
                fp.write(chunk)
                got += len(chunk)
                opts.progress.advance(name, len(chunk))
                if got >= next_space_check:  # a body of unknown length: keep the disk from filling
                    next_space_check = got + SPACE_CHECK_BYTES
                    _require_free_space(state.part, plan.total, got)
                if opts.cancel.is_set():
                    raise DownloadError("interrupted", path=state.part, fix="run again to resume")
    except _TooLong as exc:
        remove_files(state.part, state.meta_path)
        raise NextUrl(
            f"server sent more than the expected {limit} bytes (stopped at {format_bytes(exc.got)})",
            bad_bytes=True,
        ) from None
    except (requests.ConnectionError, requests.Timeout, requests.exceptions.ChunkedEncodingError) as exc:
        raise _Retryable(f"connection broke after {format_bytes(got)} ({_short_exc(exc)})") from None
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise _disk_full(state.part, plan.total, got) from None
        raise
    return got


class _TooLong(Exception):
    def __init__(self, got: int):
        self.got = got


def _require_free_space(part: Path, total: Optional[int], got: int) -> None:
    if shutil.disk_usage(part.parent).free < FREE_SPACE_MARGIN_BYTES:
        raise _disk_full(part, total, got)


def _disk_full(part: Path, total: Optional[int], got: int) -> DownloadError:
    need = f"~{format_bytes(total - got, 'MB')} more" if total else "more space"
    return DownloadError(
        f"no space left on device: {part}, needs {need}",
        fix="free disk space and run again (the partial file resumes)",
    )


def _transfer(
    session: Any, url: str, dest: Path, opts: FetchOptions, name: str, max_bytes: Optional[int] = None
) -> Dict[str, Any]:
    """One attempt to complete `<dest>.part` from `url` (never more than `max_bytes`). Returns the part's
    metadata on success."""
    state = _part_state(url, dest)
    resp = _send(session, url, _request_headers(state), opts)
    with contextlib.closing(resp):
        if _check_status(resp, state):
            return state.meta  # the .part was already complete
        plan = _plan_response(resp, state, opts, name)
        limit = max_bytes if max_bytes is not None else DEFAULT_MAX_BYTES
        if plan.total is not None and plan.total > limit:
            remove_files(state.part, state.meta_path)
            raise NextUrl(
                f"server announces {plan.total} bytes, more than the expected {limit}", bad_bytes=True
            )
        if plan.total is not None:
            limit = plan.total
            check_free_space(dest.parent, plan.total - plan.start, f"{name} ({format_bytes(plan.total)})")
        meta = {
            "key": _object_key(url),
            "url": url,
            "etag": resp.headers.get("ETag"),
            "last_modified": resp.headers.get("Last-Modified"),
            "total": plan.total,
            "checksums": plan.checksums,
        }
        state.meta_path.write_text(json.dumps(meta), encoding="utf-8")
        opts.progress.reset(name, plan.total, plan.start)
        got = _stream(resp, state, plan, limit, opts, name)
        if plan.total is not None and got < plan.total:
            raise _Retryable(f"short read: got {got} of {plan.total} bytes")
        meta["size"] = got
        return meta


def _short_exc(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    m = re.search(
        r"(NameResolutionError|Connection refused|Read timed out|timed out|IncompleteRead[^)]*\))", text
    )
    return m.group(0) if m else (text[:160] or type(exc).__name__)


def download_one_url(
    session: Any, url: str, dest: Path, opts: FetchOptions, name: str, max_bytes: Optional[int] = None
) -> Dict[str, Any]:
    """Retry `_transfer` with exponential backoff on transient failures; an unreachable host gets one attempt
    per run (`opts.unreachable` remembers it for every other file). No attempt writes more than `max_bytes`."""
    host = urlsplit(url).netloc
    last = ""
    for attempt in range(max(opts.retries, 1)):
        known = opts.unreachable.get(host)
        if known:
            raise NextUrl(f"unreachable ({known}), not retried")
        try:
            return _transfer(session, url, dest, opts, name, max_bytes)
        except Unreachable as exc:
            reason = opts.unreachable.add(host, str(exc))
            raise NextUrl(f"unreachable ({reason}), not retried") from None
        except _Retryable as exc:
            last = str(exc)
            if attempt + 1 < opts.retries:
                wait = min(opts.backoff_s * (2**attempt), MAX_BACKOFF_S)
                opts.progress.message(f"{name}: {last}; retrying in {wait:.1f} s")
                time.sleep(wait)
    raise NextUrl(f"gave up after {opts.retries} attempts: {last}")


def verify_bytes(asset: Asset, path: Path, checksums: Dict[str, str]) -> tuple:
    """Hash `path` and compare with what is known. Returns (sha256, how it was verified).
    Raises `NextUrl` on a mismatch."""
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
        raise NextUrl(f"size {hasher.length} bytes, the manifest says {asset.size}", bad_bytes=True)
    verdict = asset.check_sha256(sha)
    if verdict is False:
        want = asset.sha256 or f"{asset.sha256_prefix}..."
        raise NextUrl(f"sha256 mismatch: got {sha[:16]}..., expected {want[:16]}...", bad_bytes=True)
    if verdict:
        return sha, "sha256" if asset.sha256 else "sha256 prefix"
    how = []
    if hasher.md5 is not None:
        md5 = hasher.md5.hexdigest()
        if "content_md5" in checksums:
            if md5 != checksums["content_md5"]:
                raise NextUrl("Content-MD5 mismatch: the bytes are corrupt", bad_bytes=True)
            how.append("Content-MD5")
        if "etag_md5" in checksums:
            if md5 == checksums["etag_md5"]:
                how.append("ETag MD5")
            elif not how and "crc64" not in checksums:
                raise NextUrl("MD5 does not match the server's ETag: the bytes are corrupt", bad_bytes=True)
    if hasher.crc64 is not None:
        if str(hasher.crc64.value) != checksums["crc64"]:
            raise NextUrl("CRC-64 mismatch with x-oss-hash-crc64ecma: the bytes are corrupt", bad_bytes=True)
        how.append("CRC-64")
    return sha, " + ".join(how) if how else "unverified (no known hash)"
