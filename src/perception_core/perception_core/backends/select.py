"""Which backend runs the model, and the fallback chain when it cannot load.

``model.backend: auto`` picks by ``model.path``'s extension: ``.engine``/``.plan`` -> tensorrt,
``.ts`` -> torch_cuda where torch has CUDA else torchscript, ``.onnx`` -> onnxruntime. If the
chosen backend fails to load, the next one in its chain is tried, each on its own file of the
same bundle (the engine, ``model.ts`` or ``model.onnx``):

    tensorrt    -> torch_cuda -> onnxruntime
    torch_cuda  -> onnxruntime
    torchscript -> onnxruntime
    onnxruntime -> torchscript

Fastest first, ONNX Runtime as the portable floor. Every failure is kept (and reported in
diagnostics); when none loads, :class:`NoBackend` lists them all.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..bundle import Bundle
from . import Backend, BackendError, BackendOptions
from .gpu import torch_cuda_available

ENGINE_SUFFIXES = ('.engine', '.plan')
FALLBACKS: dict[str, tuple[str, ...]] = {
    'tensorrt': ('torch_cuda', 'onnxruntime'),
    'torch_cuda': ('onnxruntime',),
    'torchscript': ('onnxruntime',),
    'onnxruntime': ('torchscript',),
}


class NoBackend(RuntimeError):
    """No backend of the chain could load the model; the message lists each one's reason."""


@dataclass
class Selection:
    backend: Backend
    requested: str                 # the backend the configuration asked for (after auto)
    reason: str                    # why that one was asked for
    failures: list[tuple[str, str]] = field(default_factory=list)  # (backend, error) before success
    errors: dict[str, BackendError] = field(default_factory=dict)    # the same, as exceptions

    @property
    def fell_back(self) -> bool:
        return bool(self.failures)


def choose(model_path: Path, backend: str) -> tuple[str, str]:
    """(backend name, reason) for the model.backend parameter and the model file."""
    if backend != 'auto':
        return backend, f'model.backend is {backend!r}'
    suffix = model_path.suffix.lower()
    if suffix in ENGINE_SUFFIXES:
        return 'tensorrt', f'model.path ends in {suffix}'
    if suffix == '.ts':
        if torch_cuda_available():
            return 'torch_cuda', 'model.path ends in .ts and torch has CUDA'
        return 'torchscript', 'model.path ends in .ts and torch has no CUDA'
    if suffix == '.onnx':
        return 'onnxruntime', 'model.path ends in .onnx'
    raise NoBackend(f'{model_path}: model.path must end in .engine, .plan, .ts or .onnx '
                    '(or set model.backend)')


def model_file(name: str, model_path: Path, bundle: Bundle) -> Path:
    """The file of the bundle that backend ``name`` loads."""
    if name == 'tensorrt':
        engine = model_path.suffix.lower() in ENGINE_SUFFIXES
        return model_path if engine else bundle.directory / 'model.engine'
    if name in ('torchscript', 'torch_cuda'):
        return model_path if model_path.suffix.lower() == '.ts' else bundle.torchscript_path
    return model_path if model_path.suffix.lower() == '.onnx' else bundle.onnx_path


def _opener(name: str) -> Callable[[Path, Bundle, BackendOptions], Backend]:
    # Imported on demand: each backend module pulls in its framework only when it is tried.
    if name == 'tensorrt':
        from .tensorrt import TensorRTBackend
        return TensorRTBackend
    if name == 'torch_cuda':
        from .torch_cuda import TorchCudaBackend
        return TorchCudaBackend
    if name == 'torchscript':
        from .torchscript import TorchScriptBackend
        return TorchScriptBackend
    from .onnxruntime import OnnxRuntimeBackend
    return OnnxRuntimeBackend


def open_backend(model_path: Path, bundle: Bundle, backend: str, options: BackendOptions) -> Selection:
    """Load the configured backend, or the first of its fallback chain that loads."""
    requested, reason = choose(model_path, backend)
    failures: list[tuple[str, str]] = []
    errors: dict[str, BackendError] = {}
    for name in (requested, *FALLBACKS[requested]):
        try:
            loaded = _opener(name)(model_file(name, model_path, bundle), bundle, options)
        except BackendError as exc:
            failures.append((name, str(exc)))
            errors[name] = exc
            continue
        return Selection(loaded, requested, reason, failures, errors)
    raise NoBackend('no backend could load the model: ' + '; '.join(f'{n}: {e}' for n, e in failures))
