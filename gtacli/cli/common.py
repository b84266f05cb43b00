"""What every command shares: option spellings, the output object, error handling.

Each command module declares its options with the `Annotated` aliases below so that `--data-root`,
`--json`, `--quiet`, `--debug`, `--device` are spelled and documented identically everywhere. A command
builds its `Output`, does its work and returns an exit code (or raises); the app wraps every command in
`handle_errors` (registered once in `cli/app.py`), which maps exceptions to one-line messages and exit codes:

* 0 success, 1 the job failed (bad input, failed check, failed download), 2 usage error;
* `--debug` prints the full traceback instead of one line;
* with `--json`, stdout carries exactly one JSON document and everything else goes to stderr; a failure
  prints `{"ok": false, "error": {...}}` there.
"""

from __future__ import annotations

import contextvars
import errno
import functools
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import typer
from rich.console import Console
from rich.table import Table

from gtacli.errors import GtacliError, UsageError
from gtacli.progress import ProgressFn

try:  # Python >= 3.9
    from typing import Annotated
except ImportError:  # pragma: no cover
    from typing_extensions import Annotated  # type: ignore


def default_data_root() -> Path:
    return Path(os.environ.get("GTACLI_DATA_ROOT") or "data")


DataRootOpt = Annotated[
    Path,
    typer.Option(
        "--data-root",
        help="Data tree (layout: docs/reproduction.md §1.2). Default: $GTACLI_DATA_ROOT, else ./data.",
        default_factory=default_data_root,
        show_default="$GTACLI_DATA_ROOT or ./data",
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print exactly one JSON document on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Only errors and the result; no progress.")]
DebugOpt = Annotated[bool, typer.Option("--debug", help="Show full tracebacks instead of one-line errors.")]
DeviceOpt = Annotated[
    str,
    typer.Option("--device", help="'auto' (CUDA when present, else CPU), 'cpu', 'cuda' or 'cuda:N'."),
]
EngineOpt = Annotated[
    str,
    typer.Option(
        "--engine",
        help="What runs the network: auto (onnxruntime on the CPU when gtacli[onnx] is installed, torch otherwise "
        "and on CUDA), torch or onnxruntime (the checkpoint exported to ONNX once, cached under <data-root>/cache/).",
    ),
]
AmpOpt = Annotated[
    bool,
    typer.Option(
        "--amp",
        help="Reduced-precision network on the torch engine: float16 on CUDA, bfloat16 on the CPU (several times "
        "faster where the CPU has AMX or AVX512-BF16 units, slower where it emulates them). Not the exact numbers.",
    ),
]


def _hide_flag_types() -> None:
    """Rich help shows no value type for flags (typer >= 0.2x prints `<bool>` after `--json`, even `--help`).

    Flags take no value, so the type column is left empty for them, as click's plain help does; options with
    values keep theirs. Applied once when the CLI is imported.
    """
    from typer.core import TyperOption

    show_type = getattr(TyperOption, "display_type_rich", None)
    if show_type is None or getattr(show_type, "_gtacli_flags_hidden", False):
        return

    def display_type_rich(self: Any, ctx: Any) -> Optional[str]:
        if getattr(self, "is_flag", False) and not getattr(self, "count", False):
            return None
        return show_type(self, ctx)

    display_type_rich._gtacli_flags_hidden = True  # type: ignore[attr-defined]
    TyperOption.display_type_rich = display_type_rich  # type: ignore[method-assign]


_hide_flag_types()


class Output:
    """Human output (rich, stderr for diagnostics) or machine output (one JSON document on stdout)."""

    def __init__(self, *, json_mode: bool = False, quiet: bool = False, debug: bool = False):
        self.json_mode = json_mode
        self.quiet = quiet
        self.debug = debug
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.out = Console(highlight=False, soft_wrap=True)
        self._said_once: set = set()
        _CURRENT_OUTPUT.set(self)  # the app's error handler reports through the command's own Output

    # diagnostics -> stderr
    def info(self, message: str) -> None:
        if not self.quiet:
            self.err.print(message, markup=False)

    def warn(self, message: str) -> None:
        self.err.print(f"warning: {message}", markup=False, style="yellow")

    def once(self, key: str, message: str) -> None:
        """Say something only once per command (e.g. 'this tree is synthetic')."""
        if key not in self._said_once:
            self._said_once.add(key)
            self.warn(message)

    @property
    def show_progress(self) -> bool:
        return (
            not self.quiet
            and self.err.is_terminal
            or (not self.quiet and os.environ.get("GTACLI_PROGRESS") == "1")
        )

    # results -> stdout
    def result(self, payload: Dict[str, Any], human: Optional[Callable[[], None]] = None) -> None:
        """Emit the command's result: JSON document in --json mode, else call `human()` (or print key: value)."""
        if self.json_mode:
            sys.stdout.write(json.dumps(payload, indent=2, default=_json_default) + "\n")
            sys.stdout.flush()
        elif human is not None:
            human()
        else:
            for key, value in payload.items():
                self.out.print(f"{key}: {value}", markup=False)

    def table(self, title: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
        """A human table on stdout (no-op in --json mode: the JSON document carries the data)."""
        if self.json_mode:
            return
        rows = [[str(c) for c in row] for row in rows]
        table = Table(title=title, show_lines=False)
        for column in columns:
            table.add_column(column, overflow="fold")
        for row in rows:
            table.add_row(*row)
        natural = self.out.measure(table, options=self.out.options.update_width(10**6)).maximum
        if natural <= self.out.width:
            self.out.print(table)
            return
        # too wide for the terminal: a table would split words, paths and URLs mid-token. One block per row
        # instead, every value whole on its own line (a long one overflows, as the terminal wraps it)
        self.out.print(title, markup=False, style="bold")
        if len(columns) == 2:  # item / value: one line each
            width = max(len(row[0]) for row in rows) if rows else 0
            for key, value in rows:
                self.out.print(f"{key:<{width}}  {value}", markup=False, overflow="ignore", crop=False)
            return
        width = max(len(c) for c in columns[1:]) if len(columns) > 1 else 0
        for row in rows:
            self.out.print(row[0], markup=False)
            for column, value in zip(columns[1:], row[1:]):
                self.out.print(f"  {column:<{width}}  {value}", markup=False, overflow="ignore", crop=False)


_CURRENT_OUTPUT: contextvars.ContextVar[Optional[Output]] = contextvars.ContextVar(
    "gtacli_output", default=None
)


def handle_errors(command: Callable[..., Optional[int]]) -> Callable[..., None]:
    """Wrap a command: its return value becomes the exit code; exceptions become one line and an exit code.

    Applied once to every command by `cli/app.py`; commands themselves never catch to print.
    """

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        token = _CURRENT_OUTPUT.set(None)
        try:
            if os.environ.get(
                "GTACLI_THREADS"
            ):  # every command honours it (torch is only imported when it is set)
                from gtacli.device import configure_threads

                configure_threads()
            code = command(*args, **kwargs)
        except typer.Exit:
            raise
        except BaseException as exc:  # noqa: B902 - every failure leaves through one line and an exit code
            out = _CURRENT_OUTPUT.get() or Output(
                json_mode=bool(kwargs.get("json_mode")), debug=bool(kwargs.get("debug"))
            )
            raise typer.Exit(report_error(out, exc)) from None
        finally:
            _CURRENT_OUTPUT.reset(token)
        raise typer.Exit(code or 0)

    return wrapper


def report_error(out: Output, exc: BaseException) -> int:
    """Print `exc` as one line on stderr (and as a JSON error object on stdout in --json mode); its exit code."""
    if (
        isinstance(exc, OSError) and exc.errno == errno.ENAMETOOLONG
    ):  # a name the user typed: say so in one line
        exc = UsageError(
            "a file or folder name on this path is longer than the file system allows (255 bytes)",
            path=exc.filename,
            fix="choose a shorter name",
        )
    if isinstance(exc, KeyboardInterrupt):
        kind, message, code = "interrupted", "interrupted", 130
    elif isinstance(exc, GtacliError):
        kind, message, code = type(exc).__name__, exc.one_line(), exc.exit_code
    elif isinstance(exc, (SystemExit, GeneratorExit)):
        raise exc
    else:  # a bug or an unexpected environment problem
        first = " ".join(str(exc).split())[:300]
        kind, code = type(exc).__name__, 1
        message = f"{kind}: {first} (run again with --debug for the traceback)"
    if out.debug and not isinstance(exc, KeyboardInterrupt):
        traceback.print_exception(type(exc), exc, exc.__traceback__)
    out.err.print(f"error: {message}", markup=False, style="red")
    if out.json_mode:
        error: Dict[str, Any] = {"type": kind, "message": message, "exit_code": code}
        if isinstance(exc, GtacliError):
            error.update(problem=exc.problem, path=exc.path, fix=exc.fix)
        sys.stdout.write(json.dumps({"ok": False, "error": error}, indent=2) + "\n")
        sys.stdout.flush()
    return code


def parse_key_values(items: Optional[List[str]], option: str = "--set") -> Dict[str, str]:
    """`key=value` pairs from a repeated option; a malformed one is a usage error."""
    result: Dict[str, str] = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{option} {item!r} is not key=value", fix=f"write it as {option} name=value")
        key, value = item.split("=", 1)
        result[key.strip()] = value.strip()
    return result


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):
        return value.tolist()
    if hasattr(value, "item"):
        return value.item()
    return str(value)


PROGRESS_INTERVAL_ENV = "GTACLI_PROGRESS_INTERVAL"
DEFAULT_PROGRESS_INTERVAL_S = 30.0  # seconds between progress records in logs (stderr not a terminal)


def progress_interval_s() -> float:
    """Seconds between one-line progress records: $GTACLI_PROGRESS_INTERVAL, else 30; 0 = every update."""
    raw = os.environ.get(PROGRESS_INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_PROGRESS_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = float("nan")
    if not math.isfinite(value) or value < 0:
        raise UsageError(
            f"{PROGRESS_INTERVAL_ENV}={raw!r} is not a number of seconds >= 0",
            fix=f"set {PROGRESS_INTERVAL_ENV} to e.g. 30 (or unset it)",
        )
    return value


def format_duration(seconds: float) -> str:
    """12s, 3m05s, 2h07m (whole seconds; what a log reader scans)."""
    total = int(round(max(0.0, seconds)))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


class ProgressBar:
    """The one progress display of long commands, on stderr.

    ``with ProgressBar(out, "eval", rate_unit="frames") as update: ... update(done, total, description)``.
    `update` is always a callable, so the core takes it as an optional callback and stays screen-agnostic:

    * stderr is a terminal (or $GTACLI_PROGRESS=1): a rich progress bar;
    * stderr is a file or a pipe (nohup, SLURM, CI): one plain line every $GTACLI_PROGRESS_INTERVAL seconds
      (30 by default) and one at the end: label, done/total, rate, elapsed, ETA and the description;
    * --quiet: nothing.

    The rate counts items per second from the first `update` call (or from the last `done == 0`).
    """

    def __init__(self, out: Output, label: str, *, rate_unit: Optional[str] = None, transient: bool = True):
        self.out = out
        self.label = label
        self.rate_unit = rate_unit
        self.transient = transient
        self.bar: Any = None
        self.task: Any = None
        self.started: Optional[float] = None
        self.started_done = 0
        self.interval_s = DEFAULT_PROGRESS_INTERVAL_S
        self.last_record: Optional[float] = None
        # the last (done, total, description) reported, written as the next record
        self.state: Optional[Tuple[int, Optional[int], Optional[str]]] = None

    def __enter__(self) -> ProgressFn:
        if self.out.quiet:
            return _ignore_progress
        if not self.out.show_progress:
            self.interval_s = progress_interval_s()  # a bad value fails before any work
            return self._record
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        columns: List[Any] = [TextColumn(self.label), BarColumn(), MofNCompleteColumn()]
        if self.rate_unit:
            columns.append(TextColumn("{task.fields[rate]} " + self.rate_unit + "/s"))
        columns += [TimeElapsedColumn(), TextColumn("{task.description}")]
        self.bar = Progress(*columns, console=self.out.err, transient=self.transient)
        self.bar.start()
        self.task = self.bar.add_task("", total=None, rate="-")
        return self.update

    def _rate(self, done: int, now: float) -> Optional[float]:
        """Count an update; items per second since the first one (whose items took unmeasured time, so they do
        not count). A `done` of 0 starts the count again."""
        if self.started is None or done == 0:
            self.started, self.started_done = now, done
        return self._rate_since_start(done, now)

    def _rate_since_start(self, done: int, now: float) -> Optional[float]:
        assert self.started is not None
        elapsed = now - self.started
        counted = done - self.started_done
        return counted / elapsed if counted > 0 and elapsed > 0 else None

    def update(self, done: int, total: Optional[int] = None, description: Optional[str] = None) -> None:
        """Move the bar (terminal mode)."""
        rate = self._rate(done, time.perf_counter())
        fields: Dict[str, Any] = {"completed": done, "rate": "-" if rate is None else f"{rate:.2f}"}
        if total is not None:
            fields["total"] = total
        if description is not None:
            fields["description"] = description
        self.bar.update(self.task, **fields)

    def _record(self, done: int, total: Optional[int] = None, description: Optional[str] = None) -> None:
        """Log mode: remember the state; write a record when the interval has passed since the last one."""
        now = time.perf_counter()
        self._rate(done, now)
        previous = self.state
        self.state = (
            done,
            total if total is not None else (previous[1] if previous else None),
            description if description is not None else (previous[2] if previous else None),
        )
        if self.last_record is None:
            self.last_record = now  # the first record comes one interval after the start
        if now - self.last_record >= self.interval_s:
            self._write(now)

    def _write(self, now: float, *, final: Optional[str] = None) -> None:
        assert self.state is not None and self.started is not None
        done, total, description = self.state
        elapsed = now - self.started
        rate = self._rate_since_start(done, now)
        unit = self.rate_unit or "items"
        count = f"{_si(done)}/{_si(total)}" if total else _si(done)
        parts = [f"{self.label}: {count} {unit}"]
        if total:
            parts[0] += f" ({100.0 * done / total:.0f}%)"
        parts.append(f"{'-' if rate is None else _si(rate, 3)} {unit}/s")
        parts.append(f"elapsed {format_duration(elapsed)}")
        if final:
            parts.append(final)
        elif total and rate:
            parts.append(f"ETA {format_duration((total - done) / rate)}")
        if description:
            parts.append(description)
        self.out.err.print(" | ".join(parts), markup=False, highlight=False)
        self.last_record = now

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        if self.bar is not None:
            self.bar.stop()
        elif self.state is not None:  # log mode: always close with a record, the last state included
            self._write(time.perf_counter(), final="done" if exc_type is None else "stopped")


def _si(value: float, digits: Optional[int] = None) -> str:
    """A count for a log line: exact below a million (or `digits` significant figures), else 12.3M / 4.56G."""
    if abs(value) >= 1e6:
        for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
            if abs(value) >= scale:
                return f"{value / scale:.3g}{suffix}"
    if digits is not None:
        return f"{value:.{digits}g}" if abs(value) < 10**digits else f"{value:.0f}"
    return str(int(value)) if float(value).is_integer() else f"{value:.3g}"


def _ignore_progress(done: int, total: Optional[int] = None, description: Optional[str] = None) -> None:
    """The progress callback under --quiet."""


def resolve_file_option(
    path: Optional[Path], data_root: Path, out: Output, *, option: str, what: str, fix: Optional[str] = None
) -> Optional[Path]:
    """`option PATH` as the user meant it: from the current folder, else under the data root (said on stderr);
    a MissingFileError naming the absolute path and the places tried otherwise (gtacli.io.user_paths)."""
    if path is None:
        return None
    from gtacli.io.user_paths import resolve_user_file

    if fix is None:
        fix = (
            f"check the path; `gtacli fetch spin_official` puts the public SPIN checkpoint at "
            f"{Path(data_root) / 'pretrained_models' / 'spin_official.pth'}"
        )
    return resolve_user_file(path, data_root, option=option, what=what, fix=fix, note=out.info)
