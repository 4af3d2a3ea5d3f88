"""The bringup starts the real node as jetson.launch.py would (launch plan -> plain process) and
the node ends up with exactly the deployment YAML's parameters, name and namespace.

This is the launch file's behaviour without the ``launch`` package: the launch file turns the
same plan into a launch_ros Node action.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WORKSPACE / 'src/perception_core/test'))  # probe_bundle
from probe_bundle import write_probe_bundle  # noqa: E402  # isort: skip
NODE = WORKSPACE / 'install/isaac_trt_perception/lib/isaac_trt_perception/isaac_trt_perception_node'
if not NODE.is_file():  # make test builds it: its absence is a failure, not a skip
    pytest.fail(f'{NODE} is missing: make build builds it', pytrace=False)

import rclpy  # noqa: E402
from rclpy.parameter_client import AsyncParameterClient  # noqa: E402

from perception.launch_plan import make_plan  # noqa: E402
from perception.node_process import running_node  # noqa: E402


def plain(value: object) -> object:
    return value if isinstance(value, (bool, int, float, str)) else list(value)  # type: ignore[call-overload]


def answer(executor, future):
    executor.spin_until_future_complete(future, timeout_sec=30.0)
    assert future.done(), 'no answer from the node\'s parameter service'
    return future.result()


def test_node_gets_the_yaml_parameters_name_and_namespace(tmp_path: Path, ros_env: dict,
                                                          ros_domain_id: int) -> None:
    document = yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())
    runtime = document['deployment_config']['runtime']
    runtime.update(profile_output_path=str(tmp_path / 'profile.json'),
                   monitoring_output_path=str(tmp_path / 'monitoring.json'))
    document['deployment_config']['logging']['log_path'] = str(tmp_path / 'node_file.log')
    document['deployment_config']['model']['path'] = str(write_probe_bundle(tmp_path / 'bundle'))
    config = tmp_path / 'deployment.yaml'
    config.write_text(yaml.safe_dump(document))
    # no params_dir, as the launch file by default: the plan's own temporary folder, gone at the end
    plan = make_plan(config, namespace='robot1', log_level='debug',
                     middleware_config_dir=WORKSPACE / 'config')
    assert plan.temporary_dir is not None and plan.params_file.parent == plan.temporary_dir

    context = rclpy.Context()
    rclpy.init(context=context, domain_id=ros_domain_id)
    try:
        with running_node(plan, tmp_path / 'node.log', ros_env):
            checker = rclpy.create_node('bringup_checker', context=context)
            executor = rclpy.executors.SingleThreadedExecutor(context=context)
            executor.add_node(checker)
            client = AsyncParameterClient(checker, '/robot1/isaac_trt_perception')
            assert client.wait_for_services(timeout_sec=60), (tmp_path / 'node.log').read_text()
            names = answer(executor, client.list_parameters([], 0)).result.names
            values = answer(executor, client.get_parameters(names)).values
            seen = {n: plain(rclpy.parameter.parameter_value_to_python(v)) for n, v in zip(names, values,
                                                                                           strict=True)}
            checker.destroy_node()
    finally:
        rclpy.try_shutdown(context=context)
    for name, value in plan.config.values.items():
        assert seen.get(name) == value, name
    assert seen['logging.level'] == 'DEBUG'
    assert not plan.temporary_dir.exists(), 'the launch params folder outlived the node'
