"""The build API the node's build-on-start calls: what it does without TensorRT (here), what it
imports, and a real build verified by the default (agreement) verifier where TensorRT exists."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from engine_bundles import deployment_values

from perception_core.engine.build import (
    BuildOptions,
    MissingRequirement,
    build_engine,
    check_target,
    plan_build,
    unverified_path,
)
from perception_core.engine.environment import has_module, missing_for
from perception_core.engine.plan import PlanError
from perception_core.engine.verification import AgreementVerifier
from perception_core.sidecar import RuntimeFacts, read_sidecar

NO_TENSORRT = missing_for('tensorrt')
# What the robot image does not install (requirements/runtime.txt): build-on-start must not need it.
NOT_ON_THE_ROBOT = ('pycocotools', 'perception_trainer', 'perception_engine_builder', 'tqdm', 'rclpy')
ENGINE_MODULES = ('agreement', 'build', 'calibration', 'environment', 'frames', 'plan', 'verification')


def test_build_on_start_imports_only_what_the_robot_image_installs() -> None:
    # Blocked modules raise ImportError on import, as if they were not installed.
    script = '\n'.join([
        'import sys',
        *(f'sys.modules[{name!r}] = None' for name in NOT_ON_THE_ROBOT),
        *(f'import perception_core.engine.{module}' for module in ENGINE_MODULES),
        "print(sorted(m for m in ('torch', 'tensorrt', 'torch_tensorrt') if m in sys.modules))",
    ])
    result = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, timeout=120,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == '[]'   # TensorRT and torch load only when a build runs


@pytest.mark.skipif(has_module('tensorrt'), reason='TensorRT is installed here; the build would run')
def test_without_tensorrt_the_build_says_what_is_missing(deployment: dict, tiny_bundle: Path) -> None:
    with pytest.raises(MissingRequirement, match=r'^TensorRT is not installed here') as error:
        build_engine(deployment, tiny_bundle)
    assert 'on the Jetson' in str(error.value)
    assert not list(tiny_bundle.glob('*.engine*'))


def test_the_plan_and_its_target_check_need_no_tensorrt(deployment: dict, tiny_bundle: Path) -> None:
    bundle, plan = plan_build(deployment, tiny_bundle, None, BuildOptions())
    assert plan.engine_path == tiny_bundle / 'model.engine' and plan.target == 'tensorrt'
    assert bundle.onnx_path == plan.onnx_path
    _, lesson = plan_build(deployment, tiny_bundle, None, BuildOptions(torch_tensorrt=True))
    assert lesson.engine_path == tiny_bundle / 'model_trt.ts' and lesson.target == 'torch_tensorrt'
    check_target(plan, RuntimeFacts('10.3.0', 'Orin', '8.7'))
    with pytest.raises(PlanError, match=r"compute_capability is '8\.7' but this GPU \(H200\) is '9\.0'"):
        check_target(plan, RuntimeFacts('10.3.0', 'H200', '9.0'))


def test_a_new_engine_waits_under_an_unverified_name() -> None:
    assert unverified_path(Path('/b/model.engine')) == Path('/b/model.unverified.engine')
    assert unverified_path(Path('/b/model_trt.ts')) == Path('/b/model_trt.unverified.ts')


@pytest.mark.skipif(NO_TENSORRT is not None, reason=str(NO_TENSORRT))
def test_build_on_start_verifies_by_agreement(shipped_bundle: Path, tmp_path: Path) -> None:
    from perception_core.engine import tensorrt_build
    values = deployment_values(shipped_bundle)
    values['target_platform.compute_capability'] = tensorrt_build.runtime_facts().compute_capability
    engine = tmp_path / 'model.engine'
    result = build_engine(values, shipped_bundle, engine, BuildOptions(verifier=AgreementVerifier(frames=20)))
    assert engine.is_file() and result.report.passed and result.engine_path == engine
    assert read_sidecar(engine)['verification']['verifier'] == 'agreement'
    record = json.loads((tmp_path / 'model.engine.verify.json').read_text())
    assert record['verifier'] == 'agreement' and record['passed'] and record['frames'] == 20
