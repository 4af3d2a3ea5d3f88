"""What an engine build needs from this machine, and one sentence for whatever is missing.

Nothing here imports TensorRT: the check must run (and be tested) where TensorRT is absent.
"""

from __future__ import annotations

import importlib.util

NO_TENSORRT_HINT = ('build the engine on the Jetson that will run it, where JetPack provides TensorRT '
                    '(sudo apt install python3-libnvinfer), or set model.path to the bundle\'s model.onnx '
                    'or model.ts to run the node without TensorRT')

DISPLAY_NAMES = {'tensorrt': 'TensorRT', 'torch_tensorrt': 'Torch-TensorRT'}


def has_module(name: str) -> bool:
    """True for an installed module; a folder of type stubs (a namespace package) does not count."""
    spec = importlib.util.find_spec(name)
    return spec is not None and spec.origin not in (None, 'namespace')


def cuda_device_count() -> int:
    try:
        import torch
    except ImportError:
        return 0
    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def missing_for(target: str) -> str | None:
    """None when what a ``target`` build ("tensorrt" or "torch_tensorrt") needs is here, else why not."""
    libraries = ('tensorrt',) if target == 'tensorrt' else ('tensorrt', 'torch_tensorrt')
    for library in libraries:
        if not has_module(library):
            return (f'{DISPLAY_NAMES[library]} is not installed here (no Python module {library!r}): '
                    f'{NO_TENSORRT_HINT}.')
    if not has_module('torch'):
        return ('PyTorch is not installed here; the engine builder uses it for CUDA device memory: install '
                f'the JetPack PyTorch wheel, or {NO_TENSORRT_HINT}.')
    if cuda_device_count() == 0:
        return (f'{DISPLAY_NAMES[target]} is installed but PyTorch sees no CUDA GPU (a TensorRT engine is '
                f'built on and for the GPU that runs it): {NO_TENSORRT_HINT}.')
    return None
