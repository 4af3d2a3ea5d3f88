"""Real generated data sets for the trainer's tests (rendered once per session)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from perception_trainer.generate import generate_dataset

WORKSPACE = Path(__file__).resolve().parents[3]
SHIPPED_BUNDLE = WORKSPACE / 'models' / 'detector'


def run_env() -> dict[str, str]:
    """Environment for CLI subprocesses: unbuffered, few threads (2 shared cores)."""
    return {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '2'}


def module_command(module: str, *args: object) -> list[str]:
    """``python -m perception_trainer.<module> args``: the code behind the console script."""
    return [sys.executable, '-m', f'perception_trainer.{module}', *map(str, args)]


@pytest.fixture(scope='session')
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 full-size (640x480) frames in all three formats."""
    return generate_dataset(tmp_path_factory.mktemp('small') / 'set', 12, seed=5, workers=2, progress=False)


@pytest.fixture(scope='session')
def learning_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A small training set and a validation set of another seed, at 320x240 to keep CPU time low."""
    root = tmp_path_factory.mktemp('learn')
    train = generate_dataset(root / 'train', 240, seed=21, size=(320, 240), workers=2, progress=False)
    val = generate_dataset(root / 'val', 60, seed=22, size=(320, 240), workers=2, progress=False)
    return train, val
