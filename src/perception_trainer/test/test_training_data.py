"""Letterbox, augmentation and targets: the same geometry as the node, end to end."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from perception_core.bundle import Postprocess
from perception_core.decode import Thresholds, decode
from perception_core.preprocess import plan_transform, preprocess
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.centernet import STRIDE, dense_detections
from perception_trainer.centernet_targets import encode
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset, letterbox, normalise, read_rgb

CENTERNET = ARCHITECTURES['centernet']
SPEC = CENTERNET.input_spec(256, 320)


def test_training_input_is_the_node_preprocessing(small_set: Path) -> None:
    sample = load_dataset(small_set).samples[0]
    rgb = read_rgb(str(sample.image))
    canvas, transform = letterbox(rgb, SPEC)
    ours = normalise(torch.from_numpy(canvas.transpose(2, 0, 1))[None], SPEC).numpy()
    node, node_transform = preprocess(rgb, SPEC)
    assert transform == node_transform
    assert np.abs(ours - node).max() < 1e-5


def test_targets_decode_back_to_the_boxes_through_the_graph_and_the_node_decoder() -> None:
    """encode -> ideal network outputs -> in-graph decoding -> node decode == the input boxes."""
    image_boxes = np.array([[20, 30, 120, 100], [400, 50, 600, 300], [150, 300, 260, 460]], np.float32)
    labels = np.array([2, 0, 2])
    transform = plan_transform(480, 640, SPEC)
    boxes = transform.to_network(image_boxes)
    targets = encode(boxes, labels, 3, SPEC.height, SPEC.width)
    heat = np.clip(targets['heat'], 1e-6, 1 - 1e-6)
    logits = torch.from_numpy(np.log(heat / (1 - heat)))[None]
    fh, fw = heat.shape[1:]
    cx = (np.arange(fw) + 0.5) * STRIDE
    cy = (np.arange(fh) + 0.5) * STRIDE
    b = targets['box']
    distances = np.stack([cx[None] - b[0], cy[:, None] - b[1], b[2] - cx[None], b[3] - cy[:, None]])
    (out,) = dense_detections((logits, torch.from_numpy(distances.astype(np.float32))[None]))
    found = decode([out.numpy()], 'dense_boxes_scores', 3, transform,
                   Thresholds.resolve(Postprocess(score_threshold=0.5)))
    assert len(found) == 3
    order = np.argsort(found.boxes[:, 0])
    assert np.abs(found.boxes[order] - image_boxes[np.argsort(image_boxes[:, 0])]).max() < 1e-3
    assert sorted(found.class_ids.tolist()) == [0, 2, 2]


def test_every_object_has_one_unit_peak_on_its_class_map() -> None:
    boxes = np.array([[10, 10, 50, 40], [100, 100, 300, 200]], np.float32)
    targets = encode(boxes, np.array([1, 1]), 2, SPEC.height, SPEC.width)
    assert (targets['heat'][1] == 1).sum() == 2 and targets['heat'][0].max() == 0
    assert targets['box_weight'].sum() == pytest.approx(np.log(30 * 40) + np.log(200 * 100), rel=1e-4)


def test_augmentation_is_seeded_per_sample_and_keeps_boxes_in_the_frame(small_set: Path) -> None:
    samples = load_dataset(small_set).samples
    data = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=True, seed=3)
    a, b = data[4], data[4]
    assert np.array_equal(a['image'], b['image']) and np.array_equal(a['heat'], b['heat'])
    data.epoch = 1
    assert not np.array_equal(data[4]['image'], a['image'])
    for i in range(len(samples)):
        item = data[i]
        assert item['image'].shape == (3, 256, 320) and item['image'].dtype == np.uint8
        weight = item['box_weight'] > 0
        assert (item['box'][0][weight] >= 0).all() and (item['box'][2][weight] <= 320).all()


def test_an_image_that_breaks_mid_training_is_skipped(small_set: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    shutil.copytree(small_set, tmp_path / 'set')
    samples = load_dataset(tmp_path / 'set').samples
    train = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=True)
    val = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=False)
    samples[2].image.write_bytes(b'\x00broken')
    with caplog.at_level(logging.WARNING):
        item = train[2]
    assert item['index'] == 3 and item['valid']
    assert f'{samples[2].image}: unreadable image' in caplog.text
    assert not val[2]['valid']


def test_images_cached_by_threads_are_those_read_one_by_one_in_order(small_set: Path, tmp_path: Path) -> None:
    shutil.copytree(small_set, tmp_path / 'set')
    samples = load_dataset(tmp_path / 'set').samples
    samples[1].image.write_bytes(b'\x00broken')
    cached = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=False, cache=True)
    read = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=False)
    assert len(samples) > 4 and cached._cache is not None and cached._cache[1] is None
    for i in range(len(samples)):
        assert (cached[i]['valid'], i) == (read[i]['valid'], i)
        assert np.array_equal(cached[i]['image'], read[i]['image']), i


def test_each_input_spec_is_normalised_with_its_own_mean_and_std() -> None:
    pixels = torch.arange(3 * 2 * 2, dtype=torch.uint8).view(1, 3, 2, 2) * 20
    imagenet = dataclasses.replace(SPEC, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    for spec in (SPEC, imagenet, SPEC):  # the cache keeps each spec's constants apart
        mean = torch.tensor(spec.mean).view(1, 3, 1, 1)
        std = torch.tensor(spec.std).view(1, 3, 1, 1)
        torch.testing.assert_close(normalise(pixels, spec), (pixels / 255 - mean) / std)
