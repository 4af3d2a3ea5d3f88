"""No package installs files from above its own root: ``colcon build`` of a copy of ``src/`` alone
installs every package, and perception's share/ gets the launch file, the deployment YAML, the
middleware profile and the shipped model bundle.

The workspace's top-level launch/, config/ and models/ are relative symbolic links into
src/perception/, which owns the files, so the paths in the README, the Makefile and the tools keep
working from the workspace root.
"""

from __future__ import annotations

import ast
import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[1]
SOURCE = WORKSPACE / 'src'
PACKAGES = sorted(p.parent.name for p in SOURCE.glob('*/package.xml'))
SHARED = ('launch', 'config', 'models')  # top-level folders that perception owns
COLCON_LOCK = Path('/tmp/colcon.lock')   # every colcon build on this machine takes it


def _environment() -> dict[str, str]:
    """This environment without the built workspace: the copy must not lean on install/."""
    env = {k: v for k, v in os.environ.items() if k not in ('COLCON_PREFIX_PATH', 'PYTHONPATH')}
    for key in ('AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH', 'LD_LIBRARY_PATH'):
        kept = [p for p in env.get(key, '').split(os.pathsep)
                if p and not p.startswith(str(WORKSPACE / 'install'))]
        env[key] = os.pathsep.join(kept)
    env['PATH'] = os.pathsep.join(p for p in env['PATH'].split(os.pathsep)
                                  if not p.startswith(str(WORKSPACE / 'install')))
    return env


@pytest.mark.parametrize('name', SHARED)
def test_top_level_folders_are_relative_links_into_perception(name):
    link = WORKSPACE / name
    assert link.is_symlink(), f'{link} should be a symbolic link into src/perception/'
    target = os.readlink(link)
    assert not os.path.isabs(target), f'{link} -> {target}: relative, so a clone or an image keeps it'
    assert link.resolve() == (SOURCE / 'perception' / name).resolve()
    assert link.resolve().is_dir()


@pytest.mark.parametrize('package', PACKAGES)
def test_setup_py_names_no_path_above_its_root(package):
    """Every string in setup.py that could be a path stays inside the package."""
    tree = ast.parse((SOURCE / package / 'setup.py').read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str):
            assert '..' not in node.value.split('/'), f'{package}/setup.py: {node.value!r}'


@pytest.fixture(scope='module')
def built_copy(tmp_path_factory) -> Path:
    """A copy of src/ alone (no interfaces/: ament_python packages need vision_msgs only at run
    time), built without --symlink-install so every installed file is a real copy."""
    root = tmp_path_factory.mktemp('src_only')
    shutil.copytree(SOURCE, root / 'src', symlinks=True,
                    ignore=shutil.ignore_patterns('__pycache__', '*.egg-info', '*.pyc', '.pytest_cache'))
    command = ['colcon', '--log-base', str(root / 'log'), 'build', '--base-paths', str(root / 'src'),
               '--build-base', str(root / 'build'), '--install-base', str(root / 'install'),
               '--event-handlers', 'console_cohesion+', 'summary-']
    with COLCON_LOCK.open('a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = subprocess.run(command, cwd=root, env=_environment(), capture_output=True, text=True,
                                timeout=600, check=False)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return root / 'install'


@pytest.mark.parametrize('package', PACKAGES)
def test_each_package_builds_from_src_alone(built_copy, package):
    share = built_copy / package / 'share'
    assert (share / package / 'package.xml').is_file()
    assert (share / 'ament_index' / 'resource_index' / 'packages' / package).is_file()
    copy = built_copy.parent
    for path in (built_copy / package).rglob('*'):
        if path.is_symlink():
            assert copy in path.resolve().parents, f'{path} -> {path.resolve()}: outside the copy'


def test_perception_share_has_launch_config_and_model(built_copy):
    share = built_copy / 'perception' / 'share' / 'perception'
    for relative in ('launch/jetson.launch.py', 'config/jetson_deployment.yaml',
                     'config/fastdds_large_frames.xml', 'models/detector/model.json',
                     'models/detector/model.onnx', 'models/detector/model.ts'):
        installed = share / relative
        assert installed.is_file() and not installed.is_symlink(), f'{installed} is not installed'
        assert installed.read_bytes() == (WORKSPACE / relative).read_bytes(), f'{installed} differs'
