"""Several cameras in one node (``ros_integration.cameras``): a subscription and a publisher per
camera, one detector, one worker that runs the cameras' frames as one batch.

Each camera gets what a one-camera node has, built by the same classes with that camera's keys:
its ``image_input`` (raw or compressed), its ``FrameProcessor`` (output topic, frame_id override),
its watchdog and rate cap (``Health.add_cameras``) and its slot (``LatestFrames``). A batch's frames
are read and converted one by one, detected together (``Detector.detect_batch``), and each answer
is published on its own camera's topic with its own header.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from diagnostic_msgs.msg import DiagnosticStatus, KeyValue
from rclpy.node import Node
from rclpy.publisher import Publisher
from rclpy.qos import QoSProfile

from perception_core.detector import Detector
from perception_core.metrics import Monitor
from perception_core.params import Camera
from perception_core.qos import PREFIX as QOS
from perception_core.qos import QosSpec
from perception_core.safety import Watchdog

from . import qos
from .cdr_check import MessagePath
from .health import Health
from .image_input import ImageInput, image_input
from .latest_frame import CameraSlot, LatestFrames
from .node_log import NodeLog
from .processing import FrameProcessor, Taken

# Cameras not triggered together wait up to the window for each other: at 5 ms, 4 free-running
# cameras at 30 Hz on the H200 answered 2.5 ms later at p50 than 4 nodes (bench/README.md); 1 ms
# still batches cameras triggered together (their frames arrive within it) and costs the others little.
MAX_WINDOW_S = 0.001


def batch_window_s(values: Mapping[str, Any]) -> float:
    """performance.batch_window_ms in seconds; -1 = min(1 ms, a quarter of the rate cap's period)."""
    window_ms = values['performance.batch_window_ms']
    if window_ms >= 0:
        return window_ms / 1e3
    rate = values['runtime.inference_frequency']
    return min(MAX_WINDOW_S, 0.25 / rate) if rate > 0 else MAX_WINDOW_S


def camera_values(values: Mapping[str, Any], camera: Camera) -> dict[str, Any]:
    """The deployment's values as a one-camera node on this camera would have them."""
    transport, frame_id = 'ros_integration.image_transport', 'ros_integration.frame_id_override'
    reliability, depth = QOS + 'reliability', QOS + 'depth'
    return {**values, 'ros_integration.input_topic': camera.input_topic,
            'ros_integration.output_topic': camera.output_topic,
            transport: camera.image_transport or values[transport],
            frame_id: camera.frame_id or values[frame_id],
            reliability: camera.reliability or values[reliability],
            depth: int(camera.depth) if camera.depth else values[depth]}


def qos_note(camera: Camera) -> str:
    """' (reliable, depth 5)' where the camera's QoS is its own, for the start-up line."""
    own = [camera.reliability, f'depth {camera.depth}' if camera.depth else '']
    return f' ({", ".join(o for o in own if o)})' if any(own) else ''


@dataclass(frozen=True)
class CameraLink:
    camera: Camera
    input_topic: str     # resolved (namespace, remapping)
    output_topic: str
    processor: FrameProcessor
    profile: QoSProfile  # the camera's input and output QoS


class Cameras:
    """The cameras' subscriptions, publishers and batching worker, made on ``node``."""

    def __init__(self, node: Node, cameras: list[Camera], values: Mapping[str, Any], *, detector: Detector,
                 health: Health, monitor: Monitor, path: MessagePath, detection_type: type,
                 debug_pub: Publisher | None, log: NodeLog) -> None:
        """Each camera's QoS is the node's qos_profile with that camera's own keys applied."""
        self.node = node
        self.detector = detector
        self.monitor = monitor
        self.log = log
        self.links: list[CameraLink] = []
        self.sources: list[ImageInput] = []
        for camera in cameras:
            own = camera_values(values, camera)
            source = image_input(own, path, log.warn)
            input_topic = node.resolve_topic_name(source.topic)
            own_profile = qos.profile(QosSpec.of(own))
            publisher = node.create_publisher(detection_type, camera.output_topic, own_profile)
            processor = FrameProcessor(own, detector, health, monitor, path,
                                       source=source, input_topic=input_topic, detections_pub=publisher,
                                       debug_pub=debug_pub, clock=node.get_clock(), log=log)
            self.links.append(CameraLink(camera, input_topic, node.resolve_topic_name(camera.output_topic),
                                         processor, own_profile))
            self.sources.append(source)
        states = health.add_cameras([(link.camera.name, link.input_topic) for link in self.links],
                                    time.monotonic())
        self.window_s = batch_window_s(values)
        self.max_batch = int(values['performance.max_batch_size'])
        self.latest: LatestFrames = LatestFrames(
            monitor, [CameraSlot(s.watchdog, s.rate) for s in states], self.process,
            window_s=self.window_s, max_batch=self.max_batch)

    def start(self) -> None:
        """Start the worker, then subscribe (after warm-up, as the one-camera node does)."""
        self.latest.start()
        for index, (source, link) in enumerate(zip(self.sources, self.links, strict=True)):
            self.node.create_subscription(source.message_type, source.topic, self.latest.intake(index),
                                          link.profile, raw=source.raw)

    def describe(self) -> str:
        limit = self.detector.backend.batch_limit
        routes = ', '.join(f'{link.camera.name}: {link.input_topic} -> {link.output_topic}'
                           f'{qos_note(link.camera)}' for link in self.links)
        return (f'{len(self.links)} cameras ({routes}); batches of up to {min(limit, self.max_batch)} '
                f'frames per inference (performance.max_batch_size {self.max_batch}, backend batch limit '
                f'{limit}), batch window {self.window_s * 1e3:g} ms')

    def process(self, items: list[tuple[int, Any, float, float]]) -> None:
        """One batch (worker thread): convert each, detect all, publish each on its camera's topic."""
        taken: list[tuple[FrameProcessor, Taken]] = []
        for index, msg, received, handed_off in items:
            processor = self.links[index].processor
            frame = processor.take(msg, received, handed_off)
            if frame is not None:
                taken.append((processor, frame))
        if not taken:
            return
        self.monitor.batches[len(taken)] += 1
        try:
            detections, timings = self.detector.detect_batch([t.frame for _, t in taken])
        except Exception as exc:  # a backend failing on one batch must not take the node down
            names = ', '.join(p.describe(t.header) for p, t in taken)
            taken[0][0].backend_failed(exc, names)
            return
        taken[0][0].record_inference(timings['infer'])
        for (processor, frame), found in zip(taken, detections, strict=True):
            processor.finish(frame, found, dict(timings))

    def statuses(self, fqn: str, health: Health, now: float) -> list[DiagnosticStatus]:
        """A /diagnostics status per camera: its watchdog's level and input age."""
        words = {Watchdog.OK: 'images arriving', Watchdog.WARN: 'stale', Watchdog.ERROR: 'no images'}
        return [DiagnosticStatus(
            level=bytes([level]), name=f'{fqn}: camera {camera.name}',
            message=f'{words[level]} on {camera.topic}' + (f' for {age:.1f} s' if level else ''),
            hardware_id=f'{fqn}:{camera.name}',
            values=[KeyValue(key='input_topic', value=camera.topic),
                    KeyValue(key='input_age_s', value=f'{age:.2f}')])
            for camera, level, age in health.camera_levels(now)]

