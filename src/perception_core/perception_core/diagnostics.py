"""What the node says on ``/diagnostics``: a level, a one-line message and key/value pairs, from
the monitoring document and the safety state. Pure; the node wraps it in DiagnosticStatus."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

OK, WARN, ERROR = 0, 1, 2


@dataclass(frozen=True)
class Health:
    level: int
    message: str
    values: dict[str, str]


@dataclass(frozen=True)
class State:
    """The safety and backend facts the monitoring document lacks."""
    backend: str
    backend_failures: tuple[tuple[str, str], ...]
    watchdog_level: int
    input_age_s: float
    input_topic: str
    degraded: bool
    processing_rate_hz: float
    overruns: int
    memory_over: bool
    rss_bytes: int
    memory_limit_bytes: int
    gpu_memory_bytes: int | None
    power_mode: str | None


def health(document: dict[str, Any], state: State, errors_since_last: int) -> Health:
    problems: list[tuple[int, str]] = []
    if state.watchdog_level:
        problems.append((ERROR if state.watchdog_level >= 2 else WARN,
                         f'no image on {state.input_topic} for {state.input_age_s:.1f} s'))
    if state.memory_over:
        problems.append((ERROR, f'resident memory {state.rss_bytes / 1e6:.0f} MB over resources.memory_limit '
                                f'{state.memory_limit_bytes / 1e6:.0f} MB'))
    if state.degraded:
        problems.append((WARN, f'degraded: processing at {state.processing_rate_hz:g} Hz'))
    if state.backend_failures:
        problems.append((WARN, f'fell back to {state.backend.split(" ")[0]} after '
                               + ', '.join(name for name, _ in state.backend_failures) + ' failed'))
    if errors_since_last:
        problems.append((WARN, f'{errors_since_last} frames failed since the last report'))
    level = max((lvl for lvl, _ in problems), default=OK)
    message = '; '.join(text for _, text in problems) or 'ok'
    latency = document['latency']
    values = {
        'backend': state.backend,
        'input_hz': f'{document["input_hz"]:.2f}', 'output_hz': f'{document["output_hz"]:.2f}',
        'frames_received': str(document['frames_received']),
        'frames_processed': str(document['frames_processed']),
        'dropped': str(document['dropped_total']),
        **{f'dropped.{k}': str(v) for k, v in sorted(document['dropped'].items())},
        'errors': str(document['errors_total']),
        **{f'errors.{k}': str(v) for k, v in sorted(document['errors'].items())},
        'latency_p50_ms': str(latency.get('p50_ms', '')), 'latency_p99_ms': str(latency.get('p99_ms', '')),
        'degraded': str(state.degraded).lower(), 'processing_rate_hz': f'{state.processing_rate_hz:g}',
        'overruns': str(state.overruns), 'input_age_s': f'{state.input_age_s:.2f}',
        'rss_mb': f'{state.rss_bytes / 1e6:.1f}', 'cpu_percent': str(document['process']['cpu_percent']),
    }
    if state.gpu_memory_bytes is not None:
        values['gpu_memory_mb'] = f'{state.gpu_memory_bytes / 1e6:.1f}'
    if state.power_mode is not None:
        values['power_mode'] = state.power_mode
    for name, reason in state.backend_failures:
        values[f'backend_failure.{name}'] = reason
    return Health(level, message, values)
