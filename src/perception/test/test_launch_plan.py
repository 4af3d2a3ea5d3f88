"""The launch plan: what jetson.launch.py starts, checked without the launch package."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perception.launch_plan import describe, make_plan
from perception_core.deployment import ConfigError

WORKSPACE = Path(__file__).resolve().parents[3]


def deployment(tmp_path: Path, **changes: object) -> Path:
    """The shipped YAML with a model in tmp_path; ``changes`` by dotted key."""
    data = yaml.safe_load((WORKSPACE / 'config' / 'jetson_deployment.yaml').read_text())
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
    assert 'isaac_trt_perception' in describe(p)


def test_launch_arguments_override_the_yaml(tmp_path: Path) -> None:
    p = plan(tmp_path, deployment(tmp_path), model=str(tmp_path / 'other' / 'model.ts'), log_level='warning',
             namespace='robot1/', use_sim_time=True)
    command = p.command('node')
    assert command[command.index('__ns:=/robot1') - 1] == '-r'
    assert command[-2:] == ['--log-level', 'warn']
    params = yaml.safe_load(p.params_file.read_text())['/**']['ros__parameters']
    assert params['model']['path'] == str(tmp_path / 'other' / 'model.ts')
    assert params['logging']['level'] == 'WARNING'
    assert params['use_sim_time'] is True


def test_bad_log_level_argument_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'log_level:= \(launch argument\): logging.level: must be one of'):
        plan(tmp_path, deployment(tmp_path), log_level='loud')


def test_cpu_affinity_reaches_the_node_as_its_parameter_not_a_prefix(tmp_path: Path) -> None:
    """The node pins its own threads (one owner): the command starts with the node itself, and the
    cores, missing ones included (the node drops them with a warning), are in its params file."""
    p = plan(tmp_path, deployment(tmp_path, **{'resources.cpu_affinity': [0, 4096]}))
    command = p.command('/opt/node')
    assert command[0] == '/opt/node'
    assert not any('taskset' in part for part in command)
    params = yaml.safe_load(p.params_file.read_text())['/**']['ros__parameters']
    assert params['resources']['cpu_affinity'] == [0, 4096]
    assert '[0, 4096]' in describe(p) and 'taskset' not in describe(p)


def test_engine_build_on_start_is_announced(tmp_path: Path) -> None:
    """The node builds a missing engine itself; the launch log says it will."""
    config = deployment(tmp_path, **{'model.path': 'bundle/model.engine', 'model.build_on_start': True})
    assert 'builds the TensorRT engine first' in describe(plan(tmp_path, config))
    assert 'builds the TensorRT engine' not in describe(plan(tmp_path, deployment(tmp_path)))


def test_a_temporary_params_folder_is_removed_and_a_given_one_kept(tmp_path: Path) -> None:
    """Without params_dir the plan makes a perception_launch_* folder and removes it once the node
    has exited (launch file: on the node's exit; node_process: when it stops the node)."""
    temporary = make_plan(deployment(tmp_path), middleware_config_dir=WORKSPACE / 'config')
    assert temporary.temporary_dir == temporary.params_file.parent
    assert temporary.temporary_dir.name.startswith('perception_launch_') and temporary.params_file.is_file()
    assert 'removed when the node exits' in describe(temporary)
    temporary.remove_params()
    assert not temporary.temporary_dir.exists()
    given = plan(tmp_path, deployment(tmp_path))
    assert given.temporary_dir is None
    given.remove_params()
    assert given.params_file.is_file() and 'removed' not in describe(given)


def test_output_paths_are_the_ones_the_node_writes(tmp_path: Path) -> None:
    """{node}/{name}/{namespace} filled in from the planned node's fully qualified name, as the node does."""
    config = deployment(tmp_path, **{
        'runtime.monitoring_output_path': str(tmp_path / '{node}' / 'm_{name}.json'),
        'logging.log_path': str(tmp_path / '{namespace}' / 'n.log')})
    p = plan(tmp_path, config, namespace='robot/arm')
    assert p.fully_qualified_name == '/robot/arm/isaac_trt_perception'
    assert p.output_path('runtime.monitoring_output_path') == \
        tmp_path / 'robot.arm.isaac_trt_perception' / 'm_isaac_trt_perception.json'
    assert p.output_path('logging.log_path') == tmp_path / 'robot.arm' / 'n.log'
    assert plan(tmp_path, deployment(tmp_path)).output_path('runtime.profile_output_path') == \
        Path('/tmp/perception/isaac_trt_perception/inference_profile.json')  # the shipped default


def test_overrides_are_checked_like_the_yaml(tmp_path: Path) -> None:
    p = plan(tmp_path, deployment(tmp_path), overrides={'logging.log_path': str(tmp_path / 'x.log')})
    assert yaml.safe_load(p.params_file.read_text())['/**']['ros__parameters']['logging']['log_path'] == \
        str(tmp_path / 'x.log')
    with pytest.raises(ConfigError, match=r'logging.log_path: \{nodes\} is not a placeholder'):
        plan(tmp_path, deployment(tmp_path), overrides={'logging.log_path': '/tmp/{nodes}.log'})
    with pytest.raises(ConfigError, match=r'logging\.logpath: unknown parameter'):
        plan(tmp_path, deployment(tmp_path), overrides={'logging.logpath': '/tmp/x.log'})


def test_cameras_argument_replaces_the_yaml_list_and_is_checked(tmp_path: Path) -> None:
    text = 'left:/left/image_rect:/left/detections,right:/right/image_rect:/right/detections:frame_id=r'
    p = plan(tmp_path, deployment(tmp_path), cameras=text)
    params = yaml.safe_load(p.params_file.read_text())['/**']['ros__parameters']
    assert params['ros_integration']['cameras'] == text  # the text form: a string parameter
    assert f'cameras {text}' in describe(p)
    with pytest.raises(ConfigError, match=r"cameras:= \(launch argument\): ros_integration.cameras\[1\]"
                                          r".input_topic: '/l' is already ros_integration.cameras\[0\]"):
        plan(tmp_path, deployment(tmp_path), cameras='a:/l:/a,b:/l:/b')
    assert plan(tmp_path, deployment(tmp_path), cameras='').config['ros_integration.cameras'] == ''


def test_model_argument_brings_its_bundles_input_shape(tmp_path: Path) -> None:
    # the YAML's model.input_shape was written for its own model: model:= an imported 320x320
    # YOLO26 must not start the node against the YAML's 256x320 (the node would refuse it)
    from perception_core.bundle_import import import_model
    foreign = WORKSPACE / 'src/perception_core/test/fixtures/foreign/yolo26_small_end2end.onnx'
    bundle = Path(import_model(foreign, tmp_path / 'yolo26'))
    config = deployment(tmp_path)
    launched = plan(tmp_path, config, model=str(bundle / 'model.onnx'))
    assert launched.config['model.input_shape'] == [1, 3, 320, 320]
    assert any('model.input_shape [1, 3, 320, 320]' in note for note in launched.notes)
    assert plan(tmp_path, config).config['model.input_shape'] == [1, 3, 256, 320]  # no model:=, the YAML's
