from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from perception_core import params

WORKSPACE = Path(__file__).resolve().parents[3]
README = Path(__file__).resolve().parents[2] / 'isaac_trt_perception' / 'README.md'  # the node's parameters


def flatten(tree: dict, prefix: str = '') -> dict:
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out.update(flatten(value, f'{prefix}{key}.'))
        else:
            out[prefix + key] = value
    return out


def test_every_lesson_key_is_a_parameter_with_the_lessons_value():
    deployment = flatten(yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())
                         ['deployment_config'])
    checked = params.check_values(deployment)
    for name, value in deployment.items():
        assert checked[name] == value, name
        assert not params.by_name()[name].extension, f'{name} is in the lesson schema'


def test_extensions_are_marked_and_defaults_are_valid():
    names = params.by_name()
    assert len(names) == len(params.PARAMETERS)
    for name in ('model.backend', 'detection.score_threshold', 'ros_integration.frame_id_override'):
        assert names[name].extension
    for p in params.PARAMETERS:
        assert params.check_value(p, p.default) == p.default


@pytest.mark.parametrize(('name', 'value', 'message'), [
    ('runtime.inference_frequency', 'fast', 'expected float'),
    ('runtime.inference_frequency', -1, '>= 0.0'),
    ('model.batch_size', 1.5, 'expected int'),
    ('runtime.enable_profiling', 1, 'expected bool'),
    ('safety.fallback_behavior', 'panic', 'must be one of'),
    ('resources.cpu_affinity', [0, 'one'], 'list of int'),
    ('resources.gpu_usage', 1.5, '<= 1.0'),
    ('resources.memory_limit', 'lots', 'not a memory size'),
    ('model.input_shape', [1, 3, 256], 'four positive integers'),
    ('target_platform.compute_capability', 8.7, 'expected str'),
    ('target_platform.compute_capability', 'eight', 'major.minor'),
    ('runtime.warmup_images', '640x480', 'WIDTHxHEIGHT ENCODING'),
    ('runtime.warmup_images', '640x480 rgb8, 0x480 rgb8', "'0x480 rgb8' is not"),
    ('runtime.warmup_images', '640x480 yuv422', 'is not one of'),
    ('logging.log_path', '/tmp/{nodename}.log', r'\{nodename\} is not a placeholder'),
    ('runtime.monitoring_output_path', '/tmp/{}/m.json', r'\{\} is not a placeholder'),
])
def test_wrong_values_name_the_key_path(name, value, message):
    with pytest.raises(params.ParameterError, match=message) as info:
        params.check_value(params.by_name()[name], value)
    assert str(info.value).startswith(name + ':')


def test_integers_are_accepted_for_floats_and_unknown_keys_are_errors():
    assert params.check_value(params.by_name()['runtime.inference_frequency'], 30) == 30.0
    with pytest.raises(params.ParameterError, match=r'runtime\.inference_frequncy: unknown key'):
        params.check_values({'runtime.inference_frequncy': 30})


def test_memory_sizes():
    assert params.parse_memory_size('2GB') == 2 * 10**9
    assert params.parse_memory_size('512MiB') == 512 * 2**20
    assert params.parse_memory_size('1000') == 1000


def test_readme_parameter_table_is_the_generated_one():
    assert params.markdown_table() in README.read_text(), (
        'README parameter table is stale: paste perception_core.params.markdown_table()')


def test_warmup_images_parse():
    assert params.parse_warmup_images('') == []
    assert params.parse_warmup_images(' 640x480 rgb8,1280 x 720  bgr8 ,') == [
        (640, 480, 'rgb8'), (1280, 720, 'bgr8')]


def test_instance_paths_name_the_node_and_the_defaults_use_it():
    """Two nodes from one YAML must never share an output file: every default names the instance."""
    for name in params.INSTANCE_PATHS:
        assert '{node}' in params.by_name()[name].default, name
    fill = params.instance_path
    assert fill('/t/{node}/{name}_{namespace}.json', '/robot/arm/cam_left') == \
        '/t/robot.arm.cam_left/cam_left_robot.arm.json'
    assert fill('/t/{node}/{name}_{namespace}.json', '/cam_left') == '/t/cam_left/cam_left_.json'
    assert fill('/t/fixed.json', '/cam_left') == '/t/fixed.json'
    # different nodes never give one path ("." cannot be in a ROS name)
    names = ['/a/b_c', '/a_b/c', '/a/b/c', '/abc', '/a/bc']
    assert len({fill('{node}', n) for n in names}) == len(names)
