"""Verification against ONNX Runtime with real backends on real exported models and real images."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from perception_core.backends import BackendOptions
from perception_core.bundle import Bundle, load_bundle
from perception_core.decode import Thresholds, decode
from perception_core.engine.build import open_exactly
from perception_core.engine.frames import infer_frame
from perception_core.engine.verification import VerifyError
from perception_core.preprocess import Preprocessor
from perception_engine_builder.verify import EvalFrame, allowed_drop, dataset_frames, synthetic_frames, verify
from perception_trainer.generate import generate_dataset


def backend(name: str, path: Path, bundle: Bundle):
    return open_exactly(name, path, bundle, BackendOptions())


def test_torchscript_agrees_with_onnxruntime(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    report = verify(backend('onnxruntime', bundle.onnx_path, bundle),
                    backend('torchscript', bundle.torchscript_path, bundle), bundle,
                    synthetic_frames(bundle, 10), 'fp16', progress=False)
    assert report.passed and report.frames == 10 and report.allowed_drop == 0.01
    assert report.differing_fraction['detections'] < 1e-3
    assert report.mean_abs_diff['detections'] < 1e-4
    assert report.detections['reference'] > 0
    counts = report.detections
    assert abs(counts['candidate'] - counts['reference']) <= 0.01 * counts['reference']
    assert 'TorchScript' in report.candidate and 'ONNX Runtime' in report.reference
    assert json.loads(json.dumps(report.to_json()))['passed'] is True


def self_labelled(frames: list[EvalFrame], reference, bundle: Bundle) -> list[EvalFrame]:
    """The frames with the reference's own detections as ground truth: the reference scores mAP 1."""
    preprocessor = Preprocessor(bundle.input)
    thresholds = Thresholds.resolve(bundle.postprocess)
    labelled = []
    for frame in frames:
        outputs, transform = infer_frame(reference, preprocessor, frame)
        found = decode(outputs, bundle.output.format, len(bundle.classes), transform, thresholds)
        truth = replace(frame.truth, boxes=found.boxes, labels=found.class_ids)
        labelled.append(replace(frame, truth=truth))
    return labelled


def test_a_degraded_candidate_fails_and_the_limit_can_be_raised(tiny_bundle: Path, tmp_path: Path,
                                                                bundle_writer: Callable[..., Path]) -> None:
    bundle = load_bundle(tiny_bundle)
    degraded = bundle_writer(tmp_path / 'degraded', noise=0.3) / 'model.onnx'
    reference = backend('onnxruntime', bundle.onnx_path, bundle)
    frames = self_labelled(synthetic_frames(bundle, 6), reference, bundle)
    candidate = backend('onnxruntime', degraded, bundle)
    report = verify(reference, candidate, bundle, frames, 'int8', progress=False)
    assert report.reference_map['map'] > 0.99
    assert report.map_drop > 0.03 and not report.passed
    assert report.max_abs_diff['detections'] > 1.0
    assert 'FAILED' in report.summary()
    lenient = verify(reference, candidate, bundle, frames, 'int8', allow_drop=1.0, progress=False)
    assert lenient.passed and lenient.allowed_drop == 1.0


def test_frames_from_a_perception_synth_data_set(tiny_bundle: Path, tmp_path: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    generate_dataset(tmp_path / 'eval', 4, seed=31, size=(320, 240), classes=bundle.classes, workers=1,
                     progress=False)
    frames = dataset_frames(tmp_path / 'eval', bundle, limit=3)
    assert len(frames) == 3
    assert all(f.pixels.shape == (240, 320, 3) and len(f.truth.boxes) > 0 for f in frames)
    report = verify(backend('onnxruntime', bundle.onnx_path, bundle),
                    backend('torchscript', bundle.torchscript_path, bundle), bundle, frames, 'fp32',
                    progress=False)
    assert report.frames == 3 and report.passed


def test_frames_without_ground_truth_cannot_give_map(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    frames = [replace(f, truth=replace(f.truth, boxes=f.truth.boxes[:0], labels=f.truth.labels[:0]))
              for f in synthetic_frames(bundle, 2)]
    reference = backend('onnxruntime', bundle.onnx_path, bundle)
    with pytest.raises(VerifyError, match='no ground-truth boxes'):
        verify(reference, reference, bundle, frames, 'fp16', progress=False)


def test_allowed_drop_per_precision() -> None:
    assert allowed_drop('fp16') == 0.01 and allowed_drop('int8') == 0.03 and allowed_drop('fp32') == 0.01
    assert allowed_drop('int8', 0.05) == 0.05


def test_shipped_bundle_torchscript_keeps_its_accuracy(shipped_bundle: Path) -> None:
    bundle = load_bundle(shipped_bundle, check_onnx_hash=True)
    report = verify(backend('onnxruntime', bundle.onnx_path, bundle),
                    backend('torchscript', bundle.torchscript_path, bundle), bundle,
                    synthetic_frames(bundle, 30), 'fp32', progress=False)
    assert report.reference_map['map50'] > 0.5
    assert report.passed and abs(report.map_drop) <= 0.01
