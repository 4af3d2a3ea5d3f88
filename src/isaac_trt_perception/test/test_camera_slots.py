"""The cameras' slots and their one worker (latest_frame.LatestFrames) with the real counters and
safety state: cameras in step run as one batch, a silent one is not waited for, batches stop at
max_batch, the rate cap is per camera."""

from __future__ import annotations

import threading
import time

from perception_core.detector import STAGES
from perception_core.metrics import Monitor
from perception_core.safety import RateLimiter, Watchdog


def cameras_worker(count: int, *, window_s: float, max_batch: int = 8, rate_hz: float = 0.0):
    from isaac_trt_perception.latest_frame import CameraSlot, LatestFrames
    monitor = Monitor(STAGES)
    batches: list[list[str]] = []
    arrived = threading.Condition()

    def process(items: list) -> None:
        with arrived:
            batches.append([msg for _, msg, _, _ in items])
            arrived.notify_all()

    slots = [CameraSlot(Watchdog(5.0, time.monotonic()), RateLimiter(rate_hz)) for _ in range(count)]
    latest = LatestFrames(monitor, slots, process, window_s=window_s, max_batch=max_batch)
    return latest, batches, arrived, monitor


def wait_batches(batches: list, arrived: threading.Condition, count: int) -> None:
    with arrived:
        assert arrived.wait_for(lambda: len(batches) >= count, 5), batches


def test_cameras_in_step_run_as_one_batch_and_a_silent_one_is_not_waited_for():
    latest, batches, arrived, _ = cameras_worker(3, window_s=0.05)
    latest.start()
    try:
        for frame in range(4):  # three cameras in step at 10 Hz: each set is one batch once learnt
            for camera in 'abc':
                latest.intake('abc'.index(camera))(f'{camera}{frame}')
            wait_batches(batches, arrived, len(batches) + 1)
            time.sleep(0.1)
        assert sorted(batches[-1]) == ['a3', 'b3', 'c3'], batches
        time.sleep(0.3)  # c goes silent: a and b alone, not held for c's window
        while batches and len(batches[-1]) < 3:
            batches.pop()
        start = time.monotonic()
        latest.intake(0)('a-late')
        latest.intake(1)('b-late')
        wait_batches(batches, arrived, len(batches) + 1)
        assert time.monotonic() - start < 0.045  # less than the window: c (late) was not waited for
    finally:
        latest.stop()
    assert sorted(x for b in batches[-2:] for x in b if 'late' in x) == ['a-late', 'b-late'], batches


def test_batches_hold_at_most_max_batch_and_the_rate_cap_is_per_camera():
    latest, batches, arrived, monitor = cameras_worker(3, window_s=0.0, max_batch=2, rate_hz=1.0)
    for index, camera in enumerate('abc'):  # taken in before the worker starts: all three waiting
        latest.intake(index)(camera)
    for _ in range(3):  # burst allowance of the token bucket, then camera a is capped on its own
        latest.intake(0)('a-again')
    capped = monitor.drops['rate_cap']
    latest.start()
    try:
        wait_batches(batches, arrived, 2)
    finally:
        latest.stop()
    assert [len(b) for b in batches[:2]] == [2, 1]
    assert capped >= 1 and monitor.drops['newer_frame'] >= 1
