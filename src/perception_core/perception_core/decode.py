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


# A frame's few candidates go through NMS as Python lists: in the node each frame arrives with cold
# caches, where each numpy call costs 5-30 microseconds and a greedy loop over a handful of
# boxes costs less than one of them. More candidates (a low score threshold) go through in blocks
# of this many, best first: one IoU matrix per block, and thousands still stop at max_detections
# without an N x N matrix. Both paths compute IoU in float64 by the same formula, in the same
# order, so they keep the same boxes.
NMS_BLOCK = 64


def pairwise_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[len(a), len(b)] IoU of x1, y1, x2, y2 boxes."""
    w = np.minimum(a[:, None, 2], b[:, 2]) - np.maximum(a[:, None, 0], b[:, 0])
    h = np.minimum(a[:, None, 3], b[:, 3]) - np.maximum(a[:, None, 1], b[:, 1])
    inter = np.maximum(w, 0) * np.maximum(h, 0)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    return inter / np.maximum(area_a[:, None] + area_b - inter, 1e-9)


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one x1, y1, x2, y2 box with each row of ``boxes``."""
    return pairwise_iou(box[None], boxes)[0]


def nms(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
        limit: int) -> list[int]:
    """Greedy class-aware NMS: indices of kept boxes, best first (ties by index), at most ``limit``.
    A box is suppressed by a kept box of its class with IoU above ``iou_threshold``."""
    if boxes.shape[0] <= NMS_BLOCK:
        return _nms_lists(boxes.tolist(), scores.tolist(), class_ids.tolist(), iou_threshold, limit)
    return _nms_blocks(boxes, scores, class_ids, iou_threshold, limit)


def _nms_lists(boxes: list[list[float]], scores: list[float], class_ids: list[int], iou_threshold: float,
               limit: int) -> list[int]:
    keep: list[int] = []
    for i in sorted(range(len(scores)), key=scores.__getitem__, reverse=True):  # stable: ties by index
        x1, y1, x2, y2 = boxes[i]
        area = (x2 - x1) * (y2 - y1)
        for k in keep:
            if class_ids[k] != class_ids[i]:
                continue
            k1, l1, k2, l2 = boxes[k]
            w = min(x2, k2) - max(x1, k1)
            h = min(y2, l2) - max(y1, l1)
            inter = (w if w > 0 else 0.0) * (h if h > 0 else 0.0)
            union = area + (k2 - k1) * (l2 - l1) - inter
            if inter / (union if union > 1e-9 else 1e-9) > iou_threshold:
                break
        else:
            keep.append(i)
            if len(keep) == limit:
                break
    return keep


def _nms_blocks(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray, iou_threshold: float,
                limit: int) -> list[int]:
    order = np.argsort(-scores, kind='stable')
    ranked = boxes[order].astype(np.float64)
    ranked_class = class_ids[order]
    keep: list[int] = []  # positions in ``ranked``
    for start in range(0, len(ranked), NMS_BLOCK):
        block, block_class = ranked[start:start + NMS_BLOCK], ranked_class[start:start + NMS_BLOCK]
        alive = ((~((pairwise_iou(block, ranked[keep]) > iou_threshold)
                    & (block_class[:, None] == ranked_class[keep])).any(axis=1)).tolist() if keep
                 else [True] * len(block))
        overlaps = ((pairwise_iou(block, block) > iou_threshold)
                    & (block_class[:, None] == block_class)).tolist()
        for i, overlap in enumerate(overlaps):
            if not alive[i]:
                continue
            keep.append(start + i)
            if len(keep) == limit:
                return order[keep].tolist()
            alive = [a and not o for a, o in zip(alive, overlap, strict=True)]
    return order[keep].tolist()


def _dense_candidates(outputs: Sequence[np.ndarray], score: float, classes: int
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = np.asarray(outputs[0])
    if out.ndim != 3 or out.shape[2] != 4 + classes:
        raise DecodeError(f'dense_boxes_scores output must be [B, N, 4 + {classes}], got {list(out.shape)}')
    rows = out[0]
    class_scores = rows[:, 4:]
    # A flat nonzero + divmod is the row-major order of a 2D nonzero at a third of its cost (spelled
    # out: np.flatnonzero's Python wrappers cost more than its work on a cold frame).
    rows_i, class_i = np.divmod((class_scores >= score).ravel().nonzero()[0], classes)
    return (rows[rows_i, :4].astype(np.float32, copy=False),
            class_scores[rows_i, class_i].astype(np.float32, copy=False), class_i)


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
    # Boxes lying wholly in the letterbox border clip to nothing: no object there. Checked on lists:
    # a frame keeps a handful of boxes, fewer than it takes numpy calls to mask them.
    real = [i for i, (x1, y1, x2, y2) in enumerate(image_boxes.tolist()) if x2 > x1 and y2 > y1]
    if len(real) < len(keep):
        image_boxes, keep = image_boxes[real], [keep[i] for i in real]
    return Detections(image_boxes, scores[keep], class_ids[keep].astype(np.int64))
