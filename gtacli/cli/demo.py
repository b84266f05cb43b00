"""`gtacli demo`: SMPL meshes for the people in an image, a folder of images or a video (offline, headless)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

import typer

from gtacli.cli.common import (
    AmpOpt,
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

FFMPEG_LOG_QUIET = "-8"  # libavutil's AV_LOG_QUIET
CORRECTIVES_MB = (
    17  # 207 morph targets x 6890 vertices x 3 float32 (gtacli.export.gltf.CORRECTIVES_MB_PER_FILE)
)


def demo_command(
    data_root: DataRootOpt,
    inputs: Annotated[
        Optional[List[Path]],
        typer.Argument(
            metavar="INPUT",
            help="An image, a folder of images (natural sort order) or a video file; several of them, a folder of "
            "videos or a quoted glob make a collection (one subfolder of --output per input, manifest.json).",
            show_default=False,
        ),
    ] = None,
    checkpoint: Annotated[
        Optional[Path],
        typer.Option(
            "--checkpoint",
            help="HMR checkpoint (mmhuman3d, SPIN or gtacli), e.g. spin_official.pth. Required unless --from-results.",
        ),
    ] = None,
    output: Annotated[
        Optional[Path],
        typer.Option("--output", "-o", help="Output folder. Default: ./demo_output/<input name>."),
    ] = None,
    bbox: Annotated[
        Optional[str],
        typer.Option("--bbox", help="One person box x,y,w,h (pixels) used for every frame; no detector."),
    ] = None,
    bbox_file: Annotated[
        Optional[Path],
        typer.Option(
            "--bbox-file",
            help='Boxes from JSON: SPIN\'s {"bbox": \\[x,y,w,h]}, a list with one entry per frame '
            '(box, list of boxes, or null), {"frame name": boxes}, or OpenPose keypoints '
            "(people[*].pose_keypoints_2d, BODY_25 or COCO-18; each person cropped as SPIN's demo does).",
        ),
    ] = None,
    detector: Annotated[
        str,
        typer.Option(
            "--detector",
            help="auto (default: yolox when fetched, else hog), yolox (OpenCV zoo YOLOX-S, `gtacli fetch detector`), "
            "hog (built into OpenCV), ssd (<data-root>/detectors/MobileNetSSD_deploy.{prototxt,caffemodel}) "
            "or yolo (<data-root>/detectors/yolo.onnx, YOLOv5/v8 COCO export).",
        ),
    ] = "auto",
    max_people: Annotated[
        Optional[int],
        typer.Option(
            "--max-people",
            help="Keep at most N people per frame: the most persistent tracks (videos), else highest score.",
        ),
    ] = None,
    max_missed: Annotated[
        float,
        typer.Option("--max-missed", help="Seconds a track survives without a detection (videos)."),
    ] = 1.0,
    draw_boxes: Annotated[
        Optional[bool],
        typer.Option(
            "--draw-boxes/--no-draw-boxes", help="Box and track id on the overlay. Default: on for videos."
        ),
    ] = None,
    export_mesh: Annotated[
        bool,
        typer.Option(
            "--export-mesh",
            help="One Wavefront OBJ per person and frame in meshes/ (original camera frame, metres).",
        ),
    ] = False,
    save_frames: Annotated[
        bool, typer.Option("--save-frames", help="Videos: also one overlay PNG per frame in frames/.")
    ] = False,
    from_results: Annotated[
        Optional[Path],
        typer.Option(
            "--from-results",
            help="Re-render / export from a saved results.npz (with the same INPUT) without running the network.",
        ),
    ] = None,
    export_animation: Annotated[
        bool,
        typer.Option(
            "--export-animation",
            help="Per track, into animation/: track_<id>.glb (glTF 2.0: SMPL mesh skinned to the 24-joint skeleton, "
            "root motion in the camera frame, the video's camera), track_<id>.bvh and track_<id>.npz (SMPL "
            "parameters, AMASS layout). Gaps inside a track are interpolated; short tracks are skipped.",
        ),
    ] = False,
    pose_correctives: Annotated[
        bool,
        typer.Option(
            "--pose-correctives",
            help="With --export-animation: SMPL's 207 pose-corrective blend shapes as animated morph targets, so "
            f"the glTF mesh equals SMPL's exactly (adds about {CORRECTIVES_MB:g} MB to each .glb).",
        ),
    ] = False,
    no_mesh: Annotated[
        bool,
        typer.Option(
            "--no-mesh",
            help="With --export-animation: skeleton only (BVH, and glTF without a mesh); with --from-results it "
            "also works without the SMPL model file.",
        ),
    ] = False,
    up: Annotated[
        str,
        typer.Option(
            "--up", help="Up axis of exported animations: y (glTF's convention) or z (Blender, SMPL-X tools)."
        ),
    ] = "y",
    min_track_frames: Annotated[
        int,
        typer.Option(
            "--min-track-frames", help="With --export-animation: skip tracks shorter than this (frames)."
        ),
    ] = 5,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="With --from-results: use results whose frame count or frame size differs from INPUT.",
        ),
    ] = False,
    device: DeviceOpt = "auto",
    engine: EngineOpt = "auto",
    amp: AmpOpt = False,
    smooth: Annotated[
        bool,
        typer.Option("--smooth", help="One-Euro smoothing of each person's pose, shape and camera (videos)."),
    ] = False,
    side_view: Annotated[
        bool, typer.Option("--side-view", help="Add a side view of the meshes next to each frame.")
    ] = False,
    no_render: Annotated[
        bool, typer.Option("--no-render", help="Skip overlays; write results only.")
    ] = False,
    save_vertices: Annotated[
        bool, typer.Option("--save-vertices", help="Also store the (N, 6890, 3) vertices in results.npz.")
    ] = False,
    batch_size: Annotated[int, typer.Option("--batch-size", help="Crops per network forward pass.")] = 4,
    focal_length: Annotated[
        Optional[float],
        typer.Option(
            "--focal-length",
            help="Focal length (px) of the original camera for `transl`. Default: per person 5000 x crop side / 224.",
        ),
    ] = None,
    max_frames: Annotated[
        Optional[int], typer.Option("--max-frames", help="Only the first N frames (results.json says so).")
    ] = None,
    inputs_from: Annotated[
        Optional[Path],
        typer.Option(
            "--inputs-from",
            help="A text file listing inputs, one per line (relative to the file's folder; # comments): a collection.",
        ),
    ] = None,
    shard: Annotated[
        Optional[str],
        typer.Option(
            "--shard",
            help="K/N: process only the K-th of N slices of the collection (1 <= K <= N), e.g. "
            "$SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT; writes manifest.shard-K-of-N.json.",
        ),
    ] = None,
    merge_manifests: Annotated[
        Optional[Path],
        typer.Option(
            "--merge-manifests",
            metavar="OUT",
            help="Join the shard manifests in OUT into OUT/manifest.json (no INPUT); exit 0 when every input is done.",
        ),
    ] = None,
    refine: Annotated[
        bool,
        typer.Option(
            "--refine",
            help="Fit each body to the person's 2D keypoints, starting from the network's prediction "
            "(--keypoints, an OpenPose --bbox-file, or the keypoint model of `gtacli fetch keypoints`).",
        ),
    ] = False,
    keypoints: Annotated[
        Optional[Path],
        typer.Option(
            "--keypoints",
            help="--refine: OpenPose JSON keypoints, a file or a folder with one per image/frame.",
        ),
    ] = None,
    refine_smooth: Annotated[
        float,
        typer.Option(
            "--refine-smooth",
            min=0.0,
            help="--refine: weight of the temporal term on a video's tracks (joint motion between frames; 0: off).",
        ),
    ] = 1.0,
    json_mode: JsonOpt = False,
    quiet: QuietOpt = False,
    debug: DebugOpt = False,
) -> int:
    """Estimate SMPL bodies in images or videos and write overlays plus per-frame results.

    Writes into --output: overlays/<frame>.png (images, folders) or overlay.mp4 (videos, same frame count and fps as the input), results.npz (per person and frame: track id, box with its score and source, SMPL axis-angle pose, betas, camera, translation in the original camera, 2D/3D joints in smpl_49 and J14, frames without a person) and results.json (summary, tracks, detector, timings, conventions), plus .gtacli-demo.json listing the files written. Nothing is written unless the run completes; an existing --output is replaced only when it holds nothing but a previous demo output.

    Examples:

      gtacli demo photo.jpg --checkpoint data/pretrained_models/spin_official.pth

      gtacli demo im1010.jpg --checkpoint spin_official.pth --bbox-file im1010_bbox.json

      gtacli demo clip.mp4 --checkpoint model.pth --smooth --max-people 2 --side-view -o out/clip

      gtacli demo frames/ --checkpoint model.pth --no-render --save-vertices --json

      gtacli demo photo.jpg --checkpoint model.pth --amp     # bfloat16 network: fast on CPUs with AMX

      gtacli demo clip.mp4 --from-results out/clip/results.npz --export-mesh --save-frames -o out/clip_meshes

      gtacli demo im1010.jpg --checkpoint model.pth --bbox-file im1010_openpose.json --refine

      gtacli fetch keypoints && gtacli demo clip.mp4 --checkpoint model.pth --refine --refine-smooth 2

      gtacli demo clip.mp4 --checkpoint model.pth --export-animation --smooth -o out/clip_anim

      gtacli demo clip.mp4 --from-results out/clip/results.npz --export-animation --pose-correctives --up z -o out/z

      gtacli demo clips/ --checkpoint model.pth -o out/clips     # a collection: one subfolder per input + manifest.json

      gtacli demo --inputs-from list.txt --checkpoint model.pth -o out/all --shard 1/2     # e.g. one SLURM array task

      gtacli demo --inputs-from list.txt --checkpoint model.pth -o out/all --shard 2/2

      gtacli demo --merge-manifests out/all     # one manifest.json for the shards; exit 1 until every input is done
    """
    out = Output(json_mode=json_mode, quiet=quiet, debug=debug)
    if not debug:
        # FFmpeg (inside OpenCV) prints its own decoder complaints straight to stderr ("moov atom not
        # found"); the demo reports an unreadable video as one error line, so keep FFmpeg quiet (AV_LOG_QUIET).
        # Read when OpenCV first opens a video; an explicit user setting wins.
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", FFMPEG_LOG_QUIET)
    from gtacli.errors import UsageError

    if merge_manifests is not None:
        if inputs or inputs_from is not None or shard is not None:
            raise UsageError("--merge-manifests OUT takes no INPUT, --inputs-from or --shard")
        return _merge(out, merge_manifests)
    if not inputs and inputs_from is None:
        raise UsageError(
            "give an INPUT (or several, or --inputs-from list.txt)", fix="see gtacli demo --help"
        )
    from gtacli.demo.collection import expand_inputs, parse_shard

    shard_kn = parse_shard(shard) if shard is not None else None
    paths, collection = expand_inputs(list(inputs or []), inputs_from)
    collection = collection or shard_kn is not None
    input = paths[0]
    from gtacli.assets.manifest import load_manifest
    from gtacli.demo.boxes import parse_bbox_option
    from gtacli.demo.detect import DETECTORS
    from gtacli.demo.pipeline import DemoConfig, run_demo
    from gtacli.device import keep_freed_memory, resolve_device

    if detector not in DETECTORS:
        raise UsageError(f"--detector {detector!r} is unknown", fix=f"use one of: {', '.join(DETECTORS)}")
    checkpoint = resolve_file_option(checkpoint, data_root, out, option="--checkpoint", what="checkpoint")
    after_results, export_only = _animation_export(
        export_animation, pose_correctives, no_mesh, up, min_track_frames, from_results, data_root, out
    )
    detector_asset = load_manifest().get("detector")  # `gtacli fetch detector`: destination and pinned hash
    keypoints_asset = load_manifest().get("keypoints")  # `gtacli fetch keypoints`: hash in the lock file
    config = DemoConfig(
        input=input,
        checkpoint=checkpoint,
        data_root=data_root,
        output=output if output is not None else _default_output(input, collection),
        bbox=parse_bbox_option(bbox) if bbox is not None else None,
        bbox_file=bbox_file,
        detector=detector,
        yolox_weights=detector_asset.path(data_root),
        yolox_sha256=detector_asset.sha256,
        max_people=max_people,
        device=resolve_device(device),
        engine=engine,
        amp=amp,
        smooth=smooth,
        side_view=side_view,
        render=not no_render,
        save_vertices=save_vertices,
        batch_size=batch_size,
        focal_length=focal_length,
        max_frames=max_frames,
        draw_boxes=draw_boxes,
        export_mesh=export_mesh,
        save_frames=save_frames,
        from_results=from_results,
        max_missed_s=max_missed,
        refine=refine,
        keypoints=keypoints,
        keypoint_model=keypoints_asset.path(data_root),
        keypoint_sha256=_recorded_sha256(data_root, "keypoints"),
        refine_smooth=refine_smooth,
        force=force,
        after_results=after_results,
    )
    keep_freed_memory()  # the renderer's per-frame buffers are reused instead of faulted in afresh
    if collection:
        return _collection(out, config, paths, shard_kn)
    if export_only:
        from gtacli.demo.pipeline import run_results_export

        summary = run_results_export(config, log=out.info)
        out.result(summary, lambda: _print_animation(out, summary))
        return 0
    with ProgressBar(out, "demo", rate_unit="frames", transient=False) as progress:
        summary = run_demo(config, progress=progress, log=out.info)

    def human() -> None:
        outputs = summary["outputs"]
        detector_info = summary["detector"]
        out.out.print(f"output: {summary['output']}", markup=False)
        if detector_info:
            out.out.print(f"detector: {detector_info['name']}", markup=False)
        out.out.print(
            f"frames: {summary['frames']} ({summary['frames_with_person']} with a person), "
            f"person entries: {summary['person_entries']}, tracks: {summary['tracks']}",
            markup=False,
        )
        if summary["frames_without_person"]:
            names = summary["frames_without_person"]
            shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "")
            out.out.print(f"frames without a person: {shown}", markup=False)
        if outputs["overlay_video"]:
            out.out.print(
                f"overlay video: {outputs['overlay_video']} at {summary['fps']:g} fps", markup=False
            )
        elif outputs["overlays"]:
            out.out.print(f"overlays: {len(outputs['overlays'])} images in overlays/", markup=False)
        for key in ("frames", "meshes"):
            if outputs[key]:
                out.out.print(f"{key}: {outputs[key]}", markup=False)
        if summary["engine"]:
            out.out.print(f"engine: {summary['engine']['detail']}", markup=False)
        _print_animation(out, summary)
        timings = ", ".join(f"{k} {v:.2f}s" for k, v in summary["timings_s"].items())
        out.out.print(f"speed: {summary['frames_per_s']} frames/s ({timings})", markup=False)

    out.result(summary, human)
    return 0


def _default_output(input: Path, collection: bool) -> Path:
    return Path("demo_output") if collection else Path("demo_output") / (input.stem or "input")


def _collection(out: Output, config, paths, shard) -> int:
    """Every input of this shard into its own subfolder; one line per finished input with the overall ETA."""
    from gtacli.cli.common import format_duration
    from gtacli.demo.collection import run_collection
    from gtacli.demo.pipeline import validate
    from gtacli.errors import UsageError

    validate(config)  # option errors once, before any input
    if config.from_results is not None:
        raise UsageError(
            "--from-results replays the results of one input", fix="give one INPUT with --from-results"
        )
    if config.checkpoint is not None and not config.checkpoint.is_file():
        from gtacli.errors import MissingFileError

        raise MissingFileError("checkpoint not found", path=config.checkpoint, fix="check --checkpoint")

    def finished(entry, position, count, eta_s) -> None:
        if entry["status"] == "done":
            what = (
                f"done, {entry['frames']} frames, {entry['people']} people, {entry['seconds'] or 0:.1f}s"
                + (" (kept from an earlier run)" if entry["reused"] else "")
            )
        else:
            what = f"{entry['status']}: {entry['error']}"
        eta = f" | ETA {format_duration(eta_s)}" if eta_s is not None else ""
        out.info(f"demo: [{position}/{count}] {entry['input']} -> {entry['output']}/: {what}{eta}")

    with ProgressBar(out, "demo", rate_unit="inputs", transient=True) as progress:
        manifest = run_collection(
            config, paths, config.output, shard, progress=progress, log=out.info, on_input=finished
        )
    _print_manifest(out, manifest)
    counts = manifest["counts"]
    return 0 if counts["done"] == len(manifest["inputs"]) else 1


def _merge(out: Output, folder: Path) -> int:
    from gtacli.demo.collection import merge_manifests

    manifest = merge_manifests(folder)
    _print_manifest(out, manifest)
    return 0 if manifest["complete"] else 1


def _print_manifest(out: Output, manifest) -> None:
    def human() -> None:
        counts = manifest["counts"]
        out.out.print(f"output: {manifest['output']}", markup=False)
        out.out.print(f"manifest: {manifest['manifest']}", markup=False)
        total = len(manifest["inputs"])
        shard = (
            f" (shard {manifest['shard']} of {manifest['inputs_total']} inputs)"
            if manifest.get("shard")
            else ""
        )
        out.out.print(
            f"inputs: {total}{shard}: {counts['done']} done ({counts['reused']} kept from earlier runs), "
            f"{counts['failed']} failed, {counts['pending']} pending",
            markup=False,
        )
        if manifest.get("missing_shards"):
            out.out.print(f"shards without a manifest: {', '.join(manifest['missing_shards'])}", markup=False)
        if "complete" in manifest:
            out.out.print(
                f"collection: {total} of {manifest['inputs_total']} inputs listed, "
                + ("all done" if manifest["complete"] else "not complete"),
                markup=False,
            )
        for entry in manifest["inputs"]:
            if entry["status"] == "failed":  # the error line names the file when it is about the input
                error = entry["error"] or ""
                shown = error if error.startswith(entry["input"]) else f"{entry['input']}: {error}"
                out.out.print(f"failed: {shown}", markup=False)

    out.result(manifest, human)


def _recorded_sha256(data_root: Path, name: str) -> Optional[str]:
    """The sha256 the lock file recorded when `gtacli fetch NAME` downloaded the file (None if never)."""
    from gtacli.assets.lockfile import read_lock_file
    from gtacli.layout import DataLayout

    return (read_lock_file(DataLayout(data_root)).get(name) or {}).get("sha256")


def _animation_export(
    export_animation, pose_correctives, no_mesh, up, min_track_frames, from_results, data_root, out
):
    """(DemoConfig.after_results, export_only): the animation exporter the demo calls, checked before any work;
    export_only when --from-results --no-mesh has no SMPL model file (no body model: no overlays either)."""
    from gtacli.errors import UsageError

    if not export_animation:
        given = [name for name, on in (("--pose-correctives", pose_correctives), ("--no-mesh", no_mesh),
                                       ("--up", up != "y"), ("--min-track-frames", min_track_frames != 5)) if on]  # fmt: skip
        if given:
            raise UsageError(f"{given[0]} applies to --export-animation", fix="add --export-animation")
        return None, False
    if up not in ("y", "z"):
        raise UsageError(
            f"--up {up!r} is not an axis", fix="use --up y (glTF's convention) or --up z (Blender's)"
        )
    if pose_correctives and no_mesh:
        raise UsageError("--pose-correctives needs the mesh", fix="drop --no-mesh or --pose-correctives")
    if min_track_frames < 1:
        raise UsageError("--min-track-frames must be at least 1")
    from gtacli.export.animation import check_results
    from gtacli.export.writer import ExportOptions, demo_exporter
    from gtacli.io.safe import load_npz
    from gtacli.layout import DataLayout

    if from_results is not None:
        check_results(load_npz(from_results), from_results)
    smpl_path = DataLayout(data_root).smpl_model("neutral")
    options = ExportOptions(
        up=up, mesh=not no_mesh, correctives=pose_correctives, min_frames=min_track_frames
    )
    exporter = demo_exporter(smpl_path, options, results_path=from_results)
    return exporter, bool(no_mesh and from_results is not None and not smpl_path.is_file())


def _print_animation(out, summary) -> None:
    animation = summary.get("animation")
    if not animation:
        return
    tracks = ", ".join(str(t) for t in animation["tracks"]) or "none"
    out.out.print(
        f"animation: {len(animation['files'])} files in {animation['folder']}/ (tracks: {tracks}; "
        f"up {animation['up_axis']}, {animation['units']})",
        markup=False,
    )
    for note in animation["skipped"]:
        out.info(f"note: {note}")
    if animation.get("licence"):
        out.info(f"note: {animation['licence']}")
