"""Do two backends find the same objects? Counts per frame, and the IoU of matched boxes.

Boxes are matched best score first to the unmatched box of the same class that overlaps most.
Two runs agree when every frame has the same number of detections in both and every matched pair
overlaps with IoU >= ``min_iou`` (:data:`MIN_IOU` unless given). Where a detection sits right at
the score threshold, a rounding difference (one grey level of resize rounding, OpenCV's
fixed-point bilinear against the GPU's float one; fp16 kernels) can put it on either side:
:func:`confident_agreement` then compares the detections clear of the threshold, each way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from perception_core.decode import Detections, box_iou

MIN_IOU = 0.9


def matched_ious(reference: Detections, other: Detections) -> list[float]:
    """IoU of each reference detection with its match in ``other`` (0 where none is left)."""
    free = np.ones(len(other), dtype=bool)
    ious = []
    for i in range(len(reference)):
        candidates = np.nonzero(free & (other.class_ids == reference.class_ids[i]))[0]
        if candidates.size == 0:
            ious.append(0.0)
            continue
        overlap = box_iou(reference.boxes[i], other.boxes[candidates])
        best = int(np.argmax(overlap))
        free[candidates[best]] = False
        ious.append(float(overlap[best]))
    return ious


def agreement(reference: Sequence[Detections], other: Sequence[Detections],
              min_iou: float = MIN_IOU) -> dict[str, Any]:
    """Per-frame comparison of two runs over the same frames, as a JSON-ready summary."""
    if len(reference) != len(other):
        raise ValueError(f'{len(reference)} reference frames but {len(other)} to compare')
    count_mismatches = sum(len(a) != len(b) for a, b in zip(reference, other, strict=True))
    ious = [iou for a, b in zip(reference, other, strict=True) for iou in matched_ious(a, b)]
    worst = min(ious) if ious else None
    return {
        'frames': len(reference),
        'detections': sum(len(a) for a in reference),
        'count_mismatches': count_mismatches,
        'min_iou': None if worst is None else round(worst, 4),
        'mean_iou': None if not ious else round(float(np.mean(ious)), 4),
        'passed': count_mismatches == 0 and (worst is None or worst >= min_iou),
    }


def confident(detections: Detections, floor: float) -> Detections:
    """The detections scoring at least ``floor``."""
    sure = detections.scores >= floor
    return Detections(detections.boxes[sure], detections.scores[sure], detections.class_ids[sure])


def unmatched(reference: Detections, other: Detections, floor: float, min_iou: float = MIN_IOU) -> int:
    """How many detections scoring at least ``floor`` in either run lack their match (IoU >=
    ``min_iou``) in the other run."""
    return sum(iou < min_iou for a, b in ((reference, other), (other, reference))
               for iou in matched_ious(confident(a, floor), b))


def confident_agreement(reference: Sequence[Detections], other: Sequence[Detections], floor: float,
                        min_iou: float = MIN_IOU) -> bool:
    """Every detection scoring at least ``floor`` in either run has its match (IoU >= ``min_iou``) in
    the other run, frame by frame."""
    return all(unmatched(a, b, floor, min_iou) == 0 for a, b in zip(reference, other, strict=True))
