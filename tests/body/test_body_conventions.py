"""The keypoint tables of gtacli.body.conventions against docs/reproduction.md §3, typed here independently."""

from __future__ import annotations

from gtacli.body import conventions as C

# docs/reproduction.md §3.2 flat list (smpl_54 source index of each smpl_49 joint), typed from the table there.
REFERENCE_SMPL_54_TO_49 = [
    24, 12, 17, 19, 21, 16, 18, 20, 0, 2, 5, 8, 1, 4, 7, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34,
    8, 5, 45, 46, 4, 7, 21, 19, 17, 16, 18, 20, 47, 48, 49, 50, 51, 52, 53, 24, 26, 25, 28, 27,
]  # fmt: skip
# docs/reproduction.md §3.5 flip pairs of smpl_49.
REFERENCE_FLIP_PAIRS = [
    [5, 2], [6, 3], [7, 4], [12, 9], [13, 10], [14, 11], [16, 15], [18, 17], [19, 22], [20, 23], [21, 24],
    [28, 27], [29, 26], [30, 25], [34, 33], [35, 32], [36, 31], [45, 46], [47, 48],
]  # fmt: skip
LSP_14 = [
    "right ankle", "right knee", "right hip", "left hip", "left knee", "left ankle", "right wrist",
    "right elbow", "right shoulder", "left shoulder", "left elbow", "left wrist", "neck", "headtop",
]  # fmt: skip


def test_smpl_54_to_49_equals_reference_list():
    assert list(C.SMPL_54_TO_SMPL_49) == REFERENCE_SMPL_54_TO_49
    assert len(C.SMPL_54) == 54 and len(C.SMPL_49) == 49


def test_smpl_54_to_49_maps_matching_names():
    # approximate mapping: each *_openpose joint comes from its plain-named twin, every other joint from itself
    for dst, src in enumerate(C.SMPL_54_TO_SMPL_49):
        assert C.SMPL_54[src] == C.SMPL_49[dst].replace("_openpose", ""), dst


def test_flip_permutation_is_an_involution_mapping_left_to_right():
    perm = C.SMPL_49_FLIP_PERM
    assert sorted(perm) == list(range(49))
    assert all(perm[perm[i]] == i for i in range(49))
    for i, j in enumerate(perm):
        a, b = C.SMPL_49[i], C.SMPL_49[j]
        if i == j:
            assert "left" not in a and "right" not in a, a
        else:
            assert a.replace("left", "X").replace("right", "X") == b.replace("left", "X").replace(
                "right", "X"
            )
            assert ("left" in a) != ("left" in b)


def test_flip_permutation_equals_reference_pairs_and_helpers():
    expect = list(range(49))
    for a, b in REFERENCE_FLIP_PAIRS:
        expect[a], expect[b] = b, a
    assert list(C.SMPL_49_FLIP_PERM) == expect
    assert C.flip_permutation(C.SMPL_49) == expect


def test_smpl_pose_flip_permutation_swaps_left_right_kinematic_joints():
    def swap(name: str) -> str:
        return name.replace("left", "@").replace("right", "left").replace("@", "right")

    for i, j in enumerate(C.SMPL_POSE_FLIP_JOINT_PERM):
        assert C.SMPL_24_KINEMATIC[j] == swap(C.SMPL_24_KINEMATIC[i])
    assert C.SMPL_POSE_FLIP_PERM_72[:9] == (0, 1, 2, 6, 7, 8, 3, 4, 5)


def test_h36m_to_j14_is_lsp_order():
    names = [C.H36M_17[i].replace("_extra", "").replace("_", " ") for i in C.H36M_TO_J14]
    names = ["neck" if n == "neck" else n for n in names]
    assert names == LSP_14
    assert C.H36M_17[C.H36M_PELVIS] == "pelvis_extra"


def test_human_data_slots_and_registrant_ignore():
    assert len(C.SMPL_49_TO_HUMAN_DATA) == 49 and len(set(C.SMPL_49_TO_HUMAN_DATA)) == 49
    assert list(C.SMPL_49_TO_HUMAN_DATA[:25]) == list(range(153, 178))
    assert (
        [C.SMPL_49.index(n) for n in C.REGISTRANT_IGNORE_NAMES]
        == [1, 9, 12, 27, 28]
        == list(C.REGISTRANT_IGNORE)
    )
    assert [C.SMPL_49[i] for i in C.TRAIN_PELVIS_PAIR] == ["right_hip_extra", "left_hip_extra"]
