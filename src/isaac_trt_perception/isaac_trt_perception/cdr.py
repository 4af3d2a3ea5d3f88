"""The node's two per-frame messages in their serialized (CDR) form: sensor_msgs/Image read as a
view over the received bytes, vision_msgs/Detection2DArray written straight to bytes.

Why not rclpy's messages: rclpy converts every field between Python objects and C structs. For an
Image that is a copy of the pixels before the node sees the frame (~0.1 ms at 640x480); for a
Detection2DArray of 9 detections it is ~0.37 ms per publish, most of it the 9 nested poses with
36-value covariances that vision_msgs carries and a 2D detector leaves at their defaults. The node
subscribes and publishes raw (``raw=True``, ``publish(bytes)``), and these functions do the little
that is needed. The layout is plain CDR, little endian, as rmw_fastrtps, rmw_cyclonedds and
rmw_zenoh exchange it: a 4-byte encapsulation header, then each field aligned to its own size
counted from the end of that header; strings are a uint32 length (NUL included) and the bytes.
Tests check both against rclpy.serialization on the real message classes.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .convert import ImageError
from .decode import Detections

ENCAPSULATION_LE = b'\x00\x01\x00\x00'  # CDR_LE, no options
ORIGIN = len(ENCAPSULATION_LE)  # alignment counts from here


@dataclass(frozen=True)
class Header:
    """std_msgs/Header as the per-frame path carries it."""
    sec: int
    nanosec: int
    frame_id: str

    @property
    def stamp_ns(self) -> int:
        return self.sec * 10**9 + self.nanosec


class _Reader:
    """Fields in order from a serialized message; a read past its end is an ImageError."""

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

    def _take(self, fmt: str, size: int) -> Any:
        self.pos += -(self.pos - ORIGIN) % size
        end = self.pos + struct.calcsize(fmt)
        if end > len(self.data):
            raise ImageError('serialized', f'serialized message ends at byte {len(self.data)}, inside '
                             f'a field at byte {self.pos}')
        values = struct.unpack_from('<' + fmt, self.data, self.pos)
        self.pos = end
        return values

    def u32(self) -> int:
        return self._take('I', 4)[0]

    def u8(self) -> int:
        return self._take('B', 1)[0]

    def string(self) -> str:
        length = self.u32()
        raw = self.data[self.pos:self.pos + length]
        if len(raw) < length:
            raise ImageError('serialized', f'a string of {length} bytes runs past the message end')
        self.pos += length
        return raw.rstrip(b'\x00').decode('utf-8', errors='replace')

    def header(self) -> Header:
        sec, nanosec = self._take('iI', 4)
        return Header(sec, nanosec, self.string())


def read_header(data: bytes) -> Header:
    """The header of a serialized message that starts with one (Image, Detection2DArray)."""
    return _Reader(data).header()


def read_image(data: bytes) -> tuple[Header, dict[str, Any]]:
    """A serialized sensor_msgs/Image -> its header and the fields ``convert.frame_from_fields``
    takes; ``data`` is a view over the received bytes, not a copy."""
    reader = _Reader(data)
    header = reader.header()
    height, width = reader.u32(), reader.u32()
    encoding = reader.string()
    is_bigendian = reader.u8()
    step = reader.u32()
    size = reader.u32()
    pixels = memoryview(data)[reader.pos:reader.pos + size]
    if len(pixels) < size:
        raise ImageError('data', f'serialized Image announces {size} data bytes but holds {len(pixels)}')
    return header, {'encoding': encoding, 'height': height, 'width': width, 'step': step,
                    'is_bigendian': is_bigendian, 'data': pixels}


def _string(text: str) -> bytes:
    encoded = text.encode()
    return struct.pack('<I', len(encoded) + 1) + encoded + b'\x00'


class _Buffer(bytearray):
    def align(self, size: int) -> None:
        self.extend(bytes(-(len(self) - ORIGIN) % size))


# One detection's doubles from hypothesis.score to bbox.size_y: score, pose (position xyz,
# orientation xyzw = identity), its covariance (36 zeros), bbox centre x, y, theta, size x, y.
_DOUBLES = struct.Struct('<d3d4d36d5d')
_IDENTITY_POSE = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0) + (0.0,) * 36


class DetectionArrays:
    """Detections -> one serialized Detection2DArray: the image's header, boxes as centre + size in
    image pixels, the class name as class_id, ids "0".."N-1" in score order (already sorted by
    decode), one hypothesis each, poses at their defaults."""

    def __init__(self, classes: Sequence[str]) -> None:
        # each class's results: sequence length 1, then the class_id string
        self._results = [struct.pack('<I', 1) + _string(name) for name in classes]
        self._ids: list[bytes] = []

    def __call__(self, header: Header, detections: Detections) -> bytes:
        count = len(detections)
        while len(self._ids) < count:
            self._ids.append(_string(str(len(self._ids))))
        stamped = struct.pack('<iI', header.sec, header.nanosec) + _string(header.frame_id)
        out = _Buffer(ENCAPSULATION_LE)
        out += stamped
        out.align(4)
        out += struct.pack('<I', count)
        boxes = np.asarray(detections.boxes, dtype=np.float64)
        centres = ((boxes[:, :2] + boxes[:, 2:]) / 2.0).tolist()
        sizes = (boxes[:, 2:] - boxes[:, :2]).tolist()
        for (cx, cy), (sx, sy), score, class_id, id_ in zip(
                centres, sizes, detections.scores.tolist(), detections.class_ids.tolist(), self._ids,
                strict=False):
            out.align(4)
            out += stamped
            out.align(4)
            out += self._results[class_id]
            out.align(8)
            out += _DOUBLES.pack(score, *_IDENTITY_POSE, cx, cy, 0.0, sx, sy)
            out.align(4)
            out += id_
        return bytes(out)
