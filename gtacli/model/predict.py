"""Crop -> normalise -> batched forward: the network's predictions for people in images (the demo, `fit --init CKPT`).

`predict_crops(engine, images, centers, sides)` crops each person's square (no rotation) to 224 x 224 with the
OpenCV-4.x-exact warp, normalises the batch as the training pipeline does (`normalize_batch`), and runs the engine (torch or onnxruntime,
`gtacli.model.engines`) on batches of `batch_size`. Evaluation uses the same crop and normalisation, assembled in
DataLoader workers instead (`gtacli.data.eval_dataset`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import torch

from gtacli.body.camera import IMG_RES
from gtacli.data.crop import crop, normalize_batch
from gtacli.model.engines import InferenceEngine

DEFAULT_BATCH_SIZE = 32
OUTPUT_KEYS = {"pred_pose": "rotmat", "pred_shape": "betas", "pred_cam": "cam"}


@dataclass(frozen=True, eq=False)
class CropPredictions:
    """The network's predictions for N people, float64 numpy, row i = person i. Frozen (fields are not rebound;
    a consumer may still write rows in place, as the demo's smoother does)."""

    rotmat: np.ndarray
    """(N, 24, 3, 3) rotation matrices, global orient first."""
    betas: np.ndarray
    """(N, 10) SMPL shape."""
    cam: np.ndarray
    """(N, 3) weak-perspective camera [s, tx, ty] of the crop."""

    @classmethod
    def empty(cls) -> CropPredictions:
        """No people: zero rows of each field."""
        return cls(np.zeros((0, 24, 3, 3)), np.zeros((0, 10)), np.zeros((0, 3)))

    def copy(self) -> CropPredictions:
        """Copies of the arrays (for a stage that replaces some rows and must leave its input as it was)."""
        return CropPredictions(*(np.array(a, copy=True) for a in (self.rotmat, self.betas, self.cam)))


def predict_crops(
    engine: InferenceEngine,
    images: Sequence[np.ndarray],
    centers: np.ndarray,
    sides: np.ndarray,
    batch_size: int = DEFAULT_BATCH_SIZE,
    mark: Optional[Callable[[str], None]] = None,
) -> CropPredictions:
    """Predictions for N people: `images[i]` (H,W,3) BGR uint8 holds person i, whose square crop has centre
    `centers[i]` (x, y) px and side `sides[i]` px. `mark(stage)` is called after each batch's 'preprocess'
    (crop + normalise) and 'model' (forward) steps, for a caller that times them."""
    count = len(images)
    if len(centers) != count or len(sides) != count:
        raise ValueError(f"{count} images for {len(centers)} centres and {len(sides)} sides")
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    pieces: Dict[str, list] = {key: [] for key in OUTPUT_KEYS.values()}
    for start in range(0, count, batch_size):
        stop = min(start + batch_size, count)
        crops = np.stack(
            [crop(images[i], centers[i], float(sides[i]), 0.0, IMG_RES)[0] for i in range(start, stop)]
        )
        # normalised as a batch straight into the engine's layout (bit-identical to `normalize` per crop)
        batch = normalize_batch(torch.from_numpy(crops), memory_format=engine.memory_format)
        if mark is not None:
            mark("preprocess")
        with torch.inference_mode():
            out = engine(batch)
            for key, name in OUTPUT_KEYS.items():
                pieces[name].append(out[key].double().cpu().numpy())
        if mark is not None:
            mark("model")
    if count == 0:
        return CropPredictions.empty()
    return CropPredictions(**{name: np.concatenate(values) for name, values in pieces.items()})
