"""One frame on the worker thread: convert, detect, publish, count.

The frame comes in serialized and the detections go out serialized (``perception_core.cdr``):
rclpy's per-field conversion was a large part of the node's own time per frame (bench/README.md).
Where the start-up check found ``cdr.py`` disagreeing with rclpy, ``read`` and ``write`` are
rclpy's path instead, chosen once so the frame pays nothing for the choice. A compressed input
(``image_input``) is decoded here too, on the worker thread, never on the executor's.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from builtin_interfaces.msg import Time
from rclpy.clock import Clock
from rclpy.publisher import Publisher
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from perception_core.cdr import Header as FrameHeader
from perception_core.convert import Frame, ImageError
from perception_core.debug_image import draw_detections
from perception_core.decode import Detections
from perception_core.detector import Detector
from perception_core.metrics import Monitor

from .cdr_check import MessagePath
from .health import Health
from .image_input import ImageInput
from .node_log import NodeLog


@dataclass(frozen=True)
class Taken:
    """A received frame, converted, with its times: receipt (time.monotonic), hand-off to the
    worker, start and end of conversion (time.perf_counter)."""
    header: FrameHeader
    frame: Frame
    received: float
    handed_off: float
    start: float
    converted: float


class FrameProcessor:
    def __init__(self, values: Mapping[str, Any], detector: Detector, health: Health, monitor: Monitor,
                 path: MessagePath, *, source: ImageInput, input_topic: str, detections_pub: Publisher,
                 debug_pub: Publisher | None, clock: Clock, log: NodeLog) -> None:
        """``input_topic``: the subscription's resolved (remapped) name, which the log lines name;
        ``source`` reads a received message and makes the Frame (raw Image or CompressedImage)."""
        self.detector = detector
        self.monitor = monitor
        self.read = source.read
        self.to_frame = source.to_frame
        self.bad_input = source.error_kind
        self.write = path.write
        self.detections_pub = detections_pub
        self.debug_pub = debug_pub
        self.clock = clock
        self.log = log
        self.classes = detector.bundle.classes
        self.topic = input_topic
        self.frame_id = values['ros_integration.frame_id_override']
        self.detailed = values['logging.enable_detailed_logging']
        self._record = health.fallback.record
        self._on_fallback = health.on_fallback
        self._note_new_size = health.note_new_size

    def describe(self, header: FrameHeader | None) -> str:
        if header is None:
            return f'{self.topic} message'
        return f'{self.topic} frame {header.frame_id!r} stamp {header.sec}.{header.nanosec:09d}'

    def process(self, msg: Any, received: float, handed_off: float) -> None:
        """One frame taken from the slot (see ``LatestFrame``): serialized bytes, or an Image (a
        CompressedImage) where the start-up check chose rclpy's path."""
        taken = self.take(msg, received, handed_off)
        if taken is None:
            return
        try:
            detections, timings = self.detector.detect(taken.frame)
        except Exception as exc:  # a backend failing on one frame must not take the node down
            self.backend_failed(exc, self.describe(taken.header))
            return
        self.record_inference(timings['infer'])
        self.finish(taken, detections, timings)

    def take(self, msg: Any, received: float, handed_off: float) -> Taken | None:
        """Read and convert a received message; None (counted, logged) if it is not an image."""
        start = time.perf_counter()
        header: FrameHeader | None = None
        try:
            header, fields = self.read(msg)
            frame = self.to_frame(header, fields)
        except ImageError as exc:  # a compressed one's decode error too (CompressedImageError)
            self.monitor.errors[self.bad_input] += 1
            # the header read before the failure, where the reader kept one (the payload's own);
            # a decode error's message names the frame itself, so only its problem is added
            self.log.throttled(f'{self.bad_input}.{exc.field}',
                               f'{self.describe(getattr(exc, "header", None) or header)} skipped: '
                               f'{getattr(exc, "problem", exc)}', time.monotonic())
            return None
        return Taken(header, frame, received, handed_off, start, time.perf_counter())

    def backend_failed(self, exc: Exception, what: str) -> None:
        self.monitor.errors['backend'] += 1
        self.log.throttled('backend', f'{what}: {self.detector.backend.name} failed on this frame, '
                           f'skipped: {type(exc).__name__}: {exc}', time.monotonic())

    def record_inference(self, infer_s: float) -> None:
        """One inference's time against the deadline (a batch of cameras is one inference)."""
        event = self._record(infer_s)
        if event is not None:
            self._on_fallback(event)

    def finish(self, taken: Taken, detections: Detections, timings: dict[str, float]) -> None:
        """Publish a frame's detections with its header (frame_id override applied), and count."""
        header, frame, received = taken.header, taken.frame, taken.received
        self._note_new_size(frame, timings['infer'])
        if self.frame_id:
            header = FrameHeader(header.sec, header.nanosec, self.frame_id)
        published = time.perf_counter()
        self.detections_pub.publish(self.write(header, detections))
        done = time.perf_counter()
        timings.update(handoff=taken.start - taken.handed_off, convert=taken.converted - taken.start,
                       publish=done - published)
        self.monitor.profile.add(timings)
        self.monitor.published.tick(time.monotonic())
        self.monitor.latency.add(time.monotonic() - received)
        if header.stamp_ns > 0:
            self.monitor.age.add((self.clock.now().nanoseconds - header.stamp_ns) * 1e-9)
        if self.debug_pub is not None:
            pixels, encoding = draw_detections(frame, detections, self.classes)
            stamped = Header(stamp=Time(sec=header.sec, nanosec=header.nanosec), frame_id=header.frame_id)
            self.debug_pub.publish(Image(header=stamped, height=frame.height, width=frame.width,
                                         encoding=encoding, step=frame.width * 3, data=pixels.tobytes()))
        if self.detailed:
            stages = ' '.join(f'{k}={s * 1e3:.2f}ms' for k, s in timings.items())
            self.log.debug(f'{self.describe(header)}: {len(detections)} detections; {stages}')
