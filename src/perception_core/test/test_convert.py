from __future__ import annotations

import numpy as np
import pytest

from perception_core.convert import ImageError, frame_from_fields
from perception_core.synth import render_scene


def fields(image: np.ndarray, kind: str, padding: int = 0, **override):
    height, width = image.shape[:2]
    channels = 1 if image.ndim == 2 else image.shape[2]
    step = width * channels + padding
    rows = np.zeros((height, step), np.uint8)
    rows[:, :width * channels] = image.reshape(height, -1)
    base = dict(encoding=kind, height=height, width=width, step=step, is_bigendian=0,
                data=rows.tobytes())
    base.update(override)
    return base


@pytest.fixture(scope='module')
def rgb() -> np.ndarray:
    return render_scene(seed=3, index=0, width=160, height=120).image


@pytest.mark.parametrize(('encoding', 'make'), [
    ('rgb8', lambda im: im),
    ('bgr8', lambda im: im[:, :, ::-1]),
    ('rgba8', lambda im: np.dstack([im, np.full(im.shape[:2], 255, np.uint8)])),
    ('bgra8', lambda im: np.dstack([im[:, :, ::-1], np.full(im.shape[:2], 7, np.uint8)])),
])
def test_colour_encodings_view_the_same_pixels(rgb, encoding, make):
    frame = frame_from_fields(**fields(make(rgb), encoding, padding=5))
    r, g, b = frame.rgb_channels
    np.testing.assert_array_equal(frame.pixels[:, :, [r, g, b]], rgb)
    assert (frame.width, frame.height) == (160, 120)


def test_mono_and_zero_copy(rgb):
    grey = rgb[:, :, 1].copy()
    f = fields(grey, 'mono8', padding=3)
    data = np.frombuffer(f['data'], np.uint8)
    frame = frame_from_fields(**{**f, 'data': data})
    assert frame.pixels.shape == (120, 160, 1)
    np.testing.assert_array_equal(frame.pixels[:, :, 0], grey)
    assert np.shares_memory(frame.pixels, data), 'the frame must view the message buffer, not copy it'


@pytest.mark.parametrize(('override', 'message'), [
    ({'encoding': 'yuv422'}, "encoding 'yuv422' is not supported"),
    ({'encoding': '16UC1'}, 'not supported'),
    ({'is_bigendian': 1}, 'is_bigendian'),
    ({'height': 0}, 'outside 1..16384'),
    ({'width': 100000}, 'outside 1..16384'),
    ({'step': 100}, 'step 100 is smaller than width x channels = 160 x 3 = 480'),
    ({'data': b'\0' * 1000}, 'data has 1000 bytes, shorter than step x height'),
])
def test_bad_images_are_refused_with_the_field_named(rgb, override, message):
    with pytest.raises(ImageError, match=message.replace('(', r'\(')) as refused:
        frame_from_fields(**fields(rgb, 'rgb8', **override))
    # no header here: the caller names the frame from the header it read (cdr.read_image sets it)
    assert refused.value.header is None
