"""Which output format a foreign detector's ONNX model has: model.json's ``output`` entry from the
model's outputs (names and shapes) and metadata, never from a fixed anchor count.

``perception-bundle import`` calls :func:`infer_output`; the user overrides its answer by setting
``output.format`` (and its options, bundle.py) in model.json. Ultralytics writes ``task``,
``end2end``, ``names``, ``imgsz`` and ``stride`` into an export's metadata_props; where they are
there they decide, and shapes decide the rest:

- one output ``[1, 4 + C, N]`` with N > 4 + C: ``yolo_v8`` (N = anchors for that input size, e.g.
  8400 at 640x640, 2100 at 320x320);
- one output ``[1, K, 6]``: ``yolo_end2end`` (NMS in the graph: metadata ``end2end``, or
  ``nms=True`` in the export ``args``); from an RT-DETR (metadata ``head: RTDETRDecoder``),
  ``rtdetr`` with ``layout: top_k`` (Ultralytics 8.4's export);
- one output ``[1, Q, 4 + C]`` with Q <= MAX_QUERIES: ``rtdetr`` where the metadata names an
  RT-DETR or does not say, ``dense_boxes_scores`` (this workspace's own) for an output named
  ``detections``;
- outputs named boxes, scores, labels (and num_detections): ``boxes_scores_labels``.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from typing import Any

from .bundle import BundleError

# DETR-style models emit a few hundred queries (RT-DETR: 300); dense heads emit thousands of rows.
MAX_QUERIES = 1000
BOXES_SCORES_LABELS = ('boxes', 'scores', 'labels')
COUNT_NAMES = ('num_detections', 'num_dets', 'count', 'num')
TRIED = ('yolo_v8', 'yolo_end2end', 'rtdetr', 'boxes_scores_labels', 'dense_boxes_scores')

Shape = Sequence[int | str | None]


def _dims(shape: Shape) -> list[int | None]:
    """Concrete dimensions; symbolic (strings) and unknown ones as None."""
    return [d if isinstance(d, int) and not isinstance(d, bool) and d >= 0 else None for d in shape]


def _is_true(value: str | None) -> bool | None:
    if value is None:
        return None
    return str(value).strip().lower() in ('true', '1', 'yes')


def _export_args(metadata: Mapping[str, str]) -> dict[str, Any]:
    """Ultralytics' export arguments (metadata ``args``, a Python dict literal), or {}."""
    try:
        args = ast.literal_eval(metadata.get('args', '{}'))  # metadata is data: never eval()
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return {}
    return args if isinstance(args, dict) else {}


def _describe(outputs: Sequence[tuple[str, Shape]]) -> str:
    return ', '.join(f'{name} {list(shape)}' for name, shape in outputs)


def _fail(outputs: Sequence[tuple[str, Shape]], classes: int | None, why: str) -> BundleError:
    known = f'{classes} classes' if classes is not None else 'class count unknown'
    return BundleError(f'no output format fits outputs {_describe(outputs)} ({known}): {why}; tried '
                       f'{list(TRIED)}. Set output.format (and output.names) in model.json '
                       '(bundle.py documents each format)')


def _boxes_scores_labels(outputs: Sequence[tuple[str, Shape]]) -> dict[str, Any] | None:
    """The boxes/scores/labels(/count) outputs by name, checked by shape, in the decoder's order."""
    by_name = {name.lower(): (name, _dims(shape)) for name, shape in outputs}
    if not all(n in by_name for n in BOXES_SCORES_LABELS):
        return None
    (boxes, b), (scores, s), (labels, lab) = (by_name[n] for n in BOXES_SCORES_LABELS)
    if len(b) != 3 or b[2] != 4 or len(s) not in (2, 3) or len(lab) not in (2, 3):
        return None
    k = b[1]
    if any(k is not None and d[1] is not None and d[1] != k for d in (s, lab)):
        return None
    names = [boxes, scores, labels]
    count = next((by_name[n][0] for n in COUNT_NAMES if n in by_name), None)
    if count is not None:
        names.append(count)
    return {'format': 'boxes_scores_labels', 'names': names}


def infer_output(outputs: Sequence[tuple[str, Sequence[int | str | None]]], classes: int | None,
                 metadata: Mapping[str, str]) -> dict[str, Any]:
    """model.json's "output" entry for a model with these (name, shape) outputs (dims may be symbolic
    strings or None), `classes` class names known (None if unknown), and the ONNX metadata_props
    (Ultralytics writes task, end2end, names, imgsz, stride). Raises BundleError naming every output
    shape when no format fits."""
    outputs = [(str(name), list(shape)) for name, shape in outputs]
    if not outputs:
        raise _fail(outputs, classes, 'the model has no outputs')
    found = _boxes_scores_labels(outputs)
    if found is not None:
        return found

    task = metadata.get('task')
    # end2end: the NMS-free head (YOLOv10, YOLO26 at nms=False); args.nms: NMS put in the graph on export
    end2end = _is_true(metadata.get('end2end'))
    if _export_args(metadata).get('nms') is True:
        end2end = True
    model_name = ' '.join(str(metadata.get(k, '')) for k in ('description', 'model', 'name', 'head')).lower()
    ultralytics = task is not None or 'ultralytics' in str(metadata.get('author', '')).lower()
    if task is not None and task != 'detect':
        raise _fail(outputs, classes, f'the metadata says task {task!r}; only detect models decode here')

    if len(outputs) != 1:
        raise _fail(outputs, classes, f'{len(outputs)} outputs, none named {list(BOXES_SCORES_LABELS)}')
    name, shape = outputs[0]
    dims = _dims(shape)
    if len(dims) != 3:
        raise _fail(outputs, classes, f'one output of rank {len(dims)}; the single-output formats are rank 3')
    _, rows, cols = dims
    columns = None if classes is None else 4 + classes

    def entry(fmt: str) -> dict[str, Any]:
        return {'format': fmt, 'names': [name]}

    rtdetr = 'rtdetr' in model_name or 'rt-detr' in model_name
    if rtdetr and cols == 6 and end2end is not True:
        # Ultralytics 8.4 exports RT-DETR with its decoder's top-K in the graph: [1, K, 6] rows of
        # normalised cx, cy, w, h, score, class. With two classes [1, Q, 4 + 2] looks the same.
        if columns == 6:
            raise _fail(outputs, classes, f'[1, {rows}, 6] of a two-class RT-DETR is per-query class '
                        'scores or top-K rows and nothing says which; set output.layout')
        return {**entry('rtdetr'), 'layout': 'top_k'}
    if end2end is True:
        if cols == 6:
            return entry('yolo_end2end')
        raise _fail(outputs, classes, 'the metadata says end2end but the output is not [1, K, 6]')
    if end2end is None and not rtdetr and cols == 6 and rows != 6:
        if columns == 6:  # as well [1, Q, 4 + 2] of a two-class RT-DETR
            raise _fail(outputs, classes, f'[1, {rows}, 6] is an end-to-end YOLO or a two-class RT-DETR '
                        'and no metadata says which')
        return entry('yolo_end2end')
    if rtdetr:
        if cols is not None and (columns is None or cols == columns) and cols > 4:
            return entry('rtdetr')
        raise _fail(outputs, classes, 'the metadata names an RT-DETR but the output is not [1, Q, 4 + C]'
                    + (f' with C = {classes}' if classes is not None else ''))

    # [1, 4 + C, N]: the channel axis first, anchors last. Anchors outnumber channels for any
    # real input size (8400 at 640, 2100 at 320, against 84 for 80 classes).
    channels_first = rows is not None and rows > 4 and (columns is None or rows == columns) and (
        cols is None or cols > rows)
    if channels_first:
        return entry('yolo_v8')
    # [1, Q, 4 + C]: queries or dense rows first.
    if cols is not None and cols > 4 and (columns is None or cols == columns):
        if name.lower() == 'detections' and not ultralytics:
            return entry('dense_boxes_scores')  # this workspace's own CenterNet export
        if rows is not None and rows <= MAX_QUERIES:
            return entry('rtdetr')
        if rows is None and ultralytics:
            return entry('rtdetr')  # an Ultralytics detect export with rows first is an RT-DETR
        raise _fail(outputs, classes, f'[1, {rows}, {cols}] has too many rows for DETR queries '
                    f'(> {MAX_QUERIES}) and is not named "detections"')
    why = ('no axis matches 4 + C' if columns is not None
           else 'pass the class names (--classes) to match the 4 + C axis')
    raise _fail(outputs, classes, why)
