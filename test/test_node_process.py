"""``perception-nodes``: two detector nodes in one process and one executor, from one deployment
YAML with the shipped bundle, against a camera in another process.

The camera (this test's own rclpy context, a DDS participant of its own) publishes different
frames to both cameras' input topics; each node answers on its own output topic with its own
camera's headers, writes its own monitoring file, and the process stops on SIGINT with exit 0 and
no traceback. A second instance that cannot start (its own params file names a missing model)
ends the process with exit 2, a FATAL line naming that node, the first one closed.
A command line naming an instance that is not a --node, or a bad name, is a usage error (exit 2).
A node with ros_integration.lifecycle true runs as a lifecycle node beside a plain one.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
NODES = WORKSPACE / 'install/isaac_trt_perception/lib/isaac_trt_perception/perception-nodes'
SHIPPED_MODEL = WORKSPACE / 'install/perception/share/perception/models/detector/model.onnx'
READY = 'spinning 2 nodes in one executor'  # perception-nodes' last start-up line
START_TIMEOUT = 90.0  # both nodes' start-up on a loaded 2-core machine
FRAMES = 12           # per camera, 10 Hz: ~1.2 s of camera


@pytest.fixture(autouse=True)
def built() -> None:
    # make test promises these: their absence is a failure, not a skip
    assert NODES.is_file(), f'{NODES} is not built (make build)'
    assert SHIPPED_MODEL.is_file(), f'{SHIPPED_MODEL} is not installed (make train, make build)'


def deployment_yaml(tmp_path: Path, out: Path) -> Path:
    """The shipped YAML (model package://perception/models/detector) with per-instance output
    paths under ``out``, written at shutdown only (the periodic report pushed past the test)."""
    document = yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())
    section = document['deployment_config']
    section['runtime'].update(profile_output_path=str(out / '{node}' / 'profile.json'),
                              monitoring_output_path=str(out / '{node}' / 'monitoring.json'))
    section['logging'].update(log_path=str(out / '{node}' / 'node.log'), diagnostic_interval=3600.0)
    section['safety']['watchdog_timeout'] = 0.0
    path = tmp_path / 'deployment.yaml'
    path.write_text(yaml.safe_dump(document))
    return path


# cam_left: the YAML's absolute topics remapped; cam_right: its topics made relative by --param,
# so they resolve in its namespace. Both ways a user moves an instance's topics.
TWO_CAMERAS = ['--node', 'cam_left:/left', '--node', 'cam_right:/right',
               '--remap', 'cam_left:/camera/image_rect:=/left/image_rect',
               '--remap', 'cam_left:/object_detections:=/left/object_detections',
               '--param', 'cam_right:ros_integration.input_topic:=image_rect',
               '--param', 'cam_right:ros_integration.output_topic:=object_detections']
TOPICS = {'/left/cam_left': ('/left/image_rect', '/left/object_detections'),
          '/right/cam_right': ('/right/image_rect', '/right/object_detections')}


def wait_for_line(process: subprocess.Popen, output: Path, line: str) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while line not in output.read_text():
        if process.poll() is not None:
            pytest.fail(f'perception-nodes exited with {process.returncode}:\n{output.read_text()[-3000:]}')
        if time.monotonic() > deadline:
            pytest.fail(f'not up after {START_TIMEOUT} s:\n{output.read_text()[-3000:]}')
        time.sleep(0.05)


class Cameras:
    """Both cameras' publishers and both nodes' answers, in a context of the test's own."""

    def __init__(self, domain_id: int) -> None:
        import rclpy
        from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
        from sensor_msgs.msg import Image
        from vision_msgs.msg import Detection2DArray
        self.rclpy, self.Image = rclpy, Image
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('two_cameras', context=self.context)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        qos = QoSProfile(depth=1, reliability=ReliabilityPolicy.BEST_EFFORT, history=HistoryPolicy.KEEP_LAST)
        self.publishers = {fqn: self.node.create_publisher(Image, image, qos)
                           for fqn, (image, _) in TOPICS.items()}
        self.answers: dict[str, list[tuple[int, int, str]]] = {fqn: [] for fqn in TOPICS}
        for fqn, (_, detections) in TOPICS.items():
            self.node.create_subscription(Detection2DArray, detections, self._answered(fqn), qos)

    def _answered(self, fqn: str):
        def record(message) -> None:
            stamp = message.header.stamp
            self.answers[fqn].append((stamp.sec, stamp.nanosec, message.header.frame_id))
        return record

    def spin_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self.executor.spin_once(timeout_sec=0.02)

    def connect(self, process: subprocess.Popen) -> None:
        deadline = time.monotonic() + 30.0
        while not all(self.publishers[fqn].get_subscription_count() and self.node.count_publishers(out)
                      for fqn, (_, out) in TOPICS.items()):
            assert process.poll() is None and time.monotonic() < deadline, 'the nodes were not discovered'
            self.spin_for(0.05)
        self.spin_for(0.5)  # discovery settles in both directions

    def send(self) -> dict[str, list[tuple[int, int, str]]]:
        """FRAMES frames per camera, each camera its own frame_id, stamps and picture."""
        rng = np.random.default_rng(0)
        pixels = {fqn: rng.integers(0, 256, (480, 640 * 3), dtype=np.uint8).tobytes() for fqn in TOPICS}
        sent: dict[str, list[tuple[int, int, str]]] = {fqn: [] for fqn in TOPICS}
        for i in range(FRAMES):
            for k, fqn in enumerate(TOPICS):
                msg = self.Image(height=480, width=640, encoding='rgb8', step=640 * 3, data=pixels[fqn])
                msg.header.frame_id = f'{fqn.rsplit("/", 1)[1]}_optical_frame'
                msg.header.stamp.sec, msg.header.stamp.nanosec = 1_700_000_000 + 100 * k + i, 1000 * i + k
                self.publishers[fqn].publish(msg)
                sent[fqn].append((msg.header.stamp.sec, msg.header.stamp.nanosec, msg.header.frame_id))
            self.spin_for(0.1)
        self.spin_for(1.5)  # the last answers
        return sent

    def participants(self) -> dict[str, set[bytes]]:
        """The DDS participant (GUID prefix: the first 12 bytes of an endpoint's GID) of every
        publisher on each node's output topic."""
        return {fqn: {bytes(info.endpoint_gid[:12]) for info in self.node.get_publishers_info_by_topic(out)}
                for fqn, (_, out) in TOPICS.items()}

    def own_participant(self) -> bytes:
        return bytes(self.node.get_publishers_info_by_topic(TOPICS['/left/cam_left'][0])[0].endpoint_gid[:12])

    def close(self) -> None:
        self.node.destroy_node()
        self.rclpy.try_shutdown(context=self.context)


@contextlib.contextmanager
def nodes_process(arguments: list[str], output: Path, ros_env: dict) -> Iterator[subprocess.Popen]:
    """perception-nodes with ``arguments``, its console in ``output``; killed if a test leaves it up."""
    with output.open('w') as sink:
        process = subprocess.Popen([str(NODES), *arguments], env=ros_env, stdout=sink,
                                   stderr=subprocess.STDOUT)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


def interrupt(process: subprocess.Popen) -> int:
    process.send_signal(signal.SIGINT)
    return process.wait(timeout=20)


def own_answers(cameras: Cameras, sent: dict[str, list[tuple[int, int, str]]], fqn: str, text: str
                ) -> list[tuple[int, int, str]]:
    """Node ``fqn``'s answers: best effort, depth 1, two models on 2 shared cores, so not every
    frame, but most, and only its own camera's (its frame_id and stamps, none of the other's)."""
    answers = cameras.answers[fqn]
    assert len(answers) >= FRAMES // 2, (fqn, len(answers), text[-2000:])
    assert set(answers) <= set(sent[fqn]), (fqn, answers, sent[fqn])
    return answers


def clean_exit_output(returncode: int, output: Path, expected: int = 0) -> str:
    text = output.read_text()
    assert returncode == expected, f'exit code {returncode}:\n{text[-3000:]}'
    assert 'Traceback' not in text and 'KeyboardInterrupt' not in text, text[-3000:]
    return text


def test_two_nodes_in_one_process_answer_their_own_cameras_and_stop_cleanly(
        tmp_path: Path, ros_env: dict, ros_domain_id: int) -> None:
    out = tmp_path / 'out'
    output = tmp_path / 'output.txt'
    config = deployment_yaml(tmp_path, out)
    cameras = Cameras(ros_domain_id)
    try:
        with nodes_process(['--config', str(config), *TWO_CAMERAS], output, ros_env) as process:
            wait_for_line(process, output, READY)
            cameras.connect(process)
            sent = cameras.send()
            participants = cameras.participants()
            own = cameras.own_participant()
            returncode = interrupt(process)
    finally:
        cameras.close()
    text = clean_exit_output(returncode, output)

    for fqn in TOPICS:
        answers = own_answers(cameras, sent, fqn, text)
        monitoring = json.loads((out / fqn.strip('/').replace('/', '.') / 'monitoring.json').read_text())
        assert monitoring['node'] == fqn and monitoring['backend'].startswith('onnxruntime'), monitoring
        assert monitoring['frames_processed'] >= len(answers), monitoring
        assert f'[{fqn.strip("/").replace("/", ".")}]' in text  # each logs under its own name
    # the topics as each node resolved them: remapped for one, relative in its namespace for the other
    assert '/left/image_rect -> /left/object_detections' in text
    assert '/right/image_rect -> /right/object_detections' in text
    # one context, one DDS participant (Fast DDS, Kilted): both nodes' publishers share the GUID
    # prefix; the camera's process is a participant of its own
    assert len(participants['/left/cam_left']) == 1 and participants['/left/cam_left'] == \
        participants['/right/cam_right'], participants
    assert own not in participants['/left/cam_left']


def test_a_node_that_cannot_start_names_itself_and_the_process_exits_2(tmp_path: Path, ros_env: dict) -> None:
    out = tmp_path / 'out'
    missing = tmp_path / 'nowhere' / 'model.onnx'
    own = tmp_path / 'cam_right.params.yaml'  # a params file for that node only, over the shared YAML
    own.write_text(yaml.safe_dump({'/right/cam_right': {'ros__parameters': {
        'model': {'path': str(missing)}}}}))
    command = [str(NODES), '--config', str(deployment_yaml(tmp_path, out)), *TWO_CAMERAS,
               '--node-params', f'cam_right:{own}']
    result = subprocess.run(command, env=ros_env, capture_output=True, text=True, timeout=90, check=False)
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert 'Traceback' not in output, output
    fatal = [line for line in output.splitlines() if '[FATAL]' in line]
    assert len(fatal) == 1 and '/right/cam_right did not start' in fatal[0] \
        and f'model.path {missing} does not exist' in fatal[0] and '(/left/cam_left)' in fatal[0], output
    # the node started first was closed: its final files written
    assert json.loads((out / 'left.cam_left' / 'monitoring.json').read_text())['node'] == '/left/cam_left'
    assert not (out / 'right.cam_right' / 'monitoring.json').exists()


@pytest.mark.parametrize(('arguments', 'message'), [
    (['--node', 'cam_left', '--remap', 'cam_x:/a:=/b'], "--remap cam_x:/a:=/b: 'cam_x' is not a --node"),
    (['--node', 'cam_left', '--node', 'cam_left:/other'], "'cam_left' is given twice"),
    (['--node', 'cam-left'], "node name 'cam-left'"),
    (['--node', 'cam_left', '--param', 'cam_left:model.path'], 'expected NAME:KEY:=VALUE'),
])
def test_a_bad_command_line_is_a_usage_error_naming_the_argument(ros_env: dict, arguments: list[str],
                                                                 message: str) -> None:
    result = subprocess.run([str(NODES), *arguments], env=ros_env, capture_output=True, text=True,
                            timeout=30, check=False)
    assert result.returncode == 2 and message in result.stderr, result.stdout + result.stderr
    assert 'Traceback' not in result.stderr, result.stderr


def test_a_lifecycle_node_beside_a_plain_one_in_one_process(tmp_path: Path, ros_env: dict,
                                                             ros_domain_id: int) -> None:
    """cam_right with ros_integration.lifecycle true (its own --param) starts unconfigured and
    answers only once configured and activated over its own lifecycle services, while cam_left,
    a plain node, answers from the start; SIGINT runs cam_right's shutdown transition, exit 0."""
    from lifecycle_msgs.msg import Transition
    from lifecycle_msgs.srv import ChangeState, GetState

    out = tmp_path / 'out'
    output = tmp_path / 'output.txt'
    config = deployment_yaml(tmp_path, out)
    cameras = Cameras(ros_domain_id)
    get = cameras.node.create_client(GetState, '/right/cam_right/get_state')
    change = cameras.node.create_client(ChangeState, '/right/cam_right/change_state')

    def call(client, request):
        assert client.wait_for_service(timeout_sec=30.0), f'{client.srv_name} not offered'
        future = client.call_async(request)
        deadline = time.monotonic() + 60.0
        while not future.done():
            assert time.monotonic() < deadline, f'no answer from {client.srv_name}'
            cameras.spin_for(0.02)
        return future.result()

    def transition(transition_id: int) -> bool:
        return call(change, ChangeState.Request(transition=Transition(id=transition_id))).success

    try:
        arguments = ['--config', str(config), *TWO_CAMERAS,
                     '--param', 'cam_right:ros_integration.lifecycle:=true']
        with nodes_process(arguments, output, ros_env) as process:
            wait_for_line(process, output, READY)
            assert call(get, GetState.Request()).current_state.label == 'unconfigured'
            assert cameras.publishers['/right/cam_right'].get_subscription_count() == 0  # not subscribed
            assert cameras.publishers['/left/cam_left'].get_subscription_count() == 1  # answering
            assert transition(Transition.TRANSITION_CONFIGURE)
            assert transition(Transition.TRANSITION_ACTIVATE)
            assert call(get, GetState.Request()).current_state.label == 'active'
            cameras.connect(process)
            sent = cameras.send()
            returncode = interrupt(process)
    finally:
        cameras.close()
    text = clean_exit_output(returncode, output)
    for fqn in TOPICS:
        own_answers(cameras, sent, fqn, text)
    assert 'finalized (shutdown from active)' in text, text[-3000:]
    assert 'runs a plain node' not in text  # the lifecycle node is one, not a warned plain node
