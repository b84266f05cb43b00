"""Test-time dataset over a HumanData file (docs/reproduction.md §8 test pipeline): load BGR uint8 -> square crop of side
max(w, h) around the box centre (no rotation, no scale noise, OpenCV-4.x-exact warp) -> normalise.

Items carry `index` (row in the file), the image and the row's ground truth:

* `crop` (224,224,3) uint8 BGR, which `EvalCollate` normalises as a whole batch (in the worker, on the
  CPU) or leaves for `gtacli.data.crop.normalize_batch` on the GPU (bit-identical to the per-image
  `gtacli.data.crop.normalize`; 4x less data through the worker pipes and pinned memory);
* `smpl_betas` (10,), `smpl_body_pose` (69,), `smpl_global_orient` (3,) when the file has SMPL;
* `keypoints3d` (J,3) when the caller passes 3D keypoint ground truth in its protocol's joint order.

A missing or undecodable image does not raise inside a worker (PyTorch would re-wrap the error with a
traceback): the item carries `error`, `EvalCollate` passes it on as `batch['errors']`, and the caller raises
it as one line in the main process. `missing_images()` checks every file up front.

`EvalCollate` assembles batches in the estimator's memory layout inside the DataLoader workers, so the
main thread never transposes a batch: uint8 crops stacked as (B,H,W,C) are already channels-last memory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from gtacli.data.crop import IMG_RES, bbox_to_center_scale, crop, normalize_batch
from gtacli.data.human_data import HumanData
from gtacli.errors import BadFileError, MissingFileError


def read_image_bgr(path: Path) -> np.ndarray:
    """(H,W,3) BGR uint8, decoded as mmcv's `imfrombytes(flag='color')` does (cv2.imdecode, IMREAD_COLOR)."""
    try:
        data = np.fromfile(str(path), dtype=np.uint8)
    except OSError as exc:
        raise MissingFileError(f"image cannot be read ({exc.strerror})", path=path) from exc
    img = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    if img is None:
        raise BadFileError("image cannot be decoded (truncated or not an image)", path=path)
    return img


class EvalDataset(Dataset):
    """`EvalDataset(human_data, image_root, indices=None)`; `image_root` is `data/datasets/<name>`."""

    def __init__(
        self,
        human_data: HumanData,
        image_root: Path,
        indices: Optional[Sequence[int]] = None,
        res: int = IMG_RES,
        use_cv2_warp: Optional[bool] = None,
        gt_keypoints3d: Optional[np.ndarray] = None,
    ) -> None:
        self.human_data = human_data
        self.image_root = Path(image_root)
        self.indices = np.arange(len(human_data)) if indices is None else np.asarray(indices, dtype=np.int64)
        self.res = res
        self.use_cv2_warp = use_cv2_warp
        # read the per-row fields once (small next to the images); workers inherit them
        rows = self.indices
        self.image_paths: List[str] = human_data.image_paths(rows)
        self.bboxes = np.asarray(human_data.bbox_xywh(rows))
        self.smpl: Dict[str, np.ndarray] = {}
        if "smpl" in human_data:
            smpl = human_data.smpl(rows)
            for key in ("betas", "body_pose", "global_orient"):
                if key in smpl:
                    self.smpl[key] = np.asarray(smpl[key], dtype=np.float32).reshape(len(rows), -1)
        # 3D keypoint ground truth, already in the protocol's joint order (N,J,3), given by the caller
        self.keypoints3d = None if gt_keypoints3d is None else np.asarray(gt_keypoints3d, dtype=np.float32)
        if self.keypoints3d is not None and len(self.keypoints3d) != len(rows):
            raise ValueError(f"{len(self.keypoints3d)} keypoint rows for {len(rows)} frames")

    def __len__(self) -> int:
        return len(self.indices)

    def image_file(self, i: int) -> Path:
        return self.image_root / self.image_paths[i]

    def missing_images(self) -> List[Path]:
        return [self.image_file(i) for i in range(len(self)) if not self.image_file(i).is_file()]

    def __getitem__(self, i: int) -> Dict[str, Any]:
        item: Dict[str, Any] = {"index": int(self.indices[i])}
        try:
            img = read_image_bgr(self.image_file(i))
        except (MissingFileError, BadFileError) as exc:
            item["error"] = exc.one_line()
            return item
        center, side = bbox_to_center_scale(self.bboxes[i])
        cropped, _ = crop(img, center, side, 0.0, self.res, use_cv2=self.use_cv2_warp)
        item["crop"] = torch.from_numpy(cropped)
        for key, value in self.smpl.items():
            item[f"smpl_{key}"] = torch.from_numpy(value[i])
        if self.keypoints3d is not None:
            item["keypoints3d"] = torch.from_numpy(self.keypoints3d[i])
        return item


class EvalCollate:
    """Stack a batch (a picklable callable, so it runs inside DataLoader workers).

    Items that failed to load put their one-line messages in `batch['errors']` (never raised here: in a
    worker process PyTorch would wrap the exception in a traceback). With `normalize=True` the uint8 `crop`s
    become `img` (B,3,H,W) float32 normalised in `memory_format` (`torch.channels_last` for an estimator
    loaded for inference); with `normalize=False` they stay `crop` (B,H,W,3) uint8, channels-last memory
    already, for `normalize_batch` on the GPU.
    """

    def __init__(self, normalize: bool = True, memory_format: torch.memory_format = torch.channels_last):
        self.normalize = normalize
        self.memory_format = memory_format

    def __call__(self, items: List[Dict[str, Any]]) -> Dict[str, Any]:
        errors = [it["error"] for it in items if "error" in it]
        if errors:
            return {"errors": errors}
        batch: Dict[str, Any] = {"index": torch.as_tensor([it["index"] for it in items], dtype=torch.int64)}
        for key in items[0]:
            if key != "index":
                batch[key] = torch.stack([it[key] for it in items])
        if self.normalize and "crop" in batch:
            batch["img"] = normalize_batch(batch.pop("crop"), memory_format=self.memory_format)
        return batch
