"""The engine builder's only contact with TensorRT (10.x Python API): ONNX -> serialized engine.

It carries out a :class:`~perception_core.engine.plan.BuildPlan` and decides nothing itself.
Device memory for INT8 calibration comes from PyTorch (CUDA), which JetPack ships. Type-checked
with mypy against ``tensorrt-stubs``; run only where TensorRT and a GPU exist.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import tensorrt as trt
import torch

from perception_core.atomic import write_bytes
from perception_core.sidecar import RuntimeFacts

from .calibration import read_cache, write_cache
from .plan import BuildPlan, Calibration

log = logging.getLogger(__name__)


class BuildError(RuntimeError):
    """TensorRT refused the network or the plan; the message says which and why."""


@dataclass(frozen=True)
class BuiltEngine:
    serialized: bytes
    inputs: list[dict[str, Any]]     # {"name", "shape", "dtype"}; -1 marks the dynamic batch
    outputs: list[dict[str, Any]]
    build_seconds: float


class _Logger(trt.ILogger):
    """TensorRT's messages into Python logging (and so into the caller's log file)."""

    LEVELS: ClassVar[dict[trt.ILogger.Severity, int]] = {
        trt.ILogger.INTERNAL_ERROR: logging.CRITICAL, trt.ILogger.ERROR: logging.ERROR,
        trt.ILogger.WARNING: logging.WARNING, trt.ILogger.INFO: logging.DEBUG,
        trt.ILogger.VERBOSE: logging.DEBUG}

    def __init__(self) -> None:
        trt.ILogger.__init__(self)

    def log(self, severity: trt.ILogger.Severity, msg: str) -> None:
        log.log(self.LEVELS.get(severity, logging.INFO), 'TensorRT: %s', msg)


class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
    """Feeds preprocessed batches to TensorRT's INT8 entropy calibration; caches the result."""

    def __init__(self, batches: Iterator[np.ndarray], calibration: Calibration) -> None:
        trt.IInt8EntropyCalibrator2.__init__(self)
        self._batches = batches
        self._calibration = calibration
        self._device = torch.empty(calibration.shape, dtype=torch.float32, device='cuda')
        self.batches_used = 0

    def get_batch_size(self) -> int:
        return self._calibration.batch_size

    def get_batch(self, names: list[str]) -> list[int]:
        batch = next(self._batches, None)
        if batch is None:
            return []   # TensorRT's signal for "no more data"
        self._device.copy_(torch.from_numpy(batch))
        torch.cuda.synchronize()
        self.batches_used += 1
        return [int(self._device.data_ptr())]

    def read_calibration_cache(self) -> bytes | None:   # None: no cache, calibrate
        return read_cache(self._calibration)

    def write_calibration_cache(self, cache: Any) -> None:
        write_cache(self._calibration, bytes(cache))


def runtime_facts(device: int = 0) -> RuntimeFacts:
    major, minor = torch.cuda.get_device_capability(device)
    return RuntimeFacts(tensorrt_version=trt.__version__, gpu_name=torch.cuda.get_device_name(device),
                        compute_capability=f'{major}.{minor}')


def _tensor_info(tensor: trt.ITensor) -> dict[str, Any]:
    return {'name': tensor.name, 'shape': list(tensor.shape[:]),
            'dtype': np.dtype(trt.nptype(tensor.dtype)).name}


def _parse(plan: BuildPlan, builder: trt.Builder, logger: trt.ILogger) -> trt.INetworkDefinition:
    network = builder.create_network(0)   # TensorRT 10: explicit batch is the only mode
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(plan.onnx_path)):
        errors = '; '.join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise BuildError(f'{plan.onnx_path}: the TensorRT ONNX parser refused it: {errors}')
    names = [network.get_input(i).name for i in range(network.num_inputs)]
    wanted = [plan.input_name, *plan.extra_inputs]
    if sorted(names) != sorted(wanted):
        raise BuildError(f'{plan.onnx_path}: inputs {names}, but model.json names input.name '
                         f'{plan.input_name!r}' + (f' and input.extra_inputs {list(plan.extra_inputs)}'
                                                   if plan.extra_inputs else ' (one input expected)'))
    return network


def _static(tensor: trt.ITensor) -> list[int] | None:
    """The input's shape when the ONNX file fixes every dimension (most foreign exports: batch 1)."""
    dims = list(tensor.shape[:])
    return None if any(d < 0 for d in dims) else dims


def _set_profile(profile: trt.IOptimizationProfile, plan: BuildPlan, network: trt.INetworkDefinition,
                 image: tuple[list[int], list[int], list[int]]) -> None:
    """The image input's range from the plan, unless the model fixes its shape; each fixed input
    (extra inputs, a static image input) at its own shape, as TensorRT requires."""
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        fixed = _static(tensor)
        if tensor.name == plan.input_name and fixed is None:
            profile.set_shape(tensor.name, *(trt.Dims(d) for d in image))
        elif fixed is not None:
            if tensor.name == plan.input_name and fixed != image[2]:
                log.info('%s: the model fixes input %s at %s; the engine takes that shape only (the '
                         'plan asked up to %s)', plan.onnx_path, tensor.name, fixed, image[2])
            profile.set_shape(tensor.name, trt.Dims(fixed), trt.Dims(fixed), trt.Dims(fixed))
        else:
            raise BuildError(f'{plan.onnx_path}: extra input {tensor.name!r} has dynamic dimensions '
                             f'{list(tensor.shape[:])}; only fixed-shape extra inputs are supported')


def _configure(plan: BuildPlan, builder: trt.Builder, network: trt.INetworkDefinition) -> trt.IBuilderConfig:
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, plan.workspace_bytes)
    config.builder_optimization_level = plan.optimization_level
    for flag in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, flag))
    for name in plan.preview_features:
        feature = getattr(trt.PreviewFeature, name, None)
        if feature is None:
            log.warning('TensorRT %s has no preview feature %s; not enabled', trt.__version__, name)
        else:
            config.set_preview_feature(feature, True)
    if plan.dla_core is not None:
        if plan.dla_core >= builder.num_DLA_cores:
            raise BuildError(f'--dla-core {plan.dla_core}: this device has {builder.num_DLA_cores} DLA '
                             'core(s)')
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = plan.dla_core
    profile = builder.create_optimization_profile()
    _set_profile(profile, plan, network,
                 (list(plan.profile.min), list(plan.profile.opt), list(plan.profile.max)))
    config.add_optimization_profile(profile)
    return config


def _load_timing_cache(plan: BuildPlan, config: trt.IBuilderConfig) -> None:
    path = plan.timing_cache_path
    data = path.read_bytes() if path.is_file() else b''
    if not config.set_timing_cache(config.create_timing_cache(data), ignore_mismatch=False):
        log.warning('%s: timing cache is from another device or TensorRT version; starting a new one', path)
        config.set_timing_cache(config.create_timing_cache(b''), ignore_mismatch=False)
    elif data:
        log.info('timing cache %s reused', path)


def _save_timing_cache(plan: BuildPlan, config: trt.IBuilderConfig) -> None:
    write_bytes(plan.timing_cache_path, bytes(config.get_timing_cache().serialize()))


def build_engine(plan: BuildPlan, batches: Iterator[np.ndarray] | None = None) -> BuiltEngine:
    """Parse, configure and build; ``batches`` feed INT8 calibration (plan.calibration set)."""
    logger = _Logger()
    builder = trt.Builder(logger)
    network = _parse(plan, builder, logger)
    config = _configure(plan, builder, network)
    _load_timing_cache(plan, config)
    calibrator = None
    if plan.calibration is not None:
        if plan.extra_inputs:  # the calibrator feeds the image input only
            raise BuildError(f'{plan.onnx_path}: INT8 calibration of a model with extra inputs '
                             f'{list(plan.extra_inputs)} is not supported; build fp16 or fp32')
        shape = list(plan.calibration.shape)
        calibration_profile = builder.create_optimization_profile()
        _set_profile(calibration_profile, plan, network, (shape, shape, shape))
        config.set_calibration_profile(calibration_profile)
        calibrator = EntropyCalibrator(batches or iter(()), plan.calibration)
        config.int8_calibrator = calibrator
    start = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - start
    if serialized is None:
        raise BuildError(f'{plan.onnx_path}: TensorRT could not build an engine for this plan '
                         '(its log lines above say why)')
    if calibrator is not None:
        log.info('INT8 calibration used %d batch(es) of %d', calibrator.batches_used,
                 plan.calibration.batch_size if plan.calibration else 0)
    _save_timing_cache(plan, config)
    return BuiltEngine(
        serialized=bytes(memoryview(serialized)),
        inputs=[_tensor_info(network.get_input(i)) for i in range(network.num_inputs)],
        outputs=[_tensor_info(network.get_output(i)) for i in range(network.num_outputs)],
        build_seconds=seconds)
