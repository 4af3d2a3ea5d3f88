"""Preprocessing alone, camera frame -> network input: OpenCV/numpy on the CPU (the node's
``Preprocessor``) against the torch_cuda path (copy into pinned memory, one upload, resize,
letterbox and normalise on the GPU as a CUDA graph; the result stays on the GPU, as in the node)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from perception_bench.timing import time_calls
from perception_core.backends.gpu import torch_cuda_available
from perception_core.bundle import Bundle
from perception_core.convert import Frame
from perception_core.preprocess import Preprocessor, plan_transform

from .backends import Effort, camera_frames
from .stats import repeated

SIZES = ((640, 480), (1920, 1080))


def _cpu(bundle: Bundle, frames: Sequence[Frame], effort: Effort) -> dict[str, Any]:
    preprocessor = Preprocessor(bundle.input)

    def call(i: int) -> object:
        frame = frames[i % len(frames)]
        return preprocessor(frame.pixels, frame.rgb_channels)

    warmup, calls = effort.plan(call, gpu=False)
    return repeated(lambda: {'cpu': time_calls(call, warmup, calls, lambda: None)}, effort.repeats)['cpu']


def _gpu(bundle: Bundle, frames: Sequence[Frame], effort: Effort) -> dict[str, Any]:
    import torch

    from perception_core.backends.torch_cuda import Program
    from perception_core.backends.torch_preprocess import TorchPreprocess

    height, width, channels = frames[0].pixels.shape
    transform = plan_transform(height, width, bundle.input)
    preprocess = TorchPreprocess(
        bundle.input, transform, frames[0].rgb_channels, torch.float16, torch.device('cuda')
    )
    image = torch.empty((height, width, channels), dtype=torch.uint8, device='cuda')
    program = Program(torch, [image], lambda: [preprocess(image)], graph=True, copied=0)

    def call(i: int) -> object:
        return program.run(frames[i % len(frames)].pixels)  # returns once the GPU is done

    warmup, calls = effort.plan(call, gpu=True)
    return repeated(lambda: {'gpu': time_calls(call, warmup, calls, lambda: None)}, effort.repeats)['gpu']


def measure(bundle: Bundle, effort: Effort) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for width, height in SIZES:
        frames = camera_frames(bundle, 8, width, height)
        entry: dict[str, Any] = {'cpu': _cpu(bundle, frames, effort)}
        if torch_cuda_available():
            entry['gpu'] = _gpu(bundle, frames, effort)
            entry['speedup'] = round(entry['cpu']['p50_ms']['median'] / entry['gpu']['p50_ms']['median'], 2)
        else:
            entry['gpu'] = {'skipped': 'no CUDA device here'}
        results[f'{width}x{height}'] = entry
    return {
        'input': f'{bundle.input.width}x{bundle.input.height} {bundle.input.layout}',
        'sizes': results,
        'gpu_dtype': 'float16',
    }
