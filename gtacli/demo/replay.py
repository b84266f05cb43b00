"""Re-rendering from saved results: `Replay` reads the results.npz of an earlier demo run and stands in for
detection, tracking and the network (`gtacli demo --from-results`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch

from gtacli.body.rotations import axis_angle_to_matrix
from gtacli.demo.config import Person
from gtacli.demo.engine import person_from_box
from gtacli.demo.track import TrackedBox
from gtacli.errors import BadFileError
from gtacli.io.safe import load_npz
from gtacli.model.predict import CropPredictions


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

    def outputs(self, people: List[Person]) -> CropPredictions:
        """The saved predictions of `people`, in the network's form (what `Engine.infer` returns)."""
        rows = [self.row_of[(p.frame, p.pid)] for p in people]
        pose = torch.as_tensor(self.data["smpl_pose"][rows], dtype=torch.float64).reshape(-1, 24, 3)
        return CropPredictions(
            rotmat=axis_angle_to_matrix(pose).numpy(),
            betas=self.data["betas"][rows].astype(np.float64).reshape(-1, 10),
            cam=self.data["pred_cam"][rows].astype(np.float64).reshape(-1, 3),
        )
