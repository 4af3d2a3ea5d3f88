"""The hand-off between the executor thread and the detector's worker thread: one slot holding
the newest admitted frame.

The executor thread only takes frames in (counts, watchdog, rate cap) and puts each in the slot;
a frame arriving while the worker is busy replaces the waiting one (counted as dropped), so the
node never queues and always processes the newest frame. ``LatestFrames`` is the same for several
cameras sharing one worker and one model: a slot per camera, batches across them.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from perception_core.metrics import Monitor
from perception_core.safety import RateLimiter, Watchdog

Message = TypeVar('Message')  # serialized bytes (raw subscription) or a deserialized Image
Work = TypeVar('Work')  # what the worker takes at once: one frame, or one batch of frames


def name_this_thread(name: str) -> None:
    """The OS name of the calling thread (Linux prctl PR_SET_NAME, 15 bytes), so top, ps and the
    benchmarks' per-thread CPU tell the worker from the executor; elsewhere nothing happens."""
    try:
        ctypes.CDLL(None).prctl(15, name.encode()[:15], 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: no prctl
        pass


class _DetectorThread(Generic[Work]):
    """The worker thread both hand-offs share: it takes work under the lock (``_take``, which
    waits on ``_wake``; empty = nothing) and runs it outside (``_run``), until ``stop``."""

    def __init__(self) -> None:
        self._wake = threading.Condition()
        self._stopping = threading.Event()
        self._worker = threading.Thread(target=self._work, name='detector', daemon=True)

    def start(self) -> None:
        self._worker.start()

    def _take(self) -> Work | None:
        raise NotImplementedError

    def _run(self, work: Work) -> None:
        raise NotImplementedError

    def _work(self) -> None:
        name_this_thread('detector')
        while not self._stopping.is_set():
            with self._wake:
                work = self._take()
            if work:
                self._run(work)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the worker once it has finished the work in hand."""
        self._stopping.set()
        with self._wake:
            self._wake.notify()
        if self._worker.is_alive():
            self._worker.join(timeout=timeout_s)


class LatestFrame(_DetectorThread[tuple[Message, float, float]], Generic[Message]):
    def __init__(self, monitor: Monitor, watchdog: Watchdog, rate: RateLimiter,
                 process: Callable[[Message, float, float], None]) -> None:
        """``process(msg, received, handed_off)`` runs on the worker thread for each frame taken,
        with the receipt time (time.monotonic) and the hand-off time (time.perf_counter)."""
        super().__init__()
        self._monitor = monitor
        # bound once: the intake runs per frame with cold caches, each lookup counts
        self._tick = monitor.received.tick
        self._feed = watchdog.feed
        self._admit = rate.admit
        self._process = process
        self._pending: tuple[Message, float, float] | None = None

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

    def _take(self) -> tuple[Message, float, float] | None:
        while self._pending is None and not self._stopping.is_set():
            self._wake.wait(0.5)
        item, self._pending = self._pending, None
        return item

    def _run(self, work: tuple[Message, float, float]) -> None:
        self._process(*work)


class CameraSlot(Generic[Message]):
    """One camera's intake (its own watchdog and rate cap) and its newest admitted frame."""

    def __init__(self, watchdog: Watchdog, rate: RateLimiter) -> None:
        self.feed = watchdog.feed
        self.admit = rate.admit
        self.pending: tuple[Message, float, float] | None = None
        self.last: float | None = None       # its latest arrival (time.monotonic)
        self.interval: float | None = None   # its smoothed time between arrivals

    def arrived(self, now: float) -> None:
        if self.last is not None:
            gap = now - self.last
            self.interval = gap if self.interval is None else 0.8 * self.interval + 0.2 * gap
        self.last = now

    def expected(self, now: float, deadline: float, window_s: float) -> bool:
        """Whether its next frame is due before ``deadline``: worth waiting for. A camera late by
        more than the window (stopped, or slower than it was) is not waited for."""
        if self.last is None or self.interval is None:
            return False
        due = self.last + self.interval
        return now - window_s <= due <= deadline


class LatestFrames(_DetectorThread[list[tuple[int, Message, float, float]]], Generic[Message]):
    """``LatestFrame`` for several cameras and one worker: a slot per camera, and a worker that
    takes the ready frames of all cameras as one batch.

    A frame waits at most ``window_s`` for the other cameras' frames due within that time, so
    cameras triggered together run as one inference while a camera out of step, late or silent
    costs the others nothing beyond the window (and, once late by a window, nothing at all).
    """

    def __init__(self, monitor: Monitor, slots: list[CameraSlot[Message]],
                 process: Callable[[list[tuple[int, Message, float, float]]], None], *,
                 window_s: float, max_batch: int) -> None:
        """``process(items)`` runs on the worker thread with (camera index, msg, received,
        handed_off) for each frame of a batch, oldest first."""
        super().__init__()
        self._monitor = monitor
        self._tick = monitor.received.tick
        self._slots = slots
        self._process = process
        self.window_s = window_s
        self.max_batch = max_batch

    def intake(self, index: int) -> Callable[[Message], None]:
        """Camera ``index``'s subscription callback (executor thread)."""
        slot = self._slots[index]

        def take_in(msg: Message) -> None:
            now = time.monotonic()
            self._tick(now)
            slot.feed(now)
            if not slot.admit(now):
                self._monitor.drops['rate_cap'] += 1
                return
            with self._wake:
                slot.arrived(now)
                if slot.pending is not None:
                    self._monitor.drops['newer_frame'] += 1
                slot.pending = (msg, now, time.perf_counter())
                self._wake.notify()
        return take_in

    def _take(self) -> list[tuple[int, Message, float, float]]:
        """Wait (holding the lock) for a frame, then for the others due within the window; take them."""
        slots = self._slots
        while not any(s.pending for s in slots) and not self._stopping.is_set():
            self._wake.wait(0.5)
        if self._stopping.is_set():
            return []
        first = min(s.pending[1] for s in slots if s.pending is not None)
        deadline = first + self.window_s
        while True:
            now = time.monotonic()
            ready = sum(s.pending is not None for s in slots)
            if ready >= self.max_batch or now >= deadline or not any(
                    s.pending is None and s.expected(now, deadline, self.window_s) for s in slots):
                break
            self._wake.wait(deadline - now)
        taken = sorted(((i, *s.pending) for i, s in enumerate(slots) if s.pending is not None),
                       key=lambda item: item[2])[:self.max_batch]
        for item in taken:
            slots[item[0]].pending = None
        return taken

    def _run(self, work: list[tuple[int, Message, float, float]]) -> None:
        self._process(work)
