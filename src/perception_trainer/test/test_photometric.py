"""photometric_on device: the default policy's colour, blur and noise per batch on the training
device, checked against albumentations (the loader's version) on real rendered frames, and
through real training runs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import pytest
import torch

from perception_trainer import checkpoint
from perception_trainer import photometric as ph
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.config import ConfigError, load_config
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset

CENTERNET = ARCHITECTURES['centernet']
SPEC = CENTERNET.input_spec(256, 320)


@pytest.fixture(scope='module')
def frame(small_set: Path) -> np.ndarray:
    image = cv2.imread(str(load_dataset(small_set).samples[0].image))
    return cv2.cvtColor(cv2.resize(image, (160, 120)), cv2.COLOR_BGR2RGB)


def _params(**values: float) -> np.ndarray:
    p = np.zeros(ph.PARAMETERS, np.float32)
    p[[ph.BRIGHT, ph.CONTR, ph.SAT]] = 1.0
    p[ph.ORDER:ph.ORDER + 4] = [0, 1, 2, 3]
    for name, value in values.items():
        p[getattr(ph, name)] = value
    return p


def _ours(frame: np.ndarray, params: np.ndarray, seed: int = 0) -> np.ndarray:
    batch = torch.from_numpy(frame).permute(2, 0, 1)[None]
    out = ph.apply(batch, torch.from_numpy(params)[None], torch.Generator().manual_seed(seed))
    return out[0].permute(1, 2, 0).numpy()


def _jitter(**kw: tuple[float, float]) -> A.ColorJitter:
    ranges = {'brightness': 0, 'contrast': 0, 'saturation': 0, 'hue': 0, **kw}
    return A.ColorJitter(**ranges, p=1)


@pytest.mark.parametrize(('values', 'reference', 'most'), [
    ({'BRIGHT': 1.2}, _jitter(brightness=(1.2, 1.2)), 1.0),
    ({'BRIGHT': 0.75}, _jitter(brightness=(0.75, 0.75)), 1.0),
    ({'CONTR': 0.8}, _jitter(contrast=(0.8, 0.8)), 1.0),
    ({'SAT': 1.25}, _jitter(saturation=(1.25, 1.25)), 1.0),
    ({'SIZE': 5, 'SIGMA': 1.5}, A.GaussianBlur(blur_limit=(5, 5), sigma_limit=(1.5, 1.5), p=1), 1.0),
    ({'SIZE': 3, 'SIGMA': 2.5}, A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(2.5, 2.5), p=1), 1.0),
])
def test_each_operation_matches_albumentations_within_uint8_rounding(
        frame: np.ndarray, values: dict, reference: A.BasicTransform, most: float) -> None:
    expected = reference(image=frame)['image'].astype(np.float32)
    got = _ours(frame, _params(**values))
    assert np.abs(expected - frame).mean() > 0.3  # the operation changes the frame
    assert np.abs(got - expected).max() <= most
    assert np.abs(got - expected).mean() < 0.75  # albumentations' uint8 steps truncate or round


@pytest.mark.parametrize('shift', [0.02, -0.02, 0.3])
def test_the_hue_shift_is_albumentations_float_hsv_rotation(frame: np.ndarray, shift: float) -> None:
    reference = _jitter(hue=(shift, shift))
    expected = reference(image=frame.astype(np.float32) / 255)['image'] * 255
    got = _ours(frame, _params(HUE_SHIFT=shift))
    assert np.abs(expected - frame).mean() > 0.3
    assert np.abs(got - expected).max() < 1e-2
    # On uint8 frames albumentations quantises hue to 2 degrees and S, V to 256 levels.
    assert np.abs(got - reference(image=frame)['image']).mean() < 0.75


def test_the_jitter_runs_in_each_samples_own_order(frame: np.ndarray) -> None:
    contrast_first = A.Compose([_jitter(contrast=(0.75, 0.75)), _jitter(brightness=(1.25, 1.25))])
    expected = contrast_first(image=frame)['image'].astype(np.float32)
    params = _params(BRIGHT=1.25, CONTR=0.75)
    params[ph.ORDER:ph.ORDER + 4] = [1, 0, 2, 3]
    assert np.abs(_ours(frame, params) - expected).max() <= 2.0
    params[ph.ORDER:ph.ORDER + 4] = [0, 1, 2, 3]  # brightness first clips other pixels
    assert np.abs(_ours(frame, params) - expected).max() > 2.0


def test_noise_has_the_drawn_strength_and_the_batch_seed_fixes_it(frame: np.ndarray) -> None:
    grey = np.full_like(frame, 128)
    params = _params(NOISE=0.04 * 255)
    noisy = _ours(grey, params, seed=3)
    assert np.std(noisy - 128) == pytest.approx(0.04 * 255, rel=0.05)
    assert np.array_equal(noisy, _ours(grey, params, seed=3))
    assert not np.array_equal(noisy, _ours(grey, params, seed=4))


def test_a_batch_is_each_sample_done_alone(frame: np.ndarray) -> None:
    draws = [ph.draw(seed) for seed in range(40)]
    chosen = [p for p in draws if p[ph.NOISE] == 0][:6]  # noise fields depend on the batch
    assert any(p[ph.SIZE] > 0 for p in chosen) and any(p[ph.BRIGHT] != 1 for p in chosen)
    images = torch.from_numpy(np.stack([np.roll(frame, 7 * i, axis=1) for i in range(6)])).permute(0, 3, 1, 2)
    batch = ph.apply(images, torch.from_numpy(np.stack(chosen)), torch.Generator())
    for i, p in enumerate(chosen):
        alone = ph.apply(images[i:i + 1], torch.from_numpy(p)[None], torch.Generator())
        torch.testing.assert_close(batch[i:i + 1], alone, rtol=0, atol=1e-3)


def test_a_sample_that_drew_nothing_passes_through_unchanged(frame: np.ndarray) -> None:
    untouched = _params()
    assert np.array_equal(_ours(frame, untouched), frame.astype(np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason='CUDA graphs need a CUDA device')
def test_the_training_loops_cuda_graph_gives_the_eager_result(frame: np.ndarray) -> None:
    draws = [ph.draw(seed) for seed in range(16)]
    images = torch.from_numpy(np.stack([np.roll(frame, 5 * i, axis=0) for i in range(16)]))
    images = images.permute(0, 3, 1, 2).cuda()
    params = torch.from_numpy(np.stack(draws))
    device = torch.device('cuda')
    in_loop = ph.OnDevice(device)
    for seed in (1, 2):  # the second call replays the graph captured by the first
        generator = ph.generator_for(device, 0, 0, seed)
        got = in_loop(images, params, generator)
        expected = ph.apply(images, params, ph.generator_for(device, 0, 0, seed))
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-3)


def test_draws_follow_the_default_policys_chances_and_ranges() -> None:
    draws = np.stack([ph.draw(seed) for seed in range(4000)])
    assert np.array_equal(draws[17], ph.draw(17))
    jittered = draws[:, ph.BRIGHT] != 1
    blurred, noised = draws[:, ph.SIZE] > 0, draws[:, ph.NOISE] > 0
    assert jittered.mean() == pytest.approx(ph.JITTER_CHANCE, abs=0.03)
    assert blurred.mean() == pytest.approx(ph.BLUR_OR_NOISE_CHANCE / 2, abs=0.02)
    assert noised.mean() == pytest.approx(ph.BLUR_OR_NOISE_CHANCE / 2, abs=0.02)
    assert not (blurred & noised).any()
    assert set(draws[blurred, ph.SIZE].tolist()) == {3.0, 5.0}
    assert draws[jittered, ph.BRIGHT].min() >= 1 - ph.BRIGHTNESS and draws[:, ph.BRIGHT].max() <= 1.25
    assert np.abs(draws[:, ph.HUE_SHIFT]).max() <= ph.HUE
    assert draws[noised, ph.NOISE].max() <= ph.NOISE_STD[1] * 255
    orders = draws[:, ph.ORDER:ph.ORDER + 4]
    assert (np.sort(orders, 1) == [0, 1, 2, 3]).all() and len({tuple(o) for o in orders}) == 24


def test_the_dataset_keeps_the_geometry_and_hands_over_the_rest(small_set: Path) -> None:
    samples = load_dataset(small_set).samples
    on_device = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=True, seed=1,
                                 photometric='device')
    in_loader = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=True, seed=1)
    assert [type(t).__name__ for t in on_device.transform.transforms] == ['Affine', 'HorizontalFlip']
    assert 'ColorJitter' in [type(t).__name__ for t in in_loader.transform.transforms]
    item = on_device[4]
    assert item['photometric'].shape == (ph.PARAMETERS,)
    assert np.array_equal(item['photometric'], on_device[4]['photometric'])  # seeded per sample
    assert not np.array_equal(item['photometric'], on_device[5]['photometric'])
    assert 'photometric' not in in_loader[4]
    evaluation = DetectionDataset(samples, SPEC, CENTERNET.encode, 10, train=False, photometric='device')
    assert evaluation.transform is None and 'photometric' not in evaluation[4]


def test_where_it_runs_and_what_is_refused(tmp_path: Path) -> None:
    assert [ph.place('auto', 'default', kind) for kind in ('cuda', 'cpu')] == ['device', 'loader']
    assert ph.place('device', 'default', 'cpu') == 'device'
    assert ph.place('auto', 'strong', 'cuda') == 'loader'
    recipe = tmp_path / 'recipe.yaml'
    recipe.write_text('train_data: d\naugment: strong\nphotometric_on: device\n')
    with pytest.raises(ConfigError, match='photometric_on device is built for the default'):
        load_config(path=recipe)


def test_training_with_it_on_the_device_is_the_same_whatever_the_loader_workers(
        small_set: Path, cli: Callable, tmp_path: Path) -> None:
    runs = []
    for workers in (0, 2):
        out = tmp_path / f'w{workers}'
        cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 2, '--workers', workers,
            '--seed', 7, '--out', out, '--photometric-on', 'device', '--input-height', 96,
            '--input-width', 128, '--batch-size', 4, '--device', 'cpu')
        assert 'photometric_on: device' in (out / 'config.yaml').read_text()
        runs.append(checkpoint.load(out / checkpoint.LAST)['model'])
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    loader_run = tmp_path / 'loader'
    cli('train', '--train-data', small_set, '--val-data', small_set, '--epochs', 2, '--seed', 7,
        '--out', loader_run, '--input-height', 96, '--input-width', 128, '--batch-size', 4, '--device', 'cpu',
        '--workers', 0)
    assert 'photometric_on: loader' in (loader_run / 'config.yaml').read_text()  # auto on the CPU
    other = checkpoint.load(loader_run / checkpoint.LAST)['model']
    assert not all(torch.equal(runs[0][k], other[k]) for k in other)
