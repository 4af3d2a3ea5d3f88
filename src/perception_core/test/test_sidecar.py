"""The sidecar file and the one compatibility rule the builder and the node share."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from perception_core.sidecar import (
    Expected,
    RuntimeFacts,
    SidecarError,
    SidecarMismatch,
    check_sidecar,
    make_sidecar,
    read_sidecar,
    require_compatible,
    sidecar_path,
    write_sidecar,
)

ORIN = RuntimeFacts(tensorrt_version='10.3.0.30', gpu_name='Orin', compute_capability='8.7')
H100 = RuntimeFacts(tensorrt_version='10.13.0.35', gpu_name='NVIDIA H100 80GB HBM3', compute_capability='9.0')
PROFILE = {'input': 'images', 'min': [1, 3, 256, 320], 'opt': [1, 3, 256, 320], 'max': [8, 3, 256, 320]}


def engine_with_sidecar(tmp_path: Path, facts: RuntimeFacts = ORIN) -> Path:
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'plan bytes')
    write_sidecar(engine, make_sidecar(
        kind='tensorrt', facts=facts, precision='fp16', profile=PROFILE,
        inputs=[{'name': 'images', 'shape': [-1, 3, 256, 320], 'dtype': 'float32'}],
        outputs=[{'name': 'detections', 'shape': [-1, 5120, 14], 'dtype': 'float32'}],
        model_json={'format': 1, 'classes': ['cup']}, onnx_sha256='ab' * 32, build_seconds=12.345,
        plan={'precision': 'fp16'}))
    return engine


def test_round_trip_on_disk(tmp_path: Path) -> None:
    engine = engine_with_sidecar(tmp_path)
    assert sidecar_path(engine) == tmp_path / 'model.engine.json'
    sidecar = read_sidecar(engine)
    assert sidecar['tensorrt_version'] == '10.3.0.30'
    assert sidecar['gpu'] == {'name': 'Orin', 'compute_capability': '8.7'}
    assert sidecar['profile']['max'] == [8, 3, 256, 320]
    assert sidecar['model_json']['classes'] == ['cup'] and sidecar['onnx_sha256'] == 'ab' * 32
    assert sidecar['built_at'].endswith('Z') and sidecar['build_seconds'] == 12.345
    assert check_sidecar(sidecar, ORIN) == []
    assert require_compatible(engine, ORIN)['precision'] == 'fp16'


def test_other_device_is_refused_naming_both_sides(tmp_path: Path) -> None:
    engine = engine_with_sidecar(tmp_path)
    mismatches = check_sidecar(read_sidecar(engine), H100)
    assert {m.key for m in mismatches} == {'tensorrt_version', 'gpu.name', 'gpu.compute_capability'}
    with pytest.raises(SidecarMismatch) as error:
        require_compatible(engine, H100)
    message = str(error.value)
    for text in ('10.3.0.30', '10.13.0.35', "'Orin'", 'NVIDIA H100 80GB HBM3', "'8.7'", "'9.0'",
                 str(engine), 'model.rebuild_on_mismatch'):
        assert text in message


def test_deployment_expectations(tmp_path: Path) -> None:
    sidecar = read_sidecar(engine_with_sidecar(tmp_path))
    fits = Expected(precision='fp16', onnx_sha256='ab' * 32, max_batch_size=8, input_shape=(3, 256, 320),
                    compute_capability='8.7')
    assert check_sidecar(sidecar, ORIN, fits) == []
    wrong = Expected(precision='int8', onnx_sha256='cd' * 32, max_batch_size=4, input_shape=(3, 224, 224),
                     compute_capability='7.2')
    found = {m.key: m for m in check_sidecar(sidecar, None, wrong)}
    assert set(found) == {'precision', 'onnx_sha256', 'profile.max[0] (max batch)', 'profile input shape',
                          'gpu.compute_capability'}
    assert found['precision'].engine == 'fp16' and found['precision'].current == 'int8'
    assert 'performance.max_batch_size' in str(found['profile.max[0] (max batch)'])


def test_missing_and_corrupt_sidecars_name_the_file(tmp_path: Path) -> None:
    engine = tmp_path / 'model.engine'
    engine.write_bytes(b'plan')
    with pytest.raises(SidecarError, match=r'model\.engine\.json: missing'):
        read_sidecar(engine)
    sidecar_path(engine).write_text('{not json')
    with pytest.raises(SidecarError, match=r'model\.engine\.json: unreadable'):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps({'format': 1, 'gpu': {}}))
    with pytest.raises(SidecarError, match="no 'tensorrt_version'"):
        read_sidecar(engine)
    sidecar_path(engine).write_text(json.dumps(
        {'format': 99, 'tensorrt_version': '10', 'gpu': {}, 'precision': 'fp16', 'profile': {}}))
    with pytest.raises(SidecarError, match='format 99'):
        read_sidecar(engine)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(ValueError, match='kind'):
        make_sidecar(kind='onnx', facts=ORIN, precision='fp16', profile=PROFILE, inputs=[], outputs=[],
                     model_json={}, onnx_sha256='', build_seconds=0.0, plan={})


def test_expected_for_a_bundle(probe_onnx: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from perception_core.bundle import load_bundle, sha256_of
    from perception_core.sidecar import expected_for
    bundle = replace(load_bundle(probe_onnx), onnx_sha256=sha256_of(probe_onnx))
    expected = expected_for(bundle, 'fp16', 8, '8.7')
    assert expected.input_shape == bundle.input.shape(1)[1:] and expected.onnx_sha256 == bundle.onnx_sha256
    sidecar = read_sidecar(engine_with_sidecar(tmp_path))
    assert [m.key for m in check_sidecar(sidecar, ORIN, expected)] == ['onnx_sha256']
