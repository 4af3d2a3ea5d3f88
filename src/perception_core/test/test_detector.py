from __future__ import annotations

import numpy as np
import pytest
from probe_bundle import expected_boxes

from perception_core.backends import BackendOptions
from perception_core.convert import frame_from_fields
from perception_core.detector import open_detector
from perception_core.synth import render_scene


@pytest.mark.parametrize(('width', 'height', 'encoding'), [(640, 480, 'rgb8'), (1280, 720, 'bgr8'),
                                                           (320, 240, 'mono8'), (800, 600, 'bgra8')])
def test_probe_detections_land_in_image_pixels(probe_onnx, width, height, encoding):
    rgb = render_scene(seed=1, index=0, width=width, height=height).image
    pixels = {'rgb8': rgb, 'bgr8': rgb[:, :, ::-1], 'mono8': rgb[:, :, 1],
              'bgra8': np.dstack([rgb[:, :, ::-1], np.zeros((height, width), np.uint8)])}[encoding]
    channels = 1 if pixels.ndim == 2 else pixels.shape[2]
    frame = frame_from_fields(encoding=encoding, height=height, width=width, step=width * channels,
                              is_bigendian=0, data=np.ascontiguousarray(pixels).tobytes())
    detector, _ = open_detector(probe_onnx, options=BackendOptions(threads=1))
    detections, timings = detector.detect(frame)
    expected = expected_boxes(width, height)
    assert [detector.bundle.classes[c] for c in detections.class_ids] == [e[0] for e in expected]
    np.testing.assert_allclose(detections.scores, [e[1] for e in expected], rtol=1e-6)
    np.testing.assert_allclose(detections.boxes, [e[2] for e in expected], atol=1e-3)
    assert set(timings) == {'preprocess', 'infer', 'postprocess'}


def test_detection_parameters_override_the_bundle(probe_onnx):
    rgb = render_scene(seed=1, index=0).image
    frame = frame_from_fields(encoding='rgb8', height=480, width=640, step=1920, is_bigendian=0,
                              data=rgb.tobytes())
    assert len(open_detector(probe_onnx, score=0.65)[0].detect(frame)[0]) == 2
    assert len(open_detector(probe_onnx, score=0.05, nms_iou=0.99)[0].detect(frame)[0]) == 5
    assert len(open_detector(probe_onnx, max_detections=1)[0].detect(frame)[0]) == 1
