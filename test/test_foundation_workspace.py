"""The workspace is built, installed and indexed as ROS 2 tools expect it."""

from __future__ import annotations

import json
import os
import py_compile
from pathlib import Path

import pytest
from ament_index_python.packages import get_package_prefix, get_package_share_directory

WORKSPACE = Path(__file__).resolve().parents[1]
PACKAGES = tuple(sorted(p.parent.name for p in (WORKSPACE / 'src').glob('*/package.xml')))

# Type hashes of vision_msgs 4.x built against ROS 2 Kilted's std_msgs and geometry_msgs: equal
# hashes mean our interface package is wire-compatible with a robot's upstream vision_msgs.
VISION_MSGS_HASHES = {
    'Detection2DArray': 'RIHS01_214274120007f4a683866481336b70310268cfa107aebe9d594a6acf75bda968',
    'Detection2D': 'RIHS01_0d12b69df5c593b3455b7346fac8205437a7d4bcb09b9e0e0b2dde787ded38ea',
    'ObjectHypothesisWithPose': 'RIHS01_41c12344c0396c48b81df12467c192d99b2a0eb1463c5c37194e4223251c80bc',
    'ObjectHypothesis': 'RIHS01_51da43cec11c01957a64d1e05a24acd18aae7745ec30b74348ad5f6d634f7f90',
    'BoundingBox2D': 'RIHS01_008eacbb0cf8f26e83795547bed013eec3675485ef386ec056d80eaaf1c1ce2f',
    'Pose2D': 'RIHS01_b0b5d1d7b4c20dd4fcde3ed1d4b289a919290572007d67a97043814db25d3648',
    'Point2D': 'RIHS01_eab0e83f44ab4de92ceaf76dd7d0e7638f2bdd1d16ffbe16c7a136c48e407247',
    'LabelInfo': 'RIHS01_3d37df4015cdf660cc851c51897f2acd957e1ca6205ba0a99aebffb9406b0783',
    'VisionClass': 'RIHS01_1e4a11f0fed50b5623cb8ff26ca0e37952a48a9c074d16f804b44e9164c2037a',
}


@pytest.mark.parametrize(('name', 'expected'), sorted(VISION_MSGS_HASHES.items()))
def test_vision_msgs_type_hashes(name, expected):
    path = Path(get_package_share_directory('vision_msgs')) / 'msg' / f'{name}.json'
    if os.environ.get('ROS_DISTRO') not in (None, '', 'kilted') and not path.exists():
        pytest.skip(f'{os.environ["ROS_DISTRO"]} writes no type hashes ({path} absent)')
    description = json.loads(path.read_text())
    hashes = {h['type_name']: h['hash_string'] for h in description['type_hashes']}
    assert hashes[f'vision_msgs/msg/{name}'] == expected


def test_vision_msgs_imports_and_builds_messages():
    from vision_msgs.msg import Detection2D, Detection2DArray, LabelInfo, VisionClass

    detection = Detection2D(id='1')
    detection.bbox.center.position.x = 12.5
    array = Detection2DArray(detections=[detection])
    assert array.detections[0].bbox.center.position.x == 12.5
    assert LabelInfo(class_map=[VisionClass(class_id=3, class_name='cup')]).class_map[0].class_id == 3


@pytest.mark.parametrize('package', PACKAGES)
def test_package_installed_and_indexed(package):
    share = Path(get_package_share_directory(package))
    assert (share / 'package.xml').is_file()
    assert (Path(get_package_prefix(package)) / 'share' / 'ament_index' / 'resource_index' / 'packages'
            / package).exists()


def test_bringup_installs_launch_and_config():
    share = Path(get_package_share_directory('perception'))
    for relative in ('launch/jetson.launch.py', 'config/jetson_deployment.yaml',
                     'config/fastdds_large_frames.xml', 'models/detector/model.json'):
        installed = share / relative
        assert installed.is_file(), f'{installed} is not installed'
        assert installed.read_bytes() == (WORKSPACE / relative).read_bytes(), f'{installed} is stale'


def test_node_executable_is_where_ros2_run_looks():
    executable = (Path(get_package_prefix('isaac_trt_perception')) / 'lib' / 'isaac_trt_perception'
                  / 'isaac_trt_perception_node')
    assert executable.is_file() and os.access(executable, os.X_OK)


def test_launch_file_byte_compiles(tmp_path):
    # No `launch` package exists here, so the launch file cannot run; it must at least compile.
    py_compile.compile(str(WORKSPACE / 'launch' / 'jetson.launch.py'), cfile=str(tmp_path / 'launch.pyc'),
                       doraise=True)


def test_middleware_profile_is_applied_for_every_distro():
    from perception.middleware import middleware_environment

    for distro in ('humble', 'jazzy', 'kilted'):
        env = middleware_environment(WORKSPACE / 'config', distro=distro)
        assert Path(env['FASTDDS_DEFAULT_PROFILES_FILE']).is_file()
    assert 'FASTRTPS_DEFAULT_PROFILES_FILE' in middleware_environment(WORKSPACE / 'config', distro='humble')
