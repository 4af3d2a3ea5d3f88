"""The isaac_trt_perception node and its executable: ``DetectionNode`` builds everything at once
(``pipeline.DetectionPipeline``); with ros_integration.lifecycle the executable runs
``lifecycle.DetectionLifecycleNode`` instead, built step by step by lifecycle transitions.

Threads: the executor thread only takes frames in (``latest_frame.LatestFrame``); a worker thread
converts, runs the detector and publishes (``processing.FrameProcessor``). Start-up is
``startup``, the safety state and ``/diagnostics`` verdict ``health``, the JSON files ``reporting``,
the serialized-message check ``cdr_check``.
"""

from __future__ import annotations

import sys
from typing import Any

import rclpy
from rclpy.context import Context
from rclpy.executors import Executor, SingleThreadedExecutor
from rclpy.node import Node

from .lifecycle import DetectionLifecycleNode, lifecycle_requested
from .pipeline import DEFAULT_NAME, DetectionPipeline
from .shutdown import StopRequest, init_ros, spin_until_stopped
from .startup import StartupError

__all__ = ['DEFAULT_NAME', 'DetectionNode', 'fast_executor', 'main']


class DetectionNode(Node):
    """The detector, answering frames from construction to ``close()`` (the lifecycle node's
    configure and activate at once, ``pipeline.DetectionPipeline``)."""

    finalized = False  # only a signal (or the context's end) stops a plain node

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(DEFAULT_NAME, **kwargs)
        self.pipeline = DetectionPipeline(self)
        self.pipeline.declare()
        self.pipeline.configure()
        if self.pipeline.values['ros_integration.lifecycle']:
            # only an import gets here with it set: node.main and perception-nodes start the lifecycle node
            self.pipeline.log.warn('ros_integration.lifecycle is true but this process runs a plain node: '
                                   'answering from now on (isaac_trt_perception_node runs a lifecycle node)')
        self.pipeline.activate()

    def close(self) -> None:
        """Stop the worker and write the profile and monitoring files one last time."""
        self.pipeline.cleanup()


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
            # ros_integration.lifecycle, read as rcl reads the node's parameters (lifecycle.py)
            node = DetectionLifecycleNode(stop) if lifecycle_requested() else DetectionNode()
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
        spin_until_stopped(executor, stop, finished=lambda: node.finalized)
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
