"""SIGINT / SIGTERM during training: finish the current step, save a resumable checkpoint, stop.

Clusters preempt with SIGTERM (SLURM sends it before killing). While a `StopRequest` is installed the first
signal only records itself; the loop checks it after each step (across ranks, so every rank stops at the same
step). A second SIGINT interrupts at once (the default Ctrl-C behaviour).
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any, Dict, Optional

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """Context manager installing the handlers (main thread only); `signum` is the first signal received."""

    def __init__(self) -> None:
        self.signum: Optional[int] = None
        self._previous: Dict[int, Any] = {}

    @property
    def name(self) -> str:
        return signal.Signals(self.signum).name if self.signum else ""

    @property
    def exit_code(self) -> int:
        """The shell's convention: 128 + signal number (130 for SIGINT, 143 for SIGTERM)."""
        return 128 + int(self.signum or 0)

    def _handle(self, signum: int, frame: Optional[FrameType]) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signum = self.signum or signum

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            for sig in STOP_SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


def ignore_stop_signals() -> None:
    """For data-loader workers: the main process decides when to stop (a terminal's Ctrl-C and SLURM's
    SIGTERM reach the whole process group, and a worker dying mid-batch would break the final save)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)
