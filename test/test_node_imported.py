"""An imported foreign detector in the real node: a YOLO26 that Ultralytics trained and exported
NMS-free (src/perception_core/test/fixtures/foreign/, whose decoding test_foreign_references.py
checks against Ultralytics' own predictions) goes through ``perception-bundle import`` and the
deployment YAML into the node process; 640x480 rgb8 and 1280x720 bgr8 frames come in over DDS.

Every frame is answered with its own header, and the boxes are the in-process Detector's on the same
pixels: in input-image pixels, whatever the frame size or channel order.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from test_node_e2e import (  # isort: skip
    WORKSPACE, deployment, listener, publish, start_node, stop_node, wait_for)

from perception_bench.frame_source import image_fields
from perception_core.bundle_import import import_model
from perception_core.convert import frame_from_fields
from perception_core.detector import open_detector
from perception_core.synth import render_scene

__all__ = ['listener']  # the Listener fixture, used by name
FOREIGN = WORKSPACE / 'src/perception_core/test/fixtures/foreign'
SCORE = 0.25
FRAMES = [(640, 480, 'rgb8'), (1280, 720, 'bgr8')] * 4


def test_imported_yolo26_answers_in_image_pixels_with_the_frames_header(tmp_path, ros_env, listener):
    bundle = Path(import_model(FOREIGN / 'yolo26_small_end2end.onnx', tmp_path / 'yolo26'))
    model = bundle / 'model.onnx'
    frames, expected = [], []
    detector, _ = open_detector(model, score=SCORE)
    for i, (width, height, encoding) in enumerate(FRAMES):
        rgb = render_scene(seed=4242, index=i, width=width, height=height).image
        fields = image_fields(rgb if encoding == 'rgb8' else np.ascontiguousarray(rgb[:, :, ::-1]), encoding)
        frames.append(fields)
        expected.append(detector.detect(frame_from_fields(**fields))[0])
    assert sum(len(e) for e in expected) >= 10, 'too few detections to compare'

    reliable = {'reliability': 'reliable', 'depth': 10}  # every frame counts here, not the newest
    params = deployment(tmp_path, model, model__input_shape=[1, 3, 320, 320],
                        detection__score_threshold=SCORE, ros_integration__qos_profile=reliable)
    node = start_node(params, ros_env)
    try:
        wait_for(lambda: listener.labels, 60, 'LabelInfo from the node', node)
        assert [r.class_name for r in listener.labels[-1].class_map] == list(detector.bundle.classes)
        sent = publish(frames, tmp_path, ros_env, 'frames', rate=5.0, reliability='reliable', depth='10',
                       frame_id='left_camera_optical')

        def unanswered() -> str:
            missing = [s['index'] for s in sent if s['stamp_ns'] not in listener.by_stamp()]
            status = listener.last_status() if listener.diagnostics else 'none received'
            return f'frames {missing} of {len(sent)} unanswered; the node\'s last diagnostics: {status}'

        wait_for(lambda: len(listener.by_stamp()) >= len(sent), 30, 'every frame answered', node,
                 detail=unanswered)
    finally:
        stop_node(node)
    answers = listener.by_stamp()
    for s in sent:
        msg = answers[s['stamp_ns']]
        assert msg.header.frame_id == 'left_camera_optical'  # and the stamp matched: the frame's header
        found = expected[s['index']]
        assert len(msg.detections) == len(found)
        width, height, _ = FRAMES[s['index']]
        for d, box, score, cls in zip(msg.detections, found.boxes, found.scores, found.class_ids,
                                      strict=True):
            h = d.results[0].hypothesis
            assert h.class_id == detector.bundle.classes[cls]
            assert abs(h.score - float(score)) < 1e-4
            x1 = d.bbox.center.position.x - d.bbox.size_x / 2
            y1 = d.bbox.center.position.y - d.bbox.size_y / 2
            assert np.allclose([x1, y1, x1 + d.bbox.size_x, y1 + d.bbox.size_y], box, atol=0.01)
            assert 0 <= x1 and x1 + d.bbox.size_x <= width + 0.01 and y1 + d.bbox.size_y <= height + 0.01
