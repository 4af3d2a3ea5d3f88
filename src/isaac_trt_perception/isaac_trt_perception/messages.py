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


def detection_array(types: VisionTypes, header: Any, detections: Detections,
                    classes: Sequence[str]) -> Any:
    """One Detection2DArray: the image's header, boxes as centre + size in image pixels, the
    class name as class_id, ids "0".."N-1" in score order (already sorted by decode)."""
    out = types.Detection2DArray(header=header)
    items = []
    for i, ((x1, y1, x2, y2), score, class_id) in enumerate(zip(
            detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist(),
            strict=True)):
        detection = types.Detection2D(header=header, id=str(i))
        hypothesis = types.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id = classes[class_id]
        hypothesis.hypothesis.score = score
        detection.results = [hypothesis]
        detection.bbox.center.position.x = (x1 + x2) / 2.0
        detection.bbox.center.position.y = (y1 + y2) / 2.0
        detection.bbox.size_x = x2 - x1
        detection.bbox.size_y = y2 - y1
        items.append(detection)
    out.detections = items
    return out


def label_info(types: VisionTypes, header: Any, classes: Sequence[str], threshold: float) -> Any:
    """LabelInfo with the class map: numeric id = index in model.json ``classes``."""
    return types.LabelInfo(header=header, threshold=float(threshold), class_map=[
        types.VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes)])
