"""The synthetic scene generator: deterministic, exact tight boxes, named classes."""

from __future__ import annotations

import numpy as np
import pytest

from perception_core import synth
from perception_core.synth import DEFAULT_CLASSES, MIN_VISIBLE_FRACTION, Box, Scene, render_scene


def test_same_arguments_same_scene_and_new_seed_new_scene() -> None:
    a, b = render_scene(3, 7), render_scene(3, 7)
    assert isinstance(a, Scene) and a.image.dtype == np.uint8 and a.image.shape == (480, 640, 3)
    assert np.array_equal(a.image, b.image) and a.boxes == b.boxes
    c = render_scene(4, 7)
    assert not np.array_equal(a.image, c.image)


def test_boxes_lie_in_the_image_name_known_classes_and_stay_visible() -> None:
    for index in range(20):
        scene = render_scene(11, index, 320, 240)
        assert synth.MIN_OBJECTS <= len(scene.boxes) + 1  # placement may give up on a crowded scene
        for box in scene.boxes:
            assert isinstance(box, Box) and box.class_name in DEFAULT_CLASSES
            assert 0 <= box.x1 < box.x2 <= 320 and 0 <= box.y1 < box.y2 <= 240
            assert box.visibility >= MIN_VISIBLE_FRACTION


def test_class_subset_and_unknown_class() -> None:
    names = {b.class_name for i in range(10) for b in render_scene(1, i, classes=('ball', 'cup')).boxes}
    assert names == {'ball', 'cup'}
    with pytest.raises(ValueError, match="unknown class 'chair'"):
        render_scene(1, 0, classes=('ball', 'chair'))


@pytest.mark.parametrize('angle', [0.0, 33.0, -71.0])
def test_box_is_the_exact_extent_of_the_visible_object(angle: float, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat white square on black (texture off): pixels at least half covered are exactly the box."""
    monkeypatch.setattr(synth, '_texture', lambda rng, shape: shape.rgb)
    image = np.zeros((120, 160, 3), np.float32)
    placer = synth._Placer(image)
    shape = synth._canvas(60, 60)
    synth._rect(shape, (0, 0, 60, 60), np.array([255.0, 255.0, 255.0]))
    rng = np.random.default_rng(0)
    while not placer.place(rng, 'box', shape, 70.0, angle):
        pass
    (box,) = placer.boxes()
    ys, xs = np.nonzero(image[..., 0] >= 127.5)
    assert (box.x1, box.y1, box.x2, box.y2) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def test_occlusion_is_reflected_in_the_tight_box() -> None:
    """A second object over the left half of the first shrinks the first one's box to what shows."""
    image = np.zeros((100, 200, 3), np.float32)
    placer = synth._Placer(image)
    square = synth._canvas(40, 40)
    synth._rect(square, (0, 0, 40, 40), np.array([200.0, 0.0, 0.0]))
    placer.in_image.append(1600)
    placer.full.append(1600.0)
    placer.names.append('box')
    placer.owner[30:70, 50:90] = 1  # object 1 at x 50..90
    placer.occlude(np.pad(np.ones((40, 10), bool), ((30, 30), (50, 140))), [0.0, 0.0, 0.0])  # x 50..60
    (box,) = placer.boxes()
    assert (box.x1, box.x2, box.y1, box.y2) == (60.0, 90.0, 30.0, 70.0)
    assert box.visibility == pytest.approx(0.75)
