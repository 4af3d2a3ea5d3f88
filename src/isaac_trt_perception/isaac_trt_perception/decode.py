"""Network outputs -> detections in image pixels: both bundle output formats, score threshold,
class-aware NMS, max detections. Pure numpy; the node, the evaluator and the engine verifier
all decode through :func:`decode`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from .bundle import Postprocess
from .preprocess import Transform


class DecodeError(ValueError):
    """Outputs that do not have the shape the bundle's output format promises."""


@dataclass(frozen=True)
class Thresholds:
    score: float
    nms_iou: float
    max_detections: int

    @staticmethod
    def resolve(defaults: Postprocess, score: float = -1.0, nms_iou: float = -1.0,
                max_detections: int = 0) -> Thresholds:
        """The node's detection.* parameters over the bundle's defaults (negative/0 = default)."""
        return Thresholds(score if score >= 0 else defaults.score_threshold,
                          nms_iou if nms_iou > 0 else defaults.nms_iou_threshold,
                          max_detections if max_detections > 0 else defaults.max_detections)


@dataclass(frozen=True)
class Detections:
    """Sorted by score, best first. boxes: [N, 4] x1, y1, x2, y2 image pixels; class_ids index
    the bundle's classes."""
    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.scores.shape[0])

    @staticmethod
    def empty() -> Detections:
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each row of ``boxes``."""
    w = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = w * h
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area + areas - inter, 1e-9)


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
        limit: int) -> np.ndarray:
    """Greedy class-aware NMS; indices of kept boxes, best first, at most ``limit``."""
    if boxes.shape[0] == 0:
        return np.zeros(0, np.int64)
    # Shifting each class to its own region of the plane makes one pass class-aware.
    shift = (float(boxes.max()) + 1.0) * class_ids.astype(np.float32)
    shifted = boxes + shift[:, None]
    order = np.argsort(-scores, kind='stable')
    keep: list[int] = []
    while order.size and len(keep) < limit:
        best = int(order[0])
        keep.append(best)
        rest = order[1:]
        order = rest[box_iou(shifted[best], shifted[rest]) <= iou_threshold]
    return np.asarray(keep, dtype=np.int64)


def _dense_candidates(outputs: Sequence[np.ndarray], score: float, classes: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = np.asarray(outputs[0])
    if out.ndim != 3 or out.shape[2] != 4 + classes:
        raise DecodeError(f'dense_boxes_scores output must be [B, N, 4 + {classes}], got {list(out.shape)}')
    rows = out[0]
    rows_i, class_i = np.nonzero(rows[:, 4:] >= score)
    return rows[rows_i, :4].astype(np.float32), rows[rows_i, 4 + class_i].astype(np.float32), class_i


def _class_box_candidates(outputs: Sequence[np.ndarray], score: float, classes: int,
                          transform: Transform) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if len(outputs) != 2:
        raise DecodeError(f'class_box needs two outputs (logits, box), got {len(outputs)}')
    logits, box = (np.asarray(o, dtype=np.float32) for o in outputs)
    if logits.ndim != 2 or logits.shape[1] != classes or box.ndim != 2 or box.shape[1] != 4:
        raise DecodeError(f'class_box outputs must be [B, {classes}] and [B, 4], got '
                          f'{list(logits.shape)} and {list(box.shape)}')
    z = logits[0] - logits[0].max()
    probs = np.exp(z) / np.exp(z).sum()
    best = int(np.argmax(probs))
    net_w = transform.resized_width + 2 * transform.pad_x
    net_h = transform.resized_height + 2 * transform.pad_y
    pixels = box[0] * np.array([net_w, net_h, net_w, net_h], np.float32)
    if probs[best] < score:
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64)
    return pixels[None, :], probs[best:best + 1].astype(np.float32), np.array([best])


def decode(outputs: Sequence[np.ndarray], output_format: str, classes: int, transform: Transform,
           thresholds: Thresholds) -> Detections:
    """Decode one frame (batch index 0) of network outputs into image-pixel detections."""
    if output_format == 'dense_boxes_scores':
        boxes, scores, class_ids = _dense_candidates(outputs, thresholds.score, classes)
    elif output_format == 'class_box':
        boxes, scores, class_ids = _class_box_candidates(outputs, thresholds.score, classes, transform)
    else:
        raise DecodeError(f'unknown output format {output_format!r}')
    keep = nms(boxes, scores, class_ids, thresholds.nms_iou, thresholds.max_detections)
    image_boxes = transform.to_image(boxes[keep])
    # Boxes lying wholly in the letterbox border clip to nothing: no object there.
    real = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
    return Detections(image_boxes[real], scores[keep][real], class_ids[keep][real].astype(np.int64))
