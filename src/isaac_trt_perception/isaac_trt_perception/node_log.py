"""The node's log: the ROS logger, mirrored to ``logging.log_path``, with per-kind throttling of
the errors a bad stream repeats every frame."""

from __future__ import annotations

import logging
from pathlib import Path

from rclpy.impl.rcutils_logger import RcutilsLogger
from rclpy.logging import LoggingSeverity

from perception_core.params import LOG_LEVELS

ERROR_LOG_PERIOD_S = 5.0  # one error line per kind of failure per period; the rest are counted


def severity(level: str) -> LoggingSeverity:
    """A deployment ``logging.level`` (``WARNING``, ``INFO``...) as rclpy's severity."""
    return LoggingSeverity[LOG_LEVELS[level].upper()]


class NodeLog:
    """The ROS logger, mirrored to ``logging.log_path``, with per-kind throttling of errors."""

    def __init__(self, ros_logger: RcutilsLogger, name: str, path: str, level: str, *,
                 node: str = '') -> None:
        """``name`` names the Python logger behind the file (one per node: the ROS logger's name);
        ``node``, the fully qualified node name, starts every file line after the level, as the
        ROS console names the node, so the lines of two instances are told apart."""
        self.ros = ros_logger
        self.file = logging.getLogger(name)
        self.file.propagate = False
        self.file.setLevel(logging.DEBUG)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
            who = f'[{node}] ' if node else ''
            handler.setFormatter(logging.Formatter(f'%(asctime)s %(levelname)s {who}%(message)s'))
            handler.setLevel(logging.DEBUG if level == 'DEBUG' else logging.INFO)
            self.file.addHandler(handler)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def debug(self, message: str) -> None:
        self.ros.debug(message)
        self.file.debug(message)

    def info(self, message: str) -> None:
        self.ros.info(message)
        self.file.info(message)

    def warn(self, message: str) -> None:
        self.ros.warning(message)
        self.file.warning(message)

    def error(self, message: str) -> None:
        self.ros.error(message)
        self.file.error(message)

    def throttled(self, kind: str, message: str, now: float, level: str = 'error') -> None:
        """``message`` at ``level`` (a method of this class), once per kind per period."""
        if now - self._last.get(kind, -1e9) < ERROR_LOG_PERIOD_S:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        getattr(self, level)(message + (f' ({more} more like it not logged)' if more else ''))

    def close(self) -> None:
        for handler in list(self.file.handlers):
            handler.close()
            self.file.removeHandler(handler)
