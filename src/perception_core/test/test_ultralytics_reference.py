"""The yolo_v8 decoder against Ultralytics itself: a YOLO11 (small width, random weights) exported
by Ultralytics 8.4.190 to ONNX, and Ultralytics' own predictions on two scenes (its LetterBox, ONNX
Runtime through its AutoBackend, non_max_suppression, scale_boxes; predict() defaults conf 0.25,
iou 0.7, max_det 300). The fixture was made on the GPU device, where Ultralytics imports, by
tools/ultralytics_fixture.py; here the model goes through ``perception-bundle import`` and the
node's Detector (ONNX Runtime) on the same PNGs.

The random weights leave 210 of each frame's 300 detections at one and the same score (0.312),
every other at 0.5 or more. Among equal scores, which overlapping box NMS keeps first depends on
the sort's order of ties and on the last bits of the pixels: the 960x540 frame's resize (a third of
a pixel per step) differs there between OpenCV builds. So the 640x480 frame (an exact halving) is
compared at Ultralytics' defaults, all 300 detections, and both frames above the tied score.
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

FIXTURE = Path(__file__).parent / 'fixtures' / 'ultralytics'
REFERENCE = json.loads((FIXTURE / 'ultralytics_predictions.json').read_text())
CLEAR_OF_TIES = 0.4  # above the tied 0.312, below every other score (0.5 and more)


@pytest.fixture(scope='module')
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(import_model(FIXTURE / 'yolo11_tiny.onnx', tmp_path_factory.mktemp('imported') / 'yolo11'))


def reference(frame: dict, threshold: float) -> Detections:
    scores = np.array(frame['scores'], np.float32)
    keep = scores > threshold  # greedy NMS: what survives above a threshold is what a run at it keeps
    return Detections(np.array(frame['boxes'], np.float32)[keep], scores[keep],
                      np.array(frame['classes'], np.int64)[keep])


def ours(bundle: Path, frame: dict, threshold: float) -> Detections:
    detector, _ = open_detector(bundle / 'model.onnx', score=threshold, max_detections=300)
    rgb = np.ascontiguousarray(cv2.imread(str(FIXTURE / frame['image']))[:, :, ::-1])
    height, width = rgb.shape[:2]
    found, _ = detector.detect(frame_from_fields(encoding='rgb8', height=height, width=width, step=width * 3,
                                                 is_bigendian=0, data=rgb.tobytes()))
    return found


def assert_same(found: Detections, expected: Detections) -> None:
    assert len(found) == len(expected)
    ious = matched_ious(expected, found)  # same class, best overlap first
    assert min(ious) > 0.999, sorted(ious)[:5]
    assert np.allclose(np.sort(found.scores), np.sort(expected.scores), atol=1e-4)


def test_the_import_reads_what_ultralytics_wrote(bundle: Path) -> None:
    model = json.loads((bundle / 'model.json').read_text())
    assert model['classes'] == ['cup', 'bottle', 'box']
    assert model['output'] == {'format': 'yolo_v8', 'names': ['output0']}
    assert (model['input']['width'], model['input']['height'], model['input']['pad_value']) == (320, 320, 114)


def test_all_300_detections_at_ultralytics_defaults(bundle: Path) -> None:
    frame = next(f for f in REFERENCE['frames'] if f['width'] == 640)
    predict = REFERENCE['predict']
    expected = reference(frame, predict['conf'])
    assert len(expected) == predict['max_det'] == 300
    assert_same(ours(bundle, frame, predict['conf']), expected)


@pytest.mark.parametrize('size', ['640x480', '960x540'])
def test_detections_clear_of_near_ties(bundle: Path, size: str) -> None:
    frame = next(f for f in REFERENCE['frames'] if f'{f["width"]}x{f["height"]}' == size)
    expected = reference(frame, CLEAR_OF_TIES)
    assert len(expected) >= 50
    assert_same(ours(bundle, frame, CLEAR_OF_TIES), expected)
