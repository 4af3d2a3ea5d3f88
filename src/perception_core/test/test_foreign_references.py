"""Foreign detectors against their own frameworks: models trained and exported by Ultralytics 8.4.190
and torchvision 0.26 on the GPU device, with the frameworks' own predictions on the committed scenes
(fixtures/foreign/reference.json, made by tools/foreign_models.py; the small models' .onnx files are
copied from its --out). Here each goes through ``perception-bundle import`` and the node's Detector
(ONNX Runtime) on the same PNGs.

- YOLO26 (small width) exported NMS-free (``nms=False``): ``[1, 300, 6]`` x1, y1, x2, y2, score, class.
- RT-DETR (small width) as Ultralytics 8.4 exports it: ``[1, 300, 6]`` rows of its decoder's top-K
  (normalised cx, cy, w, h, score, class), predicted on a stretched input. Ultralytics leaves boxes
  unclipped; the node clips them to the image, so the reference is clipped before comparing.
- torchvision Faster R-CNN (MobileNetV3-small features) with its transform and postprocessing in
  the graph: boxes, scores, labels (0 = background: model.json ``class_offset: 1``). torchvision
  resizes the frame itself (float bilinear); the node resizes with OpenCV (uint8): on OpenCV's
  half-size frame torchvision's detections are the node's exactly, on its own resize nearly.
- The export metadata of the five models (two are 10 MB and not committed) decide their formats.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_core.bundle_import import import_model
from perception_core.convert import frame_from_fields
from perception_core.decode import Detections
from perception_core.detector import open_detector
from perception_core.engine.agreement import matched_ious
from perception_core.output_formats import infer_output

FIXTURES = Path(__file__).parent / 'fixtures'
FOREIGN = FIXTURES / 'foreign'
SCENES = FIXTURES / 'ultralytics'
REFERENCE = json.loads((FOREIGN / 'reference.json').read_text())
CLASSES = REFERENCE['fasterrcnn_small']['classes']


def imported(tmp_path_factory: pytest.TempPathFactory, name: str, classes: bool = False) -> Path:
    out = tmp_path_factory.mktemp('imported') / name
    names = None
    if classes:
        names = out.parent / 'classes.txt'
        names.write_text(''.join(c + '\n' for c in CLASSES))
    return Path(import_model(FOREIGN / f'{name}.onnx', out, classes_file=names))


def detect(bundle: Path, image: str, threshold: float, max_detections: int = 300) -> Detections:
    detector, _ = open_detector(bundle / 'model.onnx', score=threshold, max_detections=max_detections)
    rgb = np.ascontiguousarray(cv2.imread(str(SCENES / image))[:, :, ::-1])
    height, width = rgb.shape[:2]
    found, _ = detector.detect(frame_from_fields(encoding='rgb8', height=height, width=width, step=width * 3,
                                                 is_bigendian=0, data=rgb.tobytes()))
    return found


def reference(frame: dict, threshold: float, labels: str = 'classes', offset: int = 0,
              clip: bool = False) -> Detections:
    boxes = np.array(frame['boxes'], np.float32).reshape(-1, 4)
    if clip:
        np.clip(boxes, 0, [frame['width'], frame['height']] * 2, out=boxes)
    scores = np.array(frame['scores'], np.float32)
    keep = scores > threshold
    return Detections(boxes[keep], scores[keep], np.array(frame[labels], np.int64)[keep] - offset)


def assert_same(found: Detections, expected: Detections, iou: float = 0.9999, score: float = 1e-5) -> None:
    """The same detections: same count, classes, scores, and boxes in score order."""
    assert len(found) == len(expected)
    a, b = np.argsort(-found.scores, kind='stable'), np.argsort(-expected.scores, kind='stable')
    assert np.allclose(found.scores[a], expected.scores[b], atol=score)
    assert (found.class_ids[a] == expected.class_ids[b]).all()
    if len(found):
        assert min(matched_ious(expected, found)) > iou


@pytest.fixture(scope='module')
def yolo26(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return imported(tmp_path_factory, 'yolo26_small_end2end')


@pytest.fixture(scope='module')
def rtdetr(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return imported(tmp_path_factory, 'rtdetr_small')


@pytest.fixture(scope='module')
def fasterrcnn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    bundle = imported(tmp_path_factory, 'fasterrcnn_small', classes=True)
    model = json.loads((bundle / 'model.json').read_text())
    model['output']['class_offset'] = 1  # torchvision counts the background as label 0
    (bundle / 'model.json').write_text(json.dumps(model, indent=1))
    return bundle


@pytest.mark.parametrize(('export', 'expected'), [
    ('yolo11n_synth.onnx', {'format': 'yolo_v8', 'names': ['output0']}),
    ('yolo11n_synth_nms.onnx', {'format': 'yolo_end2end', 'names': ['output0']}),
    ('yolo26_small_end2end.onnx', {'format': 'yolo_end2end', 'names': ['output0']}),
    ('rtdetr_small.onnx', {'format': 'rtdetr', 'names': ['output0'], 'layout': 'top_k'}),
    ('fasterrcnn_small.onnx', {'format': 'boxes_scores_labels', 'names': ['boxes', 'scores', 'labels']}),
])
def test_each_export_gets_its_format_from_its_own_metadata_and_shapes(export: str, expected: dict) -> None:
    model = REFERENCE['exports'][export]
    assert infer_output(model['outputs'], len(CLASSES), model['metadata']) == expected


def test_yolo26_end2end_matches_ultralytics(yolo26: Path) -> None:
    assert json.loads((yolo26 / 'model.json').read_text())['output']['format'] == 'yolo_end2end'
    frames = REFERENCE['yolo26_small']['scenes']
    assert sum(len(f['boxes']) for f in frames) >= 10
    for frame in frames:
        assert_same(detect(yolo26, frame['image'], 0.25), reference(frame, 0.25))


def test_rtdetr_top_k_matches_ultralytics(rtdetr: Path) -> None:
    model = json.loads((rtdetr / 'model.json').read_text())
    assert (model['output']['layout'], model['input']['resize']) == ('top_k', 'stretch')
    frames = REFERENCE['rtdetr_small']['scenes']
    assert sum(len(f['boxes']) for f in frames) >= 20
    for frame in frames:
        assert_same(detect(rtdetr, frame['image'], 0.25), reference(frame, 0.25, clip=True))


def test_fasterrcnn_matches_torchvision_on_the_same_input(fasterrcnn: Path) -> None:
    frame = next(f for f in REFERENCE['fasterrcnn_small']['frames'] if f['input'].startswith('cv2'))
    expected = reference(frame, 0.0, labels='labels', offset=1)
    assert len(expected) == REFERENCE['fasterrcnn_small']['detections_per_img'] == 100
    assert_same(detect(fasterrcnn, frame['image'], 0.0, 100), expected)


def test_fasterrcnn_near_torchvision_on_its_own_resize(fasterrcnn: Path) -> None:
    # float bilinear against OpenCV's uint8 result: pixels differ by < 1/255, scores by rounding,
    # and a box at the 100-detection cut may trade places with the next one
    frame = next(f for f in REFERENCE['fasterrcnn_small']['frames'] if f['input'].startswith('full'))
    expected = reference(frame, 0.0, labels='labels', offset=1)
    found = detect(fasterrcnn, frame['image'], 0.0, 100)
    ious = np.array(matched_ious(expected, found))
    assert len(found) == len(expected) == 100
    assert (ious > 0.99).sum() >= 95, np.sort(ious)[:8]
