"""Start-up work: the deployment's resource keys, opening the detector (building the TensorRT
engine first when the deployment asks for it), and warming the pipeline up."""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image

from perception_core import resources
from perception_core.backends import BackendOptions, EngineUnusable
from perception_core.backends.select import ENGINE_SUFFIXES, NoBackend, Selection, model_file
from perception_core.bundle import MODEL_JSON, Bundle, BundleError
from perception_core.convert import ENCODINGS, frame_from_fields
from perception_core.deployment import PACKAGE_SCHEME, resolve_model_path
from perception_core.detector import Detector, open_detector
from perception_core.params import INSTANCE_PATHS, instance_path, parse_memory_size, parse_warmup_images

from .cdr_check import MessagePath
from .node_log import NodeLog

Values = Mapping[str, Any]  # the checked deployment parameters by dotted name


class StartupError(RuntimeError):
    """The node cannot start; the message says which parameter or file and why."""


@dataclass(frozen=True)
class Platform:
    """What the node found out about the machine before loading the model."""
    cores: list[int]             # the cores of resources.cpu_affinity this machine has
    memory_limit: int            # resources.memory_limit in bytes
    power_mode: str | None       # the Jetson's active power mode; None off a Jetson


def instance_values(values: dict[str, Any], fully_qualified_name: str) -> None:
    """Fill in the output paths' {node}/{name}/{namespace} for this node, in place, so every
    instance started from one YAML writes files of its own."""
    for key in INSTANCE_PATHS:
        values[key] = instance_path(values[key], fully_qualified_name)


def model_path(values: Values) -> str:
    """model.path as a file that exists: a params file written by perception-params holds it
    absolute already; the parameter's own default (no params file, or one for another node) is a
    package:// path, resolved here the same way. A missing engine in an existing bundle is fine
    (model.build_on_start builds it, else the fallback chain runs)."""
    value = str(values['model.path'])
    try:
        path = resolve_model_path(value, Path.cwd())
    except ValueError as exc:
        raise StartupError(f'model.path not resolved: {exc}') from exc
    shown = f'{path} (from {value})' if value.startswith(PACKAGE_SCHEME) else str(path)
    if not path.exists():
        engine_to_come = (path.suffix.lower() in ENGINE_SUFFIXES
                          and (path.parent / MODEL_JSON).is_file())
        if not engine_to_come:
            raise StartupError(f'model.path {shown} does not exist')
    return str(path)


def check_platform(values: Values, log: NodeLog) -> Platform:
    """Compare the machine with the deployment's resource keys and warn where it differs."""
    cores, dropped = resources.usable_cores(values['resources.cpu_affinity'])
    if dropped:
        log.warn(f'resources.cpu_affinity: cores {dropped} do not exist here; using {cores}')
    resources.prefer_as_oom_victim()
    power_mode = resources.read_power_mode()
    if power_mode is None:
        log.warn(f'resources.power_mode {values["resources.power_mode"]!r} not checked: not a Jetson '
                 '(or nvpmodel missing)')
    elif power_mode != values['resources.power_mode']:
        log.warn(f'resources.power_mode is {values["resources.power_mode"]!r} but the Jetson runs '
                 f'{power_mode!r} (sudo nvpmodel -m N to change it)')
    if values['model.batch_size'] > 1:
        log.warn(f'model.batch_size {values["model.batch_size"]}: the node runs the newest single frame; '
                 'using 1')
    return Platform(cores, parse_memory_size(values['resources.memory_limit']), power_mode)


def require_memory(values: Values, platform: Platform) -> None:
    """Refuse to run a model and backend that already take more than resources.memory_limit."""
    rss = resources.rss_bytes()
    if rss > platform.memory_limit:
        raise StartupError(f'resources.memory_limit {values["resources.memory_limit"]}: the node needs '
                           f'{rss / 1e6:.0f} MB resident with this model and backend already')


def pin_cores(values: Values) -> list[int]:
    """Pin every thread of the node to resources.cpu_affinity: the one place the node's cores are
    set (the launch file adds no prefix). Called once the backend is loaded, so its thread pool is
    pinned too even where it set its own affinity; threads started later inherit it."""
    cores, _ = resources.apply_cpu_affinity(values['resources.cpu_affinity'])
    return cores


def load_detector(values: Values, threads: int, log: NodeLog) -> tuple[Detector, Selection]:
    """The detector for model.path, with the engine built first where the deployment asks for it."""
    path = Path(values['model.path'])
    options = BackendOptions(
        precision=values['model.precision'], gpu_usage=values['resources.gpu_usage'], threads=threads,
        compute_capability=values['target_platform.compute_capability'],
        max_batch_size=values['performance.max_batch_size'])

    def opened() -> tuple[Detector, Selection]:
        return open_detector(
            path, values['model.backend'], options, score=values['detection.score_threshold'],
            nms_iou=values['detection.nms_iou_threshold'], max_detections=values['detection.max_detections'])

    try:
        detector, selection = opened()
        engine_error = selection.errors.get('tensorrt')
        if isinstance(engine_error, EngineUnusable) and build_engine(values, detector.bundle, engine_error,
                                                                     log):
            detector, selection = opened()
    except (BundleError, NoBackend) as exc:
        raise StartupError(f'model.path {path}: {exc}') from exc
    shape = list(detector.bundle.input.shape(1))
    if list(values['model.input_shape'][1:]) != shape[1:]:
        raise StartupError(f'model.input_shape {values["model.input_shape"]} does not match the bundle\'s '
                           f'model.json input {shape} ({detector.bundle.directory})')
    for name, reason in selection.failures:
        log.error(f'backend {name} failed to load: {reason}')
    log.info(f'backend {selection.backend.name}: {selection.backend.description}; '
             + (f'requested {selection.requested} ({selection.reason}), fell back'
                if selection.fell_back else f'chosen because {selection.reason}'))
    return detector, selection


def build_engine(values: Values, bundle: Bundle, error: EngineUnusable, log: NodeLog) -> bool:
    """Build the engine when model.build_on_start (missing) or model.rebuild_on_mismatch (unfit)
    asks for it; False (and the fallback backend stays) when not asked or the build fails."""
    key = 'model.build_on_start' if error.missing else 'model.rebuild_on_mismatch'
    if not values[key]:
        return False
    engine = model_file('tensorrt', Path(values['model.path']), bundle)
    log.info(f'{key}: building {engine} from {bundle.onnx_path} (this takes minutes)')
    try:
        # imported here: only a start that builds pays for loading the builder
        from perception_core.engine.build import build_engine as build
        result = build(dict(values), bundle.directory, engine)
    except Exception as exc:  # the builder raises many kinds; each names its cause
        log.error(f'{key}: engine build failed, staying on the fallback backend: '
                  f'{type(exc).__name__}: {exc}')
        return False
    log.info(f'{key}: built and verified {result.engine_path}')
    return True


def warm_up(detector: Detector, values: Values, path: MessagePath, log: NodeLog, cameras: int = 1) -> None:
    """A frame through everything (in the form the subscription delivers it)
    at the network's size and at each runtime.warmup_images size, so the first camera frame is not
    the slow one (torch_cuda captures a CUDA graph per image size and channel order). With several
    ``cameras``, also every batch size they can make (2 .. the batch limit) of each such image: the
    first batch of synchronised cameras is not the slow one either (a graph per batch's shapes, ONNX
    Runtime's buffers per batch size)."""
    spec = detector.bundle.input
    images = [(spec.width, spec.height, 'rgb8'), *parse_warmup_images(values['runtime.warmup_images'])]
    largest = min(cameras, detector.backend.batch_limit, int(values['performance.max_batch_size']))
    for width, height, encoding in images:
        step = width * ENCODINGS[encoding][0]
        image = Image(height=height, width=width, encoding=encoding, step=step,
                      data=bytes([200]) * (step * height))
        start = time.perf_counter()
        try:
            header, fields = path.read(serialize_message(image) if path.raw else image)
            frame = frame_from_fields(**fields)
            detections, _ = detector.detect(frame)
            for batch in range(2, largest + 1):
                detector.detect_batch([frame] * batch)
        except Exception as exc:  # e.g. no GPU memory left for one more size: that size is slow later
            log.error(f'runtime.warmup_images: warming up for {width}x{height} {encoding} failed, '
                      f'its first camera frame will pay instead: {type(exc).__name__}: {exc}')
            continue
        path.write(header, detections)
        batches = f' (and batches of {"2" if largest == 2 else f"2-{largest}"})' if largest > 1 else ''
        log.info(f'warmed up for {width}x{height} {encoding}{batches} in {time.perf_counter() - start:.2f} s')
