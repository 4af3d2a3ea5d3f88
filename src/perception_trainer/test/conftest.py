"""Real generated data sets for the trainer's tests (rendered once per session)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from perception_trainer.generate import generate_dataset

WORKSPACE = Path(__file__).resolve().parents[3]
SHIPPED_BUNDLE = WORKSPACE / 'models' / 'detector'


def run_env() -> dict[str, str]:
    """Environment for CLI subprocesses: unbuffered, few threads (2 shared cores)."""
    return {**os.environ, 'PYTHONUNBUFFERED': '1', 'OMP_NUM_THREADS': '2'}


def command(module: str, *args: object) -> list[str]:
    """``python -m perception_trainer.<module> args``: the code behind the console script."""
    return [sys.executable, '-m', f'perception_trainer.{module}', *map(str, args)]


def run_command(module: str, *args: object, timeout: float = 600, check: bool = True
                ) -> subprocess.CompletedProcess:
    """Run a perception_trainer command (or ``torch.distributed.run``) as a real process; fails the
    test, with the process's output, when it exits non-zero and ``check`` is set."""
    argv = ([sys.executable, '-m', module, *map(str, args)] if module.startswith('torch.')
            else command(module, *args))
    done = subprocess.run(argv, env=run_env(), capture_output=True, text=True, timeout=timeout, check=False)
    if check and done.returncode != 0:
        pytest.fail(f'{module} {args} exited {done.returncode}:\n'
                    f'{done.stdout[-3000:]}\n{done.stderr[-3000:]}')
    return done


@pytest.fixture(scope='session')
def cli() -> Callable[..., subprocess.CompletedProcess]:
    return run_command


@pytest.fixture
def popen() -> Callable[..., subprocess.Popen]:
    """Start a perception_trainer command as a background process (killed after the test)."""
    started: list[subprocess.Popen] = []

    def start(module: str, *args: object) -> subprocess.Popen:
        # Its own process group with Ctrl-C's default action (under a shell's background job SIGINT
        # is ignored, and children inherit that), so a test can interrupt it and its loader
        # processes as a terminal would. The function only resets one signal: no lock to deadlock on.
        process = subprocess.Popen(command(module, *args), env=run_env(), stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, start_new_session=True,
                                   preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))  # noqa: PLW1509
        started.append(process)
        return process
    yield start
    for process in started:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@pytest.fixture(scope='session')
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 full-size (640x480) frames in all three formats."""
    return generate_dataset(tmp_path_factory.mktemp('small') / 'set', 12, seed=5, workers=2, progress=False)


@pytest.fixture(scope='session')
def learning_sets(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """200 training and 50 validation frames (another seed) of three classes, at 320x240 to keep
    CPU time low."""
    root = tmp_path_factory.mktemp('learn')
    classes = ('ball', 'cone', 'book')
    train = generate_dataset(root / 'train', 200, seed=21, size=(320, 240), classes=classes, workers=2,
                             progress=False)
    val = generate_dataset(root / 'val', 50, seed=22, size=(320, 240), classes=classes, workers=2,
                           progress=False)
    return train, val
