from __future__ import annotations

import pytest

try:  # make test promises rclpy (the ROS 2 wheels): missing is a failure
    from rclpy.logging import LoggingSeverity, get_logger
except ImportError as error:
    pytest.fail(f'rclpy is missing ({error}): make setup installs the ROS 2 wheels', pytrace=False)

from isaac_trt_perception.node_log import NodeLog, severity
from perception_core.params import LOG_LEVELS


def test_every_deployment_level_is_a_ros_severity():
    assert {level: severity(level) for level in LOG_LEVELS} == {
        'DEBUG': LoggingSeverity.DEBUG, 'INFO': LoggingSeverity.INFO, 'WARN': LoggingSeverity.WARN,
        'WARNING': LoggingSeverity.WARN, 'ERROR': LoggingSeverity.ERROR, 'FATAL': LoggingSeverity.FATAL}


def test_a_repeated_error_is_logged_once_per_period_with_a_count(tmp_path):
    log = NodeLog(get_logger('node_log_test'), 'node_log_test', str(tmp_path / 'logs' / 'node.log'), 'INFO')
    try:
        for second in (0.0, 1.0, 2.0, 6.0):
            log.throttled('bad_image.step', f'bad frame at {second}', second)
        log.debug('not at INFO')
    finally:
        log.close()
    lines = (tmp_path / 'logs' / 'node.log').read_text().splitlines()
    assert [line.split(' ', 3)[-1] for line in lines] == [
        'bad frame at 0.0', 'bad frame at 6.0 (2 more like it not logged)']
    assert all(' ERROR ' in line for line in lines)
