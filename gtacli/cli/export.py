"""`gtacli export`: the estimator of a checkpoint as an ONNX (or TorchScript) file, verified before it is written."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, Optional

import typer

from gtacli.cli.common import Annotated, DataRootOpt, DebugOpt, JsonOpt, Output, QuietOpt

FORMATS = ("onnx", "torchscript")


def export_command(
    checkpoint: Annotated[
        Path,
        typer.Argument(
            metavar="CHECKPOINT",
            help="Checkpoint to export: mmhuman3d .pth, SPIN {'model'} file or a gtacli checkpoint.",
        ),
    ],
    output: Annotated[Path, typer.Option("--output", "-o", help="File to write (e.g. model.onnx).")],
    data_root: DataRootOpt,
    export_format: Annotated[
        str, typer.Option("--format", help="onnx (runs in onnxruntime; needs gtacli[onnx]) or torchscript.")
    ] = "onnx",
    tolerance: Annotated[
        Optional[float],
        typer.Option(
            "--tolerance",
            help="Largest absolute difference from the torch model accepted by the self-check (default 1e-3).",
        ),
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing output file.")] = False,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Export the estimator (crops in; rotation matrices, betas and camera out; dynamic batch axis).

    The file carries its provenance: the source checkpoint's sha256, the mean parameters, the input normalisation, the opset and the gtacli version (ONNX metadata_props; a gtacli.json record in a TorchScript archive). Before it is moved into place it is run (onnxruntime, or torch.jit.load) on a few crops of the data root's 3DPW test images (synthetic images when there are none) and compared with the torch model; the largest difference is printed. When it exceeds the tolerance nothing is written. The mean parameters come from the checkpoint, else from <data-root>/body_models/smpl_mean_params.npz.

    Examples:

          gtacli export data/models/resnet50_spin_gta_ft-2538df81_20220708.pth --output hmr.onnx

          gtacli export model.pth --output model.onnx

          gtacli export model.pth --format torchscript --output model.pt --json

          gtacli eval --checkpoint model.onnx     # an exported file runs directly in onnxruntime
    """
    import time

    from gtacli.errors import MissingFileError, UsageError
    from gtacli.io.hashing import sha256_file
    from gtacli.layout import DataLayout
    from gtacli.model.loading import load_estimator
    from gtacli.model.memory_format import NCHW
    from gtacli.model.onnx_export import (
        VERIFY_TOLERANCE,
        export_onnx,
        export_torchscript,
        mean_params_file_sha256,
        require_onnx_packages,
    )

    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    fmt = export_format.strip().lower()
    if fmt not in FORMATS:
        raise UsageError(
            f"--format {export_format!r} is not a format", fix=f"use one of {', '.join(FORMATS)}"
        )
    tol = VERIFY_TOLERANCE if tolerance is None else float(tolerance)
    if not tol >= 0:
        raise UsageError(f"--tolerance {tolerance} must be 0 or more")
    if not checkpoint.is_file():
        raise MissingFileError("checkpoint not found", path=checkpoint, fix="check the CHECKPOINT argument")
    if checkpoint.suffix.lower() == ".onnx":
        raise UsageError(
            f"{checkpoint} is already an ONNX model", fix="pass the .pth checkpoint it came from"
        )
    if output.is_dir():
        raise UsageError(f"--output {output} is a folder", fix="give a file name, e.g. model.onnx")
    if output.exists() and not force:
        raise UsageError(f"--output {output} exists", fix="choose another name, or add --force to replace it")
    if output.exists() and output.resolve() == checkpoint.resolve():
        raise UsageError(f"--output {output} is the checkpoint itself; it is never overwritten")
    if fmt == "onnx":
        require_onnx_packages()  # exit 2 with the install command, before any work
    started = time.perf_counter()
    layout = DataLayout(data_root)
    out.info(f"export {checkpoint} -> {output} ({fmt})")
    model, report = load_estimator(checkpoint, layout, "cpu", memory_format=NCHW, fold=False)
    sha = sha256_file(checkpoint)
    if fmt == "onnx":
        result = export_onnx(
            model,
            output,
            checkpoint_sha256=sha,
            checkpoint_name=checkpoint.name,
            mean_file_sha256=mean_params_file_sha256(layout),
            layout=layout,
            checkpoint_format=report.source_format,
            tolerance=tol,
        )
    else:
        result = export_torchscript(
            model,
            output,
            checkpoint_sha256=sha,
            checkpoint_name=checkpoint.name,
            layout=layout,
            tolerance=tol,
        )
    doc: Dict[str, Any] = {
        "output": str(result.path),
        "format": fmt,
        "bytes": result.bytes,
        "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha,
        "checkpoint_format": report.source_format,
        "opset": result.opset if fmt == "onnx" else None,
        "dynamic_batch": True,
        "verification": result.verification.to_json(),
        "seconds": round(time.perf_counter() - started, 3),
    }
    out.result(doc, human=lambda: _print_human(out, doc))
    return 0


def _print_human(out: Output, doc: Dict[str, Any]) -> None:
    check = doc["verification"]
    runner = "onnxruntime" if doc["format"] == "onnx" else "torch.jit.load"
    lines = [
        ("wrote", f"{doc['output']} ({doc['format']}, {doc['bytes'] / 1e6:.1f} MB, dynamic batch axis)"),
        (
            "checkpoint",
            f"{doc['checkpoint']} ({doc['checkpoint_format']}, sha256 {doc['checkpoint_sha256'][:12]}…)",
        ),
        (
            "verified",
            f"{runner} vs torch on {check['source']}: largest difference {check['max_abs_diff']:.2g} "
            f"(tolerance {check['tolerance']:g})",
        ),
    ]
    if doc["opset"] is not None:
        lines.append(("opset", str(doc["opset"])))
    width = max(len(label) for label, _ in lines) + 2
    for label, value in lines:
        out.out.print(f"{label:<{width}}{value}", markup=False)
