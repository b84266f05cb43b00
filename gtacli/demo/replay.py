"""Re-rendering from saved results: `Replay` reads the results.npz of an earlier demo run and stands in for
detection, tracking and the network (`gtacli demo --from-results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch

from gtacli.body.rotations import axis_angle_to_matrix
from gtacli.demo.config import Person
from gtacli.demo.engine import person_from_box
from gtacli.demo.track import TrackedBox
from gtacli.errors import BadFileError, UsageError
from gtacli.io.safe import load_npz


class Replay:
    """Saved results (`results.npz` of an earlier run) in place of detection, tracking and the network."""

    def __init__(self, path: Path):
        self.path = Path(path)
        data = load_npz(self.path)
        needed = ("frame_index", "person_id", "smpl_pose", "betas", "pred_cam", "bbox_xywh", "bbox_score")
        missing = [k for k in needed if k not in data]
        if missing:
            raise BadFileError(
                f"is not a gtacli demo results.npz (no {', '.join(missing)})",
                path=self.path,
                fix="pass the results.npz written by `gtacli demo`",
            )
        self.data = {k: np.asarray(data[k]) for k in data}
        self.row_of: Dict[Tuple[int, int], int] = {
            (int(f), int(p)): i
            for i, (f, p) in enumerate(zip(self.data["frame_index"], self.data["person_id"]))
        }

    def people(self, frames_to_do: Optional[int]) -> List[List[Person]]:
        count = int(self.data["frame_index"].max()) + 1 if len(self.data["frame_index"]) else 0
        if frames_to_do is not None:
            count = max(count, frames_to_do)
        sources = self.data.get("bbox_source", np.full(len(self.data["frame_index"]), "given"))
        out: List[List[Person]] = [[] for _ in range(count)]
        for i, (f, pid) in enumerate(zip(self.data["frame_index"], self.data["person_id"])):
            entry = TrackedBox(
                int(pid),
                self.data["bbox_xywh"][i].astype(np.float64),
                float(self.data["bbox_score"][i]),
                str(sources[i]),
            )
            out[int(f)].append(person_from_box(int(f), entry))
        return out

    def outputs(self, people: List[Person]) -> Dict[str, np.ndarray]:
        rows = [self.row_of[(p.frame, p.pid)] for p in people]
        pose = torch.as_tensor(self.data["smpl_pose"][rows], dtype=torch.float64).reshape(-1, 24, 3)
        return {
            "rotmat": axis_angle_to_matrix(pose).numpy(),
            "betas": self.data["betas"][rows].astype(np.float64).reshape(-1, 10),
            "cam": self.data["pred_cam"][rows].astype(np.float64).reshape(-1, 3),
        }


def check_results_match_input(
    results_path: Path,
    saved: Mapping[str, np.ndarray],
    frames: Optional[int],
    size_hw: Optional[Tuple[int, int]],
    *,
    force: bool = False,
) -> Optional[str]:
    """Saved results belong to the input they are drawn over: the same frame count and frame size.

    `saved` is the results.npz (its `frame_names` and `frame_size_hw`), `frames` the frames this run will
    process (after --max-frames) and `size_hw` the input's (height, width). A mismatch is a UsageError naming
    both, unless `force`; then the mismatch comes back as a note for the user. Results written before these
    fields existed are not checked. Every `--from-results` path (the demo, animation export) calls this.
    """
    problems = []
    if "frame_names" in saved and frames is not None and len(saved["frame_names"]) != frames:
        problems.append(f"{len(saved['frame_names'])} frames, the input has {frames}")
    sizes = np.asarray(saved.get("frame_size_hw", np.zeros((0, 2))))
    if size_hw is not None and len(sizes):
        saved_hw = (int(sizes[0][0]), int(sizes[0][1]))
        if saved_hw != tuple(size_hw):
            problems.append(
                f"frames of {saved_hw[1]}x{saved_hw[0]} px, the input's are {size_hw[1]}x{size_hw[0]}"
            )
    if not problems:
        return None
    message = f"the results are for another input ({'; '.join(problems)})"
    if force:
        return f"--force: drawing {results_path} although {message}"
    raise UsageError(
        message,
        path=results_path,
        fix="pass the input the results were computed on (same --max-frames), or --force to draw them anyway",
    )
