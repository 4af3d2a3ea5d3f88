"""INT8 calibration data: image files through exactly the node's preprocessing, in fixed-size batches.

Calibration sets the INT8 scales from the activations these batches produce, so they must be
what the node will feed the engine: same resize, colour order, normalisation and layout. The
cache written after calibration is reused on later builds of the same ONNX (its name carries the
ONNX hash, see ``plan.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from perception_core.atomic import write_bytes
from perception_core.bundle import InputSpec
from perception_core.preprocess import Preprocessor

from .plan import Calibration

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = ('.png', '.jpg', '.jpeg', '.bmp')
BGR = (2, 1, 0)   # where cv2.imread puts R, G, B


class CalibrationError(ValueError):
    """Calibration data that cannot be used; the message names the directory or file."""


def image_files(directory: Path, limit: int) -> list[Path]:
    """Up to ``limit`` image files below ``directory``, in a stable order (sorted paths)."""
    files = sorted(p for p in directory.rglob('*') if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise CalibrationError(f'{directory}: no images ({", ".join(IMAGE_SUFFIXES)}) for INT8 calibration')
    return files[:limit]


def calibration_batches(files: list[Path], spec: InputSpec, batch_size: int) -> Iterator[np.ndarray]:
    """Contiguous float32 batches of ``batch_size`` frames; unreadable files are logged and skipped.

    Every batch is the same buffer, overwritten by the next: copy it out before asking for more.
    A last, partial batch is dropped: the calibration profile has a fixed batch dimension.
    """
    preprocessor = Preprocessor(spec)
    batch: np.ndarray | None = None
    filled = 0
    for path in files:
        pixels = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if pixels is None:
            log.warning('%s: unreadable image, skipped for calibration', path)
            continue
        tensor, _ = preprocessor(pixels, BGR)
        if batch is None:
            batch = np.empty((batch_size, *tensor.shape[1:]), np.float32)
        batch[filled] = tensor[0]
        filled += 1
        if filled == batch_size:
            yield batch
            filled = 0
    if filled:
        log.info('calibration: last %d image(s) dropped (not a full batch of %d)', filled, batch_size)


def read_cache(calibration: Calibration) -> bytes | None:
    path = calibration.cache_path
    if not path.is_file():
        return None
    log.info('INT8 calibration cache %s reused', path)
    return path.read_bytes()


def write_cache(calibration: Calibration, data: bytes) -> None:
    write_bytes(calibration.cache_path, data)
    log.info('INT8 calibration cache written to %s', calibration.cache_path)
