"""The deployment's safety and rate keys as pure state machines; the caller passes the clock.

- :class:`RateLimiter`: ``runtime.inference_frequency``, by dropping frames, never queueing.
- :class:`Fallback`: ``safety.max_inference_time`` + ``safety.fallback_behavior``: after
  ``safety.overrun_limit`` consecutive overruns, "degraded" halves the processing rate (again
  after each further run, down to :data:`MIN_RATE_HZ`); as many consecutive on-time frames double
  it back until full rate, which is "recovered". Halving the rate frees the GPU/CPU that the
  overruns are usually short of (thermal throttling, a co-located process), and because the
  node always takes the newest frame, a lower rate means older frames dropped, never stale ones
  processed. Exceeding ``resources.memory_limit`` also holds the node at level 1 or lower rate.
  "report" only counts and warns.
- :class:`Watchdog`: ``safety.watchdog_timeout``.
"""

from __future__ import annotations

from dataclasses import dataclass

MIN_RATE_HZ = 0.5
# A bucket of 2 frames admits a camera running exactly at the cap despite jitter, including one
# frame delivered late and the next on time (a smaller bucket dropped such frames in the demo),
# while the long-run rate still never exceeds the cap.
BUCKET_FRAMES = 2.0


class RateLimiter:
    """Token bucket: ``admit(now)`` says whether a frame arriving now may be processed."""

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz
        self._tokens = BUCKET_FRAMES
        self._last: float | None = None

    def set_rate(self, rate_hz: float) -> None:
        self.rate_hz = rate_hz

    def admit(self, now: float) -> bool:
        if self.rate_hz <= 0:
            return True
        if self._last is not None:
            self._tokens = min(BUCKET_FRAMES, self._tokens + (now - self._last) * self.rate_hz)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return True
        return False


@dataclass(frozen=True)
class FallbackEvent:
    kind: str        # 'degraded' (level went up), 'recovering' (down, still degraded), 'recovered', 'overrun'
    level: int
    rate_hz: float


class Fallback:
    """Overrun counting and the degraded-mode level; ``rate_hz`` is the current processing cap."""

    def __init__(self, deadline_s: float, behavior: str, limit: int, base_rate_hz: float) -> None:
        self.deadline_s = deadline_s
        self.behavior = behavior
        self.limit = limit
        # With no rate cap configured, degrading starts from the rate the deadline allows.
        self.base_rate_hz = base_rate_hz if base_rate_hz > 0 else 1.0 / max(deadline_s, 1e-3)
        self.unlimited = base_rate_hz <= 0
        self.level = 0
        self.overruns = 0
        self.memory_over = False
        self._late_run = 0
        self._on_time_run = 0

    @property
    def degraded(self) -> bool:
        return self.effective_level > 0

    @property
    def effective_level(self) -> int:
        return max(self.level, 1 if self.memory_over else 0)

    @property
    def rate_hz(self) -> float:
        level = self.effective_level
        if level == 0:
            return 0.0 if self.unlimited else self.base_rate_hz
        return max(MIN_RATE_HZ, self.base_rate_hz / 2 ** level)

    def _max_level(self) -> int:
        level = 0
        while self.base_rate_hz / 2 ** (level + 1) >= MIN_RATE_HZ:
            level += 1
        return max(level, 1)

    def record(self, inference_s: float) -> FallbackEvent | None:
        """Feed one frame's inference time; an event when the state changes or a run completes."""
        if self.deadline_s <= 0:
            return None
        if inference_s > self.deadline_s:
            self.overruns += 1
            self._on_time_run = 0
            self._late_run += 1
            if self._late_run < self.limit:
                return None
            self._late_run = 0
            if self.behavior == 'degraded' and self.level < self._max_level():
                self.level += 1
                return FallbackEvent('degraded', self.level, self.rate_hz)
            return FallbackEvent('overrun', self.level, self.rate_hz)
        self._late_run = 0
        if self.level == 0:
            return None
        self._on_time_run += 1
        if self._on_time_run < self.limit:
            return None
        self._on_time_run = 0
        self.level -= 1
        return FallbackEvent('recovered' if self.level == 0 else 'recovering', self.level, self.rate_hz)


class Watchdog:
    """Input staleness: OK, then WARN after the timeout, ERROR after three timeouts."""

    OK, WARN, ERROR = 0, 1, 2

    def __init__(self, timeout_s: float, now: float) -> None:
        self.timeout_s = timeout_s
        self.last = now
        self.received = False

    def feed(self, now: float) -> None:
        self.last = now
        self.received = True

    def age(self, now: float) -> float:
        return now - self.last

    def level(self, now: float) -> int:
        if self.timeout_s <= 0:
            return self.OK
        age = self.age(now)
        if age > 3 * self.timeout_s:
            return self.ERROR
        return self.WARN if age > self.timeout_s else self.OK
