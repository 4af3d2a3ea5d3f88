"""Start the isaac_trt_perception node as config/jetson_deployment.yaml describes it.

    ros2 launch perception jetson.launch.py [config:=FILE] [model:=PATH] [log_level:=LEVEL]
                                            [namespace:=NS] [use_sim_time:=true] [params_dir:=DIR]
                                            [cameras:=NAME:INPUT:OUTPUT[:frame_id=F][:image_transport=T],...]
                                            [lifecycle:=true]

Everything is decided by ``perception.launch_plan`` (tested without ``launch``); this file only
turns the plan into launch actions. It uses launch APIs that exist in Humble, Jazzy and Kilted.
The node has no process prefix: it pins its own threads to resources.cpu_affinity, and launch
labels its output with the node's name (exec_name). The generated params file is written to
params_dir:= and kept, or to a temporary folder that is removed when the node exits or launch
shuts down.

lifecycle:=true starts the node as a lifecycle node (ros_integration.lifecycle): unconfigured until a
lifecycle manager (nav2_lifecycle_manager, ``ros2 lifecycle set``) configures and activates it. The
Node action starts it all the same: launch_ros's LifecycleNode action only adds launch-side
transition events, which nothing here emits.
"""

from __future__ import annotations

import os

from ament_index_python.packages import get_package_share_directory
from launch.actions import DeclareLaunchArgument, LogInfo, OpaqueFunction, RegisterEventHandler
from launch.event_handlers import OnProcessExit, OnShutdown
from launch.launch_description import LaunchDescription
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from perception.launch_plan import (
    EXECUTABLE,
    NODES_EXECUTABLE,
    PACKAGE,
    describe,
    lifecycle_override,
    make_plan,
    nodes_arguments,
)

ARGUMENTS = (
    ('config', os.path.join(get_package_share_directory('perception'), 'config', 'jetson_deployment.yaml'),
     'Deployment YAML'),
    ('model', '', 'Replace model.path (file in a model bundle); empty = the YAML\'s'),
    ('log_level', '', 'Replace logging.level (DEBUG, INFO, WARN, ERROR, FATAL); empty = the YAML\'s'),
    ('namespace', '', 'Namespace of the node (absolute topics in the YAML stay absolute)'),
    ('use_sim_time', 'false', 'Use /clock (e.g. with ros2 bag play --clock)'),
    ('params_dir', '', 'Folder for the generated params file, kept; empty = a temporary folder, '
     'removed when the node exits'),
    ('cameras', '', 'Several cameras in one node, replacing ros_integration.cameras: '
     '"left:/left/image_rect:/left/detections,right:/right/image_rect:/right/detections" (optional '
     ':frame_id=F, :image_transport=compressed per camera); empty = the YAML\'s'),
    ('nodes', '', 'Several detector nodes in one process (perception-nodes): NAME[:NAMESPACE],...; '
     'empty = one node'),
    ('lifecycle', '', 'true = a lifecycle node, unconfigured until configured and activated; false = '
     'answering from the start; empty = the YAML\'s ros_integration.lifecycle'),
)


def _plan_to_actions(context, *args, **kwargs):
    def arg(name: str) -> str:
        return LaunchConfiguration(name).perform(context)

    plan = make_plan(arg('config'), model=arg('model'), log_level=arg('log_level'),
                     namespace=arg('namespace'), use_sim_time=arg('use_sim_time').lower() == 'true',
                     params_dir=arg('params_dir') or None, cameras=arg('cameras'),
                     overrides=lifecycle_override(arg('lifecycle')))
    if arg('nodes').strip():  # each --node names its own namespace: namespace:= does not apply
        node = Node(package=PACKAGE, executable=NODES_EXECUTABLE, exec_name=NODES_EXECUTABLE,
                    arguments=nodes_arguments(plan, arg('nodes')), additional_env=plan.env,
                    output='screen', emulate_tty=True)
    else:
        node = Node(
            package=PACKAGE, executable=EXECUTABLE, name=plan.node_name, namespace=plan.namespace or None,
            exec_name=plan.node_name, parameters=[str(plan.params_file)],
            arguments=['--ros-args', *plan.ros_arguments], additional_env=plan.env, output='screen',
            emulate_tty=True)

    def remove_params(*_args, **_kwargs):
        plan.remove_params()  # the node read the file at start; a temporary folder goes with it

    cleanup = [RegisterEventHandler(OnProcessExit(target_action=node, on_exit=[
                   OpaqueFunction(function=remove_params)])),
               RegisterEventHandler(OnShutdown(on_shutdown=[OpaqueFunction(function=remove_params)]))]
    return [LogInfo(msg=describe(plan)), *cleanup, node]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription(
        [DeclareLaunchArgument(name, default_value=default, description=description)
         for name, default, description in ARGUMENTS]
        + [OpaqueFunction(function=_plan_to_actions)])
