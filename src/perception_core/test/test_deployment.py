"""Deployment YAML validation: every key, every kind of error, path resolution."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from perception_core.deployment import ConfigError, load_config
from perception_core.params import PARAMETERS

WORKSPACE = Path(__file__).resolve().parents[3]
SHIPPED = WORKSPACE / 'config' / 'jetson_deployment.yaml'


@pytest.fixture
def document() -> dict:
    """The shipped YAML with a file path for model.path (no ament index needed)."""
    data = yaml.safe_load(SHIPPED.read_text())
    data['deployment_config']['model']['path'] = 'bundle/model.onnx'
    return data


def write(tmp_path: Path, data: object, name: str = 'deploy.yaml') -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def set_key(data: dict, dotted: str, value: object) -> dict:
    data = copy.deepcopy(data)
    *sections, leaf = dotted.split('.')
    node = data['deployment_config']
    for section in sections:
        node = node.setdefault(section, {})
    node[leaf] = value
    return data


@pytest.fixture
def ament_prefix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real ament index prefix holding a 'perception' package, as colcon installs it."""
    prefix = tmp_path / 'install'
    marker = prefix / 'share' / 'ament_index' / 'resource_index' / 'packages' / 'perception'
    marker.parent.mkdir(parents=True)
    marker.touch()
    (prefix / 'share' / 'perception').mkdir()
    monkeypatch.setenv('AMENT_PREFIX_PATH', str(prefix))
    return prefix


def test_shipped_yaml_is_valid_and_its_package_path_resolves(ament_prefix: Path) -> None:
    config = load_config(SHIPPED)
    assert config['model.path'] == str(ament_prefix / 'share/perception/models/detector/model.onnx')
    assert config['ros_integration.input_topic'] == '/camera/image_rect'
    assert config['runtime.inference_frequency'] == 30.0  # YAML int 30 -> float parameter
    assert config.node_name == 'isaac_trt_perception'
    # Extensions left out of the YAML take the parameter table's defaults.
    assert config['detection.score_threshold'] == -1.0
    assert set(config.values) == {p.name for p in PARAMETERS}
    # kept as written: each node fills {node} in itself, so two instances of this file never share a file
    assert config['runtime.monitoring_output_path'] == '/tmp/perception/{node}/performance_metrics.json'
    assert config['runtime.profile_output_path'] == '/tmp/perception/{node}/inference_profile.json'
    assert config['logging.log_path'] == '/tmp/perception/{node}/jetson_deployment.log'


def test_lesson_schema_with_torchscript_model_is_valid(tmp_path: Path, document: dict) -> None:
    """The lesson's own file: a .ts model path relative to the YAML, no extension keys at all."""
    lesson = set_key(document, 'model.path', 'models/detector.ts')
    for section in list(lesson['deployment_config']):
        for key in [k for k in lesson['deployment_config'][section]
                    if next(p for p in PARAMETERS if p.name.startswith(f'{section}.{k}')).extension]:
            del lesson['deployment_config'][section][key]
    config = load_config(write(tmp_path, lesson))
    assert config['model.path'] == str(tmp_path / 'models' / 'detector.ts')


def wrong_type(default: object) -> object:
    if isinstance(default, bool):
        return 'yes'
    if isinstance(default, (int, float)):
        return 'fast'
    if isinstance(default, str):
        return 12
    return 'not a list'


@pytest.mark.parametrize('parameter', PARAMETERS, ids=lambda p: p.name)
def test_every_key_rejects_a_wrong_type_naming_file_key_and_value(tmp_path: Path, document: dict,
                                                                   parameter) -> None:
    path = write(tmp_path, set_key(document, parameter.name, wrong_type(parameter.default)))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    message = str(error.value)
    assert message.startswith(f'{path}: deployment_config.{parameter.name}: expected')
    assert repr(wrong_type(parameter.default)) in message


@pytest.mark.parametrize('parameter', [p for p in PARAMETERS if p.minimum is not None], ids=lambda p: p.name)
def test_ranges_are_enforced(tmp_path: Path, document: dict, parameter) -> None:
    value = type(parameter.default)(parameter.minimum - 1)
    with pytest.raises(ConfigError, match=rf'deployment_config\.{parameter.name}: must be >= '):
        load_config(write(tmp_path, set_key(document, parameter.name, value)))


@pytest.mark.parametrize('parameter', [p for p in PARAMETERS if p.choices], ids=lambda p: p.name)
def test_choices_are_enforced(tmp_path: Path, document: dict, parameter) -> None:
    with pytest.raises(ConfigError, match=rf'deployment_config\.{parameter.name}: must be one of'):
        load_config(write(tmp_path, set_key(document, parameter.name, 'nonsense')))


@pytest.mark.parametrize(('mutate', 'expected'), [
    (lambda d: set_key(d, 'safety.max_inference_tme', 0.1),
     r'deployment_config\.safety\.max_inference_tme: unknown key'),
    (lambda d: set_key(d, 'gpu.enabled', True), r'deployment_config\.gpu: unknown key'),
    (lambda d: set_key(d, 'runtime', 30),
     r'deployment_config\.runtime: expected a mapping \(section\), got int 30'),
    (lambda d: set_key(d, 'ros_integration.qos_profile', 'best_effort'),
     r'deployment_config\.ros_integration\.qos_profile: expected a mapping'),
    (lambda d: set_key(d, 'resources.cpu_affinity', []),
     r'deployment_config\.resources\.cpu_affinity: must not be empty'),
    (lambda d: set_key(d, 'resources.cpu_affinity', [0, 'one']), r'cpu_affinity: expected list of int'),
    (lambda d: set_key(d, 'resources.memory_limit', 'lots'), r'memory_limit: not a memory size'),
    (lambda d: set_key(d, 'model.input_shape', [1, 3, 256]), r'input_shape: must be four positive integers'),
    (lambda d: {**d, 'extra_config': {}}, r'extra_config: unknown top-level key'),
    (lambda d: {'deployment': d['deployment_config']}, r"single top-level key 'deployment_config'"),
    (lambda d: {'deployment_config': [1, 2]}, r'deployment_config: expected a mapping, got list'),
    (lambda d: set_key(d, 'model.path', 'package://no_such_package_here/model.onnx'),
     r"deployment_config\.model\.path: 'package://no_such_package_here/model.onnx': package "
     r"'no_such_package_here'"),
    (lambda d: set_key(d, 'model.path', 'package://perception'), r'is not package://PACKAGE/relative/path'),
    (lambda d: set_key(d, 'logging.log_path', '/tmp/{camera}/node.log'),
     r'deployment_config\.logging\.log_path: \{camera\} is not a placeholder \(use \{node\}, \{name\}, '
     r'\{namespace\}\)'),
])
def test_structural_errors_name_the_key_path(tmp_path: Path, document: dict, mutate, expected: str) -> None:
    path = write(tmp_path, mutate(document))
    with pytest.raises(ConfigError, match=expected) as error:
        load_config(path)
    assert str(error.value).startswith(str(path))


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / 'broken.yaml'
    path.write_text('deployment_config:\n  model:\n    path: [unclosed\n')
    with pytest.raises(ConfigError, match=rf'^{path}:\d+: not valid YAML'):
        load_config(path)


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r'no_such\.yaml: cannot read the deployment YAML'):
        load_config(tmp_path / 'no_such.yaml')


def test_absolute_model_path_is_kept_and_override_is_relative_to_cwd(
        tmp_path: Path, document: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(tmp_path, set_key(document, 'model.path', '/opt/models/detector/model.engine'))
    assert load_config(path)['model.path'] == '/opt/models/detector/model.engine'
    monkeypatch.chdir(tmp_path)
    overridden = load_config(path, model_override='other/model.ts')
    assert overridden['model.path'] == str(tmp_path / 'other/model.ts')
