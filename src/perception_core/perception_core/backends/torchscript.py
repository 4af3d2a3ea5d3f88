"""TorchScript backend (``.ts``): plain TorchScript on the CPU or GPU, and Torch-TensorRT compiled
modules, whose TensorRT ops are registered by importing ``torch_tensorrt`` where installed."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..bundle import Bundle
from . import Backend, BackendError, BackendOptions, dynamic_batch_limit, probed_batch_limit, torch_outputs


class TorchScriptBackend(Backend):
    name = 'torchscript'

    def __init__(self, path: Path, bundle: Bundle, options: BackendOptions) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendError(f'torch is not installed ({exc}); the TorchScript backend needs it') from exc
        try:
            import torch_tensorrt  # noqa: F401  (registers the ops of Torch-TensorRT compiled modules)
            compiled = ' with Torch-TensorRT'
        except ImportError:
            compiled = ''
        if not path.is_file():
            raise BackendError(f'{path}: no such TorchScript model')
        self.device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
        if options.threads > 0:
            torch.set_num_threads(options.threads)
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval()
        except Exception as exc:  # torch raises RuntimeError/ValueError/pickle errors for bad files
            raise BackendError(f'{path}: torch.jit.load failed: {exc}') from exc
        self._torch = torch
        self._names = tuple(bundle.output.names)
        # Extra inputs follow the image as positional arguments, in model.json's order; constant,
        # so they are on the device once.
        self._extras = tuple(torch.from_numpy(a).to(self.device)
                             for a in bundle.input.extra_arrays().values())
        # extra inputs are sized for one frame: per frame then
        self.batch_limit = 1 if self._extras else probed_batch_limit(
            dynamic_batch_limit(options), lambda: self.infer(np.zeros(bundle.input.shape(2), np.float32)))
        batching = f'batch up to {self.batch_limit}' if self.batch_limit > 1 else 'batch 1'
        super().__init__(f'TorchScript{compiled} torch {torch.__version__} on {self.device} '
                         f'({path.name}, {batching})')

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        with torch.inference_mode():
            result = self.module(torch.from_numpy(tensor).to(self.device), *self._extras)
        if isinstance(result, dict) and all(n in result for n in self._names):
            result = [result[n] for n in self._names]  # by name, as ONNX Runtime picks them
        return [o.float().cpu().numpy() for o in torch_outputs(result)]
