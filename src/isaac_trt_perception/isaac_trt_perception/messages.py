"""The node's messages as rclpy objects: LabelInfo, and the rclpy path for the two per-frame
messages (a Detection2DArray built field by field, an Image's fields read from the deserialized
message) that the node takes when the start-up check finds ``cdr.py`` disagreeing with rclpy.
The message classes are passed in (``VisionTypes``), so this module imports neither rclpy nor
the message packages and is tested with the real classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from perception_core.cdr import Header
from perception_core.decode import Detections


@dataclass(frozen=True)
class VisionTypes:
    """The message classes the node publishes (generated classes: no static types to name)."""
    Detection2DArray: Any  # the detections topic's type
    Detection2D: Any
    ObjectHypothesisWithPose: Any
    LabelInfo: Any
    VisionClass: Any
    Header: Any  # std_msgs/Header


def vision_types() -> VisionTypes:
    """The vision_msgs classes (needs the built vision_msgs package)."""
    from std_msgs.msg import Header as RosHeader
    from vision_msgs.msg import (
        Detection2D,
        Detection2DArray,
        LabelInfo,
        ObjectHypothesisWithPose,
        VisionClass,
    )
    return VisionTypes(Detection2DArray, Detection2D, ObjectHypothesisWithPose, LabelInfo, VisionClass,
                       RosHeader)


def label_info(types: VisionTypes, header: Any, classes: Sequence[str], threshold: float) -> Any:
    """LabelInfo with the class map: numeric id = index in model.json ``classes``."""
    return types.LabelInfo(header=header, threshold=float(threshold), class_map=[
        types.VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes)])


class DetectionMessages:
    """Detections -> one Detection2DArray message, field by field: what ``cdr.DetectionArrays``
    writes serialized (the same fields, ids and defaults), as rclpy objects."""

    def __init__(self, types: VisionTypes, classes: Sequence[str]) -> None:
        self.types = types
        self.classes = list(classes)

    def header(self, header: Header) -> Any:
        stamped = self.types.Header(frame_id=header.frame_id)
        stamped.stamp.sec, stamped.stamp.nanosec = header.sec, header.nanosec
        return stamped

    def __call__(self, header: Header, detections: Detections) -> Any:
        msg = self.types.Detection2DArray(header=self.header(header))
        rows = zip(detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist(),
                   strict=True)
        for i, ((x1, y1, x2, y2), score, class_id) in enumerate(rows):
            detection = self.types.Detection2D(header=self.header(header), id=str(i))
            hypothesis = self.types.ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = self.classes[class_id], score
            detection.results = [hypothesis]
            detection.bbox.center.position.x = (x1 + x2) / 2.0
            detection.bbox.center.position.y = (y1 + y2) / 2.0
            detection.bbox.size_x, detection.bbox.size_y = x2 - x1, y2 - y1
            msg.detections.append(detection)
        return msg


def image_fields(msg: Any) -> tuple[Header, dict[str, Any]]:
    """A deserialized sensor_msgs/Image -> what ``cdr.read_image`` gives for its serialized form."""
    stamp = msg.header.stamp
    return Header(stamp.sec, stamp.nanosec, msg.header.frame_id), {
        'encoding': msg.encoding, 'height': msg.height, 'width': msg.width, 'step': msg.step,
        'is_bigendian': msg.is_bigendian, 'data': msg.data}
