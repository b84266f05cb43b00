"""What each synthetic dataset looks like: image names, sizes, cameras and which annotations it carries.

One `DatasetSpec` per dataset of docs/reproduction.md §1.1, mirroring the real file it stands in for (docs/reproduction.md §2.3-2.6):
which of SPIN's 24 ground-truth joints are annotated, whether OpenPose detections, 3D keypoints and SMPL
parameters exist, how the bounding box is made, and the image-name pattern of the real dataset.
Image sizes are scaled-down versions of the real ones (same aspect ratio) so that rendering stays fast.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

# SPIN's 24 ground-truth joints (smpl_24 = smpl_49[25:]) annotated by each source dataset.
LSP_14 = tuple(range(14))  # ankles..wrists, neck_extra, headtop
MPII_16 = LSP_14 + (14, 15)  # + pelvis_extra, thorax_extra
COCO_17 = tuple(range(12)) + (19, 20, 21, 22, 23)  # limbs + nose, eyes, ears
# H36M / MPI-INF-3DHP: the 17 H36M joints placed into smpl_24 slots (docs/reproduction.md §2.5 `global_idx`).
H36M_17_IN_SMPL_24 = (14, 3, 4, 5, 2, 1, 0, 16, 12, 17, 18, 9, 10, 11, 8, 7, 6)
ALL_24 = tuple(range(24))

H36M_SUBJECTS = ("S1", "S5", "S6", "S7", "S8")
H36M_ACTIONS = ("Directions_1", "Discussion", "Eating", "Greeting_1", "Posing", "Walking")
H36M_CAMERAS = ("54138969", "55011271", "58860488", "60457274")
H36M_FRAME_STEP = 5  # every 5th frame (docs/reproduction.md §1.1), numbered frame_i + 1
MPI_INF_FRAME_STEP = 10
PW3D_SEQUENCES = (
    "courtyard_basketball_00",
    "downtown_walking_00",
    "outdoors_fencing_01",
    "office_phoneCall_00",
)
PW3D_GENDERS = ("m", "f", "m", "f")  # one person per synthetic sequence
GTA_FIRST_SEQUENCE = 12  # seq_00000012, as in mmhuman3d's example path

# Box styles: 'spin' (square, 1.2x keypoint extent), 'keypoints' (1.2x keypoint box), 'tight' (mesh silhouette).
BoxStyle = str


@dataclass(frozen=True)
class DatasetSpec:
    name: str  # dataset name of the layout (`datasets/<name>/`)
    config: str  # HumanData `config`
    kind: str  # 'spin' | 'gta' | 'pw3d'
    image_size: Tuple[int, int]  # (width, height) px
    focal_px: float  # pinhole focal length (principal point = image centre)
    gt_joints: Tuple[int, ...]  # annotated smpl_24 indices (2D, and 3D where keypoints3d is set)
    openpose: bool  # OpenPose detections in smpl_49 0..24 (detector-like confidences)
    keypoints3d: Optional[str]  # None | 'root_centred' (pelvis_extra at 0) | 'camera' (absolute)
    smpl: Optional[str]  # None | 'all' | 'partial' (has_smpl 0 for some rows) | 'transl' (with transl)
    box: BoxStyle
    frames_per_sequence: int  # consecutive frames of one person/sequence (same betas, nearby poses)
    # (sequence index, frame index) -> image path inside datasets/<name>/
    image_name: Callable[[int, int], str]

    @property
    def extension(self) -> str:
        return self.image_name(0, 0).rsplit(".", 1)[-1]


def _h36m(seq: int, frame: int) -> str:
    subject = H36M_SUBJECTS[seq % len(H36M_SUBJECTS)]
    action = H36M_ACTIONS[(seq // len(H36M_SUBJECTS)) % len(H36M_ACTIONS)]
    camera = H36M_CAMERAS[seq % len(H36M_CAMERAS)]
    stem = f"{subject}_{action}.{camera}"
    return f"{subject}/images/{stem}/{stem}_{frame * H36M_FRAME_STEP + 1:06d}.jpg"


def _mpi_inf(seq: int, frame: int) -> str:
    return f"S{seq % 8 + 1}/Seq{seq // 8 % 2 + 1}/video_{seq % 3}/{frame * MPI_INF_FRAME_STEP + 1:06d}.jpg"


def _lsp(seq: int, frame: int) -> str:
    return f"images/im{seq + 1:04d}.jpg"


def _lspet(seq: int, frame: int) -> str:
    return f"im{seq + 1:05d}.png"  # SPIN's lspet npz stores .png names (docs/reproduction.md §1.1)


def _mpii(seq: int, frame: int) -> str:
    return f"images/{1163 + 3571 * seq:09d}.jpg"


def _coco(seq: int, frame: int) -> str:
    return f"train2014/COCO_train2014_{9 + 1709 * seq:012d}.jpg"


def _gta(seq: int, frame: int) -> str:
    return f"images/seq_{GTA_FIRST_SEQUENCE + 37 * seq:08d}/{frame:08d}.jpeg"


def _pw3d(seq: int, frame: int) -> str:
    return f"imageFiles/{PW3D_SEQUENCES[seq % len(PW3D_SEQUENCES)]}/image_{frame:05d}.jpg"


def _focal(width: int, height: int, fov_deg: float) -> float:
    """Focal length (px) that gives a horizontal field of view `fov_deg`."""
    return width / 2.0 / math.tan(math.radians(fov_deg) / 2.0)


# GTA-Human's camera: focal 1158.0337 px for 1920x1080 (docs/reproduction.md §2.6); scaled with the image.
GTA_FOCAL_PER_WIDTH = 1158.0337 / 1920.0

SPECS: Dict[str, DatasetSpec] = {
    s.name: s
    for s in (
        DatasetSpec("h36m", "h36m", "spin", (256, 256), _focal(256, 256, 45), H36M_17_IN_SMPL_24, False,
                    "root_centred", "all", "spin", 4, _h36m),
        DatasetSpec("mpi_inf_3dhp", "mpi_inf_3dhp", "spin", (256, 256), _focal(256, 256, 55), H36M_17_IN_SMPL_24,
                    True, "camera", "partial", "spin", 3, _mpi_inf),
        DatasetSpec("lsp", "lsp", "spin", (192, 256), _focal(192, 256, 50), LSP_14, True, None, None, "spin", 1,
                    _lsp),
        DatasetSpec("lspet", "lspet", "spin", (256, 192), _focal(256, 192, 55), LSP_14, True, None, None, "spin", 1,
                    _lspet),
        DatasetSpec("mpii", "mpii", "spin", (320, 240), _focal(320, 240, 60), MPII_16, True, None, None, "spin", 1,
                    _mpii),
        DatasetSpec("coco", "coco_2014", "spin", (320, 240), _focal(320, 240, 60), COCO_17, True, None, None, "spin",
                    1, _coco),
        DatasetSpec("gta", "gta_human", "gta", (320, 180), GTA_FOCAL_PER_WIDTH * 320, ALL_24, False, "root_centred",
                    "transl", "tight", 4, _gta),
        DatasetSpec("pw3d", "pw3d", "pw3d", (180, 320), _focal(180, 320, 50), (), False, None, "all", "keypoints",
                    4, _pw3d),
    )
}  # fmt: skip
TRAIN_ORDER = ("h36m", "mpi_inf_3dhp", "lsp", "lspet", "mpii", "coco", "gta")

# Samples per dataset for each tree size (pw3d: frames over sequences). tiny = for tests, small = the default.
SIZES: Dict[str, Dict[str, int]] = {
    "tiny": {"train": 4, "pw3d_sequences": 2, "pw3d_frames": 4},
    "small": {"train": 24, "pw3d_sequences": 4, "pw3d_frames": 12},
}


def sample_count(size: str, dataset: str) -> int:
    cfg = SIZES[size]
    return cfg["pw3d_sequences"] * cfg["pw3d_frames"] if dataset == "pw3d" else cfg["train"]


def frames_per_sequence(size: str, dataset: str) -> int:
    return SIZES[size]["pw3d_frames"] if dataset == "pw3d" else SPECS[dataset].frames_per_sequence
