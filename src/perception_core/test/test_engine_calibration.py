"""INT8 calibration batches: real image files through the node's preprocessing."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from perception_core.bundle import load_bundle
from perception_core.engine.calibration import (
    CalibrationError,
    calibration_batches,
    image_files,
    read_cache,
    write_cache,
)
from perception_core.engine.plan import Calibration
from perception_core.preprocess import preprocess
from perception_core.synth import render_scene


def write_images(directory: Path, count: int) -> list[np.ndarray]:
    """Synthetic camera frames as PNG files; returns them as RGB arrays in file order."""
    directory.mkdir(parents=True, exist_ok=True)
    frames = []
    for i in range(count):
        rgb = render_scene(7, i, 320, 240).image
        cv2.imwrite(str(directory / f'{i:03d}.png'), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        frames.append(rgb)
    return frames


def test_batches_are_the_nodes_preprocessing(tiny_bundle: Path, tmp_path: Path) -> None:
    spec = load_bundle(tiny_bundle).input
    frames = write_images(tmp_path / 'images', 7)
    (tmp_path / 'images' / '999_broken.png').write_bytes(b'not an image')   # skipped, logged
    files = image_files(tmp_path / 'images', limit=100)
    assert len(files) == 8 and files == sorted(files)
    batches = [b.copy() for b in calibration_batches(files, spec, batch_size=3)]
    assert len(batches) == 2                        # 7 readable images: the 7th is dropped
    for b, batch in enumerate(batches):
        assert batch.shape == (3, 3, 256, 320) and batch.dtype == np.float32 and batch.flags.c_contiguous
        for k in range(3):
            expected, _ = preprocess(frames[b * 3 + k], spec)
            np.testing.assert_array_equal(batch[k], expected[0])


def test_image_files_limit_and_empty_folder(tmp_path: Path) -> None:
    write_images(tmp_path / 'a', 3)
    assert [p.name for p in image_files(tmp_path / 'a', limit=2)] == ['000.png', '001.png']
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CalibrationError, match='empty: no images'):
        image_files(tmp_path / 'empty', limit=10)


def test_cache_round_trip(tmp_path: Path) -> None:
    calibration = Calibration(data_dir=None, cache_path=tmp_path / 'sub' / 'calibration.cache', batch_size=8,
                              max_images=16, shape=(8, 3, 256, 320))
    assert read_cache(calibration) is None
    write_cache(calibration, b'TRT-1003-EntropyCalibration2\nimages: 3c010a14\n')
    assert read_cache(calibration) == b'TRT-1003-EntropyCalibration2\nimages: 3c010a14\n'
    assert [p.name for p in (tmp_path / 'sub').iterdir()] == ['calibration.cache']   # no temp files left
