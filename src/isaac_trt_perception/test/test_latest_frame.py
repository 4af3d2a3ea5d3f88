"""The latest-frame slot with the real counters and safety state: the newest frame wins, the
rate cap drops, nothing queues."""

from __future__ import annotations

import threading
import time

from isaac_trt_perception.latest_frame import LatestFrame
from perception_core.detector import STAGES
from perception_core.metrics import Monitor
from perception_core.safety import RateLimiter, Watchdog


def test_a_frame_arriving_while_the_worker_is_busy_replaces_the_waiting_one():
    monitor, watchdog = Monitor(STAGES), Watchdog(5.0, time.monotonic())
    busy, release, done = threading.Event(), threading.Event(), threading.Event()
    seen: list[str] = []

    def process(msg: str, received: float, handed_off: float) -> None:
        seen.append(msg)
        assert received <= time.monotonic() and handed_off <= time.perf_counter()
        if msg == 'first':
            busy.set()
            release.wait(5)
        if msg == 'fourth':
            done.set()

    latest = LatestFrame(monitor, watchdog, RateLimiter(0.0), process)
    latest.start()
    try:
        latest.take_in('first')
        assert busy.wait(5)
        for msg in ('second', 'third', 'fourth'):  # the worker is busy: each replaces the one before
            latest.take_in(msg)
        release.set()
        assert done.wait(5)
    finally:
        latest.stop()
    assert seen == ['first', 'fourth']
    assert monitor.drops['newer_frame'] == 2 and monitor.received.count == 4
    assert watchdog.received


def test_the_rate_cap_drops_before_the_slot():
    monitor = Monitor(STAGES)
    seen: list[int] = []
    latest = LatestFrame(monitor, Watchdog(0.0, 0.0), RateLimiter(1.0), lambda m, r, h: seen.append(m))
    for i in range(5):  # not started: admitted frames wait in the slot, newest wins
        latest.take_in(i)
    assert monitor.drops['rate_cap'] == 3  # a bucket of 2 frames, then 1 Hz
    assert monitor.drops['newer_frame'] == 1
    latest.start()
    latest.stop()
    assert seen in ([], [1])  # stopping may come before the worker takes the waiting frame
