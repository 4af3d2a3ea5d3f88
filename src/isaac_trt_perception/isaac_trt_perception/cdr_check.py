"""The start-up check of ``perception_core.cdr`` against rclpy's own serialization.

``cdr.py`` writes Detection2DArray and reads Image by a layout it carries itself; a vision_msgs or
middleware whose layout differs would make it publish wrong detections or read wrong pixels
without an error. So the node puts one message of each through both paths at start, and where they
differ takes rclpy's path (message objects) for the rest of its life.

Padding bytes are not compared: rclpy leaves them uninitialized. The written bytes agree when they
have rclpy's length and rclpy reads them back as the message built field by field.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import Image

from perception_core.cdr import DetectionArrays, Header, read_image
from perception_core.decode import Detections

from .messages import DetectionMessages, VisionTypes, image_fields

Writer = Callable[[Header, Detections], bytes]
Reader = Callable[[bytes], tuple[Header, dict[str, Any]]]
Read = Callable[[Any], tuple[Header, dict[str, Any]]]  # a received Image (either form) -> header, fields
Write = Callable[[Header, Detections], object]           # -> what the detections publisher takes
SHOWN = 4  # differing fields named in the warning; the rest are counted
# An odd frame_id length moves every field after it off its natural alignment.
SAMPLE_HEADER = Header(1_700_000_000, 123_456_789, 'self_check_frame')


def _differences(ours: Any, theirs: Any, path: str) -> Iterator[str]:
    """The dotted paths of the fields where two messages (or values within them) differ."""
    if hasattr(ours, 'get_fields_and_field_types'):
        for name in ours.get_fields_and_field_types():
            yield from _differences(getattr(ours, name), getattr(theirs, name), f'{path}.{name}'.lstrip('.'))
    elif isinstance(ours, (str, bytes, int, float, bool)):
        if ours != theirs:
            yield path
    elif len(ours) != len(theirs):
        yield f'{path} (length {len(ours)}, rclpy {len(theirs)})'
    else:
        for i, (a, b) in enumerate(zip(list(ours), list(theirs), strict=True)):
            if hasattr(a, 'get_fields_and_field_types'):
                yield from _differences(a, b, f'{path}[{i}]')
            elif a != b:
                yield path
                return


def _named(fields: list[str]) -> str:
    more = f' and {len(fields) - SHOWN} more' if len(fields) > SHOWN else ''
    return ', '.join(fields[:SHOWN]) + more


def sample_detections(classes: Sequence[str]) -> Detections:
    """One detection per class (each class name's length moves the fields after it)."""
    count = len(classes)
    corners = np.arange(count * 2, dtype=np.float32).reshape(count, 2) * 7.5 + 1.25
    size = np.array([10.5, 6.25], np.float32)  # not square: a swapped axis shows
    return Detections(np.concatenate([corners, corners + size], axis=1),
                      np.linspace(0.9, 0.1, count, dtype=np.float32), np.arange(count))


def detection_difference(write: Writer, types: VisionTypes, classes: Sequence[str],
                         header: Header = SAMPLE_HEADER) -> str | None:
    """What differs between ``write``'s Detection2DArray and rclpy's serialization of the same
    message built field by field; None when they agree."""
    detections = sample_detections(classes)
    reference = DetectionMessages(types, classes)(header, detections)
    try:
        written = write(header, detections)
    except Exception as exc:  # a layout this writer cannot fill is a difference, not a crash at start
        return f'writing failed ({type(exc).__name__}: {exc})'
    expected = len(serialize_message(reference))
    length = f'{len(written)} bytes, rclpy {expected}' if len(written) != expected else ''
    try:
        back = deserialize_message(written, types.Detection2DArray)
    except Exception as exc:  # whatever rclpy's type support raises on bytes it cannot read
        return '; '.join(filter(None, [length, f'rclpy cannot read them ({type(exc).__name__}: {exc})']))
    fields = list(_differences(back, reference, ''))
    if not fields and not length:
        return None
    return '; '.join(filter(None, [length, fields and 'fields ' + _named(fields)]))


def sample_image() -> Image:
    """An Image whose rows are padded (step > width x channels), with an odd-length frame_id."""
    image = Image(height=3, width=5, encoding='bgr8', step=16, data=bytes(range(48)))
    image.header.stamp.sec, image.header.stamp.nanosec = SAMPLE_HEADER.sec, SAMPLE_HEADER.nanosec
    image.header.frame_id = SAMPLE_HEADER.frame_id
    return image


def image_difference(read: Reader) -> str | None:
    """What differs between ``read`` on rclpy's serialized Image and rclpy's deserialization of
    it; None when they agree."""
    serialized = serialize_message(sample_image())
    try:
        header, fields = read(serialized)
    except Exception as exc:  # ImageError for a layout it cannot make sense of, or worse
        return f'it refused rclpy\'s serialized Image ({type(exc).__name__}: {exc})'
    want_header, want = image_fields(deserialize_message(serialized, Image))
    differing = [f'header.{name}' for name in ('sec', 'nanosec', 'frame_id')
                 if getattr(header, name) != getattr(want_header, name)]
    differing += [name for name in ('encoding', 'height', 'width', 'step', 'is_bigendian')
                  if fields.get(name) != want[name]]
    if 'data' not in fields or bytes(fields['data']) != bytes(want['data']):
        differing.append('data')
    return f'fields {_named(differing)}' if differing else None


@dataclass(frozen=True)
class MessagePath:
    """How the node takes frames in and puts detections out, chosen once at start."""
    raw: bool    # subscribe raw: frames arrive serialized
    read: Read
    write: Write


@dataclass(frozen=True)
class CdrCheck:
    """The check's outcome: what differed on each side (None where the serialized path agrees)."""
    detections: str | None
    image: str | None

    @classmethod
    def run(cls, write: Writer, types: VisionTypes, classes: Sequence[str], read: Reader = read_image
            ) -> CdrCheck:
        return cls(detection_difference(write, types, classes), image_difference(read))

    def warnings(self) -> list[str]:
        out = []
        if self.detections is not None:
            out.append(f'cdr.py\'s serialized Detection2DArray differs from rclpy\'s ({self.detections}): '
                       'publishing rclpy messages instead')
        if self.image is not None:
            out.append(f'cdr.py reads a serialized Image differently from rclpy ({self.image}): taking '
                       'deserialized Images instead')
        return out

    def path(self, types: VisionTypes, classes: Sequence[str]) -> MessagePath:
        """cdr.py's serialized path on each side where it agrees with rclpy, else rclpy's."""
        write: Write = (DetectionArrays(classes) if self.detections is None
                        else DetectionMessages(types, classes))
        if self.image is None:
            return MessagePath(True, read_image, write)
        return MessagePath(False, image_fields, write)
