"""Tracking rules on hand-made detections: misses survived and interpolated, confirmation, fragments, max_people."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.demo.detect import Detections
from gtacli.demo.track import TrackConfig, contained_parts, track_sequence

PERSON = np.array([100.0, 100.0, 60.0, 160.0])  # x, y, w, h


def frames_of(boxes_per_frame):
    return [Detections(np.array(b, float).reshape(-1, 4), np.full(len(b), 0.9)) for b in boxes_per_frame]


def walking(n, step=(5.0, 0.0), start=PERSON):
    return [start + np.array([step[0] * k, step[1] * k, 0, 0]) for k in range(n)]


def test_short_miss_keeps_the_id_and_is_interpolated():
    path = walking(10)
    dets = [[b] for b in path]
    for k in (4, 5, 6):  # three frames without a detection
        dets[k] = []
    out = track_sequence(frames_of(dets), TrackConfig(max_missed=12))
    assert [len(f) for f in out] == [1] * 10
    assert {e.track_id for f in out for e in f} == {0}
    for k in (4, 5, 6):
        entry = out[k][0]
        assert entry.source == "interpolated" and entry.score == 0.0
        np.testing.assert_allclose(entry.box, path[k])  # linear motion: interpolation is exact


def test_miss_longer_than_max_missed_starts_a_new_id():
    dets = [[b] for b in walking(12)]
    for k in range(3, 8):
        dets[k] = []
    out = track_sequence(frames_of(dets), TrackConfig(max_missed=3))
    assert sorted({e.track_id for f in out for e in f}) == [0, 1]
    assert all(len(out[k]) == 0 for k in range(3, 8))


def test_max_missed_from_seconds_and_fps():
    assert TrackConfig.for_fps(12.0).max_missed == 12
    assert TrackConfig.for_fps(30.0, 0.5).max_missed == 15


def test_fast_motion_is_matched_by_the_constant_velocity_prediction():
    # 50 px per frame sideways: a 60-px wide box has IoU ~0.09 with its last position, ~1 with the prediction
    dets = [[b] for b in walking(8, step=(50.0, 0.0))]
    out = track_sequence(frames_of(dets), TrackConfig())
    assert {e.track_id for f in out for e in f} == {0}


def test_a_box_seen_in_fewer_frames_than_min_hits_is_dropped():
    dets = [[b] for b in walking(10)]
    dets[5] = dets[5] + [np.array([500.0, 100.0, 60.0, 160.0])]  # one stray detection
    out = track_sequence(frames_of(dets), TrackConfig(min_hits=3))
    assert [len(f) for f in out] == [1] * 10


def test_fragments_inside_or_beside_a_person_are_suppressed():
    person = walking(10)
    dets = [[b] for b in person]
    for k in range(3, 9):
        x, y, w, h = person[k]
        legs = np.array([x + 5, y + 90, 40, 70])  # inside the person's box, a third of its area
        beside = np.array([x + w + 20, y + 60, 30, 80])  # half its height, standing right next to it
        dets[k] = dets[k] + [legs, beside]
    out = track_sequence(frames_of(dets), TrackConfig())
    assert [len(f) for f in out] == [1] * 10
    assert contained_parts(np.array([PERSON, [105, 190, 40, 70]])).tolist() == [False, True]


def test_a_body_part_alone_keeps_a_confirmed_track_alive_at_its_prediction():
    person = walking(10)
    dets = [[b] for b in person]
    for k in (7, 8, 9):  # only the legs are detected at the end
        x, y, w, h = person[k]
        dets[k] = [np.array([x + 5, y + 90, 40, 70])]
    out = track_sequence(frames_of(dets), TrackConfig())
    assert [len(f) for f in out] == [1] * 10
    assert [out[k][0].source for k in (7, 8, 9)] == ["predicted"] * 3
    np.testing.assert_allclose(out[9][0].box, person[9])  # constant velocity predicts the walk exactly


def test_max_people_keeps_the_most_persistent_tracks():
    a = walking(10)
    b = walking(10, start=PERSON + [300, 0, 0, 0])
    dets = [[a[k], b[k]] if k >= 6 else [a[k]] for k in range(10)]  # b is seen in 4 frames only
    out = track_sequence(frames_of(dets), TrackConfig(max_people=1))
    assert [len(f) for f in out] == [1] * 10
    assert {e.track_id for f in out for e in f} == {0}


@pytest.mark.slow
def test_real_videos_with_hog_give_one_and_two_stable_ids(shared_assets):
    """Goals of the demo's tracking on the two shared videos with the default detector (HOG): one person ->
    exactly one id present in >= 90 % of frames; two people -> exactly two ids; never more people than visible."""
    import cv2

    from gtacli.demo.detect import build_detector

    hog = build_detector("hog")
    for name, people in (("single_person_demo.mp4", 1), ("multi_person_demo.mp4", 2)):
        cap = cv2.VideoCapture(str(shared_assets / name))
        dets = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            dets.append(hog(frame))
        cap.release()
        out = track_sequence(dets, TrackConfig.for_fps(12.0))
        ids = [e.track_id for f in out for e in f]
        assert sorted(set(ids)) == list(range(people)), name
        assert max(len(f) for f in out) <= people, name
        for pid in range(people):
            assert ids.count(pid) >= 0.9 * len(out), (name, pid, ids.count(pid))
