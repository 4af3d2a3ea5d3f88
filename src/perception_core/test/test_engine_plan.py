"""Build decisions from the shipped deployment YAML and a real bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception_core.bundle import load_bundle, sha256_of
from perception_core.engine.plan import (
    PlanError,
    default_engine_path,
    make_plan,
)


def plan_for(values: dict, bundle_dir: Path, **kwargs):
    bundle = load_bundle(bundle_dir)
    return make_plan(values, bundle, bundle_dir / 'model.engine', **kwargs)


def test_profile_precision_and_workspace_follow_the_yaml(deployment: dict, tiny_bundle: Path) -> None:
    plan = plan_for(deployment, tiny_bundle)
    assert plan.profile.min == (1, 3, 256, 320)
    assert plan.profile.opt == (1, 3, 256, 320)       # model.batch_size
    assert plan.profile.max == (8, 3, 256, 320)       # performance.max_batch_size
    assert plan.precision == 'fp16' and plan.builder_flags == ('FP16',)
    assert plan.workspace_bytes == 2147483648
    assert plan.compute_capability == '8.7'
    assert plan.minimum_segment_size == 3
    assert plan.calibration is None and plan.dla_core is None and plan.preview_features == ()
    assert plan.timing_cache_path == tiny_bundle / 'timing.cache'
    assert plan.onnx_sha256 == sha256_of(tiny_bundle / 'model.onnx')
    assert any('minimum_segment_size' in note for note in plan.notes)
    assert json.loads(json.dumps(plan.to_json()))['profile']['max'] == [8, 3, 256, 320]


def test_batch_size_above_max_batch_size_is_refused(deployment: dict, tiny_bundle: Path) -> None:
    deployment['model.batch_size'] = 16
    message = r'model\.batch_size \(16\) exceeds .*performance\.max_batch_size \(8\)'
    with pytest.raises(PlanError, match=message):
        plan_for(deployment, tiny_bundle)


def test_input_shape_must_match_the_bundle(deployment: dict, tiny_bundle: Path) -> None:
    deployment['model.input_shape'] = [1, 3, 224, 224]
    message = r'deployment_config\.model\.input_shape \[1, 3, 224, 224\].*model\.json'
    with pytest.raises(PlanError, match=message):
        plan_for(deployment, tiny_bundle)


def test_int8_needs_calibration_images_or_a_cache(deployment: dict, tiny_bundle: Path,
                                                  tmp_path: Path) -> None:
    deployment['model.precision'] = 'int8'
    with pytest.raises(PlanError, match='--calibration-data'):
        plan_for(deployment, tiny_bundle)
    plan = plan_for(deployment, tiny_bundle, calibration_data=tmp_path)
    assert plan.builder_flags == ('INT8', 'FP16')
    assert plan.calibration is not None
    assert plan.calibration.batch_size == 8 and plan.calibration.shape == (8, 3, 256, 320)
    assert plan.calibration.cache_path.name == f'calibration-{plan.onnx_sha256[:12]}.cache'
    cache = tmp_path / 'existing.cache'
    cache.write_bytes(b'cache')
    assert plan_for(deployment, tiny_bundle, calibration_cache=cache).calibration.data_dir is None


def test_calibration_batch_never_exceeds_the_profile(deployment: dict, tiny_bundle: Path,
                                                     tmp_path: Path) -> None:
    deployment.update({'model.precision': 'int8', 'performance.max_batch_size': 2})
    assert plan_for(deployment, tiny_bundle, calibration_data=tmp_path).calibration.batch_size == 2


def test_dla_fixes_the_profile_and_falls_back_to_gpu(deployment: dict, tiny_bundle: Path) -> None:
    plan = plan_for(deployment, tiny_bundle, dla_core=1)
    assert plan.profile.min == plan.profile.max == (1, 3, 256, 320)
    assert 'GPU_FALLBACK' in plan.builder_flags and plan.dla_core == 1
    deployment['model.precision'] = 'fp32'
    with pytest.raises(PlanError, match='DLA runs fp16 or int8'):
        plan_for(deployment, tiny_bundle, dla_core=0)


def test_sparse_weights_and_preview_features(deployment: dict, tiny_bundle: Path) -> None:
    deployment.update({'performance.sparse_weights': True, 'performance.calibrated_preview': True})
    plan = plan_for(deployment, tiny_bundle)
    assert 'SPARSE_WEIGHTS' in plan.builder_flags
    assert plan.preview_features


def test_optimization_level_range(deployment: dict, tiny_bundle: Path) -> None:
    with pytest.raises(PlanError, match='--optimization-level'):
        plan_for(deployment, tiny_bundle, optimization_level=6)


def test_torch_tensorrt_target(deployment: dict, tiny_bundle: Path) -> None:
    plan = plan_for(deployment, tiny_bundle, target='torch_tensorrt')
    assert plan.source_path == tiny_bundle / 'model.ts'
    assert not any('minimum_segment_size' in note for note in plan.notes)
    deployment['model.precision'] = 'int8'
    with pytest.raises(PlanError, match='no calibrator'):
        plan_for(deployment, tiny_bundle, target='torch_tensorrt')


def test_missing_onnx_is_named(deployment: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    (tmp_path / 'model.json').write_text((tiny_bundle / 'model.json').read_text())
    with pytest.raises(PlanError, match=r'model\.onnx: missing'):
        plan_for(deployment, tmp_path)


def test_default_engine_paths(tmp_path: Path) -> None:
    assert default_engine_path(tmp_path / 'model.onnx', tmp_path) == tmp_path / 'model.engine'
    assert default_engine_path(tmp_path / 'orin.plan', tmp_path) == tmp_path / 'orin.plan'
    torch_tensorrt = default_engine_path(tmp_path / 'model.onnx', tmp_path, 'torch_tensorrt')
    assert torch_tensorrt == tmp_path / 'model_trt.ts'


def test_network_shape_follows_the_layout(tiny_bundle: Path) -> None:
    spec = load_bundle(tiny_bundle).input
    assert spec.shape(4) == (4, 3, 256, 320)
    from dataclasses import replace
    assert replace(spec, layout='NHWC').shape(4) == (4, 256, 320, 3)
