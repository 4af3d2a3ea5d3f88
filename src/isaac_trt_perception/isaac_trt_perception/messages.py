"""Detections -> vision_msgs messages. The message classes are passed in (``VisionTypes``), so
this module imports neither rclpy nor vision_msgs and is tested with the real classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .decode import Detections


@dataclass(frozen=True)
class VisionTypes:
    Detection2DArray: Any
    Detection2D: Any
    ObjectHypothesisWithPose: Any
    LabelInfo: Any
    VisionClass: Any


def vision_types() -> VisionTypes:
    """The vision_msgs classes (needs the built vision_msgs package)."""
    from vision_msgs.msg import (
        Detection2D,
        Detection2DArray,
        LabelInfo,
        ObjectHypothesisWithPose,
        VisionClass,
    )
    return VisionTypes(Detection2DArray, Detection2D, ObjectHypothesisWithPose, LabelInfo, VisionClass)


class DetectionArrays:
    """Detections -> one Detection2DArray: the image's header, boxes as centre + size in image
    pixels, the class name as class_id, ids "0".."N-1" in score order (already sorted by decode).

    Building a Detection2D costs ~10 us of nested message constructors (a hypothesis alone carries
    a pose with a 36-value covariance); filling a kept one costs ~1 us. So the sub-messages are
    made once and refilled: the returned message is this object's and is overwritten by the next
    call. rclpy converts a message when it is published, so publish it before building the next.
    """

    def __init__(self, types: VisionTypes, classes: Sequence[str]) -> None:
        self._types = types
        self._classes = list(classes)
        self._message = types.Detection2DArray()
        self._kept: list[Any] = []  # Detection2D number i has id str(i) and one hypothesis

    def __call__(self, header: Any, detections: Detections) -> Any:
        count = len(detections)
        while len(self._kept) < count:
            self._kept.append(self._types.Detection2D(id=str(len(self._kept)),
                                                      results=[self._types.ObjectHypothesisWithPose()]))
        for detection, (x1, y1, x2, y2), score, class_id in zip(
                self._kept, detections.boxes.tolist(), detections.scores.tolist(),
                detections.class_ids.tolist(), strict=False):
            detection.header = header
            hypothesis = detection.results[0].hypothesis
            hypothesis.class_id = self._classes[class_id]
            hypothesis.score = score
            bbox = detection.bbox
            bbox.center.position.x = (x1 + x2) / 2.0
            bbox.center.position.y = (y1 + y2) / 2.0
            bbox.size_x = x2 - x1
            bbox.size_y = y2 - y1
        self._message.header = header
        self._message.detections = self._kept[:count]
        return self._message


def label_info(types: VisionTypes, header: Any, classes: Sequence[str], threshold: float) -> Any:
    """LabelInfo with the class map: numeric id = index in model.json ``classes``."""
    return types.LabelInfo(header=header, threshold=float(threshold), class_map=[
        types.VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes)])
