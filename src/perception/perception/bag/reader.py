"""Read rosbag2 bags (mcap or sqlite3, a bag folder or a bare storage file), damaged ones too.

Every bag is read record by record from the start, the way the recorder wrote it: mcap with the
``mcap`` library's record parsers (chunk CRCs, the data-section and summary CRCs checked where the
writer stored them), sqlite3 row by row with the standard library. Nothing is taken from an index
that the data itself does not confirm, so a bag cut short (a disk full, a copy interrupted, a
recorder killed before writing its index or metadata.yaml) or with damaged bytes gives every message
before the damage, and :attr:`Bag.damage` names it: the file, the byte offset (mcap) or the message
id (sqlite3). Bytes that no CRC covers (message payloads in sqlite3, or in an mcap written without
CRCs, such as rosbags writes) cannot be checked by any reader: a flip there reaches the deserializer,
which names the message if it no longer decodes. Every error is a :class:`BagError` naming the bag
and, where there is one, the topic.
"""

from __future__ import annotations

import io
import logging
import shutil
import sqlite3
import struct
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import lz4.frame
import yaml
import zstandard
from mcap.data_stream import ReadDataStream
from mcap.exceptions import McapError
from mcap.opcode import Opcode
from mcap.records import Channel, Message, Schema

from perception.bag.messages import typestore

log = logging.getLogger(__name__)

STORAGES = {'.mcap': 'mcap', '.db3': 'sqlite3'}
MCAP_MAGIC = b'\x89MCAP0\r\n'
# What a damaged record can make the mcap library's parsers (or a decompressor) raise.
_PARSE_ERRORS = (McapError, EOFError, struct.error, UnicodeDecodeError, ValueError, zstandard.ZstdError,
                 RuntimeError, OverflowError, MemoryError)


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


@dataclass(frozen=True)
class Damage:
    """Where damage ended the read of a bag."""

    file: Path           # the storage file
    what: str            # '<file> is truncated: ...', '<file> is damaged at byte ...'
    offset: int | None   # byte in the file where the damaged record starts (mcap)
    message: int | None  # messages of the file read before it (mcap) / id of the last good row (sqlite3)


class _Damaged(Exception):
    """Internal: a record that cannot be read; ``offset`` is where it starts."""

    def __init__(self, offset: int | None, what: str) -> None:
        super().__init__(what)
        self.offset, self.what = offset, what


class _Exact(io.BytesIO):
    """A record's bytes: a field that claims more than the record holds is damage, not a short read."""

    def read(self, size: int | None = -1) -> bytes:
        data = super().read(size)
        if size is not None and size >= 0 and len(data) < size:
            raise EOFError(f'a field claims {size} bytes, the record has {len(data)} left')
        return data


def _parse(record: type, body: bytes) -> object:
    return record.read(ReadDataStream(_Exact(body)))  # type: ignore[attr-defined]


class _McapFile:
    """The Schema, Channel and Message records of one mcap file in file order, up to its damage.

    Raises :class:`_Damaged` at the first record that is cut short, malformed, fails a CRC, or
    points at a channel not defined before it. Lengths are checked against the file before anything
    is read, so a damaged length never makes it allocate more than the file holds.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self.size = file.stat().st_size
        self.messages = 0  # messages yielded so far
        self.channels: dict[int, Channel] = {}
        self.schemas: dict[int, Schema] = {}

    def truncated(self, offset: int, what: str) -> _Damaged:
        return _Damaged(offset, f'is truncated after {self.size} bytes: {what}')

    def damaged(self, offset: int, what: str) -> _Damaged:
        return _Damaged(offset, f'is damaged at byte {offset} of {self.size}: {what}')

    def records(self) -> Iterator[Schema | Channel | Message]:
        with self.file.open('rb') as f:
            magic = f.read(len(MCAP_MAGIC))
            if magic != MCAP_MAGIC:
                raise (self.truncated(0, 'it ends inside the mcap magic') if len(magic) < len(MCAP_MAGIC)
                       else self.damaged(0, 'not an mcap file (bad magic)'))
            pos = len(MCAP_MAGIC)
            data_crc = zlib.crc32(magic)  # the data section's CRC runs from the start of the file
            summary_crc: int | None = None  # from the end of the data section on
            while True:
                start = pos
                head = f.read(9)
                if len(head) < 9:
                    raise self.truncated(start, 'it ends before its footer' if not head
                                         else 'it ends inside a record')
                opcode, length = struct.unpack('<BQ', head)
                left = self.size - start - 9
                if length > left:
                    if opcode == Opcode.CHUNK:  # cut inside a chunk: recover its complete messages
                        yield from self.partial_chunk(start, length, f.read(left))
                    kind = 'a chunk' if opcode == Opcode.CHUNK else 'a record'
                    raise self.truncated(start, f'it ends inside {kind} of {length} bytes at byte {start}')
                body = f.read(length)
                pos = start + 9 + length
                if opcode == Opcode.DATA_END:
                    (expected,) = struct.unpack('<I', body[:4]) if length >= 4 else (0,)
                    if expected and expected != data_crc:
                        raise self.damaged(start, 'the data section fails its CRC (the damage lies before '
                                           'this byte, outside the chunks or in one without a CRC)')
                    summary_crc = 0  # the summary section starts after this record
                    continue
                if opcode == Opcode.FOOTER:
                    self.footer(start, head, body, summary_crc if summary_crc is not None else 0)
                    if f.read(len(MCAP_MAGIC)) != MCAP_MAGIC:
                        raise self.damaged(pos, 'the closing magic is wrong or cut short')
                    return
                if summary_crc is None:
                    data_crc = zlib.crc32(body, zlib.crc32(head, data_crc))
                    yield from self.data_record(start, opcode, body)
                else:
                    summary_crc = zlib.crc32(body, zlib.crc32(head, summary_crc))
                    if opcode not in set(Opcode):
                        raise self.damaged(start, f'unknown record type 0x{opcode:02x} in the summary')

    def data_record(self, start: int, opcode: int, body: bytes) -> Iterator[Schema | Channel | Message]:
        if opcode == Opcode.CHUNK:
            yield from self.chunk(start, body)
        elif opcode in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
            yield self.record(start, opcode, body)
        elif opcode not in set(Opcode):
            raise self.damaged(start, f'unknown record type 0x{opcode:02x}')

    def record(self, start: int, opcode: int, body: bytes, chunk_start: int | None = None,
               times: tuple[int, int] | None = None) -> Schema | Channel | Message:
        where = start if chunk_start is None else chunk_start
        inside = '' if chunk_start is None else f' (record at byte {start} of the chunk\'s data)'
        try:
            if opcode == Opcode.SCHEMA:
                schema = _parse(Schema, body)
                self.schemas[schema.id] = schema
                return schema
            if opcode == Opcode.CHANNEL:
                channel = _parse(Channel, body)
                self.channels[channel.id] = channel
                return channel
            if len(body) < 22:
                raise EOFError(f'a message record of {len(body)} bytes')
            message = Message.read(ReadDataStream(_Exact(body)), len(body))
        except _PARSE_ERRORS as exc:
            raise self.damaged(where, f'malformed record{inside} ({type(exc).__name__}: {exc})') from exc
        if message.channel_id not in self.channels:
            raise self.damaged(where, f'message {self.messages} is on channel {message.channel_id}, '
                               f'which no channel record defines before it{inside}')
        if times and not times[0] <= message.log_time <= times[1]:
            raise self.damaged(where, f'message {self.messages} has log time {message.log_time} ns, outside '
                               f'its chunk\'s {times[0]}..{times[1]} ns{inside}')
        self.messages += 1
        return message

    @staticmethod
    def chunk_fields(body: bytes) -> tuple[int, int, int, int, str, int, int]:
        """start time, end time, uncompressed size, CRC, compression, records' length, their offset."""
        start_time, end_time, size, crc, name_length = struct.unpack_from('<QQQII', body, 0)
        compression = _Exact(body[32:]).read(name_length).decode('utf-8')
        (records_length,) = struct.unpack_from('<Q', body, 32 + name_length)
        return start_time, end_time, size, crc, compression, records_length, 40 + name_length

    def chunk(self, start: int, body: bytes) -> Iterator[Schema | Channel | Message]:
        try:
            start_time, end_time, size, crc, compression, records_length, at = self.chunk_fields(body)
            if at + records_length > len(body):
                raise EOFError(f'its records claim {records_length} bytes, the chunk has {len(body) - at}')
            records = body[at:at + records_length]
            if compression == 'zstd':
                data = zstandard.ZstdDecompressor().decompress(records, max_output_size=size)
            elif compression == 'lz4':
                data = lz4.frame.decompress(records)
            elif compression == '':
                data = records
            else:
                raise ValueError(f'unknown compression {compression!r}')
        except _PARSE_ERRORS as exc:
            raise self.damaged(start, f'malformed chunk ({type(exc).__name__}: {exc})') from exc
        if len(data) != size:
            raise self.damaged(start, f'the chunk holds {len(data)} bytes, its header says {size}')
        if crc and zlib.crc32(data) != crc:
            raise self.damaged(start, 'the chunk fails its CRC')
        yield from self.chunk_records(start, data, (start_time, end_time), complete=True)

    def chunk_records(self, start: int, data: bytes, times: tuple[int, int],
                      complete: bool) -> Iterator[Schema | Channel | Message]:
        pos = 0
        while pos < len(data):
            if len(data) - pos < 9:
                if complete:
                    raise self.damaged(start, f'a record header cut short at byte {pos} of the chunk\'s data')
                return
            opcode, length = struct.unpack_from('<BQ', data, pos)
            if length > len(data) - pos - 9:
                if complete:
                    raise self.damaged(start, f'a record at byte {pos} of the chunk\'s data claims '
                                       f'{length} bytes, the chunk has {len(data) - pos - 9} left')
                return
            if opcode not in (Opcode.SCHEMA, Opcode.CHANNEL, Opcode.MESSAGE):
                raise self.damaged(start, f'record type 0x{opcode:02x} at byte {pos} of the chunk\'s data, '
                                   'where only schemas, channels and messages belong')
            yield self.record(pos, opcode, data[pos + 9:pos + 9 + length], chunk_start=start, times=times)
            pos += 9 + length

    def partial_chunk(self, start: int, length: int, body: bytes) -> Iterator[Schema | Channel | Message]:
        """The complete records of a chunk the file ends inside (their CRC needs the whole chunk)."""
        try:
            start_time, end_time, size, _, compression, records_length, at = self.chunk_fields(body)
        except _PARSE_ERRORS:
            return
        if at + records_length != length:  # the lengths disagree: a damaged header, not a cut
            return
        records = body[at:]
        try:
            if compression == 'zstd':
                data = zstandard.ZstdDecompressor().decompressobj().decompress(records)
            elif compression == 'lz4':
                data = lz4.frame.LZ4FrameDecompressor().decompress(records)
            elif compression == '':
                data = records
            else:
                return
        except _PARSE_ERRORS:
            return
        yield from self.chunk_records(start, data[:size], (start_time, end_time), complete=False)

    def footer(self, start: int, head: bytes, body: bytes, summary_crc: int) -> None:
        if len(body) < 20:
            raise self.damaged(start, f'a footer of {len(body)} bytes')
        summary_start, _, expected = struct.unpack_from('<QQI', body)
        if summary_start and expected and zlib.crc32(body[:16], zlib.crc32(head, summary_crc)) != expected:
            raise self.damaged(summary_start, 'the summary (index) fails its CRC')


class Bag:
    """A bag opened for reading; see the module docstring for damaged bags."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.storage, self.files = storage_files(self.path)
        self.damage: str | None = None         # where damage ended the read, in words
        self.damage_at: Damage | None = None   # the same, as fields
        self._scratch: tempfile.TemporaryDirectory | None = None  # repaired copies of damaged files
        unreadable = [f for f in self.files if not f.is_file() or f.stat().st_size == 0]
        if unreadable == self.files:
            raise BagError(f'{self.path}: ' + '; '.join(self._missing_or_empty(f) for f in self.files)
                           + ': nothing to read')
        self.topics: dict[str, str] = {}
        self.counts: dict[str, int] = {}  # messages per topic that the bag's storage holds
        if self.storage == 'mcap':
            for record, named in self._mcap_records():
                if isinstance(record, Channel):
                    self.topics[record.topic] = named  # its message type
                elif isinstance(record, Message):
                    self.counts[named] = self.counts.get(named, 0) + 1  # its topic
        else:
            for db in self.files:
                rows = list(self._sqlite_rows(db, 'SELECT id, name, type FROM topics ORDER BY id'))
                self.topics.update({name: msgtype for _, name, msgtype in rows})
                for topic_id, count in self._sqlite_rows(
                        db, 'SELECT topic_id, COUNT(*) FROM messages GROUP BY topic_id', quiet=True):
                    names = [name for i, name, _ in rows if i == topic_id]
                    if names:
                        self.counts[names[0]] = self.counts.get(names[0], 0) + count
                if self.damage_at is not None:
                    break

    # --- public API -------------------------------------------------------------------------
    def check_topic(self, topic: str, msgtype: str) -> None:
        if topic not in self.topics:
            raise BagError(f'{self.path}: no topic {topic!r}; the bag has '
                           f'{sorted(self.topics) or "no topics"}'
                           + (f' (read up to its damage: {self.damage})' if self.damage else ''))
        if self.topics[topic] != msgtype:
            raise BagError(f'{self.path}: topic {topic!r} has message type {self.topics[topic]!r}, '
                           f'expected {msgtype!r}')

    def raw(self, topic: str, msgtype: str) -> Iterator[RawMessage]:
        """The topic's messages in storage order; stops (setting ``damage``) where the bag is damaged."""
        self.check_topic(topic, msgtype)
        if self.storage == 'mcap':
            for record, record_topic in self._mcap_records():
                if isinstance(record, Message) and record_topic == topic:
                    yield RawMessage(topic, record.log_time, record.data)
            return
        for db in self.files:
            ids = [row[0] for row in self._sqlite_rows(db, 'SELECT id FROM topics WHERE name = ?', (topic,))]
            if self.damage_at is None or self.damage_at.file != db:
                yield from self._sqlite_messages(db, topic, ids[0] if ids else -1)
            if self.damage_at is not None and self.damage_at.file == db:
                return

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

    # --- damage -----------------------------------------------------------------------------
    @staticmethod
    def _missing_or_empty(file: Path) -> str:
        return f'{file.name} is missing' if not file.is_file() else f'{file.name} is an empty file (0 bytes)'

    def _mark_damage(self, file: Path, what: str, offset: int | None, message: int | None) -> None:
        damage = Damage(file, f'{file.name} {what}', offset, message)
        if damage != self.damage_at:
            self.damage_at = damage
            self.damage = f'{self.path}: {damage.what}'
            log.warning('%s; using the messages before the damage', self.damage)

    # --- mcap -------------------------------------------------------------------------------
    def _mcap_records(self) -> Iterator[tuple[Schema | Channel | Message, str]]:
        """Records of every mcap file up to the first damaged one, each with what it names: a
        channel's message type, a message's topic (channel ids are per file)."""
        for file in self.files:
            if not file.is_file() or file.stat().st_size == 0:
                self._mark_damage(file, self._missing_or_empty(file).removeprefix(file.name + ' '), 0, 0)
                return
            reader = _McapFile(file)
            try:
                for record in reader.records():
                    if isinstance(record, Channel):
                        schema = reader.schemas.get(record.schema_id)
                        yield record, schema.name if schema is not None else ''
                    elif isinstance(record, Message):
                        yield record, reader.channels[record.channel_id].topic
                    else:
                        yield record, ''
            except _Damaged as damage:
                self._mark_damage(file, f'{damage.what} ({reader.messages} messages before it)',
                                  damage.offset, reader.messages)
                return
            except OSError as exc:
                self._mark_damage(file, f'cannot be read ({exc})', None, reader.messages)
                return

    # --- sqlite3 ----------------------------------------------------------------------------
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

    def _sqlite_connect(self, db: Path) -> sqlite3.Connection | None:
        if not db.is_file() or db.stat().st_size == 0:
            self._mark_damage(db, self._missing_or_empty(db).removeprefix(db.name + ' '), None, None)
            return None
        try:
            return sqlite3.connect(f'file:{self._readable_db(db)}?mode=ro', uri=True)
        except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: text that is not UTF-8
            self._mark_damage(db, f'cannot be opened ({type(exc).__name__}: {exc})', None, None)
            return None

    def _sqlite_rows(self, db: Path, query: str, args: tuple = (), quiet: bool = False) -> Iterator[tuple]:
        """Rows of a query about the bag (topics, counts), or none where the file is damaged."""
        connection = self._sqlite_connect(db)
        if connection is None:
            return
        try:
            yield from connection.execute(query, args).fetchall()
        except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: text that is not UTF-8
            if not quiet:  # counts are a nicety; the messages' own read names any damage
                self._mark_damage(db, f'is damaged: its topics cannot be read ({type(exc).__name__}: {exc})',
                                  None, None)
        finally:
            connection.close()

    def _sqlite_messages(self, db: Path, topic: str, topic_id: int) -> Iterator[RawMessage]:
        """The topic's rows in storage (id) order, up to the first one SQLite cannot read."""
        connection = self._sqlite_connect(db)
        if connection is None:
            return
        last_id: int | None = None
        try:
            rows = connection.execute('SELECT id, timestamp, data FROM messages WHERE topic_id = ? '
                                      'ORDER BY id', (topic_id,))
            for row_id, log_time, data in rows:
                typed = isinstance(row_id, int) and isinstance(log_time, int) and isinstance(data, bytes)
                if not typed or (last_id is not None and row_id <= last_id):
                    raise sqlite3.DatabaseError(f'message id {row_id!r} is malformed or out of order')
                last_id = row_id
                yield RawMessage(topic, log_time, data)
        except (sqlite3.Error, OSError, ValueError) as exc:  # ValueError: text that is not UTF-8
            where = f'after message id {last_id}' if last_id is not None else 'before its first message'
            self._mark_damage(db, f'is damaged: {topic!r} unreadable {where} ({type(exc).__name__}: {exc})',
                              None, last_id)
        finally:
            connection.close()


def stamp_ns(msg: object) -> int:
    """The header stamp of a message in nanoseconds."""
    stamp = msg.header.stamp  # type: ignore[attr-defined]
    return stamp.sec * 1_000_000_000 + stamp.nanosec
