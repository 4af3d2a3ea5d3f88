"""Ctrl-C in a command-line tool: one line saying what was kept, no traceback, and the exit status
a shell reports for a process SIGINT ended (128 + 2)."""

from __future__ import annotations

import functools
import signal
import sys
from collections.abc import Callable
from typing import Any

EXIT_INTERRUPTED = 128 + int(signal.SIGINT)


def interrupted(prog: str, kept: str = '') -> int:
    """Say so on stderr (``kept``: what the interrupted work left, and how to go on); -> the status."""
    print(f'{prog}: interrupted' + (f'; {kept}' if kept else ''), file=sys.stderr)
    return EXIT_INTERRUPTED


def leave_to_parent() -> None:
    """A worker pool's initializer: Ctrl-C reaches the whole process group, and the parent, which
    stops the pool, reports it once, instead of a traceback from every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


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
