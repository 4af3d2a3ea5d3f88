"""sensor_msgs/CompressedImage (image_transport's ``compressed`` transport) -> the same ``Frame``
the raw path gives, decoded once by OpenCV.

The ``format`` convention is compressed_image_transport's (ros-perception/image_transport_plugins,
compressed_publisher.cpp and compressed_subscriber.cpp):

- ``"<encoding>; <jpeg|png> compressed <target>"``: ``encoding`` is the camera image's, ``target``
  what was compressed: ``bgr8`` (``bgr16`` for 16-bit PNG) for colour images, which the publisher
  converts to BGR first, nothing for mono (``"mono8; jpeg compressed "``). A colour format without
  ``compressed bgr`` holds the channels in RGB order, as that subscriber assumes.
- plain ``"jpeg"``/``"png"`` (older image_transport, cameras and other publishers): the image's
  channels say what it is, OpenCV's order: 1 = mono8, 3 = bgr8, 4 = bgra8.

``compressedDepth`` (``"16UC1; compressedDepth png"``) and 16-bit images are depth or raw sensor
data, not what a detector takes, and are refused like the raw path refuses them.

No colour conversion is made: the Frame names its channel order (bgr8, rgb8...) and preprocessing
picks the channels the model wants, as it does for raw images. The decode is
``cv2.imdecode(..., IMREAD_UNCHANGED)`` straight from a view over the message bytes; its result is
the Frame's pixels (a 2-D mono image is viewed as HxWx1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import cv2
import numpy as np

from .convert import ENCODINGS, Frame, ImageError

if TYPE_CHECKING:  # cdr imports convert; the annotation only names its Header
    from .cdr import Header

CODECS = ('jpeg', 'png')
SUFFIX = '/compressed'  # image_transport's subtopic of a camera topic for this transport
# What a plain format names, and how each codec's data starts and ends: OpenCV 4 decodes a JPEG
# cut short into an image padded with grey, so a missing end marker is checked here.
_PLAIN = {'jpeg': 'jpeg', 'jpg': 'jpeg', 'png': 'png'}
_SIGNATURES = {'jpeg': b'\xff\xd8\xff', 'png': b'\x89PNG\r\n\x1a\n'}
_ENDS = {'jpeg': b'\xff\xd9', 'png': b'IEND\xaeB`\x82'}
_BY_CHANNELS = {1: 'mono8', 3: 'bgr8', 4: 'bgra8'}   # OpenCV's order, for plain formats
_RGB_ORDER = {1: 'mono8', 3: 'rgb8', 4: 'rgba8'}     # a colour format not "compressed bgr"


def frame_name(header: Header | None) -> str:
    """How an error names the frame: its frame_id and stamp."""
    if header is None:
        return 'compressed image'
    return f'compressed image frame {header.frame_id!r} stamp {header.sec}.{header.nanosec:09d}'


class CompressedImageError(ImageError):
    """A CompressedImage that gives no Frame. ``field`` is format, data or decode; ``problem`` is
    what is wrong; the message names the frame (frame_id, stamp) first."""

    def __init__(self, field: str, problem: str, header: Header | None) -> None:
        super().__init__(field, f'{frame_name(header)}: {problem}', header)
        self.problem = problem


def parse_format(image_format: str, header: Header | None = None) -> tuple[str, str | None, bool]:
    """(codec, the camera image's encoding or None for a plain format, whether the data is in BGR
    order); CompressedImageError for a format this node cannot decode."""
    text = image_format.strip()
    if ';' not in text:
        codec = _PLAIN.get(text.lower())
        if codec is None:
            raise CompressedImageError('format', f'format {image_format!r} is not image_transport\'s: '
                                       'use "jpeg", "png" or "<encoding>; <jpeg|png> compressed <target>"',
                                       header)
        return codec, None, True
    encoding, _, rest = (part.strip() for part in text.partition(';'))
    words = rest.split()
    if 'compressedDepth' in words:
        raise CompressedImageError('format', f'format {image_format!r} is a compressedDepth image (depth '
                                   'data), not a camera image', header)
    if len(words) < 2 or words[0].lower() not in CODECS or words[1] != 'compressed':
        raise CompressedImageError('format', f'format {image_format!r} is not "<encoding>; <jpeg|png> '
                                   'compressed <target>"', header)
    if encoding not in ENCODINGS:
        raise CompressedImageError('format', f'format {image_format!r}: image encoding {encoding!r} is not '
                                   f'supported; use one of {sorted(ENCODINGS)}', header)
    return words[0].lower(), encoding, 'compressed bgr' in rest


def frame_from_compressed(header: Header | None, *, format: str, data: object) -> Frame:
    """Decode a CompressedImage's data (any buffer: bytes, memoryview, array.array) into a Frame;
    ``header`` only names the frame in errors. CompressedImageError for an unknown format, data that
    is empty, not JPEG/PNG, cut short or undecodable, or an image the detector cannot take."""
    # the data's own signature picks the decoder (OpenCV's and compressed_image_transport's way)
    _, encoding, bgr = parse_format(format, header)
    buffer = np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    if buffer.size == 0:
        raise CompressedImageError('data', f'{format!r} data is empty', header)
    kind = next((k for k, signature in _SIGNATURES.items()
                 if buffer[:len(signature)].tobytes() == signature), None)
    if kind is None:
        raise CompressedImageError('data', f'{format!r} data of {buffer.size} bytes is neither JPEG nor PNG '
                                   f'(it starts 0x{buffer[:8].tobytes().hex()})', header)
    end = _ENDS[kind]
    if buffer[-len(end):].tobytes() != end:
        raise CompressedImageError('data', f'{kind.upper()} data of {buffer.size} bytes is truncated (no '
                                   'end marker)', header)
    try:
        pixels = cv2.imdecode(buffer, cv2.IMREAD_UNCHANGED)
    except cv2.error as exc:
        raise CompressedImageError('decode', f'OpenCV cannot decode the {kind.upper()} data of '
                                   f'{buffer.size} bytes: {exc}', header) from exc
    if pixels is None:
        raise CompressedImageError('decode', f'OpenCV cannot decode the {kind.upper()} data of '
                                   f'{buffer.size} bytes (corrupt)', header)
    if pixels.dtype != np.uint8:
        raise CompressedImageError('decode', f'the {kind.upper()} image is {pixels.dtype} ({format!r}); the '
                                   f'detector takes 8-bit images ({sorted(ENCODINGS)})', header)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    channels = pixels.shape[2]
    names = _BY_CHANNELS if encoding is None or bgr else _RGB_ORDER
    if channels not in names:
        raise CompressedImageError('decode', f'the {kind.upper()} image has {channels} channels; the '
                                   'detector takes 1 (mono), 3 or 4', header)
    return Frame(pixels, names[channels])
