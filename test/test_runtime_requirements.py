"""What the robot image runs imports only what requirements/runtime.txt (+ ros.txt's wheels)
installs: the node, ``perception-params``, ``perception-bag replay/evaluate`` and the engine build
of model.build_on_start.

A venv made from those files alone (cached under .cache/, rebuilt when they change, like the main
.venv) imports every robot-side entry module, and every module they import, lazily inside
functions too, found by walking the robot packages' source; then it runs ``perception-params`` on
the shipped deployment YAML. The trainer, the engine builder and the benchmarks are not on its
path: the robot side must not need them.
"""

from __future__ import annotations

import ast
import fcntl
import hashlib
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
SOURCE = WORKSPACE / 'src'
CACHE = WORKSPACE / '.cache'
ROBOT_PACKAGES = ('perception', 'perception_core', 'isaac_trt_perception')
OFF_ROBOT_PACKAGES = tuple(sorted(p.parent.name for p in SOURCE.glob('*/package.xml')
                                  if p.parent.name not in ROBOT_PACKAGES))
ENTRY_MODULES = ('isaac_trt_perception.node', 'perception.params', 'perception.bag.cli',
                 'perception.bag.replay', 'perception.bag.evaluate', 'perception_core.engine.build')
# GPU libraries come with the image's CUDA/JetPack (apt, NVIDIA's wheels), never from pip: the
# backends import them lazily and fall back without them.
GPU_ONLY = ('torch', 'tensorrt', 'torch_tensorrt')
# Workstation-side libraries a robot-side command imports only for one subcommand, which then says
# how to get it: scipy for `perception-bag compare`'s box assignment (35 MB the robot image need not
# carry to detect; `pip install scipy` where answer bags are compared); faster_coco_eval for the
# trainer's per-epoch validation (coco_metrics.evaluate(fast=True); the robot scores with pycocotools).
WORKSTATION_ONLY = ('scipy', 'faster_coco_eval')

IMPORT_SCRIPT = '''
import importlib, json, sys
failed = {}
for name in json.loads(sys.argv[1]):
    try:
        importlib.import_module(name)
    except Exception as exc:
        missing = getattr(exc, "name", None) if isinstance(exc, ImportError) else None
        failed[name] = [missing, f"{type(exc).__name__}: {exc}"]
print(json.dumps(failed))
'''
PARAMS_SCRIPT = '''
import sys
from importlib.metadata import entry_points
(script,) = entry_points(group="console_scripts", name="perception-params")
sys.exit(script.load()(sys.argv[1:]))
'''


def _system_ros() -> bool:
    """The main .venv sees a sourced distro's rclpy (bootstrap's system ROS 2 mode)."""
    config = WORKSPACE / '.venv' / 'pyvenv.cfg'
    return 'include-system-site-packages = true' in (config.read_text() if config.is_file() else '')


def _requirements() -> list[Path]:
    # As tools/bootstrap.sh's runtime profile: the ROS 2 wheels only where no distro is sourced.
    names = ['runtime.txt'] if _system_ros() else ['ros.txt', 'runtime.txt']
    return [WORKSPACE / 'requirements' / name for name in names]


def _runtime_venv() -> Path:
    """The cached venv from the requirements files alone; built once per change of them."""
    requirements = _requirements()
    digest = hashlib.sha256(b''.join(p.read_bytes() for p in requirements)).hexdigest()[:16]
    stamp = f'{digest} {platform.python_version()} {"system-ros" if _system_ros() else "wheels"}'
    venv = CACHE / 'runtime-venv'
    CACHE.mkdir(exist_ok=True)
    with (CACHE / 'runtime-venv.lock').open('a') as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # one builder at a time; the others wait and reuse it
        if (venv / '.perception-stamp').is_file() and (venv / '.perception-stamp').read_text() == stamp:
            return venv
        # Built beside and renamed into place, so an interrupted build never looks finished. Only
        # bin/python is used, which finds its packages wherever the venv lies.
        fresh = CACHE / 'runtime-venv.new'
        shutil.rmtree(fresh, ignore_errors=True)
        base = getattr(sys, '_base_executable', sys.executable)
        flags = ['--system-site-packages'] if _system_ros() else []
        subprocess.run([base, '-m', 'venv', *flags, str(fresh)], check=True)
        for requirement in requirements:
            subprocess.run([str(fresh / 'bin' / 'python'), '-m', 'pip', 'install', '-q',
                            '--disable-pip-version-check', '-r', str(requirement)], check=True, timeout=900)
        (fresh / '.perception-stamp').write_text(stamp)
        shutil.rmtree(venv, ignore_errors=True)
        fresh.rename(venv)
    return venv


def _robot_path_entry(entry: str) -> bool:
    """PYTHONPATH entries of the built workspace, less the packages a robot does not run."""
    parts = Path(entry).parts
    return not any(name in parts for name in OFF_ROBOT_PACKAGES)


def _environment(venv: Path) -> dict[str, str]:
    """This environment (the built workspace) with the runtime venv in place of the main .venv."""
    main = str(WORKSPACE / '.venv')
    env = dict(os.environ)
    for key in ('PATH', 'AMENT_PREFIX_PATH', 'CMAKE_PREFIX_PATH'):
        kept = [p for p in env.get(key, '').split(os.pathsep) if p and not p.startswith(main)]
        added = [str(venv / 'bin')] if key == 'PATH' else ([] if _system_ros() else [str(venv)])
        env[key] = os.pathsep.join(added + kept)
    env['VIRTUAL_ENV'] = str(venv)
    env['PYTHONPATH'] = os.pathsep.join(p for p in env.get('PYTHONPATH', '').split(os.pathsep)
                                        if p and _robot_path_entry(p))
    env.pop('PYTHONHOME', None)
    return env


def _module_files() -> dict[str, Path]:
    """Every module of the workspace's Python packages, by dotted name, from the source tree."""
    modules = {}
    for package in (p.parent for p in SOURCE.glob('*/package.xml')):
        for path in (package / package.name).rglob('*.py'):
            parts = path.relative_to(package).with_suffix('').parts
            modules['.'.join(parts[:-1] if parts[-1] == '__init__' else parts)] = path
    return modules


def _optional(handlers: list[ast.ExceptHandler]) -> bool:
    """An ``except ImportError`` that carries on without the module (one that raises its own
    error instead still needs the module installed)."""
    for handler in handlers:
        kinds = handler.type.elts if isinstance(handler.type, ast.Tuple) else [handler.type]
        if ({k.id for k in kinds if isinstance(k, ast.Name)} & {'ImportError', 'ModuleNotFoundError'}
                and not any(isinstance(n, ast.Raise) for n in ast.walk(handler))):
            return True
    return False


class _Imports(ast.NodeVisitor):
    """The modules one file imports anywhere, functions included, less ``if TYPE_CHECKING:``
    blocks and optional imports (see :func:`_optional`)."""

    def __init__(self, package: str, workspace: dict[str, Path]) -> None:
        self.package, self.workspace, self.found = package, workspace, set()

    def visit_If(self, node: ast.If) -> None:
        if 'TYPE_CHECKING' not in ast.unparse(node.test):
            self.generic_visit(node)
            return
        for child in node.orelse:
            self.visit(child)

    def visit_Try(self, node: ast.Try) -> None:
        if not _optional(node.handlers):
            self.generic_visit(node)
            return
        for child in node.orelse + node.finalbody:
            self.visit(child)

    def visit_Import(self, node: ast.Import) -> None:
        self.found.update(alias.name for alias in node.names)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        if node.module == '__future__':
            return
        parts = self.package.split('.')
        base = parts[:len(parts) - node.level + 1] if node.level else []
        name = '.'.join([*base, node.module] if node.module else base)
        self.found.add(name)
        # ``from package import module``: the submodule is imported too.
        self.found.update(f'{name}.{a.name}' for a in node.names if f'{name}.{a.name}' in self.workspace)


def _robot_side() -> tuple[list[str], list[str], list[str]]:
    """(the workspace modules the entry modules reach, the other modules they import, imports of
    off-robot packages as 'module -> imported')."""
    workspace = _module_files()
    queue = [m for m in ENTRY_MODULES if m in workspace]
    walked, external, off_robot = set(queue), set(), set()
    while queue:
        module = queue.pop()
        path = workspace[module]
        finder = _Imports(module if path.name == '__init__.py' else module.rpartition('.')[0], workspace)
        finder.visit(ast.parse(path.read_text(), filename=str(path)))
        for name in finder.found:
            top = name.partition('.')[0]
            if top in OFF_ROBOT_PACKAGES:
                off_robot.add(f'{module} -> {name}')
            elif name in workspace:
                if name not in walked:
                    walked.add(name)
                    queue.append(name)
            elif top not in GPU_ONLY:
                external.add(name)  # a robot package's module that does not exist lands here too
    return sorted(walked), sorted(external), sorted(off_robot)


@pytest.fixture(scope='module')
def venv() -> Path:
    return _runtime_venv()


@pytest.fixture(scope='module')
def import_failures(venv: Path) -> dict[str, list]:
    """{module: [missing module name or None, error]} for what does not import in the venv."""
    walked, external, _ = _robot_side()
    modules = json.dumps(walked + external)
    result = subprocess.run([str(venv / 'bin' / 'python'), '-c', IMPORT_SCRIPT, modules],
                            env=_environment(venv), capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_robot_side_imports_no_off_robot_package() -> None:
    assert _robot_side()[2] == []


@pytest.mark.parametrize('module', ENTRY_MODULES)
def test_entry_module_imports_with_runtime_requirements_only(module: str, import_failures) -> None:
    assert module in _module_files(), f'{module}: no such module in src/ (a robot-side entry point moved?)'
    assert module not in import_failures, import_failures[module][1]


def test_every_module_the_robot_side_imports_is_installed(import_failures) -> None:
    """Lazy imports too (matplotlib for the report's plot, pycocotools for mAP): each one is in
    runtime.txt, ros.txt or the standard library. Only the modules that drive TensorRT or torch
    themselves (loaded when that backend is chosen) may miss them."""
    unexplained = {name: error for name, (missing, error) in import_failures.items()
                   if str(missing).partition('.')[0] not in GPU_ONLY + WORKSTATION_ONLY}
    assert unexplained == {}


def test_perception_params_runs_in_runtime_venv(venv: Path, tmp_path: Path) -> None:
    output = tmp_path / 'params.yaml'
    result = subprocess.run([str(venv / 'bin' / 'python'), '-c', PARAMS_SCRIPT,
                             str(WORKSPACE / 'config' / 'jetson_deployment.yaml'), '-o', str(output)],
                            env=_environment(venv), capture_output=True, text=True, timeout=120, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    (node,) = yaml.safe_load(output.read_text()).values()
    model = Path(node['ros__parameters']['model']['path'])
    assert model.is_absolute() and model.is_file(), model
