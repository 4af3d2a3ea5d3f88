"""The node's health: input watchdog, inference deadline and fallback, memory guard, and what
they add up to on ``/diagnostics`` (``perception_core.diagnostics`` decides the level and words)."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from perception_core import diagnostics, resources
from perception_core.backends.gpu import used_gpu_memory
from perception_core.backends.select import Selection
from perception_core.convert import Frame
from perception_core.detector import Detector
from perception_core.safety import Fallback, FallbackEvent, RateLimiter, Watchdog

from .node_log import NodeLog
from .startup import Platform


@dataclass
class CameraHealth:
    """One camera of several (ros_integration.cameras): its own watchdog and rate cap."""
    name: str
    topic: str                  # its subscription's resolved name
    watchdog: Watchdog
    rate: RateLimiter
    level: int = Watchdog.OK    # the watchdog level last logged


class Health:
    """The safety state machines with the node's logging around them; ``rate.admit`` is the
    frame intake's rate cap, which the fallback and the memory guard lower."""

    def __init__(self, values: Mapping[str, Any], platform: Platform, detector: Detector,
                 selection: Selection, *, input_topic: str, log: NodeLog, now: float) -> None:
        """``input_topic`` is the subscription's resolved name (namespace and remapping applied),
        the one the camera must publish on, so the watchdog's words name it."""
        self.values = values
        self.input_topic = input_topic
        self.log = log
        self.detector = detector
        self.memory_limit = platform.memory_limit
        self.power_mode = platform.power_mode
        self.backend_failures = tuple(selection.failures)
        self.watchdog = Watchdog(values['safety.watchdog_timeout'], now)
        self.fallback = Fallback(values['safety.max_inference_time'], values['safety.fallback_behavior'],
                                 values['safety.overrun_limit'], values['runtime.inference_frequency'])
        self.rate = RateLimiter(self.fallback.rate_hz)
        self._errors_reported = 0
        self._watchdog_level = Watchdog.OK
        self._last_size: tuple[int, int, str] | None = None  # the last processed frame's
        self.cameras: list[CameraHealth] = []

    def add_cameras(self, cameras: Sequence[tuple[str, str]], now: float) -> list[CameraHealth]:
        """A watchdog and a rate cap per (name, resolved input topic): each camera is judged and
        capped on its own, so a silent one is named while the others are served."""
        self.cameras = [CameraHealth(name, topic, Watchdog(self.values['safety.watchdog_timeout'], now),
                                     RateLimiter(self.fallback.rate_hz)) for name, topic in cameras]
        return self.cameras

    def _set_rate(self, rate_hz: float) -> None:
        for rate in [self.rate, *(c.rate for c in self.cameras)]:
            rate.set_rate(rate_hz)

    # --- per frame (worker thread) ----------------------------------------------------------------
    def on_fallback(self, event: FallbackEvent) -> None:
        self._set_rate(self.fallback.rate_hz)
        deadline = self.values['safety.max_inference_time']
        if event.kind == 'degraded':
            self.log.warn(f'inference over safety.max_inference_time {deadline} s for '
                          f'{self.fallback.limit} frames: degraded, processing at {event.rate_hz:g} Hz')
        elif event.kind == 'overrun':
            self.log.warn(f'inference over safety.max_inference_time {deadline} s for '
                          f'{self.fallback.limit} frames ({self.fallback.overruns} overruns so far)')
        else:
            rate = f'{event.rate_hz:g} Hz' if event.rate_hz else 'every frame'
            self.log.info(f'inference on time again: {event.kind}, processing at {rate}')

    def note_new_size(self, frame: Frame, infer_s: float) -> None:
        """A slow first frame at a new image size says how to move that cost to the start: torch_cuda
        captures a CUDA graph per image size, and the newest-frame policy drops every frame that
        arrives meanwhile."""
        size = (frame.width, frame.height, frame.encoding)
        if size == self._last_size:
            return
        self._last_size = size
        if infer_s > self.values['safety.max_inference_time']:
            image = f'{frame.width}x{frame.height} {frame.encoding}'
            self.log.throttled('new_size', f'the first {image} frame took {infer_s * 1e3:.0f} ms in '
                               f'{self.detector.backend.name}, over safety.max_inference_time: if it is the '
                               f'camera\'s size, list "{image}" in runtime.warmup_images to set it up at '
                               'start instead', time.monotonic(), level='warn')

    # --- periodic (executor thread) ---------------------------------------------------------------
    def watchdog_changed(self, now: float) -> bool:
        """Log a change of the input watchdog's level (each camera's, with several); True when one
        changed."""
        if self.cameras:
            changed = [self._log_watchdog(c.watchdog, f'camera {c.name} ({c.topic})', c.level, now)
                       for c in self.cameras]
            for camera, level in zip(self.cameras, changed, strict=True):
                camera.level = camera.level if level is None else level
            return any(level is not None for level in changed)
        level = self._log_watchdog(self.watchdog, self.input_topic, self._watchdog_level, now)
        if level is None:
            return False
        self._watchdog_level = level
        return True

    def _log_watchdog(self, watchdog: Watchdog, topic: str, logged: int, now: float) -> int | None:
        """The watchdog's new level, logged, or None when it is still ``logged``."""
        level = watchdog.level(now)
        if level == logged:
            return None
        age = watchdog.age(now)
        if level == Watchdog.OK:
            self.log.info(f'{topic}: images arriving again')
        elif level == Watchdog.WARN:
            self.log.warn(f'{topic}: no image for {age:.1f} s (safety.watchdog_timeout '
                          f'{self.watchdog.timeout_s} s)')
        else:
            self.log.error(f'{topic}: no image for {age:.1f} s; is the camera running?')
        return level

    def camera_levels(self, now: float) -> list[tuple[CameraHealth, int, float]]:
        """Each camera with its watchdog level and input age now."""
        return [(c, c.watchdog.level(now), c.watchdog.age(now)) for c in self.cameras]

    def _input(self, now: float) -> tuple[int, float, str]:
        """The watchdog level, input age and topic /diagnostics reports: with several cameras, the
        worst camera's level and age and the names of every camera at that level."""
        if not self.cameras:
            return self.watchdog.level(now), self.watchdog.age(now), self.input_topic
        levels = self.camera_levels(now)
        worst = max(level for _, level, _ in levels)
        named = [(c, age) for c, level, age in levels if level == worst]
        return (worst, max(age for _, age in named),
                ', '.join(f'camera {c.name} ({c.topic})' for c, _ in named))

    def state(self, now: float) -> diagnostics.State:
        rss = resources.rss_bytes()
        gpu = self.detector.backend.gpu_memory_bytes()
        gpu = gpu if gpu is not None else used_gpu_memory()
        level, age, topic = self._input(now)
        return diagnostics.State(
            backend=f'{self.detector.backend.name}: {self.detector.backend.description}',
            backend_failures=self.backend_failures, watchdog_level=level,
            input_age_s=age, input_topic=topic,
            degraded=self.fallback.degraded, processing_rate_hz=self.fallback.rate_hz,
            overruns=self.fallback.overruns, memory_over=rss > self.memory_limit, rss_bytes=rss,
            memory_limit_bytes=self.memory_limit, gpu_memory_bytes=gpu,
            power_mode=self.power_mode)

    def guard_memory(self, state: diagnostics.State) -> None:
        """Degrade while resident memory is over resources.memory_limit."""
        if state.memory_over != self.fallback.memory_over:
            self.fallback.memory_over = state.memory_over
            self._set_rate(self.fallback.rate_hz)
            if state.memory_over:
                self.log.error(f'resident memory {state.rss_bytes / 1e6:.0f} MB over resources.memory_limit '
                               f'{self.values["resources.memory_limit"]}: degraded to '
                               f'{self.fallback.rate_hz:g} Hz')
            else:
                self.log.info('resident memory back under resources.memory_limit')

    def diagnose(self, document: dict[str, Any], state: diagnostics.State) -> diagnostics.Health:
        """The /diagnostics verdict; frame errors count since the previous verdict."""
        self.guard_memory(state)
        errors = document['errors_total']
        result = diagnostics.health(document, state, errors - self._errors_reported)
        self._errors_reported = errors
        return result
