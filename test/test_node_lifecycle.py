"""The lifecycle node (ros_integration.lifecycle: true): the colcon-built node executable as its own
process, driven over its real lifecycle services (lifecycle_msgs ChangeState / GetState) from this
process, a camera stream from a perception_bench.frame_source process running through every state.

What each state does is seen from outside: answers on /object_detections (by arrival time), the
node's subscription to the camera topic in the ROS graph, /diagnostics, the log file (a model load
and warm-up are log lines: their count says whether activating again re-loaded), the final
monitoring file, the exit code.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
from test_node_e2e import SHIPPED, deployment, scenes, start_node, stop_node, wait_for

import rclpy  # isort: skip
from diagnostic_msgs.msg import DiagnosticArray
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rcl_interfaces.srv import SetParameters
from rclpy.parameter import Parameter
from rclpy.qos import QoSProfile, ReliabilityPolicy
from vision_msgs.msg import Detection2DArray

from perception_bench.frame_source import save_frames

NODE_NAME = '/isaac_trt_perception'
CAMERA = '/camera/image_rect'
LOADED = 'backend onnxruntime: '  # startup.load_detector's line, once per model load
WARMED = 'warmed up for '         # startup.warm_up's, once per warm-up image size


class Manager:
    """This test's ROS side: a lifecycle manager's service clients, and ears for the node's output."""

    def __init__(self, domain_id: int) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('lifecycle_manager', context=self.context)
        self.arrivals: list[float] = []  # time.monotonic() of every Detection2DArray heard
        self.diagnostics: list[Any] = []
        self.node.create_subscription(Detection2DArray, '/object_detections',
                                      lambda _: self.arrivals.append(time.monotonic()),
                                      QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT))
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self.diagnostics.append, 50)
        self.change = self.node.create_client(ChangeState, f'{NODE_NAME}/change_state')
        self.get = self.node.create_client(GetState, f'{NODE_NAME}/get_state')
        self.set_params = self.node.create_client(SetParameters, f'{NODE_NAME}/set_parameters')
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def call(self, client: Any, request: Any, timeout: float = 60.0) -> Any:
        assert client.wait_for_service(timeout_sec=30.0), f'{client.srv_name} not offered'
        future = client.call_async(request)
        deadline = time.monotonic() + timeout
        while not future.done():
            assert time.monotonic() < deadline, f'no answer from {client.srv_name} in {timeout} s'
            time.sleep(0.02)
        return future.result()

    def state(self) -> str:
        return self.call(self.get, GetState.Request()).current_state.label

    def transition(self, transition_id: int) -> bool:
        return self.call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success

    def subscribers(self) -> int:
        return self.node.count_subscribers(CAMERA)

    def answers_since(self, start: float) -> int:
        return sum(t >= start for t in self.arrivals)

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


@pytest.fixture
def manager(ros_domain_id: int) -> Iterator[Manager]:
    ears = Manager(ros_domain_id)
    yield ears
    ears.close()


@pytest.fixture
def camera(tmp_path: Path, ros_env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """frame_source at 10 Hz for the whole test, waiting for no subscriber: frames reach the node
    only while it is subscribed, as from a camera driver that runs all along."""
    npz = save_frames(tmp_path / 'camera.npz', scenes(5, 640, 480, 'rgb8'))
    source = subprocess.Popen([sys.executable, '-m', 'perception_bench.frame_source', str(npz),
                               '--rate', '10', '--repeat', '1000', '--wait-for', '0'], env=ros_env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    yield source
    source.kill()
    source.wait()


def lifecycle_params(tmp: Path, model: Path = SHIPPED, **changes: Any) -> Path:
    return deployment(tmp, model, ros_integration__lifecycle=True, **changes)


def interrupt(node: subprocess.Popen) -> int:
    node.send_signal(signal.SIGINT)
    return node.wait(timeout=30)


def assert_clean_exit(returncode: int, output: str) -> None:
    assert returncode == 0, output
    assert 'Traceback' not in output and 'KeyboardInterrupt' not in output, output


def count(log: Path, line: str) -> int:
    return log.read_text().count(line) if log.is_file() else 0


def quiet_for(manager: Manager, seconds: float) -> None:
    """No answer arrives within ``seconds`` (after a moment for one already on its way)."""
    time.sleep(0.3)
    start = time.monotonic()
    time.sleep(seconds)
    assert manager.answers_since(start) == 0, f'{manager.answers_since(start)} answers while not active'


@pytest.mark.slow
def test_each_transition_and_what_the_node_does_in_each_state(tmp_path, ros_env, manager, camera):
    log = tmp_path / 'node.log'
    node = start_node(lifecycle_params(tmp_path), ros_env)
    try:
        assert manager.state() == 'unconfigured'
        assert not log.exists(), 'unconfigured, yet the log file was opened: configure ran at start'
        quiet_for(manager, 1.0)
        assert manager.subscribers() == 0 and not manager.diagnostics

        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == 'inactive'
        loads, warm_ups = count(log, LOADED), count(log, WARMED)
        assert loads == 1 and warm_ups >= 1, log.read_text()
        quiet_for(manager, 1.0)
        assert manager.subscribers() == 0 and not manager.diagnostics  # /diagnostics: while active

        start = time.monotonic()
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        assert manager.state() == 'active'
        wait_for(lambda: manager.answers_since(start) >= 5, 20, 'answers once active', node)
        assert manager.subscribers() == 1
        wait_for(lambda: manager.diagnostics, 5, '/diagnostics while active', node)

        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.state() == 'inactive'
        wait_for(lambda: manager.subscribers() == 0, 5, 'the camera subscription to go', node)
        quiet_for(manager, 1.5)
        status = manager.diagnostics[-1].status[0]  # the one report deactivate sends
        assert status.level[0] == 0 and status.message.startswith('inactive'), status

        start = time.monotonic()
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        # at once: the model stayed loaded; the first frames after the subscription matches are answered
        wait_for(lambda: manager.answers_since(start) >= 3, 5, 'answers after activating again', node)
        assert (count(log, LOADED), count(log, WARMED)) == (loads, warm_ups), 're-loaded on activate'

        assert manager.transition(Transition.TRANSITION_DEACTIVATE)
        assert manager.transition(Transition.TRANSITION_CLEANUP)
        assert manager.state() == 'unconfigured'
        text = log.read_text()
        assert 'cleaning up: closing backend onnxruntime' in text, text
        monitoring = json.loads((tmp_path / 'monitoring.json').read_text())  # the final files
        assert monitoring['frames_processed'] >= 8, monitoring
        quiet_for(manager, 1.0)

        # shutdown ends the process by itself; its answer may be lost as the process goes
        manager.change.call_async(ChangeState.Request(transition=Transition(
            id=Transition.TRANSITION_UNCONFIGURED_SHUTDOWN)))
        returncode = node.wait(timeout=20)
    finally:
        output = stop_node(node)
    assert returncode == 0, output
    assert 'finalized (shutdown from unconfigured)' in output and 'Traceback' not in output, output


@pytest.mark.slow
def test_failed_configure_then_configure_again_and_sigint_while_active(tmp_path, ros_env, manager, camera):
    # reports only at shutdown (no periodic write, no watchdog), so the file proves the final write
    params = lifecycle_params(tmp_path, logging__diagnostic_interval=3600.0, safety__watchdog_timeout=0.0)
    document = yaml.safe_load(params.read_text())
    (values,) = [node['ros__parameters'] for node in document.values()]
    missing = tmp_path / 'nowhere' / 'model.onnx'
    values['model']['path'] = str(missing)
    params.write_text(yaml.safe_dump(document))
    node = start_node(params, ros_env)
    try:
        assert manager.state() == 'unconfigured'
        assert not manager.transition(Transition.TRANSITION_CONFIGURE)
        assert manager.state() == 'unconfigured'
        assert f'configure failed: model.path {missing} does not exist' in (tmp_path / 'node.log').read_text()

        # unconfigured: parameters may change, read at the next configure
        fixed = Parameter('model.path', value=str(SHIPPED)).to_parameter_msg()
        result = manager.call(manager.set_params, SetParameters.Request(parameters=[fixed]))
        assert result.results[0].successful, result
        assert manager.transition(Transition.TRANSITION_CONFIGURE)
        refused = manager.call(manager.set_params, SetParameters.Request(parameters=[fixed]))
        assert not refused.results[0].successful  # configured: read at start only
        start = time.monotonic()
        assert manager.transition(Transition.TRANSITION_ACTIVATE)
        wait_for(lambda: manager.answers_since(start) >= 3, 20, 'answers once active', node)
        assert not (tmp_path / 'monitoring.json').exists()
        returncode = interrupt(node)
    finally:
        output = stop_node(node)
    assert_clean_exit(returncode, output)
    error = next(line for line in output.splitlines() if 'configure failed' in line)
    assert '[ERROR]' in error and 'model.path' in error, error
    assert 'finalized (shutdown from active)' in output, output
    monitoring = json.loads((tmp_path / 'monitoring.json').read_text())
    assert monitoring['frames_processed'] >= 3, monitoring


@pytest.mark.slow
def test_sigint_during_a_long_configure_ends_it_and_the_process(tmp_path, ros_env, manager):
    """A configure that takes long (an engine build, here warm-ups for many large camera images) is
    cut short by SIGINT, as a plain node's start-up is: configure fails with what it built released,
    the shutdown transition runs, the process exits 0 without a traceback."""
    sizes = [f'{4096 - 8 * i}x3072 rgb8' for i in range(40)]  # each a full frame through the node
    params = lifecycle_params(tmp_path, runtime__warmup_images=', '.join(sizes))
    log = tmp_path / 'node.log'
    node = start_node(params, ros_env)
    try:
        assert manager.state() == 'unconfigured'
        manager.change.call_async(ChangeState.Request(transition=Transition(id=Transition.TRANSITION_CONFIGURE)))
        # the network's own size is warmed up first; the 40 camera sizes after it
        wait_for(lambda: count(log, WARMED) >= 2, 60, 'the first warm-ups of configure', node)
        returncode = interrupt(node)
    finally:
        output = stop_node(node)
    assert_clean_exit(returncode, output)
    text = log.read_text()
    assert 'SIGINT during configure: stopping' in text, text
    assert count(log, WARMED) < 1 + len(sizes), text  # it stopped inside the warm-ups
    assert 'configured: model loaded' not in text, text
    assert 'finalized (shutdown from unconfigured)' in output, output
