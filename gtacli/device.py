"""The one place that turns a `--device` string into a `torch.device`.

The CLI resolves once and passes the `torch.device` down; core functions accept a `torch.device` (or a
string, which they hand to this resolver) and never apply their own rules.

Also the one place that sets the CPU thread count (`--threads N`, or the GTACLI_THREADS environment variable), and
`keep_freed_memory()`, the glibc allocator setting `gtacli demo` uses (GTACLI_KEEP_FREED_MEMORY=0 turns it off).
"""

from __future__ import annotations

import os
import sys
from typing import Optional, Union

import torch

from gtacli.errors import UsageError

DeviceLike = Union[str, torch.device, None]

DEVICE_FIX = "use auto, cpu, cuda or cuda:N"


def resolve_device(device: DeviceLike = "auto", local_rank: int = 0) -> torch.device:
    """'auto' (or None/'') -> cuda:LOCAL_RANK when CUDA is present, else cpu; 'cuda' -> cuda:LOCAL_RANK;
    'cpu' and 'cuda:N' as given. CUDA asked for where there is none, or an unknown name, is a `UsageError`.

    `local_rank` is the process's GPU under torchrun (0 for a single process).
    """
    if isinstance(device, torch.device):
        text = str(device)
    else:
        text = str(device or "auto").strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cuda":
        text = f"cuda:{local_rank}"
    try:
        resolved = torch.device(text)
    except (RuntimeError, TypeError):
        raise UsageError(f"--device {device!r} is not a device name", fix=DEVICE_FIX) from None
    if resolved.type not in ("cpu", "cuda"):
        raise UsageError(f"--device {device!r}: gtacli runs on cpu or cuda", fix=DEVICE_FIX)
    if resolved.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: CUDA is not available here", fix="use --device cpu or auto")
        if resolved.index is not None and resolved.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {device}: only {torch.cuda.device_count()} CUDA device(s) here",
                fix=f"use cuda:0 .. cuda:{torch.cuda.device_count() - 1}",
            )
    return resolved


THREADS_ENV = "GTACLI_THREADS"
THREADS_FIX = f"give a whole number of threads of at least 1 (or unset {THREADS_ENV} for all cores)"

# The count set by an explicit `--threads N` in this process: the option wins over GTACLI_THREADS, so a
# later `configure_threads(None)` (e.g. from `load_estimator`) keeps it.
_explicit_threads: Optional[int] = None


def configure_threads(threads: Optional[int] = None) -> int:
    """Set torch's CPU thread count for this process and return the count in force.

    `threads` (an explicit `--threads N`) wins; when it is None, the environment variable GTACLI_THREADS is
    read (unless an explicit count was set earlier in this process); when neither is given, torch's own
    default (one thread per core) stays. A value below 1 or not a whole number is a `UsageError`.
    """
    global _explicit_threads
    if threads is not None:
        count = _check_threads(threads, "--threads")
        _explicit_threads = count
    elif _explicit_threads is not None:
        count = _explicit_threads
    else:
        text = os.environ.get(THREADS_ENV, "").strip()
        if not text:
            return torch.get_num_threads()
        count = _check_threads(text, THREADS_ENV)
    if torch.get_num_threads() != count:
        torch.set_num_threads(count)
    return count


def _check_threads(value: Union[int, str], source: str) -> int:
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise UsageError(f"{source}={value!r} is not a number of threads", fix=THREADS_FIX) from None
    if count < 1:
        raise UsageError(f"{source}={value!r}: at least 1 thread is needed", fix=THREADS_FIX)
    return count


# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3
_KEEP_FREED = {
    _M_MMAP_THRESHOLD: 32 << 20,  # blocks up to 32 MiB (glibc's maximum) come from the heap, not fresh mmaps
    _M_TRIM_THRESHOLD: 256 << 20,  # keep up to 256 MiB of freed heap instead of returning it at once
    _M_TOP_PAD: 64 << 20,  # grow the heap in 64 MiB steps
}
KEEP_FREED_ENV = "GTACLI_KEEP_FREED_MEMORY"


def keep_freed_memory() -> bool:
    """Let this process reuse the memory it frees instead of handing it back to the kernel (glibc only).

    Per-frame CPU work such as the demo's renderer allocates and frees many 0.4-3 MB tensors; with glibc's
    defaults freed heap is soon returned and its pages fault in again on first touch, a noticeable share of an
    overlay's time (benchmarks/bench_render.py, benchmarks/results/render.json).
    The price is that up to a few hundred MB freed stay with the process until it exits. Set
    GTACLI_KEEP_FREED_MEMORY=0 to keep glibc's defaults. Returns whether the settings were applied."""
    if os.environ.get(KEEP_FREED_ENV, "1").strip() == "0" or not sys.platform.startswith("linux"):
        return False
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return all(mallopt(param, value) == 1 for param, value in _KEEP_FREED.items())
