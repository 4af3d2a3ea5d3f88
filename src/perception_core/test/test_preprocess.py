from __future__ import annotations

import numpy as np
import pytest

from perception_core.bundle import InputSpec
from perception_core.convert import ENCODINGS
from perception_core.preprocess import Preprocessor, plan_transform, preprocess
from perception_core.synth import render_scene

SPEC = InputSpec(name='images', height=256, width=320, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))


@pytest.fixture(scope='module')
def scene():
    return render_scene(seed=5, index=1, width=640, height=480)


def test_letterbox_geometry_and_inverse():
    t = plan_transform(480, 640, SPEC)
    assert (t.resized_width, t.resized_height, t.pad_x, t.pad_y) == (320, 240, 0, 8)
    t = plan_transform(720, 1280, SPEC)
    assert (t.resized_width, t.resized_height, t.pad_x, t.pad_y) == (320, 180, 0, 38)
    boxes = np.array([[10.0, 20.0, 600.0, 470.0], [0, 0, 1280, 720]], np.float32)
    np.testing.assert_allclose(t.to_image(t.to_network(boxes)), np.clip(boxes, 0, [1280, 720] * 2),
                               atol=1e-3)
    stretch = plan_transform(720, 1280, InputSpec(name='i', height=256, width=320, resize='stretch'))
    assert (stretch.pad_x, stretch.pad_y, stretch.scale_x, stretch.scale_y) == (0, 0, 0.25, 256 / 720)


def test_values_layout_and_padding(scene):
    tensor, t = preprocess(scene.image, SPEC)
    assert tensor.shape == (1, 3, 256, 320) and tensor.dtype == np.float32
    # pad rows hold the normalised pad value; the picture holds normalised pixels
    np.testing.assert_allclose(tensor[0, 0, 0, 0], (114 / 255 - 0.485) / 0.229, rtol=1e-5)
    import cv2
    small = cv2.resize(scene.image, (320, 240), interpolation=cv2.INTER_LINEAR)
    expected = (small[:, :, 2] / 255.0 - 0.406) / 0.225
    np.testing.assert_allclose(tensor[0, 2, t.pad_y:t.pad_y + 240], expected, atol=1e-5)


def test_channel_order_and_nhwc_agree(scene):
    nchw, _ = preprocess(scene.image, SPEC)
    bgr_pixels = np.ascontiguousarray(scene.image[:, :, ::-1])
    bgr_in, _ = Preprocessor(SPEC)(bgr_pixels, (2, 1, 0))
    np.testing.assert_array_equal(bgr_in, nchw)
    nhwc_spec = InputSpec(name='i', height=256, width=320, layout='NHWC', color='BGR',
                          mean=SPEC.mean[::-1], std=SPEC.std[::-1])
    nhwc, _ = preprocess(scene.image, nhwc_spec)
    np.testing.assert_allclose(nhwc[0].transpose(2, 0, 1)[::-1], nchw[0], rtol=1e-6)


def test_mono_fills_three_channels(scene):
    grey = scene.image[:, :, 1:2].copy()
    tensor, _ = Preprocessor(InputSpec(name='i', height=256, width=320))(grey, (0, 0, 0))
    np.testing.assert_array_equal(tensor[0, 0], tensor[0, 2])


def test_torch_preprocessing_matches_numpy(scene):
    import torch  # requirements/python.txt (make setup)

    from perception_core.backends.torch_preprocess import TorchPreprocess
    for shape in ((480, 640), (720, 1280)):
        image = render_scene(seed=5, index=2, width=shape[1], height=shape[0]).image
        expected, t = preprocess(image, SPEC)
        gpu_style = TorchPreprocess(SPEC, t, (0, 1, 2), torch.float32, torch.device('cpu'))
        got = gpu_style(torch.from_numpy(image)).numpy()
        # OpenCV rounds its fixed-point bilinear weights; values may differ by one grey level
        np.testing.assert_allclose(got, expected, atol=1.01 / (255 * 0.224))
        assert np.mean(np.abs(got - expected)) < 0.01


def _per_pixel_reference(pixels, rgb_channels, spec):
    """The arithmetic done per pixel, as Preprocessor did before its lookup tables: letterbox
    canvas, then p * gain + offset in float32 (a multiply, then an add) per network channel."""
    import cv2
    height, width, channels = pixels.shape
    t = plan_transform(height, width, spec)
    canvas = np.full((spec.height, spec.width, channels), spec.pad_value, np.uint8)
    resized = cv2.resize(pixels, (t.resized_width, t.resized_height), interpolation=cv2.INTER_LINEAR)
    canvas[t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = (
        resized.reshape(t.resized_height, t.resized_width, channels))
    std = np.asarray(spec.std, np.float32)
    gain = (1.0 / (255.0 * std)).astype(np.float32)
    offset = (-np.asarray(spec.mean, np.float32) / std).astype(np.float32)
    order = rgb_channels if spec.color == 'RGB' else rgb_channels[::-1]
    chw = np.stack([canvas[:, :, s].astype(np.float32) * gain[c] + offset[c] for c, s in enumerate(order)])
    return (chw if spec.layout == 'NCHW' else chw.transpose(1, 2, 0))[None]


@pytest.mark.parametrize('layout', ['NCHW', 'NHWC'])
@pytest.mark.parametrize('color', ['RGB', 'BGR'])
@pytest.mark.parametrize('resize', ['letterbox', 'stretch'])
def test_bit_identical_to_per_pixel_arithmetic(layout, color, resize):
    """Every encoding, size and row padding through one reused Preprocessor (so its buffers are
    re-planned and reused) gives exactly the per-pixel float32 arithmetic's tensor."""
    spec = InputSpec(name='i', height=96, width=128, layout=layout, color=color, resize=resize,
                     pad_value=7, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    pre = Preprocessor(spec)
    rng = np.random.default_rng(3)
    # landscape (pad rows), portrait (pad columns), odd sizes, upscaling, one pixel
    for height, width in ((480, 640), (720, 1280), (333, 191), (191, 333), (47, 61), (1, 1), (480, 640)):
        for encoding, (channels, rgb_channels) in ENCODINGS.items():
            # a row step larger than width x channels, as sensor_msgs/Image allows
            rows = rng.integers(0, 256, (height, width * channels + 5), dtype=np.uint8)
            pixels = rows[:, :width * channels].reshape(height, width, channels)
            got, t = pre(pixels, rgb_channels)
            assert t == plan_transform(height, width, spec)
            np.testing.assert_array_equal(got, _per_pixel_reference(pixels, rgb_channels, spec),
                                          err_msg=f'{height}x{width} {encoding}')


def test_every_pixel_value_maps_to_its_normalised_value():
    """The 256-entry tables against (p / 255 - mean) / std in float64: float32 rounding only."""
    spec = InputSpec(name='i', height=16, width=16, resize='stretch', mean=(0.485, 0.456, 0.406),
                     std=(0.229, 0.224, 0.225))
    values = np.arange(256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    tensor, _ = Preprocessor(spec)(values)
    expected = (values.transpose(2, 0, 1) / 255.0 - np.array(spec.mean)[:, None, None]) / np.array(
        spec.std)[:, None, None]
    np.testing.assert_allclose(tensor[0], expected, rtol=0, atol=1e-6)
