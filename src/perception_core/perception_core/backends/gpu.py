"""What the GPU has, asked without a CUDA binding of our own: through torch where it has CUDA,
and on a Jetson (GPU and CPU share memory) from the system memory size."""

from __future__ import annotations

import sys
from pathlib import Path

import psutil

TEGRA_RELEASE = Path('/etc/nv_tegra_release')


def is_jetson() -> bool:
    return TEGRA_RELEASE.is_file()


def torch_cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return bool(torch.cuda.is_available())


def total_gpu_memory() -> int | None:
    """Bytes of GPU memory, or None where it cannot be known."""
    if torch_cuda_available():
        import torch
        return int(torch.cuda.mem_get_info()[1])
    if is_jetson():
        return int(psutil.virtual_memory().total)
    return None


def used_gpu_memory() -> int | None:
    """Bytes of GPU memory this process's torch allocator holds; None where no backend uses it."""
    torch = sys.modules.get('torch')  # only ask if a backend already imported torch
    if torch is None or not torch.cuda.is_available():
        return None
    return int(torch.cuda.memory_reserved())
