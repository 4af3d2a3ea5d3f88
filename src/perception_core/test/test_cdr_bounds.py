"""The Detection2DArray writer's layout cache stays bounded whatever frame_ids arrive (issue 14):
it kept one compiled layout per frame_id length, 7.8 MB for 4,000 lengths, never released."""

from __future__ import annotations

import tracemalloc

import numpy as np

from perception_core import cdr
from perception_core.cdr import DetectionArrays, Header
from perception_core.decode import Detections

CLASSES = ['cup', 'bottle', 'box', 'ball', 'banana', 'a', 'hammer_with_a_long_name']


def detections(count: int) -> Detections:
    rng = np.random.default_rng(count)
    corners = rng.uniform(0, 600, (count, 2)).astype(np.float32)
    return Detections(np.concatenate([corners, corners + 40], axis=1),
                      np.linspace(0.9, 0.1, count, dtype=np.float32), rng.integers(0, len(CLASSES), count))


def cached_layouts(write: DetectionArrays) -> int:
    return sum(len(per_length) for per_length in write._layouts.values())


def test_memory_stays_bounded_over_4000_frame_id_lengths():
    write, frame = DetectionArrays(CLASSES), detections(12)
    write(Header(1, 2, 'warm-up'), frame)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for length in range(4000):
            header = Header(1, 2, 'f' * length)
            assert cdr.read_header(write(header, frame)) == header  # the reader keeps nothing either
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 256 * 1024, f'{grown} bytes kept after 4,000 frame_id lengths'
    assert len(write._layouts) == cdr.FRAME_ID_LENGTHS_KEPT
    # the most a kept frame_id length holds: start mod 8 x classes x id lengths ("0".."11")
    assert cached_layouts(write) <= cdr.FRAME_ID_LENGTHS_KEPT * 2 * len(CLASSES) * 2


def test_a_frame_id_length_evicted_and_seen_again_is_written_the_same():
    write, frame = DetectionArrays(CLASSES), detections(9)
    first = write(Header(7, 8, 'camera'), frame)
    for length in range(cdr.FRAME_ID_LENGTHS_KEPT + 3):
        write(Header(7, 8, 'x' * (20 + length)), frame)
    fresh = DetectionArrays(CLASSES)(Header(7, 8, 'camera'), frame)
    assert write(Header(7, 8, 'camera'), frame) == first == fresh


def test_the_frame_id_in_use_stays_cached_while_others_come_and_go():
    """Least recently used goes first: the camera's frame_id, seen every frame, is never recompiled."""
    write, frame = DetectionArrays(CLASSES), detections(5)
    write(Header(1, 0, 'camera_optical_frame'), frame)
    kept = next(iter(write._layouts.values()))
    for length in range(5 * cdr.FRAME_ID_LENGTHS_KEPT):
        write(Header(1, 0, 'x' * length + '_other'), frame)
        write(Header(1, 0, 'camera_optical_frame'), frame)
    assert kept in write._layouts.values()
