"""cdr.py against rclpy.serialization and the real message classes: what the node writes
deserializes to the Detection2DArray one would build field by field, and what it reads from a
serialized Image is that Image."""

from __future__ import annotations

import numpy as np
import pytest

from perception_core.cdr import DetectionArrays, Header, read_header, read_image
from perception_core.convert import ImageError, frame_from_fields
from perception_core.decode import Detections

# make test promises rclpy (make setup) and vision_msgs (make build): without them these proofs
# cannot run, which is a failure of the set-up, not a reason to skip them.
try:
    import sensor_msgs.msg as sensor_msgs
    import std_msgs.msg as std_msgs
    import vision_msgs.msg as vision_msgs
    from rclpy import serialization
except ImportError as missing:
    raise ImportError(f'the CDR proofs need rclpy and the message packages (make setup, make build): '
                      f'{missing}') from missing

CLASSES = ['cup', 'bottle', 'box', 'ball', 'banana', 'a', 'hammer_with_a_long_name']


def ros_header(header: Header):
    stamped = std_msgs.Header(frame_id=header.frame_id)
    stamped.stamp.sec, stamped.stamp.nanosec = header.sec, header.nanosec
    return stamped


def reference(header: Header, detections: Detections):
    """The message built field by field with vision_msgs, as the issue specifies it."""
    msg = vision_msgs.Detection2DArray(header=ros_header(header))
    rows = zip(detections.boxes.tolist(), detections.scores.tolist(), detections.class_ids.tolist(),
               strict=True)
    for i, ((x1, y1, x2, y2), score, class_id) in enumerate(rows):
        detection = vision_msgs.Detection2D(header=ros_header(header), id=str(i))
        hypothesis = vision_msgs.ObjectHypothesisWithPose()
        hypothesis.hypothesis.class_id, hypothesis.hypothesis.score = CLASSES[class_id], score
        detection.results = [hypothesis]
        detection.bbox.center.position.x, detection.bbox.center.position.y = (x1 + x2) / 2, (y1 + y2) / 2
        detection.bbox.size_x, detection.bbox.size_y = x2 - x1, y2 - y1
        msg.detections.append(detection)
    return msg


def random_detections(rng: np.random.Generator, count: int) -> Detections:
    corners = rng.uniform(0, 600, (count, 2)).astype(np.float32)
    boxes = np.concatenate([corners, corners + rng.uniform(1, 200, (count, 2)).astype(np.float32)], axis=1)
    return Detections(boxes, np.sort(rng.uniform(0, 1, count).astype(np.float32))[::-1],
                      rng.integers(0, len(CLASSES), count))


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera_optical_frame', 'rgb/7'])
@pytest.mark.parametrize('count', [0, 1, 9, 12])
def test_detection_arrays_deserialize_to_the_field_by_field_message(frame_id, count):
    """Every alignment case: frame_id and class-name lengths move each detection's doubles."""
    header = Header(1_700_000_000, 123_456_789, frame_id)
    detections = random_detections(np.random.default_rng(count), count)
    written = DetectionArrays(CLASSES)(header, detections)
    expected = reference(header, detections)
    assert serialization.deserialize_message(written, vision_msgs.Detection2DArray) == expected
    assert len(written) == len(serialization.serialize_message(expected))


def test_detection_arrays_carry_the_fields_the_issue_names():
    detections = Detections(np.array([[10, 20, 110, 70], [0, 0, 5, 5]], np.float32),
                            np.array([0.9, 0.4], np.float32), np.array([2, 0]))
    msg = serialization.deserialize_message(DetectionArrays(['cup', 'bottle', 'box'])(
        Header(12, 345, 'camera_optical'), detections), vision_msgs.Detection2DArray)
    assert msg.header.frame_id == 'camera_optical' and msg.header.stamp.nanosec == 345
    first = msg.detections[0]
    assert [d.id for d in msg.detections] == ['0', '1']
    assert first.results[0].hypothesis.class_id == 'box'
    assert first.results[0].hypothesis.score == pytest.approx(0.9)
    assert (first.bbox.center.position.x, first.bbox.center.position.y) == (60.0, 45.0)
    assert (first.bbox.size_x, first.bbox.size_y) == (100.0, 50.0)
    assert first.header.frame_id == 'camera_optical' and first.results[0].pose.pose.orientation.w == 1.0


def test_a_smaller_frame_after_a_larger_one_carries_only_its_own_detections():
    write = DetectionArrays(CLASSES)
    rng = np.random.default_rng(1)
    write(Header(1, 0, 'first'), random_detections(rng, 11))
    one = random_detections(rng, 1)
    msg = serialization.deserialize_message(write(Header(2, 0, 'second'), one), vision_msgs.Detection2DArray)
    assert msg == reference(Header(2, 0, 'second'), one)


@pytest.mark.parametrize('frame_id', ['', 'cam', 'camera_optical_frame'])
@pytest.mark.parametrize(('encoding', 'width', 'step'), [('rgb8', 5, 15), ('bgra8', 3, 16), ('mono8', 7, 8)])
def test_read_image_gives_the_images_fields_as_a_view(frame_id, encoding, width, step):
    height = 4
    data = bytes(range(step * height))
    image = sensor_msgs.Image(header=ros_header(Header(3, 4, frame_id)), height=height, width=width,
                              encoding=encoding, step=step, data=data)
    serialized = serialization.serialize_message(image)
    header, fields = read_image(serialized)
    assert header == Header(3, 4, frame_id) == read_header(serialized)
    assert {k: v for k, v in fields.items() if k != 'data'} == {
        'encoding': encoding, 'height': height, 'width': width, 'step': step, 'is_bigendian': 0}
    assert bytes(fields['data']) == data
    assert np.shares_memory(np.frombuffer(serialized, np.uint8), np.frombuffer(fields['data'], np.uint8))
    frame = frame_from_fields(**fields)
    assert frame.pixels.shape[:2] == (height, width)


def test_damaged_serialized_images_are_image_errors_that_say_where():
    image = sensor_msgs.Image(header=ros_header(Header(3, 4, 'cam')), height=2, width=2, encoding='rgb8',
                              step=6, data=bytes(12))
    serialized = serialization.serialize_message(image)
    with pytest.raises(ImageError, match='announces 12 data bytes but holds 5') as short:
        read_image(serialized[:-7])
    assert short.value.field == 'data'
    assert short.value.header == Header(3, 4, 'cam')  # read before the failure: the log names the frame
    with pytest.raises(ImageError, match='inside a field') as cut:
        read_image(serialized[:24])
    assert cut.value.field == 'serialized'
    assert cut.value.header == Header(3, 4, 'cam')
    with pytest.raises(ImageError, match='inside a field') as headless:
        read_image(serialized[:14])  # cut inside the header: there is no frame to name
    assert headless.value.header is None
    with pytest.raises(ImageError, match='not CDR little endian'):
        read_image(b'\x00\x07' + serialized[2:])
    with pytest.raises(ImageError, match='too short'):
        read_image(serialized[:6])


def camera_image(frame_id: str = 'camera_optical_frame', data: bytes = bytes(range(36))) -> bytes:
    image = sensor_msgs.Image(header=ros_header(Header(1_700_000_000, 5, frame_id)), height=3, width=4,
                              encoding='rgb8', step=12, data=data)
    return serialization.serialize_message(image)


def rclpy_refuses(serialized: bytes) -> bool:
    try:
        serialization.deserialize_message(serialized, sensor_msgs.Image)
    except Exception:  # rclpy raises RMWError (no public class) for any payload it cannot read
        return True
    return False


def refused(serialized: bytes) -> ImageError | None:
    """read_image's refusal, or None; any other exception fails the test (no traceback on input)."""
    try:
        read_image(serialized)
    except ImageError as exc:
        return exc
    return None


@pytest.mark.parametrize(('shape', 'serialized'), [
    ('length a multiple of 4, data last', camera_image()),
    ('length not a multiple of 4', camera_image(data=bytes(37))),
    ('4 spare bytes after the data', camera_image() + bytes(4)),
])
def test_read_image_refuses_exactly_the_encapsulation_options_rclpy_refuses(shape, serialized, capfd):
    """Bytes 2-3 of the CDR header (the options): Fast CDR takes the low two bits of byte 3 as
    padding at the message end when its length is a multiple of 4, and refuses a message whose
    fields need those bytes. Every value of byte 3, byte 2 at every value for the first shape."""
    assert serialized[:4] == b'\x00\x01\x00\x00'
    assert (len(serialized) % 4 == 0) == (shape != 'length not a multiple of 4')
    byte2_values = range(256) if shape.startswith('length a multiple') else (0x00, 0x5a, 0xff)
    disagreements, rclpy_count, refusals = [], 0, []
    for byte2 in byte2_values:
        for byte3 in range(256):
            mutated = serialized[:2] + bytes((byte2, byte3)) + serialized[4:]
            by_rclpy, ours = rclpy_refuses(mutated), refused(mutated)
            rclpy_count += by_rclpy
            if by_rclpy != (ours is not None):
                disagreements.append(f'0x{byte2:02x}{byte3:02x}: rclpy refuses {by_rclpy}, ours {ours}')
            if ours is not None:
                refusals.append(ours)
    capfd.readouterr()  # Fast CDR's "sequence size exceeds remaining buffer" once per refusal
    assert disagreements == [], f'{shape}: {len(disagreements)} disagree, e.g. {disagreements[:5]}'
    expected = {'length a multiple of 4, data last': 256 * 192, 'length not a multiple of 4': 0,
                '4 spare bytes after the data': 0}[shape]
    assert rclpy_count == expected  # the shape exercises what it is named for
    assert all('encapsulation options' in str(exc) and exc.header is not None for exc in refusals)


def test_read_image_refuses_every_mutation_rclpy_refuses(capfd):
    """2,000 seeded mutations of a serialized Image (bit flips, byte overwrites, truncations): what
    rclpy's own deserializer refuses, read_image refuses too, always as an ImageError. read_image may
    be stricter (it takes only CDR little endian, 0x0001, which ROS 2 middleware sends)."""
    original = camera_image()
    rng = np.random.default_rng(14)
    answered, rclpy_refusals = [], 0
    for _ in range(2000):
        mutated = bytearray(original)
        kind = int(rng.integers(4))
        if kind == 0:
            mutated[int(rng.integers(len(mutated)))] ^= 1 << int(rng.integers(8))
        elif kind == 1:
            mutated[int(rng.integers(len(mutated)))] = int(rng.integers(256))
        elif kind == 2:
            for at in rng.integers(len(mutated), size=int(rng.integers(2, 6))):
                mutated[int(at)] = int(rng.integers(256))
        else:
            del mutated[int(rng.integers(len(mutated))):]
        if rclpy_refuses(bytes(mutated)):
            rclpy_refusals += 1
            if refused(bytes(mutated)) is None:
                answered.append(bytes(mutated).hex())
    capfd.readouterr()
    assert rclpy_refusals > 600  # the mutations reach the fields, not only the padding
    assert answered == [], (f'{len(answered)} of {rclpy_refusals} refused by rclpy were answered: '
                            f'{answered[:3]}')
