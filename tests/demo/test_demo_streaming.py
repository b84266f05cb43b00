"""The demo's streaming parts: the online tracker (same answer as over the whole list, bounded state), the
smoother's per-track state, and results.npz written member by member from spool files."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.demo.config import PeopleBody, Person
from gtacli.demo.detect import Detections
from gtacli.demo.replay import Replay
from gtacli.demo.results import DemoResults
from gtacli.demo.smooth import PersonSmoother
from gtacli.demo.track import OnlineTracker, TrackConfig, track_sequence
from gtacli.io.safe import load_npz
from gtacli.model.predict import CropPredictions


def _random_sequence(rng, frames, people):
    starts = rng.uniform(0, 500, (people, 2))
    velocity = rng.normal(0, 5, (people, 2))
    height = rng.uniform(50, 200, people)
    out = []
    for f in range(frames):
        boxes = []
        for p in range(people):
            if rng.random() < 0.25:  # missed
                continue
            c = starts[p] + velocity[p] * f + rng.normal(0, 3, 2)
            boxes.append([c[0], c[1], height[p] / 2, height[p]])
        if rng.random() < 0.2:  # clutter
            boxes.append(list(rng.uniform(0, 500, 2)) + list(rng.uniform(20, 200, 2)))
        out.append(Detections(np.array(boxes).reshape(-1, 4), np.ones(len(boxes))))
    return out


def _key(per_frame):
    return [[(e.track_id, tuple(np.round(e.box, 6)), e.source) for e in frame] for frame in per_frame]


def test_streaming_tracker_settles_each_frame_as_the_whole_list_does():
    rng = np.random.default_rng(0)
    for trial in range(25):
        frames = _random_sequence(rng, int(rng.integers(1, 60)), int(rng.integers(0, 4)))
        config = TrackConfig(max_missed=int(rng.integers(1, 15)))
        tracker = OnlineTracker(config, total_frames=len(frames))
        streamed, indices = [], []
        for dets in frames:
            tracker.push(dets)
            ready = tracker.ready()
            streamed += [r.people for r in ready]
            indices += [r.index for r in ready]
        ready = tracker.ready(final=True)
        streamed += [r.people for r in ready]
        indices += [r.index for r in ready]
        assert indices == list(range(len(frames)))
        assert _key(streamed) == _key(track_sequence(frames, config)), trial


def test_tracker_state_stays_bounded_on_a_long_video_and_reports_ended_tracks():
    config = TrackConfig(max_missed=5)
    tracker = OnlineTracker(config)
    held, ended = [], []
    box = np.array([100.0, 100.0, 50.0, 120.0])
    nobody = Detections(np.zeros((0, 4)), np.zeros(0))
    for frame in range(1300):  # one person walking for 1200 frames, then nobody
        dets = Detections(box[None] + [frame % 200, 0, 0, 0], np.ones(1)) if frame < 1200 else nobody
        tracker.push(dets)
        for final in tracker.ready():
            ended += [(final.index, pid) for pid in final.ended]
        held.append(sum(len(t.entries) for t in tracker.confirmed + tracker.ended + tracker.tentative))
    assert max(held) <= tracker.lag + 2  # entries of the frames not settled yet, not of the whole video
    assert tracker.pushed - tracker.emitted == tracker.lag
    # the jump back every 200 frames starts a new identity; each ended track is reported once, at its last frame
    assert len(ended) == len({pid for _, pid in ended}) and ended[0] == (199, 0)
    assert not tracker.ready(final=True)[-1].people


def test_smoother_forgets_ended_tracks():
    smoother = PersonSmoother()
    rot = np.tile(np.eye(3), (24, 1, 1))
    for pid in (0, 1, 2):
        smoother(pid, 0.0, rot, np.zeros(10), np.array([1.0, 0, 0]))
    smoother.drop([0, 2, 7])
    assert set(smoother.filters) == {1}
    # a dropped id starts afresh: its first value comes back unsmoothed
    _, betas, _ = smoother(0, 1.0, rot, np.ones(10), np.array([1.0, 0, 0]))
    np.testing.assert_array_equal(betas, np.ones(10))


def _person(frame, pid, source="detected"):
    box = np.array([10.0 + pid, 20.0, 30.0, 40.0])
    return Person(frame, box, 0.9, pid, source, box[:2] + box[2:] / 2, 50.0)


def _chunk(rng, people):
    n = len(people)
    outputs = CropPredictions(
        rng.normal(size=(n, 24, 3, 3)), rng.normal(size=(n, 10)), rng.normal(size=(n, 3))
    )
    vertices = rng.normal(size=(n, 6890, 3))
    transl_crop = rng.normal(size=(n, 3))
    body = PeopleBody(
        pose_aa=rng.normal(size=(n, 72)), vertices=vertices, verts_cam=vertices + transl_crop[:, None],
        j49=rng.normal(size=(n, 49, 3)), j24=rng.normal(size=(n, 24, 3)), j14=rng.normal(size=(n, 14, 3)),
        kp2d_49=rng.normal(size=(n, 49, 2)), kp2d_14=rng.normal(size=(n, 14, 2)), transl_crop=transl_crop,
        transl=rng.normal(size=(n, 3)), focal=rng.uniform(100, 200, n), K_img=np.tile(np.eye(3), (n, 1, 1)),
    )  # fmt: skip
    return outputs, body


@pytest.mark.parametrize("save_vertices", [False, True])
def test_results_written_from_spool_files_are_a_plain_npz_with_every_row(tmp_path, save_vertices):
    rng = np.random.default_rng(1)
    results = DemoResults(save_vertices, tmp_path / "spool")
    expected = {"smpl_pose": [], "betas": [], "bbox_source": [], "keypoints3d_smpl49": [], "vertices": []}
    frame = 0
    for size in (3, 0, 2):  # chunks of frames with people, and one frame without
        people = [_person(frame + k, k % 2, ("detected", "interpolated")[k % 2]) for k in range(size)]
        for k in range(max(size, 1)):
            results.add_frame(f"{frame + k:06d}" + "é" * k, (1080, 1920), has_person=size > 0)
        outputs, body = _chunk(rng, people)
        results.add_people(people, outputs, body)
        if people:
            expected["smpl_pose"].append(body.pose_aa)
            expected["betas"].append(outputs.betas)
            expected["bbox_source"] += [p.source for p in people]
            expected["keypoints3d_smpl49"].append(body.j49)
            expected["vertices"].append(body.vertices)
        frame += max(size, 1)
    results.write(tmp_path / "results.npz", 25.0)
    assert not (tmp_path / "spool").exists()

    data = np.load(tmp_path / "results.npz")
    pose = np.concatenate(expected["smpl_pose"]).astype(np.float32)
    np.testing.assert_array_equal(data["smpl_pose"], pose)
    np.testing.assert_array_equal(data["global_orient"], pose[:, :3])
    np.testing.assert_array_equal(data["body_pose"], pose[:, 3:].reshape(-1, 23, 3))
    np.testing.assert_array_equal(data["betas"], np.concatenate(expected["betas"]).astype(np.float32))
    np.testing.assert_array_equal(
        data["keypoints3d_smpl49"], np.concatenate(expected["keypoints3d_smpl49"]).astype(np.float32)
    )
    assert data["bbox_source"].tolist() == expected["bbox_source"]
    assert data["frame_names"].tolist() == ["000000", "000001é", "000002éé", "000003", "000004", "000005é"]
    assert data["frame_has_person"].tolist() == [True, True, True, False, True, True]
    assert data["frames_without_person"].tolist() == [3]
    assert data["frame_size_hw"].shape == (6, 2) and data["frame_index"].dtype == np.int64
    assert float(data["fps"]) == 25.0
    assert ("vertices" in data.files) == save_vertices
    if save_vertices:
        np.testing.assert_array_equal(
            data["vertices"], np.concatenate(expected["vertices"]).astype(np.float32)
        )
    arrays = results.arrays(25.0)  # read back for consumers that need the whole video (the animation export)
    assert set(arrays) == set(data.files) and arrays["keypoints3d_smpl24"].shape == (5, 24, 3)
    assert results.frames_per_track() == {0: 3, 1: 2} and results.box_source_counts() == {
        "detected": 3,
        "interpolated": 2,
    }
    # the project's restricted reader and --from-results read it too
    assert load_npz(tmp_path / "results.npz")["person_id"].tolist() == [0, 1, 0, 0, 1]
    replay = Replay(tmp_path / "results.npz")
    assert replay.people(None)[4][0].pid == 0
    replayed = replay.outputs([_person(4, 0)])  # frame 4's person 0 is row 3; in the network's form
    assert type(replayed) is CropPredictions and replayed.rotmat.shape == (1, 24, 3, 3)
    np.testing.assert_array_equal(replayed.betas, data["betas"][3:4].astype(np.float64))
    np.testing.assert_array_equal(replayed.cam, data["pred_cam"][3:4].astype(np.float64))


def test_results_without_any_person_keep_the_field_shapes(tmp_path):
    results = DemoResults(False, tmp_path / "spool")
    results.add_frame("a.png", (10, 20), has_person=False)
    results.write(tmp_path / "results.npz", 0.0)
    data = np.load(tmp_path / "results.npz")
    assert data["smpl_pose"].shape == (0, 72) and data["keypoints2d_j14"].shape == (0, 14, 2)
    assert data["bbox_source"].shape == (0,) and data["frames_without_person"].tolist() == [0]
