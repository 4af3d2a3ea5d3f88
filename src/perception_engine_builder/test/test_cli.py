"""The installed console entry points, run as users run them: separate processes, real files."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from perception_core.engine.environment import has_module


def run(command: str, *args: str | Path) -> subprocess.CompletedProcess:
    executable = shutil.which(command)
    if executable is None:
        pytest.fail(f'{command} is not on PATH: make build installs it (run the tests through '
                    'tools/in_env.sh or source env.sh)', pytrace=False)
    return subprocess.run([executable, *map(str, args)], capture_output=True, text=True, timeout=300,
                          check=False)


def one_line_error(result: subprocess.CompletedProcess, prog: str) -> str:
    errors = [line for line in result.stderr.splitlines() if not line.startswith(f'{prog}: INFO')]
    assert 'Traceback' not in result.stderr
    assert len(errors) == 1, result.stderr
    assert errors[0].startswith(f'{prog}: ')
    return errors[0]


@pytest.mark.skipif(has_module('tensorrt'), reason='TensorRT is installed here; the build would run')
@pytest.mark.parametrize('extra', [[], ['--torch-tensorrt']])
def test_build_without_tensorrt_says_what_is_missing(tiny_bundle: Path, deployment_yaml: Path,
                                                     extra: list[str]) -> None:
    result = run('perception-build-engine', '--config', deployment_yaml, '--bundle', tiny_bundle, *extra)
    assert result.returncode == 3
    line = one_line_error(result, 'perception-build-engine')
    assert 'TensorRT is not installed here' in line and 'on the Jetson' in line
    assert not list(tiny_bundle.glob('*.engine*'))


def test_dry_run_prints_the_plan(tiny_bundle: Path, deployment_yaml: Path) -> None:
    result = run('perception-build-engine', '--config', deployment_yaml, '--bundle', tiny_bundle, '--dry-run',
                 '--dla-core', '0')
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan['precision'] == 'fp16' and plan['dla_core'] == 0
    assert plan['profile'] == {'min': [1, 3, 256, 320], 'opt': [1, 3, 256, 320], 'max': [1, 3, 256, 320]}
    assert plan['engine_path'] == str(tiny_bundle.resolve() / 'model.engine')


def test_bad_input_is_one_line(tiny_bundle: Path, deployment_yaml: Path, tmp_path: Path) -> None:
    result = run('perception-build-engine', '--config', tmp_path / 'nope.yaml', '--dry-run')
    assert result.returncode == 2
    assert 'nope.yaml' in one_line_error(result, 'perception-build-engine')

    document = yaml.safe_load(deployment_yaml.read_text())
    document['deployment_config']['model']['precision'] = 'int8'
    config = tmp_path / 'int8.yaml'
    config.write_text(yaml.safe_dump(document))
    result = run('perception-build-engine', '--config', config, '--bundle', tiny_bundle, '--dry-run')
    assert result.returncode == 2
    assert '--calibration-data' in one_line_error(result, 'perception-build-engine')

    result = run('perception-verify-engine', '--bundle', tmp_path, '--backend', 'torchscript')
    assert result.returncode == 2
    assert 'model.json' in one_line_error(result, 'perception-verify-engine')


def test_verify_torchscript_against_onnxruntime(tiny_bundle: Path, tmp_path: Path) -> None:
    out = tmp_path / 'verify.json'
    result = run('perception-verify-engine', '--bundle', tiny_bundle, '--backend', 'torchscript',
                 '--eval-frames', '4', '--out', out)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith('PASSED: TorchScript')
    report = json.loads(out.read_text())
    assert report['passed'] and report['frames'] == 4 and 'detections' in report['max_abs_diff']
