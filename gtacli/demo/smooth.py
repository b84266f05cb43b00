"""Temporal smoothing of per-person SMPL parameters for video demos (One-Euro filter).

The One-Euro filter (Casiez et al., CHI 2012) is a first-order low-pass whose cutoff rises with the signal's
speed: `cutoff = min_cutoff + beta * |dx/dt|`, so a still person is smoothed strongly and fast motion lags
little. It is causal, so it runs frame by frame as the demo streams.

Rotations are filtered in the 6D representation (the first two columns of each rotation matrix, the inverse
of docs/reproduction.md §4.3) and re-orthonormalised by Gram-Schmidt afterwards, so every output is a proper rotation
(unlike mmhuman3d, which smooths matrices as 9-vectors and never re-orthonormalises). Betas and the
weak-perspective camera are filtered directly. Each person id keeps its own filter state.
"""

from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from gtacli.body.rotations import rot6d_to_rotmat_np, rotmat_to_rot6d_np

MIN_CUTOFF_HZ = 1.0  # cutoff for a still signal
BETA = 0.5  # cutoff increase per unit/s of signal speed
D_CUTOFF_HZ = 1.0  # cutoff of the speed estimate


def smoothing_alpha(cutoff_hz: np.ndarray, dt_s: float) -> np.ndarray:
    """Exponential-smoothing factor of a first-order low-pass: `1 / (1 + tau/dt)`, `tau = 1/(2 pi fc)`."""
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff_hz, np.float64))
    return 1.0 / (1.0 + tau / dt_s)


class OneEuroFilter:
    """Element-wise One-Euro filter over arrays of any fixed shape. `__call__(x, t_s) -> filtered x`."""

    def __init__(
        self, min_cutoff_hz: float = MIN_CUTOFF_HZ, beta: float = BETA, d_cutoff_hz: float = D_CUTOFF_HZ
    ):
        self.min_cutoff_hz = min_cutoff_hz
        self.beta = beta
        self.d_cutoff_hz = d_cutoff_hz
        self.x_prev: Optional[np.ndarray] = None
        self.dx_prev: Optional[np.ndarray] = None
        self.t_prev: Optional[float] = None

    def __call__(self, x: np.ndarray, t_s: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self.x_prev is None or self.t_prev is None or t_s <= self.t_prev:
            # First sample (or a non-increasing time): nothing to smooth against, start here.
            self.x_prev, self.dx_prev, self.t_prev = x.copy(), np.zeros_like(x), float(t_s)
            return x.copy()
        dt = float(t_s) - self.t_prev
        dx = (x - self.x_prev) / dt
        a_d = smoothing_alpha(self.d_cutoff_hz, dt)
        dx_hat = a_d * dx + (1.0 - a_d) * self.dx_prev
        cutoff = self.min_cutoff_hz + self.beta * np.abs(dx_hat)
        a = smoothing_alpha(cutoff, dt)
        x_hat = a * x + (1.0 - a) * self.x_prev
        self.x_prev, self.dx_prev, self.t_prev = x_hat, dx_hat, float(t_s)
        return x_hat.copy()


class PersonSmoother:
    """One-Euro filters for each person id: rotations (24,3,3) via 6D, betas (10,), camera (3,)."""

    def __init__(
        self, min_cutoff_hz: float = MIN_CUTOFF_HZ, beta: float = BETA, d_cutoff_hz: float = D_CUTOFF_HZ
    ):
        self.settings = (min_cutoff_hz, beta, d_cutoff_hz)
        self.filters: Dict[int, Tuple[OneEuroFilter, OneEuroFilter, OneEuroFilter]] = {}

    def __call__(
        self, person_id: int, t_s: float, rotmat: np.ndarray, betas: np.ndarray, cam: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Smoothed `(rotmat (24,3,3), betas (10,), cam (3,))` of one person at time `t_s` (seconds)."""
        if person_id not in self.filters:
            self.filters[person_id] = tuple(OneEuroFilter(*self.settings) for _ in range(3))  # type: ignore[assignment]
        f_rot, f_betas, f_cam = self.filters[person_id]
        rot6d = f_rot(rotmat_to_rot6d_np(rotmat), t_s)
        return rot6d_to_rotmat_np(rot6d), f_betas(betas, t_s), f_cam(cam, t_s)

    def describe(self) -> Dict[str, float]:
        min_cutoff_hz, beta, d_cutoff_hz = self.settings
        return {
            "filter": "one_euro",
            "min_cutoff_hz": min_cutoff_hz,
            "beta": beta,
            "d_cutoff_hz": d_cutoff_hz,
        }
