"""The isaac_trt_perception node: the rclpy glue around the pure pipeline.

Threads: the executor thread only takes frames in (counts, watchdog, rate cap) and keeps the
newest one; a worker thread converts, runs the detector and publishes. Frames come in and
detections go out serialized (``cdr.py``): rclpy's per-field conversion was a third of the
node's own time per frame. A frame arriving while
the worker is busy replaces the waiting one (counted as dropped), so the node never queues and
always processes the newest frame.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import rclpy
from builtin_interfaces.msg import Time
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
from rclpy.logging import LoggingSeverity
from rclpy.node import Node
from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy
from rclpy.serialization import serialize_message
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from perception_core import diagnostics, resources
from perception_core.atomic import write_json
from perception_core.backends import BackendOptions, EngineUnusable
from perception_core.backends.gpu import used_gpu_memory
from perception_core.backends.select import NoBackend, model_file
from perception_core.bundle import BundleError
from perception_core.cdr import DetectionArrays, read_image
from perception_core.cdr import Header as FrameHeader
from perception_core.convert import ENCODINGS, ImageError, frame_from_fields
from perception_core.debug_image import draw_detections
from perception_core.detector import STAGES, open_detector
from perception_core.metrics import Monitor
from perception_core.params import (
    PARAMETERS,
    ParameterError,
    check_values,
    parse_memory_size,
    parse_warmup_images,
)
from perception_core.safety import Fallback, RateLimiter, Watchdog

from .messages import label_info, vision_types

DEFAULT_NAME = 'isaac_trt_perception'
ERROR_LOG_PERIOD_S = 5.0  # one error line per kind of failure per period; the rest are counted
SEVERITIES = {'DEBUG': LoggingSeverity.DEBUG, 'INFO': LoggingSeverity.INFO, 'WARN': LoggingSeverity.WARN,
              'WARNING': LoggingSeverity.WARN, 'ERROR': LoggingSeverity.ERROR, 'FATAL': LoggingSeverity.FATAL}
RELIABILITY = {'best_effort': ReliabilityPolicy.BEST_EFFORT, 'reliable': ReliabilityPolicy.RELIABLE,
               'system_default': ReliabilityPolicy.SYSTEM_DEFAULT}
DURABILITY = {'volatile': DurabilityPolicy.VOLATILE, 'transient_local': DurabilityPolicy.TRANSIENT_LOCAL,
              'system_default': DurabilityPolicy.SYSTEM_DEFAULT}
HISTORY = {'keep_last': HistoryPolicy.KEEP_LAST, 'keep_all': HistoryPolicy.KEEP_ALL,
           'system_default': HistoryPolicy.SYSTEM_DEFAULT}


class StartupError(RuntimeError):
    """The node cannot start; the message says which parameter or file and why."""


class NodeLog:
    """The ROS logger, mirrored to ``logging.log_path``, with per-kind throttling of errors."""

    def __init__(self, ros_logger: Any, path: str, level: str) -> None:
        self.ros = ros_logger
        self.file = logging.getLogger(DEFAULT_NAME)
        self.file.propagate = False
        self.file.setLevel(logging.DEBUG)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(path)
            handler.setFormatter(logging.Formatter('%(asctime)s %(levelname)s %(message)s'))
            handler.setLevel(logging.DEBUG if level == 'DEBUG' else logging.INFO)
            self.file.addHandler(handler)
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def debug(self, message: str) -> None:
        self.ros.debug(message)
        self.file.debug(message)

    def info(self, message: str) -> None:
        self.ros.info(message)
        self.file.info(message)

    def warn(self, message: str) -> None:
        self.ros.warning(message)
        self.file.warning(message)

    def error(self, message: str) -> None:
        self.ros.error(message)
        self.file.error(message)

    def throttled(self, kind: str, message: str, now: float, level: str = 'error') -> None:
        """``message`` at ``level`` (a method of this class), once per kind per period."""
        if now - self._last.get(kind, -1e9) < ERROR_LOG_PERIOD_S:
            self._suppressed[kind] = self._suppressed.get(kind, 0) + 1
            return
        self._last[kind] = now
        more = self._suppressed.pop(kind, 0)
        getattr(self, level)(message + (f' ({more} more like it not logged)' if more else ''))

    def close(self) -> None:
        for handler in list(self.file.handlers):
            handler.close()
            self.file.removeHandler(handler)


def qos_from(values: dict[str, Any]) -> QoSProfile:
    prefix = 'ros_integration.qos_profile.'
    return QoSProfile(reliability=RELIABILITY[values[prefix + 'reliability']],
                      durability=DURABILITY[values[prefix + 'durability']],
                      history=HISTORY[values[prefix + 'history']], depth=values[prefix + 'depth'])


class DetectionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DEFAULT_NAME, **kwargs)
        self.values = self._read_parameters()
        v = self.values
        self.log = NodeLog(self.get_logger(), v['logging.log_path'], v['logging.level'])
        self.get_logger().set_level(SEVERITIES[v['logging.level']])
        if v['ros_integration.node_name'] != self.get_name():
            self.log.warn(f'ros_integration.node_name is {v["ros_integration.node_name"]!r} but this node '
                          f'runs as {self.get_name()!r} (start it with -r __node:=NAME or the launch file)')
        self.memory_limit = parse_memory_size(v['resources.memory_limit'])
        cores, dropped = resources.apply_cpu_affinity(v['resources.cpu_affinity'])
        if dropped:
            self.log.warn(f'resources.cpu_affinity: cores {dropped} do not exist here; using {cores}')
        resources.prefer_as_oom_victim()
        self.power_mode = resources.read_power_mode()
        if self.power_mode is None:
            self.log.warn(f'resources.power_mode {v["resources.power_mode"]!r} not checked: not a Jetson '
                          '(or nvpmodel missing)')
        elif self.power_mode != v['resources.power_mode']:
            self.log.warn(f'resources.power_mode is {v["resources.power_mode"]!r} but the Jetson runs '
                          f'{self.power_mode!r} (sudo nvpmodel -m N to change it)')
        if v['model.batch_size'] > 1:
            self.log.warn(f'model.batch_size {v["model.batch_size"]}: the node runs the newest single frame; '
                          'using 1')

        self.detector, selection = self._open_detector(len(cores))
        bundle = self.detector.bundle
        self.backend_failures = tuple(selection.failures)
        for name, reason in selection.failures:
            self.log.error(f'backend {name} failed to load: {reason}')
        self.log.info(f'backend {selection.backend.name}: {selection.backend.description}; '
                      + (f'requested {selection.requested} ({selection.reason}), fell back'
                         if selection.fell_back else f'chosen because {selection.reason}'))
        rss = resources.rss_bytes()
        if rss > self.memory_limit:
            raise StartupError(f'resources.memory_limit {v["resources.memory_limit"]}: the node needs '
                               f'{rss / 1e6:.0f} MB resident with this model and backend already')
        cores, _ = resources.apply_cpu_affinity(v['resources.cpu_affinity'])  # the backend's threads too

        self.types = vision_types()
        self.classes = bundle.classes
        self.detection_arrays = DetectionArrays(self.classes)
        self.frame_id = v['ros_integration.frame_id_override']
        self.monitor = Monitor(STAGES)
        now = time.monotonic()
        self.watchdog = Watchdog(v['safety.watchdog_timeout'], now)
        self.fallback = Fallback(v['safety.max_inference_time'], v['safety.fallback_behavior'],
                                 v['safety.overrun_limit'], v['runtime.inference_frequency'])
        self.rate = RateLimiter(self.fallback.rate_hz)
        self._errors_reported = 0
        self._watchdog_level = Watchdog.OK

        qos = qos_from(v)
        self.detections_pub = self.create_publisher(self.types.Detection2DArray,
                                                    v['ros_integration.output_topic'], qos)
        latched = QoSProfile(depth=1, reliability=ReliabilityPolicy.RELIABLE,
                             durability=DurabilityPolicy.TRANSIENT_LOCAL)
        self.label_pub = self.create_publisher(self.types.LabelInfo, v['ros_integration.label_info_topic'],
                                               latched)
        self.label_pub.publish(label_info(self.types, Header(stamp=self.get_clock().now().to_msg()),
                                          self.classes, self.detector.thresholds.score))
        debug_topic = v['ros_integration.debug_image_topic']
        self.debug_pub = self.create_publisher(Image, debug_topic, qos) if debug_topic else None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)

        self._last_size: tuple[int, int, str] | None = None  # the last processed frame's, for _note_new_size
        self._pending: tuple[bytes, float, float] | None = None  # frame, receipt (monotonic, perf_counter)
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name='detector', daemon=True)
        self._warm_up()
        self._worker.start()
        self.create_subscription(Image, v['ros_integration.input_topic'], self._on_image, qos, raw=True)
        self.create_timer(v['logging.diagnostic_interval'], self._report)
        if v['safety.watchdog_timeout'] > 0:
            self.create_timer(min(1.0, v['safety.watchdog_timeout'] / 4), self._check_watchdog)
        self.add_on_set_parameters_callback(self._refuse_changes)
        self.log.info(f'{v["ros_integration.input_topic"]} -> {v["ros_integration.output_topic"]}: '
                      f'{len(self.classes)} classes, input {bundle.input.width}x{bundle.input.height} '
                      f'{bundle.input.resize}, rate cap {v["runtime.inference_frequency"]:g} Hz, '
                      f'cores {cores}')

    # --- start-up -----------------------------------------------------------------------------
    def _read_parameters(self) -> dict[str, Any]:
        for p in PARAMETERS:
            self.declare_parameter(p.name, p.default, ParameterDescriptor(
                description=p.description, dynamic_typing=True))
        # rclpy keeps params-file values of undeclared names aside; any left is a typo or a stale key.
        overrides = getattr(self, '_parameter_overrides', {})
        unknown = sorted(n for n in overrides
                         if not self.has_parameter(n) and not n.startswith('qos_overrides.'))
        if unknown:
            raise StartupError(f'unknown parameter(s) {unknown}: not keys of the deployment YAML '
                               '(see the README parameter table)')
        try:
            return check_values({p.name: self.get_parameter(p.name).value for p in PARAMETERS})
        except ParameterError as exc:
            raise StartupError(f'parameter {exc}') from exc

    def _open_detector(self, threads: int) -> tuple[Any, Any]:
        v = self.values
        path = Path(v['model.path'])
        options = BackendOptions(
            precision=v['model.precision'], gpu_usage=v['resources.gpu_usage'], threads=threads,
            compute_capability=v['target_platform.compute_capability'],
            max_batch_size=v['performance.max_batch_size'])
        try:
            detector, selection = open_detector(
                path, v['model.backend'], options, score=v['detection.score_threshold'],
                nms_iou=v['detection.nms_iou_threshold'], max_detections=v['detection.max_detections'])
            engine_error = selection.errors.get('tensorrt')
            if isinstance(engine_error, EngineUnusable) and self._build_engine(detector.bundle, engine_error):
                detector, selection = open_detector(
                    path, v['model.backend'], options, score=v['detection.score_threshold'],
                    nms_iou=v['detection.nms_iou_threshold'], max_detections=v['detection.max_detections'])
        except (BundleError, NoBackend) as exc:
            raise StartupError(f'model.path {path}: {exc}') from exc
        shape = list(detector.bundle.input.shape(1))
        if list(v['model.input_shape'][1:]) != shape[1:]:
            raise StartupError(f'model.input_shape {v["model.input_shape"]} does not match the bundle\'s '
                               f'model.json input {shape} ({detector.bundle.directory})')
        return detector, selection

    def _build_engine(self, bundle: Any, error: EngineUnusable) -> bool:
        """Build the engine when model.build_on_start (missing) or model.rebuild_on_mismatch (unfit)
        asks for it; False (and the fallback backend stays) when not asked or the build fails."""
        key = 'model.build_on_start' if error.missing else 'model.rebuild_on_mismatch'
        if not self.values[key]:
            return False
        engine = model_file('tensorrt', Path(self.values['model.path']), bundle)
        self.log.info(f'{key}: building {engine} from {bundle.onnx_path} (this takes minutes)')
        try:
            from perception_engine_builder.build import build_engine
            result = build_engine(dict(self.values), bundle.directory, engine)
        except Exception as exc:  # the builder raises many kinds; each names its cause
            self.log.error(f'{key}: engine build failed, staying on the fallback backend: '
                           f'{type(exc).__name__}: {exc}')
            return False
        self.log.info(f'{key}: built and verified {result.engine_path}')
        return True

    def _warm_up(self) -> None:
        """A frame through everything at the network's size and at each runtime.warmup_images
        size, so the first camera frame is not the slow one (torch_cuda captures a CUDA graph per
        image size and channel order)."""
        spec = self.detector.bundle.input
        images = [(spec.width, spec.height, 'rgb8'),
                  *parse_warmup_images(self.values['runtime.warmup_images'])]
        for width, height, encoding in images:
            step = width * ENCODINGS[encoding][0]
            warm = serialize_message(Image(height=height, width=width, encoding=encoding, step=step,
                                           data=bytes([200]) * (step * height)))
            start = time.perf_counter()
            try:
                header, fields = read_image(warm)
                detections, _ = self.detector.detect(frame_from_fields(**fields))
            except Exception as exc:  # e.g. no GPU memory left for one more size: that size is slow later
                self.log.error(f'runtime.warmup_images: warming up for {width}x{height} {encoding} failed, '
                               f'its first camera frame will pay instead: {type(exc).__name__}: {exc}')
                continue
            self.detection_arrays(header, detections)
            self.log.info(f'warmed up for {width}x{height} {encoding} in {time.perf_counter() - start:.2f} s')

    def _refuse_changes(self, changed: list[Any]) -> SetParametersResult:
        ours = [p.name for p in changed if p.name in self.values]
        if ours:
            return SetParametersResult(successful=False, reason=f'{ours}: read at start only; restart '
                                       'the node (edit the deployment YAML) to change them')
        return SetParametersResult(successful=True)

    # --- frames in (executor thread) ------------------------------------------------------------
    def _on_image(self, msg: bytes) -> None:
        now = time.monotonic()
        self.monitor.received.tick(now)
        self.watchdog.feed(now)
        if not self.rate.admit(now):
            self.monitor.drops['rate_cap'] += 1
            return
        with self._wake:
            if self._pending is not None:
                self.monitor.drops['newer_frame'] += 1
            self._pending = (msg, now, time.perf_counter())
            self._wake.notify()

    # --- processing (worker thread) -------------------------------------------------------------
    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while self._pending is None and not self._stopping.is_set():
                    self._wake.wait(0.5)
                item, self._pending = self._pending, None
            if item is not None:
                self._process(*item)

    def _describe(self, header: FrameHeader | None) -> str:
        topic = self.values['ros_integration.input_topic']
        if header is None:
            return f'{topic} message'
        return f'{topic} frame {header.frame_id!r} stamp {header.sec}.{header.nanosec:09d}'

    def _process(self, msg: bytes, received: float, handed_off: float) -> None:
        start = time.perf_counter()
        header: FrameHeader | None = None
        try:
            header, fields = read_image(msg)
            frame = frame_from_fields(**fields)
        except ImageError as exc:
            self.monitor.errors['bad_image'] += 1
            self.log.throttled(f'bad_image.{exc.field}', f'{self._describe(header)} skipped: {exc}',
                               time.monotonic())
            return
        converted = time.perf_counter()
        try:
            detections, timings = self.detector.detect(frame)
        except Exception as exc:  # a backend failing on one frame must not take the node down
            self.monitor.errors['backend'] += 1
            self.log.throttled('backend', f'{self._describe(header)}: {self.detector.backend.name} '
                               f'failed on this frame, skipped: {type(exc).__name__}: {exc}',
                               time.monotonic())
            return
        event = self.fallback.record(timings['infer'])
        if event is not None:
            self._on_fallback(event)
        self._note_new_size(frame, timings['infer'])
        if self.frame_id:
            header = FrameHeader(header.sec, header.nanosec, self.frame_id)
        published = time.perf_counter()
        self.detections_pub.publish(self.detection_arrays(header, detections))
        done = time.perf_counter()
        timings.update(handoff=start - handed_off, convert=converted - start, publish=done - published)
        self.monitor.profile.add(timings)
        self.monitor.published.tick(time.monotonic())
        self.monitor.latency.add(time.monotonic() - received)
        if header.stamp_ns > 0:
            self.monitor.age.add((self.get_clock().now().nanoseconds - header.stamp_ns) * 1e-9)
        if self.debug_pub is not None:
            pixels, encoding = draw_detections(frame, detections, self.classes)
            stamped = Header(stamp=Time(sec=header.sec, nanosec=header.nanosec), frame_id=header.frame_id)
            self.debug_pub.publish(Image(header=stamped, height=frame.height, width=frame.width,
                                         encoding=encoding, step=frame.width * 3, data=pixels.tobytes()))
        if self.values['logging.enable_detailed_logging']:
            stages = ' '.join(f'{k}={s * 1e3:.2f}ms' for k, s in timings.items())
            self.log.debug(f'{self._describe(header)}: {len(detections)} detections; {stages}')

    def _note_new_size(self, frame: Any, infer_s: float) -> None:
        """A slow first frame at a new image size says how to move that cost to the start: torch_cuda
        captures a CUDA graph per image size (1.6-2.2 s on an H100), and the newest-frame policy
        drops every frame that arrives meanwhile."""
        size = (frame.width, frame.height, frame.encoding)
        if size == self._last_size:
            return
        self._last_size = size
        if infer_s > self.values['safety.max_inference_time']:
            image = f'{frame.width}x{frame.height} {frame.encoding}'
            self.log.throttled('new_size', f'the first {image} frame took {infer_s * 1e3:.0f} ms in '
                               f'{self.detector.backend.name}, over safety.max_inference_time: if it is the '
                               f'camera\'s size, list "{image}" in runtime.warmup_images to set it up at '
                               'start instead', time.monotonic(), level='warn')

    def _on_fallback(self, event: Any) -> None:
        self.rate.set_rate(self.fallback.rate_hz)
        deadline = self.values['safety.max_inference_time']
        if event.kind == 'degraded':
            self.log.warn(f'inference over safety.max_inference_time {deadline} s for '
                          f'{self.fallback.limit} frames: degraded, processing at {event.rate_hz:g} Hz')
        elif event.kind == 'overrun':
            self.log.warn(f'inference over safety.max_inference_time {deadline} s for '
                          f'{self.fallback.limit} frames ({self.fallback.overruns} overruns so far)')
        else:
            rate = f'{event.rate_hz:g} Hz' if event.rate_hz else 'every frame'
            self.log.info(f'inference on time again: {event.kind}, processing at {rate}')

    # --- reporting (executor thread) -------------------------------------------------------------
    def _check_watchdog(self) -> None:
        level = self.watchdog.level(time.monotonic())
        if level == self._watchdog_level:
            return
        age = self.watchdog.age(time.monotonic())
        topic = self.values['ros_integration.input_topic']
        if level == Watchdog.OK:
            self.log.info(f'{topic}: images arriving again')
        elif level == Watchdog.WARN:
            self.log.warn(f'{topic}: no image for {age:.1f} s (safety.watchdog_timeout '
                          f'{self.watchdog.timeout_s} s)')
        else:
            self.log.error(f'{topic}: no image for {age:.1f} s; is the camera running?')
        self._watchdog_level = level
        self._report()

    def _state(self, now: float) -> diagnostics.State:
        rss = resources.rss_bytes()
        gpu = self.detector.backend.gpu_memory_bytes()
        gpu = gpu if gpu is not None else used_gpu_memory()
        return diagnostics.State(
            backend=f'{self.detector.backend.name}: {self.detector.backend.description}',
            backend_failures=self.backend_failures, watchdog_level=self.watchdog.level(now),
            input_age_s=self.watchdog.age(now), input_topic=self.values['ros_integration.input_topic'],
            degraded=self.fallback.degraded, processing_rate_hz=self.fallback.rate_hz,
            overruns=self.fallback.overruns, memory_over=rss > self.memory_limit, rss_bytes=rss,
            memory_limit_bytes=self.memory_limit, gpu_memory_bytes=gpu,
            power_mode=self.power_mode)

    def _guard_memory(self, state: diagnostics.State) -> None:
        if state.memory_over != self.fallback.memory_over:
            self.fallback.memory_over = state.memory_over
            self.rate.set_rate(self.fallback.rate_hz)
            if state.memory_over:
                self.log.error(f'resident memory {state.rss_bytes / 1e6:.0f} MB over resources.memory_limit '
                               f'{self.values["resources.memory_limit"]}: degraded to '
                               f'{self.fallback.rate_hz:g} Hz')
            else:
                self.log.info('resident memory back under resources.memory_limit')

    def _report(self) -> None:
        now = time.monotonic()
        document = self.monitor.document(now)
        state = self._state(now)
        self._guard_memory(state)
        errors = document['errors_total']
        result = diagnostics.health(document, state, errors - self._errors_reported)
        self._errors_reported = errors
        status = DiagnosticStatus(level=bytes([result.level]), name=f'{self.get_name()}: detector',
                                  message=result.message, hardware_id=self.values['target_platform.model'],
                                  values=[KeyValue(key=k, value=val) for k, val in result.values.items()])
        self.diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                     status=[status]))
        self._write_files(document, state)

    def _write_files(self, document: dict[str, Any], state: diagnostics.State) -> None:
        v = self.values
        try:
            if v['runtime.enable_profiling']:
                write_json(v['runtime.profile_output_path'], {
                    'node': self.get_name(), 'backend': state.backend, 'wall_time': time.time(),
                    'stages': self.monitor.profile.document()})
            if v['runtime.enable_monitoring']:
                write_json(v['runtime.monitoring_output_path'], {
                    'node': self.get_name(), 'backend': state.backend, 'wall_time': time.time(), **document,
                    'degraded': state.degraded, 'processing_rate_hz': state.processing_rate_hz,
                    'overruns': state.overruns, 'gpu_memory_bytes': state.gpu_memory_bytes,
                    'memory_limit_bytes': state.memory_limit_bytes, 'power_mode': state.power_mode})
        except OSError as exc:
            self.log.throttled('metrics_file', f'cannot write metrics: {exc}', time.monotonic())

    def close(self) -> None:
        """Stop the worker and write the profile and monitoring files one last time."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        self._worker.join(timeout=5.0)
        self._write_files(self.monitor.document(time.monotonic()), self._state(time.monotonic()))
        self.detector.backend.close()
        self.log.close()


def fast_executor(context: Any = None) -> Any:
    """rclpy's C++ EventsExecutor where there is one (Kilted has it), else the Python one.

    A frame's hand-off to the worker waits for the executor thread to give up the GIL; the Python
    executor does ~0.3 ms of Python bookkeeping per callback first, the C++ one next to none.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # Humble
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def main(args: list[str] | None = None) -> int:
    rclpy.init(args=args)
    try:
        node = DetectionNode()
    except StartupError as exc:
        rclpy.logging.get_logger(DEFAULT_NAME).fatal(str(exc))
        rclpy.try_shutdown()
        return 2
    executor = fast_executor()
    executor.add_node(node)
    try:
        # spin_once in a loop, not spin(): the EventsExecutor's spin() misses the SIGINT shutdown
        while rclpy.ok():
            executor.spin_once(timeout_sec=0.5)
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    finally:
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
