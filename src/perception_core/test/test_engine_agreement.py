"""The build-on-start verifier on real backends: ONNX Runtime against TorchScript on real exported
models and synthetic scenes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from perception_core.backends import BackendOptions
from perception_core.bundle import load_bundle
from perception_core.decode import Detections
from perception_core.engine.agreement import MIN_IOU, agreement, confident_agreement, unmatched
from perception_core.engine.build import VerificationFailed, open_exactly
from perception_core.engine.verification import AgreementVerifier, VerifyError


def detections(*rows: tuple[float, float, float, float, float, int]) -> Detections:
    return Detections(np.array([r[:4] for r in rows], np.float32).reshape(-1, 4),
                      np.array([r[4] for r in rows], np.float32), np.array([r[5] for r in rows], np.int64))


def test_torchscript_agrees_with_onnxruntime(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    reference = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
    candidate = open_exactly('torchscript', bundle.torchscript_path, bundle, BackendOptions())
    report = AgreementVerifier(frames=8).verify(reference, candidate, bundle, 'fp16')
    assert report.passed and report.frames == 8 and not report.disagreements
    assert report.detections['reference'] > 0
    assert report.detections['candidate'] == report.detections['reference']
    assert report.count_mismatches == 0 and report.min_iou is not None and report.min_iou >= MIN_IOU
    assert report.score_floor == pytest.approx(bundle.postprocess.score_threshold + 0.02)
    # A peak flip makes the max large (see OutputDifferences); the share of differing values stays tiny.
    assert report.differing_fraction['detections'] < 1e-3 and report.mean_abs_diff['detections'] < 1e-4
    assert report.summary().startswith('PASSED: TorchScript') and 'ONNX Runtime' in report.summary()
    assert json.loads(json.dumps(report.to_json()))['passed'] is True


def test_a_degraded_candidate_fails_naming_the_frames(tiny_bundle: Path, tmp_path: Path,
                                                       bundle_writer: Callable[..., Path]) -> None:
    bundle = load_bundle(tiny_bundle)
    degraded = bundle_writer(tmp_path / 'degraded', noise=0.3) / 'model.onnx'
    reference = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
    candidate = open_exactly('onnxruntime', degraded, bundle, BackendOptions())
    report = AgreementVerifier(frames=6).verify(reference, candidate, bundle, 'fp16')
    assert not report.passed and report.disagreements and report.count_mismatches > 0
    first = report.disagreements[0]
    assert first.startswith('frame ') and 'detections vs' in first and 'without a match' in first
    summary = report.summary()
    assert summary.startswith('FAILED')
    assert f'{len(report.disagreements)} frame(s) disagree: {first}' in summary
    failed = VerificationFailed(report, tmp_path / 'model.unverified.engine')
    assert 'model.unverified.engine' in str(failed) and 'COCO mAP' in str(failed)


def test_borderline_scores_may_cross_the_threshold() -> None:
    box = (10, 10, 50, 50, 0.9, 1)
    borderline = (100, 100, 140, 140, 0.31, 2)
    assert not agreement([detections(box, borderline)], [detections(box)])['passed']
    assert unmatched(detections(box, borderline), detections(box), floor=0.32) == 0
    assert unmatched(detections(box, (100, 100, 140, 140, 0.5, 2)), detections(box), floor=0.32) == 1
    moved = (30, 30, 70, 70, 0.9, 1)
    assert unmatched(detections(box), detections(moved), floor=0.32) == 2   # each way
    assert agreement([detections(box)], [detections(moved)], min_iou=0.1)['passed']
    assert confident_agreement([detections(box)], [detections((12, 12, 50, 50, 0.9, 1))], 0.32, min_iou=0.9)


def test_no_frames_is_an_error(tiny_bundle: Path) -> None:
    bundle = load_bundle(tiny_bundle)
    reference = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
    with pytest.raises(VerifyError, match='at least one'):
        AgreementVerifier(frames=0).verify(reference, reference, bundle, 'fp32')
