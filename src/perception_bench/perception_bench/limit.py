"""The limit: how fast one inference could possibly be on this GPU, and where the time goes.

Two ceilings measured here (not datasheet values): the fp16 matrix rate (a large matrix product)
and device memory bandwidth (a large device-to-device copy, bytes read + written), plus the
pinned host<->device copy rates for the camera frame and the results. The model's work at the
default input size: FLOPs from ``perception_trainer.export.model_cost`` and the fewest bytes a
fully fused fp16 network must move (weights once, input once, each convolution's output written
once and read once, the output once). Floor = the larger of FLOPs / rate and bytes / bandwidth;
for a whole camera frame add the upload, preprocessing's bytes and the download of the decoded
rows. Measured / floor says how far the CUDA path is from the hardware.

Why the gap: a profile of the fp16 path (kernels per frame, time the kernels are busy, the
heaviest kernels) and the cost of a chain of that many dependent tiny kernels in a CUDA graph.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from perception_core.backends.torch_decode import ROWS
from perception_core.bundle import Bundle
from perception_core.convert import Frame

from .backends import eager_module

MATRIX_N = 8192
COPY_BYTES = 1 << 30
TRANSFER_BYTES = 64 << 20
PROFILED_FRAMES = 50


def _gpu_ms(torch: Any, fn: Callable[[], object], repeats: int) -> float:
    """Median milliseconds of ``fn`` on the GPU, timed with CUDA events after a warm-up call."""
    fn()
    times = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return statistics.median(times)


def kernel_chain_us(torch: Any, kernels: int, repeats: int = 50) -> float:
    """Microseconds per kernel of a CUDA graph of ``kernels`` dependent one-block kernels: the
    price of each extra kernel in a replayed graph, whatever it computes."""
    x = torch.rand(256, device='cuda')
    graph = torch.cuda.CUDAGraph()
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        x.mul_(1.0)
    torch.cuda.current_stream().wait_stream(side)
    with torch.cuda.graph(graph):
        for _ in range(kernels):
            x.mul_(1.0)
    return _gpu_ms(torch, graph.replay, repeats) * 1e3 / kernels


def ceilings() -> dict[str, Any]:
    import torch

    a = torch.randn(MATRIX_N, MATRIX_N, device='cuda', dtype=torch.float16)
    b = torch.randn(MATRIX_N, MATRIX_N, device='cuda', dtype=torch.float16)
    matmul_ms = _gpu_ms(torch, lambda: a @ b, 20)
    source = torch.rand(COPY_BYTES // 4, device='cuda')
    target = torch.empty_like(source)
    copy_ms = _gpu_ms(torch, lambda: target.copy_(source), 20)
    host = torch.rand(TRANSFER_BYTES // 4).pin_memory()
    device = torch.empty(TRANSFER_BYTES // 4, device='cuda')
    upload_ms = _gpu_ms(torch, lambda: device.copy_(host, non_blocking=True), 20)
    download_ms = _gpu_ms(torch, lambda: host.copy_(device, non_blocking=True), 20)
    return {
        'gpu': torch.cuda.get_device_name(),
        'fp16_matrix_tflops': round(2 * MATRIX_N**3 / matmul_ms / 1e9, 1),
        'device_copy_gb_s': round(2 * COPY_BYTES / copy_ms / 1e6, 1),
        'upload_gb_s': round(TRANSFER_BYTES / upload_ms / 1e6, 2),
        'download_gb_s': round(TRANSFER_BYTES / download_ms / 1e6, 2),
        'how': f'fp16 {MATRIX_N}^3 matrix product; 1 GiB device copy (read + write); 64 MiB pinned '
        'host<->device copies; CUDA events, median of 20',
    }


def model_work(bundle: Bundle) -> dict[str, Any]:
    """FLOPs and the fewest fp16 bytes of one inference at the bundle's input size (CPU, no GPU needed)."""
    import torch

    from perception_trainer.export import model_cost

    model = eager_module(bundle)
    cost = model_cost(model, bundle.input)
    conv_outputs: list[int] = []
    hooks = [
        m.register_forward_hook(lambda _m, _i, out: conv_outputs.append(out.numel()))
        for m in model.modules()
        if isinstance(m, torch.nn.Conv2d)
    ]
    with torch.no_grad():
        outputs = model(torch.rand(bundle.input.shape(1)))
    for hook in hooks:
        hook.remove()
    half = 2
    parts = {
        'weights': cost['parameters'] * half,
        'input': int(torch.Size(bundle.input.shape(1)).numel()) * half,
        'activations': 2 * sum(conv_outputs) * half,
        'output': sum(o.numel() for o in outputs) * half,
    }
    return {
        'gflops': cost['gflops'],
        'parameters': cost['parameters'],
        'convolutions': len(conv_outputs),
        'bytes': parts,
        'total_bytes': sum(parts.values()),
    }


def floors(
    work: dict[str, Any], ceiling: dict[str, Any], frame: tuple[int, int], columns: int
) -> dict[str, Any]:
    """Floor microseconds of the network alone and of a whole camera frame -> decoded rows."""
    compute_us = work['gflops'] * 1e9 / (ceiling['fp16_matrix_tflops'] * 1e12) * 1e6
    memory_us = work['total_bytes'] / (ceiling['device_copy_gb_s'] * 1e9) * 1e6
    network_us = max(compute_us, memory_us)
    width, height = frame
    image_bytes = width * height * 3
    preprocess_us = (image_bytes + work['bytes']['input']) / (ceiling['device_copy_gb_s'] * 1e9) * 1e6
    upload_us = image_bytes / (ceiling['upload_gb_s'] * 1e9) * 1e6
    download_us = (ROWS + 1) * columns * 4 / (ceiling['download_gb_s'] * 1e9) * 1e6
    return {
        'network': {
            'compute_us': round(compute_us, 2),
            'memory_us': round(memory_us, 2),
            'floor_us': round(network_us, 2),
            'bound_by': 'memory' if memory_us >= compute_us else 'compute',
        },
        f'frame_{width}x{height}': {
            'upload_us': round(upload_us, 2),
            'preprocess_us': round(preprocess_us, 2),
            'network_us': round(network_us, 2),
            'download_us': round(download_us, 2),
            'floor_us': round(upload_us + preprocess_us + network_us + download_us, 2),
        },
    }


def profile(run_frame: Callable[[Frame], object], frames: Sequence[Frame]) -> dict[str, Any]:
    """Kernels and copies on the GPU per frame while ``run_frame`` processes frames."""
    import torch
    from torch.profiler import ProfilerActivity

    for frame in frames[:5]:
        run_frame(frame)
    with torch.profiler.profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for i in range(PROFILED_FRAMES):
            run_frame(frames[i % len(frames)])
        torch.cuda.synchronize()
    by_name: dict[str, list[float]] = defaultdict(list)
    for event in prof.events():
        if event.device_type == torch.autograd.DeviceType.CUDA:
            by_name[event.name].append(event.time_range.elapsed_us())
    copies = {n: d for n, d in by_name.items() if 'memcpy' in n.lower() or 'memset' in n.lower()}
    kernels = {n: d for n, d in by_name.items() if n not in copies}
    per_frame = 1.0 / PROFILED_FRAMES
    heaviest = sorted(kernels.items(), key=lambda item: -sum(item[1]))[:8]
    return {
        'frames': PROFILED_FRAMES,
        'kernels_per_frame': round(sum(len(d) for d in kernels.values()) * per_frame, 1),
        'kernel_busy_us_per_frame': round(sum(sum(d) for d in kernels.values()) * per_frame, 1),
        'copies_per_frame': round(sum(len(d) for d in copies.values()) * per_frame, 1),
        'copy_busy_us_per_frame': round(sum(sum(d) for d in copies.values()) * per_frame, 1),
        'heaviest_kernels': [
            {
                'name': name[:90],
                'per_frame': round(len(d) * per_frame, 1),
                'us_per_frame': round(sum(d) * per_frame, 1),
            }
            for name, d in heaviest
        ],
    }
