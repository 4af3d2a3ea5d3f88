"""The node's two per-frame messages in their serialized (CDR) form: sensor_msgs/Image read as a
view over the received bytes, vision_msgs/Detection2DArray written straight to bytes.

Why not rclpy's messages: rclpy converts every field between Python objects and C structs. For an
Image that is a copy of the pixels before the node sees the frame; for a Detection2DArray it is
most of the publish, spent on the nested poses with 36-value covariances that vision_msgs carries
and a 2D detector leaves at their defaults (figures in bench/README.md). The node
subscribes and publishes raw (``raw=True``, ``publish(bytes)``), and these functions do the little
that is needed. The layout is plain CDR, little endian, as rmw_fastrtps, rmw_cyclonedds and
rmw_zenoh exchange it: a 4-byte encapsulation header, then each field aligned to its own size
counted from the end of that header; strings are a uint32 length (NUL included) and the bytes.
Tests check both against rclpy.serialization on the real message classes, and the node checks
them again at start (``isaac_trt_perception.cdr_check``), taking rclpy's path where they differ.
"""

from __future__ import annotations

import struct
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .convert import ImageError
from .decode import Detections

ENCAPSULATION_LE = b'\x00\x01\x00\x00'  # CDR_LE, no options
ORIGIN = len(ENCAPSULATION_LE)  # alignment counts from here


def _padding(offset: int, alignment: int) -> int:
    """Bytes before a field of ``alignment`` that would start at ``offset``."""
    return -(offset - ORIGIN) % alignment


@dataclass(frozen=True)
class Header:
    """std_msgs/Header as the per-frame path carries it."""
    sec: int
    nanosec: int
    frame_id: str

    @property
    def stamp_ns(self) -> int:
        return self.sec * 10**9 + self.nanosec


# Reads grouped so that a frame takes five unpacks: a frame arrives after the node has idled
# since the last one (cold caches), where each Python call costs more than in a warm loop.
_STAMP_AND_LENGTH = struct.Struct('<iII')  # header.stamp sec, nanosec; frame_id length
_SIZE_AND_LENGTH = struct.Struct('<III')   # height, width; encoding length
_BIGENDIAN = struct.Struct('<B')
_STEP_AND_LENGTH = struct.Struct('<II')    # step; data length


class _Reader:
    """Fields in order from a serialized message; a read past its end is an ImageError.

    The end is where Fast CDR (rmw_fastrtps, rclpy's deserializer) puts it: the encapsulation
    options' last byte carries, in its two low bits, how many bytes at the end of the message are
    padding (XCDR rounds a message up to 4 bytes). Fast CDR takes them off when the message length
    is a multiple of 4 and reads nothing from them; a message whose fields need those bytes is
    refused there, so it is refused here too. The other option bits are ignored by both.
    """

    def __init__(self, data: bytes) -> None:
        if len(data) < ORIGIN + 8:
            raise ImageError('serialized', f'serialized message of {len(data)} bytes is too short for '
                             'a header')
        if data[:2] != ENCAPSULATION_LE[:2]:
            # CDR_BE or XCDR2 (which aligns 8-byte fields to 4): not what ROS 2 middleware sends here
            raise ImageError('serialized', f'encapsulation 0x{bytes(data[:2]).hex()} is not CDR little '
                             'endian (0x0001)')
        self.data = data
        self.pos = ORIGIN
        self.end = len(data)
        if data[3] & 3 and not self.end % 4:
            self.end -= data[3] & 3

    def padding(self) -> str:
        """Why the message ends before its last byte, where the encapsulation options say so."""
        if self.end == len(self.data):
            return ''
        return (f' (its encapsulation options 0x{bytes(self.data[2:4]).hex()} mark the last '
                f'{len(self.data) - self.end} of its {len(self.data)} bytes as padding)')

    def take(self, fields: struct.Struct, alignment: int = 4) -> tuple:
        self.pos += _padding(self.pos, alignment)
        end = self.pos + fields.size
        if end > self.end:
            raise ImageError('serialized', f'serialized message ends at byte {self.end}, inside a field '
                             f'at byte {self.pos}{self.padding()}')
        values = fields.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def text(self, length: int) -> str:
        """The string of ``length`` bytes (NUL included) whose length field was just read."""
        if self.pos + length > self.end:
            raise ImageError('serialized', f'a string of {length} bytes runs past the message end at byte '
                             f'{self.end}{self.padding()}')
        raw = self.data[self.pos:self.pos + length]
        self.pos += length
        return raw.rstrip(b'\x00').decode('utf-8', errors='replace')

    def header(self) -> Header:
        sec, nanosec, length = self.take(_STAMP_AND_LENGTH)
        return Header(sec, nanosec, self.text(length))

    def payload(self, size: int, message: str) -> memoryview:
        """The ``size`` data bytes (uint8[] whose length was just read) as a view, not a copy."""
        if self.pos + size > self.end:
            raise ImageError('data', f'serialized {message} announces {size} data bytes but holds '
                             f'{self.end - self.pos}{self.padding()}')
        return memoryview(self.data)[self.pos:self.pos + size]


def read_header(data: bytes) -> Header:
    """The header of a serialized message that starts with one (Image, Detection2DArray)."""
    return _Reader(data).header()


def read_image(data: bytes) -> tuple[Header, dict[str, Any]]:
    """A serialized sensor_msgs/Image -> its header and the fields ``convert.frame_from_fields``
    takes; ``data`` is a view over the received bytes, not a copy. An ImageError raised after the
    header was read carries it (``exc.header``), so the refusal can name the frame_id and stamp."""
    reader = _Reader(data)
    header = reader.header()
    try:
        height, width, length = reader.take(_SIZE_AND_LENGTH)
        encoding = reader.text(length)
        is_bigendian, = reader.take(_BIGENDIAN, 1)
        step, size = reader.take(_STEP_AND_LENGTH)
        pixels = reader.payload(size, 'Image')
    except ImageError as exc:
        exc.header = header
        raise
    return header, {'encoding': encoding, 'height': height, 'width': width, 'step': step,
                    'is_bigendian': is_bigendian, 'data': pixels}


def _string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack('<I', len(encoded) + 1) + encoded + b'\x00'


# One detection after the array's header: [pad] header [pad] results (length 1 + class_id) [pad]
# the doubles from hypothesis.score to bbox.size_y [pad] id. The pads depend on where the detection
# starts (mod 8) and on the string lengths, so each layout is compiled once into a Struct and a
# frame's detection is then one pack: a cold frame pays per Python call, not per byte.
# The layouts are kept for the FRAME_ID_LENGTHS_KEPT frame_id lengths used last: a camera keeps one
# frame_id, but a publisher that varies it must not grow the cache without end (7.7 MB for 1,500
# lengths before this bound). Per length there are at most 2 (start mod 8) x classes x id lengths.
FRAME_ID_LENGTHS_KEPT = 8
_POSE = struct.pack('<7d36d', 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, *([0.0] * 36))  # identity, no covariance


def _detection_layout(offset: int, stamped: int, results: int, id_: int) -> struct.Struct:
    fields, end = [], offset
    for alignment, size, fmt in ((4, stamped, f'{stamped}s'), (4, results, f'{results}s'),
                                 (8, 8 + len(_POSE) + 40, f'd{len(_POSE)}s5d'), (4, id_, f'{id_}s')):
        pad = _padding(end, alignment)
        fields.append(f'{pad}x{fmt}')
        end += pad + size
    return struct.Struct('<' + ''.join(fields))


class DetectionArrays:
    """Detections -> one serialized Detection2DArray: the image's header, boxes as centre + size in
    image pixels, the class name as class_id, ids "0".."N-1" in score order (already sorted by
    decode), one hypothesis each, poses at their defaults."""

    def __init__(self, classes: Sequence[str]) -> None:
        # each class's results: sequence length 1, then the class_id string
        self._results = [struct.pack('<I', 1) + _string(name) for name in classes]
        self._ids: list[bytes] = []
        # len(stamped) -> (start mod 8, class, id length) -> layout; least recently used first
        self._layouts: OrderedDict[int, dict[tuple[int, int, int], struct.Struct]] = OrderedDict()

    def __call__(self, header: Header, detections: Detections) -> bytes:
        count = len(detections)
        while len(self._ids) < count:
            self._ids.append(_string(str(len(self._ids))))
        stamped = struct.pack('<iI', header.sec, header.nanosec) + _string(header.frame_id)
        head = ENCAPSULATION_LE + stamped
        head += bytes(_padding(len(head), 4)) + struct.pack('<I', count)
        parts, offset = [head], len(head)
        layouts = self._layouts.get(len(stamped))
        if layouts is None:
            layouts = self._layouts[len(stamped)] = {}
            if len(self._layouts) > FRAME_ID_LENGTHS_KEPT:
                self._layouts.popitem(last=False)
        else:
            self._layouts.move_to_end(len(stamped))
        for (x1, y1, x2, y2), score, class_id, id_ in zip(
                detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist(),
                self._ids, strict=False):
            results = self._results[class_id]
            key = (offset % 8, class_id, len(id_))
            layout = layouts.get(key)
            if layout is None:
                layout = layouts[key] = _detection_layout(offset, len(stamped), len(results), len(id_))
            parts.append(layout.pack(stamped, results, score, _POSE, (x1 + x2) / 2.0, (y1 + y2) / 2.0, 0.0,
                                      x2 - x1, y2 - y1, id_))
            offset += layout.size
        return b''.join(parts)


_LENGTH = struct.Struct('<I')


def read_compressed_image(data: bytes) -> tuple[Header, dict[str, Any]]:
    """A serialized sensor_msgs/CompressedImage (header, format, data) -> its header and the fields
    ``compressed.frame_from_compressed`` takes; ``data`` is a view over the received bytes. As in
    ``read_image``, an ImageError raised after the header was read carries it."""
    reader = _Reader(data)
    header = reader.header()
    try:
        length, = reader.take(_LENGTH)
        image_format = reader.text(length)
        size, = reader.take(_LENGTH)
        pixels = reader.payload(size, 'CompressedImage')
    except ImageError as exc:
        exc.header = header
        raise
    return header, {'format': image_format, 'data': pixels}
