"""What the node subscribes to and how a received message becomes a Frame, by
``ros_integration.image_transport``: ``raw`` (sensor_msgs/Image on the input topic, the path
``cdr_check`` chose) or ``compressed`` (sensor_msgs/CompressedImage on ``<input_topic>/compressed``,
image_transport's name for it, decoded by ``perception_core.compressed`` on the worker thread).

The compressed message is read serialized too (``cdr.read_compressed_image``: the JPEG/PNG bytes
are a view over the received buffer, handed to OpenCV without a copy), after the same kind of
start-up check against rclpy's serializer that ``cdr_check`` makes for Image; where they differ,
the node subscribes to deserialized CompressedImages instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rclpy.serialization import deserialize_message, serialize_message
from sensor_msgs.msg import CompressedImage, Image

from perception_core.cdr import Header, read_compressed_image
from perception_core.compressed import SUFFIX, frame_from_compressed
from perception_core.convert import Frame, frame_from_fields

from .cdr_check import SAMPLE_HEADER, MessagePath


@dataclass(frozen=True)
class ImageInput:
    """The subscription's type, topic (as configured, before remapping) and message form, and the
    worker thread's steps from a received message to a Frame."""
    message_type: type
    topic: str
    raw: bool                                          # subscribe raw: messages arrive serialized
    read: Callable[[Any], tuple[Header, dict[str, Any]]]
    to_frame: Callable[[Header, dict[str, Any]], Frame]
    error_kind: str                                    # the monitor's errors counter for a bad one


def _raw_frame(header: Header, fields: dict[str, Any]) -> Frame:
    return frame_from_fields(**fields)


def _compressed_frame(header: Header, fields: dict[str, Any]) -> Frame:
    return frame_from_compressed(header, **fields)


def compressed_fields(msg: Any) -> tuple[Header, dict[str, Any]]:
    """A deserialized CompressedImage -> what ``cdr.read_compressed_image`` gives for its bytes."""
    stamp = msg.header.stamp
    return Header(stamp.sec, stamp.nanosec, msg.header.frame_id), {'format': msg.format, 'data': msg.data}


def compressed_difference() -> str | None:
    """What differs between ``read_compressed_image`` on rclpy's serialized CompressedImage and
    rclpy's deserialization of it; None when they agree."""
    sample = CompressedImage(format='rgb8; jpeg compressed bgr8', data=bytes(range(7)))
    sample.header.stamp.sec, sample.header.stamp.nanosec = SAMPLE_HEADER.sec, SAMPLE_HEADER.nanosec
    sample.header.frame_id = SAMPLE_HEADER.frame_id  # odd length: the fields after it move
    serialized = serialize_message(sample)
    try:
        header, fields = read_compressed_image(serialized)
    except Exception as exc:  # an ImageError for a layout it cannot make sense of, or worse
        return f'it refused rclpy\'s serialized CompressedImage ({type(exc).__name__}: {exc})'
    want_header, want = compressed_fields(deserialize_message(serialized, CompressedImage))
    differing = [name for name, ours, theirs in (('header', header, want_header),
                                                 ('format', fields['format'], want['format']),
                                                 ('data', bytes(fields['data']), bytes(want['data'])))
                 if ours != theirs]
    return ', '.join(differing) or None


def image_input(values: Mapping[str, Any], path: MessagePath, warn: Callable[[str], None]) -> ImageInput:
    """The input for this deployment; ``warn`` receives the reason for leaving the serialized path."""
    topic = values['ros_integration.input_topic']
    if values['ros_integration.image_transport'] == 'raw':
        return ImageInput(Image, topic, path.raw, path.read, _raw_frame, 'bad_image')
    difference = compressed_difference()
    if difference is not None:
        warn(f'cdr.py reads a serialized CompressedImage differently from rclpy ({difference}): taking '
             'deserialized CompressedImages instead')
    return ImageInput(CompressedImage, topic.rstrip('/') + SUFFIX, difference is None,
                      read_compressed_image if difference is None else compressed_fields, _compressed_frame,
                      'bad_compressed_image')
