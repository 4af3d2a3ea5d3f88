"""perception-gap on a synthetic pair with a known shift: rendered frames and a copy of them
blurred, darkened to 60 % and JPEG-compressed at quality 15 (same labels), scored with the
shipped bundle; and the same set twice, which must show no gap at all."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_trainer.evaluate import evaluate_bundle
from perception_trainer.gap import main, measure_gap
from perception_trainer.gap_statistics import STATISTICS
from perception_trainer.generate import generate_dataset

from .conftest import SHIPPED_BUNDLE

DARKEN = 0.6
BLUR_SIGMA = 1.5
JPEG_QUALITY = 15
PICTURES = ('detection.png', 'images.png', 'colour.png', 'boxes.png')


@pytest.fixture(scope='module')
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp('gap')
    clean = generate_dataset(root / 'clean', 40, seed=31, size=(320, 240), workers=2, progress=False)
    shifted = root / 'shifted'
    shutil.copytree(clean, shifted)  # the same annotation files: same labels, same image names
    for path in sorted((shifted / 'images').glob('*.jpg')):
        bgr = cv2.GaussianBlur(cv2.imread(str(path)), (0, 0), BLUR_SIGMA)
        bgr = np.clip(bgr.astype(np.float32) * DARKEN, 0, 255).astype(np.uint8)
        assert cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return clean, shifted


def _mean_luma(folder: Path) -> float:
    """Reference brightness straight from OpenCV's decoder and grey conversion."""
    return float(np.mean([cv2.imread(str(p), cv2.IMREAD_GRAYSCALE).mean()
                          for p in sorted((folder / 'images').glob('*.jpg'))]))


def test_known_shift_is_measured_and_ranked(pair: tuple[Path, Path], tmp_path: Path,
                                            cli: Callable[..., object]) -> None:
    clean, shifted = pair
    out = tmp_path / 'report'
    done = cli('gap', '--bundle', SHIPPED_BUNDLE, '--sim', clean, '--real', shifted, '--out', out,
               timeout=300)
    assert 'largest shifts' in done.stdout
    report = json.loads((out / 'gap.json').read_text())
    stats = report['statistics']

    brightness = stats['brightness']
    assert brightness['real']['mean'] / brightness['sim']['mean'] == pytest.approx(DARKEN, abs=0.03)
    assert brightness['sim']['mean'] == pytest.approx(_mean_luma(clean), abs=0.6)
    assert brightness['real']['mean'] == pytest.approx(_mean_luma(shifted), abs=0.6)
    assert stats['sharpness']['real']['mean'] < 0.2 * stats['sharpness']['sim']['mean']
    assert stats['blockiness']['sim']['mean'] < 1.2
    assert stats['blockiness']['real']['mean'] > 2
    top = report['largest_shifts'][:5]
    assert {'brightness', 'sharpness', 'blockiness'} <= set(top), top
    for name in ('box_area', 'box_aspect', 'objects_per_image'):  # same labels: no shift there
        assert stats[name]['wasserstein'] == 0 and stats[name]['normalized'] == 0
    assert report['class_frequency']['total_variation'] == 0

    sim, real = report['sets']['sim'], report['sets']['real']
    assert real['mAP'] < sim['mAP'] - 0.05 and real['mAP50'] < sim['mAP50']
    assert report['drop']['mAP'] == pytest.approx(sim['mAP'] - real['mAP'], abs=1e-4)
    drops = [d for d in report['drop']['per_class_AP'].values() if d is not None]
    assert sum(d > 0 for d in drops) >= len(drops) - 1  # nearly every class loses AP

    for name in ('gap.md', 'gap.json', *PICTURES, 'sim/eval.json', 'real/eval.json', 'real/pr_curve.png'):
        assert (out / name).stat().st_size > 0, name
    for name in PICTURES:  # real PNGs, as OpenCV decodes them
        assert cv2.imread(str(out / name)) is not None, name
    markdown = (out / 'gap.md').read_text()
    assert '## What to do first' in markdown and '**blockiness**' in markdown
    assert f"| mAP@[.5:.95] | {sim['mAP']:.4f} | {real['mAP']:.4f} |" in markdown


def test_same_set_twice_has_no_gap(pair: tuple[Path, Path], tmp_path: Path) -> None:
    clean, _ = pair
    report = measure_gap(SHIPPED_BUNDLE, clean, clean, tmp_path / 'same', samples=0, progress=False)
    assert report['drop']['mAP'] == 0 and report['drop']['mAP50'] == 0
    assert all(d in (0, None) for d in report['drop']['per_class_AP'].values())
    for name in STATISTICS:
        assert report['statistics'][name]['wasserstein'] == 0, name
        assert report['statistics'][name]['normalized'] == 0, name
    assert 'No shift' in (tmp_path / 'same' / 'gap.md').read_text()
    # The gap's evaluation is perception-eval's: the same numbers through its own entry point.
    alone = evaluate_bundle(SHIPPED_BUNDLE, clean, tmp_path / 'eval', samples=0, progress=False)
    for key in ('mAP', 'mAP50', 'per_class_AP'):
        assert report['sets']['sim'][key] == alone[key]


def _gap_error(tmp_path: Path, sim: Path, real: Path) -> str:
    with pytest.raises(SystemExit) as stopped:
        main(['--bundle', str(SHIPPED_BUNDLE), '--sim', str(sim), '--real', str(real),
              '--out', str(tmp_path / 'out')])
    return str(stopped.value)


def test_unreadable_unlabelled_or_foreign_sets_are_named(pair: tuple[Path, Path], tmp_path: Path) -> None:
    clean, _ = pair
    missing = tmp_path / 'no_such_set'
    message = _gap_error(tmp_path, clean, missing)
    assert message.startswith('perception-gap: real set:') and str(missing) in message

    coco = json.loads((clean / 'coco_instances.json').read_text())
    unlabelled = tmp_path / 'unlabelled'
    unlabelled.mkdir()
    shutil.copytree(clean / 'images', unlabelled / 'images')
    (unlabelled / 'coco_instances.json').write_text(json.dumps({**coco, 'annotations': []}))
    message = _gap_error(tmp_path, unlabelled, clean)
    assert 'sim set' in message and str(unlabelled) in message and 'no usable box' in message

    foreign = tmp_path / 'foreign'
    foreign.mkdir()
    shutil.copytree(clean / 'images', foreign / 'images')
    renamed = [{**c, 'name': 'widget' if c['name'] == 'cup' else c['name']} for c in coco['categories']]
    (foreign / 'coco_instances.json').write_text(json.dumps({**coco, 'categories': renamed}))
    message = _gap_error(tmp_path, clean, foreign)
    assert str(foreign) in message and "['widget'] are missing from the bundle" in message
