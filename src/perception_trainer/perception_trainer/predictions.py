"""Bundle-format network outputs for a batch -> detections in image pixels, through the node's
decoder (``isaac_trt_perception.decode``), so evaluation scores exactly what the node publishes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from isaac_trt_perception.decode import Detections, Thresholds, decode
from isaac_trt_perception.preprocess import Transform


def decode_batch(outputs: Sequence[np.ndarray], output_format: str, num_classes: int,
                 transforms: Sequence[Transform], thresholds: Thresholds) -> list[Detections]:
    return [decode([o[i:i + 1] for o in outputs], output_format, num_classes, t, thresholds)
            for i, t in enumerate(transforms)]
