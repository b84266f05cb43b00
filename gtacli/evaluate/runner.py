"""The evaluation run behind `gtacli eval`: annotation -> crops -> batched inference -> SMPL -> metrics.

The model comes from `load_estimator` (eval mode, no gradients, BatchNorms folded into the convolutions,
channels-last weights on CPU and CUDA) and runs under `torch.inference_mode()`. Decoding and cropping run in DataLoader workers (`default_workers`:
sized to the machine), which also assemble each batch in the model's memory layout: on the CPU the workers
normalise the crops into a channels-last float32 batch, so the main thread only runs the network; on CUDA
uint8 crops travel (4x less data) through pinned memory with non-blocking copies and are normalised on the
GPU straight into channels-last. On CUDA TF32 is switched off unless asked for (docs/reproduction.md
decision 9: TF32 moves 3DPW metrics by ~0.1 mm); `amp` runs the network in reduced precision (numbers are
then not the reproduction numbers). Channels-last and the folding change the metrics by far less than
0.001 mm (tested against the plain NCHW float32 network).
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
from torch.utils.data import DataLoader

from gtacli.body.smpl import BodyModel, GenderedBodyModel
from gtacli.data.annotation_checks import check_finite, check_gt_smpl
from gtacli.data.crop import normalize_batch
from gtacli.data.eval_dataset import EvalCollate, EvalDataset
from gtacli.data.human_data import HumanData
from gtacli.device import configure_threads
from gtacli.errors import GtacliError, MissingFileError, UsageError
from gtacli.evaluate import metrics as M
from gtacli.evaluate.protocols import (
    Protocol,
    annotation_path,
    check_annotation,
    eval_joints,
    gendered_names,
    gt_keypoints_h36m,
    protocol_named,
)
from gtacli.io.atomic import atomic_path, temp_path_for
from gtacli.io.hashing import sha256_file
from gtacli.layout import DataLayout
from gtacli.model.engines import InferenceEngine, TorchEngine, load_engine, resolve_engine
from gtacli.model.memory_format import NCHW, inference_memory_format, model_memory_format
from gtacli.progress import ProgressFn

DEFAULT_BATCH_SIZE = 32
PREFETCH_BATCHES_PER_WORKER = 4
CUDA_MAX_WORKERS = 16  # JPEG decoding bounds a GPU eval: one worker per core, up to this many
CPU_CORES_PER_WORKER = 16  # on the CPU the network needs the cores; one decoding worker per 16 of them

InfoFn = Callable[[str], None]


@dataclass
class EvalConfig:
    dataset: str
    checkpoint: Path
    data_root: Path
    batch_size: int = DEFAULT_BATCH_SIZE
    workers: Optional[int] = None  # None: `default_workers(device)`
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))  # resolved by the caller
    limit: Optional[int] = None
    save_predictions: Optional[Path] = None
    force: bool = False  # --save-predictions may replace an existing file (never the annotation)
    threads: Optional[int] = None  # CPU threads; None: GTACLI_THREADS or torch's default
    amp: bool = False
    tf32: bool = False
    annotation: Optional[Path] = None  # overrides the protocol's file
    mmhuman3d_pve: bool = False  # also mmhuman3d's PVE variant (pw3d; one more SMPL pass per batch)
    use_cv2_warp: Optional[bool] = None  # None: OpenCV 4.x if installed, else the exact re-implementation
    engine: str = "auto"  # auto | torch | onnxruntime (gtacli.model.engines)


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
    layout: str
    batchnorm_folded: bool
    threads: int
    tf32: bool
    amp: bool
    synthetic: bool
    batch_size: int
    workers: int
    engine: Dict[str, Any] = field(default_factory=dict)  # EngineInfo.to_json()
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
                "layout": self.layout,
                "batchnorm_folded": self.batchnorm_folded,
                "engine": self.engine.get("name"),
                "engine_info": self.engine,
                "threads": self.threads,
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


# What the eval output says of the onnxruntime engine's numbers (tests/evaluate/test_evaluate_engines.py holds it)
ONNXRUNTIME_EXACTNESS = "3DPW metrics equal the torch engine's within 0.01 mm"


@dataclass(frozen=True)
class CheckedConfig:
    """What `check_config` established before any work: the protocol, the annotation file, the engine."""

    protocol: Protocol
    annotation: Path
    engine: str = "torch"


def set_tf32(enabled: bool) -> None:
    """TF32 for CUDA matmuls and cuDNN convolutions (off = exact fp32 results)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def default_workers(device: torch.device) -> int:
    """DataLoader workers for decoding and cropping, sized to the machine: on CUDA one per core (up to
    CUDA_MAX_WORKERS) since decoding is then the slowest stage; on the CPU the network needs the cores, so
    one worker per CPU_CORES_PER_WORKER cores (at least one when there are two cores or more)."""
    cores = available_cores()
    if device.type == "cuda":
        return min(CUDA_MAX_WORKERS, cores)
    return max(1, cores // CPU_CORES_PER_WORKER) if cores > 1 else 0


def available_cores() -> int:
    """Cores this process may run on (the affinity mask, e.g. a SLURM allocation), not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_config(config: EvalConfig) -> CheckedConfig:
    """Every check that needs no model and no image, so a bad option fails before anything is printed or
    computed: dataset name, numbers, the annotation and checkpoint files, and the predictions output."""
    protocol = protocol_named(config.dataset)
    _check_numbers(config.batch_size, config.limit, config.workers)
    if config.threads is not None and config.threads < 1:
        raise UsageError("--threads must be at least 1")
    ann_path = _annotation_file(DataLayout(config.data_root), protocol, config.annotation)
    if not Path(config.checkpoint).is_file():
        raise MissingFileError(
            "checkpoint not found", path=config.checkpoint, fix="check the path given to --checkpoint"
        )
    engine = resolve_engine(config.engine, config.device, config.checkpoint, config.amp)
    if config.save_predictions is not None:
        layout = DataLayout(config.data_root)
        inputs = (ann_path, Path(config.checkpoint), *_model_files(layout))
        folders = (layout.image_root(protocol.image_dataset), layout.body_models, layout.cache)
        _check_output(Path(config.save_predictions), inputs, config.force, folders)
    return CheckedConfig(protocol, ann_path, engine)


def _model_files(layout: DataLayout) -> tuple:
    """The files besides the annotation and the checkpoint an evaluation reads (body models, regressors)."""
    genders = ("neutral", "male", "female")
    return (*(layout.smpl_model(g) for g in genders), layout.j_regressor_h36m, layout.j_regressor_extra,
            layout.smpl_mean_params)  # fmt: skip


def _check_numbers(batch_size: int, limit: Optional[int], workers: Optional[int]) -> None:
    if batch_size < 1:
        raise UsageError("--batch-size must be at least 1")
    if limit is not None and limit < 1:
        raise UsageError("--limit must be at least 1")
    if workers is not None and workers < 0:
        raise UsageError("--workers must be 0 or more")


def _check_output(path: Path, inputs: tuple, force: bool, folders: tuple = ()) -> None:
    """--save-predictions: an .npz that is none of the files the evaluation reads (`inputs`, or anything in
    `folders`: images, body models, cache), not an existing file unless `force`, in a folder where a file can
    be created (tried with a probe file, which also catches read-only mounts)."""
    if path.suffix != ".npz":
        raise UsageError(f"--save-predictions {path} must end in .npz")
    if path.is_dir():
        raise UsageError(f"--save-predictions {path} is a folder", fix="give a file name ending in .npz")
    resolved = path.resolve()
    inside = next((f for f in folders if f.exists() and resolved.is_relative_to(f.resolve())), None)
    if inside is not None:
        raise UsageError(
            f"--save-predictions {path} lies in {inside}, which this evaluation reads; it is never written",
            fix="write the predictions to another folder",
        )
    if path.exists():
        if any(src.exists() and os.path.samefile(path, src) for src in inputs):
            raise UsageError(
                f"--save-predictions {path} is an input of this evaluation; it is never overwritten",
                fix="write the predictions to another file",
            )
        if not force:
            raise UsageError(
                f"--save-predictions {path} exists",
                fix="choose another file name, or add --force to replace it",
            )
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = (
            folder.parent
        )  # atomic_path creates the missing folders; the first existing one must be writable
    probe = temp_path_for(folder / path.name)
    try:
        probe.touch(exist_ok=False)
        probe.unlink()
    except OSError as exc:
        raise UsageError(
            f"--save-predictions {path} cannot be written ({exc.strerror or exc})",
            fix="choose a file in a folder you can write to",
        ) from None


@dataclass
class _Prepared:
    protocol: Protocol
    annotation: Path
    human_data: Any
    dataset: EvalDataset
    rows: np.ndarray
    genders: Optional[List[str]]  # 'male'/'female' per row for gendered-SMPL protocols


@dataclass
class _Inference:
    per_frame: Dict[str, np.ndarray]
    predictions: Dict[str, np.ndarray]
    seconds: float
    workers: int


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
    layout: DataLayout, protocol: Protocol, ann_path: Path, limit: Optional[int], use_cv2_warp: Optional[bool]
) -> _Prepared:
    """Open and check the annotation, build the dataset, check every image exists (before any model work)."""
    human_data = HumanData.load(ann_path, cache_dir=layout.cache)  # lazy; .npy cache for big files
    check_annotation(human_data, protocol, ann_path)
    count = len(human_data) if limit is None else min(limit, len(human_data))
    rows = np.arange(count)
    # what check-layout checks, on the rows scored: finite boxes and ground truth, SMPL of one row per frame
    check_finite(human_data, "bbox_xywh", ann_path, rows)
    genders = None
    if protocol.gt_source == "smpl_gendered":
        genders = gendered_names(np.asarray(check_gt_smpl(human_data, ann_path, rows)))
    gt_kp = None
    if protocol.gt_source == "keypoints3d":
        check_finite(human_data, "keypoints3d", ann_path, rows)
        gt_kp = gt_keypoints_h36m(human_data.keypoints("keypoints3d", rows), ann_path)
    dataset = EvalDataset(
        human_data,
        layout.image_root(protocol.image_dataset),
        rows,
        use_cv2_warp=use_cv2_warp,
        gt_keypoints3d=gt_kp,
    )
    missing = dataset.missing_images()
    if missing:
        raise MissingFileError(
            f"image not found ({len(missing)} of {count} images of {ann_path.name} are missing)",
            path=missing[0],
            fix=f"put the {protocol.image_dataset} images under {layout.image_root(protocol.image_dataset)} "
            "(see gtacli check-layout)",
        )
    return _Prepared(protocol, ann_path, human_data, dataset, rows, genders)


@dataclass
class _Batches:
    """Started DataLoader workers: created before the model loads, so decoding overlaps the start-up."""

    iterator: Any
    workers: int


def _start_batches(
    dataset: EvalDataset,
    memory_format: torch.memory_format,
    device: torch.device,
    batch_size: int,
    workers: Optional[int],
) -> _Batches:
    """Batches in `memory_format`, assembled in the workers: on the CPU as normalised float32 `img`; on
    CUDA as uint8 `crop` (B,H,W,3) in pinned memory, normalised on the GPU by `_images`."""
    workers = workers if workers is not None else default_workers(device)
    loader = DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        pin_memory=device.type == "cuda",
        collate_fn=EvalCollate(normalize=device.type != "cuda", memory_format=memory_format),
        prefetch_factor=PREFETCH_BATCHES_PER_WORKER if workers > 0 else None,
    )
    return _Batches(iter(loader), workers)


def _images(batch: Dict[str, Any], engine: InferenceEngine, device: torch.device) -> torch.Tensor:
    """(B,3,224,224) float32 on `device` in the engine's layout (no layout conversion on this thread)."""
    if "img" in batch:
        return batch["img"].to(device, non_blocking=True)
    crops = batch["crop"].to(device, non_blocking=True)
    return normalize_batch(crops, memory_format=engine.memory_format)


def _predict(engine: InferenceEngine, batch: Dict[str, Any], device: torch.device) -> Dict[str, torch.Tensor]:
    """The network's float32 rotation matrices `pred_pose`, `pred_shape` and `pred_cam` for one batch, on `device`
    (every engine returns float32; under --amp the engine runs autocast itself)."""
    out = engine(_images(batch, engine, device))
    return {key: out[key].to(device) for key in ("pred_pose", "pred_shape", "pred_cam")}


class _Scorer:
    """Per-frame errors of predictions against the protocol's ground truth: SMPL of the prediction (neutral
    model), SMPL of the ground truth (gendered, for 3DPW) or its 3D keypoints, then the metrics."""

    def __init__(self, layout: DataLayout, prep: _Prepared, device: torch.device, mmhuman3d_pve: bool):
        self.prep = prep
        self.protocol = prep.protocol
        self.device = device
        self.neutral = BodyModel.from_layout(layout, "neutral", h36m=True, extra=False, device=device)
        self.gendered = None
        if prep.genders is not None:
            self.gendered = GenderedBodyModel.from_layout(
                layout, genders=("male", "female"), h36m=True, extra=False, device=device
            )
        count = len(prep.rows)
        names = list(self.protocol.metrics)
        if mmhuman3d_pve and self.gendered is not None:
            names.append("pve_mmhuman3d_mm")
        self.per_frame: Dict[str, np.ndarray] = {name: np.zeros(count) for name in names}

    def score(self, batch: Dict[str, Any], pred: Dict[str, torch.Tensor]) -> torch.Tensor:
        """Fill the batch's rows of `per_frame`; returns the predicted H36M joints (B,17,3)."""
        protocol, device, per_frame = self.protocol, self.device, self.per_frame
        index = batch["index"].numpy()
        rotmat, betas = pred["pred_pose"], pred["pred_shape"]
        body = self.neutral(betas, rotmat[:, 1:], rotmat[:, 0:1], pose2rot=False)
        pred_j = eval_joints(body.joints_h36m, protocol)
        if self.gendered is not None:
            genders = [self.prep.genders[i] for i in index]
            gt = self.gendered(
                batch["smpl_betas"].to(device, non_blocking=True),
                batch["smpl_body_pose"].to(device, non_blocking=True),
                batch["smpl_global_orient"].to(device, non_blocking=True),
                gender=genders,
                pose2rot=True,
            )
            gt_j = eval_joints(gt.joints_h36m, protocol)
            pve = M.pve_per_frame(
                _pelvis_centred(body.vertices, body.joints_h36m, protocol),
                _pelvis_centred(gt.vertices, gt.joints_h36m, protocol),
            )
            per_frame["pve_mm"][index] = pve.cpu().numpy()
            if "pve_mmhuman3d_mm" in per_frame:
                # mmhuman3d's `pve`: predicted vertices from the GT-gender model, no alignment
                pred_g = self.gendered(betas, rotmat[:, 1:], rotmat[:, 0:1], gender=genders, pose2rot=False)
                per_frame["pve_mmhuman3d_mm"][index] = (
                    M.pve_per_frame(pred_g.vertices * 1000.0, gt.vertices * 1000.0).cpu().numpy()
                )
        else:
            gt_j = eval_joints(batch["keypoints3d"].to(device, non_blocking=True), protocol)
        per_frame["mpjpe_mm"][index] = M.mpjpe_per_frame(pred_j, gt_j).cpu().numpy()
        per_frame["pa_mpjpe_mm"][index] = M.pa_mpjpe_per_frame(pred_j, gt_j).cpu().numpy()
        if "pck_150mm" in per_frame:
            per_frame["pck_150mm"][index] = 100.0 * M.pck_per_frame(pred_j, gt_j).cpu().numpy()
            per_frame["auc"][index] = 100.0 * M.auc_per_frame(pred_j, gt_j).cpu().numpy()
        return body.joints_h36m


def _infer(
    engine: InferenceEngine,
    layout: DataLayout,
    prep: _Prepared,
    device: torch.device,
    batches: _Batches,
    keep_predictions: bool,
    progress: Optional[ProgressFn],
    mmhuman3d_pve: bool = False,
) -> _Inference:
    """For each batch: predict (the engine), then score (SMPL and metrics); under inference mode."""
    scorer = _Scorer(layout, prep, device, mmhuman3d_pve)
    saved: Dict[str, List[np.ndarray]] = {
        k: [] for k in ("pred_pose", "pred_shape", "pred_cam", "keypoints_3d")
    }
    info = engine.info
    setup = f"{info.name}, {info.layout}, {info.threads} threads, {batches.workers} workers"
    count = len(prep.rows)
    done = 0
    start = time.perf_counter()
    with torch.inference_mode():
        for batch in batches.iterator:
            if "errors" in batch:  # already one line naming the image (raised here, not in a worker)
                raise GtacliError(batch["errors"][0])
            pred = _predict(engine, batch, device)
            joints_h36m = scorer.score(batch, pred)
            if keep_predictions:
                for key in ("pred_pose", "pred_shape", "pred_cam"):
                    saved[key].append(pred[key].cpu().numpy())
                saved["keypoints_3d"].append(joints_h36m.float().cpu().numpy())
            done += len(batch["index"])
            if progress is not None:
                # the bar shows the one running rate; the description says how the network runs
                progress(done, count, setup)
    predictions = {k: np.concatenate(v) for k, v in saved.items() if v}
    return _Inference(scorer.per_frame, predictions, time.perf_counter() - start, batches.workers)


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
    timing as a dict. Batches follow the model's own memory layout (the model is not converted). Leaves
    the model in eval mode (the caller restores train mode)."""
    protocol = protocol_named(dataset)
    _check_numbers(batch_size, limit, workers)
    device = device if device is not None else next(model.parameters()).device
    ann_path = _annotation_file(layout, protocol, annotation)
    prep = _prepare(layout, protocol, ann_path, limit, use_cv2_warp=None)
    batches = _start_batches(prep.dataset, model_memory_format(model), device, batch_size, workers)
    engine = TorchEngine(model, device)
    model.eval()  # BatchNorm running statistics, dropout off
    inference = _infer(engine, layout, prep, device, batches, False, progress)
    doc: Dict[str, Any] = {"dataset": protocol.name, "frames": len(prep.rows), "annotation": str(ann_path)}
    doc.update({name: round(float(v.mean()), 4) for name, v in inference.per_frame.items()})
    doc["inference_seconds"] = round(inference.seconds, 3)
    doc["layout"] = engine.info.layout
    doc["per_sequence"] = _per_sequence(prep.dataset.image_paths, inference.per_frame)
    return doc


def run_evaluation(
    config: EvalConfig, progress: Optional[ProgressFn] = None, info: Optional[InfoFn] = None
) -> EvalResult:
    """Evaluate `config.checkpoint` on `config.dataset` on `config.device` (a resolved `torch.device`);
    see `gtacli eval --help`. Applies `config.threads` (or GTACLI_THREADS) to this process."""
    say = info or (lambda _msg: None)
    started = time.perf_counter()
    checked = check_config(config)
    protocol, ann_path = checked.protocol, checked.annotation
    layout = DataLayout(config.data_root)
    device = config.device
    checkpoint = Path(config.checkpoint)
    configure_threads(config.threads)
    # the hashes (a checkpoint is large) are computed in a thread while the run goes on
    hashing = ThreadPoolExecutor(max_workers=1)
    hashes = {p: hashing.submit(sha256_file, p) for p in (ann_path, checkpoint)}
    hashing.shutdown(wait=False)
    prep = _prepare(layout, protocol, ann_path, config.limit, config.use_cv2_warp)
    if device.type == "cuda":
        set_tf32(config.tf32)
    # the workers start decoding now, while the model loads (batches come in the engine's layout)
    memory_format = NCHW if checked.engine == "onnxruntime" else inference_memory_format(device)
    batches = _start_batches(prep.dataset, memory_format, device, config.batch_size, config.workers)
    engine = load_engine(
        checkpoint,
        layout,
        device,
        checked.engine,
        checkpoint_sha256=hashes[checkpoint].result(),
        info=say,
        amp=config.amp,
    )
    keep = config.save_predictions is not None
    inference = _infer(
        engine,
        layout,
        prep,
        device,
        batches,
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
        checkpoint_format=engine.checkpoint_format,
        protocol=protocol.describe(),
        seconds=0.0,
        inference_seconds=inference.seconds,
        device=str(device),
        layout=engine.info.layout,
        batchnorm_folded=engine.info.batchnorm_folded,
        threads=engine.info.threads,
        tf32=bool(device.type == "cuda" and config.tf32),
        amp=config.amp,
        synthetic=layout.is_synthetic,
        batch_size=config.batch_size,
        workers=inference.workers,
        engine=engine.info.to_json(),
        notes=notes,
    )
    result.seconds = time.perf_counter() - started
    say(
        f"evaluated {result.frames} frames in {result.seconds:.1f} s on {device} "
        f"({engine.info.name}, {result.layout}, {result.threads} threads, {result.workers} workers)"
    )
    return result


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
    arrays: Dict[str, np.ndarray] = {"index": prep.rows, "image_path": np.asarray(prep.dataset.image_paths)}
    arrays.update(inference.predictions)
    arrays.update({f"frame_{key}": values for key, values in inference.per_frame.items()})
    with atomic_path(path) as tmp:
        np.savez_compressed(tmp, **arrays)
