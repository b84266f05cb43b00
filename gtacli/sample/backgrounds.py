"""Procedural background textures, so that crops of the synthetic images are never blank.

A background is a smooth two-colour gradient with low-frequency colour noise and a few stripes: textured
enough for a CNN to see something, cheap to make, and a pure function of its random generator (the tests
regenerate it to check that pixels away from the body are background).
"""

from __future__ import annotations

import zlib

import cv2
import numpy as np

NOISE_GRID = 6  # coarse noise cells per image side (upscaled bicubically -> smooth blobs)
NOISE_AMPLITUDE = 30.0  # grey levels
STRIPE_COUNT_MAX = 4
STRIPE_AMPLITUDE = 25.0
# Backgrounds stay in a mid range so the lit body (BODY_COLOR_BGR in scenes.py) stands out from them.
BACKGROUND_LEVELS = (25.0, 130.0)


BACKGROUND_STREAM = 1000  # sub-seed tag of background generators (see background_for)


def background_for(seed: int, dataset: str, index: int, height: int, width: int) -> np.ndarray:
    """The background of image `index` of `dataset` in the tree built with `seed`: its own generator, so it
    depends on nothing else (the tests regenerate it to find the pixels the body covers)."""
    rng = np.random.default_rng([int(seed), BACKGROUND_STREAM, zlib.crc32(dataset.encode()), int(index)])
    return make_background(rng, height, width)


def make_background(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """(H, W, 3) uint8 BGR texture drawn from `rng` (consumes a fixed number of draws per call)."""
    low, high = BACKGROUND_LEVELS
    top = rng.uniform(low, high, 3)
    bottom = rng.uniform(low, high, 3)
    t = np.linspace(0.0, 1.0, height)[:, None, None]
    image = np.broadcast_to(top * (1 - t) + bottom * t, (height, width, 3)).copy()
    coarse = rng.uniform(-NOISE_AMPLITUDE, NOISE_AMPLITUDE, (NOISE_GRID, NOISE_GRID, 3)).astype(np.float32)
    image += cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)
    n_stripes = int(rng.integers(1, STRIPE_COUNT_MAX + 1))
    angles = rng.uniform(0, np.pi, STRIPE_COUNT_MAX)
    periods = rng.uniform(0.05, 0.25, STRIPE_COUNT_MAX) * max(height, width)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float64)
    for k in range(n_stripes):
        phase = (xx * np.cos(angles[k]) + yy * np.sin(angles[k])) / periods[k]
        image += (STRIPE_AMPLITUDE * np.sign(np.sin(2 * np.pi * phase)))[..., None] * 0.5
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)
