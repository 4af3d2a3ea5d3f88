"""``perception-nodes``: several detector nodes in one process, spun by one executor.

    perception-nodes --config config/jetson_deployment.yaml \\
        --node cam_left:/left --node cam_right:/right \\
        [--remap cam_left:/camera/image_rect:=/left/image_rect] \\
        [--param cam_right:model.path:=/models/other/model.onnx] \\
        [--node-params cam_right:right.params.yaml] [--ros-args ...]

Python has no component containers; an rclpy executor spins any number of nodes instead. Each
``--node NAME[:NAMESPACE]`` is one ``DetectionNode`` (its own model, worker thread, files, log and
/diagnostics status, all named by its fully qualified name), or a ``DetectionLifecycleNode`` where
its ros_integration.lifecycle is true (read per node, as the single executable reads it), driven by
its own lifecycle services; per instance, by that NAME, come its
remaps and its parameters. A parameter's value is, last one winning: the shared ``--config``
deployment YAML (or ``--params-file``, e.g. what ``perception-params`` wrote), the instance's
``--node-params`` ROS params file, its ``--param KEY:=VALUE``. Arguments after ``--ros-args`` are
the process's, for every node (``--log-level``, ``-p use_sim_time:=true``).

Start-up, signals and the exit code are the single node's (``node.main``, ``shutdown``): a node
that fails to start is a FATAL line naming it, the ones already started are closed (their final
files written) and the process exits 2; SIGINT/SIGTERM close every node and exit 0.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import rclpy

from .lifecycle import DetectionLifecycleNode, lifecycle_requested
from .node import DetectionNode, fast_executor
from .nodes_arguments import (
    PROGRAM,
    Instance,
    UsageError,
    parse_instances,
    parser,
    shared_params_file,
    split_arguments,
)
from .shutdown import StopRequest, init_ros, spin_until_stopped
from .startup import StartupError

DetectorNode = DetectionNode | DetectionLifecycleNode


def main(args: list[str] | None = None) -> int:
    stop = StopRequest()  # first thing, as the single node: a Ctrl-C during rclpy.init is a stop too
    try:
        return _run(stop, sys.argv if args is None else [PROGRAM, *args])
    finally:
        stop.ignore_further()


def _run(stop: StopRequest, argv: list[str]) -> int:
    ours, ros_arguments = split_arguments(argv)
    options = parser().parse_args(ours)
    with tempfile.TemporaryDirectory(prefix='perception_nodes_') as directory:
        try:
            instances = parse_instances(options)
            shared = shared_params_file(options, Path(directory))
        except UsageError as exc:
            parser().error(str(exc))  # exit 2 with the usage, before ROS starts
        nodes, failure = _start(stop, ros_arguments, instances, shared)
    return _spin(stop, instances, nodes, failure)


def _start(stop: StopRequest, ros_arguments: list[str], instances: dict[str, Instance],
           shared: Path | None) -> tuple[list[DetectorNode], str]:
    """The nodes constructed one after the other, up to the first that fails (its error, naming
    it) or a signal. ``ros_arguments`` are the process's, for every node."""
    nodes: list[DetectorNode] = []
    failure = ''
    try:
        with stop.interruptible():  # Ctrl-C still ends a long start-up (an engine build)
            init_ros([PROGRAM, *ros_arguments])
            for instance in instances.values():
                try:
                    where = {'namespace': instance.namespace, 'cli_args': instance.node_arguments(shared)}
                    nodes.append(DetectionLifecycleNode(stop, **where) if lifecycle_requested(**where)
                                 else DetectionNode(**where))
                except StartupError as exc:
                    failure = f'{instance.fully_qualified_name} did not start: {exc}'
                    break
                except Exception as exc:
                    # as node.main: after a signal a library's own error is the signal's doing
                    if not stop.requested:
                        _close(nodes, None)
                        raise
                    failure = f'{instance.fully_qualified_name}: {exc}'
                    break
    except KeyboardInterrupt:
        pass  # the first signal; the nodes already whole are closed by _spin
    return nodes, failure


def _spin(stop: StopRequest, instances: dict[str, Instance], nodes: list[DetectorNode], failure: str) -> int:
    """Spin the nodes until SIGINT/SIGTERM (or an external shutdown), close them; the exit code."""
    logger = rclpy.logging.get_logger(PROGRAM)
    if failure or stop.requested or len(nodes) < len(instances):
        stop.ignore_further()
        started = ', '.join(n.get_fully_qualified_name() for n in nodes) or 'none'
        if stop.requested:
            logger.info(f'{stop.name} during start-up: stopping (started: {started})'
                        + (f' ({failure})' if failure else ''))
        else:
            logger.fatal(f'{failure}; stopping the nodes started ({started})')
        _close(nodes, None)
        return 0 if stop.requested else 2
    executor = fast_executor()
    for node in nodes:
        executor.add_node(node)
    logger.info(f'spinning {len(nodes)} nodes in one executor: '
                + ', '.join(n.get_fully_qualified_name() for n in nodes))
    try:
        # until a signal, or every node finalized by its lifecycle shutdown (a plain node never is)
        spin_until_stopped(executor, stop, finished=lambda: all(node.finalized for node in nodes))
    finally:
        stop.ignore_further()  # launch's second SIGINT (then SIGTERM) must not cut the cleanup short
        _close(nodes, executor)
    return 0


def _close(nodes: list[DetectorNode], executor) -> None:
    """Every node's close() (worker stopped, final files) before any is destroyed, then the context."""
    for node in nodes:
        node.close()
    if executor is not None:
        executor.shutdown()
    for node in nodes:
        node.destroy_node()
    rclpy.try_shutdown()


if __name__ == '__main__':
    sys.exit(main())
