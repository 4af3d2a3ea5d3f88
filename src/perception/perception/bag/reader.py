"""Read rosbag2 bags (mcap or sqlite3, a bag folder or a bare storage file), damaged ones too.

Intact bags are read with ``rosbags``. A bag it cannot open (a recorder killed before writing the
index or metadata.yaml, a file cut short in a copy) is read record by record from the start:
mcap with the ``mcap`` stream reader, sqlite3 row by row. Either way everything before the damage
is returned and :attr:`Bag.damage` says where reading stopped. Every error names the bag and,
where there is one, the topic.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
import struct
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import yaml
from mcap.exceptions import McapError
from mcap.records import Channel, Message
from mcap.stream_reader import StreamReader
from rosbags.rosbag2 import Reader
from rosbags.rosbag2.errors import ReaderError

from perception.bag.messages import typestore

log = logging.getLogger(__name__)

STORAGES = {'.mcap': 'mcap', '.db3': 'sqlite3'}


class BagError(RuntimeError):
    """A bag, or a topic in it, that cannot be used; the message names both."""


@dataclass(frozen=True)
class RawMessage:
    topic: str
    log_time: int  # ns, when the recorder received (or the writer stored) the message
    data: bytes    # CDR


def storage_files(path: Path) -> tuple[str, list[Path]]:
    """The storage plugin and files of a bag folder or storage file; BagError if unknown."""
    if not path.exists():
        raise BagError(f'{path}: no such bag')
    if path.is_file():
        if path.suffix not in STORAGES:
            raise BagError(f'{path}: unknown storage {path.suffix!r}; expected a bag folder, .mcap or .db3')
        return STORAGES[path.suffix], [path]
    metadata = path / 'metadata.yaml'
    if metadata.is_file():
        try:
            info = yaml.safe_load(metadata.read_text(encoding='utf-8'))['rosbag2_bagfile_information']
            storage = info['storage_identifier']
            files = [path / f for f in info['relative_file_paths']]
        except (yaml.YAMLError, TypeError, KeyError, UnicodeDecodeError) as exc:
            raise BagError(f'{path}: unreadable metadata.yaml: {exc!r}') from exc
        if storage not in STORAGES.values():
            raise BagError(f'{path}: unknown storage {storage!r} in metadata.yaml; '
                           f'readable: {sorted(STORAGES.values())}')
        return storage, files
    files = sorted(f for f in path.iterdir() if f.suffix in STORAGES)
    if not files:
        raise BagError(f'{path}: not a bag: no metadata.yaml and no .mcap or .db3 file')
    storages = {STORAGES[f.suffix] for f in files}
    if len(storages) > 1:
        raise BagError(f'{path}: mixed storage files {[f.name for f in files]}')
    return storages.pop(), files


class Bag:
    """A bag opened for reading; see the module docstring for damaged bags."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.storage, self.files = storage_files(self.path)
        self.damage: str | None = None
        self._intact = True
        self._scratch: tempfile.TemporaryDirectory | None = None  # repaired copies of damaged files
        self.counts: dict[str, int] = {}  # messages per topic, where the bag's index says
        try:
            with Reader(self.path) as reader:
                self.topics = {c.topic: c.msgtype for c in reader.connections}
                for c in reader.connections:
                    self.counts[c.topic] = self.counts.get(c.topic, 0) + c.msgcount
        except (ReaderError, FileNotFoundError, OSError, ValueError, KeyError) as exc:
            log.warning('%s: cannot be opened as an intact bag (%s); reading what is readable',
                        self.path, exc)
            self._intact = False
            self.topics = self._salvage_topics()

    # --- public API -------------------------------------------------------------------------
    def check_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self.topics:
            raise BagError(f'{self.path}: no topic {topic!r}; the bag has '
                           f'{sorted(self.topics) or "no topics"}')
        if self.topics[topic] != msgtype:
            raise BagError(f'{self.path}: topic {topic!r} has message type {self.topics[topic]!r}, '
                           f'expected {msgtype!r}')

    def raw(self, topic: str, msgtype: str) -> Iterator[RawMessage]:
        """The topic's messages in storage order; stops (setting ``damage``) where the bag is damaged."""
        self.check_topic(topic, msgtype)
        source = self._intact_messages(topic) if self._intact else self._salvaged_messages(topic)
        yield from source

    def messages(self, topic: str, msgtype: str) -> Iterator[tuple[int, object]]:
        """(log_time, deserialized message) pairs; an undecodable message is a BagError naming it."""
        store = typestore()
        for index, raw in enumerate(self.raw(topic, msgtype)):
            try:
                yield raw.log_time, store.deserialize_cdr(raw.data, msgtype)
            except Exception as exc:  # rosbags raises assorted errors on bad CDR
                raise BagError(f'{self.path}: topic {topic!r}: message {index} is not a valid {msgtype}: '
                               f'{exc!r}') from exc

    def stamped(self, topic: str, msgtype: str) -> Iterator[tuple[int, object]]:
        """Like :meth:`messages`, for topics whose header stamps must strictly increase (frames)."""
        previous = -1
        for index, (log_time, msg) in enumerate(self.messages(topic, msgtype)):
            stamp = stamp_ns(msg)
            if stamp <= previous:
                raise BagError(f'{self.path}: topic {topic!r}: messages out of order: message {index} has '
                               f'header stamp {stamp} ns, not after the previous {previous} ns')
            previous = stamp
            yield log_time, msg

    # --- intact bags ------------------------------------------------------------------------
    def _intact_messages(self, topic: str) -> Iterator[RawMessage]:
        try:
            with Reader(self.path) as reader:
                connections = [c for c in reader.connections if c.topic == topic]
                for _, log_time, data in reader.messages(connections=connections):
                    yield RawMessage(topic, log_time, bytes(data))
        except (ReaderError, OSError, ValueError) as exc:
            self._mark_damage(f'reading {topic!r} stopped: {exc}')

    # --- damaged bags -----------------------------------------------------------------------
    def _mark_damage(self, what: str) -> None:
        if self.damage != f'{self.path}: {what}':
            self.damage = f'{self.path}: {what}'
            log.warning('%s; using the messages before the damage', self.damage)

    def _salvage_topics(self) -> dict[str, str]:
        topics: dict[str, str] = {}
        if self.storage == 'mcap':
            for record in self._mcap_records():
                if isinstance(record, Channel):
                    topics[record.topic] = self._schema_names.get(record.schema_id, '')
        else:
            for db in self.files:
                topics.update(dict(self._sqlite_rows(db, 'SELECT name, type FROM topics')))
        return topics

    def _mcap_records(self) -> Iterator[object]:
        """Records of every mcap file, up to the first damaged one."""
        from mcap.records import Schema
        self._schema_names: dict[int, str] = {}
        for file in self.files:
            with file.open('rb') as f:
                try:
                    for record in StreamReader(f, skip_magic=False).records:
                        if isinstance(record, Schema):
                            self._schema_names[record.id] = record.name
                        yield record
                except (McapError, OSError, ValueError, EOFError, KeyError) as exc:
                    size = file.stat().st_size
                    where = (f'is truncated: it ends inside a record after {size} bytes' if f.tell() >= size
                             else f'is damaged at byte {f.tell()} of {size}')
                    self._mark_damage(f'{file.name} {where} ({type(exc).__name__}: {exc})')
                    return

    def _salvaged_messages(self, topic: str) -> Iterator[RawMessage]:
        if self.storage == 'mcap':
            channels: set[int] = set()
            for record in self._mcap_records():
                if isinstance(record, Channel) and record.topic == topic:
                    channels.add(record.id)
                elif isinstance(record, Message) and record.channel_id in channels:
                    yield RawMessage(topic, record.log_time, bytes(record.data))
            return
        for db in self.files:
            ids = [row[0] for row in self._sqlite_rows(db, 'SELECT id FROM topics WHERE name = ?', (topic,))]
            for log_time, data in self._sqlite_rows(
                    db, 'SELECT timestamp, data FROM messages WHERE topic_id = ?', (ids[0] if ids else -1,)):
                yield RawMessage(topic, log_time, bytes(data))

    def _readable_db(self, db: Path) -> Path:
        """``db``, or a copy whose header claims only the pages the file still has.

        SQLite refuses a whole file that is shorter than its header says; with the page count
        corrected it reads every row up to the first missing page.
        """
        with db.open('rb') as f:
            header = f.read(100)
        if len(header) < 100:
            return db
        (page_size,) = struct.unpack('>H', header[16:18])
        page_size = 65536 if page_size == 1 else page_size
        (pages,) = struct.unpack('>I', header[28:32])
        present = db.stat().st_size // page_size if page_size else 0
        if not page_size or pages <= present:
            return db
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix='perception_bag_')
        copy = Path(self._scratch.name) / db.name
        if not copy.exists():
            shutil.copyfile(db, copy)
            with copy.open('r+b') as f:
                f.seek(28)
                f.write(struct.pack('>I', present))
        return copy

    def _sqlite_rows(self, db: Path, query: str, args: tuple = ()) -> Iterator[tuple]:
        """Rows in storage order until the first unreadable page."""
        try:
            connection = sqlite3.connect(f'file:{self._readable_db(db)}?mode=ro', uri=True)
        except sqlite3.Error as exc:
            self._mark_damage(f'{db.name} cannot be opened ({exc})')
            return
        try:
            yield from connection.execute(query, args)
        except sqlite3.Error as exc:
            self._mark_damage(f'{db.name} is damaged ({exc})')
        finally:
            connection.close()


def stamp_ns(msg: object) -> int:
    """The header stamp of a message in nanoseconds."""
    stamp = msg.header.stamp  # type: ignore[attr-defined]
    return stamp.sec * 1_000_000_000 + stamp.nanosec
