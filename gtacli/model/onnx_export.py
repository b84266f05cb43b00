"""The estimator as an ONNX file: export, self-verification, provenance metadata, and checking a given file.

The exported graph takes normalised crops `img` (batch, 3, 224, 224) float32 NCHW RGB (`gtacli.data.crop.normalize`)
and returns `pred_pose` (batch, 24, 3, 3), `pred_shape` (batch, 10), `pred_cam` (batch, 3); the batch axis is
dynamic. Its `metadata_props` say where it came from (`gtacli.*` keys: format revision, gtacli version, source
checkpoint sha256, mean parameters, input normalisation, opset, verification), so a file from another export
revision, checkpoint or mean-parameter file is recognised and rebuilt rather than used (`metadata_problem`).

Exporter: torch >= 2.9 defaults to the torch.export-based exporter, which needs the `onnxscript` package; the
TorchScript-based one (`dynamo=False`) needs only `onnx` and handles the dynamic batch axis through
`dynamic_axes`, so it is used. It constant-folds each Conv+BatchNorm pair into the module's own tensors in place
(the module afterwards applies its BatchNorm twice), so the export always runs on a deep copy.

Before a file is moved into place it is run by onnxruntime on a few crops and compared with the torch model
(`verify`); a difference above the tolerance leaves nothing written and names the largest difference.
"""

from __future__ import annotations

import copy
import importlib.util
import io
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

import gtacli
from gtacli.data.crop import IMG_RES, NORM_MEAN_RGB, NORM_STD_RGB, bbox_to_center_scale, crop, normalize
from gtacli.errors import BadFileError, GtacliError, MissingFileError, PathLike, UsageError
from gtacli.io.atomic import atomic_path
from gtacli.layout import DataLayout

EXPORT_FORMAT = "gtacli-hmr-estimator/1"  # bump when the graph's inputs, outputs or semantics change
OPSET = 17
INPUT_NAME = "img"
OUTPUT_NAMES = ("pred_pose", "pred_shape", "pred_cam")
# (name, shape after the batch axis) of the estimator's one input and three outputs
INPUT_SHAPE = (3, IMG_RES, IMG_RES)
OUTPUT_SHAPES = {"pred_pose": (24, 3, 3), "pred_shape": (10,), "pred_cam": (3,)}
# Largest absolute difference between onnxruntime and torch outputs accepted by the export's self-check. Both
# compute in float32 with different kernels; on trained and on random weights the outputs agree to ~1e-5.
VERIFY_TOLERANCE = 1e-3
VERIFY_CROPS = 4
ONNX_FIX = (
    "export it again with `gtacli export CHECKPOINT --format onnx --output FILE`, or pass the .pth checkpoint"
)
INSTALL_FIX = "pip install 'gtacli[onnx]' (installs onnx and onnxruntime)"

META_FORMAT = "gtacli.format"
META_VERSION = "gtacli.version"
META_CHECKPOINT = "gtacli.checkpoint_sha256"
META_CHECKPOINT_NAME = "gtacli.checkpoint_name"
META_CHECKPOINT_FORMAT = "gtacli.checkpoint_format"
META_MEAN_FILE = "gtacli.mean_params_file_sha256"
META_MEAN_PARAMS = "gtacli.mean_params"
META_INPUT = "gtacli.input"
META_OPSET = "gtacli.opset"
META_VERIFIED = "gtacli.verified"


def require_onnx_packages() -> Any:
    """The onnxruntime module, once both packages the ONNX engine needs are known to be installed, or a
    UsageError (exit 2) naming the install command. `onnx` (only needed to write an export) is located, not
    imported: importing it costs most of a second, which a run from the cache never needs."""
    missing = [name for name in ("onnx", "onnxruntime") if not module_installed(name)]
    if missing:
        raise UsageError(f"the ONNX engine needs the {' and '.join(missing)} package", fix=INSTALL_FIX)
    try:
        import onnxruntime
    except ImportError:
        raise UsageError("the ONNX engine needs the onnxruntime package", fix=INSTALL_FIX) from None
    return onnxruntime


def module_installed(name: str) -> bool:
    """`name` can be imported (located without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):  # a module set to None in sys.modules, or a broken install
        return False


def _onnx_module() -> Any:
    require_onnx_packages()
    try:
        import onnx
    except ImportError:
        raise UsageError("the ONNX export needs the onnx package", fix=INSTALL_FIX) from None
    return onnx


def input_normalisation() -> Dict[str, Any]:
    """What the graph's input holds, for a deployer who feeds it without gtacli."""
    return {
        "name": INPUT_NAME,
        "shape": ["batch", *INPUT_SHAPE],
        "dtype": "float32",
        "layout": "NCHW",
        "colour": "RGB",
        "crop": f"square crop of side max(w, h) of the person's box, resized to {IMG_RES}x{IMG_RES}",
        "formula": "(pixel - mean) / std, pixel in 0..255",
        "mean": list(NORM_MEAN_RGB),
        "std": list(NORM_STD_RGB),
    }


@dataclass
class Verification:
    max_abs_diff: float
    tolerance: float
    crops: int
    source: str  # where the crops came from

    def require(self, output: Path, runtime: str, fix: str) -> None:
        """Refuse the export (nothing is written) when `runtime`'s outputs differ from torch's beyond tolerance."""
        if not self.max_abs_diff <= self.tolerance:  # NaN fails too
            raise GtacliError(
                f"export verification failed: {runtime} and torch outputs differ by up to {self.max_abs_diff:.3g} "
                f"(tolerance {self.tolerance:g}) on {self.source}; nothing was written",
                path=output,
                fix=fix,
            )

    def to_json(self) -> Dict[str, Any]:
        return {
            "max_abs_diff": float(self.max_abs_diff),
            "tolerance": self.tolerance,
            "crops": self.crops,
            "source": self.source,
        }


@dataclass
class ExportResult:
    path: Path
    bytes: int
    checkpoint_sha256: str
    opset: int
    verification: Verification
    seconds: float = 0.0


def expected_metadata(checkpoint_sha256: str, mean_file_sha256: str) -> Dict[str, str]:
    """The metadata entries a current export of this checkpoint with these mean parameters carries."""
    return {
        META_FORMAT: EXPORT_FORMAT,
        META_CHECKPOINT: checkpoint_sha256,
        META_MEAN_FILE: mean_file_sha256,
        META_OPSET: str(OPSET),
        META_INPUT: json.dumps(input_normalisation(), sort_keys=True),
    }


def mean_params_file_sha256(layout: Optional[DataLayout]) -> str:
    """sha256 of the data root's smpl_mean_params.npz ('' when absent): the torch model reads the head's mean
    parameters from it when the checkpoint lacks them, so an export depends on it."""
    from gtacli.io.hashing import sha256_file

    if layout is None or not layout.smpl_mean_params.is_file():
        return ""
    return sha256_file(layout.smpl_mean_params)


class _Outputs(nn.Module):
    """The estimator with a tuple output (ONNX outputs are positional)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, img: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.model(img)
        return out["pred_pose"], out["pred_shape"], out["pred_cam"]


def onnx_bytes(model: nn.Module, opset: int = OPSET) -> bytes:
    """The estimator's ONNX graph (dynamic batch axis), exported from a deep copy of `model` on the CPU."""
    reference = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    example = torch.zeros(2, *INPUT_SHAPE)
    buffer = io.BytesIO()
    dynamic = {name: {0: "batch"} for name in (INPUT_NAME, *OUTPUT_NAMES)}
    with warnings.catch_warnings():
        # the legacy exporter announces its deprecation, and the tracer notes the 6D head's shape checks
        # (shapes are fixed by the head, so the traced constants are right)
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Outputs(reference),
            (example,),
            buffer,
            dynamo=False,
            opset_version=opset,
            input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES),
            dynamic_axes=dynamic,
            do_constant_folding=True,
        )
    return buffer.getvalue()


def with_metadata(graph: bytes, metadata: Mapping[str, str]) -> bytes:
    """The serialised model with `metadata` added to its metadata_props (and gtacli as producer)."""
    onnx = _onnx_module()
    proto = onnx.load_from_string(graph)
    for key, value in metadata.items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    proto.producer_name = "gtacli"
    proto.producer_version = gtacli.__version__
    proto.doc_string = (
        "ResNet-50 + HMR estimator (GTA-Human SPIN): crops -> SMPL rotation matrices, betas, camera"
    )
    return proto.SerializeToString()


def session(source: Any, threads: Optional[int] = None, path: Optional[PathLike] = None, fix: str = ONNX_FIX):
    """An onnxruntime CPU session on a file path or model bytes; a file it cannot read is a BadFileError."""
    ort = require_onnx_packages()
    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = int(threads)
    options.inter_op_num_threads = 1
    # idle intra-op threads sleep instead of spinning: the torch and OpenCV work that follows each run in the
    # same process (SMPL, scoring, detection) otherwise shares its cores with busy-waiting threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3  # errors only: warnings about unused initialisers are noise here
    try:
        return ort.InferenceSession(
            source if isinstance(source, bytes) else str(source),
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph types
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BadFileError(
            f"not a readable ONNX model (truncated or corrupt?): {first[:160]}",
            path=path if path is not None else (None if isinstance(source, bytes) else source),
            fix=fix,
        ) from None


def verification_crops(layout: Optional[DataLayout], count: int = VERIFY_CROPS) -> Tuple[np.ndarray, str]:
    """(count, 3, 224, 224) normalised crops and where they came from: the first people of the data root's
    3DPW test annotation when its images are there (the sample tree has them), else smooth random images."""
    if layout is not None:
        crops = _annotation_crops(layout, count)
        if crops is not None:
            return crops, f"{crops.shape[0]} crops of {layout.annotation('pw3d').name}"
    rng = np.random.default_rng(0)
    small = rng.integers(0, 256, size=(count, 14, 14, 3), dtype=np.uint8)
    import cv2

    images = [cv2.resize(im, (IMG_RES, IMG_RES), interpolation=cv2.INTER_CUBIC) for im in small]
    return np.stack(
        [normalize(im) for im in images]
    ), f"{count} synthetic images (no 3DPW images in the data root)"


def _annotation_crops(layout: DataLayout, count: int) -> Optional[np.ndarray]:
    from gtacli.data.eval_dataset import read_image_bgr
    from gtacli.data.human_data import HumanData

    path = layout.annotation("pw3d")
    if not path.is_file():
        return None
    try:
        human_data = HumanData.load(path)
        rows = np.arange(min(count, len(human_data)))
        boxes = np.asarray(human_data.bbox_xywh(rows))
        crops = []
        for rel, box in zip(human_data.image_paths(rows), boxes):
            center, scale = bbox_to_center_scale(box)
            crops.append(normalize(crop(read_image_bgr(layout.image("pw3d", rel)), center, scale, 0.0)[0]))
    except GtacliError:
        return (
            None  # an unusable annotation only means no real crops: the synthetic ones still check the file
        )
    return np.stack(crops) if crops else None


def compare(model: nn.Module, sess: Any, crops: np.ndarray) -> float:
    """Largest absolute difference between the torch model and the onnxruntime session on `crops`."""
    with torch.inference_mode():
        reference = model(torch.from_numpy(crops).contiguous(memory_format=_memory_format(model)))
    outputs = sess.run(list(OUTPUT_NAMES), {INPUT_NAME: np.ascontiguousarray(crops, np.float32)})
    worst = 0.0
    for name, value in zip(OUTPUT_NAMES, outputs):
        diff = np.abs(value.astype(np.float64) - reference[name].double().numpy())
        worst = max(worst, float(np.nanmax(diff)) if diff.size else 0.0)
        if not np.all(np.isfinite(value)):
            return float("inf")
    return worst


def _memory_format(model: nn.Module) -> torch.memory_format:
    from gtacli.model.memory_format import model_memory_format

    return model_memory_format(model)


def export_onnx(
    model: nn.Module,
    output: PathLike,
    *,
    checkpoint_sha256: str,
    checkpoint_name: str,
    mean_file_sha256: str,
    layout: Optional[DataLayout],
    checkpoint_format: str = "",
    tolerance: float = VERIFY_TOLERANCE,
    opset: int = OPSET,
) -> ExportResult:
    """Export `model` (an estimator on the CPU, eval mode) to `output`, verified before it is moved into place.

    The file is written to a temporary name, run by onnxruntime on `verification_crops(layout)` and compared
    with `model`; above `tolerance` nothing is written and the error names the largest difference."""
    require_onnx_packages()
    if opset != OPSET:
        raise UsageError(f"opset {opset} is not supported; gtacli exports opset {OPSET}")
    output = Path(output)
    head = model.head
    mean_params = {
        key: getattr(head, f"init_{key}").detach().reshape(-1).double().tolist()
        for key in ("pose", "shape", "cam")
    }
    crops, source = verification_crops(layout)
    graph = onnx_bytes(model, opset)
    sess = session(graph)
    worst = compare(model, sess, crops)
    verification = Verification(worst, tolerance, len(crops), source)
    verification.require(
        output,
        "onnxruntime",
        "run the torch engine (--engine torch), and report this with the --debug output",
    )
    metadata = expected_metadata(checkpoint_sha256, mean_file_sha256)
    metadata.update(
        {
            META_VERSION: gtacli.__version__,
            META_CHECKPOINT_NAME: checkpoint_name,
            META_CHECKPOINT_FORMAT: checkpoint_format,
            META_MEAN_PARAMS: json.dumps(mean_params),
            META_VERIFIED: json.dumps(verification.to_json(), sort_keys=True),
        }
    )
    data = with_metadata(graph, metadata)
    with atomic_path(output, expected_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    return ExportResult(output, len(data), checkpoint_sha256, opset, verification)


# --- a given .onnx file -----------------------------------------------------------------------------------


def interface_problems(sess: Any) -> List[str]:
    """What differs between the session's inputs/outputs and the estimator's (empty when it matches)."""
    problems = []
    inputs = sess.get_inputs()
    want_in = f"{INPUT_NAME} (batch, {', '.join(map(str, INPUT_SHAPE))}) float"
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        problems.append(f"{len(inputs)} inputs ({names}), expected one: {want_in}")
    elif (
        inputs[0].name != INPUT_NAME
        or tuple(inputs[0].shape[1:]) != INPUT_SHAPE
        or "float" not in inputs[0].type
    ):
        problems.append(
            f"input {inputs[0].name} {_shape(inputs[0].shape)} {inputs[0].type}, expected {want_in}"
        )
    outputs = {o.name: o for o in sess.get_outputs()}
    if any(name not in outputs for name in OUTPUT_SHAPES):
        problems.append(f"outputs {', '.join(outputs) or 'none'}, expected {', '.join(OUTPUT_SHAPES)}")
    for name, shape in OUTPUT_SHAPES.items():
        found = outputs.get(name)
        if found is not None and tuple(found.shape[1:]) != shape:
            problems.append(
                f"output {name} {_shape(found.shape)}, expected (batch, {', '.join(map(str, shape))})"
            )
    return problems


def _shape(shape: Sequence[Any]) -> str:
    return "(" + ", ".join(str(d) for d in shape) + ")"


def read_metadata(sess: Any) -> Dict[str, str]:
    return dict(sess.get_modelmeta().custom_metadata_map)


def metadata_problem(metadata: Mapping[str, str], expected: Mapping[str, str]) -> Optional[str]:
    """Why a file's metadata does not match `expected` (None when it does): the first differing entry."""
    for key, value in expected.items():
        found = metadata.get(key)
        if found != value:
            short = key.split(".", 1)[1]
            if found is None:
                return f"no {short} in its metadata"
            return f"its {short} is {found[:24]}, expected {value[:24]}"
    return None


def open_estimator_onnx(path: PathLike, threads: Optional[int] = None) -> Tuple[Any, Dict[str, str]]:
    """(onnxruntime session, metadata) of a gtacli estimator export; anything else is a one-line BadFileError."""
    path = Path(path)
    if not path.is_file():
        raise MissingFileError("ONNX model not found", path=path, fix="check the path given to --checkpoint")
    sess = session(path, threads=threads, path=path)
    problems = interface_problems(sess)
    if problems:
        raise BadFileError(f"not a gtacli estimator export: {'; '.join(problems)}", path=path, fix=ONNX_FIX)
    metadata = read_metadata(sess)
    if metadata.get(META_FORMAT) != EXPORT_FORMAT:
        what = (
            "no gtacli metadata"
            if META_FORMAT not in metadata
            else f"export format {metadata[META_FORMAT]!r}, this gtacli reads {EXPORT_FORMAT!r}"
        )
        raise BadFileError(f"not a gtacli estimator export: {what}", path=path, fix=ONNX_FIX)
    input_meta = metadata.get(META_INPUT)
    if input_meta != json.dumps(input_normalisation(), sort_keys=True):
        raise BadFileError(
            "an estimator export with another input normalisation than this gtacli's", path=path, fix=ONNX_FIX
        )
    return sess, metadata


# --- TorchScript --------------------------------------------------------------------------------------------

TORCHSCRIPT_META = "gtacli.json"  # the provenance record among the archive's extra files


def export_torchscript(
    model: nn.Module,
    output: PathLike,
    *,
    checkpoint_sha256: str,
    checkpoint_name: str,
    layout: Optional[DataLayout],
    tolerance: float = VERIFY_TOLERANCE,
) -> ExportResult:
    """The estimator traced to TorchScript (the same inputs and outputs as the ONNX export, a tuple in
    OUTPUT_NAMES order), reloaded and compared with `model` before it is moved into place."""
    output = Path(output)
    reference = copy.deepcopy(model).to("cpu", memory_format=torch.contiguous_format).eval()
    crops, source = verification_crops(layout)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TorchScript's deprecation notice, the 6D head's traced shape checks
        traced = torch.jit.trace(_Outputs(reference), torch.zeros(2, *INPUT_SHAPE), check_trace=False)
    record = {
        "format": EXPORT_FORMAT,
        "version": gtacli.__version__,
        "checkpoint_sha256": checkpoint_sha256,
        "checkpoint_name": checkpoint_name,
        "input": input_normalisation(),
        "outputs": list(OUTPUT_NAMES),
    }
    buffer = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit.save/load announce torch.export
        torch.jit.save(traced, buffer, _extra_files={TORCHSCRIPT_META: json.dumps(record)})
        data = buffer.getvalue()
        loaded = torch.jit.load(io.BytesIO(data), map_location="cpu")
    with torch.inference_mode():
        expected = model(torch.from_numpy(crops).contiguous(memory_format=_memory_format(model)))
        got = loaded(torch.from_numpy(crops))
    worst = max(float((g.double() - expected[n].double()).abs().max()) for n, g in zip(OUTPUT_NAMES, got))
    verification = Verification(worst, tolerance, len(crops), source)
    verification.require(output, "the TorchScript", "report this with the --debug output")
    with atomic_path(output, expected_bytes=len(data)) as tmp:
        tmp.write_bytes(data)
    return ExportResult(output, len(data), checkpoint_sha256, 0, verification)
