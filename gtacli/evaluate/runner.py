"""The evaluation run behind `gtacli eval`: annotation -> crops -> batched inference -> SMPL -> metrics.

Data loading overlaps with compute (DataLoader workers, prefetching, pinned memory on CUDA); inference runs
under `torch.no_grad()` with the model in eval mode (BatchNorm running statistics, dropout off). On CUDA TF32
is switched off unless asked for (docs/reproduction.md decision 9: TF32 moves 3DPW metrics by ~0.1 mm); `amp` runs the
network in reduced precision (numbers are then not the reproduction numbers).
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Dict, List, Optional

import numpy as np
import torch

from gtacli.errors import BadFileError, GtacliError, MissingFileError, UsageError
from gtacli.evaluate import metrics as M
from gtacli.evaluate.protocols import (
    PROTOCOLS,
    Protocol,
    annotation_path,
    check_annotation,
    eval_joints,
    gendered_names,
    gt_keypoints_h36m,
)
from gtacli.io.hashing import sha256_file
from gtacli.layout import DataLayout
from gtacli.model.estimator import resolve_device

DEFAULT_BATCH_SIZE = 32
PREFETCH_BATCHES_PER_WORKER = 4

ProgressFn = Callable[[int, int], None]
InfoFn = Callable[[str], None]


@dataclass
class EvalConfig:
    dataset: str
    checkpoint: Path
    data_root: Path
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: Optional[int] = None  # None: CUDA -> min(8, cores), CPU -> 1 (the forward pass needs the cores)
    device: str = "auto"
    limit: Optional[int] = None
    save_predictions: Optional[Path] = None
    amp: bool = False
    tf32: bool = False
    annotation: Optional[Path] = None  # overrides the protocol's file
    mmhuman3d_pve: bool = False  # also mmhuman3d's PVE variant (pw3d; one more SMPL pass per batch)
    use_cv2_warp: bool = False  # the installed OpenCV's warp instead of the exact 4.x re-implementation


@dataclass
class EvalResult:
    dataset: str
    frames: int
    metrics: Dict[str, float]
    per_sequence: List[Dict[str, Any]]
    annotation: str
    annotation_sha256: str
    checkpoint: str
    checkpoint_sha256: str
    checkpoint_format: str
    protocol: Dict[str, Any]
    seconds: float
    inference_seconds: float
    device: str
    tf32: bool
    amp: bool
    synthetic: bool
    batch_size: int
    workers: int
    notes: List[str] = field(default_factory=list)

    def to_json(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {"dataset": self.dataset, "frames": self.frames}
        doc.update({k: round(v, 4) for k, v in self.metrics.items()})
        doc.update(
            {
                "annotation": self.annotation,
                "annotation_sha256": self.annotation_sha256,
                "checkpoint": self.checkpoint,
                "checkpoint_sha256": self.checkpoint_sha256,
                "checkpoint_format": self.checkpoint_format,
                "protocol": self.protocol,
                "seconds": round(self.seconds, 3),
                "inference_seconds": round(self.inference_seconds, 3),
                "frames_per_second": round(self.frames / self.seconds, 3) if self.seconds > 0 else None,
                "device": self.device,
                "tf32": self.tf32,
                "amp": self.amp,
                "exact": not (self.tf32 or self.amp),
                "synthetic_data": self.synthetic,
                "batch_size": self.batch_size,
                "workers": self.workers,
                "notes": self.notes,
                "per_sequence": self.per_sequence,
            }
        )
        return doc


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (off = exact fp32 results)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def load_model(layout: DataLayout, checkpoint: Path, device: torch.device):
    """An eval-mode estimator with every weight loaded from `checkpoint` (partial loads are refused)."""
    from gtacli.model.checkpoint import load_weights
    from gtacli.model.estimator import build_estimator
    from gtacli.model.hmr_head import CAM_DIM, POSE_6D_DIM, SHAPE_DIM

    # weights are only allocated (no random init): a partial load is refused below, so nothing stays unset
    if layout.smpl_mean_params.is_file():
        model = build_estimator(layout, device, init_weights=False)
    else:  # the checkpoint carries head.init_* anyway; zeros are placeholders that must be overwritten
        zeros = {"pose": np.zeros(POSE_6D_DIM), "shape": np.zeros(SHAPE_DIM), "cam": np.zeros(CAM_DIM)}
        model = build_estimator(zeros, device, init_weights=False)
    report = load_weights(model, checkpoint)
    if report.significant_missing:
        raise BadFileError(
            f"the checkpoint lacks {len(report.significant_missing)} weights of the model "
            f"({', '.join(report.significant_missing[:3])}, ...): it cannot be evaluated "
            f"(a {report.source_format} file)",
            path=checkpoint,
            fix="evaluate a full HMR/SPIN checkpoint (mmhuman3d, SPIN or gtacli), not a backbone-only file",
        )
    return model.to(device).eval(), report


@dataclass
class _Prepared:
    protocol: Protocol
    annotation: Path
    human_data: Any
    dataset: Any  # EvalDataset
    rows: np.ndarray
    genders: Optional[List[str]]  # 'male'/'female' per row for gendered-SMPL protocols


@dataclass
class _Inference:
    per_frame: Dict[str, np.ndarray]
    predictions: Dict[str, np.ndarray]
    seconds: float
    workers: int


def _check_options(dataset: str, batch_size: int, limit: Optional[int], workers: Optional[int]) -> Protocol:
    if dataset not in PROTOCOLS:
        raise UsageError(f"unknown dataset {dataset!r}", fix=f"use one of: {', '.join(PROTOCOLS)}")
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    if workers is not None and workers < 0:
        raise UsageError("--workers must be 0 or more")
    return PROTOCOLS[dataset]


def _annotation_file(layout: DataLayout, protocol: Protocol, annotation: Optional[Path]) -> Path:
    path = Path(annotation) if annotation else annotation_path(layout, protocol)
    if not path.is_file():
        fix = (
            "gtacli fetch pw3d_test (or pass --data-root / --annotation)"
            if protocol.name == "pw3d"
            else f"put mmhuman3d's {path.name} there (tools/convert_datasets.py), or pass --annotation FILE"
        )
        raise MissingFileError(f"{protocol.name} annotation not found", path=path, fix=fix)
    return path


def _prepare(
    layout: DataLayout, protocol: Protocol, ann_path: Path, limit: Optional[int], use_cv2_warp: bool
) -> _Prepared:
    """Open and check the annotation, build the dataset, check every image exists (before any model work)."""
    from gtacli.data.eval_dataset import EvalDataset
    from gtacli.data.human_data import HumanData

    human_data = HumanData.load(ann_path, cache_dir=layout.cache)  # lazy; .npy cache for big files
    check_annotation(human_data, protocol, ann_path)
    count = len(human_data) if limit is None else min(limit, len(human_data))
    rows = np.arange(count)
    gt_kp = None
    if protocol.gt_source == "keypoints3d":
        gt_kp = gt_keypoints_h36m(human_data.keypoints("keypoints3d", rows), ann_path)
    dataset = EvalDataset(
        human_data,
        layout.image_root(protocol.image_dataset),
        rows,
        use_cv2_warp=use_cv2_warp,
        gt_keypoints3d=gt_kp,
        normalized=False,  # uint8 crops through the pipes; normalised in batch on the device
    )
    missing = dataset.missing_images()
    if missing:
        raise MissingFileError(
            f"image not found ({len(missing)} of {count} images of {ann_path.name} are missing)",
            path=missing[0],
            fix=f"put the {protocol.image_dataset} images under {layout.image_root(protocol.image_dataset)} "
            "(see gtacli check-layout)",
        )
    genders = None
    if protocol.gt_source == "smpl_gendered":
        genders = gendered_names(np.asarray(human_data.meta()["gender"])[rows])
    return _Prepared(protocol, ann_path, human_data, dataset, rows, genders)


def _infer(
    model: torch.nn.Module,
    layout: DataLayout,
    prep: _Prepared,
    device: torch.device,
    batch_size: int,
    workers: Optional[int],
    amp: bool,
    keep_predictions: bool,
    progress: Optional[ProgressFn],
    mmhuman3d_pve: bool = False,
) -> _Inference:
    """Batched inference and per-frame metrics (model in eval mode, no_grad)."""
    from torch.utils.data import DataLoader

    from gtacli.body.smpl import BodyModel, GenderedBodyModel
    from gtacli.data.crop import normalize_batch
    from gtacli.data.eval_dataset import collate_eval

    protocol = prep.protocol
    model.eval()  # BatchNorm running statistics, dropout off
    neutral = BodyModel.from_layout(layout, "neutral", h36m=True, extra=False, device=device)
    gendered = None
    if prep.genders is not None:
        gendered = GenderedBodyModel.from_layout(
            layout, genders=("male", "female"), h36m=True, extra=False, device=device
        )
    workers = workers if workers is not None else _default_workers(device)
    loader = DataLoader(
        prep.dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=collate_eval,
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )
    count = len(prep.rows)
    names = list(protocol.metrics) + (["pve_mmhuman3d_mm"] if mmhuman3d_pve and gendered is not None else [])
    per_frame: Dict[str, np.ndarray] = {name: np.zeros(count) for name in names}
    saved: Dict[str, List[np.ndarray]] = {
        k: [] for k in ("pred_pose", "pred_shape", "pred_cam", "keypoints_3d")
    }
    amp_dtype = torch.float16 if device.type == "cuda" else torch.bfloat16
    done = 0
    start = time.perf_counter()
    with torch.no_grad():
        for batch in loader:
            if "errors" in batch:  # already one line naming the image (raised here, not in a worker)
                raise GtacliError(batch["errors"][0])
            index = batch["index"].numpy()
            img = normalize_batch(batch["crop"].to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp):
                out = model(img)
            rotmat = out["pred_pose"].float()
            betas = out["pred_shape"].float()
            pred = neutral(betas, rotmat[:, 1:], rotmat[:, 0:1], pose2rot=False)
            pred_j = eval_joints(pred.joints_h36m, protocol)
            if gendered is not None:
                genders = [prep.genders[i] for i in index]
                gt = gendered(
                    batch["smpl_betas"].to(device),
                    batch["smpl_body_pose"].to(device),
                    batch["smpl_global_orient"].to(device),
                    gender=genders,
                    pose2rot=True,
                )
                gt_j = eval_joints(gt.joints_h36m, protocol)
                pve = M.pve_per_frame(
                    _pelvis_centred(pred.vertices, pred.joints_h36m, protocol),
                    _pelvis_centred(gt.vertices, gt.joints_h36m, protocol),
                )
                per_frame["pve_mm"][index] = pve.cpu().numpy()
                if "pve_mmhuman3d_mm" in per_frame:
                    # mmhuman3d's `pve`: predicted vertices from the GT-gender model, no alignment
                    pred_g = gendered(betas, rotmat[:, 1:], rotmat[:, 0:1], gender=genders, pose2rot=False)
                    per_frame["pve_mmhuman3d_mm"][index] = (
                        M.pve_per_frame(pred_g.vertices * 1000.0, gt.vertices * 1000.0).cpu().numpy()
                    )
            else:
                gt_j = eval_joints(batch["keypoints3d"].to(device), protocol)
            per_frame["mpjpe_mm"][index] = M.mpjpe_per_frame(pred_j, gt_j).cpu().numpy()
            per_frame["pa_mpjpe_mm"][index] = M.pa_mpjpe_per_frame(pred_j, gt_j).cpu().numpy()
            if "pck_150mm" in per_frame:
                per_frame["pck_150mm"][index] = 100.0 * M.pck_per_frame(pred_j, gt_j).cpu().numpy()
                per_frame["auc"][index] = 100.0 * M.auc_per_frame(pred_j, gt_j).cpu().numpy()
            if keep_predictions:
                saved["pred_pose"].append(rotmat.cpu().numpy())
                saved["pred_shape"].append(betas.cpu().numpy())
                saved["pred_cam"].append(out["pred_cam"].float().cpu().numpy())
                saved["keypoints_3d"].append(pred.joints_h36m.float().cpu().numpy())
            done += len(index)
            if progress is not None:
                progress(done, count)
    predictions = {k: np.concatenate(v) for k, v in saved.items() if v}
    return _Inference(per_frame, predictions, time.perf_counter() - start, workers)


def evaluate_model(
    model: torch.nn.Module,
    layout: DataLayout,
    device: Optional[torch.device] = None,
    dataset: str = "pw3d",
    batch_size: int = DEFAULT_BATCH_SIZE,
    workers: Optional[int] = None,
    limit: Optional[int] = None,
    annotation: Optional[Path] = None,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, Any]:
    """Evaluate an in-memory estimator (e.g. after a training epoch): the metrics, per-sequence table and
    timing as a dict. Leaves the model in eval mode (the caller restores train mode)."""
    protocol = _check_options(dataset, batch_size, limit, workers)
    device = device if device is not None else next(model.parameters()).device
    ann_path = _annotation_file(layout, protocol, annotation)
    prep = _prepare(layout, protocol, ann_path, limit, use_cv2_warp=False)
    inference = _infer(model, layout, prep, device, batch_size, workers, False, False, progress)
    doc: Dict[str, Any] = {"dataset": protocol.name, "frames": len(prep.rows), "annotation": str(ann_path)}
    doc.update({name: round(float(v.mean()), 4) for name, v in inference.per_frame.items()})
    doc["inference_seconds"] = round(inference.seconds, 3)
    doc["per_sequence"] = _per_sequence(prep.dataset.image_paths, inference.per_frame)
    return doc


def run_evaluation(
    config: EvalConfig, progress: Optional[ProgressFn] = None, info: Optional[InfoFn] = None
) -> EvalResult:
    """Evaluate `config.checkpoint` on `config.dataset`; see `gtacli eval --help`."""
    say = info or (lambda _msg: None)
    started = time.perf_counter()
    protocol = _check_options(config.dataset, config.batch_size, config.limit, config.workers)
    if config.save_predictions is not None and Path(config.save_predictions).suffix != ".npz":
        raise UsageError(f"--save-predictions {config.save_predictions} must end in .npz")
    layout = DataLayout(config.data_root)
    device = resolve_device(config.device)
    ann_path = _annotation_file(layout, protocol, config.annotation)
    checkpoint = Path(config.checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(
            "checkpoint not found", path=checkpoint, fix="check the path given to --checkpoint"
        )
    # the hashes (≈0.3 s for a 100 MB checkpoint) are computed in a thread while the run goes on
    hashing = ThreadPoolExecutor(max_workers=1)
    hashes = {p: hashing.submit(sha256_file, p) for p in (ann_path, checkpoint)}
    hashing.shutdown(wait=False)
    prep = _prepare(layout, protocol, ann_path, config.limit, config.use_cv2_warp)
    if device.type == "cuda":
        set_tf32(config.tf32)
    model, report = load_model(layout, checkpoint, device)
    keep = config.save_predictions is not None
    inference = _infer(
        model,
        layout,
        prep,
        device,
        config.batch_size,
        config.workers,
        config.amp,
        keep,
        progress,
        config.mmhuman3d_pve,
    )

    metrics = {name: float(values.mean()) for name, values in inference.per_frame.items()}
    if keep:
        _save_predictions(Path(config.save_predictions), prep, inference)
    notes: List[str] = []
    if config.amp:
        notes.append("--amp: reduced-precision inference; numbers are not the exact reproduction numbers")
    if device.type == "cuda" and config.tf32:
        notes.append("TF32 on: metrics may differ from exact fp32 by ~0.1 mm")
    result = EvalResult(
        dataset=protocol.name,
        frames=len(prep.rows),
        metrics=metrics,
        per_sequence=_per_sequence(prep.dataset.image_paths, inference.per_frame),
        annotation=str(ann_path),
        annotation_sha256=hashes[ann_path].result(),
        checkpoint=str(checkpoint),
        checkpoint_sha256=hashes[checkpoint].result(),
        checkpoint_format=report.source_format,
        protocol=protocol.describe(),
        seconds=0.0,
        inference_seconds=inference.seconds,
        device=str(device),
        tf32=bool(device.type == "cuda" and config.tf32),
        amp=config.amp,
        synthetic=layout.is_synthetic,
        batch_size=config.batch_size,
        workers=inference.workers,
        notes=notes,
    )
    result.seconds = time.perf_counter() - started
    say(f"evaluated {result.frames} frames in {result.seconds:.1f} s")
    return result


def _default_workers(device: torch.device) -> int:
    cores = os.cpu_count() or 1
    if device.type == "cuda":
        return min(8, cores)
    # on CPU the forward pass uses every core; one worker decoding/cropping ahead is enough and costs little
    return 1 if cores > 1 else 0


def _pelvis_centred(vertices: torch.Tensor, joints_h36m: torch.Tensor, protocol: Protocol) -> torch.Tensor:
    """(B,V,3) metres -> mm with the mesh's own H36M pelvis at the origin (float64)."""
    pelvis = joints_h36m[:, protocol.pelvis : protocol.pelvis + 1].to(torch.float64)
    return (vertices.to(torch.float64) - pelvis) * 1000.0


def _per_sequence(image_paths: List[str], per_frame: Dict[str, np.ndarray]) -> List[Dict[str, Any]]:
    """One row per sequence (= the image's folder), in order of first appearance."""
    order: Dict[str, List[int]] = {}
    for i, path in enumerate(image_paths):
        order.setdefault(str(PurePosixPath(path).parent), []).append(i)
    table = []
    for name, idx in order.items():
        row: Dict[str, Any] = {"sequence": name, "frames": len(idx)}
        row.update({metric: round(float(values[idx].mean()), 4) for metric, values in per_frame.items()})
        table.append(row)
    return table


def _save_predictions(path: Path, prep: _Prepared, inference: _Inference) -> None:
    """Per-frame predictions and errors as a plain .npz (no pickled objects), written atomically."""
    from gtacli.io.atomic import atomic_path

    arrays: Dict[str, np.ndarray] = {"index": prep.rows, "image_path": np.asarray(prep.dataset.image_paths)}
    arrays.update(inference.predictions)
    arrays.update({f"frame_{key}": values for key, values in inference.per_frame.items()})
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
