"""The one place a :class:`perception_core.qos.QosSpec` becomes an rclpy ``QoSProfile``; the node,
the bag replay and the benchmarks all build their profiles here."""

from __future__ import annotations

from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy

from perception_core.qos import QosSpec


def profile(spec: QosSpec, depth: int | None = None) -> QoSProfile:
    """``spec`` as an rclpy profile; ``depth`` overrides the spec's queue depth."""
    return QoSProfile(reliability=ReliabilityPolicy[spec.reliability.upper()],
                      durability=DurabilityPolicy[spec.durability.upper()],
                      history=HistoryPolicy[spec.history.upper()], depth=depth or spec.depth)


def latched() -> QoSProfile:
    """Reliable, transient local, depth 1: a late joiner still gets the last message (label info)."""
    return profile(QosSpec(reliability='reliable', durability='transient_local'))
