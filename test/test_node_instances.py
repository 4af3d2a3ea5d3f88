"""Several node instances from one deployment YAML, as on a robot with two cameras: each writes
its own files, names itself in its log lines and on /diagnostics, prints its topics as remapped,
and the perception-params file starts a node of any name. Plus the start-up error for a model.path
that does not exist.

Real node processes on a ROS domain of the test's own; what is asserted cannot be lost over DDS
(/diagnostics is reliable and repeats every interval; the files are written at shutdown).
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(WORKSPACE / 'src/perception_core/test'))  # probe_bundle
from probe_bundle import write_probe_bundle  # noqa: E402  # isort: skip
NODE = WORKSPACE / 'install/isaac_trt_perception/lib/isaac_trt_perception/isaac_trt_perception_node'
SHIPPED_MODEL = WORKSPACE / 'install/perception/share/perception/models/detector/model.onnx'
START_TIMEOUT = 90.0  # seconds for both nodes to start on a loaded 2-core machine


@pytest.fixture(autouse=True)
def built_node() -> None:
    # make test promises these: their absence is a failure, not a skip
    assert NODE.is_file(), f'{NODE} is not built (make build)'


def deployment_yaml(tmp_path: Path, model: str, out: Path) -> Path:
    """The shipped YAML with the model given and the per-instance output paths under ``out``."""
    document = yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())
    section = document['deployment_config']
    section['model']['path'] = model
    section['runtime'].update(profile_output_path=str(out / '{node}' / 'profile.json'),
                              monitoring_output_path=str(out / '{node}' / 'monitoring.json'))
    section['logging'].update(log_path=str(out / '{node}' / 'node.log'), diagnostic_interval=0.5)
    path = tmp_path / 'deployment.yaml'
    path.write_text(yaml.safe_dump(document))
    return path


def perception_params(config: Path, output: Path) -> Path:
    from perception.params import main
    assert main([str(config), '-o', str(output)]) == 0
    return output


def start(arguments: list[str], env: dict, log: Path) -> subprocess.Popen:
    with log.open('w') as out:
        return subprocess.Popen([str(NODE), '--ros-args', *arguments], env=env, stdout=out,
                                stderr=subprocess.STDOUT)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    return process.returncode


class Diagnostics:
    """/diagnostics statuses by name, heard by a node of the test's own."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        self.rclpy = rclpy
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('instances_listener', context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.statuses: dict[str, object] = {}
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._heard, 50)

    def _heard(self, message) -> None:
        for status in message.status:
            self.statuses[status.name] = status

    def wait_for(self, names: set[str], processes: dict[str, tuple[subprocess.Popen, Path]]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not names <= set(self.statuses) and time.monotonic() < deadline:
            self.executor.spin_once(timeout_sec=0.2)
            for name, (process, log) in processes.items():
                if process.poll() is not None:
                    pytest.fail(f'{name} exited with {process.returncode}:\n{log.read_text()[-3000:]}')
        assert names <= set(self.statuses), f'heard {sorted(self.statuses)}, expected {sorted(names)}'

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


def test_two_instances_from_one_yaml_keep_their_files_names_and_topics_apart(
        tmp_path: Path, ros_env: dict, ros_domain_id: int) -> None:
    out = tmp_path / 'out'
    config = deployment_yaml(tmp_path, str(write_probe_bundle(tmp_path / 'bundle')), out)
    params = perception_params(config, tmp_path / 'params.yaml')
    # one renamed instance with its camera remapped, one moved into a namespace: both from one file
    instances = {
        '/cam_left': ['--params-file', str(params), '-r', '__node:=cam_left',
                      '-r', '/camera/image_rect:=/left/image_rect'],
        '/right/isaac_trt_perception': ['--params-file', str(params), '-r', '__ns:=/right'],
    }
    listener = Diagnostics(ros_domain_id)
    processes = {}
    try:
        for fqn, arguments in instances.items():
            console = tmp_path / f'{fqn.strip("/").replace("/", ".")}.console'
            processes[fqn] = (start(arguments, ros_env, console), console)
        # both run at once, each reporting under its own name
        listener.wait_for({f'{fqn}: detector' for fqn in instances}, processes)
        for _ in range(10):  # a few more seconds side by side: several file rewrites each
            listener.executor.spin_once(timeout_sec=0.2)
            time.sleep(0.1)
    finally:
        codes = {fqn: stop(process) for fqn, (process, _) in processes.items()}
        listener.close()
    for fqn, (_, console) in processes.items():
        assert codes[fqn] == 0, console.read_text()[-3000:]

    hardware_ids = {listener.statuses[f'{fqn}: detector'].hardware_id for fqn in instances}
    assert len(hardware_ids) == 2 and all(any(fqn in h for h in hardware_ids) for fqn in instances)
    topics = {'/cam_left': '/left/image_rect', '/right/isaac_trt_perception': '/camera/image_rect'}
    files = set()
    for fqn in instances:
        folder = out / fqn.strip('/').replace('/', '.')  # {node}
        for name in ('profile.json', 'monitoring.json'):
            document = json.loads((folder / name).read_text())
            assert document['node'] == fqn, (folder / name, document['node'])
            files.add(folder / name)
        log = (folder / 'node.log').read_text()
        files.add(folder / 'node.log')
        lines = log.splitlines()
        assert lines and all(f' [{fqn}] ' in line for line in lines), log
        # the subscription's real (remapped) name, not the YAML's
        assert f'{topics[fqn]} -> /object_detections' in log, log
        console = processes[fqn][1].read_text()
        assert f'[{fqn.strip("/").replace("/", ".")}]' in console  # the ROS logger's name for the node
        assert f'{topics[fqn]} -> /object_detections' in console
    assert len(files) == 6


def test_perception_params_file_and_package_default_start_a_renamed_node(
        tmp_path: Path, ros_env: dict, ros_domain_id: int) -> None:
    """The shipped YAML's package:// model through perception-params, and the node's own package://
    default with no params file at all: both start a node renamed with -r __node:=."""
    assert SHIPPED_MODEL.is_file(), f'{SHIPPED_MODEL} is not installed (make train, make build)'
    out = tmp_path / 'out'
    params = perception_params(deployment_yaml(tmp_path, 'package://perception/models/detector/model.onnx',
                                               out), tmp_path / 'params.yaml')
    assert str(SHIPPED_MODEL) in params.read_text()  # resolved once, absolute in the file
    no_file = [f'{key}:={out / "{node}" / name}' for key, name in (
        ('runtime.profile_output_path', 'profile.json'),
        ('runtime.monitoring_output_path', 'monitoring.json'), ('logging.log_path', 'node.log'))]
    instances = {
        '/cam_front': ['--params-file', str(params), '-r', '__node:=cam_front'],
        '/cam_back': ['-r', '__node:=cam_back', '-p', 'logging.diagnostic_interval:=0.5',
                      *[part for value in no_file for part in ('-p', value)]],
    }
    listener = Diagnostics(ros_domain_id)
    processes = {}
    try:
        for fqn, arguments in instances.items():
            console = tmp_path / f'{fqn.strip("/")}.console'
            processes[fqn] = (start(arguments, ros_env, console), console)
        listener.wait_for({f'{fqn}: detector' for fqn in instances}, processes)
    finally:
        codes = {fqn: stop(process) for fqn, (process, _) in processes.items()}
        listener.close()
    for fqn, (_, console) in processes.items():
        assert codes[fqn] == 0, console.read_text()[-3000:]
        monitoring = json.loads((out / fqn.strip('/') / 'monitoring.json').read_text())
        assert monitoring['node'] == fqn and monitoring['backend'].startswith('onnxruntime'), monitoring


@pytest.mark.parametrize(('model', 'message'), [
    ('{tmp}/nowhere/model.onnx', 'model.path {tmp}/nowhere/model.onnx does not exist'),
    ('package://perception/models/nowhere/model.onnx',
     'model.path {share}/models/nowhere/model.onnx (from package://perception/models/nowhere/model.onnx) '
     'does not exist'),
    ('package://no_such_package/model.onnx',
     "model.path not resolved: 'package://no_such_package/model.onnx': package 'no_such_package' is not "
     'in the ament index'),
])
def test_a_model_path_that_does_not_exist_is_a_fatal_naming_it(tmp_path: Path, ros_env: dict, model: str,
                                                              message: str) -> None:
    share = SHIPPED_MODEL.parents[2]
    model, message = (text.format(tmp=tmp_path, share=share) for text in (model, message))
    command = [str(NODE), '--ros-args', '-r', '__node:=cam_missing', '-p', f'model.path:={model}',
               '-p', f'logging.log_path:={tmp_path / "node.log"}']
    result = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=60, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert '[FATAL]' in output and message in output, output
    assert 'model.json' not in output, output
