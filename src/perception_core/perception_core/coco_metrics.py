"""COCO detection metrics computed by pycocotools: mAP@[.5:.95], mAP@.5, per-class AP and the
precision/recall curves behind them.

``fast=True`` computes them with faster-coco-eval instead, a C++ port of the same COCOeval (the
same numbers: the trainer's test_validation_metrics.py checks them against pycocotools'), for the
trainer's validation after every epoch, inside its time budget (bench/README "Where a training
sample's time goes"). It is a training dependency (requirements/python.txt), not the robot's;
every report and held-out score stays pycocotools'."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from .decode import Detections


@dataclass(frozen=True)
class Sample:
    image: Path
    width: int
    height: int
    boxes: np.ndarray  # [N, 4] float32 x1, y1, x2, y2 in image pixels
    labels: np.ndarray  # [N] int64 indices into the set's classes


@dataclass(frozen=True)
class Metrics:
    map: float  # mAP@[.5:.95]
    map50: float
    map75: float
    per_class_ap: dict[str, float]  # AP@[.5:.95] per class (nan when the class has no ground truth)
    per_class_ap50: dict[str, float]
    recall: np.ndarray  # [R] recall thresholds of the curves
    precision50: np.ndarray  # [R, C] precision at IoU .5 per class (-1 = undefined)
    images: int

    def summary(self) -> dict:
        """JSON-ready numbers (for model.json, history and reports)."""
        def clean(values: Mapping[str, float]) -> dict[str, float | None]:
            return {k: (None if np.isnan(v) else round(v, 4)) for k, v in values.items()}
        return {'mAP': round(self.map, 4), 'mAP50': round(self.map50, 4), 'mAP75': round(self.map75, 4),
                'images': self.images, 'per_class_AP': clean(self.per_class_ap),
                'per_class_AP50': clean(self.per_class_ap50)}


def _ground_truth(samples: Sequence[Sample], classes: Sequence[str], coco: type = COCO) -> COCO:
    images, annotations = [], []
    for i, s in enumerate(samples):
        images.append({'id': i, 'width': s.width, 'height': s.height})
        for box, label in zip(s.boxes, s.labels, strict=True):
            w, h = float(box[2] - box[0]), float(box[3] - box[1])
            annotations.append({'id': len(annotations) + 1, 'image_id': i, 'category_id': int(label),
                                'bbox': [float(box[0]), float(box[1]), w, h], 'area': w * h, 'iscrowd': 0})
    gt = coco()
    gt.dataset = {'images': images, 'annotations': annotations,
                  'categories': [{'id': i, 'name': n} for i, n in enumerate(classes)]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress chatter
        gt.createIndex()
    return gt


def _ap(precision: np.ndarray) -> float:
    valid = precision[precision > -1]
    return float(valid.mean()) if valid.size else float('nan')


def evaluate(samples: Sequence[Sample], classes: Sequence[str], detections: Mapping[int, Detections],
             *, fast: bool = False) -> Metrics:
    """Score ``detections`` (keyed by index into ``samples``; missing = none) against the samples;
    ``fast``: with faster-coco-eval (see the module's docstring)."""
    coco, coco_eval = (COCO, COCOeval) if not fast else _faster_coco_eval()
    gt = _ground_truth(samples, classes, coco)
    results = [[i, *box[:2], box[2] - box[0], box[3] - box[1], score, cls]
               for i, d in detections.items()
               for box, score, cls in zip(d.boxes.tolist(), d.scores.tolist(), d.class_ids.tolist(),
                                          strict=True)]
    with contextlib.redirect_stdout(io.StringIO()):
        dt = gt.loadRes(np.array(results, np.float64)) if results else coco()
        if not results:
            dt.dataset = {'images': gt.dataset['images'], 'annotations': [],
                          'categories': gt.dataset['categories']}
            dt.createIndex()
        run = coco_eval(gt, dt, 'bbox')
        run.params.imgIds = list(range(len(samples)))
        run.evaluate()
        run.accumulate()
        run.summarize()
    precision = run.eval['precision']  # [T iou, R recall, K class, A area, M maxdets]
    everything = precision[:, :, :, 0, -1]
    return Metrics(
        map=max(float(run.stats[0]), 0.0), map50=max(float(run.stats[1]), 0.0),
        map75=max(float(run.stats[2]), 0.0),
        per_class_ap={name: _ap(everything[:, :, k]) for k, name in enumerate(classes)},
        per_class_ap50={name: _ap(everything[0, :, k]) for k, name in enumerate(classes)},
        recall=np.asarray(run.params.recThrs), precision50=everything[0], images=len(samples))


def _faster_coco_eval() -> tuple[type, type]:
    try:
        from faster_coco_eval import COCO as FasterCOCO
        from faster_coco_eval import COCOeval_faster
    except ImportError as error:
        raise ImportError('coco_metrics.evaluate(fast=True) needs faster-coco-eval, a training '
                          'dependency (pip install -r requirements/python.txt)') from error
    # It logs every evaluation's progress and its whole summary table at INFO, twenty lines per
    # validation in a training log; the callers report the figures themselves.
    logging.getLogger('faster_coco_eval').setLevel(logging.WARNING)
    return FasterCOCO, COCOeval_faster
