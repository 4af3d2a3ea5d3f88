"""Damaged bags, fuzzed: truncated at many lengths, 16 and 64 bytes flipped at many offsets, emptied.

Three storages: mcap as this workspace writes it (rosbags: uncompressed chunks, no CRCs), mcap as
rosbag2 writes it (the mcap library's writer, which rosbag2_storage_mcap wraps: zstd chunks, chunk
and summary CRCs) and sqlite3. Each damaged copy must read without a traceback: either a BagError
naming the file, or every message before the damage (checked against a second reader of the intact
bag: the mcap library, the standard library's sqlite3) with the damage named. A flip that the
container cannot see (payload bytes of a storage without CRCs) may reach the messages, but only as
the flipped bytes themselves.
"""

from __future__ import annotations

import random
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from mcap.reader import make_reader
from mcap.writer import CompressionType, Writer

from perception.bag.messages import (
    DETECTIONS,
    IMAGE,
    Detection,
    detections_message,
    image_message,
    open_writer,
    typestore,
)
from perception.bag.reader import Bag, BagError

FRAMES = 24
TOPICS = {'/camera/image_rect': IMAGE, '/ground_truth': DETECTIONS}
STORAGES = ['mcap', 'mcap_rosbag2', 'sqlite3']
# Storages whose every byte is covered by a CRC that matters for reading messages.
CHECKSUMMED = {'mcap_rosbag2'}
FLIPS = (16, 64)
EVEN_OFFSETS = 40
RANDOM_OFFSETS = 20

Messages = dict[str, list[tuple[int, bytes]]]  # topic -> (log time, CDR) in storage order


def write_bag(folder: Path, storage: str) -> Path:
    """A bag of FRAMES small frames with ground truth; mcap_rosbag2 re-encodes the mcap one."""
    store = typestore()
    writer = open_writer(folder, 'sqlite3' if storage == 'sqlite3' else 'mcap')
    images = writer.add_connection('/camera/image_rect', IMAGE, typestore=store)
    truth = writer.add_connection('/ground_truth', DETECTIONS, typestore=store)
    rng = np.random.default_rng(14)
    for index in range(FRAMES):
        stamp = 1_700_000_000_000_000_000 + index * 33_333_333
        pixels = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
        writer.write(images, stamp, bytes(store.serialize_cdr(image_message(pixels, stamp, 'cam'), IMAGE)))
        boxes = [Detection('box', 1.0, index, 2.0, index + 5.0, 9.0)]
        writer.write(truth, stamp, bytes(store.serialize_cdr(detections_message(boxes, stamp, 'cam'),
                                                             DETECTIONS)))
    writer.close()
    if storage == 'mcap_rosbag2':
        rosbags_file = folder / f'{folder.name}.mcap'
        with rosbags_file.open('rb') as f:
            reader = make_reader(f)
            summary = reader.get_summary()
            records = [(c.topic, m.log_time, m.publish_time, m.data) for _, c, m in reader.iter_messages()]
        with (folder / 'rosbag2.mcap').open('wb') as f:
            # rosbag2_storage_mcap's defaults: zstd chunks, chunk CRCs and summary CRC, no data CRC;
            # chunks kept small so that the bag has several.
            out = Writer(f, chunk_size=16384, compression=CompressionType.ZSTD, enable_crcs=True)
            out.start(profile='ros2', library='rosbag2')
            ids = {}
            for channel in summary.channels.values():
                schema = summary.schemas[channel.schema_id]
                schema_id = out.register_schema(schema.name, schema.encoding, schema.data)
                ids[channel.topic] = out.register_channel(channel.topic, 'cdr', schema_id,
                                                          {'offered_qos_profiles': ''})
            for sequence, (topic, log_time, publish_time, data) in enumerate(records):
                out.add_message(ids[topic], log_time, data, publish_time, sequence)
            out.finish()
        metadata = folder / 'metadata.yaml'
        metadata.write_text(metadata.read_text().replace(rosbags_file.name, 'rosbag2.mcap'))
        rosbags_file.unlink()
    return folder


def storage_file(bag: Path) -> Path:
    (file,) = [f for f in bag.iterdir() if f.suffix in ('.mcap', '.db3')]
    return file


def reference_messages(file: Path) -> Messages:
    """The intact bag's messages as a second reader sees them."""
    out: Messages = {topic: [] for topic in TOPICS}
    if file.suffix == '.mcap':
        with file.open('rb') as f:
            for _, channel, message in make_reader(f).iter_messages(log_time_order=False):
                out[channel.topic].append((message.log_time, message.data))
    else:
        with sqlite3.connect(file) as db:
            rows = db.execute('SELECT topics.name, messages.timestamp, messages.data FROM messages '
                              'JOIN topics ON topics.id = messages.topic_id ORDER BY messages.id')
            for topic, log_time, data in rows:
                out[topic].append((log_time, bytes(data)))
    return out


def read(bag_path: Path) -> tuple[Messages, str | None]:
    """Every message of a (damaged) bag; a BagError stops it; nothing else may be raised."""
    bag = Bag(bag_path)
    out: Messages = {}
    for topic, msgtype in TOPICS.items():
        out[topic] = [(raw.log_time, raw.data) for raw in bag.raw(topic, msgtype)]
        try:  # the deserializer's side: an undecodable message is a BagError naming it
            for _ in bag.messages(topic, msgtype):
                pass
        except BagError as exc:
            assert 'is not a valid' in str(exc), exc
    return out, bag.damage


@pytest.fixture(scope='module', params=STORAGES)
def intact(request: pytest.FixtureRequest,
           tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Messages, str]:
    bag = write_bag(tmp_path_factory.mktemp(request.param) / 'bag', request.param)
    expected = reference_messages(storage_file(bag))
    assert [len(v) for v in expected.values()] == [FRAMES, FRAMES]
    got, damage = read(bag)
    assert damage is None
    assert got == expected  # the reader agrees with the second reader on the intact bag
    return bag, expected, request.param


def damaged_copy(bag: Path, root: Path, name: str, damage) -> tuple[Path, Path]:
    copy = root / name
    shutil.rmtree(copy, ignore_errors=True)
    shutil.copytree(bag, copy)
    file = storage_file(copy)
    data = bytearray(file.read_bytes())
    file.write_bytes(damage(data))
    return copy, file


def flip(offset: int, size: int):
    def damage(data: bytearray) -> bytes:
        for i in range(offset, min(offset + size, len(data))):
            data[i] ^= 0xFF
        return bytes(data)
    return damage


def check(case: str, bag: Path, file: Path, expected: Messages, *, storage: str,
          flipped: int = 0) -> tuple[int, str | None]:
    """The rule for one damaged copy; returns how many messages it gave and its damage."""
    try:
        got, damage = read(bag)
    except BagError as exc:
        assert file.name in str(exc) or str(bag) in str(exc), f'{case}: error names no file: {exc}'
        return 0, str(exc)
    if damage is not None:
        assert file.name in damage, f'{case}: damage names no file: {damage}'
    changed_bytes = 0
    for topic, messages in got.items():
        want = expected[topic]
        assert len(messages) <= len(want), f'{case}: {topic}: more messages than the bag has'
        for index, ((log_time, data), (want_time, want_data)) in enumerate(zip(messages, want, strict=False)):
            if (log_time, data) == (want_time, want_data):
                continue
            # Only bytes no CRC covers may differ (a payload, a log time), and only the flipped ones.
            assert flipped and storage not in CHECKSUMMED, \
                f'{case}: {topic}: message {index} differs from the intact bag'
            assert len(data) == len(want_data), f'{case}: {topic}: message {index} has another length'
            changed_bytes += sum(a != b for a, b in zip(data + log_time.to_bytes(8, 'little'),
                                                        want_data + want_time.to_bytes(8, 'little'),
                                                        strict=True))
        if len(messages) < len(want):
            assert damage is not None, f'{case}: {topic}: {len(messages)} of {len(want)} messages, no damage'
    assert changed_bytes <= flipped, f'{case}: {changed_bytes} bytes changed by a {flipped}-byte flip'
    if damage is None and flipped and storage in CHECKSUMMED and got != expected:
        raise AssertionError(f'{case}: a flip in a checksummed bag went unnoticed')
    return sum(len(m) for m in got.values()), damage


def test_truncated_at_every_5_percent(intact: tuple[Path, Messages, str], tmp_path: Path) -> None:
    bag, expected, storage = intact
    size = storage_file(bag).stat().st_size
    counts = []
    for percent in range(5, 100, 5):
        copy, file = damaged_copy(bag, tmp_path, 'cut', lambda data, p=percent: bytes(data[:size * p // 100]))
        count, damage = check(f'cut at {percent} %', copy, file, expected, storage=storage)
        assert damage is not None, f'cut at {percent} %: no damage named'
        counts.append(count)
    assert counts == sorted(counts), f'a longer copy gave fewer messages: {counts}'
    assert counts[-1] > 0


def test_bytes_flipped_at_many_offsets(intact: tuple[Path, Messages, str], tmp_path: Path) -> None:
    bag, expected, storage = intact
    size = storage_file(bag).stat().st_size
    rng = random.Random(14)
    offsets = [size * i // EVEN_OFFSETS for i in range(EVEN_OFFSETS)] + \
              [rng.randrange(size) for _ in range(RANDOM_OFFSETS)] + [size - 16, size - 64]
    noticed = 0
    for width in FLIPS:
        for offset in offsets:
            copy, file = damaged_copy(bag, tmp_path, 'flipped', flip(offset, width))
            _, damage = check(f'{width} bytes flipped at {offset} of {size}', copy, file, expected,
                             storage=storage, flipped=width)
            noticed += damage is not None
    assert noticed > 0


@pytest.mark.parametrize('with_metadata', [True, False])
def test_emptied_storage_file(intact: tuple[Path, Messages, str], tmp_path: Path,
                              with_metadata: bool) -> None:
    bag, _, _ = intact
    copy, file = damaged_copy(bag, tmp_path, 'emptied', lambda data: b'')
    if not with_metadata:
        (copy / 'metadata.yaml').unlink()
    with pytest.raises(BagError, match=rf'{copy}: {file.name} is an empty file \(0 bytes\): nothing to read'):
        read(copy)


def test_mcap_cut_in_half_yields_its_first_half(tmp_path: Path) -> None:
    """An answers bag (small messages, one chunk) cut at 50 %: the messages before the cut."""
    bag = write_bag(tmp_path / 'answers', 'mcap')
    expected = reference_messages(storage_file(bag))
    copy, file = damaged_copy(bag, tmp_path, 'half', lambda data: bytes(data[:len(data) // 2]))
    count, damage = check('cut at 50 %', copy, file, expected, storage='mcap')
    assert damage is not None and 'truncated' in damage
    # Half the file holds most of the chunk, and the chunk is nearly the whole file.
    assert count >= FRAMES * 2 * 0.4, damage
