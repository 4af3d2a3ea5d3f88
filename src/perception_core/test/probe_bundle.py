"""A real, tiny model bundle for plumbing tests: an ONNX graph whose detections are fixed
(known boxes in network pixels, so image-pixel results can be computed exactly) and which fails
inside ONNX Runtime on a frame with no pixel above 127, such as an all-black one (a real
backend crash on one frame).

Accuracy is the shipped bundle's job (models/detector); this one tests that every pixel,
stamp and error goes where it should.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

CLASSES = ('cup', 'bottle', 'box')
HEIGHT, WIDTH = 256, 320
# x1, y1, x2, y2 in network pixels, then per-class scores
ROWS = np.array([
    [40, 60, 120, 140, 0.90, 0.00, 0.00],
    [44, 62, 124, 142, 0.80, 0.00, 0.00],   # overlaps row 0, same class: NMS removes it
    [44, 62, 124, 142, 0.00, 0.70, 0.00],   # same place, other class: kept
    [200, 100, 300, 200, 0.00, 0.00, 0.60],
    [0, 0, 10, 10, 0.00, 0.00, 0.10],       # below the default threshold
], dtype=np.float32)


def write_probe_bundle(directory: Path, resize: str = 'letterbox', layout: str = 'NCHW') -> Path:
    """Write model.onnx + model.json into ``directory``; returns the model.onnx path."""
    directory.mkdir(parents=True, exist_ok=True)
    shape = [1, 3, HEIGHT, WIDTH] if layout == 'NCHW' else [1, HEIGHT, WIDTH, 3]
    nodes = [
        helper.make_node('ReduceMax', ['images'], ['peak'], keepdims=0),
        helper.make_node('Reshape', ['peak', 'one_shape'], ['peak1']),
        helper.make_node('Greater', ['peak1', 'dark'], ['lit']),
        # [1, k]: k = 0 on an all-black frame, and the Reshape to [1, 1, 1] then fails
        helper.make_node('NonZero', ['lit'], ['lit_index']),
        helper.make_node('Cast', ['lit_index'], ['lit_float'], to=TensorProto.FLOAT),
        helper.make_node('Reshape', ['lit_float', 'gate_shape'], ['gate']),
        helper.make_node('Mul', ['gate', 'zero'], ['nothing']),
        helper.make_node('Add', ['rows', 'nothing'], ['detections']),
    ]
    initializers = [
        numpy_helper.from_array(np.array([1], np.int64), 'one_shape'),
        numpy_helper.from_array(np.array([0.5], np.float32), 'dark'),  # above the pad (114)
        numpy_helper.from_array(np.array([1, 1, 1], np.int64), 'gate_shape'),
        numpy_helper.from_array(np.zeros(1, np.float32), 'zero'),
        numpy_helper.from_array(ROWS[None], 'rows'),
    ]
    graph = helper.make_graph(
        nodes, 'probe', [helper.make_tensor_value_info('images', TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info('detections', TensorProto.FLOAT, [1, len(ROWS), 4 + len(CLASSES)])],
        initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx_path = directory / 'model.onnx'
    onnx.save(model, str(onnx_path))
    (directory / 'model.json').write_text(json.dumps({
        'format': 1, 'arch': 'probe', 'classes': list(CLASSES),
        'input': {'name': 'images', 'height': HEIGHT, 'width': WIDTH, 'layout': layout, 'color': 'RGB',
                  'resize': resize, 'pad_value': 114, 'mean': [0.0, 0.0, 0.0], 'std': [1.0, 1.0, 1.0]},
        'output': {'format': 'dense_boxes_scores', 'names': ['detections']},
        'postprocess': {'score_threshold': 0.3, 'nms_iou_threshold': 0.5, 'max_detections': 100},
    }, indent=2))
    return onnx_path


def expected_boxes(image_width: int, image_height: int) -> list[tuple[str, float, tuple[float, ...]]]:
    """(class, score, x1 y1 x2 y2 in image pixels) the node must publish for the letterbox bundle."""
    scale = min(WIDTH / image_width, HEIGHT / image_height)
    rw, rh = round(image_width * scale), round(image_height * scale)
    px, py = (WIDTH - rw) // 2, (HEIGHT - rh) // 2
    sx, sy = rw / image_width, rh / image_height
    out = []
    for row in ROWS[[0, 2, 3]]:
        x1, y1, x2, y2 = row[:4]
        class_id = int(np.argmax(row[4:]))
        box = tuple(float(v) for v in (
            np.clip((x1 - px) / sx, 0, image_width), np.clip((y1 - py) / sy, 0, image_height),
            np.clip((x2 - px) / sx, 0, image_width), np.clip((y2 - py) / sy, 0, image_height)))
        out.append((CLASSES[class_id], float(row[4 + class_id]), box))
    return out
