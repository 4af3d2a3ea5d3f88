"""Latency percentiles, per-stage profile, rates, counters and process resources, as the JSON
documents the node writes (``runtime.profile_output_path``, ``runtime.monitoring_output_path``)
and the values ``/diagnostics`` carries. Pure Python + numpy + psutil; clocks are passed in.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from typing import Any

import numpy as np
import psutil

WINDOW = 2000          # samples kept per latency series: ~1 min at 30 Hz
RATE_WINDOW_S = 5.0    # rates are averaged over the last few seconds


def latency_stats(seconds: Iterable[float]) -> dict[str, float]:
    """Milliseconds, to 4 decimals: p50, p90, p99, mean, min and max of durations in seconds.

    The one percentile summary of the workspace: the node's monitoring and profile files
    (:meth:`Latency.summary_ms`) and every benchmark report their figures through it.
    """
    ms = np.asarray(list(seconds), dtype=np.float64) * 1e3
    if ms.size == 0:
        raise ValueError('no latencies to summarise')
    p50, p90, p99 = np.percentile(ms, [50, 90, 99])
    return {'p50': round(float(p50), 4), 'p90': round(float(p90), 4), 'p99': round(float(p99), 4),
            'mean': round(float(ms.mean()), 4), 'min': round(float(ms.min()), 4),
            'max': round(float(ms.max()), 4)}


def summary_ms(seconds: Iterable[float], count: int | None = None) -> dict[str, float | int | None]:
    """The node's form of :func:`latency_stats`: ``count`` (default: the samples given), then
    ``mean_ms``, ``p50_ms``, ``p90_ms``, ``p99_ms``, ``max_ms``; only the count when there are none."""
    samples = list(seconds)
    count = len(samples) if count is None else count
    if not samples:
        return {'count': count}
    stats = latency_stats(samples)
    return {'count': count, 'mean_ms': stats['mean'], 'p50_ms': stats['p50'], 'p90_ms': stats['p90'],
            'p99_ms': stats['p99'], 'max_ms': stats['max']}


class Latency:
    """The last :data:`WINDOW` samples of one duration, in seconds."""

    def __init__(self, window: int = WINDOW) -> None:
        self._samples: deque[float] = deque(maxlen=window)
        self.count = 0
        self.total = 0.0

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self.count += 1
        self.total += seconds

    def summary_ms(self) -> dict[str, float | int | None]:
        """The window's :func:`summary_ms`, with the count of every sample ever added."""
        return summary_ms(self._samples, self.count)


class Rate:
    """Events per second over the last :data:`RATE_WINDOW_S` seconds."""

    def __init__(self, window_s: float = RATE_WINDOW_S) -> None:
        self.window_s = window_s
        self._times: deque[float] = deque()
        self.count = 0

    def tick(self, now: float) -> None:
        self._times.append(now)
        self.count += 1

    def hz(self, now: float) -> float:
        while self._times and self._times[0] < now - self.window_s:
            self._times.popleft()
        return len(self._times) / self.window_s


class Profile:
    """Per-stage durations of processed frames."""

    def __init__(self, stages: Iterable[str]) -> None:
        self.stages = {name: Latency() for name in stages}

    def add(self, timings: dict[str, float]) -> None:
        for name, seconds in timings.items():
            self.stages[name].add(seconds)

    def document(self) -> dict[str, Any]:
        return {name: latency.summary_ms() for name, latency in self.stages.items()}


class ProcessResources:
    """This process's CPU use (percent of one core) and resident memory."""

    def __init__(self) -> None:
        self._process = psutil.Process()
        self._process.cpu_percent(None)  # the first call only starts the measurement interval

    def rss_bytes(self) -> int:
        return int(self._process.memory_info().rss)

    def document(self) -> dict[str, Any]:
        return {'cpu_percent': self._process.cpu_percent(None), 'rss_bytes': self.rss_bytes(),
                'threads': self._process.num_threads()}


class Monitor:
    """Everything the node counts; ``document`` is the monitoring JSON and the diagnostics source."""

    def __init__(self, stages: Iterable[str]) -> None:
        self.received = Rate()
        self.published = Rate()
        self.drops: Counter[str] = Counter()    # frames not processed, by reason
        self.errors: Counter[str] = Counter()   # frames that failed, by reason
        self.batches: Counter[int] = Counter()  # several cameras: inferences by frames in them
        self.latency = Latency()                # receipt -> detections published
        self.age = Latency()                    # image stamp -> detections published
        self.profile = Profile(stages)
        self.resources = ProcessResources()

    def document(self, now: float) -> dict[str, Any]:
        return {
            'frames_received': self.received.count, 'frames_processed': self.published.count,
            'input_hz': round(self.received.hz(now), 3), 'output_hz': round(self.published.hz(now), 3),
            'dropped': dict(self.drops), 'dropped_total': sum(self.drops.values()),
            'errors': dict(self.errors), 'errors_total': sum(self.errors.values()),
            'latency': self.latency.summary_ms(), 'stamp_age': self.age.summary_ms(),
            'process': self.resources.document(),
            **({'batches': {str(k): v for k, v in sorted(self.batches.items())}} if self.batches else {}),
        }
