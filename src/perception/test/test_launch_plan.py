"""The launch plan: what jetson.launch.py starts, checked without the launch package."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import yaml

from perception.config import ConfigError
from perception.launch_plan import cpu_prefix, describe, make_plan
from perception_engine_builder.sidecar import RuntimeFacts, make_sidecar, write_sidecar

WORKSPACE = Path(__file__).resolve().parents[3]
MODEL_JSON = {'format': 1, 'classes': ['cup', 'bottle'],
              'input': {'name': 'images', 'height': 256, 'width': 320},
              'output': {'format': 'dense_boxes_scores', 'names': ['detections']},
              'onnx_sha256': 'ab' * 32}


def deployment(tmp_path: Path, **changes: object) -> Path:
    """The shipped YAML with a bundle in tmp_path; ``changes`` by dotted key."""
    data = yaml.safe_load((WORKSPACE / 'config' / 'jetson_deployment.yaml').read_text())
    bundle = tmp_path / 'bundle'
    bundle.mkdir(exist_ok=True)
    (bundle / 'model.json').write_text(json.dumps(MODEL_JSON))
    data['deployment_config']['model']['path'] = 'bundle/model.onnx'
    for dotted, value in changes.items():
        section, key = dotted.split('.')
        data['deployment_config'][section][key] = value
    path = tmp_path / 'deploy.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def plan(tmp_path: Path, config: Path, **kwargs):
    return make_plan(config, params_dir=tmp_path / 'launch', middleware_config_dir=WORKSPACE / 'config',
                     **kwargs)


def test_node_command_carries_name_params_and_log_level(tmp_path: Path) -> None:
    p = plan(tmp_path, deployment(tmp_path))
    command = p.command('/opt/node')
    start = command.index('/opt/node')
    assert command[start:] == ['/opt/node', '--ros-args', '-r', '__node:=isaac_trt_perception',
                               '--params-file', str(p.params_file), '--log-level', 'info']
    assert p.params_file.is_absolute() and p.params_file.is_file()
    assert Path(p.env['FASTDDS_DEFAULT_PROFILES_FILE']).is_file()
    assert p.engine_build == ()
    assert 'isaac_trt_perception' in describe(p)


def test_launch_arguments_override_the_yaml(tmp_path: Path) -> None:
    p = plan(tmp_path, deployment(tmp_path), model=str(tmp_path / 'other' / 'model.ts'), log_level='warning',
             namespace='robot1/', use_sim_time=True)
    command = p.command('node')
    assert command[command.index('__ns:=/robot1') - 1] == '-r'
    assert command[-2:] == ['--log-level', 'warn']
    params = yaml.safe_load(p.params_file.read_text())['/robot1/isaac_trt_perception']['ros__parameters']
    assert params['model']['path'] == str(tmp_path / 'other' / 'model.ts')
    assert params['logging']['level'] == 'WARNING'
    assert params['use_sim_time'] is True


def test_bad_log_level_argument_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'log_level:= \(launch argument\): logging.level: must be one of'):
        plan(tmp_path, deployment(tmp_path), log_level='loud')


def test_cpu_affinity_keeps_only_cores_this_machine_has() -> None:
    available = sorted(os.sched_getaffinity(0))
    prefix, notes = cpu_prefix([available[0], 4096])
    assert prefix in ((), ('taskset', '-c', str(available[0])))  # () only where taskset is missing
    assert '4096' in notes[0]
    assert cpu_prefix([4096])[0] == ()


def test_no_engine_build_for_onnx_or_when_not_allowed(tmp_path: Path) -> None:
    onnx = plan(tmp_path, deployment(tmp_path, **{'model.build_on_start': True}))
    assert onnx.engine_build == ()
    engine = plan(tmp_path, deployment(tmp_path, **{'model.path': 'bundle/model.engine'}))
    assert engine.engine_build == ()


def test_missing_engine_is_built_first_when_allowed(tmp_path: Path) -> None:
    config = deployment(tmp_path, **{'model.path': 'bundle/model.engine', 'model.build_on_start': True})
    engine = tmp_path / 'bundle' / 'model.engine'
    assert plan(tmp_path, config).engine_build == ('perception-build-engine', '--config', str(config),
                                                  '--bundle', str(engine.parent), '--out', str(engine))


def write_engine(tmp_path: Path, precision: str) -> None:
    engine = tmp_path / 'bundle' / 'model.engine'
    engine.write_bytes(b'plan')
    facts = RuntimeFacts(tensorrt_version='10.3.0', gpu_name='Orin', compute_capability='8.7')
    write_sidecar(engine, make_sidecar(
        kind='tensorrt', facts=facts, precision=precision,
        profile={'input': 'images', 'min': [1, 3, 256, 320], 'opt': [1, 3, 256, 320],
                 'max': [8, 3, 256, 320]},
        inputs=[], outputs=[], model_json=MODEL_JSON, onnx_sha256=MODEL_JSON['onnx_sha256'],
        build_seconds=1.0, plan={}))


def test_engine_is_rebuilt_only_when_its_sidecar_mismatches(tmp_path: Path) -> None:
    config = deployment(tmp_path, **{'model.path': 'bundle/model.engine', 'model.build_on_start': True,
                                     'model.rebuild_on_mismatch': True})
    write_engine(tmp_path, 'fp16')
    assert plan(tmp_path, config).engine_build == ()
    write_engine(tmp_path, 'fp32')
    assert plan(tmp_path, config).engine_build[0] == 'perception-build-engine'
    (tmp_path / 'bundle' / 'model.engine.json').unlink()
    assert plan(tmp_path, config).engine_build[0] == 'perception-build-engine'
