"""Ctrl-C in a training loop over a DataLoader: while it forks its workers Python drops the
KeyboardInterrupt raised in an at-fork hook; while it starts them, hands over a batch or lets them
go, the interrupt leaves it half-built or is dropped again. The fork cases use a real DataLoader,
real fork, real SIGINT, in a child process so the at-fork hooks stay out of pytest's. Last, spawned
workers (perception-synth's) start with Ctrl-C blocked."""

from __future__ import annotations

import contextlib
import multiprocessing
import signal
import subprocess
import sys

import pytest

from perception_core.interrupt import ctrl_c_remembered, starting_workers, stop_on_ctrl_c

LOOP = '''
import contextlib, os, signal, sys
from torch.utils.data import DataLoader
from perception_core.interrupt import ctrl_c_remembered, leave_to_parent, stop_on_ctrl_c

guarded, worker = sys.argv[1] == 'guarded', sys.argv[2]
os.register_at_fork(after_in_parent=lambda: signal.raise_signal(signal.SIGINT))
if worker == 'dies':
    os.register_at_fork(after_in_child=lambda: os.kill(os.getpid(), signal.SIGKILL))
if worker == 'hit':  # the same Ctrl-C reaches the worker in its own at-fork hook
    os.register_at_fork(after_in_child=lambda: signal.raise_signal(signal.SIGINT))
loader = DataLoader(range(8), batch_size=2, num_workers=1,
                    worker_init_fn=leave_to_parent if guarded else None)
batches = 0
try:
    with ctrl_c_remembered() if guarded else contextlib.nullcontext():
        for _ in (stop_on_ctrl_c(loader) if guarded else loader):
            batches += 1
except KeyboardInterrupt:
    print('interrupted after', batches)
except RuntimeError as exc:
    print('RuntimeError:', str(exc).split('.')[0])
else:
    print('finished', batches)
'''


def _loop(guarded: bool, worker: str) -> tuple[str, str]:
    done = subprocess.run([sys.executable, '-c', LOOP, 'guarded' if guarded else 'plain', worker],
                          capture_output=True, text=True, timeout=120, check=True)
    return done.stdout.strip(), done.stderr


@pytest.mark.parametrize('worker', ['lives', 'dies', 'hit'])
def test_a_ctrl_c_lost_in_the_loaders_fork_still_ends_the_loop(worker: str):
    printed, errors = _loop(True, worker)
    assert printed == 'interrupted after 0', errors
    if worker != 'dies':  # torch's own clean-up of a loader whose worker was killed may print
        assert 'Exception ignored' not in errors  # nothing raised where Python drops it


def test_without_the_guard_the_same_ctrl_c_is_lost():
    """The premise: unguarded, Python prints the interrupt it drops and training goes on, or ends
    in a loader error."""
    printed, errors = _loop(False, 'lives')
    assert printed == 'finished 4' and 'Exception ignored' in errors
    assert _loop(False, 'dies')[0].startswith('RuntimeError: DataLoader worker')


def test_a_ctrl_c_while_a_loader_starts_waits_until_it_stands():
    """Raised half-way through starting, torch's loader iterator is left without the state its
    clean-up reads, which then prints a traceback."""
    stood = []

    class Loader:
        def __iter__(self):
            signal.raise_signal(signal.SIGINT)
            stood.append(True)
            return iter(range(3))

    with pytest.raises(KeyboardInterrupt), ctrl_c_remembered():
        list(stop_on_ctrl_c(Loader()))
    assert stood == [True]


def test_a_ctrl_c_while_the_loader_stops_waits_until_it_has(monkeypatch: pytest.MonkeyPatch):
    """The finalizers that run as an exhausted loader lets go of its workers are places where
    Python prints an exception and drops it."""
    dropped: list[object] = []
    monkeypatch.setattr(sys, 'unraisablehook', dropped.append)
    stopped = []

    class Stopping:  # what a DataLoader's iterator does as it goes
        def __next__(self):
            raise StopIteration

        def __del__(self):
            signal.raise_signal(signal.SIGINT)
            stopped.append(True)

    class Loader:
        def __iter__(self):
            return Stopping()

    with pytest.raises(KeyboardInterrupt), ctrl_c_remembered():
        list(stop_on_ctrl_c(Loader()))
    assert stopped == [True] and dropped == []


def test_a_second_ctrl_c_ends_a_stuck_loader_at_once():
    reached = []

    class Stuck:
        def __iter__(self):
            return self

        def __next__(self):
            signal.raise_signal(signal.SIGINT)  # remembered: the batch may still come
            reached.append(1)
            signal.raise_signal(signal.SIGINT)  # it does not: the user presses again
            reached.append(2)
            return 0

    with pytest.raises(KeyboardInterrupt), ctrl_c_remembered():
        list(stop_on_ctrl_c(Stuck()))
    assert reached == [1]
    assert list(stop_on_ctrl_c(range(3))) == [0, 1, 2]  # the Ctrl-C was this block's only


def test_the_previous_handler_comes_back():
    previous = signal.getsignal(signal.SIGINT)
    with ctrl_c_remembered():
        assert signal.getsignal(signal.SIGINT) is not previous
    assert signal.getsignal(signal.SIGINT) is previous


def _spawned_workers_mask(inside: bool) -> set[signal.Signals]:
    with starting_workers() if inside else contextlib.nullcontext():
        pool = multiprocessing.get_context('spawn').Pool(1)  # as perception-synth renders
    with pool:
        return pool.apply(signal.pthread_sigmask, (signal.SIG_BLOCK, []))


def test_workers_started_inside_begin_with_ctrl_c_blocked():
    """So a Ctrl-C while a spawned worker imports, before its initializer, prints nothing there."""
    assert signal.SIGINT in _spawned_workers_mask(True)
    assert signal.SIGINT not in _spawned_workers_mask(False)


def test_a_ctrl_c_while_workers_start_is_raised_after():
    reached = []
    with pytest.raises(KeyboardInterrupt), starting_workers():
        signal.raise_signal(signal.SIGINT)
        reached.append(True)
    assert reached == [True]
    assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
