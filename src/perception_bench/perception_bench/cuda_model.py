"""A TorchScript model.ts the GPU can run, from the bundle's own weights.

``torch.jit.trace`` records the device of tensors the network creates (CenterNet's location grid,
``torch.arange(..., device=...)``) as constants, so a model.ts traced on the CPU fails on CUDA
("found at least two devices, cuda:0 and cpu"): the torch_cuda backend refuses it at load and the
node falls back to ONNX Runtime. Until the exporter writes a device-independent model.ts, the
bench and the CUDA-path tests trace the same network with the same weights on the GPU, into a
copy of the bundle, and say so in the report.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from perception_core.backends import BackendError, BackendOptions
from perception_core.bundle import Bundle, load_bundle

from .backends import eager_module


def shipped_problem(bundle: Bundle) -> str | None:
    """Why the bundle's model.ts cannot run on this GPU, or None when it can."""
    from perception_core.backends.torch_cuda import TorchCudaBackend

    try:
        TorchCudaBackend(bundle.torchscript_path, bundle, BackendOptions()).close()
    except BackendError as exc:
        return str(exc)
    return None


def gpu_traced_bundle(bundle: Bundle, folder: Path) -> Bundle:
    """``folder``: model.json and model.onnx copied, model.ts traced on the GPU from the same weights."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    for name in ('model.json', 'model.onnx'):
        shutil.copy2(bundle.directory / name, folder / name)
    module: Any = eager_module(bundle).to('cuda')
    with torch.no_grad():
        traced = torch.jit.trace(module, torch.rand(bundle.input.shape(1), device='cuda'))
    traced.save(str(folder / 'model.ts'))
    return load_bundle(folder)


def runnable_bundle(bundle: Bundle, folder: Path) -> tuple[Bundle, dict[str, Any]]:
    """The bundle itself when its model.ts runs on this GPU, else the GPU-traced copy; and a note."""
    problem = shipped_problem(bundle)
    if problem is None:
        return bundle, {'model_ts': str(bundle.torchscript_path), 'retraced': False}
    copy = gpu_traced_bundle(bundle, folder)
    return copy, {
        'model_ts': str(copy.torchscript_path),
        'retraced': True,
        'shipped_model_ts_problem': problem,
        'note': 'the shipped model.ts cannot run on CUDA; GPU figures use the same weights traced '
        'on the GPU (perception_bench/cuda_model.py)',
    }
