"""The perception-bag commands, as users run them, on bags with injected faults: a clear error
naming the bag and the topic (exit 2), or, for a damaged bag, a report of what was readable."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from perception.bag.messages import DETECTIONS, detections_message, detections_of, open_writer, typestore
from perception.bag.reader import Bag, stamp_ns

FRAMES = 8


def perception_bag(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(['perception-bag', *args], capture_output=True, text=True, timeout=120, check=False)


@pytest.fixture(scope='module')
def bag(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp('faults') / 'synthetic'
    result = perception_bag('record-synthetic', str(path), '--frames', str(FRAMES))
    assert result.returncode == 0, result.stderr
    assert f'{FRAMES} frames 640x480 at 30 Hz on /camera/image_rect' in result.stdout
    return path


def test_recording_over_an_existing_bag_is_refused(bag: Path) -> None:
    result = perception_bag('record-synthetic', str(bag), '--frames', '1')
    assert result.returncode == 2
    assert f'{bag}: exists already' in result.stderr


def test_replay_of_a_bag_without_the_camera_topic(bag: Path, tmp_path: Path) -> None:
    config = tmp_path / 'deploy.yaml'
    source = Path(__file__).resolve().parents[1] / 'config' / 'jetson_deployment.yaml'
    config.write_text(source.read_text().replace('/camera/image_rect', '/camera/color/image_raw')
                      .replace('package://perception/models/detector/model.onnx', 'model.onnx'))
    result = perception_bag('replay', str(bag), str(tmp_path / 'answers'), '--config', str(config))
    assert result.returncode == 2
    assert f"{bag}: no topic '/camera/color/image_raw'" in result.stderr
    assert not (tmp_path / 'answers').exists()


def test_replay_of_a_bag_in_an_unknown_storage(tmp_path: Path) -> None:
    (tmp_path / 'recording.bag').write_bytes(b'#ROSBAG V2.0\n')
    result = perception_bag('replay', str(tmp_path / 'recording.bag'), str(tmp_path / 'answers'))
    assert result.returncode == 2
    assert "recording.bag: unknown storage '.bag'" in result.stderr


def test_evaluating_a_truncated_bag_reports_what_was_readable(bag: Path, tmp_path: Path) -> None:
    answers = tmp_path / 'answers'
    writer = open_writer(answers, 'mcap')
    connection = writer.add_connection('/object_detections', DETECTIONS, typestore=typestore())
    for _, truth in Bag(bag).stamped('/ground_truth', DETECTIONS):
        stamp = stamp_ns(truth)
        answer = detections_message(detections_of(truth), stamp, 'camera_optical_frame')
        writer.write(connection, stamp, bytes(typestore().serialize_cdr(answer, DETECTIONS)))
    writer.close()
    damaged = tmp_path / 'damaged'
    damaged.mkdir()
    data = (bag / 'synthetic.mcap').read_bytes()
    (damaged / 'damaged.mcap').write_bytes(data[:len(data) // 2])  # a copy cut short, no metadata.yaml

    result = perception_bag('evaluate', str(damaged), str(answers), '--out', str(tmp_path / 'report'),
                            '--no-video')
    assert result.returncode == 0, result.stderr
    report = (tmp_path / 'report' / 'report.md').read_text()
    assert '## Damaged input' in report and 'damaged.mcap is truncated' in report
    frames = int(report.split('| frames | ')[1].split(' |')[0])
    assert 0 < frames < FRAMES
    assert '| mAP@.5 | 1.000 |' in report
