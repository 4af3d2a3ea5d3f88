"""The profile and monitoring JSON files (``runtime.*_output_path``), rewritten atomically every
diagnostic interval and at shutdown."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from perception_core import diagnostics
from perception_core.atomic import write_json
from perception_core.metrics import Monitor

from .node_log import NodeLog


class Reports:
    def __init__(self, values: Mapping[str, Any], node_name: str, monitor: Monitor, log: NodeLog) -> None:
        self.values = values
        self.node_name = node_name
        self.monitor = monitor
        self.log = log

    def write(self, document: dict[str, Any], state: diagnostics.State) -> None:
        """Both files from the monitoring document and the health state (a failure is logged)."""
        try:
            if self.values['runtime.enable_profiling']:
                write_json(self.values['runtime.profile_output_path'], {
                    'node': self.node_name, 'backend': state.backend, 'wall_time': time.time(),
                    'stages': self.monitor.profile.document()})
            if self.values['runtime.enable_monitoring']:
                write_json(self.values['runtime.monitoring_output_path'], {
                    'node': self.node_name, 'backend': state.backend, 'wall_time': time.time(), **document,
                    'degraded': state.degraded, 'processing_rate_hz': state.processing_rate_hz,
                    'overruns': state.overruns, 'gpu_memory_bytes': state.gpu_memory_bytes,
                    'memory_limit_bytes': state.memory_limit_bytes, 'power_mode': state.power_mode})
        except OSError as exc:
            self.log.throttled('metrics_file', f'cannot write metrics: {exc}', time.monotonic())
