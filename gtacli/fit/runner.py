"""`gtacli fit` as a pipeline: inputs -> crop keypoints -> initial parameters -> fits -> files -> a report.

Two sources of keypoints:

* `fit_annotation`: a HumanData annotation of the data tree (`--dataset NAME`); writes the static fits file
  training reads (N x 82, float64, row = sample index) and a JSON report beside it.
* `fit_openpose`: OpenPose JSON for a user's own photos (`--openpose DIR_OR_FILE --images DIR`); every person
  gets SPIN's crop from its keypoints (`gtacli.data.openpose.spin_box`) and a fit; writes `fits.npz`,
  `report.json` and one overlay image per input image.

Samples that cannot be fitted are reported once per problem kind (count, first index) and the rest are
fitted; every output is written atomically, after all fitting succeeded.
"""

from __future__ import annotations

import dataclasses
import difflib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import torch

from gtacli.body.camera import crop_to_image_intrinsics
from gtacli.body.rotations import axis_angle_from_rotmat
from gtacli.body.smpl import BodyModel
from gtacli.data.crop import affine_transform, bbox_to_center_scale, transform_points
from gtacli.data.human_data import HumanData
from gtacli.data.openpose import read_openpose, spin_box, to_smpl49
from gtacli.errors import BadFileError, GtacliError, MissingFileError, UsageError
from gtacli.fit.batch import (
    NO_IMAGE,
    DatasetFit,
    Problem,
    fit_dataset,
    group_notes,
    group_problems,
    keypoint_notes,
    mean_init,
    screen_keypoints,
)
from gtacli.fit.config import FIT_METHODS, RegistrationConfig
from gtacli.fit.fits_store import fits_file_name, save_fits_file
from gtacli.fit.methods import build_fitter
from gtacli.io.atomic import (
    NAME_MAX_BYTES,
    atomic_write_json,
    atomic_write_with,
    check_name_lengths,
    ensure_writable_dir,
)
from gtacli.layout import TEST_DATASETS, TRAIN_DATASETS, DataLayout
from gtacli.model.engines import EngineInfo, load_engine
from gtacli.model.estimator import load_mean_params
from gtacli.model.predict import predict_crops
from gtacli.progress import ProgressFn

DEFAULT_METHOD = "gtacli"  # the most accurate measured (benchmarks/bench_fitter.py, docs/reproduction.md §7)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
OPENPOSE_SUFFIXES = ("_keypoints", "_openpose")  # OpenPose's own name; SPIN's examples
NO_BOX = "fewer than 2 keypoints with confidence > 0.2: no crop (SPIN's rule)"
NO_IMAGE_FOR_JSON = "no image with the same name in --images"
BAD_JSON = "not a readable OpenPose file"


@dataclass
class FitOptions:
    """What a fit run was asked for (the CLI's options)."""

    method: str = DEFAULT_METHOD
    init_checkpoint: Optional[Path] = None  # None: smpl_mean_params
    batch_size: int = 32
    iterations: Optional[int] = None  # per stage; None: the method's own number
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    engine: str = "auto"  # what runs the --init checkpoint's network (gtacli.model.engines)
    limit: Optional[int] = None

    def config(self) -> RegistrationConfig:
        if self.method not in FIT_METHODS:
            raise UsageError(
                f"--method {self.method!r} is not a fitting method",
                fix=f"use one of {', '.join(FIT_METHODS)}",
            )
        # a start from the mean parameters says nothing about the facing direction: search it for every
        # sample; a checkpoint's prediction keeps its own unless it swaps the torso's sides (fit/camera_init.py)
        facing = "always" if self.init_checkpoint is None else "auto"
        config = RegistrationConfig(method=self.method, facing_search=facing)
        if self.iterations is not None:
            name = {"mmhuman3d": "num_iters", "spin": "spin_num_iters", "gtacli": "one_stage_iters"}[
                self.method
            ]
            config = dataclasses.replace(config, **{name: self.iterations})
        return config


@dataclass
class FitReport:
    """What a fit run did: the summary (`payload`), one record per sample, the problems, the files written."""

    payload: Dict[str, Any]
    samples: List[Dict[str, Any]]
    problems: List[Problem]
    outputs: List[Path]

    def to_dict(self) -> Dict[str, Any]:
        return {
            **self.payload,
            "problems": [dataclasses.asdict(p) for p in self.problems],
            "outputs": [str(p) for p in self.outputs],
            "per_sample": self.samples,
        }


# --- shared stages ---------------------------------------------------------------------------------------
def crop_keypoints(kp_image: np.ndarray, centers: np.ndarray, sides: np.ndarray) -> np.ndarray:
    """Image-pixel keypoints (N, 49, 3) -> 224-crop pixels with each crop's affine (docs/reproduction.md §2.2,
    rotation 0); confidences kept, keypoints with confidence 0 untouched (as the training pipeline does)."""
    kp = np.array(kp_image, dtype=np.float64, copy=True)
    for i in range(kp.shape[0]):
        matrix = affine_transform(centers[i], float(sides[i]), 0.0)
        visible = kp[i, :, 2] > 0
        kp[i, visible, :2] = transform_points(kp[i, visible, :2], matrix)
    return kp


def network_init(
    layout: DataLayout,
    checkpoint: Path,
    images: Sequence[Optional[Path]],
    centers: np.ndarray,
    sides: np.ndarray,
    device: torch.device,
    batch_size: int,
    skip: List[Optional[str]],
    engine: str = "auto",
) -> Tuple[Dict[str, np.ndarray], EngineInfo]:
    """The network's predictions on each sample's 224 crop (no flip, no rotation): pose, betas, camera; and
    which engine ran it (`--engine`).

    Rows whose image is missing or unreadable get `NO_IMAGE` in `skip` (and the mean parameters)."""
    network = load_engine(checkpoint, layout, device, engine)
    init = {
        k: v.numpy().copy()
        for k, v in mean_init(
            load_mean_params(layout.smpl_mean_params), len(images), dtype=torch.float64
        ).items()
    }
    rows = [i for i in range(len(images)) if skip[i] is None]
    for start in range(0, len(rows), batch_size):
        batch, pictures = [], []
        for i in rows[start : start + batch_size]:
            img = cv2.imread(str(images[i]), cv2.IMREAD_COLOR) if images[i] is not None else None
            if img is None:
                skip[i] = NO_IMAGE
                continue
            batch.append(i)
            pictures.append(img)
        if not batch:
            continue
        pred = predict_crops(network, pictures, centers[batch], sides[batch], batch_size)
        init["pose"][batch] = axis_angle_from_rotmat(torch.from_numpy(pred.rotmat)).numpy()
        init["betas"][batch] = pred.betas
        init["cam"][batch] = pred.cam
    return init, network.info


def _initial_parameters(
    layout, options, images, centers, sides, skip
) -> Tuple[Dict[str, np.ndarray], Optional[EngineInfo]]:
    """(initial pose, betas, camera per sample; the engine that predicted them, None for mean parameters)."""
    if options.init_checkpoint is None:
        params = mean_init(load_mean_params(layout.smpl_mean_params), len(skip), dtype=torch.float64)
        return {k: v.numpy() for k, v in params.items()}, None
    return network_init(
        layout,
        options.init_checkpoint,
        images,
        centers,
        sides,
        options.device,
        options.batch_size,
        skip,
        options.engine,
    )


def _fit_rows(
    layout: DataLayout,
    options: FitOptions,
    kp_crop: np.ndarray,
    centers: np.ndarray,
    sides: np.ndarray,
    skip: List[Optional[str]],
    images: Callable[[], List[Optional[Path]]],
    *,
    unit: str = "sample",
    earlier: Sequence[Problem] = (),
    blame: Path,
    progress: Optional[ProgressFn],
) -> Tuple[DatasetFit, Any, RegistrationConfig, List[Problem], List[List[str]], Optional[EngineInfo]]:
    """The core both sources share: screen the rows (a row's own `skip` reason comes first), start them (mean
    parameters, or a checkpoint's predictions on `images()`), fit them; (result, body model, config, problems
    — `earlier` first, then skipped and flagged kinds —, per-row notes, the engine that predicted the starts or
    None). Nothing to fit: one line naming `blame`."""
    skip = [own or screened for own, screened in zip(skip, screen_keypoints(kp_crop))]
    if all(s is not None for s in skip):
        raise _nothing_to_fit([*earlier, *group_problems(skip, unit)], blame)
    init, engine_info = _initial_parameters(
        layout, options, images() if options.init_checkpoint is not None else [], centers, sides, skip
    )
    problems = [*earlier, *group_problems(skip, unit)]
    if all(s is not None for s in skip):
        raise _nothing_to_fit(problems, blame)
    notes = keypoint_notes(kp_crop)
    problems += group_notes([n if s is None else [] for n, s in zip(notes, skip)], unit)
    result, body_model, config = _run_fits(layout, options, kp_crop, init, skip, progress)
    return result, body_model, config, problems, notes, engine_info


def _run_fits(layout, options, kp_crop, init, skip, progress) -> Tuple[DatasetFit, Any, RegistrationConfig]:
    config = options.config()
    body_model = BodyModel.from_layout(layout, "neutral", h36m=False, device=options.device)
    fitter = build_fitter(body_model, layout.gmm_prior, config)
    result = fit_dataset(
        fitter,
        config,
        kp_crop,
        init["pose"],
        init["betas"],
        init["cam"],
        skip=skip,
        batch_size=options.batch_size,
        progress=progress,
    )
    return result, body_model, config


def _sample_records(
    result: DatasetFit,
    extra: Optional[List[Dict[str, Any]]] = None,
    notes: Optional[List[List[str]]] = None,
) -> List[Dict[str, Any]]:
    """One record per row of the fits file: `row` says whether it holds a fit or the start it was given."""

    def num(x: float) -> Optional[float]:
        return round(float(x), 4) if np.isfinite(x) else None

    records = []
    for i in range(len(result.reasons)):
        record = {
            "index": i,
            "row": "fit" if result.fitted[i] else "start (not fitted)",
            "notes": list(notes[i]) if notes is not None and result.fitted[i] else [],
            "fitted": bool(result.fitted[i]),
            "accepted": bool(result.accepted[i]),
            "status": result.reasons[i],
            "final_loss": num(result.loss[i]),
            "fit_criterion": num(result.criterion[i]),
            "reprojection_px": num(result.reprojection_px[i]),
            "betas_zeroed_by_training": bool(result.betas_zeroed[i]),
        }
        if extra is not None:
            record.update(extra[i])
        records.append(record)
    return records


def _summary(
    result: DatasetFit,
    config: RegistrationConfig,
    options: FitOptions,
    seconds: float,
    engine: Optional[EngineInfo] = None,
) -> Dict[str, Any]:
    fitted = result.fitted

    def mean(values: np.ndarray) -> Optional[float]:
        return float(np.mean(values[fitted])) if fitted.any() else None

    return {
        "method": config.method,
        "init": "mean" if options.init_checkpoint is None else str(options.init_checkpoint),
        "device": str(options.device),
        "engine": engine.to_json() if engine is not None else None,
        "samples": int(len(fitted)),
        "fitted": int(fitted.sum()),
        "accepted": int(result.accepted.sum()),
        "acceptance": "mmhuman3d registrant keypoint loss"
        if config.method == "mmhuman3d"
        else "SPIN fitting loss (mean over joints, px²)",
        "valid_threshold": result.threshold,
        "mean_final_loss": mean(result.loss),
        "mean_fit_criterion": mean(result.criterion),
        "mean_reprojection_px": mean(result.reprojection_px),
        "betas_zeroed": int(result.betas_zeroed[fitted].sum()),
        "translation_fallback": int(result.translation_fallback[fitted].sum()),
        "seconds": round(seconds, 2),
    }


def _nothing_to_fit(problems: List[Problem], path: Path) -> GtacliError:
    reasons = "; ".join(p.line() for p in problems) or "no samples"
    return BadFileError(
        f"nothing to fit: {reasons}", path=path, fix="give finite keypoints with confidence > 0"
    )


# --- annotation files ------------------------------------------------------------------------------------
def annotation_path(layout: DataLayout, dataset: str) -> Path:
    if dataset in TRAIN_DATASETS or dataset in TEST_DATASETS:
        return layout.annotation(dataset)
    return layout.preprocessed / f"{dataset}.npz"  # a user's own dataset (mmhuman3d #106)


def dataset_names(layout: DataLayout) -> Dict[str, str]:
    """{name or file stem a user may type: the --dataset name to use} for the annotations the tree has."""
    names: Dict[str, str] = {}
    for name in list(TRAIN_DATASETS) + list(TEST_DATASETS):
        path = layout.annotation(name)
        if path.is_file():
            names[name] = name
            names[path.stem] = name
    if layout.preprocessed.is_dir():
        for path in sorted(layout.preprocessed.glob("*.npz")):
            names.setdefault(path.stem, names.get(path.stem, path.stem))
    return names


def unknown_dataset_error(layout: DataLayout, dataset: str) -> UsageError:
    """--dataset NAME that is neither a known dataset nor a file of the tree: the names it has, the closest."""
    names = dataset_names(layout)
    query = dataset.lower().removesuffix(".npz")
    close = [names[n] for n in difflib.get_close_matches(query, list(names), n=3, cutoff=0.6)]
    close += [names[n] for n in names if query and query in n.lower()]
    suggestion = list(dict.fromkeys(close))[:1]
    have = sorted(set(names.values()))
    fix = f"did you mean --dataset {suggestion[0]}? " if suggestion else ""
    fix += (
        f"this tree has: {', '.join(have)}"
        if have
        else "this tree has no annotations; see gtacli check-layout"
    )
    return UsageError(
        f"--dataset {dataset}: no such dataset (no {layout.preprocessed / (dataset + '.npz')})", fix=fix
    )


def fits_output_path(layout: DataLayout, dataset: str, output: Optional[Path], limit: Optional[int]) -> Path:
    """static_fits/NAME_fits.npy, or NAME_fits.limitN.npy with --limit (a partial file never replaces the full one)."""
    if output is not None:
        return Path(output)
    name = fits_file_name(dataset)
    if limit is not None:
        name = name.replace(".npy", f".limit{limit}.npy")
    return layout.static_fits_dir / name


def report_path(fits_path: Path) -> Path:
    """`<stem>.report.json` beside the fits (the stem shortened when the name would pass 255 bytes)."""
    room = NAME_MAX_BYTES - len(".report.json")
    return fits_path.with_name(fits_path.stem.encode()[:room].decode("utf-8", "ignore") + ".report.json")


def _check_target(target: Path, force: bool) -> None:
    if target.exists() and not force:
        raise GtacliError(
            "fits file already exists",
            path=target,
            fix="pass --force to replace it, or --output PATH to write elsewhere",
        )
    if target.is_dir():
        raise GtacliError("the output is a folder", path=target, fix="give a file name with --output")
    check_name_lengths(target)
    # nothing is created yet: the fits' folder is made when the file is written (a failed run leaves none)
    ensure_writable_dir(target.parent, what="the fits", fix="choose --output elsewhere", create=False)


def fit_annotation(
    layout: DataLayout,
    dataset: str,
    options: FitOptions,
    *,
    output: Optional[Path] = None,
    force: bool = False,
    progress: Optional[ProgressFn] = None,
) -> FitReport:
    """Fit SMPL to an annotation's 2D keypoints and write the static fits file + its report."""
    started = time.perf_counter()
    annotation = annotation_path(layout, dataset)
    if not annotation.is_file() and dataset not in TRAIN_DATASETS and dataset not in TEST_DATASETS:
        raise unknown_dataset_error(layout, dataset)
    if not annotation.is_file():
        raise MissingFileError(
            f"annotation for '{dataset}' not found",
            path=annotation,
            fix="run `gtacli check-layout` to see what is missing, or `gtacli fetch` it",
        )
    config = options.config()
    target = fits_output_path(layout, dataset, output, options.limit)
    _check_target(target, force)
    hd = HumanData.load(annotation)
    for key, why in (("keypoints2d", "SMPLify fits to its 2D keypoints"), ("bbox_xywh", "the crop needs it")):
        if key not in hd:
            raise BadFileError(
                f"the annotation has no {key}: {why}",
                path=annotation,
                fix="fit a dataset whose annotation carries keypoints2d and bbox_xywh",
            )
    num = len(hd) if options.limit is None else min(options.limit, len(hd))
    index = np.arange(num)
    boxes = hd.bbox_xywh(index)
    centers = np.zeros((num, 2))
    sides = np.zeros(num)
    for i, box in enumerate(np.asarray(boxes)):
        centers[i], sides[i] = bbox_to_center_scale(box)
    kp_crop = crop_keypoints(hd.keypoints2d_smpl49(index), centers, sides)
    skip: List[Optional[str]] = [None] * num
    for i in np.flatnonzero(~(np.isfinite(centers).all(1) & np.isfinite(sides) & (sides > 0))):
        skip[i] = "box not finite or empty"

    def images() -> List[Optional[Path]]:  # read only when a checkpoint starts the fits
        if "image_path" not in hd:
            return [None] * num
        return [layout.image(dataset, p) for p in hd.image_paths(index)]

    result, _, config, problems, notes, engine_info = _fit_rows(
        layout, options, kp_crop, centers, sides, skip, images, blame=annotation, progress=progress
    )
    report_file = report_path(target)
    samples = _sample_records(result, notes=notes)
    payload = {
        "dataset": dataset,
        "annotation": str(annotation),
        "output": str(target),
        "report": str(report_file),
    }
    payload.update(_summary(result, config, options, time.perf_counter() - started, engine_info))
    payload["synthetic"] = layout.is_synthetic
    report = FitReport(payload, samples, problems, [target, report_file])
    save_fits_file(target, result.fits)
    atomic_write_json(report_file, report.to_dict())
    return report


# --- OpenPose files for one's own photos -----------------------------------------------------------------
def openpose_files(path: Path) -> List[Path]:
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".json" and p.is_file())
        if not files:
            raise MissingFileError(
                "no OpenPose .json files in this folder",
                path=path,
                fix="point --openpose at OpenPose's --write_json folder or one file",
            )
        return files
    if not path.is_file():
        raise MissingFileError(
            "OpenPose keypoints not found",
            path=path,
            fix="give a file or folder written by OpenPose --write_json",
        )
    return [path]


def image_for(json_path: Path, images: Path) -> Optional[Path]:
    """The image a keypoint file belongs to: same stem, without OpenPose's `_keypoints` (or SPIN's `_openpose`)."""
    stem = json_path.stem
    for suffix in OPENPOSE_SUFFIXES:
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
            break
    for ext in IMAGE_SUFFIXES:
        for candidate in (images / f"{stem}{ext}", images / f"{stem}{ext.upper()}"):
            if candidate.is_file():
                return candidate
    return None


def fit_openpose(
    layout: DataLayout,
    openpose: Path,
    images: Path,
    output_dir: Path,
    options: FitOptions,
    *,
    overlay: Callable[..., np.ndarray],
    force: bool = False,
    progress: Optional[ProgressFn] = None,
) -> FitReport:
    """Fit every person of OpenPose keypoint files; `overlay(image_bgr, vertices_list, faces, K)` draws meshes.

    Writes `fits.npz` (per person: pose (72,), betas (10,), crop-camera transl (3,), image, person, crop
    centre/side, accepted), `report.json`, and `<image stem>_fit.jpg` per image into `output_dir`."""
    options.config()  # an unknown method fails before any work
    check_people_output(images, output_dir, force)
    frames: List[PeopleFrame] = []
    file_skip: List[Optional[str]] = []
    for json_path in openpose_files(openpose):
        image = image_for(json_path, images)
        try:
            frame = read_openpose(json_path)
        except BadFileError:
            file_skip.append(BAD_JSON)
            continue
        file_skip.append(None if image is not None else NO_IMAGE_FOR_JSON)
        if image is not None:
            frames.append(PeopleFrame(image, frame.keypoints, str(json_path)))
    return fit_people(
        layout,
        frames,
        output_dir,
        options,
        overlay=overlay,
        file_problems=group_problems(file_skip, "file"),
        source={"openpose": str(openpose), "images": str(images)},
        progress=progress,
        blame=openpose,
    )


@dataclass
class PeopleFrame:
    """One image's people for `fit_people`: BODY_25 keypoints (P, 25, 3) in image pixels, and their source."""

    image: Path
    keypoints: np.ndarray
    source: str  # the keypoint file, or the model that found them


def check_people_output(images: Path, output_dir: Path, force: bool) -> None:
    if not images.is_dir():
        raise MissingFileError(
            "--images folder not found", path=images, fix="give the folder that holds the photos"
        )
    fits_file, report_file = output_dir / "fits.npz", output_dir / "report.json"
    if not force and (fits_file.exists() or report_file.exists()):
        raise GtacliError(
            "fit results already exist in this folder",
            path=output_dir,
            fix="pass --force to replace them, or choose another --output",
        )
    ensure_writable_dir(output_dir, what="the fits", fix="choose another --output folder")


def fit_people(
    layout: DataLayout,
    frames: Sequence[PeopleFrame],
    output_dir: Path,
    options: FitOptions,
    *,
    overlay: Callable[..., np.ndarray],
    file_problems: Sequence[Problem] = (),
    source: Optional[Dict[str, Any]] = None,
    progress: Optional[ProgressFn] = None,
    blame: Optional[Path] = None,
) -> FitReport:
    """The core of `gtacli fit` for photos: every person of `frames` gets SPIN's crop from its keypoints
    (`spin_box`) and a fit; writes `fits.npz`, `report.json` and one overlay per image into `output_dir`
    (OpenPose files: `fit_openpose`; the keypoint model's people: `gtacli.demo.keypoints.people_in_images`).
    The caller checks the output folder first (`check_people_output`)."""
    started = time.perf_counter()
    fits_file, report_file = output_dir / "fits.npz", output_dir / "report.json"
    people: List[Dict[str, Any]] = []
    kp_rows, centers, sides, row_skip = [], [], [], []
    for frame in frames:
        for person, kp25 in enumerate(frame.keypoints):
            box = spin_box(kp25)
            center, side = box if box is not None else (np.zeros(2), 1.0)
            people.append(
                {
                    "image": str(frame.image),
                    "keypoints_file": frame.source,
                    "person": person,
                    "crop_center": [float(v) for v in center],
                    "crop_side_px": float(side),
                }
            )
            kp_rows.append(to_smpl49(kp25[None])[0])
            centers.append(center)
            sides.append(side)
            row_skip.append(None if box is not None else NO_BOX)
    file_problems = list(file_problems)
    if not kp_rows:
        raise _nothing_to_fit(file_problems, blame or output_dir)
    centers_np, sides_np = np.asarray(centers, np.float64), np.asarray(sides, np.float64)
    kp_crop = crop_keypoints(np.stack(kp_rows), centers_np, sides_np)
    result, body_model, config, problems, notes, engine_info = _fit_rows(
        layout,
        options,
        kp_crop,
        centers_np,
        sides_np,
        row_skip,
        lambda: [Path(p["image"]) for p in people],
        unit="person",
        earlier=file_problems,
        blame=blame or output_dir,
        progress=progress,
    )
    scale = sides_np / config.img_res
    for i, person in enumerate(people):
        px = result.reprojection_px[i]
        person["reprojection_px_image"] = round(float(px * scale[i]), 3) if np.isfinite(px) else None
    samples = _sample_records(result, people, notes=notes)
    overlays = _write_overlays(people, result, body_model, config, overlay, output_dir)
    payload = {**(source or {}), "output": str(output_dir), "people": len(people)}
    payload.update(_summary(result, config, options, time.perf_counter() - started, engine_info))
    report = FitReport(payload, samples, problems, [fits_file, report_file, *overlays])
    arrays = {
        "pose": result.fits[:, :72],
        "betas": result.fits[:, 72:],
        "transl": result.transl,
        "crop_center": centers_np,
        "crop_side_px": sides_np,
        "image": np.array([p["image"] for p in people]),
        "person": np.array([p["person"] for p in people], np.int64),
        "fitted": result.fitted,
        "accepted": result.accepted,
        "reprojection_px": result.reprojection_px,
    }
    atomic_write_with(fits_file, lambda tmp: _save_npz(tmp, arrays))
    atomic_write_json(report_file, report.to_dict())
    return report


def _save_npz(path: Path, arrays: Dict[str, np.ndarray]) -> None:
    with open(path, "wb") as handle:
        np.savez(handle, **arrays)


def _write_overlays(people, result: DatasetFit, body_model, config, overlay, output_dir: Path) -> List[Path]:
    """One overlay per image with every fitted person's mesh, drawn in the original image's camera."""
    faces = np.asarray(body_model.faces)
    by_image: Dict[str, List[int]] = {}
    for i, person in enumerate(people):
        by_image.setdefault(person["image"], []).append(i)
    written = []
    for image_name, rows in by_image.items():
        image = cv2.imread(image_name, cv2.IMREAD_COLOR)
        if image is None:
            continue
        drawn = image
        fitted = [i for i in rows if result.fitted[i]]
        if fitted:
            dev = body_model.smpl.v_template
            pose = torch.as_tensor(result.fits[fitted, :72], dtype=dev.dtype, device=dev.device)
            betas = torch.as_tensor(result.fits[fitted, 72:], dtype=dev.dtype, device=dev.device)
            with torch.no_grad():
                verts = (
                    body_model(betas, pose[:, 3:], pose[:, :3], pose2rot=True).vertices.double().cpu().numpy()
                )
            for k, i in enumerate(fitted):  # one camera per person: each has its own crop
                K = crop_to_image_intrinsics(
                    people[i]["crop_center"], people[i]["crop_side_px"], config.focal_length, config.img_res
                )
                drawn = overlay(drawn, verts[k] + result.transl[i], faces, K)
        target = output_dir / f"{Path(image_name).stem}_fit.jpg"
        atomic_write_with(target, lambda tmp, img=drawn: _imwrite(tmp, img))
        written.append(target)
    return written


def _imwrite(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".jpg", image)
    if not ok:
        raise GtacliError("could not encode the overlay image", path=path)
    Path(path).write_bytes(data.tobytes())
