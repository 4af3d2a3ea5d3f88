"""Pictures people would rather look at than read: precision/recall curves and annotated frames."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import matplotlib
import numpy as np

from perception_core.atomic import atomic_path
from perception_core.coco_metrics import Metrics
from perception_core.decode import Detections

from .annotations import Sample

matplotlib.use('Agg')  # files only; no display on robots or CI
import matplotlib.pyplot as plt

TRUTH = (0, 200, 0)
PREDICTED = (255, 60, 0)


def pr_curves(metrics: Metrics, classes: Sequence[str], path: str | Path, title: str) -> Path:
    """Precision against recall at IoU 0.5, one line per class, AP50 in the legend."""
    fig, ax = plt.subplots(figsize=(8, 6), dpi=100)
    for k, name in enumerate(classes):
        precision = metrics.precision50[:, k]
        if (precision < 0).all():
            continue  # no ground truth for this class
        label = f'{name} (AP50 {metrics.per_class_ap50[name]:.3f})'
        ax.plot(metrics.recall, np.clip(precision, 0, 1), label=label)
    ax.set(xlabel='recall', ylabel='precision', xlim=(0, 1), ylim=(0, 1.02),
           title=f'{title}\nmAP@.5 {metrics.map50:.3f}, mAP@[.5:.95] {metrics.map:.3f}')
    ax.grid(alpha=0.3)
    ax.legend(loc='lower left', fontsize=8)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp)
    plt.close(fig)
    return Path(path)


def annotate(rgb: np.ndarray, sample: Sample, detections: Detections, classes: Sequence[str],
             score_threshold: float) -> np.ndarray:
    """Ground truth in thin green, detections over ``score_threshold`` in orange with class and score."""
    image = rgb.copy()
    for box in sample.boxes.astype(int):
        cv2.rectangle(image, (box[0], box[1]), (box[2] - 1, box[3] - 1), TRUTH, 1)
    for box, score, cls in zip(detections.boxes, detections.scores, detections.class_ids, strict=True):
        if score < score_threshold:
            continue
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        cv2.rectangle(image, (x1, y1), (x2 - 1, y2 - 1), PREDICTED, 2)
        cv2.putText(image, f'{classes[cls]} {score:.2f}', (x1, max(y1 - 4, 10)), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, PREDICTED, 1, cv2.LINE_AA)
    return image


def write_rgb_png(path: str | Path, rgb: np.ndarray) -> Path:
    ok, encoded = cv2.imencode('.png', cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise RuntimeError(f'{path}: OpenCV could not encode the image')
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())
    return Path(path)
