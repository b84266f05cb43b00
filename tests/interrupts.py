"""For tests that stop a real child process with SIGINT, as Ctrl-C does."""

from __future__ import annotations

import signal


def sigint_as_default() -> None:
    """`preexec_fn` for such children: SIGINT back to its default disposition before the child starts.

    A test run started as a background job of a non-interactive shell (`bash .ci/run &`, `nohup ... &`) starts with
    SIGINT ignored, every child inherits that, and Python then never raises KeyboardInterrupt: the run would finish
    instead of stopping and the test would fail for a reason that has nothing to do with gtacli."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
