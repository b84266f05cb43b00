"""Per-dataset training images (docs/reproduction.md §2.2) and the batch dict of the train/fit contract.

`TrainImageDataset(layout, name, aug_cfg)` opens the dataset's HumanData file (lazily; large files are
memory-mapped through the HumanData cache) and yields, per sample index and RNG:

    img (3,224,224) float32, has_smpl, smpl_body_pose (23,3), smpl_global_orient (3,), smpl_betas (10,),
    smpl_transl (3,), keypoints2d (49,3) crop pixels + conf, keypoints3d (49,4) m + conf, is_flipped,
    rotation (deg, float32), center (2,), scale (crop side px), sample_idx, dataset_name

`collate` stacks samples into the batch dict of the train/fit contract (tensors; `dataset_name` a list of
str), the images in channels-last memory layout when asked (built in the workers, not on the main thread).
Box → centre/scale: `center = (x + w/2, y + h/2)`, crop side `max(w, h)` in pixels (no /200, no expansion).

Samples whose box, confident keypoints or GT SMPL hold NaN/inf are dropped when the dataset opens (the count
and the file are reported through `warn`); a file with no usable sample is refused.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Dict, Optional, Sequence

import cv2
import numpy as np
import torch

from gtacli.data.augment import AugmentConfig, augment_sample
from gtacli.data.crop import bbox_to_center_scale
from gtacli.data.human_data import HumanData
from gtacli.errors import BadFileError, MissingFileError
from gtacli.layout import DataLayout

FINITE_CHECK_CHUNK = 65_536  # samples per block when scanning keypoints (bounded memory on 1.4 M frames)

TENSOR_KEYS = (
    "img",
    "has_smpl",
    "smpl_body_pose",
    "smpl_global_orient",
    "smpl_betas",
    "smpl_transl",
    "keypoints2d",
    "keypoints3d",
    "is_flipped",
    "rotation",
    "center",
    "scale",
    "sample_idx",
)


class TrainImageDataset:
    """One training dataset: `sample(index, rng)` loads, augments and returns one sample dict."""

    def __init__(
        self,
        layout: DataLayout,
        name: str,
        aug_cfg: AugmentConfig,
        annotation: Optional[Path] = None,
        warn: Optional[Callable[[str], None]] = None,
    ):
        self.layout = layout
        self.name = name
        self.aug_cfg = aug_cfg
        self.annotation = Path(annotation) if annotation is not None else layout.annotation(name)
        if not self.annotation.is_file():
            raise MissingFileError(
                f"annotation file of dataset '{name}' not found",
                path=self.annotation,
                fix="run `gtacli check-layout --for finetune` to see what is missing",
            )
        self.data = HumanData.load(self.annotation)
        self.annotation_length = self.length = len(self.data)  # rows in the file / usable samples
        if self.length == 0:
            raise BadFileError(f"dataset '{name}' has no samples", path=self.annotation)
        # Decode every member we read per sample now, in the parent process: data-loader workers then
        # share the decoded (or memory-mapped) arrays instead of each re-reading the archive.
        self.image_paths = self.data.image_paths()
        self.bbox = np.asarray(
            self.data.bbox_xywh()
        )  # dtype kept: centre arithmetic follows it (docs/reproduction.md §2.2)
        # keypoints are gathered per sample (a 1.4 M-frame file would not fit in memory as (N,49,3) float)
        self.data.keypoints2d_smpl49([0])
        self.data.keypoints3d_smpl49([0])
        self.smpl = self.data.smpl() if "smpl" in self.data else {}
        if "has_smpl" in self.data:
            self.has_smpl = np.asarray(self.data.rows("has_smpl")).reshape(-1).astype(np.float32)
        else:
            self.has_smpl = np.full(self.length, 1.0 if self.smpl else 0.0, np.float32)
        if len(self.image_paths) != self.length or len(self.bbox) != self.length:
            raise BadFileError(
                f"image_path ({len(self.image_paths)}) / bbox_xywh ({len(self.bbox)}) rows differ from N={self.length}",
                path=self.annotation,
            )

        self.rows = self._finite_rows(warn)  # usable file rows (None: all of them)
        if self.rows is not None:
            self.length = len(self.rows)

    def _finite_rows(self, warn: Optional[Callable[[str], None]]) -> Optional[np.ndarray]:
        """Rows whose box, confident keypoints and (where has_smpl) SMPL parameters are all finite."""
        n = self.annotation_length
        ok = np.isfinite(self.bbox.reshape(n, -1)).all(axis=1)
        for start in range(0, n, FINITE_CHECK_CHUNK):
            block = np.arange(start, min(start + FINITE_CHECK_CHUNK, n))
            for kp in (self.data.keypoints2d_smpl49(block), self.data.keypoints3d_smpl49(block)):
                kp = np.asarray(kp, np.float64)
                conf = kp[..., -1]
                # a NaN coordinate with confidence 0 carries no weight (the losses ignore it); NaN confidence does
                bad = ~np.isfinite(conf) | ((conf > 0) & ~np.isfinite(kp[..., :-1]).all(axis=-1))
                ok[block] &= ~bad.any(axis=1)
        for value in self.smpl.values():
            rows = np.asarray(value).reshape(n, -1)
            ok &= np.isfinite(rows).all(axis=1) | (self.has_smpl <= 0)
        dropped = int(n - ok.sum())
        if dropped == 0:
            return None
        first = int(np.flatnonzero(~ok)[0])
        if dropped == n:
            raise BadFileError(
                f"every sample of dataset '{self.name}' ({n}) has NaN/inf in its box, keypoints or SMPL",
                path=self.annotation,
                fix="regenerate the annotation file (or drop the dataset with --set data.datasets=...)",
            )
        if warn is not None:
            warn(
                f"{self.annotation}: dropped {dropped} of {n} samples of '{self.name}' with NaN/inf in the box, "
                f"confident keypoints or SMPL (first: row {first})"
            )
        return np.flatnonzero(ok)

    def __len__(self) -> int:
        return self.length

    @property
    def all_have_smpl(self) -> bool:
        return bool((self.has_smpl > 0).all())

    def image_path(self, index: int) -> Path:
        return self.layout.image(self.name, self.image_paths[index])

    def load_image(self, index: int) -> np.ndarray:
        """BGR uint8 (H,W,3) of file row `index`, as mmcv.imfrombytes / cv2.imdecode(IMREAD_COLOR)."""
        path = self.image_path(index)
        img = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if img is None:
            problem = "image not found" if not path.exists() else "image cannot be decoded"
            raise MissingFileError(
                f"{problem} (dataset '{self.name}', sample {index})",
                path=path,
                fix="run `gtacli check-layout --for finetune` (images go under datasets/<name>/)",
            )
        return img

    def annotation_of(self, index: int) -> Dict[str, np.ndarray]:
        center, side = bbox_to_center_scale(self.bbox[index])
        smpl = self.smpl
        return {
            "center": center,
            "scale": side,
            "keypoints2d": np.asarray(self.data.keypoints2d_smpl49(int(index)), np.float32),
            "keypoints3d": np.asarray(self.data.keypoints3d_smpl49(int(index)), np.float32),
            "smpl_global_orient": _row(smpl, "global_orient", index, (3,)),
            "smpl_body_pose": _row(smpl, "body_pose", index, (23, 3)),
            "smpl_betas": _row(smpl, "betas", index, (10,)),
            "smpl_transl": _row(smpl, "transl", index, (3,)),
        }

    def sample(self, index: int, rng: np.random.RandomState) -> Dict[str, Any]:
        """Usable sample `index` (0..len-1); its `sample_idx` is the file row (what the fits are indexed by)."""
        index = int(self.rows[index]) if self.rows is not None else int(index)
        ann = self.annotation_of(index)
        out = augment_sample(self.load_image(index), ann, rng, self.aug_cfg)
        out.pop("crop_bgr")
        out.update(
            has_smpl=np.float32(self.has_smpl[index]),
            smpl_betas=ann["smpl_betas"],
            smpl_transl=ann["smpl_transl"],
            sample_idx=np.int64(index),
            dataset_name=self.name,
        )
        return out


def _row(smpl: Dict[str, np.ndarray], key: str, index: int, shape: tuple) -> np.ndarray:
    if key not in smpl:
        return np.zeros(shape, np.float32)
    return np.asarray(smpl[key][index], np.float32).reshape(shape)


def collate(samples: Sequence[Dict[str, Any]], channels_last: bool = False) -> Dict[str, Any]:
    """Stack sample dicts into the contract's batch dict (CPU tensors; the loop moves them to the device).

    `channels_last` lays `img` (B,3,H,W) out as NHWC in memory (the layout the training model runs in)."""
    batch: Dict[str, Any] = {}
    for key in TENSOR_KEYS:
        batch[key] = torch.from_numpy(np.stack([np.asarray(s[key]) for s in samples]))
    if channels_last:
        batch["img"] = batch["img"].contiguous(memory_format=torch.channels_last)
    batch["dataset_name"] = [str(s["dataset_name"]) for s in samples]
    return batch
