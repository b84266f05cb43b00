"""The one progress-callback type of the core.

A long-running core function takes `progress: Optional[ProgressFn] = None` and calls
`progress(done, total, description)`: what it has done so far, the total when known (else None) and a short
text with its useful numbers (epoch and losses, frames/s, the current file). `cli/common.ProgressBar` yields a
callable of this type; a test passes a plain function. Nothing else: the core never draws progress itself.
"""

from __future__ import annotations

from typing import Callable, Optional

ProgressFn = Callable[[int, Optional[int], Optional[str]], None]
