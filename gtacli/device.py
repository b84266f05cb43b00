"""The one place that turns a `--device` string into a `torch.device`.

The CLI resolves once and passes the `torch.device` down; core functions accept a `torch.device` (or a
string, which they hand to this resolver) and never apply their own rules.
"""

from __future__ import annotations

from typing import Union

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
