"""Bundle-format network outputs for a batch -> detections in image pixels, through the node's
decoder (``perception_core.decode``), so evaluation scores exactly what the node publishes."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from perception_core.bundle import OutputSpec
from perception_core.decode import Detections, Thresholds, decode
from perception_core.preprocess import Transform


def decode_batch(outputs: Sequence[np.ndarray], output_format: str | OutputSpec, num_classes: int,
                 transforms: Sequence[Transform], thresholds: Thresholds) -> list[Detections]:
    return [decode([o[i:i + 1] for o in outputs], output_format, num_classes, t, thresholds)
            for i, t in enumerate(transforms)]
