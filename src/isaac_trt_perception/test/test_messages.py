from __future__ import annotations

import numpy as np
import pytest

from isaac_trt_perception.decode import Detections
from isaac_trt_perception.messages import DetectionArrays, label_info, vision_types

vision_msgs = pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not built (make build)')
std_msgs = pytest.importorskip('std_msgs.msg')


def test_detection_array_fields():
    header = std_msgs.Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    detections = Detections(np.array([[10, 20, 110, 70], [0, 0, 5, 5]], np.float32),
                            np.array([0.9, 0.4], np.float32), np.array([2, 0]))
    build = DetectionArrays(vision_types(), ['cup', 'bottle', 'box'])
    msg = build(header, detections)
    assert isinstance(msg, vision_msgs.Detection2DArray)
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.nanosec == 345
    first = msg.detections[0]
    assert first.id == '0' and msg.detections[1].id == '1'
    assert first.results[0].hypothesis.class_id == 'box'
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (60.0, 45.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (100.0, 50.0)
    assert first.header.frame_id == 'camera_optical'
    empty = DetectionArrays(vision_types(), ['cup'])(header, Detections.empty())
    assert empty.detections == []


def test_detection_arrays_refill_their_messages_without_leftovers():
    """The builder reuses its sub-messages: a later, smaller frame carries only its own detections,
    with its own header, and a larger one grows the ids on."""
    build = DetectionArrays(vision_types(), ['cup', 'bottle'])
    three = Detections(np.array([[0, 0, 10, 10], [5, 5, 25, 15], [1, 2, 3, 4]], np.float32),
                       np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 0]))
    build(std_msgs.Header(frame_id='first'), three)
    one = Detections(np.array([[2, 4, 6, 12]], np.float32), np.array([0.6], np.float32), np.array([1]))
    msg = build(std_msgs.Header(frame_id='second'), one)
    assert [d.id for d in msg.detections] == ['0'] and msg.header.frame_id == 'second'
    only = msg.detections[0]
    assert only.header.frame_id == 'second' and only.results[0].hypothesis.class_id == 'bottle'
    assert only.results[0].hypothesis.score == pytest.approx(0.6)
    assert (only.bbox.center.position.x, only.bbox.center.position.y, only.bbox.size_x, only.bbox.size_y) == (
        4.0, 8.0, 4.0, 8.0)
    assert len(only.results) == 1
    msg = build(std_msgs.Header(frame_id='third'), three)
    assert [d.id for d in msg.detections] == ['0', '1', '2']
    assert [d.results[0].hypothesis.class_id for d in msg.detections] == ['cup', 'bottle', 'cup']


def test_label_info():
    msg = label_info(vision_types(), std_msgs.Header(), ['cup', 'bottle'], 0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, 'cup'), (1, 'bottle')]
    assert msg.threshold == pytest.approx(0.3)
