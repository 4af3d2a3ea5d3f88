"""SIGINT and SIGTERM as a request to stop: the node finishes its cleanup whatever follows.

Under ``ros2 launch`` one Ctrl-C reaches the node twice: the terminal's SIGINT, then launch's own
20-200 ms later, and SIGTERM if the node is still up after launch's timeout. Python's default
handler turns each SIGINT into a KeyboardInterrupt wherever the main thread is, so the second one
landed in ``close()`` or ``destroy_node()`` (final files and backend close skipped, a traceback),
or killed the interpreter on its way out (Python puts its handlers back to the default there):
exit code -2. Here the first signal asks the spin loop to end, and from the start of the cleanup
on both signals are ignored, up to the process's exit.

rclpy's own handlers are left out (``init_ros``): they shut the context down from a thread of
their own, at any moment, so a spin already past its ``rclpy.ok()`` check failed on the invalid
context (and the EventsExecutor then aborted the process). The node shuts the context down
itself, after its cleanup; the cost is that the spin loop notices a signal at its next timeout.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

import rclpy
from rclpy.executors import Executor, ExternalShutdownException

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopRequest:
    """The first SIGINT/SIGTERM received, from the moment it is constructed."""

    def __init__(self) -> None:
        self.signal: signal.Signals | None = None
        self._interruptible = False
        for number in SIGNALS:
            signal.signal(number, self._on_signal)

    @property
    def requested(self) -> bool:
        return self.signal is not None

    @property
    def name(self) -> str:
        return self.signal.name if self.signal is not None else ''

    @contextmanager
    def interruptible(self) -> Iterator[None]:
        """Start-up may take minutes (an engine build): the first signal inside ends it with a
        KeyboardInterrupt. Only one is ever raised; later signals are only recorded."""
        self._interruptible = True
        try:
            if self.requested:
                self._interruptible = False
                raise KeyboardInterrupt
            yield
        finally:
            self._interruptible = False

    def ignore_further(self) -> None:
        """From here to the process's exit no SIGINT/SIGTERM can interrupt anything. SIG_IGN
        rather than a handler: Python keeps an ignored signal ignored through its own exit."""
        for number in SIGNALS:
            signal.signal(number, signal.SIG_IGN)

    def _on_signal(self, number: int, frame: FrameType | None) -> None:
        first = self.signal is None
        if first:
            self.signal = signal.Signals(number)
        if first and self._interruptible:
            self._interruptible = False
            raise KeyboardInterrupt


def init_ros(args: list[str] | None) -> None:
    """``rclpy.init`` without rclpy's SIGINT/SIGTERM handlers, so a StopRequest made before stays
    the only one (Humble and later take ``signal_handler_options``)."""
    try:
        from rclpy.signals import SignalHandlerOptions
    except ImportError:  # older rclpy: its handlers go in, and the StopRequest's go back over them
        handlers = {number: signal.getsignal(number) for number in SIGNALS}
        rclpy.init(args=args)
        for number, handler in handlers.items():
            signal.signal(number, handler)
        return
    rclpy.init(args=args, signal_handler_options=SignalHandlerOptions.NO)


def spin_until_stopped(executor: Executor, stop: StopRequest,
                       finished: Callable[[], bool] = lambda: False) -> None:
    """Spin until a stop is requested, the context ends or ``finished()`` (a lifecycle node that
    reached finalized). spin_once in a loop, not spin(): the EventsExecutor's spin() misses the
    SIGINT shutdown; a signal only sets ``stop`` (it raises nothing here), seen when spin_once
    returns."""
    try:
        while rclpy.ok() and not stop.requested and not finished():
            executor.spin_once(timeout_sec=0.5)
    except ExternalShutdownException:
        pass
