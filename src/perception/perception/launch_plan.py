"""What ``ros2 launch perception jetson.launch.py`` starts, as plain data.

``make_plan`` turns the deployment YAML and the launch arguments into a :class:`LaunchPlan`: the
node's executable, name, namespace, generated params file, ROS arguments and environment. The
launch file only converts the plan into launch actions. :meth:`LaunchPlan.command` and
``perception.node_process`` are the tooling that runs the same node where ``ros2 launch`` is
unavailable (no ``launch_ros``: the demo, the tests, the benchmarks); they are not a second
launcher for robots, which use the launch file.

CPU pinning (resources.cpu_affinity) is the node's own: it reaches the node as a parameter and the
node pins its threads, so ``ros2 run`` and ``ros2 launch`` pin alike and no process prefix exists.

Building a TensorRT engine at start (model.build_on_start, model.rebuild_on_mismatch) is the
node's own first step, where the GPU and TensorRT version are known, so ``ros2 run`` and
``ros2 launch`` behave the same and the rule for "this engine fits" lives in one place.
"""

from __future__ import annotations

import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from perception.middleware import middleware_environment
from perception.params import node_key, write_params_file
from perception_core.backends.select import ENGINE_SUFFIXES
from perception_core.deployment import ConfigError, DeploymentConfig, load_config
from perception_core.params import LOG_LEVELS, ParameterError, by_name, check_value

log = logging.getLogger(__name__)

PACKAGE = 'isaac_trt_perception'
EXECUTABLE = 'isaac_trt_perception_node'


@dataclass(frozen=True)
class LaunchPlan:
    config: DeploymentConfig
    node_name: str
    namespace: str
    params_file: Path
    ros_arguments: tuple[str, ...]           # after --ros-args, besides the params file
    env: dict[str, str]                      # added to the node's environment
    notes: tuple[str, ...] = field(default=())  # what the plan changed from the YAML, for the log

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
              middleware_config_dir: str | Path | None = None) -> LaunchPlan:
    """Plan the node's start from the YAML and the launch arguments (empty = take the YAML's).

    ``params_dir`` receives the params file (default: a new temporary folder);
    ``middleware_config_dir`` holds the Fast DDS profile (default: the installed one).
    """
    config = load_config(config_path, model_override=model or None)
    notes: list[str] = []
    if log_level:
        try:
            config.values['logging.level'] = check_value(by_name()['logging.level'], log_level.upper())
        except ParameterError as exc:
            raise ConfigError(f'log_level:= (launch argument): {exc}') from exc
    namespace = normalize_namespace(namespace)
    directory = (Path(params_dir).resolve() if params_dir
                 else Path(tempfile.mkdtemp(prefix='perception_launch_')))
    params_file = write_params_file(config, directory / f'{config.node_name}.params.yaml',
                                    namespace, use_sim_time)
    ros_arguments = ('--log-level', LOG_LEVELS[str(config['logging.level'])])
    return LaunchPlan(config=config, node_name=config.node_name, namespace=namespace,
                      params_file=params_file, ros_arguments=ros_arguments,
                      env=middleware_environment(middleware_config_dir), notes=tuple(notes))


def describe(plan: LaunchPlan) -> str:
    """A short, human-readable summary for the launch log."""
    lines = [f'node {node_key(plan.node_name, plan.namespace)} from {plan.config.source}',
             f'model {plan.config["model.path"]} (backend {plan.config["model.backend"]})',
             f'params file {plan.params_file}',
             f'CPU pinning by the node: resources.cpu_affinity {plan.config["resources.cpu_affinity"]} '
             '(the cores this machine has)']
    if Path(str(plan.config['model.path'])).suffix in ENGINE_SUFFIXES and plan.config['model.build_on_start']:
        lines.append('the node builds the TensorRT engine first if it is missing (model.build_on_start)')
    return '\n'.join(lines + list(plan.notes))
