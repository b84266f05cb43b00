"""`export_animation`: a demo's results -> `animation/track_<id>.{glb,bvh,npz}` per track, and the entries
results.json lists for them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional

import numpy as np

from gtacli.errors import BadFileError, MissingFileError, PathLike, UsageError
from gtacli.export.amass import write_amass_npz
from gtacli.export.animation import DEFAULT_MIN_FRAMES, Motion, VideoCamera, build_motions
from gtacli.export.bvh import write_bvh
from gtacli.export.gltf import write_glb
from gtacli.export.rig import Rig, rest_joints_from_posed, rig_from_smpl
from gtacli.progress import ProgressFn

ANIMATION_DIR = "animation"
UP_AXES = ("y", "z")
POSED_JOINTS_FIELD = "keypoints3d_smpl24"  # results.npz: the 24 SMPL joints, body-model frame
LICENCE_NOTE = (
    "the mesh, skinning weights and pose correctives come from your licensed SMPL model file {name}: "
    "the SMPL model licence (https://smpl.is.tue.mpg.de) governs sharing these files"
)


@dataclass
class ExportOptions:
    up: str = "y"
    mesh: bool = True
    correctives: bool = False
    min_frames: int = DEFAULT_MIN_FRAMES


def licence_note(smpl_source: Optional[str]) -> Optional[str]:
    return LICENCE_NOTE.format(name=smpl_source) if smpl_source else None


def export_animation(
    results: Mapping[str, Any],
    out_dir: PathLike,
    *,
    smpl: Optional[Mapping[str, np.ndarray]] = None,
    smpl_source: Optional[str] = None,
    options: ExportOptions = ExportOptions(),
    results_path: Optional[PathLike] = None,
    progress: Optional[ProgressFn] = None,
) -> Dict[str, Any]:
    """Write every track's files under `out_dir/animation/`; returns the summary results.json keeps.

    `smpl` (the model's arrays) gives the mesh and the shape's skeleton; without it (`mesh=False` only) the
    skeleton comes from the results' 24 posed SMPL joints."""
    if options.up not in UP_AXES:
        raise UsageError(f"--up must be y or z, not {options.up!r}")
    if options.mesh and smpl is None:
        raise ValueError("a mesh needs the SMPL model arrays")
    motions, camera, notes = build_motions(results, min_frames=options.min_frames, path=results_path)
    folder = Path(out_dir) / ANIMATION_DIR
    folder.mkdir(parents=True, exist_ok=True)
    note = licence_note(smpl_source) if options.mesh else None
    files: List[Dict[str, Any]] = []
    for done, motion in enumerate(motions):
        rig = make_rig(motion, results, smpl, smpl_source, mesh=options.mesh, results_path=results_path)
        info = motion_info(motion, camera, options)
        extras = {"gtacli": info, **({"licence": note} if note else {})}
        written = [
            ("glb", "glTF 2.0 binary", write_glb(folder / f"{motion.name}.glb", motion, rig, camera,
                                                 up=options.up, correctives=options.correctives and rig.has_mesh,
                                                 extras=extras)),
            ("bvh", "BVH", write_bvh(folder / f"{motion.name}.bvh", motion, rig, up=options.up)),
            ("npz", "SMPL parameters (AMASS layout)", write_amass_npz(folder / f"{motion.name}.npz", motion, rig,
                                                                      up=options.up)),
        ]  # fmt: skip
        for kind, what, path in written:
            files.append(
                {"file": f"{ANIMATION_DIR}/{path.name}", "format": what, **info,
                 "mesh": bool(rig.has_mesh) if kind == "glb" else False,
                 "pose_correctives": bool(options.correctives and rig.has_mesh) if kind == "glb" else False}
            )  # fmt: skip
        if progress is not None:
            progress(done + 1, len(motions), motion.name)
    return {
        "folder": ANIMATION_DIR,
        "files": files,
        "tracks": [m.track_id for m in motions],
        "skipped": notes,
        "up_axis": options.up,
        "units": "metres",
        "camera": {"width": camera.width, "height": camera.height, "focal_px": camera.focal,
                   "principal_point": [camera.width / 2.0, camera.height / 2.0], "yfov_rad": camera.yfov},
        "licence": note,
    }  # fmt: skip


def motion_info(motion: Motion, camera: VideoCamera, options: ExportOptions) -> Dict[str, Any]:
    return {
        "track": int(motion.track_id),
        "frame_range": [int(motion.frames[0]), int(motion.frames[-1])],
        "frame_count": int(len(motion.frames)),
        "frame_rate": float(motion.fps),
        "filled_frames": [int(f) for f in motion.filled],
        "up_axis": options.up,
        "units": "metres",
    }


def make_rig(
    motion: Motion,
    results: Mapping[str, Any],
    smpl: Optional[Mapping[str, np.ndarray]],
    smpl_source: Optional[str],
    *,
    mesh: bool,
    results_path: Optional[PathLike] = None,
) -> Rig:
    if smpl is not None:
        rig = rig_from_smpl(smpl, motion.betas, smpl_source)
        return rig if mesh else Rig(rest_joints=rig.rest_joints)
    if POSED_JOINTS_FIELD not in results:
        raise BadFileError(
            f"has no {POSED_JOINTS_FIELD}: without the SMPL model file the skeleton comes from it",
            path=results_path,
            fix="import the SMPL model with `gtacli fetch --smpl-from PATH`, or re-run the demo to save the joints",
        )
    from gtacli.body.rotations import axis_angle_to_matrix_np

    rows = motion.rows
    posed = np.asarray(results[POSED_JOINTS_FIELD], np.float64)[rows]
    rot = axis_angle_to_matrix_np(np.asarray(results["smpl_pose"], np.float64)[rows].reshape(-1, 24, 3))
    return Rig(rest_joints=rest_joints_from_posed(posed, rot))


def demo_exporter(
    smpl_path: Optional[Path], options: ExportOptions, results_path: Optional[PathLike] = None
) -> Callable[[Path, Dict[str, np.ndarray]], Dict[str, Any]]:
    """What `gtacli demo --export-animation` hands the demo (`DemoConfig.after_results`): loads the SMPL model
    now (so a missing file is reported before any work) and exports into the demo's output folder later."""
    from gtacli.export.gltf import require_pygltflib

    require_pygltflib()  # the optional extra, checked before the demo runs
    smpl = None
    source = None
    if smpl_path is not None and Path(smpl_path).is_file():
        from gtacli.body.smpl import load_smpl_arrays

        smpl = load_smpl_arrays(smpl_path)
        source = Path(smpl_path).name
    elif options.mesh:
        raise MissingFileError(
            "no SMPL model file: the animation's mesh and skinning weights come from your licensed SMPL file",
            path=smpl_path,
            fix="import it with `gtacli fetch --smpl-from PATH` (or add --no-mesh for a skeleton-only export)",
        )

    def export(folder: Path, results: Dict[str, np.ndarray]) -> Dict[str, Any]:
        if len(np.asarray(results.get("person_id", ()))) == 0:
            return {"folder": ANIMATION_DIR, "files": [], "tracks": [], "up_axis": options.up, "units": "metres",
                    "skipped": ["no person was found: there is nothing to animate"], "licence": None}  # fmt: skip
        return export_animation(
            results, folder, smpl=smpl, smpl_source=source, options=options, results_path=results_path
        )

    return export
