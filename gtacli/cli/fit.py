"""`gtacli fit`: SMPLify static fits for an annotation file (what mmhuman3d users asked for in #106 / #112)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, Optional

import typer

from gtacli.cli.common import (
    Annotated,
    DataRootOpt,
    DebugOpt,
    DeviceOpt,
    JsonOpt,
    Output,
    ProgressBar,
    QuietOpt,
)

DEFAULT_BATCH_SIZE = 32


def fit_command(
    dataset: Annotated[
        str, typer.Option("--dataset", help="Dataset name (lsp, coco, mpii, ... or your own NAME).")
    ],
    data_root: DataRootOpt,
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
            "--iterations", min=1, help="Adam iterations per stage (default 50, docs/reproduction.md §7.4)."
        ),
    ] = None,
    device: DeviceOpt = "auto",
    output: Annotated[
        Optional[Path], typer.Option("--output", help="Write here instead of static_fits/NAME_fits.npy.")
    ] = None,
    limit: Annotated[
        Optional[int], typer.Option("--limit", min=1, help="Fit only the first N samples.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing fits file.")] = False,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> None:
    """Fit SMPL to the 2D keypoints of an annotation file and write static fits: N rows of pose72 + betas10.

    Reads preprocessed_datasets/<annotation of NAME> (HumanData with 2D keypoints), crops each sample's
    keypoints to the 224x224 box crop, runs the registrant's SMPLify (GMoF keypoint term, GMM / joint / shape
    priors, f = 5000, Adam lr 1e-2 in two stages, batched, CUDA when present) and writes
    static_fits/NAME_fits.npy as float64, in the original image frame, atomically. The summary gives the mean
    final loss and the fraction of fits training accepts (keypoint loss < 10, docs/reproduction.md §7.1).

    --init mean starts from smpl_mean_params.npz; --init PATH (or --checkpoint PATH) from that network's
    predictions on the image crops (needs the images). With --limit and no --output the file is written as
    NAME_fits.limitN.npy so a partial file never takes the place of the full one.

    Examples:

      gtacli fit --dataset lsp

      gtacli fit --dataset coco --init data/pretrained_models/spin_official.pth --device cuda --batch-size 256

      gtacli fit --dataset mpii --limit 64 --iterations 20 --json

      gtacli fit --dataset my_dataset --output /tmp/my_dataset_fits.npy --force
    """
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)

    def body() -> int:
        import numpy as np

        from gtacli.errors import BadFileError, GtacliError, MissingFileError, UsageError
        from gtacli.fit.fits_store import save_fits_file
        from gtacli.fit.smplify import SMPLIFY_ITERS_PER_STAGE, SMPLify, SMPLifyConfig, fit_dataset
        from gtacli.layout import DataLayout

        started = time.perf_counter()
        layout = DataLayout(data_root)
        ckpt = _resolve_init(init, checkpoint, UsageError)
        annotation = _annotation_path(layout, dataset)
        if not annotation.is_file():
            raise MissingFileError(
                f"annotation for '{dataset}' not found",
                path=annotation,
                fix="run `gtacli check-layout` to see what is missing, or `gtacli fetch` it",
            )
        target = _output_path(layout, dataset, output, limit)
        if target.exists() and not force:
            raise GtacliError(
                "fits file already exists",
                path=target,
                fix="pass --force to replace it, or --output PATH to write elsewhere",
            )
        _check_writable(target, GtacliError)

        hd, index = _open_annotation(annotation, limit, BadFileError)
        kp_image = hd.keypoints2d_smpl49(index)
        if not (kp_image[..., 2] > 0).any():
            raise BadFileError(
                "the annotation's 2D keypoints all have confidence 0: nothing to fit",
                path=annotation,
                fix="fit a dataset whose annotation carries 2D keypoints",
            )
        boxes = hd.bbox_xywh(index)
        kp_crop, centers, scales = _crop_keypoints(kp_image, boxes)
        num = kp_crop.shape[0]

        dev = _device(device, UsageError)
        out.info(f"fitting {num} samples of {dataset} on {dev} ({annotation.name})")
        from gtacli.body.smpl import BodyModel

        body_model = BodyModel.from_layout(layout, "neutral", h36m=False, device=dev)
        config = SMPLifyConfig(num_iters=iterations or SMPLIFY_ITERS_PER_STAGE)
        smplify = SMPLify(body_model, layout.gmm_prior, config)

        if ckpt is None:
            init_params = _mean_init(layout, num)
        else:
            image_paths = [layout.image(dataset, p) for p in hd.image_paths(index)]
            init_params = _checkpoint_init(layout, ckpt, image_paths, centers, scales, dev, batch_size, out)

        with ProgressBar(out, "fit", rate_unit="samples") as progress:
            result = fit_dataset(
                smplify,
                kp_crop,
                init_params["pose"],
                init_params["betas"],
                init_params["cam"],
                batch_size=batch_size,
                progress=progress,
            )
        save_fits_file(target, result.fits)
        seconds = time.perf_counter() - started
        payload: Dict[str, Any] = {
            "dataset": dataset,
            "annotation": str(annotation),
            "output": str(target),
            "samples": num,
            "init": "mean" if ckpt is None else str(ckpt),
            "device": str(dev),
            "iterations_per_stage": config.num_iters,
            "mean_final_loss": float(np.mean(result.loss)) if num else None,
            "mean_keypoint_loss": float(np.mean(result.joint_loss)) if num else None,
            "valid_fraction": float(np.mean(result.valid)) if num else None,
            "valid_threshold": 10.0,
            "betas_zeroed": int(result.betas_zeroed.sum()),
            "translation_fallback": int(result.translation_fallback.sum()),
            "seconds": round(seconds, 2),
            "synthetic": layout.is_synthetic,
        }
        if layout.is_synthetic:
            out.once("synthetic", "this data tree is SYNTHETIC: the fits are for testing only")

        def human() -> None:
            out.out.print(f"wrote {target} ({num} x 82, float64) in {seconds:.1f} s", markup=False)
            out.out.print(
                f"mean final loss {payload['mean_final_loss']:.4g}; valid fits (keypoint loss < 10): "
                f"{100 * payload['valid_fraction']:.1f}%; rows with |beta| > 3: {payload['betas_zeroed']}",
                markup=False,
            )

        out.result(payload, human=human)
        return 0

    return body()


def _resolve_init(init: str, checkpoint: Optional[Path], usage_error: Any) -> Optional[Path]:
    """None for mean parameters, else the checkpoint path."""
    if init == "mean":
        return checkpoint
    path = Path(init)
    if checkpoint is not None and path != checkpoint:
        raise usage_error(f"--init {init} and --checkpoint {checkpoint} disagree", fix="give one of them")
    return path


def _annotation_path(layout: Any, dataset: str) -> Path:
    from gtacli.layout import TEST_DATASETS, TRAIN_DATASETS

    if dataset in TRAIN_DATASETS or dataset in TEST_DATASETS:
        return layout.annotation(dataset)
    return layout.preprocessed / f"{dataset}.npz"  # a user's own dataset (mmhuman3d #106)


def _output_path(layout: Any, dataset: str, output: Optional[Path], limit: Optional[int]) -> Path:
    from gtacli.fit.fits_store import fits_file_name

    if output is not None:
        return Path(output)
    name = fits_file_name(dataset)
    if limit is not None:
        name = name.replace(".npy", f".limit{limit}.npy")
    return layout.static_fits_dir / name


def _check_writable(target: Path, error: Any) -> None:
    """Fail before fitting, not after: the folder must exist (or be creatable) and be writable."""
    folder = target.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise error(
            f"cannot create the output folder ({exc.strerror})", path=folder, fix="choose --output elsewhere"
        ) from exc
    if not os.access(folder, os.W_OK) or target.is_dir():
        raise error("cannot write the output here", path=target, fix="choose a writable --output path")


def _open_annotation(path: Path, limit: Optional[int], bad_file: Any) -> Any:
    import numpy as np

    from gtacli.data.human_data import HumanData

    hd = HumanData.load(path)
    if "keypoints2d" not in hd:
        raise bad_file(
            "the annotation has no 2D keypoints (keypoints2d): SMPLify fits to them",
            path=path,
            fix="fit a dataset whose annotation carries keypoints2d",
        )
    if "bbox_xywh" not in hd:
        raise bad_file("the annotation has no bbox_xywh: the crop needs it", path=path)
    num = len(hd) if limit is None else min(limit, len(hd))
    return hd, np.arange(num)


def _crop_keypoints(kp_image: Any, boxes: Any) -> Any:
    """Image-pixel keypoints (N,49,3) -> 224-crop pixels with each box's crop affine (docs/reproduction.md §2.2, §6.6 step 5,
    rotation 0); confidence kept, keypoints with conf 0 untouched (as the pipeline does)."""
    import numpy as np

    from gtacli.data.crop import IMG_RES, affine_transform, bbox_to_center_scale, transform_points

    kp = np.array(kp_image, dtype=np.float64, copy=True)
    centers = np.zeros((kp.shape[0], 2))
    scales = np.zeros(kp.shape[0])
    for i, box in enumerate(np.asarray(boxes)):
        center, side = bbox_to_center_scale(box)
        centers[i], scales[i] = center, side
        matrix = affine_transform(center, float(side), 0.0, IMG_RES)
        visible = kp[i, :, 2] > 0
        kp[i, visible, :2] = transform_points(kp[i, visible, :2], matrix)
    return kp, centers, scales


def _device(device: str, usage_error: Any) -> Any:
    import torch

    from gtacli.fit.smplify import resolve_device

    try:
        dev = resolve_device(device)
    except RuntimeError as exc:
        raise usage_error(
            f"--device {device!r} is not a device torch knows", fix="use auto, cpu, cuda or cuda:N"
        ) from exc
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise usage_error(f"--device {device} asked for CUDA but none is available", fix="use --device cpu")
    return dev


def _mean_init(layout: Any, num: int) -> Dict[str, Any]:
    import torch

    from gtacli.fit.smplify import mean_init
    from gtacli.model.estimator import load_mean_params

    params = mean_init(load_mean_params(layout.smpl_mean_params), num, dtype=torch.float64)
    return {k: v.numpy() for k, v in params.items()}


def _checkpoint_init(
    layout: Any,
    ckpt: Path,
    image_paths: Any,
    centers: Any,
    scales: Any,
    dev: Any,
    batch_size: int,
    out: Output,
) -> Dict[str, Any]:
    """The network's predictions on each sample's 224 crop (no flip, no rotation): pose, betas, camera."""
    import cv2
    import numpy as np
    import torch

    from gtacli.data.crop import crop, normalize
    from gtacli.errors import MissingFileError
    from gtacli.fit.smplify import axis_angle_from_rotmat
    from gtacli.model.checkpoint import load_weights
    from gtacli.model.estimator import build_estimator

    model = build_estimator(layout, device=dev)
    report = load_weights(model, ckpt)
    if report.missing:
        out.warn(
            f"{len(report.missing)} model weights were not in {ckpt.name}; they keep their initial values"
        )
    model.eval()
    poses, betas, cams = [], [], []
    for start in range(0, len(image_paths), batch_size):
        imgs = []
        for i in range(start, min(start + batch_size, len(image_paths))):
            path = image_paths[i]
            img = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if img is None:
                raise MissingFileError(
                    "image not found or unreadable (--init CHECKPOINT needs the images)",
                    path=path,
                    fix="extract the dataset's images, or use --init mean",
                )
            patch, _ = crop(img, centers[i], float(scales[i]), 0.0)
            imgs.append(normalize(patch))
        with torch.no_grad():
            pred = model(torch.from_numpy(np.stack(imgs)).to(dev))
        poses.append(axis_angle_from_rotmat(pred["pred_pose"].double()).cpu().numpy())
        betas.append(pred["pred_shape"].double().cpu().numpy())
        cams.append(pred["pred_cam"].double().cpu().numpy())
    return {"pose": np.concatenate(poses), "betas": np.concatenate(betas), "cam": np.concatenate(cams)}
