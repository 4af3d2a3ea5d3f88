"""Ctrl-C in a command-line tool: one line saying what was kept, no traceback, and the exit status
a shell reports for a process SIGINT ended (128 + 2)."""

from __future__ import annotations

import signal
import sys

EXIT_INTERRUPTED = 128 + int(signal.SIGINT)


def interrupted(prog: str, kept: str = '') -> int:
    """Say so on stderr (``kept``: what the interrupted work left, and how to go on); -> the status."""
    print(f'{prog}: interrupted' + (f'; {kept}' if kept else ''), file=sys.stderr)
    return EXIT_INTERRUPTED


def leave_to_parent() -> None:
    """A worker pool's initializer: Ctrl-C reaches the whole process group, and the parent, which
    stops the pool, reports it once, instead of a traceback from every worker."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
