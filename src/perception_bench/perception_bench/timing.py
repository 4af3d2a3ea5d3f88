"""Backend latency and throughput per batch size, measured so that the numbers mean something.

The lesson timed ``model(x)`` in a loop with no warm-up and no synchronisation, which on a GPU
measures how fast work is queued, not done. Here: warm-up runs first (allocator, autotuning,
CUDA graph capture), every timed call is bracketed by ``torch.cuda.synchronize()`` where torch
has CUDA (the node's backends also return host arrays, so a call ends only when its results are
back), each call is timed on its own, and the report gives p50/p90/p99 rather than a mean
(``perception_core.metrics.latency_stats``, the summary the node's own files use).
Inputs are real frames through the node's preprocessing, not random tensors.
"""

from __future__ import annotations

import logging
import os
import platform
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from tqdm import tqdm

from perception_core.backends import Backend
from perception_core.backends.gpu import torch_cuda_available
from perception_core.bundle import Bundle
from perception_core.engine.frames import ImageFrame
from perception_core.metrics import latency_stats
from perception_core.preprocess import Preprocessor

log = logging.getLogger(__name__)
WARMUP = 20
ITERATIONS = 200


def synchronizer() -> Callable[[], None]:
    """Waits for the GPU where torch has CUDA; a no-op elsewhere."""
    if torch_cuda_available():
        import torch
        return torch.cuda.synchronize
    return lambda: None


def time_calls(call: Callable[[int], object], warmup: int, iterations: int, sync: Callable[[], None], *,
               label: str = '', progress: bool = False) -> list[float]:
    """Seconds of each of ``iterations`` calls ``call(i)`` after ``warmup`` untimed ones."""
    for i in range(warmup):
        call(i)
    sync()
    times = []
    for i in tqdm(range(iterations), desc=label, unit='call', disable=not progress, leave=False):
        start = time.perf_counter()
        call(i)
        sync()
        times.append(time.perf_counter() - start)
    return times


def batches(frames: Sequence[ImageFrame], bundle: Bundle, batch_size: int, count: int) -> list[np.ndarray]:
    """``count`` distinct input batches (frames reused round-robin when there are fewer)."""
    preprocessor = Preprocessor(bundle.input)
    tensors = [preprocessor(f.pixels, f.rgb_channels)[0].copy() for f in frames[:batch_size * count]]
    return [np.ascontiguousarray(np.concatenate([tensors[(b * batch_size + k) % len(tensors)]
                                                 for k in range(batch_size)]))
            for b in range(count)]


def machine_facts() -> dict[str, Any]:
    facts: dict[str, Any] = {'machine': platform.machine(), 'python': platform.python_version(),
                             'logical_cpus': os.cpu_count()}
    try:
        with open('/proc/cpuinfo') as f:
            facts['cpu'] = next((line.split(':', 1)[1].strip() for line in f
                                 if line.startswith('model name')), platform.processor())
    except OSError:
        facts['cpu'] = platform.processor()
    if torch_cuda_available():
        import torch
        facts['gpu'] = torch.cuda.get_device_name()
        facts['cuda'] = torch.version.cuda
    return facts


def caller(backend: Backend, bundle: Bundle, frames: Sequence[ImageFrame], batch_size: int, images: bool
            ) -> tuple[Callable[[int], object], str]:
    """The timed call for one batch size, and what it is fed."""
    if images:
        if batch_size != 1:
            raise ValueError(f'{backend.name} takes one camera image per call')
        height, width = frames[0].pixels.shape[:2]

        def call(i: int) -> object:
            frame = frames[i % len(frames)]
            return backend.infer_image(frame.pixels, frame.rgb_channels)
        return call, f'camera image {width}x{height}, preprocessing on the device included'
    inputs = batches(frames, bundle, batch_size, min(8, len(frames)))
    return lambda i: backend.infer(inputs[i % len(inputs)]), f'preprocessed tensor {list(inputs[0].shape)}'


def benchmark(backend: Backend, bundle: Bundle, frames: Sequence[ImageFrame], batch_sizes: Sequence[int], *,
              warmup: int = WARMUP, iterations: int = ITERATIONS, progress: bool = True,
              images: bool | None = None) -> dict[str, Any]:
    """Latency percentiles and throughput of ``backend.infer`` per batch size, as a JSON document.

    A backend that preprocesses on its own device (``takes_images``) runs camera images one at a
    time, preprocessing included, unless ``images=False`` asks for its network alone on
    preprocessed batches (where it has ``infer``, as torch_cuda does). A batch size the backend
    refuses is reported with the error.
    """
    images = backend.takes_images if images is None else images
    if not frames:
        raise ValueError('no frames to benchmark with')
    sync = synchronizer()
    results = []
    for batch_size in batch_sizes:
        entry: dict[str, Any] = {'batch_size': batch_size}
        try:
            call, entry['input'] = caller(backend, bundle, frames, batch_size, images)
            seconds = time_calls(call, warmup, iterations, sync, label=f'batch {batch_size}',
                                 progress=progress)
        except Exception as exc:  # a backend's own errors (shape refused, out of memory) are reported
            log.warning('%s: batch size %d failed: %s', backend.description, batch_size, exc)
            entry['error'] = str(exc)
            results.append(entry)
            continue
        entry['latency_ms'] = latency_stats(seconds)
        entry['throughput_fps'] = round(batch_size * len(seconds) / sum(seconds), 2)
        entry['iterations'] = len(seconds)
        results.append(entry)
    return {'backend': backend.name, 'description': backend.description,
            'model': str(bundle.directory), 'input': {'height': bundle.input.height,
                                                      'width': bundle.input.width,
                                                      'layout': bundle.input.layout},
            'warmup': warmup, 'timer': 'perf_counter, torch.cuda.synchronize() around each call'
            if torch_cuda_available() else 'perf_counter (CPU: calls are synchronous)',
            'machine': machine_facts(), 'results': results}
