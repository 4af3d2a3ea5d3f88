"""Several cameras in one node (ros_integration.cameras): the colcon-built node as its own process,
each camera a perception_bench.frame_source process of its own, answers heard here over real DDS.

Every frame is answered on its own camera's output topic with its own header (stamp, frame_id, or
the camera's frame_id override); the batched detections equal what the one-camera node publishes
for the same frames (the reference: a one-camera node run on them); a camera going silent is named
on /diagnostics while the others keep being answered.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

WORKSPACE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))
from test_node_e2e import NODE, SHIPPED, publish, scenes, start_node, stop_node, wait_for  # noqa: E402

import rclpy  # noqa: E402  # isort: skip
from diagnostic_msgs.msg import DiagnosticArray  # noqa: E402
from rclpy.qos import QoSProfile, ReliabilityPolicy  # noqa: E402
from vision_msgs.msg import Detection2DArray  # noqa: E402

from perception.params import write_params_file  # noqa: E402
from perception_core.deployment import load_config  # noqa: E402

RELIABLE = {'reliability': 'reliable', 'durability': 'volatile', 'history': 'keep_last', 'depth': 10}
CAMERAS = [
    {'name': 'left', 'input_topic': '/left/image_rect', 'output_topic': '/left/detections'},
    {'name': 'right', 'input_topic': '/right/image_rect', 'output_topic': '/right/detections',
     'frame_id': 'right_optical_override'},
    {'name': 'back', 'input_topic': '/back/image_rect', 'output_topic': '/back/detections'},
]
assert NODE.is_file()


def params(tmp: Path, cameras: list[dict] | None, **safety: Any) -> Path:
    tmp.mkdir(parents=True, exist_ok=True)
    document = yaml.safe_load((WORKSPACE / 'config/jetson_deployment.yaml').read_text())
    config = document['deployment_config']
    config['runtime'].update(profile_output_path=str(tmp / 'profile.json'),
                             monitoring_output_path=str(tmp / 'monitoring.json'), inference_frequency=0)
    config['logging'].update(log_path=str(tmp / 'node.log'), diagnostic_interval=0.5)
    config['safety'].update(safety)
    config['ros_integration']['qos_profile'] = RELIABLE
    if cameras is not None:
        config['ros_integration']['cameras'] = cameras
    source = tmp / 'deployment.yaml'
    source.write_text(yaml.safe_dump(document))
    return write_params_file(load_config(source, model_override=str(SHIPPED)), tmp / 'params.yaml')


class Ears:
    """Detections on every output topic and /diagnostics, spun in a thread."""

    def __init__(self, domain_id: int, topics: list[str], best_effort: tuple[str, ...] = ()) -> None:
        self.context = rclpy.Context()
        rclpy.init(context=self.context, domain_id=domain_id)
        self.node = rclpy.create_node('cameras_listener', context=self.context)
        self.answers: dict[str, list[Any]] = {t: [] for t in topics}
        for topic in topics:  # a reliable subscription matches no best-effort publisher
            qos = QoSProfile(depth=100, reliability=ReliabilityPolicy.BEST_EFFORT if topic in best_effort
                             else ReliabilityPolicy.RELIABLE)
            self.node.create_subscription(Detection2DArray, topic, self.answers[topic].append, qos)
        self.statuses: dict[str, Any] = {}  # the last heard of each name
        self.reports: list[dict[str, Any]] = []  # every /diagnostics message, by status name
        self.node.create_subscription(DiagnosticArray, '/diagnostics', self._heard, 50)
        self.executor = rclpy.executors.SingleThreadedExecutor(context=self.context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _heard(self, message: Any) -> None:
        self.reports.append({s.name: s for s in message.status})
        for status in message.status:
            self.statuses[status.name] = status

    def by_stamp(self, topic: str) -> dict[int, Any]:
        return {m.header.stamp.sec * 10**9 + m.header.stamp.nanosec: m for m in self.answers[topic]}

    def close(self) -> None:
        self.executor.shutdown()
        self.node.destroy_node()
        rclpy.try_shutdown(context=self.context)


def publish_all(frames: dict[str, list], tmp: Path, env: dict, rate: float,
                reliability: dict[str, str] | None = None) -> dict[str, list]:
    """One frame_source process per camera, all at once (reliable unless ``reliability`` names the
    camera); each one's published stamps."""
    sent: dict[str, list] = {}
    threads = [threading.Thread(target=lambda n=name: sent.__setitem__(n, publish(
        frames[n], tmp, env, n, rate=rate, topic=f'/{n}/image_rect', frame_id=f'{n}_optical',
        reliability=(reliability or {}).get(n, 'reliable'), depth='10'))) for name in frames]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sent


def detections(message: Any) -> list[tuple]:
    return [(d.results[0].hypothesis.class_id, round(d.results[0].hypothesis.score, 4),
             *(round(v, 2) for v in (d.bbox.center.position.x, d.bbox.center.position.y, d.bbox.size_x,
                                     d.bbox.size_y))) for d in message.detections]


def run_node(param_file: Path, env: dict, ears: Ears, frames: dict[str, list], *, tmp: Path,
             rate: float = 8.0, reliability: dict[str, str] | None = None) -> tuple[dict[str, list], str]:
    ears.statuses.clear()  # this node's statuses, not a previous one's
    node = start_node(param_file, env)
    try:
        wait_for(lambda: 'ready' if any(k.endswith(': detector') for k in ears.statuses) else '', 90,
                 'the node on /diagnostics', node)
        # and its detections publishers matched here, so the first answer is not sent to no one
        outputs = [t for t in ears.answers if t != '/object_detections'] if len(frames) > 1 else \
            ['/object_detections']
        wait_for(lambda: all(ears.node.count_publishers(t) for t in outputs), 30, 'detection publishers',
                 node)
        time.sleep(0.5)
        sent = publish_all(frames, tmp, env, rate, reliability)
        time.sleep(1.5)
    finally:
        output = stop_node(node)
    assert node.returncode == 0, output[-3000:]
    return sent, output


def test_cameras_answered_on_their_topics_equal_to_the_one_camera_node(tmp_path, ros_env, ros_domain_id):
    frames = {'left': scenes(8, 640, 480, 'rgb8', seed=3), 'right': scenes(8, 1280, 720, 'bgr8', seed=4),
              'back': scenes(8, 320, 240, 'rgb8', seed=5)}
    ears = Ears(ros_domain_id, [c['output_topic'] for c in CAMERAS] + ['/object_detections'])
    try:
        sent, output = run_node(params(tmp_path / 'three', CAMERAS), ros_env, ears, frames, tmp=tmp_path)
        assert '3 cameras (left: /left/image_rect -> /left/detections' in output, output[-3000:]
        assert 'batch up to 8' in output, output[-3000:]
        # three cameras: every batch they can make is warmed up too, so their first batch is not the slow one
        assert 'warmed up for 320x256 rgb8 (and batches of 2-3) in' in output, output[-3000:]
        batched, missing = {}, {}
        for camera in CAMERAS:
            name, answers = camera['name'], ears.by_stamp(camera['output_topic'])
            frame_id = camera.get('frame_id', f'{name}_optical')
            missing[name] = [s['index'] for s in sent[name] if s['stamp_ns'] not in answers]
            for s in sent[name]:
                if s['stamp_ns'] in answers:
                    assert answers[s['stamp_ns']].header.frame_id == frame_id
                    batched[name, s['index']] = detections(answers[s['stamp_ns']])
        # every frame answered, but for those the newest-wins slot replaced before the worker took
        # them (the node counts them: its first 1280x720 frame on a loaded 2-core machine, as in CI)
        dropped = json.loads((tmp_path / 'three' / 'monitoring.json').read_text())['dropped']
        assert sum(map(len, missing.values())) <= dropped.get('newer_frame', 0), (
            f'unanswered frames by camera {missing}; the node counted as dropped {dropped}')
        assert all(len(m) <= len(sent[n]) // 4 for n, m in missing.items()), missing  # still served
        assert ears.answers['/object_detections'] == []  # the single-camera topic is not used
        # the reference: a one-camera node (no cameras key) on the same frames, one camera at a time
        for camera in CAMERAS:
            name, compared = camera['name'], 0
            single = params(tmp_path / name, None)
            text = single.read_text().replace('/camera/image_rect', camera['input_topic'])
            single.write_text(text)
            sent_single, _ = run_node(single, ros_env, ears, {name: frames[name]}, tmp=tmp_path / name)
            answers = ears.by_stamp('/object_detections')
            for s in sent_single[name]:
                if (name, s['index']) in batched and s['stamp_ns'] in answers:
                    compared += 1
                    assert detections(answers[s['stamp_ns']]) == batched[name, s['index']], (name, s['index'])
            assert compared, f'{name}: no frame answered by both nodes'
        assert any(batched.values()), 'no detections at all: the comparison would prove nothing'
    finally:
        ears.close()


def test_a_silent_camera_is_named_and_never_stalls_the_others(tmp_path, ros_env, ros_domain_id):
    frames = {'left': scenes(24, 640, 480, 'rgb8', seed=6), 'right': scenes(24, 640, 480, 'rgb8', seed=7)}
    ears = Ears(ros_domain_id, [c['output_topic'] for c in CAMERAS])
    try:
        # back never sends: its watchdog (1 s) goes stale while left and right run for 3 s
        sent, output = run_node(params(tmp_path, CAMERAS, watchdog_timeout=1.0), ros_env, ears, frames,
                                tmp=tmp_path)
        # every frame answered, but for those the newest-wins slot replaced before the worker took
        # them (the node counts them: a descheduled worker on a loaded 2-core machine, as in CI)
        replaced = json.loads((tmp_path / 'monitoring.json').read_text())['dropped'].get('newer_frame', 0)
        missing = {camera['name']: [s['index'] for s in sent[camera['name']]
                                    if s['stamp_ns'] not in ears.by_stamp(camera['output_topic'])]
                   for camera in CAMERAS[:2]}
        print(f'unanswered {missing}; {replaced} replaced by a newer frame')
        assert sum(map(len, missing.values())) <= replaced, (missing, replaced)
        assert all(len(m) <= len(sent[n]) // 4 for n, m in missing.items()), missing  # still served
        # a report while left and right were sending: back alone is named, as stale
        name = '/isaac_trt_perception: camera {}'.format
        during = [r for r in ears.reports if name('back') in r and r[name('back')].level[0] >= 1
                  and r[name('left')].level[0] == 0 and r[name('right')].level[0] == 0]
        assert during, [{k: (s.level[0], s.message) for k, s in r.items()} for r in ears.reports]
        assert 'no image' in during[-1][name('back')].message or 'stale' in during[-1][name('back')].message
        assert '/back/image_rect' in during[-1][name('back')].message
        detector = during[-1]['/isaac_trt_perception: detector']
        assert 'camera back (/back/image_rect)' in detector.message, detector.message
        assert 'left' not in detector.message and 'right' not in detector.message
        assert 'camera back (/back/image_rect): no image for' in output
    finally:
        ears.close()


def test_a_camera_with_its_own_qos_is_subscribed_and_answered_with_it(tmp_path, ros_env, ros_domain_id):
    """The node's QoS is reliable; camera back's own is best_effort. A best-effort publisher does not
    match a reliable subscription (DDS's rule), so back's frames are answered only through its own QoS,
    and its detections publisher offers best_effort (seen here over discovery)."""
    cameras = [CAMERAS[0], {**CAMERAS[2], 'reliability': 'best_effort', 'depth': 3}]
    frames = {'left': scenes(6, 640, 480, 'rgb8', seed=8), 'back': scenes(6, 640, 480, 'rgb8', seed=9)}
    ears = Ears(ros_domain_id, [c['output_topic'] for c in cameras], best_effort=('/back/detections',))
    try:
        # slow enough that no best-effort frame is lost to a busy 2-core machine
        sent, output = run_node(params(tmp_path, cameras), ros_env, ears, frames, tmp=tmp_path, rate=4.0,
                                reliability={'back': 'best_effort'})
        assert 'back: /back/image_rect -> /back/detections (best_effort, depth 3)' in output, output[-3000:]
        assert 'left: /left/image_rect -> /left/detections,' in output  # left: the node's QoS
        for camera in cameras:
            answers = ears.by_stamp(camera['output_topic'])
            answered = [s for s in sent[camera['name']] if s['stamp_ns'] in answers]
            assert len(answered) >= len(sent[camera['name']]) - 1, (camera['name'], len(answered))
    finally:
        ears.close()


def test_the_outputs_offer_each_cameras_reliability(tmp_path, ros_env, ros_domain_id):
    cameras = [CAMERAS[0], {**CAMERAS[2], 'reliability': 'best_effort'}]
    ears = Ears(ros_domain_id, [c['output_topic'] for c in cameras])
    node = start_node(params(tmp_path, cameras), ros_env)
    try:
        wait_for(lambda: 'ready' if all(ears.node.count_publishers(c['output_topic']) for c in cameras)
                 else '', 90, 'detection publishers', node)
        offered = {c['name']: ears.node.get_publishers_info_by_topic(c['output_topic'])[0]
                   .qos_profile.reliability for c in cameras}
        assert offered == {'left': ReliabilityPolicy.RELIABLE, 'back': ReliabilityPolicy.BEST_EFFORT}, offered
    finally:
        output = stop_node(node)
        ears.close()
    assert node.returncode == 0, output[-3000:]


@pytest.mark.parametrize(('cameras', 'message'), [
    ([{'name': 'a', 'input_topic': '/a', 'output_topic': '/a/det'},
      {'name': 'b', 'input_topic': '/a', 'output_topic': '/b/det'}],
     "ros_integration.cameras[1].input_topic: '/a' is already ros_integration.cameras[0].input_topic"),
    ([{'name': 'a', 'input_topic': '/a', 'output_topic': '/a/det'}, {'name': 'b', 'input_topic': '/b'}],
     'ros_integration.cameras[1].output_topic: missing'),
])
def test_the_node_refuses_a_bad_camera_list_given_directly(tmp_path, ros_env, cameras, message):
    """Past perception-params too (a hand-written params file): the node's own check, exit 2."""
    text = ','.join(':'.join([c['name'], c['input_topic'], c.get('output_topic', '')]) for c in cameras)
    hand_written = tmp_path / 'params.yaml'
    document = {'/**': {'ros__parameters': {'ros_integration': {'cameras': text}}}}
    hand_written.write_text(yaml.safe_dump(document))
    node = subprocess.run([str(NODE), '--ros-args', '--params-file', str(hand_written)], env=ros_env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert node.returncode == 2, node.stdout + node.stderr
    assert message in node.stdout + node.stderr
