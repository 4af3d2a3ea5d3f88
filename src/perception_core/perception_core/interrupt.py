"""Ctrl-C in a command-line tool: one line saying what was kept, no traceback, and the exit status
a shell reports for a process SIGINT ended (128 + 2)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from multiprocessing import resource_tracker
from typing import Any, TypeVar, cast

T = TypeVar('T')

EXIT_INTERRUPTED = 128 + int(signal.SIGINT)


def interrupted(prog: str, kept: str = '') -> int:
    """Say so on stderr (``kept``: what the interrupted work left, and how to go on); -> the status."""
    print(f'{prog}: interrupted' + (f'; {kept}' if kept else ''), file=sys.stderr)
    return EXIT_INTERRUPTED


def leave_to_parent(*_: object) -> None:
    """A worker pool's initializer, or a DataLoader's ``worker_init_fn``: Ctrl-C reaches the whole
    process group, and the parent, which stops the workers, reports it once, instead of a traceback
    from every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def starting_workers() -> Iterator[None]:
    """Processes started within begin with Ctrl-C blocked, a mask they keep across exec: a spawned
    worker takes seconds to import before its initializer (:func:`leave_to_parent`) runs, and a
    Ctrl-C then would print its traceback. Here a Ctrl-C waits until the block ends, and is raised
    there."""
    # The first spawn starts multiprocessing's resource tracker, and unblocks SIGINT after that.
    resource_tracker.ensure_running()
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def on_ctrl_c(prog: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A console script's ``main`` that says so on Ctrl-C and returns the status (where it has no
    more to say of what it kept: those catch KeyboardInterrupt themselves)."""
    def wrap(main: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(main)
        def run(*args: Any, **kwargs: Any) -> Any:
            try:
                return main(*args, **kwargs)
            except KeyboardInterrupt:
                return interrupted(prog)
        return run
    return wrap


class _CtrlC:
    """SIGINT inside :func:`ctrl_c_remembered`: raised, except the first one while a loader works.

    Torch's DataLoader breaks where KeyboardInterrupt lands inside it: in an at-fork hook (logging
    registers one) Python prints it and drops it, so training goes on; half-way through starting
    its workers it leaves an iterator whose clean-up prints a traceback; half-way through receiving
    a batch it drops a worker's connection, and the worker prints that; in the finalizers that run
    as the workers are joined, Python drops it again. So while the loader starts, hands over a
    batch or stops, and during any fork, the signal is only remembered, and
    :func:`stop_on_ctrl_c` raises it once the batch is in; a second Ctrl-C (a stuck loader) raises at
    once. A forked worker inherits this handler and leaves the signal to its parent, which stops it
    (:func:`leave_to_parent` as ``worker_init_fn`` then ignores it for good)."""

    seen = False
    forking = False  # set and cleared by builtins, so the handler cannot run in between
    loading = False
    owner = 0  # the process that installed the handler
    hooked = False

    def record(self, signum: int, frame: Any) -> None:
        if os.getpid() != self.owner:
            return
        again, self.seen = self.seen, True
        if self.forking or (self.loading and not again):
            return
        raise KeyboardInterrupt

    @contextlib.contextmanager
    def loader_working(self) -> Iterator[None]:
        """The first Ctrl-C within is raised on leaving, when the loader stands."""
        self.loading = True
        try:
            yield
        finally:
            self.loading = False
        if self.seen:
            raise KeyboardInterrupt

    def watch_forks(self) -> None:
        """Hooks registered last run their ``before`` first and their ``after`` last, around the
        others; builtins (no bytecode) so the signal handler cannot run inside them."""
        if not self.hooked:
            os.register_at_fork(before=functools.partial(setattr, self, 'forking', True),
                                after_in_parent=functools.partial(setattr, self, 'forking', False))
            self.hooked = True


CTRL_C = _CtrlC()


@contextlib.contextmanager
def ctrl_c_remembered() -> Iterator[None]:
    """Within: SIGINT raises KeyboardInterrupt as by default, except where :class:`_CtrlC` says;
    one remembered is raised by :func:`stop_on_ctrl_c` or, at the latest, on leaving (main thread
    only: elsewhere Python delivers no signals, so this does nothing)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    CTRL_C.watch_forks()
    CTRL_C.seen, CTRL_C.owner = False, os.getpid()
    previous = signal.signal(signal.SIGINT, CTRL_C.record)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        seen, CTRL_C.seen = CTRL_C.seen, False  # outside, stop_on_ctrl_c passes everything
    if seen:
        raise KeyboardInterrupt


def stop_on_ctrl_c(items: Iterable[T]) -> Iterator[T]:
    """``items`` (a DataLoader), ended by KeyboardInterrupt at the first batch boundary after a
    Ctrl-C, or where a loader error (a worker killed) follows one."""
    end = object()
    try:
        with CTRL_C.loader_working():
            iterator = iter(items)  # the workers start here
        while True:
            with CTRL_C.loader_working():
                item = next(iterator, end)
                if item is end:
                    del iterator  # the workers are joined and their finalizers run here, held too
                    return
            yield cast(T, item)
    except RuntimeError:
        if CTRL_C.seen:
            raise KeyboardInterrupt from None
        raise
