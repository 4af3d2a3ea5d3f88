"""What ``ros2 launch perception jetson.launch.py`` starts, as plain data.

``make_plan`` turns the deployment YAML and the launch arguments into a :class:`LaunchPlan`: the
node's executable, name, namespace, generated params file, ROS arguments and environment. The
launch file only converts the plan into launch actions. :meth:`LaunchPlan.command` and
``perception.node_process`` are the tooling that runs the same node where ``ros2 launch`` is
unavailable (no ``launch_ros``: the demo, the tests, the benchmarks); they are not a second
launcher for robots, which use the launch file.

CPU pinning (resources.cpu_affinity) is the node's own: it reaches the node as a parameter and the
node pins its threads, so ``ros2 run`` and ``ros2 launch`` pin alike and no process prefix exists.

The params file goes where ``params_dir`` says, kept; without one, into a new temporary folder
that the plan owns: :meth:`LaunchPlan.remove_params` deletes it once the node has exited (the
launch file on the node's exit, ``perception.node_process`` when it stops the node), so launches
leave no ``perception_launch_*`` folders behind.

Building a TensorRT engine at start (model.build_on_start, model.rebuild_on_mismatch) is the
node's own first step, where the GPU and TensorRT version are known, so ``ros2 run`` and
``ros2 launch`` behave the same and the rule for "this engine fits" lives in one place.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from perception.middleware import middleware_environment
from perception.params import write_params_file
from perception_core.backends.select import ENGINE_SUFFIXES
from perception_core.deployment import ConfigError, DeploymentConfig, load_config
from perception_core.params import CAMERAS, LOG_LEVELS, ParameterError, by_name, check_value, instance_path

log = logging.getLogger(__name__)

PACKAGE = 'isaac_trt_perception'
EXECUTABLE = 'isaac_trt_perception_node'
NODES_EXECUTABLE = 'perception-nodes'  # several detector nodes in one process (nodes_main.py)
LIFECYCLE = 'ros_integration.lifecycle'


@dataclass(frozen=True)
class LaunchPlan:
    config: DeploymentConfig
    node_name: str
    namespace: str
    params_file: Path
    ros_arguments: tuple[str, ...]           # after --ros-args, besides the params file
    env: dict[str, str]                      # added to the node's environment
    notes: tuple[str, ...] = field(default=())  # what the plan changed from the YAML, for the log
    temporary_dir: Path | None = None        # the params file's folder when the plan made it

    @property
    def fully_qualified_name(self) -> str:
        return f'{self.namespace}/{self.node_name}'

    def output_path(self, key: str) -> Path:
        """Where the node writes runtime.*_output_path or logging.log_path: the YAML's path with
        {node}/{name}/{namespace} filled in as the node does it."""
        return Path(instance_path(str(self.config[key]), self.fully_qualified_name))

    def remove_params(self) -> None:
        """Delete the params file's folder if the plan made it (a params_dir given is kept); for
        after the node exited, since the node reads the file at start only."""
        if self.temporary_dir is not None:
            shutil.rmtree(self.temporary_dir, ignore_errors=True)

    def command(self, executable: str | Path) -> list[str]:
        """The node's full command line, as launch_ros would assemble it."""
        args = [str(executable), '--ros-args', '-r', f'__node:={self.node_name}']
        if self.namespace:
            args += ['-r', f'__ns:={self.namespace}']
        return [*args, '--params-file', str(self.params_file), *self.ros_arguments]


def node_executable() -> Path:
    """The installed node executable (needs the built workspace in the ament index); the one
    lookup of it, for everything that starts the node without ``ros2 launch``."""
    from ament_index_python.packages import get_package_prefix
    return Path(get_package_prefix(PACKAGE)) / 'lib' / PACKAGE / EXECUTABLE


def normalize_namespace(namespace: str) -> str:
    namespace = namespace.strip().strip('/')
    return f'/{namespace}' if namespace else ''


def make_plan(config_path: str | Path, *, model: str | None = None, log_level: str | None = None,
              namespace: str = '', use_sim_time: bool = False, params_dir: str | Path | None = None,
              middleware_config_dir: str | Path | None = None,
              overrides: Mapping[str, object] | None = None, cameras: str = '') -> LaunchPlan:
    """Plan the node's start from the YAML and the launch arguments (empty = take the YAML's).

    ``params_dir`` receives the params file (default: a new temporary folder, removed by
    :meth:`LaunchPlan.remove_params`); ``middleware_config_dir`` holds the Fast DDS profile
    (default: the installed one); ``overrides`` replaces parameters by dotted name (checked);
    ``cameras`` (the ``cameras:=`` argument, ros_integration.cameras' text form
    ``name:input:output[:frame_id=F][:image_transport=T],...``) replaces the YAML's camera list.
    """
    config = load_config(config_path, model_override=model or None)
    notes: list[str] = []
    known = by_name()
    for name, value in (overrides or {}).items():
        if name not in known:
            raise ConfigError(f'{name}: unknown parameter')
        try:
            config.values[name] = check_value(known[name], value)
        except ParameterError as exc:
            raise ConfigError(str(exc)) from exc
    if model:
        # model:= names another bundle than the YAML was written for: its input is that bundle's
        # (model.input_shape stays a check of the YAML's own model)
        from perception_core.bundle import BundleError, load_bundle
        try:
            shape = list(load_bundle(str(config.values['model.path'])).input.shape())
        except BundleError:
            shape = None  # the node names what is wrong with it
        if shape is not None and list(config.values['model.input_shape'][1:]) != shape[1:]:
            config.values['model.input_shape'] = [config.values['model.input_shape'][0], *shape[1:]]
            notes.append(f'model.input_shape {config.values["model.input_shape"]} (the model\'s)')
    if cameras.strip():
        try:
            config.values[CAMERAS] = check_value(known[CAMERAS], cameras)
        except ParameterError as exc:
            raise ConfigError(f'cameras:= (launch argument): {exc}') from exc
        notes.append(f'cameras:= {config.values[CAMERAS]}')
    if log_level:
        try:
            config.values['logging.level'] = check_value(by_name()['logging.level'], log_level.upper())
        except ParameterError as exc:
            raise ConfigError(f'log_level:= (launch argument): {exc}') from exc
    namespace = normalize_namespace(namespace)
    temporary = None if params_dir else Path(tempfile.mkdtemp(prefix='perception_launch_'))
    directory = Path(params_dir).resolve() if params_dir else temporary
    params_file = write_params_file(config, directory / f'{config.node_name}.params.yaml',
                                    use_sim_time=use_sim_time)
    ros_arguments = ('--log-level', LOG_LEVELS[str(config['logging.level'])])
    return LaunchPlan(config=config, node_name=config.node_name, namespace=namespace,
                      params_file=params_file, ros_arguments=ros_arguments,
                      env=middleware_environment(middleware_config_dir), notes=tuple(notes),
                      temporary_dir=temporary)


def lifecycle_override(text: str) -> dict[str, object]:
    """The ``lifecycle:=`` launch argument as make_plan's overrides: true or false (any case) set
    ros_integration.lifecycle, "" keeps the YAML's."""
    word = text.strip().lower()
    if word not in ('', 'true', 'false'):
        raise ConfigError(f'lifecycle:= (launch argument): expected true or false, got {text!r}')
    return {LIFECYCLE: word == 'true'} if word else {}


def nodes_arguments(plan: LaunchPlan, nodes: str) -> list[str]:
    """perception-nodes' arguments for ``nodes:=NAME[:NAMESPACE],...``: the plan's params file for
    every node."""
    specs = [spec.strip() for spec in nodes.split(',') if spec.strip()]
    return ['--params-file', str(plan.params_file), *[part for spec in specs for part in ('--node', spec)],
            '--ros-args', *plan.ros_arguments]


def describe(plan: LaunchPlan) -> str:
    """A short, human-readable summary for the launch log."""
    lines = [f'node {plan.fully_qualified_name} from {plan.config.source}',
             f'model {plan.config["model.path"]} (backend {plan.config["model.backend"]})',
             *([f'cameras {plan.config[CAMERAS]}'] if plan.config[CAMERAS] else []),
             f'params file {plan.params_file}'
             + (' (removed when the node exits)' if plan.temporary_dir else ''),
             f'CPU pinning by the node: resources.cpu_affinity {plan.config["resources.cpu_affinity"]} '
             '(the cores this machine has)']
    if plan.config[LIFECYCLE]:
        lines.append(f'lifecycle node: unconfigured until {plan.fully_qualified_name}/change_state '
                     'configures and activates it')
    if Path(str(plan.config['model.path'])).suffix in ENGINE_SUFFIXES and plan.config['model.build_on_start']:
        lines.append('the node builds the TensorRT engine first if it is missing (model.build_on_start)')
    return '\n'.join(lines + list(plan.notes))
