"""YAML -> ROS 2 params file, read back by rcl itself (the parser every node uses)."""

from __future__ import annotations

from pathlib import Path

import pytest
import rclpy
import yaml

from perception.params import main, node_key, write_params_file
from perception_core.deployment import load_config

WORKSPACE = Path(__file__).resolve().parents[3]


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    data = yaml.safe_load((WORKSPACE / 'config' / 'jetson_deployment.yaml').read_text())
    data['deployment_config']['model']['path'] = 'bundle/model.onnx'
    data['deployment_config']['ros_integration']['frame_id_override'] = ''
    path = tmp_path / 'deploy.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def parameters_seen_by_rcl(params_file: Path, node_name: str, namespace: str = '') -> dict:
    """Start a real node with --params-file and read back what rcl gave it."""
    context = rclpy.Context()
    rclpy.init(args=['--ros-args', '--params-file', str(params_file)], context=context)
    try:
        node = rclpy.create_node(node_name, namespace=namespace, context=context,
                                 automatically_declare_parameters_from_overrides=True)
        names = node.list_parameters([], 0).names  # depth 0: all, however deep
        values = {name: node.get_parameter(name).value for name in names}
        node.destroy_node()
        return values
    finally:
        rclpy.try_shutdown(context=context)


def plain(value: object) -> object:
    """rcl returns arrays as array.array; compare as lists."""
    return value if isinstance(value, (bool, int, float, str)) else list(value)  # type: ignore[call-overload]


@pytest.mark.parametrize('namespace', ['', '/robot1'])
def test_every_parameter_reaches_the_node_with_its_type(tmp_path: Path, config_file: Path,
                                                        namespace: str) -> None:
    config = load_config(config_file)
    params_file = write_params_file(config, tmp_path / 'params.yaml', namespace, use_sim_time=True)
    seen = parameters_seen_by_rcl(params_file, config.node_name, namespace)
    for name, value in config.values.items():
        assert name in seen, name
        assert plain(seen[name]) == value, name
        assert type(plain(seen[name])) is type(value), name  # '8.7' stays a string, 30.0 a float
    assert seen['use_sim_time'] is True
    assert seen['model.path'] == str(tmp_path / 'bundle' / 'model.onnx')


def test_params_file_shape(tmp_path: Path, config_file: Path) -> None:
    config = load_config(config_file)
    document = yaml.safe_load(write_params_file(config, tmp_path / 'p.yaml').read_text())
    assert list(document) == ['/**']  # any node name: -r __node:=cam_left gets the same parameters
    parameters = document['/**']['ros__parameters']
    assert parameters['model']['path'] == config['model.path']
    assert parameters['ros_integration']['qos_profile']['reliability'] == 'best_effort'
    assert node_key('isaac_trt_perception', '/a/b/') == '/a/b/isaac_trt_perception'


def test_cli_writes_the_file_and_rejects_bad_config(tmp_path: Path, config_file: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / 'out' / 'params.yaml'
    assert main([str(config_file), '-o', str(out), '--model', str(tmp_path / 'x.ts')]) == 0
    assert yaml.safe_load(out.read_text())['/**']['ros__parameters']['model']['path'] == \
        str(tmp_path / 'x.ts')
    assert main([str(config_file), '-o', str(out), '--node', 'cam_left', '--namespace', 'robot']) == 0
    assert list(yaml.safe_load(out.read_text())) == ['/robot/cam_left']
    config_file.write_text(config_file.read_text().replace('depth: 1', 'depth: 0'))
    assert main([str(config_file), '-o', str(tmp_path / 'bad.yaml')]) == 2
    assert 'deployment_config.ros_integration.qos_profile.depth: must be >= 1' in capsys.readouterr().err
    assert not (tmp_path / 'bad.yaml').exists()


@pytest.mark.parametrize(('node', 'namespace'), [('cam_left', ''), ('isaac_trt_perception', '/right')])
def test_the_default_file_reaches_a_renamed_or_namespaced_node(tmp_path: Path, config_file: Path, node: str,
                                                               namespace: str) -> None:
    """One file, several instances: rcl gives /** parameters to any node name in any namespace."""
    config = load_config(config_file)
    seen = parameters_seen_by_rcl(write_params_file(config, tmp_path / 'p.yaml'), node, namespace)
    assert seen['model.path'] == config['model.path']
    assert seen['runtime.monitoring_output_path'] == '/tmp/perception/{node}/performance_metrics.json'


def test_a_file_keyed_to_one_node_reaches_only_that_node(tmp_path: Path, config_file: Path) -> None:
    config = load_config(config_file)
    keyed = write_params_file(config, tmp_path / 'p.yaml', '/robot', node='cam_left')
    assert parameters_seen_by_rcl(keyed, 'cam_left', '/robot')['model.path'] == config['model.path']
    assert 'model.path' not in parameters_seen_by_rcl(keyed, 'cam_right', '/robot')


CAMERA_LIST = [{'name': 'left', 'input_topic': '/left/image_rect', 'output_topic': '/left/detections'},
               {'name': 'right', 'input_topic': '/right/image_rect', 'output_topic': '/right/detections',
                'frame_id': 'right_optical', 'image_transport': 'compressed'},
               {'name': 'bag', 'input_topic': '/bag/image_rect', 'output_topic': '/bag/detections',
                'reliability': 'reliable', 'depth': 5}]


def cameras_config(tmp_path: Path, cameras: object) -> Path:
    data = yaml.safe_load((WORKSPACE / 'config' / 'jetson_deployment.yaml').read_text())
    data['deployment_config']['model']['path'] = 'bundle/model.onnx'
    data['deployment_config']['ros_integration']['cameras'] = cameras
    path = tmp_path / 'cameras.yaml'
    path.write_text(yaml.safe_dump(data))
    return path


def test_a_camera_list_reaches_the_node_as_its_text_form(tmp_path: Path) -> None:
    from perception_core.params import Camera, parse_cameras
    config = load_config(cameras_config(tmp_path, CAMERA_LIST))
    seen = parameters_seen_by_rcl(write_params_file(config, tmp_path / 'params.yaml'), config.node_name)
    assert parse_cameras(seen['ros_integration.cameras']) == [
        Camera('left', '/left/image_rect', '/left/detections'),
        Camera('right', '/right/image_rect', '/right/detections', 'right_optical', 'compressed'),
        Camera('bag', '/bag/image_rect', '/bag/detections', reliability='reliable', depth='5')]
    assert seen['ros_integration.cameras'].endswith(
        'bag:/bag/image_rect:/bag/detections:reliability=reliable:depth=5')
    # no list: the one-camera keys, as before
    assert load_config(cameras_config(tmp_path, '')).values['ros_integration.cameras'] == ''


@pytest.mark.parametrize(('cameras', 'message'), [
    ([CAMERA_LIST[0], {**CAMERA_LIST[1], 'input_topic': '/left/image_rect'}],
     "ros_integration.cameras[1].input_topic: '/left/image_rect' is already "
     'ros_integration.cameras[0].input_topic'),
    ([CAMERA_LIST[0], {**CAMERA_LIST[1], 'name': 'left'}],
     "ros_integration.cameras[1].name: 'left' is already"),
    ([CAMERA_LIST[0], {**CAMERA_LIST[1], 'output_topic': '/left/detections'}],
     'ros_integration.cameras[1].output_topic:'),
    ([CAMERA_LIST[0], {'name': 'right', 'input_topic': '/right/image_rect'}],
     'ros_integration.cameras[1].output_topic: missing'),
    ([{**CAMERA_LIST[0], 'input_topic': 'not a topic'}],
     "ros_integration.cameras[0].input_topic: 'not a topic' is not a valid ROS topic name"),
    ([{**CAMERA_LIST[0], 'image_transport': 'theora'}],
     'ros_integration.cameras[0].image_transport: must be'),
    ([{**CAMERA_LIST[0], 'qos': 'x'}], 'ros_integration.cameras[0].qos: unknown key'),
    ([{**CAMERA_LIST[0], 'reliability': 'sometimes'}],
     'ros_integration.cameras[0].reliability: must be one of'),
    ([{**CAMERA_LIST[0], 'depth': 0}],
     "ros_integration.cameras[0].depth: must be a whole number of at least 1, got '0'"),
    (['left:/left:/left/det:depth=many'], 'ros_integration.cameras[0].depth: must be a whole number'),
    ([{**CAMERA_LIST[0], 'input_topic': 5}], 'ros_integration.cameras[0].input_topic: expected str'),
    ([], 'ros_integration.cameras: must not be empty'),
    (['left:/left/image_rect'], 'ros_integration.cameras[0]: '),
    ({'left': 1}, 'ros_integration.cameras: expected a list'),
])
def test_bad_camera_lists_are_refused_with_the_key_path(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                       cameras: object, message: str) -> None:
    assert main([str(cameras_config(tmp_path, cameras))]) == 2
    error = capsys.readouterr().err
    assert f'deployment_config.{message}' in error, error
