"""The isaac_trt_perception node: parameters, publishers, the subscription and timers, wired to
the classes that do the work.

Threads: the executor thread only takes frames in (``latest_frame.LatestFrame``); a worker thread
converts, runs the detector and publishes (``processing.FrameProcessor``). Start-up is
``startup``, the safety state and ``/diagnostics`` verdict ``health``, the JSON files ``reporting``,
the serialized-message check ``cdr_check``.
"""

from __future__ import annotations

import sys
import time
from typing import Any

import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image
from std_msgs.msg import Header

from perception_core.cdr import DetectionArrays
from perception_core.detector import STAGES
from perception_core.metrics import Monitor
from perception_core.params import PARAMETERS, ParameterError, check_values, parse_cameras
from perception_core.qos import QosSpec

from . import qos, startup
from .cameras import Cameras
from .cdr_check import CdrCheck
from .health import Health
from .image_input import image_input
from .latest_frame import LatestFrame, LatestFrames
from .messages import label_info, vision_types
from .node_log import NodeLog, severity
from .processing import FrameProcessor
from .reporting import Reports
from .shutdown import StopRequest, init_ros, spin_until_stopped
from .startup import StartupError

DEFAULT_NAME = 'isaac_trt_perception'


class DetectionNode(Node):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DEFAULT_NAME, **kwargs)
        self.values = v = self._read_parameters()
        # Several instances may run from one YAML (-r __node:=cam_left, namespaces): each names
        # itself in its files, log lines and /diagnostics by its fully qualified name.
        fqn = self.get_fully_qualified_name()
        startup.instance_values(v, fqn)
        self.log = NodeLog(self.get_logger(), f'{DEFAULT_NAME}:{fqn}', v['logging.log_path'],
                           v['logging.level'], node=fqn)
        self.get_logger().set_level(severity(v['logging.level']))
        if v['ros_integration.node_name'] != self.get_name():
            # a renamed instance (one of several cameras) is intended, not a mistake: say it, no warning
            self.log.info(f'running as {fqn} (ros_integration.node_name is '
                          f'{v["ros_integration.node_name"]!r}; renamed by -r __node:= or not started by '
                          'the launch file)')
        platform = startup.check_platform(v, self.log)
        v['model.path'] = startup.model_path(v)
        self.detector, selection = startup.load_detector(v, len(platform.cores), self.log)
        startup.require_memory(v, platform)
        cores = startup.pin_cores(v)

        types = vision_types()
        classes = self.detector.bundle.classes
        # cdr.py's serialized path unless it disagrees with rclpy here; then rclpy's, for good
        check = CdrCheck.run(DetectionArrays(classes), types, classes)
        for warning in check.warnings():
            self.log.warn(warning)
        path = check.path(types, classes)
        self.monitor = Monitor(STAGES)
        profile = qos.profile(QosSpec.of(v))
        self.label_pub = self.create_publisher(types.LabelInfo, v['ros_integration.label_info_topic'],
                                               qos.latched())
        self.label_pub.publish(label_info(types, Header(stamp=self.get_clock().now().to_msg()), classes,
                                          self.detector.thresholds.score))
        debug_topic = v['ros_integration.debug_image_topic']
        debug_pub = self.create_publisher(Image, debug_topic, profile) if debug_topic else None
        self.diagnostics_pub = self.create_publisher(DiagnosticArray, '/diagnostics', 10)
        cameras = parse_cameras(v['ros_integration.cameras'])
        self.cameras: Cameras | None = None
        if cameras:  # several cameras, one batching worker (cameras.py)
            self.health = Health(v, platform, self.detector, selection, input_topic='', log=self.log,
                                 now=time.monotonic())
            self.cameras = Cameras(self, cameras, v, detector=self.detector, health=self.health,
                                   monitor=self.monitor, path=path, profile=profile,
                                   detection_type=types.Detection2DArray, debug_pub=debug_pub, log=self.log)
            self.latest: LatestFrame | LatestFrames = self.cameras.latest
            route = self.cameras.describe()
        else:
            source = image_input(v, path, self.log.warn)  # raw Image or image_transport's compressed
            # the names the topics really have here (namespace and -r remapping applied), for the logs
            input_topic = self.resolve_topic_name(source.topic)
            route = f'{input_topic} -> {self.resolve_topic_name(v["ros_integration.output_topic"])}'
            self.health = Health(v, platform, self.detector, selection, input_topic=input_topic,
                                 log=self.log, now=time.monotonic())
            detections_pub = self.create_publisher(types.Detection2DArray,
                                                   v['ros_integration.output_topic'], profile)
            processor = FrameProcessor(v, self.detector, self.health, self.monitor, path, source=source,
                                       input_topic=input_topic, detections_pub=detections_pub,
                                       debug_pub=debug_pub, clock=self.get_clock(), log=self.log)
            self.latest = LatestFrame(self.monitor, self.health.watchdog, self.health.rate,
                                      processor.process)
        self.reports = Reports(v, fqn, self.monitor, self.log)
        startup.warm_up(self.detector, v, path, self.log)
        if self.cameras is not None:
            self.cameras.start()  # the worker, then the subscriptions
        else:
            self.latest.start()
            self.create_subscription(source.message_type, source.topic, self.latest.take_in, profile,
                                     raw=source.raw)
        self.create_timer(v['logging.diagnostic_interval'], self._report)
        if v['safety.watchdog_timeout'] > 0:
            self.create_timer(min(1.0, v['safety.watchdog_timeout'] / 4), self._check_watchdog)
        self.add_on_set_parameters_callback(self._refuse_changes)
        spec = self.detector.bundle.input
        self.log.info(f'{route}: {len(classes)} classes, input {spec.width}x{spec.height} {spec.resize}, '
                      f'rate cap {v["runtime.inference_frequency"]:g} Hz, cores {cores}')

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

    def _refuse_changes(self, changed: list[Parameter]) -> SetParametersResult:
        ours = [p.name for p in changed if p.name in self.values]
        if ours:
            return SetParametersResult(successful=False, reason=f'{ours}: read at start only; restart '
                                       'the node (edit the deployment YAML) to change them')
        return SetParametersResult(successful=True)

    def _check_watchdog(self) -> None:
        if self.health.watchdog_changed(time.monotonic()):
            self._report()

    def _report(self) -> None:
        now = time.monotonic()
        document = self.monitor.document(now)
        state = self.health.state(now)
        result = self.health.diagnose(document, state)
        # name and hardware_id per instance: two cameras' detectors on one device are two statuses
        fqn = self.get_fully_qualified_name()
        status = DiagnosticStatus(level=bytes([result.level]), name=f'{fqn}: detector',
                                  message=result.message,
                                  hardware_id=f'{self.values["target_platform.model"]}:{fqn}',
                                  values=[KeyValue(key=k, value=val) for k, val in result.values.items()])
        cameras = self.cameras.statuses(fqn, self.health, now) if self.cameras is not None else []
        self.diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.get_clock().now().to_msg()),
                                                     status=[status, *cameras]))
        self.reports.write(document, state)

    def close(self) -> None:
        """Stop the worker and write the profile and monitoring files one last time."""
        self.latest.stop()
        now = time.monotonic()
        self.reports.write(self.monitor.document(now), self.health.state(now))
        self.detector.backend.close()
        self.log.close()


def fast_executor(context: Context | None = None) -> Executor:
    """rclpy's C++ EventsExecutor where there is one (Kilted has it), else the Python one.

    A frame's hand-off to the worker waits for the executor thread to give up the GIL; the Python
    executor does more Python bookkeeping per callback first, the C++ one next to none.
    """
    try:
        from rclpy.experimental import EventsExecutor
    except ImportError:  # Humble
        return SingleThreadedExecutor(context=context)
    return EventsExecutor(context=context)


def main(args: list[str] | None = None) -> int:
    stop = StopRequest()  # first thing: a Ctrl-C during rclpy.init is a stop request too
    try:
        return _run(stop, args)
    finally:
        # also through the interpreter's exit, where a second Ctrl-C used to kill it (exit code -2)
        stop.ignore_further()


def _run(stop: StopRequest, args: list[str] | None) -> int:
    """Start, spin until SIGINT/SIGTERM (or an external shutdown), clean up; the exit code."""
    node = None
    failure = ''  # the start-up error's message; the error itself would keep the half-built node
    try:
        with stop.interruptible():  # Ctrl-C still ends a long start-up (an engine build)
            init_ros(args)
            node = DetectionNode()
    except KeyboardInterrupt:
        pass  # the first signal; if the node is whole (it came as start-up ended), clean up below
    except Exception as exc:
        # A signal raises wherever start-up is, and a library may turn it into an error of its own
        # (an import's "initialization failed"): once a signal came, that is the cause.
        if not (stop.requested or isinstance(exc, StartupError)):
            raise
        failure = str(exc)
    if node is None:
        stop.ignore_further()
        logger = rclpy.logging.get_logger(DEFAULT_NAME)
        if stop.requested:
            logger.info(f'{stop.name} during start-up: stopping' + (f' ({failure})' if failure else ''))
        else:
            logger.fatal(failure)
        rclpy.try_shutdown()
        return 0 if stop.requested else 2
    executor = fast_executor()
    executor.add_node(node)
    try:
        spin_until_stopped(executor, stop)
    finally:
        # launch's own SIGINT (then SIGTERM) follows the terminal's into this cleanup: ignored, so
        # the final files are written and the backend closed whatever arrives now
        stop.ignore_further()
        node.close()
        executor.shutdown()
        node.destroy_node()
        rclpy.try_shutdown()
    return 0


if __name__ == '__main__':
    sys.exit(main())
