"""``perception-nodes``: several detector nodes in one process, spun by one executor.

    perception-nodes --config config/jetson_deployment.yaml \\
        --node cam_left:/left --node cam_right:/right \\
        [--remap cam_left:/camera/image_rect:=/left/image_rect] \\
        [--param cam_right:model.path:=/models/other/model.onnx] \\
        [--node-params cam_right:right.params.yaml] [--ros-args ...]

Python has no component containers; an rclpy executor spins any number of nodes instead. Each
``--node NAME[:NAMESPACE]`` is one ``DetectionNode`` (its own model, worker thread, files, log and
/diagnostics status, all named by its fully qualified name); per instance, by that NAME, come its
remaps and its parameters. A parameter's value is, last one winning: the shared ``--config``
deployment YAML (or ``--params-file``, e.g. what ``perception-params`` wrote), the instance's
``--node-params`` ROS params file, its ``--param KEY:=VALUE``. Arguments after ``--ros-args`` are
the process's, for every node (``--log-level``, ``-p use_sim_time:=true``).

Start-up, signals and the exit code are the single node's (``node.main``, ``shutdown``): a node
that fails to start is a FATAL line naming it, the ones already started are closed (their final
files written) and the process exits 2; SIGINT/SIGTERM close every node and exit 0.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import rclpy
import yaml
from rclpy.exceptions import InvalidNamespaceException, InvalidNodeNameException
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name

from perception_core.atomic import write_text
from perception_core.deployment import ConfigError, load_config

from .node import DetectionNode, fast_executor
from .shutdown import StopRequest, init_ros, spin_until_stopped
from .startup import StartupError

PROGRAM = 'perception-nodes'


@dataclass
class Instance:
    """One ``--node``: what its DetectionNode is constructed with."""

    name: str
    namespace: str
    remaps: list[str] = field(default_factory=list)
    params_files: list[str] = field(default_factory=list)
    params: list[str] = field(default_factory=list)  # KEY:=VALUE, as ros2's -p

    @property
    def fully_qualified_name(self) -> str:
        return f'{self.namespace.rstrip("/")}/{self.name}'

    def node_arguments(self, shared_params_file: Path | None) -> list[str]:
        """rcl's node-local arguments, so rcl reads and types every value exactly as it does for
        ``--ros-args`` on a single node (rclpy's Python reader of params files re-types quoted
        strings: '8.7' became 8.7). The name too: DetectionNode's is fixed. Later ones win:
        the shared params file, this node's files, its KEY:=VALUE."""
        arguments = ['--ros-args', '-r', f'__node:={self.name}']
        for path in ([str(shared_params_file)] if shared_params_file else []) + self.params_files:
            arguments += ['--params-file', path]
        for assignment in self.params:
            arguments += ['-p', assignment]
        for rule in self.remaps:
            arguments += ['-r', rule]
        return arguments


class UsageError(ValueError):
    """A command line that cannot be run; the message names the argument."""


def _namespace(text: str, where: str) -> str:
    namespace = '/' + text.strip('/') if text.strip('/') else '/'
    try:
        validate_namespace(namespace)
    except InvalidNamespaceException as exc:
        raise UsageError(f'{where}: namespace {text!r}: {exc}') from exc
    return namespace


def parse_instances(args: argparse.Namespace) -> dict[str, Instance]:
    """The instances by NAME, each with its per-node options; every name checked and unique."""
    instances: dict[str, Instance] = {}
    for spec in args.node:
        name, _, namespace = spec.partition(':')
        try:
            validate_node_name(name)
        except InvalidNodeNameException as exc:
            raise UsageError(f'--node {spec}: node name {name!r}: {exc}') from exc
        if name in instances:
            raise UsageError(f'--node {spec}: {name!r} is given twice (the per-node options name it)')
        instances[name] = Instance(name, _namespace(namespace, f'--node {spec}'))
    for option, attribute, form in (('--remap', 'remaps', 'NAME:FROM:=TO'),
                                    ('--param', 'params', 'NAME:KEY:=VALUE'),
                                    ('--node-params', 'params_files', 'NAME:FILE')):
        for value in getattr(args, attribute):
            name, _, rest = value.partition(':')
            if name not in instances:
                raise UsageError(f'{option} {value}: {name!r} is not a --node (given: {sorted(instances)})')
            if not rest or (':=' in form and ':=' not in rest):
                raise UsageError(f'{option} {value}: expected {form}')
            if option == '--node-params' and not Path(rest).is_file():
                raise UsageError(f'{option} {value}: {rest} is not a file')
            getattr(instances[name], attribute).append(rest)
    return instances


def shared_params_file(args: argparse.Namespace, directory: Path) -> Path | None:
    """The params file every node starts from: ``--params-file`` as given, or the ``--config``
    deployment YAML validated (model.path absolute) and written as ``perception-params`` writes
    it, keyed ``/**``; rcl reads it while each node is constructed, so it is a temporary one."""
    if args.params_file:
        if not Path(args.params_file).is_file():
            raise UsageError(f'--params-file {args.params_file}: not a file')
        return Path(args.params_file)
    if not args.config:
        return None
    try:
        config = load_config(args.config, model_override=args.model)
    except ConfigError as exc:
        raise UsageError(f'--config: {exc}') from exc
    # safe_dump quotes strings that read as numbers ('8.7'), so rcl types them as the YAML did
    return write_text(directory / 'shared.params.yaml', yaml.safe_dump(
        {'/**': {'ros__parameters': config.nested()}}, sort_keys=False))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=PROGRAM, description='Run several isaac_trt_perception detector nodes in one process '
        'and one executor. Arguments after --ros-args apply to every node.')
    shared = p.add_mutually_exclusive_group()
    shared.add_argument('--config', help='deployment YAML for every node (config/jetson_deployment.yaml)')
    shared.add_argument('--params-file', help='ROS 2 params file for every node (from perception-params)')
    p.add_argument('--model', help='with --config: replace model.path for every node')
    p.add_argument('--node', action='append', required=True, metavar='NAME[:NAMESPACE]',
                   help='one detector node; repeat for each (default namespace /)')
    p.add_argument('--remap', dest='remaps', action='append', default=[], metavar='NAME:FROM:=TO',
                   help="remap a topic of node NAME (rcl's -r rule, resolved in its namespace)")
    p.add_argument('--param', dest='params', action='append', default=[], metavar='NAME:KEY:=VALUE',
                   help='set a parameter of node NAME (dotted key, as ros2 -p)')
    p.add_argument('--node-params', dest='params_files', action='append', default=[], metavar='NAME:FILE',
                   help='a ROS 2 params file for node NAME only, over the shared one')
    return p


def main(args: list[str] | None = None) -> int:
    stop = StopRequest()  # first thing, as the single node: a Ctrl-C during rclpy.init is a stop too
    try:
        return _run(stop, sys.argv if args is None else [PROGRAM, *args])
    finally:
        stop.ignore_further()


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """(ours, the process's ROS arguments): ``--ros-args ...`` up to ``--`` is rcl's. Split here,
    not by rclpy's remove_ros_args: rcl takes any ``a:=b`` outside --ros-args for a (deprecated)
    global remap rule, and ``--remap``/``--param`` values have that form."""
    ours, ros, inside = [], [], False
    for argument in argv[1:]:
        if argument == '--ros-args':
            inside = True
        elif argument == '--' and inside:
            inside = False
            continue
        (ros if inside else ours).append(argument)
    return ours, ros


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
           shared: Path | None) -> tuple[list[DetectionNode], str]:
    """The nodes constructed one after the other, up to the first that fails (its error, naming
    it) or a signal. ``ros_arguments`` are the process's, for every node."""
    nodes: list[DetectionNode] = []
    failure = ''
    try:
        with stop.interruptible():  # Ctrl-C still ends a long start-up (an engine build)
            init_ros([PROGRAM, *ros_arguments])
            for instance in instances.values():
                try:
                    nodes.append(DetectionNode(namespace=instance.namespace,
                                               cli_args=instance.node_arguments(shared)))
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


def _spin(stop: StopRequest, instances: dict[str, Instance], nodes: list[DetectionNode], failure: str) -> int:
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
        spin_until_stopped(executor, stop)
    finally:
        stop.ignore_further()  # launch's second SIGINT (then SIGTERM) must not cut the cleanup short
        _close(nodes, executor)
    return 0


def _close(nodes: list[DetectionNode], executor) -> None:
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
