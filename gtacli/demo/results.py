"""What `gtacli demo` writes per frame and person: the fields of results.npz and their streaming writer."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Tuple

import numpy as np

if TYPE_CHECKING:  # annotations only: this module stays free of torch (it only writes arrays)
    from gtacli.demo.config import PeopleBody
    from gtacli.model.predict import CropPredictions

# results.npz: name -> (shape, meaning); N = person entries, F = frames.
RESULT_FIELDS: Dict[str, Tuple[str, str]] = {
    "frame_index": ("(N,) int64", "frame of each entry (0-based, input order)"),
    "person_id": (
        "(N,) int64",
        "track id: one per person across the frames of a video (0, 1, ...); per image otherwise",
    ),
    "smpl_pose": ("(N,72) float32", "SMPL pose, axis-angle, global orient first"),
    "global_orient": ("(N,3) float32", "smpl_pose[:, :3]"),
    "body_pose": ("(N,23,3) float32", "smpl_pose[:, 3:] per joint"),
    "betas": ("(N,10) float32", "SMPL shape"),
    "pred_cam": ("(N,3) float32", "weak-perspective crop camera [s, tx, ty]"),
    "transl_crop": ("(N,3) float32", "(tx, ty, 2*5000/(224*s)): crop camera translation, metres"),
    "transl": (
        "(N,3) float32",
        "translation in the original camera (principal point = image centre), metres",
    ),
    "focal_length": ("(N,) float32", "focal length (px) of the original camera used for `transl`"),
    "bbox_xywh": ("(N,4) float32", "person box in image pixels"),
    "bbox_score": ("(N,) float32", "detector score (1 for user boxes, 0 for interpolated boxes)"),
    "bbox_source": (
        "(N,) str",
        "detected | given (user box) | interpolated (between two boxes of the track) | predicted (track's motion "
        "prediction, kept alive by a body part detected inside it)",
    ),
    "crop_center": ("(N,2) float32", "crop centre in image pixels (= box centre)"),
    "crop_size": ("(N,) float32", "crop side in image pixels (1.25 x max(w, h))"),
    "keypoints2d_smpl49": ("(N,49,2) float32", "smpl_49 joints projected into the image, pixels"),
    "keypoints2d_j14": (
        "(N,14,2) float32",
        "LSP-14 joints (H36M regressor) projected into the image, pixels",
    ),
    "keypoints3d_smpl49": ("(N,49,3) float32", "smpl_49 joints, metres, SMPL body-model frame"),
    "keypoints3d_j14": (
        "(N,14,3) float32",
        "LSP-14 joints from the H36M regressor, metres, body-model frame",
    ),
    "keypoints3d_smpl24": (
        "(N,24,3) float32",
        "SMPL's 24 skeleton joints, metres, body-model frame (what animation exports are checked against)",
    ),
    "vertices": ("(N,6890,3) float32", "mesh vertices, body-model frame (only with --save-vertices)"),
    "frame_names": ("(F,) str", "frame names (image file names, or 000000.. for videos)"),
    "frame_size_hw": ("(F,2) int64", "height, width of each frame"),
    "frame_has_person": ("(F,) bool", "False where no person was found/given"),
    "frames_without_person": ("(M,) int64", "indices of frames without any person"),
    "fps": ("() float64", "frame rate of a video input (0 for images)"),
}


PERSON_KEYS = (
    "frame_index", "person_id", "smpl_pose", "global_orient", "body_pose", "betas", "pred_cam", "transl_crop",
    "transl", "focal_length", "bbox_xywh", "bbox_score", "bbox_source", "crop_center", "crop_size",
    "keypoints2d_smpl49", "keypoints2d_j14", "keypoints3d_smpl49", "keypoints3d_j14", "keypoints3d_smpl24",
)  # fmt: skip
FRAME_KEYS = ("frame_names", "frame_size_hw", "frame_has_person", "frames_without_person")
ROW_SHAPES = {
    "smpl_pose": (72,), "global_orient": (3,), "body_pose": (23, 3), "betas": (10,), "pred_cam": (3,),
    "transl_crop": (3,), "transl": (3,), "bbox_xywh": (4,), "crop_center": (2,), "keypoints2d_smpl49": (49, 2),
    "keypoints2d_j14": (14, 2), "keypoints3d_smpl49": (49, 3), "keypoints3d_j14": (14, 3),
    "keypoints3d_smpl24": (24, 3), "vertices": (6890, 3),
    "frame_size_hw": (2,),
}  # fmt: skip
INT_KEYS = ("frame_index", "person_id", "frame_size_hw", "frames_without_person")
STR_KEYS = ("bbox_source", "frame_names")
BOOL_KEYS = ("frame_has_person",)
COPY_BLOCK = 1 << 20  # bytes copied at a time from a spool file into results.npz


def _dtype(key: str) -> np.dtype:
    if key in INT_KEYS:
        return np.dtype("<i8")
    if key in BOOL_KEYS:
        return np.dtype(bool)
    return np.dtype("<f4")


class DemoResults:
    """Streams per-frame and per-person rows to disk as they come, then writes them as one results.npz.

    Memory stays flat however long the video: each field's rows are appended to its own spool file (raw
    little-endian bytes, or one JSON string per line for text fields) in `spool_dir`, and `write` copies them
    block by block into the members of results.npz, whose shapes are known by then. The file is an ordinary
    uncompressed `.npz` (what `np.savez` writes), so `np.load` and `--from-results` read it as before. Only
    small running tallies (entries per track, per box source, the frames without a person) stay in memory."""

    def __init__(self, save_vertices: bool, spool_dir: Path):
        self.save_vertices = save_vertices
        self.spool_dir = Path(spool_dir)
        self.spool_dir.mkdir(parents=True, exist_ok=True)
        self.keys = list(PERSON_KEYS + (("vertices",) if save_vertices else ()) + FRAME_KEYS)
        self.extra: Dict[
            str, Tuple[Tuple[int, ...], np.dtype]
        ] = {}  # more fields (--refine's): row shape, dtype
        self.rows: Dict[str, int] = {k: 0 for k in self.keys}
        self.text_width: Dict[str, int] = {k: 1 for k in STR_KEYS}
        self.files: Dict[str, Any] = {}
        self.frames = 0
        self.without_person_names: List[str] = []
        self.track_entries: Dict[int, int] = {}
        self.source_entries: Dict[str, int] = {}
        self.written: Optional[Path] = None

    def _append(self, key: str, values: Any) -> None:
        if key not in self.files:
            self.files[key] = open(self.spool_dir / f"{key}.spool", "wb")
        if key in STR_KEYS:
            texts = [str(v) for v in values]
            self.text_width[key] = max([self.text_width[key]] + [len(t) for t in texts])
            self.files[key].write("".join(json.dumps(t) + "\n" for t in texts).encode("utf-8"))
            self.rows[key] += len(texts)
            return
        dtype = self.extra[key][1] if key in self.extra else _dtype(key)
        array = np.ascontiguousarray(np.asarray(values).astype(dtype))
        self.files[key].write(array.tobytes())
        self.rows[key] += len(array)

    def add_frame(self, name: str, size_hw: Tuple[int, int], has_person: bool) -> None:
        if not has_person:
            self._append("frames_without_person", [self.frames])
            self.without_person_names.append(name)
        self._append("frame_names", [name])
        self._append("frame_size_hw", [size_hw])
        self._append("frame_has_person", [has_person])
        self.frames += 1

    def add_people(
        self,
        people: List[Any],
        outputs: CropPredictions,
        body: PeopleBody,
        extra: Optional[Dict[str, np.ndarray]] = None,
    ) -> None:
        """Rows of `people` (`gtacli.demo.config.Person`) with the network's `outputs` (after refine and smoothing)
        and their `body`; `extra`: more per-person fields keyed by their results.npz names (e.g. `--refine`'s,
        `gtacli.demo.refine.REFINE_FIELDS`)."""
        if not people:
            return
        for key, value in (extra or {}).items():
            if key not in self.extra:
                value = np.asarray(value)
                self.extra[key] = (value.shape[1:], value.dtype if value.dtype == bool else np.dtype("<f4"))
                self.keys.append(key)
                self.rows[key] = 0
            self._append(key, value)
        pose = np.asarray(body.pose_aa).reshape(len(people), 72)
        sources = [x.source for x in people]
        # the one place where the in-memory names become results.npz's field names (RESULT_FIELDS)
        values = {
            "frame_index": [x.frame for x in people], "person_id": [x.pid for x in people], "smpl_pose": pose,
            "global_orient": pose[:, :3], "body_pose": pose[:, 3:].reshape(-1, 23, 3), "betas": outputs.betas,
            "pred_cam": outputs.cam, "transl_crop": body.transl_crop, "transl": body.transl,
            "focal_length": body.focal, "bbox_xywh": [x.box for x in people],
            "bbox_score": [x.score for x in people], "bbox_source": sources,
            "crop_center": [x.center for x in people], "crop_size": [x.side for x in people],
            "keypoints2d_smpl49": body.kp2d_49, "keypoints2d_j14": body.kp2d_14,
            "keypoints3d_smpl49": body.j49, "keypoints3d_j14": body.j14, "keypoints3d_smpl24": body.j24,
        }  # fmt: skip
        if self.save_vertices:
            values["vertices"] = body.vertices
        for key, value in values.items():
            self._append(key, value)
        for person in people:
            self.track_entries[person.pid] = self.track_entries.get(person.pid, 0) + 1
        for source in sources:
            self.source_entries[source] = self.source_entries.get(source, 0) + 1

    @property
    def num_people_entries(self) -> int:
        return self.rows["frame_index"]

    def frames_per_track(self) -> Dict[int, int]:
        """Track id -> number of frames it appears in."""
        return dict(sorted(self.track_entries.items()))

    def box_source_counts(self) -> Dict[str, int]:
        return dict(sorted(self.source_entries.items()))

    def _shape_dtype(self, key: str) -> Tuple[Tuple[int, ...], np.dtype]:
        if key in STR_KEYS:
            return (self.rows[key],), np.dtype(f"<U{self.text_width[key]}")
        if key in self.extra:
            return (self.rows[key],) + tuple(self.extra[key][0]), self.extra[key][1]
        return (self.rows[key],) + ROW_SHAPES.get(key, ()), _dtype(key)

    def arrays(self, fps: float) -> Dict[str, np.ndarray]:
        """Every field in memory, read back from the results.npz `write` made: for a consumer that needs the
        whole video at once (the animation export). `fps` is the one written."""
        if self.written is None:
            raise RuntimeError("DemoResults.arrays reads the file that write() made; call write first")
        with np.load(self.written) as data:  # our own file: plain arrays, no pickles
            return {key: data[key] for key in data.files}

    def write(self, path: Path, fps: float) -> None:
        """results.npz, member by member from the spool files (then removed); atomic."""
        from gtacli.io.atomic import atomic_path

        for handle in self.files.values():
            handle.close()
        with atomic_path(path) as tmp:
            with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED, allowZip64=True) as archive:
                for key in self.keys:
                    shape, dtype = self._shape_dtype(key)
                    with archive.open(f"{key}.npy", "w", force_zip64=True) as member:
                        header = {
                            "descr": np.lib.format.dtype_to_descr(dtype),
                            "fortran_order": False,
                            "shape": shape,
                        }
                        np.lib.format.write_array_header_1_0(member, header)
                        self._copy_spool(key, dtype, member)
                with archive.open("fps.npy", "w") as member:
                    np.lib.format.write_array(member, np.array(fps, np.float64))
        shutil.rmtree(self.spool_dir, ignore_errors=True)
        self.written = Path(path)

    def _copy_spool(self, key: str, dtype: np.dtype, member: Any) -> None:
        spool = self.spool_dir / f"{key}.spool"
        if not spool.exists():
            return
        with open(spool, "rb") as source:
            if key not in STR_KEYS:
                shutil.copyfileobj(source, member, COPY_BLOCK)
                return
            lines: List[str] = []
            for line in source:
                lines.append(json.loads(line))
                if len(lines) >= COPY_BLOCK // 256:
                    member.write(np.array(lines, dtype=dtype).tobytes())
                    lines = []
            if lines:
                member.write(np.array(lines, dtype=dtype).tobytes())

    def discard(self) -> None:
        """Drop the spool. Called while another error unwinds (often a full disk): closing a handle flushes its
        buffer, which may fail the same way, and must not replace the error the user needs to see."""
        for handle in self.files.values():
            try:
                handle.close()
            except OSError:
                pass
        shutil.rmtree(self.spool_dir, ignore_errors=True)
