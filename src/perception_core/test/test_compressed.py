"""CompressedImage -> Frame (perception_core.compressed, cdr.read_compressed_image): real JPEG and
PNG bytes from cv2.imencode of a rendered scene, checked against OpenCV's own decode and the
rendered pixels; the CDR layout against rclpy.serialization on the real sensor_msgs class; every
image_transport format string; truncated, garbage and empty data refused by name."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from perception_core.cdr import Header, read_compressed_image
from perception_core.compressed import CompressedImageError, frame_from_compressed, parse_format
from perception_core.convert import ImageError
from perception_core.synth import render_scene

try:  # make test promises rclpy and the message packages: without them the layout proof cannot run
    import sensor_msgs.msg as sensor_msgs
    from rclpy import serialization
except ImportError as missing:
    raise ImportError(f'the CDR proof needs rclpy and sensor_msgs (make setup, make build): {missing}') \
        from missing

HEADER = Header(1_700_000_000, 42_000_123, 'front_camera_optical')
RGB = render_scene(seed=7, index=3, width=160, height=120).image  # HxWx3 uint8, RGB


def encoded(extension: str, image: np.ndarray) -> bytes:
    ok, data = cv2.imencode(extension, image)
    assert ok
    return data.tobytes()


BGR = cv2.cvtColor(RGB, cv2.COLOR_RGB2BGR)
JPEG_BGR = encoded('.jpg', BGR)      # what compressed_image_transport publishes for colour
PNG_BGR = encoded('.png', BGR)
MONO = cv2.cvtColor(BGR, cv2.COLOR_BGR2GRAY)


def opencv(data: bytes) -> np.ndarray:
    """OpenCV's own decode of the bytes, the reference."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def as_rgb(frame) -> np.ndarray:
    return frame.pixels[:, :, list(frame.rgb_channels)]


# (format, data, expected Frame encoding): image_transport's strings and the plain ones
CASES = [
    ('jpeg', JPEG_BGR, 'bgr8'),
    ('png', PNG_BGR, 'bgr8'),
    ('rgb8; jpeg compressed bgr8', JPEG_BGR, 'bgr8'),
    ('bgr8; jpeg compressed bgr8', JPEG_BGR, 'bgr8'),
    ('rgb8; png compressed bgr8', PNG_BGR, 'bgr8'),
    ('bgr8; png compressed bgr8', PNG_BGR, 'bgr8'),
    ('rgba8; png compressed bgr8', PNG_BGR, 'bgr8'),
    ('mono8; jpeg compressed ', encoded('.jpg', MONO), 'mono8'),
    ('mono8; png compressed ', encoded('.png', MONO), 'mono8'),
    ('jpeg', encoded('.jpg', MONO), 'mono8'),
    # a colour format not "compressed bgr": the data is in RGB order (compressed_subscriber.cpp)
    ('rgb8; png compressed rgb8', encoded('.png', RGB), 'rgb8'),
    ('png', encoded('.png', cv2.cvtColor(BGR, cv2.COLOR_BGR2BGRA)), 'bgra8'),
]


@pytest.mark.parametrize(('image_format', 'data', 'encoding'), CASES, ids=[c[0] for c in CASES])
def test_every_format_decodes_as_opencv_does(image_format, data, encoding):
    frame = frame_from_compressed(HEADER, format=image_format, data=memoryview(data))
    reference = opencv(data)
    assert frame.encoding == encoding
    assert np.array_equal(frame.pixels.reshape(reference.shape), reference)
    assert (frame.width, frame.height) == (160, 120)
    assert frame.pixels.ndim == 3


def test_png_gives_the_rendered_pixels_in_rgb_whatever_the_order_sent():
    for image_format, data in (('rgb8; png compressed bgr8', PNG_BGR),
                               ('rgb8; png compressed rgb8', encoded('.png', RGB))):
        assert np.array_equal(as_rgb(frame_from_compressed(HEADER, format=image_format, data=data)), RGB)


def test_jpeg_is_close_to_the_rendered_pixels():
    frame = frame_from_compressed(HEADER, format='rgb8; jpeg compressed bgr8', data=JPEG_BGR)
    assert np.abs(as_rgb(frame).astype(int) - RGB).mean() < 6  # lossy, but the same picture


@pytest.mark.parametrize('image_format', [
    '', 'h264', 'theora', 'rgb8; tiff compressed bgr8', 'rgb8 jpeg', 'rgb8; jpeg',
    '16UC1; png compressed ', 'mono16; png compressed ', '16UC1; compressedDepth png',
    'bayer_rggb8; jpeg compressed '])
def test_unknown_formats_are_refused_by_name(image_format):
    with pytest.raises(CompressedImageError) as caught:
        frame_from_compressed(HEADER, format=image_format, data=JPEG_BGR)
    assert caught.value.field == 'format' and repr(image_format) in str(caught.value)
    assert "'front_camera_optical' stamp 1700000000.042000123" in str(caught.value)


def test_parse_format_reads_the_encoding_and_the_order():
    assert parse_format('rgb8; jpeg compressed bgr8') == ('jpeg', 'rgb8', True)
    assert parse_format('bgr8; png compressed rgb8') == ('png', 'bgr8', False)
    assert parse_format(' JPEG ') == ('jpeg', None, True)


@pytest.mark.parametrize('name', ['jpeg', 'png'])
@pytest.mark.parametrize('keep', [0.0, 0.01, 0.3, 0.5, 0.9, 0.999, -1])
def test_truncated_data_is_refused_naming_the_frame(name, keep):
    data = JPEG_BGR if name == 'jpeg' else PNG_BGR
    cut = len(data) - 1 if keep == -1 else max(1, int(len(data) * keep))
    with pytest.raises(CompressedImageError) as caught:
        frame_from_compressed(HEADER, format=f'rgb8; {name} compressed bgr8', data=data[:cut])
    message = str(caught.value)
    assert "frame 'front_camera_optical' stamp 1700000000.042000123" in message
    assert caught.value.header == HEADER and caught.value.field in ('data', 'decode')
    assert 'truncated' in message or 'neither JPEG nor PNG' in message or 'cannot decode' in message


def test_garbage_and_empty_data_are_refused():
    rng = np.random.default_rng(0)
    for data, words in ((rng.integers(0, 256, 5000, dtype=np.uint8).tobytes(), 'neither JPEG nor PNG'),
                        (b'', 'is empty'),
                        # the right start and end markers around noise: OpenCV itself refuses it
                        (JPEG_BGR[:3] + bytes(4000) + JPEG_BGR[-2:], 'cannot decode')):
        with pytest.raises(CompressedImageError, match=words) as caught:
            frame_from_compressed(HEADER, format='jpeg', data=data)
        assert 'front_camera_optical' in str(caught.value)
        assert isinstance(caught.value, ImageError)  # the node's existing refusal handling catches it


def test_sixteen_bit_png_is_refused():
    deep = (MONO.astype(np.uint16) * 257)
    with pytest.raises(CompressedImageError, match='uint16'):
        frame_from_compressed(HEADER, format='png', data=encoded('.png', deep))


def rclpy_compressed(header: Header, image_format: str, data: bytes) -> bytes:
    msg = sensor_msgs.CompressedImage(format=image_format, data=data)
    msg.header.stamp.sec, msg.header.stamp.nanosec = header.sec, header.nanosec
    msg.header.frame_id = header.frame_id
    return serialization.serialize_message(msg)


@pytest.mark.parametrize('frame_id', ['', 'c', 'cam', 'camera_optical_frame'])
@pytest.mark.parametrize('image_format', ['jpeg', 'png', 'rgb8; jpeg compressed bgr8',
                                          'mono8; png compressed '])
def test_read_compressed_image_matches_rclpy(frame_id, image_format):
    """Every alignment case: frame_id and format lengths move the data's length field."""
    header = Header(HEADER.sec, HEADER.nanosec, frame_id)
    serialized = rclpy_compressed(header, image_format, JPEG_BGR)
    back = serialization.deserialize_message(serialized, sensor_msgs.CompressedImage)
    read_header, fields = read_compressed_image(serialized)
    assert read_header == header
    assert fields['format'] == back.format == image_format
    assert bytes(fields['data']) == bytes(back.data) == JPEG_BGR
    assert isinstance(fields['data'], memoryview)  # a view over the received bytes, not a copy


def test_a_cut_serialized_message_is_refused_with_its_header():
    serialized = rclpy_compressed(HEADER, 'jpeg', JPEG_BGR)
    with pytest.raises(ImageError) as caught:
        read_compressed_image(serialized[:len(serialized) // 2])
    assert caught.value.field == 'data' and caught.value.header == HEADER
