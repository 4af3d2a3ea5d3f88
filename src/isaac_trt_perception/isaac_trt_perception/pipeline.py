"""What the detector node builds on its ROS node, in the lifecycle's steps: ``node.DetectionNode``
runs them all in its constructor, ``lifecycle.DetectionLifecycleNode`` one per transition.

- ``declare``: the parameters (so a params file's values are known from construction on).
- ``configure``: parameters read and checked, the machine checked, the detector loaded (its engine
  built where the YAML asks), the CDR check, publishers, the hand-off to the worker (``LatestFrame``,
  or ``Cameras`` for several cameras), the warm-up.
- ``activate``: the worker started (once), the subscription(s) and the timers; then frames are answered.
- ``deactivate``: subscriptions and timers gone; model, publishers and the (idle) worker kept, so
  activating again answers at once. The subscriptions are parked and made again from what they were,
  so the cameras' own wiring (``Cameras.start``) stays the only one. The input watchdog is not reset:
  after a long pause the first report may say "no image" until frames come.
- ``cleanup``: worker stopped, final files written, backend closed, publishers destroyed.
"""

from __future__ import annotations

import time
from typing import Any

from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus, KeyValue
from rcl_interfaces.msg import ParameterDescriptor, SetParametersResult
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
from .startup import StartupError

DEFAULT_NAME = 'isaac_trt_perception'


class DetectionPipeline:
    """The detector's parts on ``node``; ``configured`` and ``active`` say how far it is built."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.configured = self.active = False
        self.values: dict[str, Any] = {}
        self.log: NodeLog | None = None
        self._publishers_before: set[Any] = set()  # the node's own (parameter events, rosout)
        self._timers: list[Any] = []
        self._subscriptions: list[Any] = []
        self._parked: list[tuple[Any, ...]] = []  # (type, topic, callback, qos, raw) while inactive

    def declare(self) -> None:
        for p in PARAMETERS:
            self.node.declare_parameter(p.name, p.default, ParameterDescriptor(
                description=p.description, dynamic_typing=True))
        self.node.add_on_set_parameters_callback(self._refuse_changes)

    def _read_parameters(self) -> dict[str, Any]:
        node = self.node
        # rclpy keeps params-file values of undeclared names aside; any left is a typo or a stale key.
        overrides = getattr(node, '_parameter_overrides', {})
        unknown = sorted(n for n in overrides
                         if not node.has_parameter(n) and not n.startswith('qos_overrides.'))
        if unknown:
            raise StartupError(f'unknown parameter(s) {unknown}: not keys of the deployment YAML '
                               '(see the README parameter table)')
        try:
            return check_values({p.name: node.get_parameter(p.name).value for p in PARAMETERS})
        except ParameterError as exc:
            raise StartupError(f'parameter {exc}') from exc

    def _refuse_changes(self, changed: list[Parameter]) -> SetParametersResult:
        # read at configure: a lifecycle node takes new values while unconfigured, for its next configure
        ours = [p.name for p in changed if p.name in self.values]
        if ours and self.configured:
            return SetParametersResult(successful=False, reason=f'{ours}: read at start only; restart '
                                       'the node (edit the deployment YAML) to change them')
        return SetParametersResult(successful=True)

    def configure(self) -> None:
        """Everything up to answering frames; StartupError naming the key or file on failure (what
        was built by then stays for ``release``)."""
        node = self.node
        self._publishers_before = set(node.publishers)
        self.values = v = self._read_parameters()
        # Several instances may run from one YAML (-r __node:=cam_left, namespaces): each names
        # itself in its files, log lines and /diagnostics by its fully qualified name.
        fqn = node.get_fully_qualified_name()
        startup.instance_values(v, fqn)
        self.log = NodeLog(node.get_logger(), f'{DEFAULT_NAME}:{fqn}', v['logging.log_path'],
                           v['logging.level'], node=fqn)
        node.get_logger().set_level(severity(v['logging.level']))
        if v['ros_integration.node_name'] != node.get_name():
            # a renamed instance (one of several cameras) is intended, not a mistake: say it, no warning
            self.log.info(f'running as {fqn} (ros_integration.node_name is '
                          f'{v["ros_integration.node_name"]!r}; renamed by -r __node:= or not started by '
                          'the launch file)')
        platform = startup.check_platform(v, self.log)
        v['model.path'] = startup.model_path(v)
        self.detector, selection = startup.load_detector(v, len(platform.cores), self.log)
        startup.require_memory(v, platform)
        self.cores = startup.pin_cores(v)

        types = vision_types()
        classes = self.detector.bundle.classes
        # cdr.py's serialized path unless it disagrees with rclpy here; then rclpy's, for good
        check = CdrCheck.run(DetectionArrays(classes), types, classes)
        for warning in check.warnings():
            self.log.warn(warning)
        path = check.path(types, classes)
        self.monitor = Monitor(STAGES)
        self.profile = profile = qos.profile(QosSpec.of(v))
        label_pub = node.create_publisher(types.LabelInfo, v['ros_integration.label_info_topic'],
                                          qos.latched())
        label_pub.publish(label_info(types, Header(stamp=node.get_clock().now().to_msg()), classes,
                                     self.detector.thresholds.score))
        debug_topic = v['ros_integration.debug_image_topic']
        debug_pub = node.create_publisher(Image, debug_topic, profile) if debug_topic else None
        self.diagnostics_pub = node.create_publisher(DiagnosticArray, '/diagnostics', 10)
        cameras = parse_cameras(v['ros_integration.cameras'])
        self.cameras: Cameras | None = None
        if cameras:  # several cameras, one batching worker (cameras.py)
            self.health = Health(v, platform, self.detector, selection, input_topic='', log=self.log,
                                 now=time.monotonic())
            self.cameras = Cameras(node, cameras, v, detector=self.detector, health=self.health,
                                   monitor=self.monitor, path=path, detection_type=types.Detection2DArray,
                                   debug_pub=debug_pub, log=self.log)
            self.latest: LatestFrame | LatestFrames = self.cameras.latest
            self.route = self.cameras.describe()
        else:
            self.source = source = image_input(v, path, self.log.warn)  # raw Image or compressed
            # the names the topics really have here (namespace and -r remapping applied), for the logs
            input_topic = node.resolve_topic_name(source.topic)
            self.route = f'{input_topic} -> {node.resolve_topic_name(v["ros_integration.output_topic"])}'
            self.health = Health(v, platform, self.detector, selection, input_topic=input_topic,
                                 log=self.log, now=time.monotonic())
            detections_pub = node.create_publisher(types.Detection2DArray,
                                                   v['ros_integration.output_topic'], profile)
            processor = FrameProcessor(v, self.detector, self.health, self.monitor, path, source=source,
                                       input_topic=input_topic, detections_pub=detections_pub,
                                       debug_pub=debug_pub, clock=node.get_clock(), log=self.log)
            self.latest = LatestFrame(self.monitor, self.health.watchdog, self.health.rate,
                                      processor.process)
        self.reports = Reports(v, fqn, self.monitor, self.log)
        startup.warm_up(self.detector, v, path, self.log, cameras=max(1, len(cameras)))
        self.configured = True

    def activate(self) -> None:
        """Start the worker (the first time), subscribe, start the timers."""
        node, v = self.node, self.values
        if self._parked:
            self._subscriptions = [node.create_subscription(kind, topic, callback, profile, raw=raw)
                                   for kind, topic, callback, profile, raw in self._parked]
            self._parked = []
        else:
            before = set(node.subscriptions)
            if self.cameras is not None:
                self.cameras.start()  # the worker, then the subscriptions
            else:
                self.latest.start()
                node.create_subscription(self.source.message_type, self.source.topic, self.latest.take_in,
                                         self.profile, raw=self.source.raw)
            self._subscriptions = [s for s in node.subscriptions if s not in before]
        self._timers = [node.create_timer(v['logging.diagnostic_interval'], self.report)]
        if v['safety.watchdog_timeout'] > 0:
            self._timers.append(node.create_timer(min(1.0, v['safety.watchdog_timeout'] / 4),
                                                  self._check_watchdog))
        self.active = True
        spec = self.detector.bundle.input
        self.log.info(f'{self.route}: {len(self.detector.bundle.classes)} classes, input {spec.width}x'
                      f'{spec.height} {spec.resize}, rate cap {v["runtime.inference_frequency"]:g} Hz, '
                      f'cores {self.cores}')

    def deactivate(self) -> None:
        """Stop taking frames in (the worker idles, the model stays loaded); one last report."""
        self._unsubscribe()
        self.report()

    def _unsubscribe(self) -> None:
        for timer in self._timers:
            self.node.destroy_timer(timer)
        self._parked = [(s.msg_type, s.topic, s.callback, s.qos_profile, s.raw) for s in self._subscriptions]
        for subscription in self._subscriptions:
            self.node.destroy_subscription(subscription)
        self._timers, self._subscriptions = [], []
        self.active = False

    def cleanup(self) -> None:
        """Stop the worker, write the profile and monitoring files one last time, close the backend."""
        self._unsubscribe()
        self.latest.stop()
        now = time.monotonic()
        self.reports.write(self.monitor.document(now), self.health.state(now))
        self.release()

    def release(self) -> None:
        """Close the backend and the log file and destroy the publishers, of whatever ``configure``
        built (all of it after a cleanup, a part after a failed configure)."""
        detector = getattr(self, 'detector', None)
        if detector is not None:
            detector.backend.close()
            self.detector = None
        for publisher in [p for p in self.node.publishers if p not in self._publishers_before]:
            self.node.destroy_publisher(publisher)  # all configure made, the cameras' too
        self._parked = []
        if self.log is not None:
            self.log.close()
        self.log = None  # a closed NodeLog would print through logging's last-resort handler
        self.configured = False

    def _check_watchdog(self) -> None:
        if self.health.watchdog_changed(time.monotonic()):
            self.report()

    def report(self) -> None:
        """/diagnostics and the files: the health verdict while active, 'inactive' once after a
        deactivate (so a diagnostics aggregator shows why this detector went quiet)."""
        now = time.monotonic()
        document = self.monitor.document(now)
        state = self.health.state(now)
        result = self.health.diagnose(document, state)
        level, message = result.level, result.message
        if not self.active:
            level, message = 0, 'inactive (lifecycle): model loaded, not subscribed'
        # name and hardware_id per instance: two cameras' detectors on one device are two statuses
        fqn = self.node.get_fully_qualified_name()
        status = DiagnosticStatus(level=bytes([level]), name=f'{fqn}: detector', message=message,
                                  hardware_id=f'{self.values["target_platform.model"]}:{fqn}',
                                  values=[KeyValue(key=k, value=val) for k, val in result.values.items()])
        cameras = self.cameras.statuses(fqn, self.health, now) if self.cameras and self.active else []
        self.diagnostics_pub.publish(DiagnosticArray(header=Header(stamp=self.node.get_clock().now().to_msg()),
                                                     status=[status, *cameras]))
        self.reports.write(document, state)
