"""`gtacli fit`: SMPLify fits for an annotation's keypoints or for OpenPose keypoints of one's own photos."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from gtacli.cli.common import (
    Annotated,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    EngineOpt,
    JsonOpt,
    Output,
    ProgressBar,
    QuietOpt,
    resolve_file_option,
)

DEFAULT_BATCH_SIZE = 32


def fit_command(
    data_root: DataRootOpt,
    dataset: Annotated[
        Optional[str],
        typer.Option(
            "--dataset", help="Fit an annotation of the data tree: lsp, coco, mpii, ... or your own NAME."
        ),
    ] = None,
    openpose: Annotated[
        Optional[Path],
        typer.Option(
            "--openpose",
            help="Fit OpenPose JSON keypoints (a file or a --write_json folder); needs --images.",
        ),
    ] = None,
    images: Annotated[
        Optional[Path],
        typer.Option(
            "--images",
            help="Folder of the photos the OpenPose files belong to; alone, the people and keypoints are "
            "found by the detector and the keypoint model (`gtacli fetch keypoints`).",
        ),
    ] = None,
    method: Annotated[
        str,
        typer.Option(
            "--method",
            help="gtacli (default: SPIN's objective in one stage, the most accurate measured), spin (SPIN's "
            "SMPLify) or mmhuman3d (mmhuman3d's registrant).",
        ),
    ] = "gtacli",
    init: Annotated[
        str,
        typer.Option(
            "--init", help="Start from 'mean' parameters, or from a checkpoint's predictions (a path)."
        ),
    ] = "mean",
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint", help="Checkpoint whose predictions start the fit (same as --init PATH)."
        ),
    ] = None,
    batch_size: Annotated[
        int, typer.Option("--batch-size", min=1, help="Samples fitted together.")
    ] = DEFAULT_BATCH_SIZE,
    iterations: Annotated[
        Optional[int],
        typer.Option(
            "--iterations",
            min=1,
            help="Adam steps per stage (default: the method's own; gtacli at most 100, spin 100, mmhuman3d 50).",
        ),
    ] = None,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    output: Annotated[
        Optional[Path],
        typer.Option(
            "--output",
            help="--dataset: the fits file (default static_fits/NAME_fits.npy); --openpose: the output folder.",
        ),
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Fit only the first N samples.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace existing fits.")] = False,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Fit SMPL to 2D keypoints: static fits for an annotation, or meshes for your own photos.

    --dataset NAME: crops each sample's keypoints to its 224x224 box crop, fits, and writes static_fits/NAME_fits.npy (N rows of pose72 + betas10, float64, the file training reads) and NAME_fits.report.json (per sample: final loss, reprojection error in px, accepted or not and why). With --limit and no --output the file is NAME_fits.limitN.npy.

    --images DIR --output DIR without --openpose: finds the people of each photo with the demo's detector and their keypoints with the RTMPose model of `gtacli fetch keypoints`, then fits them as OpenPose's.

    --openpose DIR_OR_FILE --images DIR --output DIR: fits every person of OpenPose JSON files (BODY_25 or COCO-18; photo = same name without OpenPose's _keypoints suffix) in SPIN's crop from its keypoints; writes fits.npz, report.json and an overlay NAME_fit.jpg per photo.

    Methods: gtacli (default; SPIN's objective in one stage; the facing direction is searched for mean starts and for starts whose torso has left and right swapped, never for a lower loss alone), spin (SPIN's SMPLify: torso camera stage, then the body, 100 + 100 steps, accepted below 100 px^2 of SPIN's fitting loss), mmhuman3d (its registrant: 50 + 50 steps, accepted below 10). --init mean starts from smpl_mean_params.npz; --init PATH from a network's predictions on the crops, run by --engine (auto: onnxruntime on the CPU when gtacli[onnx] is installed; a .onnx file from `gtacli export` is also accepted). Every sample with a usable keypoint is fitted; NaN keypoints are ignored and samples with fewer than 4 confident torso joints are fitted and flagged (report: notes, row = fit or start). Samples with no usable keypoint (or a missing image for --init PATH) are skipped; each kind is listed once with its count and first sample.

    Examples:

      gtacli fit --dataset lsp --output runs/fits/lsp_fits.npy

      gtacli fit --dataset coco --init data/pretrained_models/spin_official.pth --device cuda --output runs/fits/coco_fits.npy

      gtacli fit --dataset mpii --limit 64 --method spin --json

      gtacli fit --openpose photos/keypoints --images photos --output photos/fits

      gtacli fetch detector keypoints && gtacli fit --images photos --output photos/fits
    """
    from gtacli.device import resolve_device
    from gtacli.errors import UsageError
    from gtacli.fit.runner import FitOptions, fit_annotation, fit_openpose
    from gtacli.layout import DataLayout

    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    photos = dataset is None and openpose is None and images is not None  # the keypoint model finds people
    if (dataset is None) == (openpose is None) and not photos:
        raise UsageError(
            "give exactly one of --dataset NAME, --openpose PATH or --images DIR", fix="see gtacli fit --help"
        )
    if dataset is None and (images is None or output is None):
        raise UsageError(
            "--openpose and --images need --images DIR and --output DIR",
            fix="e.g. --images photos --output photos/fits",
        )
    init_checkpoint = resolve_file_option(
        _init_checkpoint(init, checkpoint), data_root, out, option="--init", what="checkpoint"
    )
    options = FitOptions(
        method=method,
        init_checkpoint=init_checkpoint,
        batch_size=batch_size,
        iterations=iterations,
        device=resolve_device(device),
        engine=engine,
        limit=limit,
    )
    options.config()  # an unknown --method is a usage error before anything is read
    if options.init_checkpoint is not None:  # --engine runs the --init checkpoint's network
        from gtacli.model.engines import resolve_engine

        resolve_engine(engine, options.device, options.init_checkpoint)
    layout = DataLayout(data_root)
    with ProgressBar(out, "fit", rate_unit="samples") as progress:
        if dataset is not None:
            report = fit_annotation(layout, dataset, options, output=output, force=force, progress=progress)
        elif photos:
            report = _fit_photos(layout, images, output, options, force, out, progress)
        else:
            from gtacli.render.overlay import render_overlay

            report = fit_openpose(
                layout,
                openpose,
                images,
                output,
                options,
                overlay=render_overlay,
                force=force,
                progress=progress,
            )
    for problem in report.problems:
        out.warn(problem.line())
    if layout.is_synthetic:
        out.once("synthetic", "this data tree is SYNTHETIC: the fits are for testing only")
    payload = report.to_dict()
    if not json_mode:
        payload.pop("per_sample")

    def human() -> None:
        p = report.payload
        out.out.print(
            f"{p['method']}: fitted {p['fitted']} of {p['samples']} in {p['seconds']:.1f} s on {p['device']}",
            markup=False,
        )
        if p["engine"]:
            out.out.print(f"initial parameters: {p['init']} run by {p['engine']['detail']}", markup=False)
        if p["fitted"]:
            # two different numbers: the acceptance measure (what the threshold applies to) and the total
            # objective the fitter minimised (all terms and priors); named so that nobody compares them
            criterion = p.get("mean_fit_criterion")
            out.out.print(
                f"accepted {p['accepted']}: acceptance measure ({p['acceptance']}) < {p['valid_threshold']:g}"
                + (f", mean {criterion:.4g}" if criterion is not None else ""),
                markup=False,
            )
            out.out.print(
                f"mean total objective {p['mean_final_loss']:.4g} (every loss term and prior; not the acceptance "
                f"measure); mean reprojection error {p['mean_reprojection_px']:.2f} px (224 crop); rows with "
                f"|beta| > 3: {p['betas_zeroed']}",
                markup=False,
            )
        out.out.print(
            "wrote "
            + ", ".join(str(path) for path in report.outputs[:3])
            + (" ..." if len(report.outputs) > 3 else ""),
            markup=False,
        )

    out.result(payload, human=human)
    return 0


def _init_checkpoint(init: str, checkpoint: Optional[Path]) -> Optional[Path]:
    """None for mean parameters, else the checkpoint path."""
    from gtacli.errors import UsageError

    if init == "mean":
        return checkpoint
    path = Path(init)
    if checkpoint is not None and path != checkpoint:
        raise UsageError(f"--init {init} and --checkpoint {checkpoint} disagree", fix="give one of them")
    return path


def _fit_photos(layout, images: Path, output: Path, options, force: bool, out, progress):
    """`fit --images DIR` without --openpose: detector boxes -> keypoint model -> `fit_people`."""
    from gtacli.assets.lockfile import read_lock_file
    from gtacli.assets.manifest import load_manifest
    from gtacli.demo.detect import build_detector
    from gtacli.demo.keypoints import KeypointModel, people_in_images
    from gtacli.fit.runner import IMAGE_SUFFIXES, check_people_output, fit_people
    from gtacli.render.overlay import render_overlay

    check_people_output(images, output, force)
    manifest = load_manifest()
    model_asset, detector_asset = manifest.get("keypoints"), manifest.get("detector")
    recorded = (read_lock_file(layout).get("keypoints") or {}).get("sha256")
    model = KeypointModel(model_asset.path(layout.root), sha256=recorded)
    detector = build_detector("auto", layout.root, detector_asset.path(layout.root), detector_asset.sha256)
    photos = sorted(p for p in images.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    found = people_in_images(photos, detector, model)
    for line in found.notes():
        out.warn(line)
    return fit_people(
        layout,
        found.frames,
        output,
        options,
        overlay=render_overlay,
        source={"images": str(images), **model.describe(), "detector": detector.describe()},
        progress=progress,
        blame=images,
    )
