"""targets_on device: CenterNet's targets made per batch on the training device
(``centernet_targets.encode_batch``), checked against the loader's per-image numpy encoder on
real rendered frames, on hand-made edge cases, through a real DataLoader and a real training run;
and the box loss CUDA computes (every location) against the CPU's (the weighted locations)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from perception_trainer import centernet_targets, losses
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.centernet import distances_to_boxes
from perception_trainer.config import ConfigError, load_config
from perception_trainer.epoch import Run, batch_targets
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset, collate

CENTERNET = ARCHITECTURES['centernet']
SPEC = CENTERNET.input_spec(256, 320)
CLASSES = 10


def _padded(images: list[tuple[np.ndarray, np.ndarray]]) -> tuple[torch.Tensor, torch.Tensor]:
    batch = collate([{'boxes': b, 'labels': n, 'image': np.zeros((3, 2, 2), np.uint8)} for b, n in images])
    return batch['boxes'], batch['labels']


def _assert_same(images: list[tuple[np.ndarray, np.ndarray]], height: int, width: int) -> None:
    boxes, labels = _padded(images)
    found = centernet_targets.encode_batch(boxes, labels, CLASSES, height, width)
    for row, (b, n) in enumerate(images):
        expected = centernet_targets.encode(b, n, CLASSES, height, width)
        assert set(found) == set(expected)
        for name, want in expected.items():
            got = found[name][row].numpy()
            # The loss finds the centres by equality with 1 and the box locations by weight > 0.
            assert np.array_equal(got == 1, want == 1), (row, name)
            assert np.array_equal(got > 0, want > 0), (row, name)
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=f'image {row}, {name}')


def test_the_same_targets_as_the_loader_on_rendered_frames(small_set: Path) -> None:
    # The default policy's augmented boxes: cut by the frame, scaled, flipped.
    data = DetectionDataset(load_dataset(small_set).samples, SPEC, None, CLASSES, train=True, seed=2)
    images = [(data[i]['boxes'], data[i]['labels']) for i in range(len(data))]
    assert sum(len(n) for _, n in images) > 3 * len(images)
    _assert_same(images, SPEC.height, SPEC.width)


def test_the_same_targets_where_objects_overlap_tie_or_leave_the_frame() -> None:
    rng = np.random.default_rng(0)
    images = [(np.zeros((0, 4), np.float32), np.zeros(0, np.int64))]  # nothing to find
    for _ in range(24):
        n = int(rng.integers(1, 30))
        corner = rng.uniform(-30, [320, 256], (n, 2))
        size = rng.uniform(0.5, 160, (n, 2))
        size[:n // 3] = size[0]  # equal areas: the later object owns the shared locations
        boxes = np.clip(np.concatenate([corner, corner + size], 1), 0, [320, 256, 320, 256])
        images.append((boxes.astype(np.float32), rng.integers(0, CLASSES, n)))
    nested = np.array([[10, 10, 200, 200], [50, 50, 90, 90], [60, 60, 70, 70], [60, 60, 70, 70]], np.float32)
    images.append((nested, np.array([1, 1, 2, 3])))
    images.append((np.array([[100, 100, 100, 100], [300, 250, 320, 256]], np.float32), np.array([0, 9])))
    _assert_same(images, 256, 320)
    _assert_same(images, 64, 96)  # a grid smaller than some objects


def test_batches_from_a_loader_give_the_loaders_targets(small_set: Path) -> None:
    samples = load_dataset(small_set).samples
    per_sample = DetectionDataset(samples, SPEC, CENTERNET.encode, CLASSES, train=True, seed=5)
    per_batch = DetectionDataset(samples, SPEC, None, CLASSES, train=True, seed=5)
    assert 'heat' not in per_batch[0] and per_batch[0]['boxes'].shape == (len(per_batch[0]['labels']), 4)
    cfg = load_config(overrides={'train_data': str(small_set), 'device': 'cpu', 'targets_on': 'device'})
    run = Run(cfg, CENTERNET, SPEC, tuple(f'c{i}' for i in range(CLASSES)), None, torch.device('cpu'))  # type: ignore[arg-type]
    expected = DataLoader(per_sample, batch_size=4, num_workers=0, collate_fn=collate)
    found = DataLoader(per_batch, batch_size=4, num_workers=2, collate_fn=collate)
    for want, got in zip(expected, found, strict=True):
        assert torch.equal(want['image'], got['image'])
        made = batch_targets(got, run)
        for name in ('heat', 'box', 'box_weight'):
            torch.testing.assert_close(made[name], want[name], rtol=1e-5, atol=1e-6)


def test_where_it_runs_and_what_is_refused(tmp_path: Path) -> None:
    assert [CENTERNET.targets_place('auto', kind) for kind in ('cuda', 'cpu')] == ['device', 'loader']
    assert CENTERNET.targets_place('device', 'cpu') == 'device'
    assert ARCHITECTURES['single_object'].targets_place('auto', 'cuda') == 'loader'
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text('train_data: d\narch: single_object\ntargets_on: device\n')
    with pytest.raises(ConfigError, match='targets_on device: --arch single_object encodes its targets in '
                                          'the loader only'):
        load_config(path=recipe)


def test_training_with_targets_on_the_device_follows_the_loaders_run(
        small_set: Path, cli: Callable, tmp_path: Path) -> None:
    histories = {}
    for place in ('device', 'loader'):
        out = tmp_path / place
        cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 2, '--workers', 1,
            '--seed', 3, '--out', out, '--targets-on', place, '--input-height', 96, '--input-width', 128,
            '--batch-size', 4, '--device', 'cpu')
        assert f'targets_on: {place}' in (out / 'config.yaml').read_text()
        histories[place] = json.loads((out / 'history.json').read_text())
    for device, loader in zip(histories['device'], histories['loader'], strict=True):
        # The same targets to float rounding: the same losses to far below what training changes.
        for key in ('train_loss', 'val_loss'):
            assert device[key] == pytest.approx(loader[key], rel=1e-3), key
    assert histories['device'][-1]['train_loss'] < histories['device'][0]['train_loss']


def test_the_box_loss_over_every_location_equals_the_picked_one(small_set: Path) -> None:
    # CUDA computes the box loss at every location (no read back to the host), the CPU at the
    # weighted ones only: the same value and gradients, on real targets.
    data = DetectionDataset(load_dataset(small_set).samples, SPEC, CENTERNET.encode, CLASSES, train=False)
    batch = collate([data[i] for i in range(4)])
    torch.manual_seed(0)
    distances = (torch.rand(4, 4, SPEC.height // 4, SPEC.width // 4) * 40).requires_grad_()
    found = []
    for every in (False, True):
        distances.grad = None
        loss = losses.box_loss(distances_to_boxes(distances), batch['box'], batch['box_weight'],
                               every_location=every)
        loss.backward()
        found.append((loss.detach(), distances.grad.clone()))
    assert float(found[0][0]) > 0.1
    torch.testing.assert_close(found[1][0], found[0][0], rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(found[1][1], found[0][1], rtol=1e-5, atol=1e-9)
    assert (found[0][1] != 0).any() and (found[0][1].permute(0, 2, 3, 1)[batch['box_weight'] == 0] == 0).all()
