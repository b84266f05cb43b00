"""Track labels stay inside the frame (issue 23: 'id 0 (predicted)' ran off the right edge)."""

from __future__ import annotations

import numpy as np
import pytest

from gtacli.demo.config import Person
from gtacli.demo.output import BOX_COLOR_BGR, BOX_THICKNESS_PER_1000_PX, draw_boxes


def _person(box, source="predicted"):
    box = np.asarray(box, np.float64)
    return Person(
        frame=0, box=box, score=1.0, pid=0, source=source, center=box[:2] + box[2:] / 2, side=box[3]
    )


@pytest.mark.parametrize(
    "box",
    [
        (560, 200, 80, 150),  # at the right edge: the label is wider than the box
        (0, 0, 80, 150),  # at the top-left corner: no room above
        (300, 400, 100, 80),  # at the bottom edge
    ],
)
def test_a_label_is_drawn_whole_inside_the_image(box):
    """The label drawn on the frame equals the label drawn on a frame with room around it, moved inside."""
    height, width = 480, 640
    image = draw_boxes(np.zeros((height, width, 3), np.uint8), [_person(box)])
    # the whole text drawn with room all around (same font, scale and thickness as the overlay's at 640 px)
    import cv2

    thick = max(1, round(BOX_THICKNESS_PER_1000_PX * width / 1000))
    free = np.zeros((400, 1200, 3), np.uint8)
    cv2.putText(free, "id 0 (predicted)", (100, 200), cv2.FONT_HERSHEY_SIMPLEX, 0.5 * thick, BOX_COLOR_BGR, thick,
                cv2.LINE_AA)  # fmt: skip
    painted_free = int((free == BOX_COLOR_BGR).all(axis=-1).sum())
    x, y, w, h = box
    outline = np.zeros_like(image)
    cv2.rectangle(outline, (x, y), (x + w, y + h), BOX_COLOR_BGR, 3, cv2.LINE_AA)
    label_only = (image == BOX_COLOR_BGR).all(axis=-1) & ~(outline > 0).any(axis=-1)
    assert painted_free > 50
    # the whole text is in the frame: at most the pixels under the box outline are hidden
    assert label_only.sum() >= 0.8 * painted_free, (label_only.sum(), painted_free)
