"""The hand-off between the executor thread and the detector's worker thread: one slot holding
the newest admitted frame.

The executor thread only takes frames in (counts, watchdog, rate cap) and puts each in the slot;
a frame arriving while the worker is busy replaces the waiting one (counted as dropped), so the
node never queues and always processes the newest frame.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from perception_core.metrics import Monitor
from perception_core.safety import RateLimiter, Watchdog

Message = TypeVar('Message')  # serialized bytes (raw subscription) or a deserialized Image


class LatestFrame(Generic[Message]):
    def __init__(self, monitor: Monitor, watchdog: Watchdog, rate: RateLimiter,
                 process: Callable[[Message, float, float], None]) -> None:
        """``process(msg, received, handed_off)`` runs on the worker thread for each frame taken,
        with the receipt time (time.monotonic) and the hand-off time (time.perf_counter)."""
        self._monitor = monitor
        # bound once: the intake runs per frame with cold caches, each lookup counts
        self._tick = monitor.received.tick
        self._feed = watchdog.feed
        self._admit = rate.admit
        self._process = process
        self._pending: tuple[Message, float, float] | None = None
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name='detector', daemon=True)

    def start(self) -> None:
        self._worker.start()

    def take_in(self, msg: Message) -> None:
        """The subscription callback (executor thread)."""
        now = time.monotonic()
        self._tick(now)
        self._feed(now)
        if not self._admit(now):
            self._monitor.drops['rate_cap'] += 1
            return
        with self._wake:
            if self._pending is not None:
                self._monitor.drops['newer_frame'] += 1
            self._pending = (msg, now, time.perf_counter())
            self._wake.notify()

    def _work(self) -> None:
        while not self._stopping.is_set():
            with self._wake:
                while self._pending is None and not self._stopping.is_set():
                    self._wake.wait(0.5)
                item, self._pending = self._pending, None
            if item is not None:
                self._process(*item)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker once it has finished the frame in hand."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        if self._worker.is_alive():
            self._worker.join(timeout=timeout_s)
