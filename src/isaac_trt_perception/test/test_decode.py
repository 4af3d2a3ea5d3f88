from __future__ import annotations

import numpy as np
import pytest

from isaac_trt_perception.bundle import InputSpec, Postprocess
from isaac_trt_perception.decode import DecodeError, Thresholds, decode, nms
from isaac_trt_perception.preprocess import plan_transform

SPEC = InputSpec(name='images', height=256, width=320)
T = plan_transform(480, 640, SPEC)   # scale 0.5, pad_y 8
LOOSE = Thresholds(0.3, 0.5, 100)


def dense(rows):
    return [np.asarray(rows, np.float32)[None]]


def test_dense_boxes_map_to_image_pixels_sorted_by_score():
    out = decode(dense([[10, 18, 50, 58, 0.4, 0.0], [100, 108, 200, 208, 0.0, 0.9]]), 'dense_boxes_scores',
                 2, T, LOOSE)
    np.testing.assert_allclose(out.boxes, [[200, 200, 400, 400], [20, 20, 100, 100]])
    np.testing.assert_allclose(out.scores, [0.9, 0.4])
    assert out.class_ids.tolist() == [1, 0]


def test_nms_is_class_aware_and_limits():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [1, 1, 11, 11], [50, 50, 60, 60]], np.float32)
    scores = np.array([0.9, 0.8, 0.7, 0.6], np.float32)
    classes = np.array([0, 0, 1, 0])
    assert nms(boxes, scores, classes, 0.5, 100).tolist() == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.5, 2).tolist() == [0, 2]
    assert nms(boxes, scores, classes, 0.99, 100).tolist() == [0, 1, 2, 3]


def test_thresholds_and_bundle_defaults():
    rows = [[10, 18, 50, 58, 0.25, 0.0], [60, 68, 90, 98, 0.5, 0.0]]
    assert len(decode(dense(rows), 'dense_boxes_scores', 2, T, LOOSE)) == 1
    assert len(decode(dense(rows), 'dense_boxes_scores', 2, T, Thresholds(0.2, 0.5, 100))) == 2
    assert len(decode(dense(rows), 'dense_boxes_scores', 2, T, Thresholds(0.2, 0.5, 1))) == 1
    defaults = Postprocess(score_threshold=0.3, nms_iou_threshold=0.45, max_detections=50)
    assert Thresholds.resolve(defaults) == Thresholds(0.3, 0.45, 50)
    assert Thresholds.resolve(defaults, 0.6, 0.7, 5) == Thresholds(0.6, 0.7, 5)
    assert Thresholds.resolve(defaults, 0.0).score == 0.0


def test_boxes_in_the_letterbox_border_are_dropped():
    out = decode(dense([[0, 0, 320, 6, 0.9], [0, 0, 320, 20, 0.8]]), 'dense_boxes_scores', 1, T, LOOSE)
    np.testing.assert_allclose(out.boxes, [[0, 0, 640, 24]])


def test_class_box_format():
    logits = np.array([[0.0, 4.0, 0.0]], np.float32)
    box = np.array([[0.25, 0.5, 0.75, 1.0]], np.float32)   # of the 320x256 network input
    out = decode([logits, box], 'class_box', 3, T, LOOSE)
    assert out.class_ids.tolist() == [1]
    assert out.scores[0] == pytest.approx(np.exp(4) / (np.exp(4) + 2))
    np.testing.assert_allclose(out.boxes, [[160, 240, 480, 480]])
    assert len(decode([logits, box], 'class_box', 3, T, Thresholds(0.99, 0.5, 10))) == 0


@pytest.mark.parametrize(('outputs', 'fmt', 'message'), [
    ([np.zeros((1, 5, 7), np.float32)], 'dense_boxes_scores', r'\[B, N, 4 \+ 2\]'),
    ([np.zeros((1, 3), np.float32)], 'class_box', 'two outputs'),
    ([np.zeros((1, 3)), np.zeros((1, 5))], 'class_box', r'\[B, 2\] and \[B, 4\]'),
])
def test_wrong_output_shapes_are_decode_errors(outputs, fmt, message):
    with pytest.raises(DecodeError, match=message):
        decode(outputs, fmt, 2, T, LOOSE)


def greedy_nms(boxes, scores, class_ids, iou_threshold, limit):
    """The textbook loop, one box at a time: what nms() must equal across its blocks."""
    def iou(a, b):
        w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
        union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - w * h
        return w * h / max(union, 1e-9)
    keep = []
    for i in sorted(range(len(scores)), key=lambda k: -scores[k]):  # sorted() is stable: ties by index
        if len(keep) < limit and all(class_ids[i] != class_ids[k] or iou(boxes[i], boxes[k]) <= iou_threshold
                                     for k in keep):
            keep.append(i)
    return keep


@pytest.mark.parametrize('count', [0, 5, 64, 65, 300])
def test_nms_equals_the_greedy_loop_across_blocks(count):
    rng = np.random.default_rng(count)
    xy = rng.uniform(0, 200, (count, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(5, 60, (count, 2))], 1).astype(np.float32)
    scores = rng.choice([0.3, 0.5, 0.7, 0.9], count).astype(np.float32)  # ties too
    classes = rng.integers(0, 3, count)
    for threshold, limit in ((0.5, 100), (0.3, 7), (0.9, 1000)):
        expected = greedy_nms(boxes.tolist(), scores.tolist(), classes.tolist(), threshold, limit)
        assert nms(boxes, scores, classes, threshold, limit).tolist() == expected
