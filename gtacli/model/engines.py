"""What runs the estimator: torch, or onnxruntime on the CPU (`--engine auto|torch|onnxruntime`).

Every command that runs the network (eval, demo, `fit --init CKPT`) gets an engine from `load_engine`, calls it
on normalised crops (B,3,224,224) float32 and gets torch tensors back: `pred_pose` (B,24,3,3), `pred_shape`
(B,10), `pred_cam` (B,3) on the engine's device.

* `torch`: the model from `load_estimator` (folded BatchNorm, channels-last), under `torch.inference_mode()`.
* `onnxruntime`: the same network exported to ONNX (`gtacli.model.onnx_export`) and run by onnxruntime's CPU
  provider with default graph optimisations; it keeps the CPU's cores busier than torch's kernels do,
  most of all when other processes share them (figures: benchmarks/results/). A `.pth` checkpoint is exported on
  first use to `<data-root>/cache/onnx/<sha256 of the checkpoint>.onnx` (verified against torch before it is
  kept) and reused afterwards; a cached file whose metadata does not match (another export revision, another
  mean-parameter file) is rebuilt. A `.onnx` file given as the checkpoint is used directly, after its inputs,
  outputs and metadata are checked.
* `auto`: onnxruntime on the CPU when the `onnx` and `onnxruntime` packages are installed (`gtacli[onnx]`),
  torch otherwise and always on CUDA (onnxruntime-gpu is not a dependency), and with `--amp`. Training always
  runs torch.

`--amp` (eval, demo) runs the torch engine under autocast: float16 on CUDA, bfloat16 on the CPU. On a CPU with
bfloat16 units (Intel AMX, AVX512-BF16) the network runs several times faster than in float32 (figures:
benchmarks/results/demo.json); without them oneDNN emulates bfloat16 and it is slower, which the engine says.
Either way the numbers are not float32's: `--amp` is never the exact reproduction.

The intra-op thread count of either engine is `--threads` / GTACLI_THREADS (`gtacli.device.configure_threads`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np
import torch
from torch import nn

from gtacli.device import configure_threads
from gtacli.errors import GtacliError, MissingFileError, PathLike, UsageError
from gtacli.io.hashing import sha256_file
from gtacli.layout import DataLayout
from gtacli.model.checkpoint import LoadReport
from gtacli.model.fold import is_batchnorm_folded
from gtacli.model.loading import load_estimator
from gtacli.model.memory_format import NCHW, layout_name, model_memory_format
from gtacli.model.onnx_export import (
    META_CHECKPOINT_FORMAT,
    META_MEAN_FILE,
    META_VERIFIED,
    OUTPUT_NAMES,
    expected_metadata,
    export_onnx,
    mean_params_file_sha256,
    metadata_problem,
    module_installed,
    open_estimator_onnx,
    require_onnx_packages,
)

ENGINES = ("auto", "torch", "onnxruntime")
ENGINE_HELP = "Network engine: auto (onnxruntime on the CPU when gtacli[onnx] is installed, else torch), torch, onnxruntime."
CACHE_FOLDER = "onnx"
InfoFn = Callable[[str], None]


def onnxruntime_available() -> bool:
    """Both packages the ONNX engine needs (onnx writes the export, onnxruntime runs it) are importable."""
    return all(module_installed(name) for name in ("onnx", "onnxruntime"))


def is_onnx_file(path: PathLike) -> bool:
    return Path(path).suffix.lower() == ".onnx"


def resolve_engine(
    engine: str, device: torch.device, checkpoint: Optional[PathLike] = None, amp: bool = False
) -> str:
    """'torch' or 'onnxruntime' for `--engine` on `device`; impossible combinations are a UsageError (exit 2)."""
    name = (engine or "auto").strip().lower()
    if name not in ENGINES:
        raise UsageError(f"--engine {engine!r} is not an engine", fix=f"use one of {', '.join(ENGINES)}")
    onnx_given = checkpoint is not None and is_onnx_file(checkpoint)
    if name == "torch" and onnx_given:
        raise UsageError(
            f"{checkpoint} is an ONNX model, which only onnxruntime runs",
            fix="use --engine onnxruntime (or auto), or pass the .pth checkpoint",
        )
    if amp and (name == "onnxruntime" or onnx_given):
        raise UsageError(
            "--amp runs the torch engine (the onnxruntime engine runs the float32 export)",
            fix="drop --amp, or use --engine torch (or auto) with the .pth checkpoint",
        )
    if name == "auto":
        if (device.type != "cpu" or amp) and not onnx_given:
            return "torch"
        name = "onnxruntime" if (onnx_given or onnxruntime_available()) else "torch"
    if name == "onnxruntime":
        if device.type != "cpu":
            raise UsageError(
                f"--engine onnxruntime runs on the CPU only (onnxruntime-gpu is not a gtacli dependency), not {device}",
                fix="add --device cpu, or use --engine torch on CUDA",
            )
        require_onnx_packages()
    return name


class InferenceEngine:
    """`engine(img (B,3,224,224) float32) -> {'pred_pose', 'pred_shape', 'pred_cam'}` float32 torch tensors
    (under `--amp` too)."""

    name: str
    device: torch.device
    memory_format: torch.memory_format  # the layout batches should arrive in (no conversion on the way)
    checkpoint_format: str = ""  # what the weights came from: mmhuman3d, spin, gtacli, ... (for the output)
    report: Optional[LoadReport] = (
        None  # the torch engine's load report (the ONNX file was checked at export)
    )
    info: EngineInfo

    def __call__(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        raise NotImplementedError


@dataclass
class EngineInfo:
    """What ran, for the output and `--json`."""

    name: str
    detail: str  # e.g. "onnxruntime 1.32.0 (CPU provider, 2 threads)"
    layout: str
    batchnorm_folded: bool
    threads: int
    onnx_model: Optional[str] = None
    onnx_source: Optional[str] = None  # 'given', 'cache' (reused) or 'exported' (built on this run)
    verification: Dict[str, Any] = field(default_factory=dict)
    precision: str = "float32"  # or the autocast dtype under --amp: 'bfloat16' (CPU), 'float16' (CUDA)

    def to_json(self) -> Dict[str, Any]:
        doc: Dict[str, Any] = {
            "name": self.name,
            "detail": self.detail,
            "threads": self.threads,
            "precision": self.precision,
        }
        if self.onnx_model is not None:
            doc.update({"onnx_model": self.onnx_model, "onnx_source": self.onnx_source})
            if self.verification:
                doc["verification"] = self.verification
        return doc


def amp_dtype(device: torch.device) -> torch.dtype:
    """What `--amp` computes in on `device`: float16 on CUDA; bfloat16 on the CPU (float16 has no fast CPU path)."""
    return torch.float16 if device.type == "cuda" else torch.bfloat16


def amp_precision(device: torch.device) -> str:
    """`amp_dtype`'s name, as the output says it: 'float16' or 'bfloat16'."""
    return str(amp_dtype(device)).removeprefix("torch.")


def cpu_has_bfloat16_units() -> Optional[bool]:
    """Whether this CPU computes bfloat16 natively (Intel AMX tiles or AVX512-BF16); None when torch cannot
    tell. Without them oneDNN emulates bfloat16 and `--amp` on the CPU is slower than float32."""
    probes = [
        getattr(torch.cpu, name, None) for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    ]
    probes = [probe for probe in probes if probe is not None]  # private helpers: absent from some releases
    if not probes:
        return None
    try:
        return any(bool(probe()) for probe in probes)
    except RuntimeError:
        return None


class TorchEngine(InferenceEngine):
    name = "torch"

    def __init__(
        self,
        model: nn.Module,
        device: Optional[torch.device] = None,
        report: Optional[LoadReport] = None,
        amp: bool = False,
    ):
        self.model = model
        self.report = report
        self.checkpoint_format = report.source_format if report is not None else ""
        self.device = device if device is not None else next(model.parameters()).device
        self.memory_format = model_memory_format(model)
        self.amp = amp
        threads = torch.get_num_threads()
        precision = amp_precision(self.device) if amp else "float32"
        autocast = f"; --amp: {precision} autocast" if amp else ""
        self.info = EngineInfo(
            "torch",
            f"torch {torch.__version__.split('+')[0]} ({self.device}, {threads} threads{autocast})",
            layout_name(self.memory_format),
            is_batchnorm_folded(model),
            threads,
            precision=precision,
        )

    def __call__(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        with torch.inference_mode():
            img = img.to(self.device, non_blocking=True)
            if not self.amp:
                return self.model(img)
            with torch.autocast(self.device.type, dtype=amp_dtype(self.device)):
                out = self.model(img)
            # callers get float32 whatever ran: the SMPL layer and the metrics stay in full precision
            return {key: value.float() for key, value in out.items()}


class OnnxRuntimeEngine(InferenceEngine):
    name = "onnxruntime"
    device = torch.device("cpu")
    memory_format = NCHW

    def __init__(
        self, path: Path, threads: int, source: str, opened: Optional[Tuple[Any, Dict[str, str]]] = None
    ):
        """`opened`: the (session, metadata) of `path` when the caller has opened it already (loading the
        graph takes a good part of a second, so it is done once)."""
        import onnxruntime  # optional: resolve_engine has checked that it is installed

        self.path = Path(path)
        self.session, self.metadata = opened or open_estimator_onnx(self.path, threads=threads)
        self.outputs = list(OUTPUT_NAMES)
        exported_from = self.metadata.get(META_CHECKPOINT_FORMAT) or "checkpoint"
        self.checkpoint_format = f"onnx export of a {exported_from}" if source == "given" else exported_from
        verification = json.loads(self.metadata.get(META_VERIFIED) or "{}")  # the export's self-check
        self.info = EngineInfo(
            "onnxruntime",
            f"onnxruntime {onnxruntime.__version__} (CPU provider, {threads} threads)",
            "NCHW",
            True,  # the exporter folds every BatchNorm into its convolution
            threads,
            onnx_model=str(self.path),
            onnx_source=source,
            verification=verification,
        )

    def __call__(self, img: torch.Tensor) -> Dict[str, torch.Tensor]:
        array = np.ascontiguousarray(img.detach().to("cpu", torch.float32).numpy())
        values = self.session.run(self.outputs, {"img": array})
        return {name: torch.from_numpy(value) for name, value in zip(self.outputs, values)}


def cached_onnx_path(layout: DataLayout, checkpoint_sha256: str) -> Path:
    return layout.cache / CACHE_FOLDER / f"{checkpoint_sha256}.onnx"


def load_engine(
    checkpoint: PathLike,
    layout: DataLayout,
    device: torch.device,
    engine: str = "auto",
    *,
    checkpoint_sha256: Optional[str] = None,
    info: Optional[InfoFn] = None,
    amp: bool = False,
) -> InferenceEngine:
    """The engine `engine` resolves to on `device` for `checkpoint` (.pth, or .onnx for onnxruntime).

    `checkpoint_sha256` saves hashing the file again when the caller has it. `info` hears about an export
    and about `amp` on a CPU that emulates bfloat16. `amp`: the torch engine under autocast (`amp_dtype`)."""
    name = resolve_engine(engine, device, checkpoint, amp)
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise MissingFileError(
            "checkpoint not found", path=checkpoint, fix="check the path given to --checkpoint"
        )
    threads = configure_threads(None)
    if name == "torch":
        model, report = load_estimator(checkpoint, layout, device, require="model", inference=True)
        if amp and device.type == "cpu" and cpu_has_bfloat16_units() is False and info is not None:
            info(
                "--amp: this CPU has no bfloat16 units (AMX or AVX512-BF16), so bfloat16 is emulated and the "
                "network runs slower than without --amp"
            )
        return TorchEngine(model, device, report, amp=amp)
    if is_onnx_file(checkpoint):
        return OnnxRuntimeEngine(checkpoint, threads, "given")
    path, source, opened = ensure_onnx_export(checkpoint, layout, checkpoint_sha256, info, threads)
    return OnnxRuntimeEngine(path, threads, source, opened)


def ensure_onnx_export(
    checkpoint: Path,
    layout: DataLayout,
    checkpoint_sha256: Optional[str] = None,
    info: Optional[InfoFn] = None,
    threads: Optional[int] = None,
) -> Tuple[Path, str, Tuple[Any, Dict[str, str]]]:
    """(path, 'cache' or 'exported', its opened (session, metadata)) of the checkpoint's ONNX export under
    the data root's cache; exported (and verified) when absent or when the cached file's metadata does not
    match this export."""
    sha = checkpoint_sha256 or sha256_file(checkpoint)
    path = cached_onnx_path(layout, sha)
    expected = expected_metadata(sha, mean_params_file_sha256(layout))
    if path.is_file():
        try:
            opened = open_estimator_onnx(path, threads=threads)
            problem = metadata_problem(opened[1], expected)
        except GtacliError as exc:  # a truncated or foreign file in the cache is rebuilt, never used
            problem = exc.problem
        if problem is None:
            return path, "cache", opened
        if info is not None:
            info(f"rebuilding the cached ONNX model {path} ({problem})")
    elif info is not None:
        info(f"exporting {checkpoint.name} to ONNX once for onnxruntime (cached as {path})")
    # the plain float32 network as it is trained; the exporter folds the BatchNorms itself
    model, report = load_estimator(checkpoint, layout, torch.device("cpu"), memory_format=NCHW, fold=False)
    export_onnx(
        model,
        path,
        checkpoint_sha256=sha,
        checkpoint_name=checkpoint.name,
        mean_file_sha256=expected[META_MEAN_FILE],
        layout=layout,
        checkpoint_format=report.source_format,
    )
    return path, "exported", open_estimator_onnx(path, threads=threads)
