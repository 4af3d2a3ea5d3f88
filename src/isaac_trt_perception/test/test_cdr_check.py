"""The start-up check of cdr.py against rclpy: agreement keeps the serialized path, a writer or
reader for a layout that really differs is named and replaced by rclpy's path."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from perception_core import cdr
from perception_core.cdr import DetectionArrays, Header, read_image
from perception_core.convert import frame_from_fields
from perception_core.decode import Detections

# make test promises both (rclpy from the ROS 2 wheels, vision_msgs built by make): missing is a failure
try:
    from rclpy import serialization
except ImportError as error:
    pytest.fail(f'rclpy is missing ({error}): make setup installs the ROS 2 wheels', pytrace=False)
try:
    import vision_msgs.msg  # noqa: F401
except ImportError as error:
    pytest.fail(f'vision_msgs is missing ({error}): make build builds it', pytrace=False)

from isaac_trt_perception.cdr_check import (
    CdrCheck,
    detection_difference,
    image_difference,
    sample_detections,
    sample_image,
)
from isaac_trt_perception.messages import DetectionMessages, image_fields, vision_types

CLASSES = ['cup', 'bottle', 'box', 'hammer_with_a_long_name']


@pytest.mark.parametrize('frame_id', ['', 'c', 'camera_optical_frame'])
def test_the_serialized_path_agrees_with_rclpy_and_is_kept(frame_id):
    types = vision_types()
    assert detection_difference(DetectionArrays(CLASSES), types, CLASSES, Header(7, 8, frame_id)) is None
    check = CdrCheck.run(DetectionArrays(CLASSES), types, CLASSES)
    assert check == CdrCheck(None, None) and check.warnings() == []
    path = check.path(types, CLASSES)
    assert path.raw and path.read is read_image and isinstance(path.write, DetectionArrays)


def test_the_rclpy_writer_is_the_message_cdr_writes():
    types = vision_types()
    header, detections = Header(3, 4, 'cam'), sample_detections(CLASSES)
    message = DetectionMessages(types, CLASSES)(header, detections)
    assert serialization.deserialize_message(DetectionArrays(CLASSES)(header, detections),
                                             types.Detection2DArray) == message
    assert [d.results[0].hypothesis.class_id for d in message.detections] == CLASSES


def y_first(header: Header, detections: Detections) -> bytes:
    """A writer for a layout whose boxes hold y before x (valid CDR, other meaning)."""
    swapped = Detections(detections.boxes[:, [1, 0, 3, 2]], detections.scores, detections.class_ids)
    return DetectionArrays(CLASSES)(header, swapped)


def test_a_writer_with_other_fields_is_named_and_replaced_by_rclpy_messages():
    types = vision_types()
    difference = detection_difference(y_first, types, CLASSES)
    assert difference is not None and 'bytes' not in difference  # same length, other values
    assert difference.startswith('fields detections[0].bbox.center.position.x, '
                                 'detections[0].bbox.center.position.y, detections[0].bbox.size_x, '
                                 'detections[0].bbox.size_y and 12 more')
    check = CdrCheck.run(y_first, types, CLASSES)
    assert check.image is None
    [warning] = check.warnings()
    assert 'differs from rclpy' in warning and 'bbox.center.position.x' in warning
    path = check.path(types, CLASSES)
    assert path.raw and isinstance(path.write, DetectionMessages)


def test_a_writer_aligning_doubles_to_4_bytes_is_caught(monkeypatch):
    """XCDR2's rule (8-byte fields aligned to 4) in cdr.py's own writer: rclpy's bytes differ."""
    monkeypatch.setattr(cdr, '_padding', lambda offset, alignment: -(offset - cdr.ORIGIN) % min(alignment, 4))
    types = vision_types()
    difference = detection_difference(DetectionArrays(CLASSES), types, CLASSES)
    assert difference is not None and 'bytes, rclpy' in difference, difference
    check = CdrCheck.run(DetectionArrays(CLASSES), types, CLASSES)
    assert check.detections == difference
    assert check.image is None  # an Image has no 8-byte field: its reader still agrees


def width_first(data: bytes) -> tuple[Header, dict]:
    """A reader for a layout with width before height."""
    header, fields = read_image(data)
    return header, {**fields, 'height': fields['width'], 'width': fields['height']}


def test_a_reader_with_other_fields_is_named_and_replaced_by_deserialized_images(monkeypatch):
    types = vision_types()
    assert image_difference(width_first) == 'fields height, width'
    check = CdrCheck.run(DetectionArrays(CLASSES), types, CLASSES, width_first)
    assert check.detections is None
    [warning] = check.warnings()
    assert 'reads a serialized Image differently' in warning and 'height, width' in warning
    path = check.path(types, CLASSES)
    assert not path.raw and path.read is image_fields and isinstance(path.write, DetectionArrays)
    # a layout whose is_bigendian is 4 bytes wide: every field after it is off
    monkeypatch.setattr(cdr, '_BIGENDIAN', struct.Struct('<I'))
    assert image_difference(read_image) is not None


def test_the_rclpy_reader_gives_the_frame_the_serialized_reader_gives():
    image = sample_image()
    header, fields = image_fields(image)
    raw_header, raw_fields = read_image(serialization.serialize_message(image))
    assert header == raw_header
    assert np.array_equal(frame_from_fields(**fields).pixels, frame_from_fields(**raw_fields).pixels)
