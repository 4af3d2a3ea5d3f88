"""Real TensorRT and Torch-TensorRT builds, verified as perception-build-engine verifies them (COCO
mAP, ``GroundTruthVerifier``). They run where TensorRT and a CUDA GPU exist (a Jetson, a GPU
workstation) and are skipped elsewhere with the reason; there is no mock TensorRT. The build code
is perception_core.engine's; these tests stay here because they verify with this package's mAP."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from perception_core.backends import BackendError, BackendOptions
from perception_core.bundle import load_bundle
from perception_core.engine.build import BuildOptions, build_engine, open_exactly, unverified_path
from perception_core.engine.environment import missing_for
from perception_core.engine.plan import PlanError
from perception_core.sidecar import read_sidecar, sidecar_path
from perception_engine_builder.verify import GroundTruthVerifier

NO_TENSORRT = missing_for('tensorrt')
NO_TORCH_TENSORRT = missing_for('torch_tensorrt')
TEN_FRAMES = GroundTruthVerifier(eval_frames=10, progress=False)
needs_tensorrt = pytest.mark.skipif(NO_TENSORRT is not None, reason=str(NO_TENSORRT))


@pytest.fixture
def on_this_gpu(deployment: dict) -> dict:
    from perception_core.engine import tensorrt_build
    deployment['target_platform.compute_capability'] = tensorrt_build.runtime_facts().compute_capability
    return deployment


@needs_tensorrt
@pytest.mark.parametrize('precision', ['fp32', 'fp16'])
def test_engine_builds_verifies_and_installs(on_this_gpu: dict, tiny_bundle: Path, tmp_path: Path,
                                             precision: str) -> None:
    from perception_core.engine import tensorrt_build
    on_this_gpu['model.precision'] = precision
    engine = tmp_path / f'{precision}.engine'
    result = build_engine(on_this_gpu, tiny_bundle, engine, BuildOptions(verifier=TEN_FRAMES))
    assert engine.is_file() and result.report.passed
    assert not unverified_path(engine).exists() and not sidecar_path(unverified_path(engine)).exists()
    sidecar = read_sidecar(engine)
    facts = tensorrt_build.runtime_facts()
    assert sidecar['tensorrt_version'] == facts.tensorrt_version
    assert sidecar['gpu'] == {'name': facts.gpu_name, 'compute_capability': facts.compute_capability}
    assert sidecar['precision'] == precision and sidecar['profile']['max'][0] == 8
    assert [t['name'] for t in sidecar['inputs']] == ['images']
    assert [t['name'] for t in sidecar['outputs']] == ['detections']
    assert sidecar['verification']['passed'] is True
    assert sidecar['verification']['verifier'] == 'ground_truth_map'
    assert (tmp_path / 'timing.cache').stat().st_size > 0


@needs_tensorrt
def test_int8_calibrates_then_reuses_its_cache(on_this_gpu: dict, tiny_bundle: Path, tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    import cv2

    from perception_core.synth import render_scene
    images = tmp_path / 'camera'
    images.mkdir()
    for i in range(16):
        cv2.imwrite(str(images / f'{i:03d}.png'), render_scene(5, i).image[:, :, ::-1])
    on_this_gpu['model.precision'] = 'int8'
    engine = tmp_path / 'int8.engine'
    options = BuildOptions(calibration_data=images, verifier=TEN_FRAMES)
    build_engine(on_this_gpu, tiny_bundle, engine, options)
    caches = list(tmp_path.glob('calibration-*.cache'))
    assert len(caches) == 1 and caches[0].stat().st_size > 0
    calibrated = caches[0].read_bytes()
    # no calibration images this time: the scales can only come from the cache
    with caplog.at_level(logging.INFO, logger='perception_core.engine'):
        result = build_engine(on_this_gpu, tiny_bundle, engine, BuildOptions(verifier=TEN_FRAMES))
    assert engine.is_file() and result.report.passed
    assert read_sidecar(engine)['precision'] == 'int8'
    assert f'INT8 calibration cache {caches[0]} reused' in caplog.text
    assert 'INT8 calibration used 0 batch(es)' in caplog.text, caplog.text
    assert list(tmp_path.glob('calibration-*.cache')) == caches and caches[0].read_bytes() == calibrated


@needs_tensorrt
def test_the_yaml_target_gpu_is_checked(deployment: dict, tiny_bundle: Path, tmp_path: Path) -> None:
    deployment['target_platform.compute_capability'] = '1.0'
    with pytest.raises(PlanError, match=r"compute_capability is '1\.0' but this GPU"):
        build_engine(deployment, tiny_bundle, tmp_path / 'x.engine', BuildOptions(verifier=TEN_FRAMES))


@needs_tensorrt
def test_the_node_refuses_an_engine_from_another_gpu(on_this_gpu: dict, tiny_bundle: Path,
                                                     tmp_path: Path) -> None:
    engine = tmp_path / 'model.engine'
    build_engine(on_this_gpu, tiny_bundle, engine,
                 BuildOptions(verifier=GroundTruthVerifier(eval_frames=5, progress=False)))
    sidecar = json.loads(sidecar_path(engine).read_text())
    sidecar['gpu']['name'] = 'Some Other GPU'
    sidecar['tensorrt_version'] = '8.6.1'
    sidecar_path(engine).write_text(json.dumps(sidecar))
    with pytest.raises(BackendError) as error:
        open_exactly('tensorrt', engine, load_bundle(tiny_bundle), BackendOptions(precision='fp16'))
    assert 'Some Other GPU' in str(error.value) and '8.6.1' in str(error.value)


@pytest.mark.skipif(NO_TORCH_TENSORRT is not None, reason=str(NO_TORCH_TENSORRT))
def test_torch_tensorrt_module_builds_and_verifies(on_this_gpu: dict, tiny_bundle: Path,
                                                   tmp_path: Path) -> None:
    out = tmp_path / 'model_trt.ts'
    result = build_engine(on_this_gpu, tiny_bundle, out,
                          BuildOptions(torch_tensorrt=True, verifier=TEN_FRAMES))
    assert out.is_file() and result.report.passed
    assert read_sidecar(out)['kind'] == 'torch_tensorrt'
