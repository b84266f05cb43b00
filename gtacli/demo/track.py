"""Person tracks over a whole sequence: identities that survive missed frames and detector fragments.

The demo detects every frame first, then calls `track_sequence` once with all detections, so a track can be
judged with hindsight (confirmed or dropped, gaps filled) before any mesh is computed. Per frame:

1. *containment*: a box lying mostly inside a larger box of the same frame is a body part of it (HOG fires on
   legs and torsos) and is dropped;
2. *confirmed tracks first*: each track predicts its box with constant velocity (centre only) and takes the
   detection that overlaps the prediction best (IoU >= `iou_threshold`), or, for fast motion, the nearest one of
   similar height (centre distance < `center_gate` x track height);
3. *body parts*: an unmatched box that lies mostly inside a confirmed track's box, or is much shorter than a
   confirmed person it stands beside (height < `part_height_ratio` x theirs, vertical extent within theirs,
   horizontally within `part_side_gap` x their width) is a fragment, not a person. A fragment inside a confirmed
   track that found no whole-body box keeps that track alive at its predicted box (source "predicted");
4. tentative tracks take the remaining boxes the same way, and boxes left over start tentative tracks;
5. a track not seen for more than `max_missed` frames ends; a tentative one ends after `TENTATIVE_MAX_MISSED`.

After the last frame: tracks with fewer than `min_hits` detections are dropped (never confirmed); with
`max_people`, each frame keeps the tracks detected in the most frames; frames missed inside a track get a box
interpolated linearly between its neighbours (source "interpolated"), so the mesh does not blink.
Identities are numbered 0, 1, ... in order of first appearance.

Known limit: a person shorter than `part_height_ratio` x a confirmed neighbour standing right beside them (a small
child next to an adult) is taken for a body part of the neighbour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from gtacli.demo.detect import Detections, iou_xywh

DEFAULT_MAX_MISSED_S = 1.0  # a track survives this long without a detection (frames = round(fps x this))
MIN_HITS = 3  # detections before a track counts as a person
TENTATIVE_MAX_MISSED = 1  # an unconfirmed track ends after this many misses
IOU_THRESHOLD = 0.3  # minimum IoU with the predicted box
CENTER_GATE = 0.5  # or: centre distance < this x track height ...
HEIGHT_RATIO_GATE = (0.67, 1.5)  # ... with a height ratio in this range
INSIDE_FRACTION = 0.6  # a box with this share of its area inside another ...
PART_AREA_RATIO = 0.6  # ... and at most this share of its area is a part of it
PART_HEIGHT_RATIO = 0.6  # a box shorter than this x a confirmed neighbour's height ...
PART_VERTICAL_INSIDE = 0.8  # ... with this share of its height within the neighbour's vertical extent ...
PART_SIDE_GAP = 0.75  # ... and at most this x the neighbour's width away from it, is a body part
VELOCITY_MOMENTUM = 0.5  # velocity = this x old + (1 - this) x newly measured (per frame)

SOURCES = ("detected", "predicted", "interpolated", "given")


@dataclass
class TrackConfig:
    max_missed: int = 12  # frames
    min_hits: int = MIN_HITS
    max_people: Optional[int] = None
    iou_threshold: float = IOU_THRESHOLD
    center_gate: float = CENTER_GATE
    part_height_ratio: float = PART_HEIGHT_RATIO
    part_side_gap: float = PART_SIDE_GAP

    @staticmethod
    def for_fps(fps: float, max_missed_s: float = DEFAULT_MAX_MISSED_S, **kwargs) -> TrackConfig:
        return TrackConfig(max_missed=max(1, int(round(fps * max_missed_s))), **kwargs)


@dataclass
class TrackedBox:
    """One person in one frame: `box` (4,) xywh px, detector `score` (0 when not detected), `source` in SOURCES."""

    track_id: int
    box: np.ndarray
    score: float
    source: str


@dataclass
class _Track:
    key: int
    entries: Dict[int, TrackedBox] = field(default_factory=dict)  # frame -> entry (detected / predicted)
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # centre px per frame
    last_frame: int = -1
    last_box: np.ndarray = field(default_factory=lambda: np.zeros(4))
    hits: int = 0
    missed: int = 0

    def predict(self, frame: int) -> np.ndarray:
        box = self.last_box.copy()
        box[:2] += self.velocity * (frame - self.last_frame)
        return box

    def add(self, frame: int, box: np.ndarray, score: float, source: str) -> None:
        if source == "detected":
            if self.hits:
                step = (box[:2] + box[2:] / 2 - self.last_box[:2] - self.last_box[2:] / 2) / (
                    frame - self.last_frame
                )
                momentum = VELOCITY_MOMENTUM if self.hits > 1 else 0.0  # the first step sets the velocity
                self.velocity = momentum * self.velocity + (1 - momentum) * step
            self.hits += 1
        self.entries[frame] = TrackedBox(self.key, np.asarray(box, np.float64), float(score), source)
        self.last_frame, self.last_box, self.missed = frame, np.asarray(box, np.float64), 0


def inside_fraction(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,M): share of each box a's area (N,4 xywh) that lies inside box b (M,4)."""
    a, b = np.asarray(a, np.float64).reshape(-1, 4), np.asarray(b, np.float64).reshape(-1, 4)
    iw = np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2]) - np.maximum(
        a[:, None, 0], b[None, :, 0]
    )
    ih = np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3]) - np.maximum(
        a[:, None, 1], b[None, :, 1]
    )
    inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
    return inter / np.maximum(a[:, 2] * a[:, 3], 1e-12)[:, None]


def contained_parts(boxes: np.ndarray) -> np.ndarray:
    """(K,) bool: boxes lying mostly (`INSIDE_FRACTION`) inside a box of at least 1/`PART_AREA_RATIO` their area."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    area = boxes[:, 2] * boxes[:, 3]
    inside = inside_fraction(boxes, boxes)
    smaller = area[:, None] <= PART_AREA_RATIO * area[None, :]
    np.fill_diagonal(inside, 0.0)
    return ((inside >= INSIDE_FRACTION) & smaller).any(axis=1)


def _inside_and_smaller(box: np.ndarray, person: np.ndarray) -> bool:
    frac = float(inside_fraction(box, person)[0, 0])
    return frac >= INSIDE_FRACTION and box[2] * box[3] <= PART_AREA_RATIO * person[2] * person[3]


def is_body_part(box: np.ndarray, person: np.ndarray, config: TrackConfig) -> bool:
    """A box is a body part of `person` (both xywh) when mostly inside it and smaller, or much shorter and beside it."""
    if _inside_and_smaller(box, person):
        return True
    if box[3] >= config.part_height_ratio * person[3]:
        return False
    top, bottom = max(box[1], person[1]), min(box[1] + box[3], person[1] + person[3])
    if (bottom - top) < PART_VERTICAL_INSIDE * box[3]:
        return False
    gap = max(person[0] - (box[0] + box[2]), box[0] - (person[0] + person[2]), 0.0)
    return gap <= config.part_side_gap * person[2]


def _match(
    tracks: List[_Track], frame: int, boxes: np.ndarray, free: np.ndarray, config: TrackConfig
) -> Dict:
    """Greedy best-first matching of tracks to the free boxes; returns {track index: box index}."""
    if not tracks or not free.any():
        return {}
    predicted = np.stack([t.predict(frame) for t in tracks])
    overlap = iou_xywh(predicted, boxes)
    pc = predicted[:, :2] + predicted[:, 2:] / 2
    bc = boxes[:, :2] + boxes[:, 2:] / 2
    dist = np.linalg.norm(pc[:, None] - bc[None], axis=2) / np.maximum(predicted[:, None, 3], 1e-9)
    ratio = boxes[None, :, 3] / np.maximum(predicted[:, None, 3], 1e-9)
    near = (dist < config.center_gate) & (ratio >= HEIGHT_RATIO_GATE[0]) & (ratio <= HEIGHT_RATIO_GATE[1])
    # IoU matches rank first; distance-only matches rank below any IoU match, nearest first
    score = np.where(overlap >= config.iou_threshold, 1.0 + overlap, np.where(near, 1.0 - dist, -1.0))
    score[:, ~free] = -1.0
    for i in range(len(tracks)):  # a body part of the predicted person does not continue the track
        for j in np.flatnonzero(score[i] >= 0):
            if _inside_and_smaller(boxes[j], predicted[i]):
                score[i, j] = -1.0
    pairs = sorted(((score[i, j], i, j) for i in range(len(tracks)) for j in range(len(boxes))), reverse=True)
    out: Dict[int, int] = {}
    used = set()
    for value, i, j in pairs:
        if value < 0:
            break
        if i not in out and j not in used:
            out[i] = j
            used.add(j)
    return out


def track_sequence(frames: Sequence[Detections], config: TrackConfig) -> List[List[TrackedBox]]:
    """Per frame, the people found: a list of `TrackedBox` (see the module docstring for the rules)."""
    if len(frames) < config.min_hits:  # a short sequence cannot confirm anyone by count; trust its detections
        config = TrackConfig(**{**config.__dict__, "min_hits": max(1, len(frames))})
    confirmed: List[_Track] = []
    tentative: List[_Track] = []
    finished: List[_Track] = []
    next_key = 0
    for frame, dets in enumerate(frames):
        boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)
        scores = np.asarray(dets.scores, np.float64).reshape(-1)
        free = ~contained_parts(boxes)
        for i, j in _match(confirmed, frame, boxes, free, config).items():
            confirmed[i].add(frame, boxes[j], scores[j], "detected")
            free[j] = False
        # body parts of confirmed people (their box this frame, or their prediction)
        current = [t.entries[frame].box if frame in t.entries else t.predict(frame) for t in confirmed]
        for j in np.flatnonzero(free):
            owners = [k for k, person in enumerate(current) if is_body_part(boxes[j], person, config)]
            if owners:
                free[j] = False
                for k in owners:  # a part inside a person who has no whole-body box keeps them alive
                    track = confirmed[k]
                    if (
                        frame not in track.entries
                        and inside_fraction(boxes[j], current[k])[0, 0] >= INSIDE_FRACTION
                    ):
                        track.add(frame, current[k], scores[j], "predicted")
        for i, j in _match(tentative, frame, boxes, free, config).items():
            tentative[i].add(frame, boxes[j], scores[j], "detected")
            free[j] = False
        for j in np.flatnonzero(free):
            track = _Track(next_key)
            next_key += 1
            track.add(frame, boxes[j], scores[j], "detected")
            tentative.append(track)
        # bookkeeping: misses, promotion, ends
        for track in confirmed + tentative:
            if frame not in track.entries:
                track.missed += 1
        promoted = [t for t in tentative if t.hits >= config.min_hits]
        confirmed += promoted
        tentative = [t for t in tentative if t.hits < config.min_hits and t.missed <= TENTATIVE_MAX_MISSED]
        finished += [t for t in confirmed if t.missed > config.max_missed]
        confirmed = [t for t in confirmed if t.missed <= config.max_missed]
    finished += confirmed
    return _finish([t for t in finished if t.hits >= config.min_hits], len(frames), config.max_people)


def _finish(tracks: List[_Track], num_frames: int, max_people: Optional[int]) -> List[List[TrackedBox]]:
    """Number tracks by first appearance, apply `max_people`, interpolate the gaps inside each track."""
    tracks = sorted(tracks, key=lambda t: (min(t.entries), t.key))
    per_frame: List[List[Tuple[_Track, TrackedBox]]] = [[] for _ in range(num_frames)]
    for new_id, track in enumerate(tracks):
        for entry in track.entries.values():
            entry.track_id = new_id
        for frame, entry in _with_gaps_filled(track.entries, new_id).items():
            per_frame[frame].append((track, entry))
    out: List[List[TrackedBox]] = []
    for people in per_frame:
        if max_people is not None and len(people) > max_people:  # the most persistent tracks stay
            people = sorted(people, key=lambda p: (-p[0].hits, p[1].track_id))[:max_people]
        out.append(sorted((entry for _, entry in people), key=lambda e: e.track_id))
    return out


def _with_gaps_filled(entries: Dict[int, TrackedBox], track_id: int) -> Dict[int, TrackedBox]:
    """The track's entries plus a linearly interpolated box for every frame missed between two of them."""
    frames = sorted(entries)
    out = dict(entries)
    for a, b in zip(frames[:-1], frames[1:]):
        for frame in range(a + 1, b):
            t = (frame - a) / (b - a)
            box = (1 - t) * entries[a].box + t * entries[b].box
            out[frame] = TrackedBox(track_id, box, 0.0, "interpolated")
    return out


def given_boxes(frames: Sequence[Detections]) -> List[List[TrackedBox]]:
    """User boxes: no tracking, ids by position in the frame's list, source "given"."""
    return [
        [TrackedBox(k, box, float(score), "given") for k, (box, score) in enumerate(zip(d.boxes, d.scores))]
        for d in frames
    ]
