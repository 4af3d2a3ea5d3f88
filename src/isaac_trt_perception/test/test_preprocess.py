from __future__ import annotations

import numpy as np
import pytest

from isaac_trt_perception.bundle import InputSpec
from isaac_trt_perception.preprocess import Preprocessor, plan_transform, preprocess
from perception_trainer.synth import render_scene

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
    torch = pytest.importorskip('torch')
    from isaac_trt_perception.backends.torch_preprocess import TorchPreprocess
    for shape in ((480, 640), (720, 1280)):
        image = render_scene(seed=5, index=2, width=shape[1], height=shape[0]).image
        expected, t = preprocess(image, SPEC)
        gpu_style = TorchPreprocess(SPEC, t, (0, 1, 2), torch.float32, torch.device('cpu'))
        got = gpu_style(torch.from_numpy(image)).numpy()
        # OpenCV rounds its fixed-point bilinear weights; values may differ by one grey level
        np.testing.assert_allclose(got, expected, atol=1.01 / (255 * 0.224))
        assert np.mean(np.abs(got - expected)) < 0.01
