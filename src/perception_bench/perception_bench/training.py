"""Training throughput: ``perception-train`` itself (the default recipe, config/train_default.yaml)
on freshly rendered synthetic data, a few epochs; images/s is what the trainer reports per epoch
(data loading and augmentation included, validation excluded). The first epoch warms up (cuDNN
autotuning, worker start) and is left out; the others are the runs of the figure."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from perception_core.backends.gpu import torch_cuda_available

from .stats import spread

log = logging.getLogger(__name__)
RUN_TIMEOUT_S = 240


@dataclass(frozen=True)
class TrainRun:
    name: str
    device: str
    images: int
    workers: int
    batch_size: int = 32
    epochs: int = 3


def plan(quick: bool) -> list[TrainRun]:
    """What to train: the CPU everywhere, and on a GPU 2 loader workers (the recipe's before
    ``workers: auto``) and as many as the cores allow (the small network is fed faster than 2
    workers can augment)."""
    cores = len(os.sched_getaffinity(0))
    cpu = TrainRun(
        'cpu',
        'cpu',
        images=32 if quick else 160,
        workers=min(2, cores),
        batch_size=16,
        epochs=2 if quick else 3,
    )
    if not torch_cuda_available():
        return [cpu]
    many = max(2, cores - 2)
    return [
        cpu,
        TrainRun('cuda_amp_recipe_workers', 'cuda', images=2048, workers=2),
        TrainRun(f'cuda_amp_{many}_workers', 'cuda', images=2048, workers=many),
    ]


def _python(module: str, *args: str, log_to: Path) -> None:
    with log_to.open('a') as out:
        done = subprocess.run(
            [sys.executable, '-m', module, *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    if done.returncode != 0:
        tail = log_to.read_text()[-2000:]
        raise RuntimeError(f'{module} {" ".join(args)} exited with {done.returncode}: {tail}')


def _render(folder: Path, images: int, seed: int, log_to: Path) -> Path:
    if not (folder / 'coco_instances.json').is_file():
        _python(
            'perception_trainer.generate',
            '--out',
            str(folder),
            '--num-images',
            str(images),
            '--seed',
            str(seed),
            log_to=log_to,
        )
    return folder


def _train(
    run: TrainRun, recipe: Path, train: Path, val: Path, *, folder: Path, log_to: Path
) -> dict[str, Any]:
    out = folder / run.name
    _python(
        'perception_trainer.train',
        '--config',
        str(recipe),
        '--train-data',
        str(train),
        '--val-data',
        str(val),
        '--epochs',
        str(run.epochs),
        '--eval-interval',
        '1000',
        '--batch-size',
        str(run.batch_size),
        '--workers',
        str(run.workers),
        '--device',
        run.device,
        '--amp',
        'true',
        '--out',
        str(out),
        log_to=log_to,
    )
    history = json.loads((out / 'history.json').read_text())
    per_epoch = [round(record['images_per_s'], 2) for record in history]
    return {
        'device': run.device,
        'amp': run.device == 'cuda',
        'train_images': run.images,
        'loader_workers': run.workers,
        'batch_size': run.batch_size,
        'epochs': run.epochs,
        'images_per_s': spread(per_epoch[1:]),
        'images_per_s_per_epoch': per_epoch,
    }


def measure(recipe: Path, quick: bool = False) -> dict[str, Any]:
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix='bench-train-') as tmp:
        folder = Path(tmp)
        log_to = folder / 'train.log'
        val = _render(folder / 'val', 32, 12, log_to)
        for run in plan(quick):
            try:
                train = _render(folder / f'train_{run.images}', run.images, 11, log_to)
                results[run.name] = _train(run, recipe, train, val, folder=folder, log_to=log_to)
            except (RuntimeError, subprocess.TimeoutExpired, OSError, KeyError) as exc:
                log.error('training run %s: %s', run.name, exc)
                results[run.name] = {'error': str(exc)[-2000:]}
    return {'recipe': str(recipe), 'runs': results}
