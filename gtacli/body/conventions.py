"""Keypoint conventions as named data (docs/reproduction.md §3). Tests check every table against its definition.

Index tables are plain tuples; names are the mmhuman3d names, so a table can be re-derived from names.
"""

from __future__ import annotations

from typing import List, Sequence, Tuple

# §3.1 smpl_54: what the training body model regresses (SMPL 24 + 21 smplx vertex joints + 9 extra).
SMPL_24_KINEMATIC = (
    "pelvis", "left_hip", "right_hip", "spine_1", "left_knee", "right_knee", "spine_2", "left_ankle",
    "right_ankle", "spine_3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)  # fmt: skip
SMPL_VERTEX_JOINTS = (
    "nose", "right_eye", "left_eye", "right_ear", "left_ear", "left_bigtoe", "left_smalltoe", "left_heel",
    "right_bigtoe", "right_smalltoe", "right_heel", "left_thumb", "left_index", "left_middle", "left_ring",
    "left_pinky", "right_thumb", "right_index", "right_middle", "right_ring", "right_pinky",
)  # fmt: skip
# smplx vertex_ids['smplh'] for the joints above (docs/reproduction.md §3.1), in the same order.
SMPL_VERTEX_JOINT_IDS = (
    332, 6260, 2800, 4071, 583, 3216, 3226, 3387, 6617, 6624, 6787,
    2746, 2319, 2445, 2556, 2673, 6191, 5782, 5905, 6016, 6133,
)  # fmt: skip
EXTRA_JOINTS = (
    "right_hip_extra",
    "left_hip_extra",
    "neck_extra",
    "headtop",
    "pelvis_extra",
    "thorax_extra",
    "spine_extra",
    "jaw_extra",
    "head_extra",
)  # fmt: skip  rows of J_regressor_extra.npy
SMPL_54 = SMPL_24_KINEMATIC + SMPL_VERTEX_JOINTS + EXTRA_JOINTS

# §3.2 smpl_49 names and the smpl_54 -> smpl_49 source indices (approximate mapping = SPIN's JOINT_MAP).
OPENPOSE_25 = (
    "nose_openpose", "neck_openpose", "right_shoulder_openpose", "right_elbow_openpose",
    "right_wrist_openpose", "left_shoulder_openpose", "left_elbow_openpose", "left_wrist_openpose",
    "pelvis_openpose", "right_hip_openpose", "right_knee_openpose", "right_ankle_openpose",
    "left_hip_openpose", "left_knee_openpose", "left_ankle_openpose", "right_eye_openpose",
    "left_eye_openpose", "right_ear_openpose", "left_ear_openpose", "left_bigtoe_openpose",
    "left_smalltoe_openpose", "left_heel_openpose", "right_bigtoe_openpose", "right_smalltoe_openpose",
    "right_heel_openpose",
)  # fmt: skip
SMPL_24 = (  # smpl_49[25:], SPIN's 24 ground-truth joints
    "right_ankle", "right_knee", "right_hip_extra", "left_hip_extra", "left_knee", "left_ankle",
    "right_wrist", "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist",
    "neck_extra", "headtop", "pelvis_extra", "thorax_extra", "spine_extra", "jaw_extra", "head_extra",
    "nose", "left_eye", "right_eye", "left_ear", "right_ear",
)  # fmt: skip
SMPL_49 = OPENPOSE_25 + SMPL_24
SMPL_54_TO_SMPL_49 = (
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
)  # fmt: skip

# §3.3 HUMAN_DATA (190) slot of each smpl_49 joint.
HUMAN_DATA_NUM_KEYPOINTS = 190
SMPL_49_TO_HUMAN_DATA = (
    153, 154, 155, 156, 157, 158, 159, 160, 161, 162, 163, 164, 165, 166, 167, 168, 169, 170, 171, 172,
    173, 174, 175, 176, 177, 8, 5, 144, 145, 4, 7, 21, 19, 17, 16, 18, 20, 146, 147, 148, 149, 150, 151,
    152, 55, 57, 56, 59, 58,
)  # fmt: skip
# The smpl_24 (SPIN GT) joints' HUMAN_DATA slots: what gta_human_4x.npz keeps when compressed (docs/reproduction.md §2.6).
SMPL_24_HUMAN_DATA_SLOTS = tuple(sorted(SMPL_49_TO_HUMAN_DATA[25:]))

# §3.4 H36M 17 (rows of J_regressor_h36m.npy) and the LSP-14 evaluation subset.
H36M_17 = (
    "pelvis_extra", "left_hip_extra", "left_knee", "left_ankle", "right_hip_extra", "right_knee",
    "right_ankle", "spine_extra", "neck_extra", "head_extra", "headtop", "left_shoulder", "left_elbow",
    "left_wrist", "right_shoulder", "right_elbow", "right_wrist",
)  # fmt: skip
H36M_TO_J14 = (6, 5, 4, 1, 2, 3, 16, 15, 14, 11, 12, 13, 8, 10)
H36M_PELVIS = 0  # evaluation pelvis: H36M-regressor joint 0

# §3.5 flip permutation of smpl_49 (new[i] = old[perm[i]]) and the SMPL pose flip.
SMPL_49_FLIP_PERM = (
    0, 1, 5, 6, 7, 2, 3, 4, 8, 12, 13, 14, 9, 10, 11, 16, 15, 18, 17, 22, 23, 24, 19, 20, 21,
    30, 29, 28, 27, 26, 25, 36, 35, 34, 33, 32, 31, 37, 38, 39, 40, 41, 42, 43, 44, 46, 45, 48, 47,
)  # fmt: skip
SMPL_POSE_FLIP_JOINT_PERM = (
    0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22,
)  # fmt: skip
SMPL_POSE_FLIP_PERM_72 = tuple(3 * j + k for j in SMPL_POSE_FLIP_JOINT_PERM for k in range(3))

# §3.6 joints the SMPLify keypoint term ignores (smpl_49 indices).
REGISTRANT_IGNORE_NAMES = (
    "neck_openpose",
    "right_hip_openpose",
    "left_hip_openpose",
    "right_hip_extra",
    "left_hip_extra",
)
REGISTRANT_IGNORE = (1, 9, 12, 27, 28)

# Training-time pelvis (docs/reproduction.md §6.2.1): mean of smpl_49 right_hip_extra (27) and left_hip_extra (28).
TRAIN_PELVIS_PAIR = (27, 28)
# Joints used by estimate_translation (docs/reproduction.md §7.1 step 4): smpl_49 25..48.
TRANSLATION_JOINTS = tuple(range(25, 49))

# SPIN camera_fitting_loss: ['OP RHip', 'OP LHip', 'OP RShoulder', 'OP LShoulder'] and the GT equivalents
TORSO_OPENPOSE = tuple(
    SMPL_49.index(n)
    for n in ("right_hip_openpose", "left_hip_openpose", "right_shoulder_openpose", "left_shoulder_openpose")
)
TORSO_GT = tuple(
    SMPL_49.index(n) for n in ("right_hip_extra", "left_hip_extra", "right_shoulder", "left_shoulder")
)
# Both tables: the joints a fit is placed and turned by.
TORSO_JOINTS = TORSO_OPENPOSE + TORSO_GT


def flip_pairs(names: Sequence[str]) -> List[Tuple[int, int]]:
    """Pairs (left index, right index) of every `left_*` name whose `right_*` twin exists."""
    index = {n: i for i, n in enumerate(names)}
    pairs = []
    for i, name in enumerate(names):
        if "left_" in name:
            twin = name.replace("left_", "right_")
            if twin in index:
                pairs.append((i, index[twin]))
    return pairs


def flip_permutation(names: Sequence[str]) -> List[int]:
    """new[i] = old[perm[i]]: each left joint takes its right twin's value and vice versa."""
    perm = list(range(len(names)))
    for left, right in flip_pairs(names):
        perm[left], perm[right] = right, left
    return perm
