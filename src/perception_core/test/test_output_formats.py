"""Foreign detectors' output formats, end to end: real ONNX graphs whose outputs hold known boxes in
each format, run by ONNX Runtime through open_detector, decoded into image pixels; the format
picked from shapes and metadata (infer_output); and model.json validation of the format options.

Ultralytics and torchvision do not import here (CPU torch without torchvision), so their
postprocessing cannot run: the ``reference_*`` functions below are transcribed from Ultralytics'
source (ultralytics/utils/nms.py ``non_max_suppression``, ``ops.xywh2xyxy``, ``ops.scale_boxes``,
models/rtdetr/predict.py ``RTDETRPredictor.postprocess``; 8.x), not run, and the decoders are
compared with them on random outputs. test_foreign_references.py checks the decoders against models
Ultralytics and torchvision really exported, and their own predictions.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perception_core.backends import BackendError, BackendOptions
from perception_core.bundle import BundleError, load_bundle, parse_model_json
from perception_core.convert import frame_from_fields
from perception_core.decode import Thresholds, decode, decoder_for
from perception_core.detector import open_detector
from perception_core.output_formats import infer_output
from perception_core.preprocess import Preprocessor, plan_transform

CLASSES = ('person', 'car', 'dog')
NET = 640  # Ultralytics' default imgsz: a square network input
SIZES = [(640, 480), (1280, 720)]


# ---- tiny real models ----------------------------------------------------------------------------

def write_model(directory: Path, outputs: dict[str, np.ndarray], output: dict, *, resize: str = 'letterbox',
                postprocess: dict | None = None) -> Path:
    """A bundle whose ONNX model returns ``outputs`` (constants, each made to depend on the input
    image so ONNX Runtime runs a real graph on every frame); ``output`` is model.json's entry."""
    directory.mkdir(parents=True, exist_ok=True)
    nodes = [helper.make_node('ReduceMax', ['images'], ['peak'], keepdims=0),
             helper.make_node('Mul', ['peak', 'zero'], ['nothing'])]
    initializers = [numpy_helper.from_array(np.zeros((), np.float32), 'zero')]
    infos = []
    for name, given in outputs.items():
        value = np.asarray(given)
        initializers.append(numpy_helper.from_array(value.astype(np.float32), f'{name}_value'))
        if value.dtype.kind in 'iu':
            nodes += [helper.make_node('Add', [f'{name}_value', 'nothing'], [f'{name}_float']),
                      helper.make_node('Cast', [f'{name}_float'], [name], to=TensorProto.INT64)]
            infos.append(helper.make_tensor_value_info(name, TensorProto.INT64, list(value.shape)))
        else:
            nodes.append(helper.make_node('Add', [f'{name}_value', 'nothing'], [name]))
            infos.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, list(value.shape)))
    graph = helper.make_graph(nodes, 'foreign', [helper.make_tensor_value_info(
        'images', TensorProto.FLOAT, [1, 3, NET, NET])], infos, initializers)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(directory / 'model.onnx'))
    (directory / 'model.json').write_text(json.dumps({
        'format': 1, 'arch': 'foreign', 'classes': list(CLASSES),
        'input': {'name': 'images', 'height': NET, 'width': NET, 'resize': resize, 'pad_value': 114},
        'output': output,
        'postprocess': postprocess or {'score_threshold': 0.25, 'nms_iou_threshold': 0.45,
                                       'max_detections': 100}}))
    return directory / 'model.onnx'


def frame(width: int, height: int):
    pixels = np.full((height, width, 3), 90, np.uint8)
    return frame_from_fields(encoding='rgb8', height=height, width=width, step=width * 3, is_bigendian=0,
                             data=pixels.tobytes())


def letterbox_inverse(box, width: int, height: int) -> list[float]:
    """Network pixels -> image pixels as Ultralytics' ops.scale_boxes does (transcribed): gain =
    min(net / image), pad = round((net - image * gain) / 2 - 0.1), then clip to the image."""
    gain = min(NET / width, NET / height)
    pad_x = round((NET - round(width * gain)) / 2 - 0.1)
    pad_y = round((NET - round(height * gain)) / 2 - 0.1)
    x1, y1, x2, y2 = box
    return [float(np.clip((x1 - pad_x) / gain, 0, width)), float(np.clip((y1 - pad_y) / gain, 0, height)),
            float(np.clip((x2 - pad_x) / gain, 0, width)), float(np.clip((y2 - pad_y) / gain, 0, height))]


def check(detections, expected, width, height, classes=CLASSES):
    """``expected``: (class name, score, network-pixel x1 y1 x2 y2), best first."""
    assert [classes[c] for c in detections.class_ids] == [e[0] for e in expected]
    np.testing.assert_allclose(detections.scores, [e[1] for e in expected], rtol=1e-6)
    boxes = np.array([letterbox_inverse(e[2], width, height) for e in expected]).reshape(-1, 4)
    np.testing.assert_allclose(detections.boxes.reshape(-1, 4), boxes, atol=1e-3)


# Known boxes in network pixels (x1, y1, x2, y2). In the 640 x 640 letterbox, a 640x480 image lies
# at y 80..560 and a 1280x720 one at y 140..500: BORDER lies in the padding of both.
A = (100.0, 200.0, 200.0, 300.0)
A_SHIFTED = (104.0, 204.0, 204.0, 304.0)   # IoU with A ~0.85
B = (300.0, 150.0, 500.0, 400.0)
BORDER = (10.0, 10.0, 90.0, 70.0)
LOW = (400.0, 300.0, 450.0, 350.0)


def xywh(box):
    x1, y1, x2, y2 = box
    return [(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]


# ---- yolo_v8 -------------------------------------------------------------------------------------

def yolo_v8_output():
    """[1, 4 + 3, 9] anchors: the graph's transposed layout, with several classes scored per anchor."""
    anchors = [  # box, class scores
        (A, [0.90, 0.10, 0.20]),
        (A_SHIFTED, [0.80, 0.00, 0.00]),        # same class as A, overlapping: NMS removes it
        (A_SHIFTED, [0.00, 0.70, 0.05]),        # same place, other class: kept
        (B, [0.00, 0.30, 0.60]),                # best class only (multi_label off): one detection
        (LOW, [0.20, 0.10, 0.00]),              # below the threshold
        (BORDER, [0.00, 0.95, 0.00]),           # in the letterbox border: dropped
    ] + [((0.0, 0.0, 0.0, 0.0), [0.0, 0.0, 0.0])] * 3
    rows = np.array([xywh(box) + scores for box, scores in anchors], np.float32)
    return rows.T[None]


YOLO_V8_EXPECTED = [('person', 0.9, A), ('car', 0.7, A_SHIFTED), ('dog', 0.6, B)]


@pytest.fixture(scope='module')
def yolo_v8_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('yolo_v8'), {'output0': yolo_v8_output()},
                       {'format': 'yolo_v8', 'names': ['output0']})


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_yolo_v8_detections_land_in_image_pixels(yolo_v8_model, width, height):
    detector, _ = open_detector(yolo_v8_model, options=BackendOptions(threads=1))
    check(detector.detect(frame(width, height))[0], YOLO_V8_EXPECTED, width, height)


def test_yolo_v8_thresholds_nms_and_limit(yolo_v8_model):
    f = frame(640, 480)
    assert len(open_detector(yolo_v8_model, score=0.65)[0].detect(f)[0]) == 2
    # The limit applies to NMS's output, BORDER included (as Ultralytics' max_det), then the box
    # with no image pixels is dropped (as dense_boxes_scores does)
    assert len(open_detector(yolo_v8_model, max_detections=3)[0].detect(f)[0]) == 2
    # NMS off in effect: A_SHIFTED's class-0 anchor survives, LOW passes a low threshold
    loose = open_detector(yolo_v8_model, score=0.15, nms_iou=0.99)[0].detect(f)[0]
    assert sorted(round(s, 2) for s in loose.scores.tolist()) == [0.2, 0.6, 0.7, 0.8, 0.9]


# ---- yolo_end2end --------------------------------------------------------------------------------

def end2end_output():
    rows = [[*A, 0.90, 0], [*A_SHIFTED, 0.80, 0],  # overlapping, same class: both kept
            [*B, 0.60, 2], [*BORDER, 0.55, 1], [*LOW, 0.20, 1]]
    rows += [[0.0] * 6] * 3  # padding rows of a fixed-K export
    return np.array(rows, np.float32)[None]


END2END_EXPECTED = [('person', 0.9, A), ('person', 0.8, A_SHIFTED), ('dog', 0.6, B)]


@pytest.fixture(scope='module')
def end2end_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('end2end'), {'output0': end2end_output()},
                       {'format': 'yolo_end2end', 'names': ['output0']})


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_yolo_end2end_has_no_nms(end2end_model, width, height):
    detector, _ = open_detector(end2end_model, options=BackendOptions(threads=1))
    check(detector.detect(frame(width, height))[0], END2END_EXPECTED, width, height)
    assert len(open_detector(end2end_model, max_detections=1)[0].detect(frame(width, height))[0]) == 1
    assert len(open_detector(end2end_model, score=0.85)[0].detect(frame(width, height))[0]) == 1


# ---- rtdetr --------------------------------------------------------------------------------------

def rtdetr_output():
    queries = [(A, [0.90, 0.10, 0.20]), (A_SHIFTED, [0.80, 0.00, 0.00]),   # both kept: no NMS
               (B, [0.00, 0.30, 0.60]), (BORDER, [0.00, 0.95, 0.00]), (LOW, [0.2, 0.1, 0.0])]
    queries += [((0.0, 0.0, 1.0, 1.0), [0.01, 0.01, 0.01])] * 5
    return np.array([[v / NET for v in xywh(box)] + scores for box, scores in queries], np.float32)[None]


@pytest.fixture(scope='module')
def rtdetr_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('rtdetr'), {'output0': rtdetr_output()},
                       {'format': 'rtdetr', 'names': ['output0']})


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_rtdetr_scales_normalised_boxes(rtdetr_model, width, height):
    detector, _ = open_detector(rtdetr_model, options=BackendOptions(threads=1))
    check(detector.detect(frame(width, height))[0],
          [('person', 0.9, A), ('person', 0.8, A_SHIFTED), ('dog', 0.6, B)], width, height)
    # BORDER (0.95) takes one of the three, then holds no image pixels
    assert len(open_detector(rtdetr_model, max_detections=3)[0].detect(frame(width, height))[0]) == 2


# ---- boxes_scores_labels -------------------------------------------------------------------------

def bsl_outputs(labels_from: int = 0):
    boxes = [A, A_SHIFTED, B, BORDER, LOW, (0.0, 0.0, 50.0, 50.0)]
    scores = [0.90, 0.80, 0.60, 0.55, 0.10, 0.99]   # the last row is past num_detections
    labels = [0, 0, 2, 1, 1, 1]
    return {'boxes': np.array(boxes, np.float32)[None], 'scores': np.array(scores, np.float32)[None],
            'labels': (np.array(labels, np.int64) + labels_from)[None],
            'num_detections': np.array([5], np.int64)}


@pytest.fixture(scope='module')
def bsl_model(tmp_path_factory):
    return write_model(tmp_path_factory.mktemp('bsl'), bsl_outputs(),
                       {'format': 'boxes_scores_labels',
                        'names': ['boxes', 'scores', 'labels', 'num_detections']})


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_boxes_scores_labels_keep_the_count(bsl_model, width, height):
    detector, _ = open_detector(bsl_model, options=BackendOptions(threads=1))
    check(detector.detect(frame(width, height))[0], END2END_EXPECTED, width, height)
    assert len(open_detector(bsl_model, max_detections=2)[0].detect(frame(width, height))[0]) == 2


def run_with_options(model, width, height):
    """The detector's preprocessing and backend, decoded with the bundle's OutputSpec (options)."""
    detector, _ = open_detector(model, options=BackendOptions(threads=1))
    f = frame(width, height)
    tensor, transform = Preprocessor(detector.bundle.input)(f.pixels, f.rgb_channels)
    outputs = detector.backend.infer(tensor)
    by_spec = decode(outputs, detector.bundle.output, len(CLASSES), transform, detector.thresholds)
    once = decoder_for(detector.bundle.output, len(CLASSES))(outputs, transform, detector.thresholds)
    np.testing.assert_array_equal(by_spec.boxes, once.boxes)
    return by_spec


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_torchvision_style_labels_normalised_cxcywh(tmp_path, width, height):
    """torchvision counts labels from 1 (0 = background); boxes here cx, cy, w, h in [0, 1]."""
    outputs = bsl_outputs(labels_from=1)
    outputs['boxes'] = np.array([[[v / NET for v in xywh(b)] for b in outputs['boxes'][0]]], np.float32)
    outputs['labels'][0, 4] = 0   # background
    del outputs['num_detections']
    output = {'format': 'boxes_scores_labels', 'names': ['boxes', 'scores', 'labels'], 'boxes': 'cxcywh',
              'normalised': True, 'class_offset': 1}
    model = write_model(tmp_path, outputs, output, postprocess={
        'score_threshold': 0.05, 'nms_iou_threshold': 0.45, 'max_detections': 100})
    # (0, 0, 50, 50) at 0.99 now counts (no num_detections) but lies in the border; LOW is background
    check(run_with_options(model, width, height), END2END_EXPECTED, width, height)


# ---- against Ultralytics' postprocessing, transcribed -------------------------------------------

def reference_xywh2xyxy(x):
    y = np.empty_like(x)
    dw, dh = x[..., 2] / 2, x[..., 3] / 2
    y[..., 0], y[..., 1] = x[..., 0] - dw, x[..., 1] - dh
    y[..., 2], y[..., 3] = x[..., 0] + dw, x[..., 1] + dh
    return y


def reference_torchvision_nms(boxes, scores, iou_thres):
    """torchvision.ops.nms: greedy by score, drop boxes with IoU > iou_thres with a kept one."""
    order = np.argsort(-scores, kind='stable')
    keep = []
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    suppressed = np.zeros(len(boxes), bool)
    for i in order:
        if suppressed[i]:
            continue
        keep.append(i)
        w = np.clip(np.minimum(boxes[i, 2], boxes[:, 2]) - np.maximum(boxes[i, 0], boxes[:, 0]), 0, None)
        h = np.clip(np.minimum(boxes[i, 3], boxes[:, 3]) - np.maximum(boxes[i, 1], boxes[:, 1]), 0, None)
        inter = w * h
        suppressed |= inter / (area[i] + area - inter) > iou_thres
    return np.array(keep, np.int64)


def reference_non_max_suppression(prediction, conf_thres, iou_thres, max_det, *, max_wh=7680, max_nms=30000):
    """ultralytics/utils/nms.py non_max_suppression, multi_label=False, agnostic=False, one image."""
    nc = prediction.shape[1] - 4
    xc = prediction[:, 4:4 + nc].max(1) > conf_thres
    prediction = prediction.transpose(0, 2, 1).copy()
    prediction[..., :4] = reference_xywh2xyxy(prediction[..., :4])
    x = prediction[0][xc[0]]
    box, cls = x[:, :4], x[:, 4:4 + nc]
    conf, j = cls.max(1, keepdims=True), cls.argmax(1)[:, None]
    x = np.concatenate((box, conf, j.astype(np.float32)), 1)[conf[:, 0] > conf_thres]
    x = x[np.argsort(-x[:, 4], kind='stable')[:max_nms]]
    c = x[:, 5:6] * max_wh   # class offsets: NMS per class
    i = reference_torchvision_nms(x[:, :4] + c, x[:, 4], iou_thres)[:max_det]
    return x[i]


def reference_scale_boxes(boxes, width, height, net_h=NET, net_w=NET):
    """ops.scale_boxes for a letterboxed input, then clip_boxes."""
    gain = min(net_h / height, net_w / width)
    pad_x = round((net_w - round(width * gain)) / 2 - 0.1)
    pad_y = round((net_h - round(height * gain)) / 2 - 0.1)
    out = boxes.copy()
    out[:, [0, 2]] = np.clip((out[:, [0, 2]] - pad_x) / gain, 0, width)
    out[:, [1, 3]] = np.clip((out[:, [1, 3]] - pad_y) / gain, 0, height)
    return out


@pytest.mark.parametrize(('width', 'height', 'anchors'), [(640, 480, 8400), (1280, 720, 8400),
                                                          (640, 480, 2100)])
def test_yolo_v8_matches_ultralytics_non_max_suppression(width, height, anchors):
    rng = np.random.default_rng(anchors + width)
    classes = 80
    xy = rng.uniform([0, 60], [NET, NET - 60], (anchors, 2))
    wh = rng.uniform(8, 200, (anchors, 2))
    scores = 1 / (1 + np.exp(-(rng.normal(-5, 2.5, (anchors, classes)))))
    prediction = np.concatenate([xy, wh, scores], 1).astype(np.float32).T[None]   # [1, 84, N]
    conf, iou, max_det = 0.25, 0.7, 300
    ref = reference_non_max_suppression(prediction, conf, iou, max_det)
    ref_boxes = reference_scale_boxes(ref[:, :4], width, height)
    real = (ref_boxes[:, 2] > ref_boxes[:, 0]) & (ref_boxes[:, 3] > ref_boxes[:, 1])
    ref, ref_boxes = ref[real], ref_boxes[real]   # Results keeps these; they hold no image pixels
    transform = plan_transform(height, width, load_spec())
    out = decode([prediction], 'yolo_v8', classes, transform, Thresholds(conf, iou, max_det))
    assert len(out) == len(ref) > 50
    np.testing.assert_allclose(out.boxes, ref_boxes, atol=1e-3)
    np.testing.assert_allclose(out.scores, ref[:, 4], atol=1e-6)
    assert out.class_ids.tolist() == ref[:, 5].astype(int).tolist()


def reference_rtdetr_postprocess(preds, conf, width, height):
    """models/rtdetr/predict.py RTDETRPredictor.postprocess (stretched input, scale_fill=True)."""
    nd = preds.shape[-1]
    bboxes, scores = preds[0][:, :4], preds[0][:, 4:nd]
    bbox = reference_xywh2xyxy(bboxes)
    score, cls = scores.max(-1, keepdims=True), scores.argmax(-1)[:, None]
    idx = score[:, 0] > conf
    pred = np.concatenate([bbox, score, cls.astype(np.float32)], -1)[idx]
    pred[..., [0, 2]] *= width
    pred[..., [1, 3]] *= height
    return pred


@pytest.mark.parametrize(('width', 'height'), SIZES)
def test_rtdetr_matches_ultralytics_postprocess(width, height):
    rng = np.random.default_rng(width)
    queries, classes = 300, 80
    xy = rng.uniform(0.1, 0.9, (queries, 2))
    wh = rng.uniform(0.02, 0.2, (queries, 2))
    scores = 1 / (1 + np.exp(-(rng.normal(-4, 2, (queries, classes)))))
    preds = np.concatenate([xy, wh, scores], 1).astype(np.float32)[None]
    ref = reference_rtdetr_postprocess(preds, 0.25, width, height)
    ref = ref[np.argsort(-ref[:, 4], kind='stable')]   # Results order does not matter; ours is best first
    transform = plan_transform(height, width, load_spec(resize='stretch'))
    out = decode([preds], 'rtdetr', classes, transform, Thresholds(0.25, 0.7, 300))
    assert len(out) == len(ref) > 20
    np.testing.assert_allclose(out.boxes, np.clip(ref[:, :4], 0, [width, height, width, height]), atol=2e-3)
    np.testing.assert_allclose(out.scores, ref[:, 4], atol=1e-6)
    assert out.class_ids.tolist() == ref[:, 5].astype(int).tolist()


def test_end2end_matches_ultralytics_end2end_branch():
    """non_max_suppression's end-to-end branch: ``pred[pred[:, 4] > conf_thres][:max_det]`` of rows
    the graph already sorted by score."""
    rng = np.random.default_rng(3)
    k = 300
    x1y1 = rng.uniform(0, 500, (k, 2))
    sorted_scores = np.sort(rng.uniform(0, 1, (k, 1)), 0)[::-1]
    rows = np.concatenate([x1y1, x1y1 + rng.uniform(5, 140, (k, 2)), sorted_scores,
                           rng.integers(0, 80, (k, 1))], 1).astype(np.float32)
    ref = rows[rows[:, 4] > 0.4][:50]
    transform = plan_transform(NET, NET, load_spec())
    out = decode([rows[None]], 'yolo_end2end', 80, transform, Thresholds(0.4, 0.7, 50))
    np.testing.assert_allclose(out.boxes, np.clip(ref[:, :4], 0, NET), atol=1e-4)
    np.testing.assert_allclose(out.scores, ref[:, 4])
    assert out.class_ids.tolist() == ref[:, 5].astype(int).tolist()


def load_spec(resize='letterbox'):
    return parse_model_json({'format': 1, 'classes': ['a'], 'input': {
        'name': 'images', 'height': NET, 'width': NET, 'resize': resize},
        'output': {'format': 'yolo_v8', 'names': ['output0']}}, Path('.'), 'test').input


# ---- infer_output --------------------------------------------------------------------------------

ULTRALYTICS = {'description': 'Ultralytics YOLO11n model trained on coco.yaml', 'author': 'Ultralytics',
               'task': 'detect', 'end2end': 'False', 'stride': '32', 'imgsz': '[640, 640]', 'batch': '1',
               'names': "{0: 'person', 1: 'bicycle'}"}


@pytest.mark.parametrize(('outputs', 'classes', 'metadata', 'expected'), [
    ([('output0', [1, 84, 8400])], 80, ULTRALYTICS, 'yolo_v8'),                  # yolo11n at 640
    ([('output0', [1, 84, 8400])], 80, {}, 'yolo_v8'),
    ([('output0', [1, 84, 8400])], None, {}, 'yolo_v8'),
    ([('output0', [1, 84, 2100])], 80, {**ULTRALYTICS, 'imgsz': '[320, 320]'}, 'yolo_v8'),
    ([('output0', [1, 84, 2100])], None, {}, 'yolo_v8'),
    ([('output0', [1, 7, 'anchors'])], 3, {}, 'yolo_v8'),                          # dynamic input size
    ([('output0', ['batch', 84, None])], 80, {}, 'yolo_v8'),
    ([('output0', [1, 300, 6])], 80, {**ULTRALYTICS, 'end2end': 'True'}, 'yolo_end2end'),   # YOLO26 / v10
    ([('output0', [1, 300, 6])], 80, {}, 'yolo_end2end'),
    ([('output0', [1, 300, 6])], None, {}, 'yolo_end2end'),
    ([('output0', [1, 300, 84])], 80, {**ULTRALYTICS, 'description': 'Ultralytics rtdetr-l model trained on '
                                       'coco.yaml'}, 'rtdetr'),
    ([('output0', [1, 300, 84])], 80, {}, 'rtdetr'),
    ([('output0', [1, 300, 84])], None, {}, 'rtdetr'),
    ([('detections', [1, 5120, 14])], 10, {}, 'dense_boxes_scores'),              # this workspace's own
    ([('detections', [1, 5120, 14])], None, {}, 'dense_boxes_scores'),
])
def test_infer_output_formats(outputs, classes, metadata, expected):
    entry = infer_output(outputs, classes, metadata)
    assert entry == {'format': expected, 'names': [outputs[0][0]]}


def test_infer_output_boxes_scores_labels_in_decoder_order():
    outputs = [('num_detections', [1]), ('labels', [1, 'k']), ('scores', [1, 'k']), ('boxes', [1, 'k', 4])]
    assert infer_output(outputs, 91, {}) == {
        'format': 'boxes_scores_labels', 'names': ['boxes', 'scores', 'labels', 'num_detections']}
    assert infer_output(outputs[1:], None, {})['names'] == ['boxes', 'scores', 'labels']


def test_inferred_entries_are_valid_model_json():
    for outputs, classes in [([('output0', [1, 84, 8400])], 80), ([('output0', [1, 300, 6])], 80),
                             ([('boxes', [1, 9, 4]), ('scores', [1, 9]), ('labels', [1, 9])], 80)]:
        parse_model_json({'format': 1, 'classes': [f'c{i}' for i in range(classes)],
                          'input': {'name': 'images', 'height': NET, 'width': NET},
                          'output': infer_output(outputs, classes, {})}, Path('.'), 'inferred')


@pytest.mark.parametrize(('outputs', 'classes', 'metadata', 'message'), [
    ([('out', [1, 10, 10, 3])], 80, {}, r"out \[1, 10, 10, 3\] \(80 classes\).*rank 4"),
    ([('a', [1, 5]), ('b', [1, 7])], None, {}, r"a \[1, 5\], b \[1, 7\] \(class count unknown\)"),
    ([('output0', [1, 84, 8400])], 3, {}, r'output0 \[1, 84, 8400\] \(3 classes\): no axis matches 4 \+ C'),
    ([('output0', [1, 300, 6])], 2, {}, 'end-to-end YOLO or a two-class RT-DETR'),
    ([('output0', [1, 300, 6])], 2, {'description': 'Ultralytics rtdetr-l model'}, 'set output.layout'),
    ([('output0', [1, 84, 8400])], 80, {**ULTRALYTICS, 'end2end': 'True'}, 'says end2end'),
    ([('output0', [1, 116, 8400]), ('output1', [1, 32, 160, 160])], 80, {**ULTRALYTICS, 'task': 'segment'},
     "task 'segment'"),
])
def test_infer_output_names_the_shapes_when_nothing_fits(outputs, classes, metadata, message):
    with pytest.raises(BundleError, match=message) as raised:
        infer_output(outputs, classes, metadata)
    assert 'tried' in str(raised.value) and 'output.format' in str(raised.value)


# ---- model.json options and backends -------------------------------------------------------------

def model_json(output):
    return {'format': 1, 'classes': list(CLASSES), 'input': {'name': 'images', 'height': NET, 'width': NET},
            'output': output}


@pytest.mark.parametrize(('output', 'key', 'message'), [
    ({'format': 'yolo_v8', 'names': ['a', 'b']}, 'output.names', 'wrong number of outputs for yolo_v8'),
    ({'format': 'boxes_scores_labels', 'names': ['boxes', 'scores']}, 'output.names', '3 to 4'),
    ({'format': 'boxes_scores_labels', 'names': ['b', 'b', 'c']}, 'output.names', 'twice'),
    ({'format': 'yolo_v8', 'names': ['o'], 'class_offset': 1}, 'output.class_offset', 'not apply to format'),
    ({'format': 'dense_boxes_scores', 'names': ['o'], 'normalised': True}, 'output.normalised', 'not apply'),
    ({'format': 'boxes_scores_labels', 'names': ['b', 's', 'l'], 'boxes': 'xywh'}, 'output: boxes', 'xyxy'),
    ({'format': 'rtdetr', 'names': ['o'], 'normalised': 'yes'}, 'output.normalised', 'true or false'),
    ({'format': 'boxes_scores_labels', 'names': ['b', 's', 'l'], 'class_offset': -1}, 'output.class_offset',
     'non-negative'),
    ({'format': 'yolo_v9', 'names': ['o']}, 'output: format', 'yolo_end2end'),
])
def test_output_options_are_validated(output, key, message):
    with pytest.raises(BundleError, match=message) as raised:
        parse_model_json(model_json(output), Path('.'), 'model.json')
    assert key in str(raised.value)


def test_a_bundle_path_that_does_not_exist_is_named(tmp_path):
    with pytest.raises(BundleError, match='no such bundle') as raised:
        load_bundle(tmp_path / 'missing')
    assert str(raised.value).startswith(str(tmp_path / 'missing'))


def test_output_option_defaults():
    rt = parse_model_json(model_json({'format': 'rtdetr', 'names': ['o']}), Path('.'), 'm').output
    assert rt.normalised and rt.class_offset == 0
    bsl = parse_model_json(model_json({'format': 'boxes_scores_labels', 'names': ['b', 's', 'l'],
                                       'class_offset': 1, 'boxes': 'cxcywh'}), Path('.'), 'm').output
    assert (bsl.boxes, bsl.normalised, bsl.class_offset) == ('cxcywh', False, 1)


def test_torch_cuda_refuses_foreign_formats_at_load(yolo_v8_model):
    from perception_core.backends.torch_cuda import TorchCudaBackend
    bundle = load_bundle(yolo_v8_model)
    with pytest.raises(BackendError, match="torch_cuda does not decode output format 'yolo_v8'"):
        TorchCudaBackend(yolo_v8_model.with_name('model.ts'), bundle, BackendOptions())
