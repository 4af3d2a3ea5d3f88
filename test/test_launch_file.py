"""launch/jetson.launch.py without the launch package: it compiles, uses only launch APIs that
Humble has, is installed by perception, and (where launch is installed) builds the node action
from the launch plan that test_launch_plan.py and test_bringup_node.py check for real."""

from __future__ import annotations

import ast
import importlib.util
import py_compile
from pathlib import Path

import pytest

WORKSPACE = Path(__file__).resolve().parents[1]
LAUNCH_FILE = WORKSPACE / 'launch' / 'jetson.launch.py'

# What launch / launch_ros 0.19 (Humble) provide, for the names this file uses; Jazzy and Kilted
# keep all of them.
HUMBLE_API = {
    'launch.actions': {'DeclareLaunchArgument', 'ExecuteProcess', 'LogInfo', 'OpaqueFunction',
                       'RegisterEventHandler', 'SetEnvironmentVariable', 'GroupAction', 'TimerAction'},
    'launch.event_handlers': {'OnProcessExit', 'OnProcessStart', 'OnShutdown'},
    'launch.launch_description': {'LaunchDescription'},
    'launch.substitutions': {'LaunchConfiguration'},
    'launch_ros.actions': {'Node'},
    'ament_index_python.packages': {'get_package_share_directory'},
    'perception.launch_plan': {'EXECUTABLE', 'NODES_EXECUTABLE', 'PACKAGE', 'describe', 'lifecycle_override',
                               'make_plan', 'nodes_arguments'},
}
HUMBLE_KEYWORDS = {
    'Node': {'package', 'executable', 'name', 'namespace', 'exec_name', 'parameters', 'remappings',
             'arguments', 'prefix', 'additional_env', 'output', 'emulate_tty', 'respawn', 'respawn_delay'},
    'ExecuteProcess': {'cmd', 'output', 'additional_env', 'cwd', 'shell', 'name', 'emulate_tty'},
    'OnProcessExit': {'target_action', 'on_exit'},
    'OnShutdown': {'on_shutdown'},
    'RegisterEventHandler': set(),
    'DeclareLaunchArgument': {'default_value', 'description', 'choices'},
    'LogInfo': {'msg'},
    'OpaqueFunction': {'function', 'args', 'kwargs'},
}


def tree() -> ast.Module:
    return ast.parse(LAUNCH_FILE.read_text(), filename=str(LAUNCH_FILE))


def test_launch_file_compiles(tmp_path: Path) -> None:
    py_compile.compile(str(LAUNCH_FILE), cfile=str(tmp_path / 'jetson.launch.pyc'), doraise=True)


def test_launch_file_imports_only_humble_apis() -> None:
    for node in ast.walk(tree()):
        if isinstance(node, ast.ImportFrom) and node.module != '__future__':
            names = {alias.name for alias in node.names}
            assert node.module in HUMBLE_API, node.module
            assert names <= HUMBLE_API[node.module], names - HUMBLE_API[node.module]
        assert not isinstance(node, ast.Import) or all(a.name == 'os' for a in node.names)


def test_launch_actions_get_only_humble_keywords() -> None:
    calls = [n for n in ast.walk(tree()) if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)]
    checked = {c.func.id for c in calls if c.func.id in HUMBLE_KEYWORDS}
    assert {'Node', 'DeclareLaunchArgument', 'OpaqueFunction'} <= checked
    for call in calls:
        allowed = HUMBLE_KEYWORDS.get(call.func.id)
        if allowed is not None:
            used = {k.arg for k in call.keywords}
            assert used <= allowed, (call.func.id, used - allowed)


def test_launch_arguments_are_the_documented_ones() -> None:
    assignment = next(n for n in tree().body if isinstance(n, ast.Assign) and n.targets[0].id == 'ARGUMENTS')
    names = [element.elts[0].value for element in assignment.value.elts]
    assert names == ['config', 'model', 'log_level', 'namespace', 'use_sim_time', 'params_dir', 'cameras',
                     'nodes', 'lifecycle']


def test_perception_installs_the_launch_file() -> None:
    installed = WORKSPACE / 'install/perception/share/perception/launch/jetson.launch.py'
    assert installed.exists(), f'{installed} is missing: make build installs it'
    assert installed.resolve().read_text() == LAUNCH_FILE.read_text()


def test_launch_description_where_launch_is_installed(tmp_path: Path) -> None:
    if importlib.util.find_spec('launch_ros') is None:
        pytest.skip('launch_ros is not installed here (no ROS 2 distro); the plan is tested instead')
    from launch.actions import RegisterEventHandler
    from launch.event_handlers import OnProcessExit, OnShutdown
    from launch.utilities import perform_substitutions
    from launch_ros.actions import Node

    from launch import LaunchContext
    spec = importlib.util.spec_from_file_location('jetson_launch', LAUNCH_FILE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    description = module.generate_launch_description()
    context = LaunchContext()
    for action in description.entities[:-1]:
        action.visit(context)
    actions = description.entities[-1].execute(context)
    nodes = [a for a in actions if isinstance(a, Node)]
    assert len(nodes) == 1
    label = nodes[0].name  # launch's label for the node's output lines: the node's name
    label = label if isinstance(label, str) else perform_substitutions(context, label)
    assert label == 'isaac_trt_perception'
    handlers = [a.event_handler for a in actions if isinstance(a, RegisterEventHandler)]
    assert any(isinstance(h, OnProcessExit) for h in handlers) and any(isinstance(h, OnShutdown)
                                                                      for h in handlers)



def test_node_action_has_no_process_prefix() -> None:
    """CPU pinning is the node's (resources.cpu_affinity as a parameter): the Node action gets no
    ``prefix`` (a taskset prefix would also rename the process 'taskset-1')."""
    node = next(c for c in ast.walk(tree()) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                and c.func.id == 'Node')
    assert 'prefix' not in {k.arg for k in node.keywords}
    assert 'taskset' not in LAUNCH_FILE.read_text()


def node_call(executable: str = 'EXECUTABLE') -> ast.Call:
    """The Node action that starts ``executable`` (the node's, or NODES_EXECUTABLE for nodes:=)."""
    return next(c for c in ast.walk(tree()) if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)
                and c.func.id == 'Node'
                and any(k.arg == 'executable' and ast.unparse(k.value) == executable for k in c.keywords))


def test_launch_labels_the_node_by_its_name() -> None:
    """Launch names a process after its executable (or its prefix: 'taskset-1') unless exec_name is
    given: the label in front of every line is the node's name, as planned (one per camera)."""
    keywords = {k.arg: ast.unparse(k.value) for k in node_call().keywords}
    assert keywords['exec_name'] == 'plan.node_name' == keywords['name']
    # nodes:= (perception-nodes): one process for several nodes, labelled by the executable
    keywords = {k.arg: ast.unparse(k.value) for k in node_call('NODES_EXECUTABLE').keywords}
    assert keywords['exec_name'] == 'NODES_EXECUTABLE' and 'name' not in keywords


def test_a_temporary_params_folder_goes_when_the_node_exits() -> None:
    """The plan's perception_launch_* folder is removed on the node's exit and on launch's shutdown
    (LaunchPlan.remove_params, which test_launch_plan.py and test_bringup_node.py check for real);
    params_dir:= names a folder that is kept instead."""
    calls = {c.func.id: c for c in ast.walk(tree())
             if isinstance(c, ast.Call) and isinstance(c.func, ast.Name)}
    exit_handler = calls['OnProcessExit']
    target = next(k.value for k in exit_handler.keywords if k.arg == 'target_action')
    assert isinstance(target, ast.Name) and target.id == 'node'
    assert 'OnShutdown' in calls
    remover = next(f for f in ast.walk(tree())
                   if isinstance(f, ast.FunctionDef) and f.name == 'remove_params')
    assert 'plan.remove_params()' in ast.unparse(remover)
    on_exit = ast.unparse(next(k.value for k in exit_handler.keywords if k.arg == 'on_exit'))
    assert 'remove_params' in on_exit
    plan_call = ast.unparse(calls['make_plan'])
    assert "params_dir=arg('params_dir')" in plan_call


def test_lifecycle_argument_sets_the_parameter_through_the_plan(tmp_path: Path) -> None:
    """lifecycle:= reaches make_plan as an override of ros_integration.lifecycle (the node reads it
    from the params file and starts unconfigured: test_node_lifecycle.py); "" keeps the YAML's."""
    import yaml

    from perception.launch_plan import describe, lifecycle_override, make_plan
    from perception_core.deployment import ConfigError
    plan_call = ast.unparse(next(c for c in ast.walk(tree()) if isinstance(c, ast.Call)
                                 and isinstance(c.func, ast.Name) and c.func.id == 'make_plan'))
    assert "overrides=lifecycle_override(arg('lifecycle'))" in plan_call
    config = WORKSPACE / 'config' / 'jetson_deployment.yaml'
    for text, expected in (('true', True), (' TRUE ', True), ('false', False), ('', False)):
        plan = make_plan(config, params_dir=tmp_path / repr(text), overrides=lifecycle_override(text))
        document = yaml.safe_load(plan.params_file.read_text())
        (values,) = [node['ros__parameters'] for node in document.values()]
        assert values['ros_integration']['lifecycle'] is expected, (text, values['ros_integration'])
        assert ('lifecycle node: unconfigured until /isaac_trt_perception/change_state' in describe(plan)) \
            is expected
    with pytest.raises(ConfigError, match=r"lifecycle:= \(launch argument\): expected true or false"):
        lifecycle_override('yes')
