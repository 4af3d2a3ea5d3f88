from __future__ import annotations

import numpy as np
import pytest

from perception_core.bundle import InputSpec, OutputSpec, Postprocess
from perception_core.decode import NMS_BLOCK, DecodeError, Thresholds, decode, decoder_for, nms
from perception_core.preprocess import plan_transform

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
    assert nms(boxes, scores, classes, 0.5, 100) == [0, 2, 3]
    assert nms(boxes, scores, classes, 0.5, 2) == [0, 2]
    assert nms(boxes, scores, classes, 0.99, 100) == [0, 1, 2, 3]


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
    """The textbook loop, one box at a time, in float64: what nms() must equal, whether it takes
    a frame's few candidates as lists or many in blocks."""
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
        assert nms(boxes, scores, classes, threshold, limit) == expected


def test_iou_at_the_threshold_does_not_depend_on_the_class():
    # IoU computed in float64 from the boxes as given: the same pair is kept or suppressed alike in
    # every class (shifting classes apart in float32 used to round it differently per class).
    boxes = np.array([[203.75445, 261.02655, 230.34972, 351.09415],
                      [211.19836, 251.3969, 241.94354, 331.48846]], np.float32)
    pair = boxes.astype(np.float64)
    w = min(pair[0, 2], pair[1, 2]) - max(pair[0, 0], pair[1, 0])
    h = min(pair[0, 3], pair[1, 3]) - max(pair[0, 1], pair[1, 1])
    areas = (pair[:, 2] - pair[:, 0]) * (pair[:, 3] - pair[:, 1])
    iou = w * h / (areas.sum() - w * h)
    scores = np.array([0.9, 0.8], np.float32)
    for threshold, kept in ((iou, [0, 1]), (np.nextafter(iou, 0), [0])):
        for cls in (0, 9):
            assert nms(boxes, scores, np.array([cls, cls]), threshold, 100) == kept


def reference_decode(out, classes, transform, thresholds):
    """decode() spelled out: candidates in row-major order, the textbook NMS, the letterbox."""
    rows = out[0]
    row_i, class_i = np.nonzero(rows[:, 4:] >= thresholds.score)
    boxes = rows[row_i, :4].astype(np.float32)
    scores = rows[row_i, 4 + class_i].astype(np.float32)
    keep = greedy_nms(boxes.tolist(), scores.tolist(), class_i.tolist(), thresholds.nms_iou,
                      thresholds.max_detections)
    image_boxes = transform.to_image(boxes[keep])
    real = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
    return image_boxes[real], scores[keep][real], class_i[keep][real]


@pytest.mark.parametrize('seed', range(8))
def test_decode_equals_the_reference_on_random_frames(seed):
    """Clustered boxes on a quarter-pixel grid (exact IoU ties with the threshold), tied scores,
    several classes per row, boxes in the letterbox border, zero-area boxes, empty frames, more
    candidates than one NMS block, the max_detections limit, float16/32/64 outputs."""
    rng = np.random.default_rng(seed)
    candidates, limited = [], 0
    for case in range(40):
        classes = int(rng.integers(1, 6))
        n = int(rng.integers(1, 3 * NMS_BLOCK)) if case % 8 else 0
        out = np.zeros((1, 3 * NMS_BLOCK, 4 + classes), np.float32)
        centres = rng.uniform(-10, 330, (max(1, n // 4), 2))
        xy = centres[rng.integers(0, len(centres), n)] + rng.normal(0, 5, (n, 2))
        wh = rng.uniform(0, 60, (n, 2)) * (rng.random((n, 1)) > 0.05)
        out[0, :n, :4] = np.round(np.concatenate([xy, xy + wh], 1) * 4) / 4
        for _ in range(2):
            out[0, np.arange(n), 4 + rng.integers(0, classes, n)] = rng.choice([0.2, 0.3, 0.5, 0.9], n)
        thresholds = Thresholds(float(rng.choice([0.0, 0.3, 0.5])), float(rng.choice([0.25, 0.5, 0.6])),
                                int(rng.choice([3, 100])))
        out = out.astype(rng.choice([np.float16, np.float32, np.float64]))
        got = decode([out], 'dense_boxes_scores', classes, T, thresholds)
        boxes, scores, class_ids = reference_decode(out, classes, T, thresholds)
        np.testing.assert_array_equal(got.boxes, boxes)
        np.testing.assert_array_equal(got.scores, scores)
        np.testing.assert_array_equal(got.class_ids, class_ids)
        assert (got.boxes.dtype, got.scores.dtype, got.class_ids.dtype) == (np.float32, np.float32, np.int64)
        candidates.append(int(np.count_nonzero(out[0, :, 4:] >= thresholds.score)))
        limited += len(got) == thresholds.max_detections
    assert min(candidates) == 0 and max(candidates) > NMS_BLOCK and limited  # the cases above occurred


# ---- foreign detectors' formats (end to end through ONNX Runtime: test_output_formats.py) -------

# A 640 x 640 network input, Ultralytics' default
NET_SPEC = InputSpec(name='images', height=640, width=640)
T640 = plan_transform(480, 640, NET_SPEC)   # scale 1, pad_y 80


def test_foreign_formats_decode_by_name_or_by_spec():
    rows = np.array([[150, 250, 100, 100, 0.2, 0.9]], np.float32)      # cx, cy, w, h, 2 classes
    normalised = np.concatenate([rows[:, :4] / 640, rows[:, 4:]], 1)[None].astype(np.float32)
    for fmt, outputs in (('yolo_v8', [rows.T[None]]), ('rtdetr', [normalised])):
        by_name = decode(outputs, fmt, 2, T640, LOOSE)
        by_spec = decode(outputs, OutputSpec(fmt, ('o',), normalised=fmt == 'rtdetr'), 2, T640, LOOSE)
        np.testing.assert_allclose(by_name.boxes, [[100, 120, 200, 220]], atol=1e-3)
        np.testing.assert_array_equal(by_name.boxes, by_spec.boxes)
        assert by_name.class_ids.tolist() == [1] and by_name.scores.tolist() == pytest.approx([0.9])


def test_the_workspace_formats_decode_alike_by_spec():
    rows = dense([[10, 18, 50, 58, 0.4, 0.0], [100, 108, 200, 208, 0.0, 0.9]])
    by_name = decode(rows, 'dense_boxes_scores', 2, T, LOOSE)
    spec = OutputSpec('dense_boxes_scores', ('detections',))
    for got in (decode(rows, spec, 2, T, LOOSE), decoder_for(spec, 2)(rows, T, LOOSE)):
        np.testing.assert_array_equal(got.boxes, by_name.boxes)
        np.testing.assert_array_equal(got.class_ids, by_name.class_ids)


def test_foreign_scores_must_exceed_the_threshold():
    """As their reference postprocessing (``score > conf``), unlike the workspace's formats."""
    rows = np.array([[[100, 100, 200, 200, 0.5, 0], [300, 300, 400, 400, 0.6, 1]]], np.float32)
    assert decode([rows], 'yolo_end2end', 2, T640, Thresholds(0.5, 0.5, 10)).scores.tolist() == \
        pytest.approx([0.6])


def test_boxes_scores_labels_options():
    boxes = np.array([[[0.25, 0.25, 0.1, 0.1], [0.5, 0.5, 0.2, 0.2], [0.5, 0.5, 0.2, 0.2]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.7]], np.float32)
    labels = np.array([[1, 0, 2]], np.int64)  # torchvision: 0 = background
    spec = OutputSpec('boxes_scores_labels', ('b', 's', 'l'), boxes='cxcywh', normalised=True, class_offset=1)
    out = decode([boxes, scores, labels], spec, 2, T640, LOOSE)
    assert out.class_ids.tolist() == [0, 1] and out.scores.tolist() == pytest.approx([0.9, 0.7])
    np.testing.assert_allclose(out.boxes, [[128, 48, 192, 112], [256, 176, 384, 304]], atol=1e-3)
    count = np.array([0], np.int64)
    assert len(decode([boxes, scores, labels, count], spec, 2, T640, LOOSE)) == 0


@pytest.mark.parametrize(('outputs', 'fmt', 'message'), [
    ([np.zeros((1, 8400, 84), np.float32)], 'yolo_v8', r'\[1, 4 \+ 80, N\], got \[1, 8400, 84\]'),
    ([np.zeros((1, 84, 8400)), np.zeros(1)], 'yolo_v8', 'one output'),
    ([np.zeros((1, 300, 7), np.float32)], 'yolo_end2end', r'\[1, K, 6\]'),
    ([np.zeros((1, 300, 85), np.float32)], 'rtdetr', r'\[1, Q, 4 \+ 80\]'),
    ([np.zeros((1, 5, 4)), np.zeros((1, 5))], 'boxes_scores_labels', r'got 2 outputs: \[1, 5, 4\], \[1, 5\]'),
    ([np.zeros((1, 5, 4)), np.zeros((1, 6)), np.zeros((1, 5))], 'boxes_scores_labels', 'scores must be'),
    ([np.tile(np.float32([0, 0, 9, 9, 0.9, 80]), (1, 300, 1))], 'yolo_end2end', 'class 80 is outside'),
    ([np.zeros((1, 5, 4))], 'yolo_v9', 'unknown output format'),
])
def test_foreign_shapes_are_decode_errors(outputs, fmt, message):
    with pytest.raises(DecodeError, match=message):
        decode(outputs, fmt, 80, T640, LOOSE)
