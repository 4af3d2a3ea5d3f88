"""image_transport's compressed transport between real processes: `perception-bag record-synthetic
--compressed` writes sensor_msgs/CompressedImage (JPEG, compressed_image_transport's format string)
on a robot-like topic, `perception-bag replay --topic SRC:=DST` plays it into the real node with
`ros_integration.image_transport: compressed` (which subscribes <input_topic>/compressed and decodes
on its worker thread), and the answers are checked against the frames; a corrupt JPEG in the middle
of the bag is counted and logged by the node, which keeps answering the rest.

Lockstep replays with the LOSSLESS settings of test_replay_node (the reasons are there), so that
every frame sent is one the node must answer: what is left to fail is the compressed path.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from perception.bag.messages import COMPRESSED_IMAGE, DETECTIONS, TIME_REFERENCE, open_writer, typestore
from perception.bag.reader import Bag, stamp_ns
from perception.bag.replay import TIME_REFERENCE_TOPIC

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the replay test's deployment and cli
from test_replay_node import LOSSLESS, WORKSPACE, cli, deployment, probe_bundle  # isort: skip

from perception.launch_plan import make_plan
from perception.node_process import running_node

ROBOT_TOPIC = '/front_camera/image_raw'           # what the robot recorded (+ /compressed)
NODE_TOPIC = '/camera/image_rect/compressed'      # what the node subscribes with input_topic's default
FRAME_ID = 'front_camera_optical'
FRAMES = 16
CORRUPT = 7  # the message cut short in the corrupt bag


def compressed_config(tmp_path: Path, model: Path) -> Path:
    return deployment(tmp_path, model, **LOSSLESS, **{'ros_integration.image_transport': 'compressed'})


REMAP = ('--topic', f'{ROBOT_TOPIC}/compressed:={NODE_TOPIC}')


def record(tmp_path: Path, ros_env: dict) -> tuple[Path, Path]:
    """(the probe bundle's model, a compressed synthetic bag on the robot's topic)."""
    model = probe_bundle.write_probe_bundle(tmp_path / 'bundle')
    bag = tmp_path / 'robot'
    recorded = cli('record-synthetic', str(bag), '--frames', str(FRAMES), '--bundle', str(model.parent),
                   '--compressed', '--topic', ROBOT_TOPIC, '--frame-id', FRAME_ID, env=ros_env)
    assert f'on {ROBOT_TOPIC}/compressed' in recorded.stdout
    assert Bag(bag).topics[f'{ROBOT_TOPIC}/compressed'] == COMPRESSED_IMAGE
    return model, bag


def replay(tmp_path: Path, bag: Path, config: Path, ros_env: dict) -> tuple[str, Bag, dict, str]:
    """(replay's stdout, the answers bag, the node's monitoring file, the node's log)."""
    answers = tmp_path / 'answers'
    plan = make_plan(config, params_dir=tmp_path / 'launch', middleware_config_dir=WORKSPACE / 'config')
    with running_node(plan, tmp_path / 'node.log', ros_env):
        replayed = cli('replay', str(bag), str(answers), '--config', str(config), '--lockstep',
                       *REMAP, env=ros_env)
    monitoring = json.loads((tmp_path / 'monitoring.json').read_text())
    return replayed.stdout, Bag(answers), monitoring, (tmp_path / 'node.log').read_text()


def test_compressed_bag_replayed_with_a_remap_is_answered_frame_for_frame(tmp_path: Path,
                                                                         ros_env: dict) -> None:
    model, bag = record(tmp_path, ros_env)
    config = compressed_config(tmp_path, model)
    stdout, answers, monitoring, node_log = replay(tmp_path, bag, config, ros_env)
    assert f'{FRAMES} frames published, {FRAMES} answered' in stdout
    assert f'{NODE_TOPIC} ->' in node_log  # the node names the subtopic it subscribed
    # each answer carries its frame's header: the stamp it was published with, the bag's frame_id
    sent = {stamp_ns(ref) for _, ref in answers.messages(TIME_REFERENCE_TOPIC, TIME_REFERENCE)}
    headers = [(stamp_ns(msg), msg.header.frame_id) for _, msg in answers.messages('/object_detections',
                                                                                   DETECTIONS)]
    assert len(sent) == FRAMES and sorted(headers) == sorted((stamp, FRAME_ID) for stamp in sent)
    boxes = len(probe_bundle.expected_boxes(640, 480))
    assert all(len(msg.detections) == boxes for _, msg in answers.messages('/object_detections', DETECTIONS))
    assert monitoring['errors'].get('bad_compressed_image', 0) == 0


def test_evaluate_of_a_compressed_input_bag(tmp_path: Path, ros_env: dict) -> None:
    """The ground truth is on its own topic; the report draws the compressed frames."""
    model, bag = record(tmp_path, ros_env)
    config = compressed_config(tmp_path, model)
    _, answers, _, _ = replay(tmp_path, bag, config, ros_env)
    report = tmp_path / 'report'
    cli('evaluate', str(bag), str(answers.path), '--out', str(report), '--config', str(config), '--no-video',
        *REMAP, env=ros_env)
    document = json.loads((report / 'report.json').read_text())
    metrics = document['metrics']
    assert (metrics['frames'], metrics['answered'], metrics['dropped']) == (FRAMES, FRAMES, 0)
    assert metrics['detections'] == FRAMES * len(probe_bundle.expected_boxes(640, 480))
    assert 'strip' in document['files']


def corrupted(source: Path, out: Path) -> None:
    """``source``'s compressed frames and ground truth, message CORRUPT's JPEG cut in half."""
    store = typestore()
    bag, writer = Bag(source), open_writer(out, 'mcap')
    topic = f'{ROBOT_TOPIC}/compressed'
    frames = writer.add_connection(topic, COMPRESSED_IMAGE, typestore=store)
    for index, (log_time, msg) in enumerate(bag.messages(topic, COMPRESSED_IMAGE)):
        if index == CORRUPT:
            msg.data = msg.data[:len(msg.data) // 2]  # type: ignore[attr-defined]
        writer.write(frames, log_time, bytes(store.serialize_cdr(msg, COMPRESSED_IMAGE)))
    writer.close()


def test_a_corrupt_jpeg_is_counted_and_the_rest_answered(tmp_path: Path, ros_env: dict) -> None:
    model, recorded = record(tmp_path, ros_env)
    bag = tmp_path / 'corrupt'
    corrupted(recorded, bag)
    stdout, answers, monitoring, node_log = replay(tmp_path, bag, compressed_config(tmp_path, model), ros_env)
    assert f'{FRAMES} frames published, {FRAMES - 1} answered' in stdout
    assert monitoring['errors'] == {'bad_compressed_image': 1}
    sent = sorted(stamp_ns(ref) for _, ref in answers.messages(TIME_REFERENCE_TOPIC, TIME_REFERENCE))
    answered = sorted(stamp_ns(msg) for _, msg in answers.messages('/object_detections', DETECTIONS))
    assert answered == sent[:CORRUPT] + sent[CORRUPT + 1:]  # exactly the cut one is missing
    bad = sent[CORRUPT]
    line = f"frame '{FRAME_ID}' stamp {bad // 10**9}.{bad % 10**9:09d} skipped: JPEG data of"
    assert line in node_log and 'truncated' in node_log, node_log[-3000:]


def test_a_png_bag_holds_the_rendered_scenes_exactly(tmp_path: Path) -> None:
    """record-synthetic --compressed-format png is lossless: decoded as the node decodes it, each
    frame is the scene the generator renders, and the message is compressed_image_transport's."""
    from perception.bag.record import DEFAULT_SEED, record_synthetic
    from perception_core.compressed import frame_from_compressed
    from perception_core.synth import render_scene
    bag = record_synthetic(tmp_path / 'png', frames=2, width=160, height=128, compressed='png',
                           progress=False)
    assert bag.image_topic == '/camera/image_rect/compressed'
    for index, (_, msg) in enumerate(Bag(bag.path).messages(bag.image_topic, COMPRESSED_IMAGE)):
        assert msg.format == 'rgb8; png compressed bgr8'
        frame = frame_from_compressed(None, format=msg.format, data=msg.data)
        rgb = frame.pixels[:, :, list(frame.rgb_channels)]
        assert (rgb == render_scene(DEFAULT_SEED, index, 160, 128).image).all()


def test_remap_mistakes_are_refused_by_name() -> None:
    from perception.bag.replay import parse_remap, source_topic
    assert parse_remap(' /a/compressed:=/camera/image_rect/compressed ') == ('/a/compressed',
                                                                            '/camera/image_rect/compressed')
    for text in ('/a', ':=/b', '/a:='):
        with pytest.raises(ValueError, match='is not SRC:=DST'):
            parse_remap(text)
    assert source_topic('/cam/compressed', {}) == '/cam/compressed'
    assert source_topic('/cam/compressed', {'/robot/compressed': '/cam/compressed'}) == '/robot/compressed'
    with pytest.raises(ValueError, match="'/elsewhere' is not the detector's input topic '/cam/compressed'"):
        source_topic('/cam/compressed', {'/robot/compressed': '/elsewhere'})
    with pytest.raises(ValueError, match='all remapped onto'):
        source_topic('/cam', {'/a': '/cam', '/b': '/cam'})
