"""Network outputs -> detections in image pixels: this workspace's bundle formats
(``dense_boxes_scores``, ``class_box``) and foreign detectors' (``yolo_v8``, ``yolo_end2end``,
``rtdetr``, ``boxes_scores_labels``; bundle.py documents each), score threshold, class-aware NMS
where the format has it, max detections. Pure numpy; the node, the evaluator and the engine
verifier all decode through :func:`decode` (or :func:`decoder_for`, which picks the format once).
:func:`describe` says in words what each format's decoder does (``perception-bundle show``).

The foreign decoders follow their models' reference postprocessing (Ultralytics'
``ops.non_max_suppression`` and ``RTDETRPredictor.postprocess``, torchvision's box threshold): a
score must be strictly above the threshold, each anchor or query keeps only its best class.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from .bundle import OutputSpec, Postprocess
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


def decode(outputs: Sequence[np.ndarray], output_format: str | OutputSpec, classes: int, transform: Transform,
           thresholds: Thresholds) -> Detections:
    """Decode one frame (batch index 0) of network outputs into image-pixel detections.
    ``output_format``: the format's name (its options at their defaults) or the bundle's
    OutputSpec (its options as model.json sets them)."""
    if output_format == 'dense_boxes_scores':
        boxes, scores, class_ids = _dense_candidates(outputs, thresholds.score, classes)
    elif output_format == 'class_box':
        boxes, scores, class_ids = _class_box_candidates(outputs, thresholds.score, classes, transform)
    else:
        return _decode_other(outputs, output_format, classes, transform, thresholds)
    keep = nms(boxes, scores, class_ids, thresholds.nms_iou, thresholds.max_detections)
    image_boxes = transform.to_image(boxes[keep])
    # Boxes lying wholly in the letterbox border clip to nothing: no object there. Checked on lists:
    # a frame keeps a handful of boxes, fewer than it takes numpy calls to mask them.
    real = [i for i, (x1, y1, x2, y2) in enumerate(image_boxes.tolist()) if x2 > x1 and y2 > y1]
    if len(real) < len(keep):
        image_boxes, keep = image_boxes[real], [keep[i] for i in real]
    return Detections(image_boxes, scores[keep], class_ids[keep].astype(np.int64))


# ---- foreign detectors' formats ------------------------------------------------------------------

# Ultralytics' non_max_suppression sends at most this many candidates, best first, into NMS.
MAX_NMS = 30000


def _network_size(transform: Transform) -> tuple[float, float]:
    """The network input's width and height, for boxes normalised to it (as class_box takes it)."""
    return (float(transform.resized_width + 2 * transform.pad_x),
            float(transform.resized_height + 2 * transform.pad_y))


def _xywh_to_xyxy(cx: np.ndarray, cy: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """As Ultralytics' ops.xywh2xyxy: centre minus / plus half the size."""
    dw, dh = w / 2, h / 2
    return np.stack([cx - dw, cy - dh, cx + dw, cy + dh], axis=1).astype(np.float32, copy=False)


def _best_first(scores: np.ndarray, limit: int) -> np.ndarray:
    """Indices of the ``limit`` best scores, best first, ties by index (formats without NMS)."""
    return np.argsort(-scores, kind='stable')[:limit]


def _image_detections(boxes: np.ndarray, scores: np.ndarray, class_ids: np.ndarray,
                      transform: Transform) -> Detections:
    """Kept network-pixel boxes -> image pixels, dropping boxes wholly in the letterbox border."""
    image_boxes = transform.to_image(boxes)
    real = (image_boxes[:, 2] > image_boxes[:, 0]) & (image_boxes[:, 3] > image_boxes[:, 1])
    if not real.all():
        image_boxes, scores, class_ids = image_boxes[real], scores[real], class_ids[real]
    return Detections(image_boxes, scores.astype(np.float32, copy=False), class_ids.astype(np.int64))


def _one_output(outputs: Sequence[np.ndarray], name: str) -> np.ndarray:
    if len(outputs) != 1:
        raise DecodeError(f'{name} takes one output, got {len(outputs)}')
    return np.asarray(outputs[0])


def _yolo_v8(outputs: Sequence[np.ndarray], spec: OutputSpec, classes: int, transform: Transform,
             thresholds: Thresholds) -> Detections:
    """[1, 4 + C, N]: per anchor its best class (``conf, j = cls.max(1)``), threshold, class-aware
    NMS, max detections, as Ultralytics' non_max_suppression with multi_label off."""
    out = _one_output(outputs, 'yolo_v8')
    if out.ndim != 3 or out.shape[1] != 4 + classes:
        raise DecodeError(f'yolo_v8 output must be [1, 4 + {classes}, N], got {list(out.shape)}')
    class_scores = out[0, 4:]                       # [C, N]
    best_score = class_scores.max(axis=0)
    anchors = (best_score > thresholds.score).nonzero()[0]
    if anchors.size > MAX_NMS:
        anchors = anchors[_best_first(best_score[anchors], MAX_NMS)]
    scores = best_score[anchors].astype(np.float32, copy=False)
    class_ids = class_scores[:, anchors].argmax(axis=0)
    cx, cy, w, h = out[0, :4][:, anchors]
    boxes = _xywh_to_xyxy(cx, cy, w, h)
    keep = nms(boxes, scores, class_ids, thresholds.nms_iou, thresholds.max_detections)
    return _image_detections(boxes[keep], scores[keep], class_ids[keep], transform)


def _check_classes(class_ids: np.ndarray, classes: int, fmt: str) -> None:
    if class_ids.size and int(class_ids.max()) >= classes:
        raise DecodeError(f'{fmt}: class {int(class_ids.max())} is outside the bundle\'s {classes} '
                          'classes (model.json classes do not match the model)')


def _yolo_end2end(outputs: Sequence[np.ndarray], spec: OutputSpec, classes: int, transform: Transform,
                  thresholds: Thresholds) -> Detections:
    """[1, K, 6] x1, y1, x2, y2, score, class: threshold, max detections; the graph did the NMS."""
    out = _one_output(outputs, 'yolo_end2end')
    if out.ndim != 3 or out.shape[2] != 6:
        raise DecodeError(f'yolo_end2end output must be [1, K, 6], got {list(out.shape)}')
    rows = out[0]
    live = (rows[:, 4] > thresholds.score).nonzero()[0]
    live = live[_best_first(rows[live, 4], thresholds.max_detections)]
    class_ids = rows[live, 5].astype(np.int64)
    _check_classes(class_ids, classes, 'yolo_end2end')
    return _image_detections(rows[live, :4].astype(np.float32), rows[live, 4], class_ids, transform)


def _rtdetr(outputs: Sequence[np.ndarray], spec: OutputSpec, classes: int, transform: Transform,
            thresholds: Thresholds) -> Detections:
    """[1, Q, 4 + C] cx, cy, w, h (normalised) and scores: per query its best class, threshold,
    max detections, no NMS, as Ultralytics' RTDETRPredictor.postprocess."""
    out = _one_output(outputs, 'rtdetr')
    rows = out[0]
    if spec.layout == 'top_k':  # the decoder's top-K rows: cx, cy, w, h, score, class
        if out.ndim != 3 or out.shape[2] != 6:
            raise DecodeError(f'rtdetr (layout top_k) output must be [1, K, 6], got {list(out.shape)}')
        best_score = rows[:, 4]
        live = (best_score > thresholds.score).nonzero()[0]
        live = live[_best_first(best_score[live], thresholds.max_detections)]
        class_ids = rows[live, 5].astype(np.int64)
        _check_classes(class_ids, classes, 'rtdetr')
    else:
        if out.ndim != 3 or out.shape[2] != 4 + classes:
            raise DecodeError(f'rtdetr output must be [1, Q, 4 + {classes}], got {list(out.shape)}')
        class_scores = rows[:, 4:]
        best_score = class_scores.max(axis=1)
        live = (best_score > thresholds.score).nonzero()[0]
        live = live[_best_first(best_score[live], thresholds.max_detections)]
        class_ids = class_scores[live].argmax(axis=1)
    cx, cy, w, h = rows[live, :4].T
    boxes = _xywh_to_xyxy(cx, cy, w, h)
    if spec.normalised:
        net_w, net_h = _network_size(transform)
        boxes *= np.array([net_w, net_h, net_w, net_h], np.float32)
    return _image_detections(boxes, best_score[live], class_ids, transform)


def _per_row(array: np.ndarray, rows: int, name: str, shapes: str) -> np.ndarray:
    """[1, K] or [1, K, 1] -> [K]."""
    a = np.asarray(array)
    if a.ndim not in (2, 3) or a.shape[1] != rows or (a.ndim == 3 and a.shape[2] != 1):
        raise DecodeError(f'boxes_scores_labels {name} must be [1, K] with K = {rows} boxes, got {shapes}')
    return a[0].reshape(rows)


def _boxes_scores_labels(outputs: Sequence[np.ndarray], spec: OutputSpec, classes: int,
                         transform: Transform, thresholds: Thresholds) -> Detections:
    """boxes [1, K, 4], scores [1, K], labels [1, K] (, num_detections [1]): threshold, max
    detections; the graph did the NMS."""
    shapes = ', '.join(str(list(np.shape(o))) for o in outputs)
    if len(outputs) not in (3, 4):
        raise DecodeError(f'boxes_scores_labels takes boxes, scores, labels (, num_detections), got '
                          f'{len(outputs)} outputs: {shapes}')
    boxes = np.asarray(outputs[0])
    if boxes.ndim != 3 or boxes.shape[2] != 4:
        raise DecodeError(f'boxes_scores_labels boxes must be [1, K, 4], got {shapes}')
    rows = boxes.shape[1]
    scores = _per_row(outputs[1], rows, 'scores', shapes)
    labels = _per_row(outputs[2], rows, 'labels', shapes)
    if len(outputs) == 4:  # rows past the count are padding
        valid = int(np.asarray(outputs[3]).reshape(-1)[0])
        rows = max(0, min(rows, valid))
    live = (scores[:rows] > thresholds.score).nonzero()[0]
    class_ids = labels[live].astype(np.int64) - spec.class_offset
    live, class_ids = live[class_ids >= 0], class_ids[class_ids >= 0]   # the background class
    _check_classes(class_ids, classes, 'boxes_scores_labels')
    order = _best_first(scores[live], thresholds.max_detections)
    live, class_ids = live[order], class_ids[order]
    picked = boxes[0, live].astype(np.float32)
    if spec.boxes == 'cxcywh':
        picked = _xywh_to_xyxy(*picked.T)
    if spec.normalised:
        net_w, net_h = _network_size(transform)
        picked *= np.array([net_w, net_h, net_w, net_h], np.float32)
    return _image_detections(picked, scores[live], class_ids, transform)


Decoder = Callable[[Sequence[np.ndarray], Transform, Thresholds], Detections]
_FOREIGN: dict[str, Callable[[Sequence[np.ndarray], OutputSpec, int, Transform, Thresholds], Detections]] = {
    'yolo_v8': _yolo_v8, 'yolo_end2end': _yolo_end2end, 'rtdetr': _rtdetr,
    'boxes_scores_labels': _boxes_scores_labels}
# A format named without its OutputSpec decodes with model.json's defaults for its options.
_DEFAULT_SPECS = {name: OutputSpec(name, (), normalised=name == 'rtdetr') for name in _FOREIGN}


def _decode_other(outputs: Sequence[np.ndarray], output_format: str | OutputSpec, classes: int,
                  transform: Transform, thresholds: Thresholds) -> Detections:
    if isinstance(output_format, OutputSpec):
        if output_format.format in ('dense_boxes_scores', 'class_box'):
            return decode(outputs, output_format.format, classes, transform, thresholds)
        spec = output_format
    else:
        spec = _DEFAULT_SPECS.get(output_format)  # type: ignore[assignment]
        if spec is None:
            raise DecodeError(f'unknown output format {output_format!r}')
    decoder = _FOREIGN.get(spec.format)
    if decoder is None:
        raise DecodeError(f'unknown output format {spec.format!r}')
    return decoder(outputs, spec, classes, transform, thresholds)


# ---- what each format does, in words (``perception-bundle show``) ----------------------------------
# Beside the decoders they describe, so a change to one is in view of the other; each takes the
# bundle's OutputSpec, so the options model.json sets (box encoding, normalised, class offset, a
# count output) are in the words. Not on the per-frame path.

def _boxes_in(spec: OutputSpec, encoding: str) -> str:
    return f'{encoding} ' + ('normalised to the network input' if spec.normalised else '(network pixels)')


def _describe_dense(spec: OutputSpec, t: Thresholds) -> list[str]:
    return [f'{_names(spec)}: [B, N, 4 + C] rows of x1, y1, x2, y2 (network pixels) and per-class scores',
            f'keep (row, class) pairs with score >= {t.score}',
            f'class-aware NMS at IoU {t.nms_iou}, at most {t.max_detections} detections']


def _describe_class_box(spec: OutputSpec, t: Thresholds) -> list[str]:
    return [f'{_names(spec)}: class logits [B, C] and box [B, 4] x1, y1, x2, y2 normalised to the input',
            f'one detection per image: the best class (softmax), kept if its score >= {t.score}']


def _describe_yolo_v8(spec: OutputSpec, t: Thresholds) -> list[str]:
    return [f'{_names(spec)}: [B, 4 + C, N]: per anchor cx, cy, w, h (network pixels) and C class scores, '
            'no objectness',
            f'each anchor\'s best class, kept if its score > {t.score}',
            f'class-aware NMS at IoU {t.nms_iou}, at most {t.max_detections} detections']


def _describe_yolo_end2end(spec: OutputSpec, t: Thresholds) -> list[str]:
    return [f'{_names(spec)}: [B, K, 6] rows of x1, y1, x2, y2 (network pixels), score, class; NMS-free',
            f'keep rows with score > {t.score}, at most {t.max_detections} detections']


def _describe_rtdetr(spec: OutputSpec, t: Thresholds) -> list[str]:
    if spec.layout == 'top_k':
        return [f'{_names(spec)}: [B, K, 6]: the decoder\'s top-K rows of '
                f'{_boxes_in(spec, "cx, cy, w, h")}, score, class',
                f'keep rows with score > {t.score}, at most {t.max_detections} detections; no NMS']
    return [f'{_names(spec)}: [B, Q, 4 + C]: per query {_boxes_in(spec, "cx, cy, w, h")} and C sigmoid '
            'scores',
            f'each query\'s best class, kept if its score > {t.score}, at most {t.max_detections} detections']


def _describe_boxes_scores_labels(spec: OutputSpec, t: Thresholds) -> list[str]:
    encoding = 'cx, cy, w, h' if spec.boxes == 'cxcywh' else 'x1, y1, x2, y2'
    lines = [f'{", ".join(spec.names[:3])}: boxes [B, K, 4] {_boxes_in(spec, encoding)}, scores [B, K], '
             'labels [B, K] (NMS already in the graph)']
    if len(spec.names) == 4:
        lines.append(f'only the first {spec.names[3]} rows are detections')
    lines.append(f'keep detections with score > {t.score}, at most {t.max_detections} detections')
    if spec.class_offset:
        lines.append(f'class = label - {spec.class_offset} (labels below {spec.class_offset} are background)')
    return lines


def _names(spec: OutputSpec) -> str:
    return ', '.join(spec.names)


_DESCRIBE: dict[str, Callable[[OutputSpec, Thresholds], list[str]]] = {
    'dense_boxes_scores': _describe_dense, 'class_box': _describe_class_box,
    'yolo_v8': _describe_yolo_v8, 'yolo_end2end': _describe_yolo_end2end, 'rtdetr': _describe_rtdetr,
    'boxes_scores_labels': _describe_boxes_scores_labels}


def describe(output: OutputSpec, thresholds: Thresholds) -> list[str]:
    """How ``decode`` turns this bundle's outputs into detections, step by step, in words, with the
    thresholds it will use (the steps between preprocessing and mapping boxes to the image)."""
    describe_format = _DESCRIBE.get(output.format)
    if describe_format is None:
        raise DecodeError(f'unknown output format {output.format!r}')
    return describe_format(output, thresholds)


def decoder_for(output: OutputSpec, classes: int) -> Decoder:
    """The bundle's decoder, picked once (e.g. when a Detector is built) rather than per frame:
    ``decoder(outputs, transform, thresholds)``, with model.json's options."""
    name = output.format
    if name in ('dense_boxes_scores', 'class_box'):
        return lambda outputs, transform, thresholds: decode(outputs, name, classes, transform, thresholds)
    decoder = _FOREIGN.get(name)
    if decoder is None:
        raise DecodeError(f'unknown output format {name!r}')
    return lambda outputs, transform, thresholds: decoder(outputs, output, classes, transform, thresholds)
