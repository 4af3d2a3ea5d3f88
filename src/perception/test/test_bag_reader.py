"""Bags with injected faults: each gives a clear error naming the bag and topic, or everything
readable before the damage."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from perception.bag.messages import DETECTIONS, IMAGE, image_message, open_writer, typestore
from perception.bag.reader import Bag, BagError, stamp_ns

FRAMES = 12  # conftest's synthetic bags


def copy(bag: Path, tmp_path: Path) -> Path:
    target = tmp_path / bag.name
    shutil.copytree(bag, target)
    return target


def stamps(bag: Bag, topic: str = '/camera/image_rect', msgtype: str = IMAGE) -> list[int]:
    return [stamp_ns(msg) for _, msg in bag.stamped(topic, msgtype)]


def write_images(path: Path, stamps_ns: list[int], topic: str = '/camera/image_rect') -> Path:
    writer = open_writer(path, 'mcap')
    connection = writer.add_connection(topic, IMAGE, typestore=typestore())
    for log_time, stamp in enumerate(stamps_ns, start=1):  # received in order, stamped as given
        msg = image_message(np.zeros((4, 6, 3), np.uint8), stamp, 'cam')
        writer.write(connection, log_time, bytes(typestore().serialize_cdr(msg, IMAGE)))
    writer.close()
    return path


@pytest.mark.parametrize('fixture', ['synthetic_bag', 'synthetic_sqlite_bag'])
def test_intact_bag_reads_fully(request: pytest.FixtureRequest, fixture: str) -> None:
    bag = Bag(request.getfixturevalue(fixture))
    assert bag.topics == {'/camera/image_rect': IMAGE, '/ground_truth': DETECTIONS}
    assert len(stamps(bag)) == FRAMES == len(stamps(bag, '/ground_truth', DETECTIONS))
    assert bag.counts == {'/camera/image_rect': FRAMES, '/ground_truth': FRAMES}
    assert bag.damage is None


@pytest.mark.parametrize(('fixture', 'storage_file'), [('synthetic_bag', 'synthetic.mcap'),
                                                      ('synthetic_sqlite_bag', 'synthetic_db3.db3')])
def test_truncated_bag_yields_what_precedes_the_damage(request: pytest.FixtureRequest, tmp_path: Path,
                                                       fixture: str, storage_file: str) -> None:
    bag_path = copy(request.getfixturevalue(fixture), tmp_path)
    data = bag_path / storage_file
    data.write_bytes(data.read_bytes()[:int(data.stat().st_size * 0.6)])
    bag = Bag(bag_path)
    frames = stamps(bag)
    assert 0 < len(frames) < FRAMES
    assert frames == sorted(frames)
    assert bag.damage is not None
    assert str(bag_path) in bag.damage and storage_file in bag.damage
    assert bag.damage_at is not None and bag.damage_at.file == data  # where the read stopped, as fields
    if storage_file.endswith('.mcap'):
        # the byte where the cut record starts, and the messages of both topics before it
        assert bag.damage_at.offset is not None and bag.damage_at.message >= len(frames)


def test_recorder_killed_before_metadata_is_still_read(tmp_path: Path, synthetic_bag: Path) -> None:
    bag_path = copy(synthetic_bag, tmp_path)
    (bag_path / 'metadata.yaml').unlink()
    bag = Bag(bag_path)
    assert len(stamps(bag)) == FRAMES
    assert bag.damage is None


def test_bare_storage_file_is_a_bag(synthetic_bag: Path) -> None:
    assert len(stamps(Bag(synthetic_bag / 'synthetic.mcap'))) == FRAMES


def test_not_a_bag(tmp_path: Path) -> None:
    with pytest.raises(BagError, match=r'nothing_here: no such bag'):
        Bag(tmp_path / 'nothing_here')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(BagError, match=r'empty: not a bag: no metadata.yaml and no .mcap or .db3'):
        Bag(tmp_path / 'empty')
    (tmp_path / 'old.bag').write_bytes(b'#ROSBAG V2.0')
    with pytest.raises(BagError, match=r"old.bag: unknown storage '.bag'"):
        Bag(tmp_path / 'old.bag')


def test_unknown_storage_plugin(tmp_path: Path, synthetic_bag: Path) -> None:
    bag_path = copy(synthetic_bag, tmp_path)
    metadata = yaml.safe_load((bag_path / 'metadata.yaml').read_text())
    metadata['rosbag2_bagfile_information']['storage_identifier'] = 'rosbag_v2'
    (bag_path / 'metadata.yaml').write_text(yaml.safe_dump(metadata))
    with pytest.raises(BagError, match=rf"{bag_path}: unknown storage 'rosbag_v2' in metadata.yaml"):
        Bag(bag_path)


def test_missing_topic_lists_what_the_bag_has(synthetic_bag: Path) -> None:
    with pytest.raises(BagError, match=rf"{synthetic_bag}: no topic '/camera/color/image_raw'; the bag has "
                                       r"\['/camera/image_rect', '/ground_truth'\]"):
        list(Bag(synthetic_bag).messages('/camera/color/image_raw', IMAGE))


def test_unknown_message_type_is_named(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / 'odd', 'mcap')
    writer.add_connection('/camera/image_rect', 'acme_msgs/msg/Frame', msgdef='uint8[] pixels',
                          rihs01='RIHS01_' + '0' * 64)
    writer.close()
    with pytest.raises(BagError, match=r"topic '/camera/image_rect' has message type 'acme_msgs/msg/Frame', "
                                       r"expected 'sensor_msgs/msg/Image'"):
        list(Bag(tmp_path / 'odd').messages('/camera/image_rect', IMAGE))


def test_undecodable_message_is_named(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / 'garbage', 'mcap')
    connection = writer.add_connection('/camera/image_rect', IMAGE, typestore=typestore())
    writer.write(connection, 1, b'\x00\x01\x00\x00garbage')
    writer.close()
    with pytest.raises(BagError, match=r"topic '/camera/image_rect': message 0 is not a valid sensor_msgs"):
        list(Bag(tmp_path / 'garbage').messages('/camera/image_rect', IMAGE))


def test_frames_out_of_order_are_named(tmp_path: Path) -> None:
    bag = Bag(write_images(tmp_path / 'unordered', [1_000, 3_000, 2_000]))
    with pytest.raises(BagError, match=r"topic '/camera/image_rect': messages out of order: message 2 has "
                                       r'header stamp 2000 ns, not after the previous 3000 ns'):
        stamps(bag)
