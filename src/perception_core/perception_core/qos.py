"""Quality-of-service settings as the deployment YAML and the tools spell them.

The one table of allowed names; ``isaac_trt_perception.qos.profile`` is the one place that turns
a :class:`QosSpec` into an rclpy profile (this package never imports rclpy).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

RELIABILITY = ('best_effort', 'reliable', 'system_default')
DURABILITY = ('volatile', 'transient_local', 'system_default')
HISTORY = ('keep_last', 'keep_all', 'system_default')
PREFIX = 'ros_integration.qos_profile.'


@dataclass(frozen=True)
class QosSpec:
    # Sensor-data defaults: a late frame is worth less than the next one.
    reliability: str = 'best_effort'
    durability: str = 'volatile'
    history: str = 'keep_last'
    depth: int = 1

    def __post_init__(self) -> None:
        for key, allowed in (('reliability', RELIABILITY), ('durability', DURABILITY), ('history', HISTORY)):
            if getattr(self, key) not in allowed:
                raise ValueError(f'{PREFIX}{key}: {getattr(self, key)!r} is not one of {", ".join(allowed)}')
        if self.depth < 1:
            raise ValueError(f'{PREFIX}depth: must be at least 1, got {self.depth}')

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> QosSpec:
        """The deployment's ros_integration.qos_profile (values by dotted name)."""
        return cls(str(values[PREFIX + 'reliability']), str(values[PREFIX + 'durability']),
                   str(values[PREFIX + 'history']), int(values[PREFIX + 'depth']))
