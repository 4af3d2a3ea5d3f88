"""``perception-nodes``' command line: the ``--node`` instances with their per-node remaps and
parameters, and the params file every node starts from (``nodes_main`` runs them)."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from rclpy.exceptions import InvalidNamespaceException, InvalidNodeNameException
from rclpy.validate_namespace import validate_namespace
from rclpy.validate_node_name import validate_node_name

from perception_core.atomic import write_text
from perception_core.deployment import ConfigError, load_config

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
