"""Frame sources (image, folder, video) and the overlay video writer."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from video_frames import decoded_frames

from gtacli.errors import BadFileError, MissingFileError
from gtacli.io.video import (
    DEFAULT_FPS,
    VideoSink,
    natural_key,
    open_frames,
    probe_video,
    read_image,
    settle_video_fps,
)


def _write_video(path, frames, fps):
    writer = cv2.VideoWriter(
        str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (frames[0].shape[1], frames[0].shape[0])
    )
    for frame in frames:
        writer.write(frame)
    writer.release()


def test_folder_is_read_in_natural_order_and_non_images_skipped(tmp_path):
    for i in (10, 2, 1):
        cv2.imwrite(str(tmp_path / f"img{i}.png"), np.full((8, 8, 3), i, np.uint8))
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frames(tmp_path)
    assert source.kind == "folder"
    frames = list(source)
    assert [name for _, name, _ in frames] == ["img1.png", "img2.png", "img10.png"]
    assert [int(f[0, 0, 0]) for _, _, f in frames] == [1, 2, 10]
    assert natural_key("a2") < natural_key("a10")


def test_empty_folder_and_missing_input_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(BadFileError, match="no images"):
        open_frames(tmp_path / "empty")
    with pytest.raises(MissingFileError):
        open_frames(tmp_path / "nope.mp4")


def test_unreadable_and_empty_videos_are_refused(tmp_path):
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(BadFileError, match="empty"):
        open_frames(empty)
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(b"this is not a video at all" * 100)
    with pytest.raises(BadFileError):
        list(open_frames(garbage))
    broken_image = tmp_path / "broken.jpg"
    broken_image.write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(BadFileError):
        read_image(broken_image)


def test_video_frames_count_and_fps(tmp_path):
    frames = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(7)]
    path = tmp_path / "clip.mp4"
    _write_video(path, frames, 9.0)
    source = open_frames(path)
    assert source.kind == "video" and source.fps == pytest.approx(9.0)
    decoded = list(source)
    assert len(decoded) == 7 and source.frames_read == 7
    assert decoded[3][1] == "000003"
    assert abs(int(decoded[3][2].mean()) - 60) <= 3  # lossy codec, flat grey survives
    assert settle_video_fps(source) is None  # constant rate: nothing to say
    assert source.measured_fps() == pytest.approx(9.0, rel=1e-3)


def test_missing_fps_metadata_falls_back_to_measured_rate():
    from gtacli.io.video import FrameSource

    source = FrameSource(path=None, kind="video", fps=DEFAULT_FPS, fps_note="no fps")  # type: ignore[arg-type]
    source.timestamps_ms = [0.0, 40.0, 80.0, 120.0]
    note = settle_video_fps(source)
    assert source.fps == pytest.approx(25.0) and "25.000" in note


def test_variable_frame_rate_is_reported_and_averaged():
    from gtacli.io.video import FrameSource

    source = FrameSource(path=None, kind="video", fps=30.0, fps_metadata=30.0)  # type: ignore[arg-type]
    source.timestamps_ms = [0.0, 33.3, 100.0, 133.3, 200.0]  # steps of 33 and 67 ms
    note = settle_video_fps(source)
    assert "variable" in note and source.fps == pytest.approx(1000 / 50.0)


def test_sink_writes_count_fps_and_size(tmp_path):
    path = tmp_path / "out.mp4"
    sink = VideoSink(path, 12.0)
    for i in range(5):
        sink.write(np.full((120, 160, 3), 40 * i, np.uint8))
    sink.write(np.zeros((60, 100, 3), np.uint8))  # another size is letterboxed into the first one
    sink.close()
    count, fps, size = probe_video(path)
    assert (count, size) == (6, (160, 120)) and fps == pytest.approx(12.0)


def test_background_sink_writes_the_same_video(tmp_path):
    """Encoding in a thread changes nothing in the file: same frames, same order, same count."""
    rng = np.random.default_rng(0)
    frames = [cv2.resize(rng.integers(0, 255, (15, 20, 3), dtype=np.uint8), (160, 120)) for _ in range(9)]
    paths = {}
    for background in (False, True):
        paths[background] = tmp_path / f"bg{int(background)}.mp4"
        sink = VideoSink(paths[background], 12.0, background=background)
        for frame in frames:
            sink.write(frame)
        sink.close()
        assert sink.frames_written == 9
    np.testing.assert_array_equal(decoded_frames(paths[True]), decoded_frames(paths[False]))


def test_background_sink_reports_an_encoding_error_and_abort_is_quiet(tmp_path):
    sink = VideoSink(tmp_path / "bad.mp4", 12.0, background=True)
    sink.write(np.zeros((120, 160, 3), np.uint8))
    sink.write(np.zeros((120, 160, 3), np.float64))  # OpenCV refuses to encode float frames (in the thread)
    with pytest.raises(cv2.error):
        sink.close()
    assert sink.frames_written == 1 and sink.writer is None
    other = VideoSink(tmp_path / "aborted.mp4", 12.0, background=True)
    for _ in range(3):
        other.write(np.zeros((120, 160, 3), np.uint8))
    other.write(np.zeros((120, 160, 3), np.float64))
    other.abort()  # after an error elsewhere: stops the thread, closes the file, raises nothing
    assert other.writer is None and other._thread is None


def test_real_video_metadata(shared_assets):
    source = open_frames(shared_assets / "single_person_demo.mp4")
    assert source.fps == pytest.approx(12.0)
    assert source.frame_count_hint == 40  # PROVENANCE.md: 40 frames, 12 fps, 1080x1920
    count, _, size = probe_video(shared_assets / "single_person_demo.mp4")
    assert count == 40 and size == (1080, 1920)


def test_implausible_fps_metadata_uses_the_default_rate(tmp_path):
    path = tmp_path / "fast.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 1000.0, (64, 48))
    for i in range(5):
        writer.write(np.full((48, 64, 3), 40 * i, np.uint8))
    writer.release()
    source = open_frames(path)
    assert source.fps == DEFAULT_FPS and "fps" in source.fps_note  # 1000 fps metadata is not believed
    assert len(list(source)) == 5
    note = settle_video_fps(source)  # timestamps say 1000 fps too: still the default
    assert source.fps == DEFAULT_FPS and "implausible" in note
