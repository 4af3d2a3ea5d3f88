from __future__ import annotations

import pytest

try:  # make test promises both (std_msgs from the ROS 2 wheels, vision_msgs built by make)
    import std_msgs.msg as std_msgs
    import vision_msgs.msg  # noqa: F401
except ImportError as error:
    pytest.fail(f'{error.name} is missing ({error}): make setup installs the ROS 2 wheels and make build '
                'builds vision_msgs', pytrace=False)

from isaac_trt_perception.messages import label_info, vision_types


def test_label_info():
    msg = label_info(vision_types(), std_msgs.Header(), ['cup', 'bottle'], 0.3)
    assert [(c.class_id, c.class_name) for c in msg.class_map] == [(0, 'cup'), (1, 'bottle')]
    assert msg.threshold == pytest.approx(0.3)
