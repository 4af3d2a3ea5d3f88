"""perception_trainer.augment_measure end to end at a budget that proves the pipeline, not a policy."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from perception_trainer import augment_measure

REPO = Path(__file__).resolve().parents[3]


def test_shifted_copy_keeps_labels_and_shifts_the_frames(tmp_path: Path) -> None:
    clean = tmp_path / 'clean'
    (clean / 'images').mkdir(parents=True)
    rng = np.random.default_rng(0)
    frame = rng.integers(0, 256, (64, 80, 3), dtype=np.uint8)
    cv2.imwrite(str(clean / 'images' / 'a.jpg'), frame, [cv2.IMWRITE_JPEG_QUALITY, 95])
    (clean / 'annotations.json').write_text('{"images": []}')
    shifted = augment_measure.shifted_copy(clean, tmp_path / 'real')
    assert (shifted / 'annotations.json').read_text() == '{"images": []}'
    before = cv2.imread(str(clean / 'images' / 'a.jpg')).astype(np.float32)
    after = cv2.imread(str(shifted / 'images' / 'a.jpg')).astype(np.float32)
    assert after.mean() < 0.7 * before.mean()  # darkened to 60 %
    assert cv2.Laplacian(after, cv2.CV_32F).var() < 0.2 * cv2.Laplacian(before, cv2.CV_32F).var()  # blurred


def test_measure_trains_the_given_recipe_and_reports_each_policy(tmp_path: Path, capsys) -> None:
    out = tmp_path / 'augment'
    augment_measure.main(['--out', str(out), '--config', str(REPO / 'config' / 'train_default.yaml'),
                          '--policies', 'default', 'strong', '--train-images', '24', '--val-images', '8',
                          '--test-images', '8', '--render-size', '320x256', '--epochs', '1', '--workers', '0',
                          '--device', 'cpu', '--recipe', 'cache_images=false'])
    report = json.loads((out / 'augment_measure.json').read_text())
    assert list(report['policies']) == ['default', 'strong']
    assert report['recipe'] == {'epochs': 1, 'workers': 0, 'device': 'cpu', 'cache_images': 'false'}
    for name, row in report['policies'].items():
        trained = yaml.safe_load((out / name / 'run' / 'config.yaml').read_text())
        assert (trained['backbone'], trained['size'], trained['batch_size']) == ('resnet_slim', 'm', 64)
        assert trained['augment'] == name
        for key in ('mAP', 'mAP50'):
            assert row['drop'][key] == pytest.approx(row['sim'][key] - row['real'][key], abs=1e-4)
        assert Path(row['report']).is_file()
        assert Path(row['bundle']).name == f'augment_{name}'
        assert len(row['drop_per_class_AP']) == 10  # the generator's classes
    assert (out / 'augment_measure.png').stat().st_size > 10_000
    assert '| strong |' in capsys.readouterr().out


def test_a_recipe_that_cannot_train_fails_before_any_rendering(tmp_path: Path) -> None:
    out = tmp_path / 'augment'
    with pytest.raises(SystemExit) as ended:
        augment_measure.main(['--out', str(out), '--recipe', 'photometric_on=device'])
    assert str(ended.value) == ('python -m perception_trainer.augment_measure: recipe: photometric_on '
                                "device is built for the default augmentation policy only, not 'strong': "
                                'use photometric_on loader or auto')
    assert not out.exists()
