"""Console entry points: perception-build-engine, perception-verify-engine.

Every failure ends in one line on stderr naming what is wrong and a non-zero exit, never a
traceback: 1 = verification failed, 2 = bad input (config, bundle, options), 3 = TensorRT,
Torch-TensorRT or a GPU is missing here.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from perception_core.atomic import write_json
from perception_core.backends import BackendError, BackendOptions
from perception_core.backends.select import NoBackend, model_file
from perception_core.bundle import BundleError, bundle_directory, load_bundle
from perception_core.decode import DecodeError
from perception_core.deployment import ConfigError, load_config
from perception_core.engine.build import (
    BuildOptions,
    MissingRequirement,
    VerificationFailed,
    build_engine,
    open_exactly,
    plan_build,
)
from perception_core.engine.calibration import CalibrationError
from perception_core.engine.frames import EVAL_FRAMES
from perception_core.engine.plan import CALIBRATION_IMAGES, DEFAULT_OPTIMIZATION_LEVEL, PlanError
from perception_core.engine.verification import VerifyError
from perception_core.interrupt import interrupted
from perception_core.sidecar import SidecarError, SidecarMismatch
from perception_trainer.annotations import DatasetError

from .verify import GroundTruthVerifier

EXIT_FAILED, EXIT_INPUT, EXIT_MISSING = 1, 2, 3
BACKENDS = ('onnxruntime', 'torchscript', 'torch_cuda', 'tensorrt')
# Errors that mean "this input is wrong": reported as one line with EXIT_INPUT.
INPUT_ERRORS: tuple[type[Exception], ...] = (
    BundleError, PlanError, CalibrationError, DatasetError, VerifyError, SidecarError, SidecarMismatch,
    BackendError, NoBackend, DecodeError, OSError, ValueError)


def _deployment(config: Path, bundle: Path | None) -> dict[str, Any]:
    """The checked deployment values; with --bundle, model.path is that bundle (no ament lookup)."""
    try:
        return dict(load_config(config, str(bundle.resolve()) if bundle else None).values)
    except ConfigError as exc:
        raise PlanError(str(exc)) from exc


def run_command(prog: str, body: Callable[[], int]) -> int:
    """Run ``body`` as a console command: every failure one line on stderr and an exit code."""
    logging.basicConfig(level=logging.INFO, format=f'{prog}: %(levelname)s %(message)s')
    try:
        return body()
    except MissingRequirement as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return EXIT_MISSING
    except VerificationFailed as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return EXIT_FAILED
    except INPUT_ERRORS as exc:
        print(f'{prog}: {exc}', file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        return interrupted(prog)


def _ground_truth(args: argparse.Namespace) -> GroundTruthVerifier:
    return GroundTruthVerifier(eval_data=args.eval_data, eval_frames=args.eval_frames,
                               allow_drop=args.allow_accuracy_drop, progress=sys.stderr.isatty())


def _add_eval_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('--eval-data', type=Path, help='labelled data set (COCO, KITTI or '
                        'metadata.json, as perception-synth writes) for verification; default: '
                        'synthetic scenes of the bundle\'s classes')
    parser.add_argument('--eval-frames', type=int, default=EVAL_FRAMES, help='frames to verify on')
    parser.add_argument('--allow-accuracy-drop', type=float, metavar='MAP',
                        help='largest mAP@[.5:.95] drop accepted (default 0.01 fp32/fp16, 0.03 int8)')


def build_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='perception-build-engine',
        description='Build a TensorRT engine for this device from the model bundle, as the deployment '
                    'YAML asks (precision, batch profile, workspace), verify it against ONNX Runtime and '
                    'install it with its sidecar.')
    parser.add_argument('--config', type=Path, required=True, help='deployment YAML')
    parser.add_argument('--bundle', type=Path, help='model bundle directory (default: model.path\'s)')
    parser.add_argument('--out', type=Path, help='engine path (default: model.path if it names an '
                        'engine, else BUNDLE/model.engine; BUNDLE/model_trt.ts with --torch-tensorrt)')
    parser.add_argument('--torch-tensorrt', action='store_true',
                        help='the design card\'s path: compile model.ts with Torch-TensorRT into a .ts')
    parser.add_argument('--calibration-data', type=Path, help='INT8: folder of images like the camera\'s')
    parser.add_argument('--calibration-cache', type=Path, help='INT8: calibration cache to reuse/write '
                        '(default: beside the engine, named by the ONNX hash)')
    parser.add_argument('--calibration-images', type=int, default=CALIBRATION_IMAGES)
    parser.add_argument('--timing-cache', type=Path, help='TensorRT timing cache (default: beside the '
                        'engine, timing.cache)')
    parser.add_argument('--dla-core', type=int, help='build for this DLA core (Jetson), GPU fallback on')
    parser.add_argument('--optimization-level', type=int, default=DEFAULT_OPTIMIZATION_LEVEL,
                        help='TensorRT builder optimisation level 0..5')
    parser.add_argument('--dry-run', action='store_true',
                        help='print the build plan as JSON and stop (needs no TensorRT)')
    _add_eval_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        values = _deployment(args.config, args.bundle)
        bundle_dir = bundle_directory(values['model.path'])
        options = BuildOptions(
            torch_tensorrt=args.torch_tensorrt, calibration_data=args.calibration_data,
            calibration_cache=args.calibration_cache, calibration_images=args.calibration_images,
            timing_cache=args.timing_cache, dla_core=args.dla_core,
            optimization_level=args.optimization_level, verifier=_ground_truth(args))
        if args.dry_run:
            print(json.dumps(plan_build(values, bundle_dir, args.out, options)[1].to_json(), indent=2))
            return 0
        result = build_engine(values, bundle_dir, args.out, options)
        print(f'{result.engine_path}\n{result.report.summary()}')
        return 0
    return run_command(parser.prog, body)


def verify_main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog='perception-verify-engine',
        description='Compare a backend on a model file of the bundle with ONNX Runtime on model.onnx: '
                    'max abs output difference and mAP after decoding; exit 1 when the mAP drop is too '
                    'large.')
    parser.add_argument('--bundle', type=Path, required=True, help='model bundle directory')
    parser.add_argument('--backend', choices=BACKENDS, required=True, help='the candidate backend')
    parser.add_argument('--model', type=Path, help='the candidate\'s file (default: the bundle\'s file '
                        'for that backend: model.engine, model.ts or model.onnx)')
    parser.add_argument('--precision', choices=('fp32', 'fp16', 'int8'), default='fp32',
                        help='the candidate\'s precision (sets the allowed drop, and torch_cuda\'s dtype)')
    parser.add_argument('--out', type=Path, help='write the report JSON here')
    _add_eval_options(parser)
    args = parser.parse_args(argv)

    def body() -> int:
        bundle = load_bundle(args.bundle, check_onnx_hash=True)
        path = model_file(args.backend, args.model or bundle.directory, bundle)
        reference = open_exactly('onnxruntime', bundle.onnx_path, bundle, BackendOptions())
        candidate = open_exactly(args.backend, path, bundle, BackendOptions(precision=args.precision))
        report = _ground_truth(args).verify(reference, candidate, bundle, args.precision)
        if args.out:
            write_json(args.out, report.to_json())
        print(report.summary())
        for name, diff in report.max_abs_diff.items():
            print(f'  {name}: max abs diff {diff:.3g}, mean {report.mean_abs_diff[name]:.3g}, '
                  f'{report.differing_fraction[name]:.2e} of values differ')
        return 0 if report.passed else EXIT_FAILED
    return run_command(parser.prog, body)
