"""vision_msgs messages other than the per-frame Detection2DArray (``cdr.py`` writes that one
serialized). The message classes are passed in (``VisionTypes``), so this module imports neither
rclpy nor vision_msgs and is tested with the real classes."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class VisionTypes:
    Detection2DArray: Any  # the detections topic's type; its messages come from cdr.py
    LabelInfo: Any
    VisionClass: Any


def vision_types() -> VisionTypes:
    """The vision_msgs classes (needs the built vision_msgs package)."""
    from vision_msgs.msg import Detection2DArray, LabelInfo, VisionClass
    return VisionTypes(Detection2DArray, LabelInfo, VisionClass)


def label_info(types: VisionTypes, header: Any, classes: Sequence[str], threshold: float) -> Any:
    """LabelInfo with the class map: numeric id = index in model.json ``classes``."""
    return types.LabelInfo(header=header, threshold=float(threshold), class_map=[
        types.VisionClass(class_id=i, class_name=name) for i, name in enumerate(classes)])
