from __future__ import annotations

import numpy as np
import pytest

from isaac_trt_perception.decode import Detections
from isaac_trt_perception.messages import detection_array, label_info, vision_types

vision_msgs = pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not built (make build)')
std_msgs = pytest.importorskip('std_msgs.msg')


def test_detection_array_fields():
    header = std_msgs.Header(frame_id='camera_optical')
    header.stamp.sec, header.stamp.nanosec = 12, 345
    detections = Detections(np.array([[10, 20, 110, 70], [0, 0, 5, 5]], np.float32),
                            np.array([0.9, 0.4], np.float32), np.array([2, 0]))
    msg = detection_array(vision_types(), header, detections, ['cup', 'bottle', 'box'])
    assert isinstance(msg, vision_msgs.Detection2DArray)
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.nanosec == 345
    first = msg.detections[0]
    assert first.id == '0' and msg.detections[1].id == '1'
    assert first.results[0].hypothesis.class_id == 'box'
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (60.0, 45.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (100.0, 50.0)
    assert first.header.frame_id == 'camera_optical'
    empty = detection_array(vision_types(), header, Detections.empty(), ['cup'])
    assert empty.detections == []


def test_label_info():
    msg = label_info(vision_types(), std_msgs.Header(), ['cup', 'bottle'], 0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, 'cup'), (1, 'bottle')]
    assert msg.threshold == pytest.approx(0.3)
