"""sensor_msgs/Image fields -> a numpy view over the message buffer, validated.

No copy is made: the returned array is a strided view of ``data`` (row padding from ``step``
is skipped by the stride). Supported encodings are the 8-bit colour and mono ones a detector
needs; 16-bit, float, Bayer and YUV encodings are rejected with the list of supported ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # cdr imports this module; the annotation only names its Header
    from .cdr import Header

# encoding -> (channels, the image channel index holding R, G, B)
ENCODINGS: dict[str, tuple[int, tuple[int, int, int]]] = {
    'rgb8': (3, (0, 1, 2)),
    'bgr8': (3, (2, 1, 0)),
    'rgba8': (4, (0, 1, 2)),
    'bgra8': (4, (2, 1, 0)),
    'mono8': (1, (0, 0, 0)),
}
# Larger than any camera a robot carries (16K); anything beyond is a corrupt header, and
# trusting it would mean allocating gigabytes.
MAX_SIDE = 16384


class ImageError(ValueError):
    """An image that cannot be converted; the message says which field is wrong and why,
    ``field`` names it (serialized, encoding, is_bigendian, size, step, data). ``header`` is the
    image's ``cdr.Header`` where it was read before the failure (None otherwise), so that the
    refusal can name the frame's frame_id and stamp."""

    def __init__(self, field: str, message: str, header: Header | None = None) -> None:
        super().__init__(message)
        self.field = field
        self.header = header


@dataclass(frozen=True)
class Frame:
    """A validated image: ``pixels`` is HxWxC uint8, a view over the message data."""
    pixels: np.ndarray
    encoding: str

    @property
    def rgb_channels(self) -> tuple[int, int, int]:
        """Indices of the R, G and B channels in ``pixels`` (mono: all 0)."""
        return ENCODINGS[self.encoding][1]

    @property
    def height(self) -> int:
        return int(self.pixels.shape[0])

    @property
    def width(self) -> int:
        return int(self.pixels.shape[1])


def frame_from_fields(*, encoding: str, height: int, width: int, step: int, is_bigendian: int,
                      data: object) -> Frame:
    """Validate Image fields and view ``data`` (any buffer: bytes, array.array, numpy) as a Frame."""
    if encoding not in ENCODINGS:
        raise ImageError('encoding', f'encoding {encoding!r} is not supported; use one of '
                         f'{sorted(ENCODINGS)}')
    if is_bigendian:
        # 8-bit data has no byte order; a set flag means the publisher fills the header wrongly.
        raise ImageError('is_bigendian', 'is_bigendian is set; only 8-bit encodings are supported, '
                         'which have no byte order, so the publisher\'s header is wrong')
    if not (0 < height <= MAX_SIDE and 0 < width <= MAX_SIDE):
        raise ImageError('size', f'size {width}x{height} is outside 1..{MAX_SIDE} per side')
    channels = ENCODINGS[encoding][0]
    if step < width * channels:
        raise ImageError('step', f'step {step} is smaller than width x channels = {width} x {channels} '
                         f'= {width * channels} for {encoding}')
    buffer = np.frombuffer(data, dtype=np.uint8)  # type: ignore[call-overload]
    if buffer.size < step * height:
        raise ImageError('data', f'data has {buffer.size} bytes, shorter than step x height = '
                         f'{step} x {height} = {step * height}')
    rows = buffer[:step * height].reshape(height, step)
    return Frame(rows[:, :width * channels].reshape(height, width, channels), encoding)


def frame_from_image(msg: object) -> Frame:
    """A Frame over a sensor_msgs/Image message (duck-typed so this module needs no ROS)."""
    m: Any = msg
    return frame_from_fields(encoding=m.encoding, height=m.height, width=m.width, step=m.step,
                             is_bigendian=m.is_bigendian, data=m.data)
