"""Build, verify and install an engine: what the node's build-on-start and ``perception-build-engine`` call.

The node calls :func:`build_engine` with its parameter values. A new engine is written under an
``.unverified`` name with its sidecar, loaded through the node's own backend, verified against
ONNX Runtime by ``options.verifier`` (default: agreement on synthetic scenes), and only then
renamed into place; an engine that fails verification stays under the ``.unverified`` name for
inspection and never replaces a good one.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from perception_core.atomic import write_bytes, write_json
from perception_core.backends import Backend, BackendOptions
from perception_core.backends.select import open_backend
from perception_core.bundle import Bundle, load_bundle
from perception_core.sidecar import RuntimeFacts, make_sidecar, sidecar_path, write_sidecar

from .calibration import calibration_batches, image_files
from .environment import missing_for
from .plan import (
    CALIBRATION_IMAGES,
    DEFAULT_OPTIMIZATION_LEVEL,
    BuildPlan,
    PlanError,
    default_engine_path,
    make_plan,
)
from .verification import AgreementVerifier, Verification, Verifier, VerifyError

log = logging.getLogger(__name__)


class MissingRequirement(RuntimeError):
    """TensorRT, Torch-TensorRT or a GPU is not here; the message is one sentence saying what to do."""


class VerificationFailed(RuntimeError):
    def __init__(self, report: Verification, kept_at: Path) -> None:
        self.report = report
        super().__init__(f'{report.summary()}; the engine was kept at {kept_at} and not installed '
                         f'({report.remedy()})')


@dataclass(frozen=True)
class BuildOptions:
    torch_tensorrt: bool = False             # the lesson's Torch-TensorRT path (model.ts -> .ts)
    calibration_data: Path | None = None
    calibration_cache: Path | None = None
    calibration_images: int = CALIBRATION_IMAGES
    timing_cache: Path | None = None
    dla_core: int | None = None
    optimization_level: int = DEFAULT_OPTIMIZATION_LEVEL
    verifier: Verifier | None = None         # None: AgreementVerifier(), what the robot image can run


@dataclass(frozen=True)
class BuildResult:
    engine_path: Path
    sidecar: dict[str, Any]
    report: Verification


def unverified_path(engine_path: Path) -> Path:
    """Where a new engine waits for verification (same suffix, so backends recognise it)."""
    return engine_path.with_name(f'{engine_path.stem}.unverified{engine_path.suffix}')


def open_exactly(name: str, path: Path, bundle: Bundle, options: BackendOptions) -> Backend:
    """The node's backend ``name`` on ``path``; a fallback to another backend is an error here."""
    selection = open_backend(path, bundle, name, options)
    if selection.fell_back:
        selection.backend.close()
        raise VerifyError(f'{name} backend cannot load {path}: {selection.failures[0][1]}')
    return selection.backend


def check_target(plan: BuildPlan, facts: RuntimeFacts) -> None:
    if facts.compute_capability != plan.compute_capability:
        raise PlanError(
            f'deployment_config.target_platform.compute_capability is {plan.compute_capability!r} but this '
            f'GPU ({facts.gpu_name}) is {facts.compute_capability!r}: build on the target device, or set '
            'the YAML to this GPU if it is the target')


def _compile(plan: BuildPlan, bundle: Bundle, staged: Path) -> tuple[dict[str, Any], RuntimeFacts]:
    """Build ``plan`` into ``staged``; returns (the sidecar, this device's facts)."""
    from . import tensorrt_build  # TensorRT is imported only when a build really runs
    facts = tensorrt_build.runtime_facts()
    check_target(plan, facts)
    profile = {'input': plan.input_name, 'min': list(plan.profile.min), 'opt': list(plan.profile.opt),
               'max': list(plan.profile.max)}
    common: dict[str, Any] = {'facts': facts, 'precision': plan.precision, 'profile': profile,
                              'model_json': bundle.raw, 'onnx_sha256': plan.onnx_sha256}
    if plan.target == 'torch_tensorrt':
        from . import torch_tensorrt_build
        staged_plan = replace(plan, engine_path=staged)
        seconds = torch_tensorrt_build.compile_torchscript(staged_plan)
        tensors = [{'name': plan.input_name, 'shape': [-1, *plan.profile.opt[1:]], 'dtype': 'float32'}]
        sidecar = make_sidecar(kind='torch_tensorrt', inputs=tensors, outputs=[], build_seconds=seconds,
                               plan=staged_plan.to_json(), versions=torch_tensorrt_build.versions(), **common)
        return sidecar, facts
    batches = None
    if plan.calibration is not None and plan.calibration.data_dir is not None:
        files = image_files(plan.calibration.data_dir, plan.calibration.max_images)
        batches = calibration_batches(files, bundle.input, plan.calibration.batch_size)
    built = tensorrt_build.build_engine(plan, batches)
    write_bytes(staged, built.serialized)
    sidecar = make_sidecar(kind='tensorrt', inputs=built.inputs, outputs=built.outputs,
                           build_seconds=built.build_seconds, plan=plan.to_json(), **common)
    return sidecar, facts


def target_of(options: BuildOptions) -> str:
    return 'torch_tensorrt' if options.torch_tensorrt else 'tensorrt'


def plan_build(values: dict[str, Any], bundle_dir: Path, engine_path: Path | None,
               options: BuildOptions) -> tuple[Bundle, BuildPlan]:
    """The bundle and the plan for a build (all decisions; no TensorRT needed)."""
    target = target_of(options)
    bundle = load_bundle(bundle_dir, check_onnx_hash=True)
    engine_path = engine_path or default_engine_path(Path(values['model.path']), bundle.directory, target)
    return bundle, make_plan(
        values, bundle, engine_path, target=target, calibration_data=options.calibration_data,
        calibration_cache=options.calibration_cache, calibration_images=options.calibration_images,
        timing_cache=options.timing_cache, dla_core=options.dla_core,
        optimization_level=options.optimization_level)


def build_engine(values: dict[str, Any], bundle_dir: Path, engine_path: Path | None = None,
                 options: BuildOptions | None = None) -> BuildResult:
    """Build, verify and install the engine the deployment values ask for.

    Raises MissingRequirement (no TensorRT / GPU), BundleError, PlanError, CalibrationError,
    BuildError, VerifyError or VerificationFailed, each naming what is wrong.
    """
    options = options or BuildOptions()
    missing = missing_for(target_of(options))
    if missing:
        raise MissingRequirement(missing)
    bundle, plan = plan_build(values, bundle_dir, engine_path, options)
    engine_path = plan.engine_path
    for note in plan.notes:
        log.info('plan: %s', note)
    staged = unverified_path(engine_path)
    sidecar, facts = _compile(plan, bundle, staged)
    write_sidecar(staged, sidecar)
    verifier = options.verifier or AgreementVerifier()
    log.info('built %s in %.1f s; verifying against ONNX Runtime (%s)', staged, sidecar['build_seconds'],
             verifier.name)

    backend_options = BackendOptions(precision=plan.precision, compute_capability=plan.compute_capability,
                                     max_batch_size=plan.profile.max[0])
    reference = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
    try:
        candidate = open_exactly('tensorrt' if plan.target == 'tensorrt' else 'torchscript', staged, bundle,
                                 backend_options)
        try:
            report = verifier.verify(reference, candidate, bundle, plan.precision)
        finally:
            candidate.close()
    finally:
        reference.close()
    record = {'verifier': verifier.name, **report.to_json()}
    sidecar['verification'] = record
    write_json(engine_path.with_name(engine_path.name + '.verify.json'), record)
    if not report.passed:
        write_sidecar(staged, sidecar)
        raise VerificationFailed(report, staged)
    # Engine first: for a moment the old sidecar may describe the new engine, which at worst
    # makes the node refuse it, never accept a wrong one.
    os.replace(staged, engine_path)
    write_sidecar(engine_path, sidecar)
    sidecar_path(staged).unlink(missing_ok=True)
    log.info('%s on %s (%s): %s', engine_path, facts.gpu_name, facts.tensorrt_version, report.summary())
    return BuildResult(engine_path, sidecar, report)
