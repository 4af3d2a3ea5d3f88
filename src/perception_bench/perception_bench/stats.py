"""One figure from repeated runs: the median of the runs' own medians, and their spread.

A single run's p50 hides how much the machine moved between runs (a shared 2-core machine moves a
lot); every figure in the report is therefore run several times, and both the middle run and the
range are kept. Per-call percentiles come from ``perception_core.metrics.latency_stats``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from perception_core.metrics import latency_stats


def spread(values: Sequence[float]) -> dict[str, Any]:
    """Median and [min, max] of one quantity measured once per run."""
    if not values:
        raise ValueError('no runs to summarise')
    array = np.asarray(values, dtype=np.float64)
    return {
        'median': round(float(np.median(array)), 4),
        'range': [round(float(array.min()), 4), round(float(array.max()), 4)],
        'runs': len(values),
    }


def repeated(
    measure: Callable[[], dict[str, Sequence[float]]], repeats: int, batch_size: int = 1
) -> dict[str, dict[str, Any]]:
    """Run ``measure`` ``repeats`` times; it returns per-call seconds of one or more series. Per
    series: p50 and p99 (ms) and throughput (items/s), each as median and range over the runs."""
    runs: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        for name, seconds in measure().items():
            stats = latency_stats(seconds)
            stats['fps'] = batch_size * len(seconds) / sum(seconds)
            stats['calls'] = len(seconds)
            runs.setdefault(name, []).append(stats)
    return {
        name: {
            'p50_ms': spread([r['p50'] for r in series]),
            'p99_ms': spread([r['p99'] for r in series]),
            'fps': spread([r['fps'] for r in series]),
            'calls_per_run': int(series[0]['calls']),
            'batch_size': batch_size,
        }
        for name, series in runs.items()
    }


def median_of(figure: dict[str, Any] | None, key: str = 'p50_ms') -> float | None:
    """The median of ``figure[key]``, or None where the figure is missing or failed."""
    if not figure or key not in figure:
        return None
    return figure[key]['median']
