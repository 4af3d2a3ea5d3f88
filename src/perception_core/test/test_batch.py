"""Detector.detect_batch against Detector.detect: several frames (of different sizes) through one
backend call give each frame exactly the detections it gets alone, with the shipped detector
(dynamic batch axis) in ONNX Runtime and TorchScript, and a foreign model with a fixed batch of 1
run one call per frame."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
from test_ultralytics_reference import FIXTURE

from perception_core.backends import BackendOptions
from perception_core.bundle_import import import_model
from perception_core.convert import Frame, frame_from_fields
from perception_core.detector import Detector, open_detector
from perception_core.synth import render_scene

SIZES = [(640, 480), (320, 240), (1280, 720), (640, 480)]


def scene(index: int, width: int, height: int) -> Frame:
    rgb = render_scene(seed=7, index=index, width=width, height=height).image
    return frame_from_fields(encoding='rgb8', height=height, width=width, step=width * 3, is_bigendian=0,
                             data=np.ascontiguousarray(rgb).tobytes())


def calls(detector: Detector) -> list[int]:
    """Record the batch size of every backend call from now on."""
    seen: list[int] = []
    infer = detector.backend.infer

    def counted(tensor: np.ndarray) -> list[np.ndarray]:
        seen.append(tensor.shape[0])
        return infer(tensor)

    detector.backend.infer = counted  # type: ignore[method-assign]
    return seen


def assert_same_as_alone(detector: Detector, frames: list[Frame], batched: list) -> None:
    assert len(batched) == len(frames)
    found_any = False
    for frame, got in zip(frames, batched, strict=True):
        alone, _ = detector.detect(frame)
        assert got.class_ids.tolist() == alone.class_ids.tolist()
        # one batched GEMM vs one per frame: float sums in another order, nothing more
        np.testing.assert_allclose(got.scores, alone.scores, atol=1e-4)
        np.testing.assert_allclose(got.boxes, alone.boxes, atol=0.05)
        found_any |= len(alone) > 0
    assert found_any, 'the scenes gave no detections at all: the comparison would prove nothing'


@pytest.mark.parametrize('model', ['model.onnx', 'model.ts'])
def test_one_call_for_the_batch_same_detections(shipped_bundle: Path, model: str) -> None:
    detector, _ = open_detector(shipped_bundle / model, options=BackendOptions(threads=1, max_batch_size=8))
    assert detector.backend.batch_limit == 8, detector.backend.description
    assert 'batch up to 8' in detector.backend.description
    frames = [scene(i, w, h) for i, (w, h) in enumerate(SIZES)]
    seen = calls(detector)
    batched, timings = detector.detect_batch(frames)
    assert seen == [len(frames)]
    assert set(timings) == {'preprocess', 'infer', 'postprocess'}
    assert_same_as_alone(detector, frames, batched)


def test_batches_split_at_max_batch_size(shipped_bundle: Path) -> None:
    detector, _ = open_detector(shipped_bundle / 'model.onnx', options=BackendOptions(threads=1,
                                                                                       max_batch_size=3))
    frames = [scene(i, 640, 480) for i in range(7)]
    seen = calls(detector)
    batched, _ = detector.detect_batch(frames)
    assert seen == [3, 3, 1]
    assert_same_as_alone(detector, frames, batched)


def test_fixed_batch_of_one_runs_per_frame(tmp_path: Path) -> None:
    # Ultralytics' own export of a YOLO11, input fixed at [1, 3, 320, 320]
    bundle = Path(import_model(FIXTURE / 'yolo11_tiny.onnx', tmp_path / 'yolo11'))
    detector, _ = open_detector(bundle / 'model.onnx', score=0.4, options=BackendOptions(max_batch_size=8))
    assert detector.backend.batch_limit == 1
    assert 'batch 1' in detector.backend.description
    frames = []
    for name in ('scene_640x480.png', 'scene_960x540.png'):
        rgb = np.ascontiguousarray(cv2.imread(str(FIXTURE / name))[:, :, ::-1])
        height, width = rgb.shape[:2]
        frames.append(frame_from_fields(encoding='rgb8', height=height, width=width, step=width * 3,
                                        is_bigendian=0, data=rgb.tobytes()))
    seen = calls(detector)
    batched, _ = detector.detect_batch(frames)
    assert seen == [1, 1]
    assert_same_as_alone(detector, frames, batched)


def test_empty_and_single(shipped_bundle: Path) -> None:
    detector, _ = open_detector(shipped_bundle / 'model.onnx', options=BackendOptions(threads=1))
    assert detector.detect_batch([]) == ([], {'preprocess': 0, 'infer': 0, 'postprocess': 0})
    frame = scene(0, 640, 480)
    (only,), _ = detector.detect_batch([frame])
    alone, _ = detector.detect(frame)
    assert only.boxes.tolist() == alone.boxes.tolist()
