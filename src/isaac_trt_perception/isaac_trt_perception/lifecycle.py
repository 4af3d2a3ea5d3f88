"""``ros_integration.lifecycle: true``: the detector as an rclpy lifecycle (managed) node.

Each transition is one step of ``pipeline.DetectionPipeline``: configure loads the model (building
the engine where the YAML asks) and warms it up; activate subscribes and answers; deactivate stops
answering with the model kept; cleanup unloads it (final files written, backend closed); shutdown
(from any state) does what is left of those and ends the process (``finalized``, which
``node.main``'s spin loop watches). A failing configure or activate returns FAILURE with the reason
logged as an ERROR and the node stays where it was (unconfigured or inactive), alive for another try.
Parameters are read at configure: while unconfigured they may be changed, after that they are refused.

A SIGINT/SIGTERM during configure (an engine build can take minutes) ends it at once, as during a
plain node's start-up: configure returns FAILURE with what it built released, and the spin loop,
seeing the stop, runs the shutdown transition (``node.main``).
"""

from __future__ import annotations

from contextlib import nullcontext
from typing import Any

from rcl_interfaces.msg import ParameterDescriptor
from rclpy.lifecycle import LifecycleNode, LifecycleState, TransitionCallbackReturn
from rclpy.node import Node

from perception_core.params import ParameterError, by_name, check_value

from .pipeline import DEFAULT_NAME, DetectionPipeline
from .shutdown import StopRequest
from .startup import StartupError

KEY = 'ros_integration.lifecycle'
SUCCESS, FAILURE = TransitionCallbackReturn.SUCCESS, TransitionCallbackReturn.FAILURE


def lifecycle_requested(**where: Any) -> bool:
    """ros_integration.lifecycle for the node this process would start (with ``where``, the
    ``namespace`` and ``cli_args`` it will be constructed with). Read through a short-lived probe
    node of the same name (no rosout, no parameter services), so rcl applies the params files,
    their node-name keys, -r __node:= and -p exactly as it will for the detector node; parsing the
    params file here would be a second, different reader."""
    probe = Node(DEFAULT_NAME, enable_rosout=False, start_parameter_services=False, **where)
    try:
        value = probe.declare_parameter(KEY, False, ParameterDescriptor(dynamic_typing=True)).value
        return bool(check_value(by_name()[KEY], value))
    except ParameterError as exc:
        raise StartupError(f'parameter {exc}') from exc
    finally:
        probe.destroy_node()


class DetectionLifecycleNode(LifecycleNode):
    """Unconfigured at construction (parameters declared, nothing loaded); see the module doc."""

    def __init__(self, stop: StopRequest | None = None, **kwargs: Any) -> None:
        super().__init__(DEFAULT_NAME, **kwargs)
        self.stop = stop  # the process's: a signal during configure ends that configure
        self.pipeline = DetectionPipeline(self)
        self.pipeline.declare()
        self.finalized = False
        self.get_logger().info('lifecycle node unconfigured: waiting for configure '
                               f'({self.get_fully_qualified_name()}/change_state)')

    def _step(self, name: str, step: Any) -> TransitionCallbackReturn:
        """Run one pipeline step; an error is FAILURE, logged naming the key or file (StartupError)."""
        try:
            step()
        except Exception as exc:  # rclpy would turn it into ERROR with nothing logged
            reason = str(exc) if isinstance(exc, StartupError) else f'{type(exc).__name__}: {exc}'
            log = self.pipeline.log  # the log file too, once configure has opened it
            (log.error if log is not None else self.get_logger().error)(f'{name} failed: {reason}')
            return FAILURE
        return SUCCESS

    def on_configure(self, state: LifecycleState) -> TransitionCallbackReturn:
        try:
            with self.stop.interruptible() if self.stop is not None else nullcontext():
                result = self._step('configure', self.pipeline.configure)
        except KeyboardInterrupt:  # the first SIGINT/SIGTERM, raised wherever configure was
            result = FAILURE
        if result == FAILURE:
            if self.stop is not None and self.stop.requested:
                log = self.pipeline.log
                (log.info if log is not None else self.get_logger().info)(
                    f'{self.stop.name} during configure: stopping')
            self.pipeline.release()  # what it built before failing: backend, publishers, log file
        else:
            self.pipeline.log.info('configured: model loaded and warmed up; activate to answer frames')
        return result

    def on_activate(self, state: LifecycleState) -> TransitionCallbackReturn:
        return self._step('activate', self.pipeline.activate)

    def on_deactivate(self, state: LifecycleState) -> TransitionCallbackReturn:
        result = self._step('deactivate', self.pipeline.deactivate)
        if result == SUCCESS:
            self.pipeline.log.info('deactivated: not subscribed, model kept loaded')
        return result

    def on_cleanup(self, state: LifecycleState) -> TransitionCallbackReturn:
        backend = self.pipeline.detector.backend.name
        self.pipeline.log.info(f'cleaning up: closing backend {backend}, writing the final files')
        result = self._step('cleanup', self.pipeline.cleanup)
        self.get_logger().info('cleaned up: model unloaded, unconfigured')
        return result

    def on_shutdown(self, state: LifecycleState) -> TransitionCallbackReturn:
        """From unconfigured, inactive or active; the spin loop ends once this returns."""
        if self.pipeline.configured:
            self._step('shutdown', self.pipeline.cleanup)
        self.finalized = True
        self.get_logger().info(f'finalized (shutdown from {state.label}): exiting')
        return SUCCESS

    def close(self) -> None:
        """The end of the process (a signal, or finalized): the shutdown transition where it has not
        run yet, so the final files are written if it was configured and the state is finalized."""
        if not self.finalized:
            self.trigger_shutdown()
