from __future__ import annotations

import numpy as np

from perception_core.safety import MIN_RATE_HZ, Fallback, RateLimiter, Watchdog


def test_rate_limiter_passes_a_jittery_camera_at_the_cap():
    rng = np.random.default_rng(0)
    limiter = RateLimiter(30.0)
    times = np.arange(300) / 30.0 + rng.uniform(-0.004, 0.004, 300)
    assert sum(limiter.admit(t) for t in times) >= 298


def test_rate_limiter_drops_a_burst_and_halves_a_fast_camera():
    limiter = RateLimiter(30.0)
    burst = sum(limiter.admit(t) for t in np.arange(300) / 300.0)   # 1 s at 10x the rate
    assert 29 <= burst <= 32
    limiter = RateLimiter(15.0)
    assert 148 <= sum(limiter.admit(t) for t in np.arange(300) / 30.0) <= 152
    assert all(RateLimiter(0).admit(t) for t in np.arange(100) / 1000.0)


def test_fallback_degrades_after_a_run_and_recovers():
    fallback = Fallback(deadline_s=0.1, behavior='degraded', limit=3, base_rate_hz=30.0)
    assert fallback.rate_hz == 30.0
    events = [fallback.record(0.2) for _ in range(3)]
    assert events[:2] == [None, None] and events[2].kind == 'degraded'
    assert fallback.degraded and fallback.rate_hz == 15.0
    for _ in range(3):
        fallback.record(0.2)
    assert fallback.level == 2 and fallback.rate_hz == 7.5
    kinds = [e.kind for e in (fallback.record(0.01) for _ in range(6)) if e]
    assert kinds == ['recovering', 'recovered']
    assert not fallback.degraded and fallback.rate_hz == 30.0 and fallback.overruns == 6


def test_fallback_rate_floor_report_mode_and_memory():
    fallback = Fallback(deadline_s=0.1, behavior='degraded', limit=1, base_rate_hz=30.0)
    for _ in range(50):
        fallback.record(1.0)
    # halving stops at the last rate not below the minimum: 30 Hz / 2**5, never one halving more
    assert fallback.rate_hz == 30.0 / 2 ** 5 and fallback.rate_hz / 2 < MIN_RATE_HZ
    # where a halving lands on the minimum, or the first one would pass it, the rate is the minimum
    for base_rate_hz in (16.0, 0.8):
        floor = Fallback(deadline_s=0.1, behavior='degraded', limit=1, base_rate_hz=base_rate_hz)
        for _ in range(50):
            floor.record(1.0)
        assert floor.degraded and floor.rate_hz == MIN_RATE_HZ, base_rate_hz
    report = Fallback(deadline_s=0.1, behavior='report', limit=2, base_rate_hz=30.0)
    kinds = [e and e.kind for e in (report.record(0.5) for _ in range(4))]
    assert kinds == [None, 'overrun', None, 'overrun']
    assert not report.degraded and report.rate_hz == 30.0
    report.memory_over = True
    assert report.degraded and report.rate_hz == 15.0
    unlimited = Fallback(deadline_s=0.1, behavior='degraded', limit=1, base_rate_hz=0.0)
    assert unlimited.rate_hz == 0.0
    unlimited.record(0.5)
    assert unlimited.rate_hz == 5.0


def test_watchdog_levels():
    dog = Watchdog(5.0, now=100.0)
    assert dog.level(104.0) == Watchdog.OK and dog.level(106.0) == Watchdog.WARN
    assert dog.level(116.0) == Watchdog.ERROR
    dog.feed(116.0)
    assert dog.level(117.0) == Watchdog.OK and dog.received
    assert Watchdog(0.0, now=0.0).level(1e6) == Watchdog.OK
