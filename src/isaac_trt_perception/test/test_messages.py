from __future__ import annotations

import pytest

from isaac_trt_perception.messages import label_info, vision_types

pytest.importorskip('vision_msgs.msg', reason='vision_msgs is not built (make build)')
std_msgs = pytest.importorskip('std_msgs.msg')


def test_label_info():
    msg = label_info(vision_types(), std_msgs.Header(), ['cup', 'bottle'], 0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, 'cup'), (1, 'bottle')]
    assert msg.threshold == pytest.approx(0.3)
