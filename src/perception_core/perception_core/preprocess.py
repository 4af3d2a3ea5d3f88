"""Camera pixels -> network input, exactly as the bundle's ``model.json`` ``input`` says.

The one implementation for training, evaluation, engine calibration and the node: resize
(letterbox or stretch, bilinear), channel order, scaling to [0, 1], mean/std, layout, batch
axis. :class:`Transform` maps boxes from network-input pixels back to the image as received.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .bundle import InputSpec

RGB = (0, 1, 2)


@dataclass(frozen=True)
class Transform:
    """Image -> network input geometry: ``net = image * scale + pad`` per axis."""
    image_height: int
    image_width: int
    resized_height: int
    resized_width: int
    pad_x: int
    pad_y: int

    @property
    def scale_x(self) -> float:
        return self.resized_width / self.image_width

    @property
    def scale_y(self) -> float:
        return self.resized_height / self.image_height

    def to_image(self, boxes: np.ndarray) -> np.ndarray:
        """x1, y1, x2, y2 in network-input pixels -> image pixels, clipped to the image."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = (boxes[:, 0::2] - self.pad_x) / self.scale_x
        out[:, 1::2] = (boxes[:, 1::2] - self.pad_y) / self.scale_y
        np.clip(out[:, 0::2], 0.0, self.image_width, out=out[:, 0::2])
        np.clip(out[:, 1::2], 0.0, self.image_height, out=out[:, 1::2])
        return out

    def to_network(self, boxes: np.ndarray) -> np.ndarray:
        """x1, y1, x2, y2 in image pixels -> network-input pixels (training targets)."""
        out = np.empty_like(boxes, dtype=np.float32)
        out[:, 0::2] = boxes[:, 0::2] * self.scale_x + self.pad_x
        out[:, 1::2] = boxes[:, 1::2] * self.scale_y + self.pad_y
        return out


def plan_transform(image_height: int, image_width: int, spec: InputSpec) -> Transform:
    """The geometry for an image of this size under the spec's resize mode."""
    if spec.resize == 'stretch':
        return Transform(image_height, image_width, spec.height, spec.width, 0, 0)
    scale = min(spec.width / image_width, spec.height / image_height)
    resized_w = max(1, min(spec.width, round(image_width * scale)))
    resized_h = max(1, min(spec.height, round(image_height * scale)))
    return Transform(image_height, image_width, resized_h, resized_w,
                     (spec.width - resized_w) // 2, (spec.height - resized_h) // 2)


class Preprocessor:
    """Reusable preprocessing for one InputSpec; buffers are kept per image size.

    The returned tensor is this object's buffer, overwritten by the next call: use it (run the
    network) before preprocessing the next frame, and don't write into it (its letterbox border
    is written once per image size, not per frame).

    Per frame (NCHW): resize into a small buffer, split it into uint8 planes, and map each plane
    through a 256-entry float32 table straight into the tensor's picture area; NHWC reorders the
    interleaved channels and maps them with one 3-channel table. Only OpenCV calls into buffers
    kept from frame to frame, no numpy arithmetic: a frame arriving after ~30 ms idle finds the
    caches cold, and there every extra pass over the image or temporary costs several times what
    a hot loop says. The tables hold exactly the float32 values of ``p * gain + offset`` (a
    multiply, then an add, as numpy computes it per pixel), so the tensor is bit-identical to
    doing that arithmetic per pixel (test_preprocess pins it).
    """

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        std = np.asarray(spec.std, dtype=np.float32)
        # (p / 255 - mean) / std == p * gain + offset, for every uint8 value p
        gain = (1.0 / (255.0 * std)).astype(np.float32)
        offset = (-np.asarray(spec.mean, dtype=np.float32) / std).astype(np.float32)
        self._tables = np.empty((3, 256), dtype=np.float32)
        for c in range(3):
            np.multiply(np.arange(256, dtype=np.uint8), gain[c], out=self._tables[c])
            self._tables[c] += offset[c]
        self._interleaved_table = np.ascontiguousarray(self._tables.T).reshape(1, 256, 3)
        self._planned: tuple[int, int, int] | None = None

    def transform_for(self, image_height: int, image_width: int) -> Transform:
        return plan_transform(image_height, image_width, self.spec)

    def _plan(self, height: int, width: int, channels: int) -> None:
        spec = self.spec
        t = self._transform = plan_transform(height, width, spec)
        self._picture = np.empty((t.resized_height, t.resized_width, channels), dtype=np.uint8)
        self._tensor = np.empty(spec.shape(1), dtype=np.float32)
        border = self._tables[:, spec.pad_value]
        rows = slice(t.pad_y, t.pad_y + t.resized_height)
        columns = slice(t.pad_x, t.pad_x + t.resized_width)
        if spec.layout == 'NCHW':
            self._tensor[0] = border[:, None, None]
            self._planes = list(np.empty((channels, t.resized_height, t.resized_width), dtype=np.uint8))
            self._inside = [self._tensor[0, c, rows, columns] for c in range(3)]
        else:
            self._tensor[0] = border
            self._ordered = np.empty((t.resized_height, t.resized_width, 3), dtype=np.uint8)
            self._inside = [self._tensor[0, rows, columns]]
        self._planned = (height, width, channels)

    def __call__(self, pixels: np.ndarray, rgb_channels: tuple[int, int, int] = RGB
                 ) -> tuple[np.ndarray, Transform]:
        """``pixels``: HxWxC uint8; ``rgb_channels``: where R, G, B are in it (mono: 0, 0, 0)."""
        height, width, channels = pixels.shape
        if self._planned != (height, width, channels):
            self._plan(height, width, channels)
        t = self._transform
        # OpenCV writes into these preallocated arrays and views in place (given an output it
        # cannot use as is, it raises rather than copy)
        cv2.resize(pixels, (t.resized_width, t.resized_height), dst=self._picture,
                   interpolation=cv2.INTER_LINEAR)
        order = rgb_channels if self.spec.color == 'RGB' else rgb_channels[::-1]
        if self.spec.layout == 'NCHW':
            # into kept planes: half the cold time of split making new ones, or of mixChannels
            cv2.split(self._picture, self._planes)
            for c, source in enumerate(order):
                cv2.LUT(self._planes[source], self._tables[c], dst=self._inside[c])
        else:  # one 3-channel table maps the interleaved image, once it is in network order
            cv2.mixChannels([self._picture], [self._ordered], [order[0], 0, order[1], 1, order[2], 2])
            cv2.LUT(self._ordered, self._interleaved_table, dst=self._inside[0])
        return self._tensor, t


def preprocess(rgb: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Transform]:
    """One HxWx3 RGB uint8 image -> (a fresh [1, ...] float32 tensor, its Transform)."""
    tensor, transform = Preprocessor(spec)(rgb, RGB)
    return tensor, transform
