"""The optional debug image: the input frame with detections drawn (only built when its topic
is configured)."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from .convert import Frame
from .decode import Detections


def class_colour(class_id: int) -> tuple[int, int, int]:
    """A distinct, stable RGB colour per class."""
    hue = (class_id * 47) % 180
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[2]), int(bgr[1]), int(bgr[0])


def draw_detections(frame: Frame, detections: Detections, classes: Sequence[str]) -> tuple[np.ndarray, str]:
    """(a new contiguous image with boxes and labels, its encoding): rgb8/bgr8 keep their order,
    mono8 and the alpha encodings become rgb8/bgr8."""
    r, g, b = frame.rgb_channels
    rgb_order = (r, g, b) == (0, 1, 2) or frame.encoding == 'mono8'
    image = np.ascontiguousarray(frame.pixels[:, :, [r, g, b] if rgb_order else [b, g, r]])
    encoding = 'rgb8' if rgb_order else 'bgr8'
    for (x1, y1, x2, y2), score, class_id in zip(detections.boxes.astype(int).tolist(),
                                                 detections.scores.tolist(),
                                                 detections.class_ids.tolist(), strict=True):
        colour = class_colour(class_id)
        if not rgb_order:
            colour = colour[::-1]
        cv2.rectangle(image, (x1, y1), (x2, y2), colour, 2)
        cv2.putText(image, f'{classes[class_id]} {score:.2f}', (x1, max(12, y1 - 4)),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.45, colour, 1, cv2.LINE_AA)
    return image, encoding
