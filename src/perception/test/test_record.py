"""record-synthetic: a real camera bag, identical for identical arguments, exact ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.bag.messages import DETECTIONS, IMAGE, detections_of
from perception.bag.reader import Bag, stamp_ns
from perception.bag.record import DEFAULT_SEED, DEFAULT_START_NS, record_synthetic
from perception_core.synth import render_scene


def test_frames_and_ground_truth_are_the_scenes(synthetic_bag: Path) -> None:
    bag = Bag(synthetic_bag)
    images = list(bag.stamped('/camera/image_rect', IMAGE))
    truths = list(bag.stamped('/ground_truth', DETECTIONS))
    for index in (0, len(images) - 1):
        scene = render_scene(DEFAULT_SEED, index)
        log_time, image = images[index]
        assert (image.height, image.width, image.encoding, image.step) == (480, 640, 'rgb8', 640 * 3)
        assert image.header.frame_id == 'camera_optical_frame'
        assert np.array_equal(np.asarray(image.data).reshape(480, 640, 3), scene.image)
        assert log_time == stamp_ns(image) == stamp_ns(truths[index][1])
        boxes = [(d.class_id, d.x1, d.y1, d.x2, d.y2) for d in detections_of(truths[index][1])]
        assert boxes == [(b.class_name, b.x1, b.y1, b.x2, b.y2) for b in scene.boxes]  # centre/size exact
    periods = np.diff([stamp_ns(m) for _, m in images])
    assert stamp_ns(images[0][1]) == DEFAULT_START_NS
    assert set(periods) <= {33_333_333, 33_333_334}  # 30 Hz


def test_same_arguments_same_frames(tmp_path: Path, synthetic_bag: Path) -> None:
    again = record_synthetic(tmp_path / 'again', frames=3, progress=False).path
    first = [bytes(m.data) for _, m in Bag(synthetic_bag).stamped('/camera/image_rect', IMAGE)][:3]
    assert [bytes(m.data) for _, m in Bag(again).stamped('/camera/image_rect', IMAGE)] == first


def test_metadata_is_rosbag2(synthetic_bag: Path, synthetic_sqlite_bag: Path) -> None:
    for bag, storage in ((synthetic_bag, 'mcap'), (synthetic_sqlite_bag, 'sqlite3')):
        info = yaml.safe_load((bag / 'metadata.yaml').read_text())['rosbag2_bagfile_information']
        assert info['storage_identifier'] == storage
        assert info['version'] == 8
        topics = {t['topic_metadata']['name']: t['topic_metadata']['type']
                  for t in info['topics_with_message_count']}
        assert topics == {'/camera/image_rect': 'sensor_msgs/msg/Image', '/ground_truth': DETECTIONS}


def test_never_overwrites_and_leaves_nothing_half_written(tmp_path: Path, synthetic_bag: Path) -> None:
    with pytest.raises(FileExistsError):
        record_synthetic(synthetic_bag, frames=1, progress=False)
    with pytest.raises(ValueError):
        record_synthetic(tmp_path / 'bad', frames=2, classes=('not_a_class',), progress=False)
    assert list(tmp_path.iterdir()) == []
