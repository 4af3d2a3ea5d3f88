"""PyTorch CUDA backend: the bundle's TorchScript model on the GPU in fp16 (or fp32), the camera
image uploaded from pinned host memory, preprocessing on the GPU, and preprocessing + network
captured once per image size as a CUDA graph and replayed per frame (one launch instead of
hundreds). Needs torch built with CUDA; everywhere else it refuses to load and the fallback chain
moves on.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import Bundle
from ..preprocess import Transform, plan_transform
from . import Backend, BackendError, BackendOptions, torch_outputs
from .torch_preprocess import TorchPreprocess

log = logging.getLogger(__name__)
WARMUP_RUNS = 3  # CUDA graphs must be captured after the allocator and cuDNN have warmed up


class TorchCudaBackend(Backend):
    name = 'torch_cuda'
    takes_images = True

    def __init__(self, path: Path, bundle: Bundle, options: BackendOptions) -> None:
        try:
            import torch
        except ImportError as exc:
            raise BackendError(f'torch is not installed ({exc}); the torch_cuda backend needs it') from exc
        if not torch.cuda.is_available():
            raise BackendError(f'torch {torch.__version__} has no CUDA device; torch_cuda needs one')
        if not path.is_file():
            raise BackendError(f'{path}: no such TorchScript model (torch_cuda runs the bundle\'s model.ts)')
        self._torch = torch
        self.device = torch.device('cuda')
        if options.gpu_usage < 1.0:
            torch.cuda.set_per_process_memory_fraction(options.gpu_usage, self.device)
        # int8 needs a calibrated TensorRT engine; plain PyTorch runs it as fp16.
        self.dtype = torch.float32 if options.precision == 'fp32' else torch.float16
        try:
            self.module = torch.jit.load(str(path), map_location=self.device).eval().to(self.dtype)
        except Exception as exc:  # torch raises RuntimeError/ValueError/pickle errors for bad files
            raise BackendError(f'{path}: torch.jit.load failed: {exc}') from exc
        self.spec = bundle.input
        self._key: tuple[int, int, int, tuple[int, int, int]] | None = None
        self._graph: Any = None
        self.stream = torch.cuda.Stream()
        super().__init__(f'PyTorch {torch.__version__} CUDA {torch.cuda.get_device_name()} '
                         f'{str(self.dtype).removeprefix("torch.")} ({path.name})')

    def _forward(self) -> list:
        with self._torch.inference_mode():
            return [o.float() for o in torch_outputs(self.module(self._preprocess(self._image)))]

    def _prepare(self, shape: tuple[int, int, int], rgb_channels: tuple[int, int, int]) -> None:
        torch = self._torch
        height, width, channels = shape
        self.transform: Transform = plan_transform(height, width, self.spec)
        self._host = torch.empty(shape, dtype=torch.uint8, pin_memory=True)
        self._host_view = self._host.numpy()
        self._image = torch.empty(shape, dtype=torch.uint8, device=self.device)
        self._preprocess = TorchPreprocess(self.spec, self.transform, rgb_channels, self.dtype, self.device)
        with torch.cuda.stream(self.stream):
            for _ in range(WARMUP_RUNS):
                outputs = self._forward()
        torch.cuda.current_stream().wait_stream(self.stream)
        self._graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(self._graph):
                outputs = self._forward()
        except RuntimeError as exc:  # a model with uncapturable ops still runs, launch by launch
            log.warning('torch_cuda: CUDA graph capture failed (%s); running without a graph', exc)
            self._graph = None
        self._outputs = outputs
        self._host_outputs = [torch.empty(o.shape, dtype=torch.float32, pin_memory=True) for o in outputs]
        self._key = (height, width, channels, rgb_channels)

    def infer_image(self, pixels: np.ndarray, rgb_channels: tuple[int, int, int]
                    ) -> tuple[list[np.ndarray], Transform]:
        torch = self._torch
        if self._key != (*pixels.shape, rgb_channels):
            self._prepare(pixels.shape, rgb_channels)  # type: ignore[arg-type]
        np.copyto(self._host_view, pixels)  # strided message view -> pinned, contiguous
        self._image.copy_(self._host, non_blocking=True)
        if self._graph is not None:
            self._graph.replay()
        else:
            self._outputs = self._forward()
        for host, device in zip(self._host_outputs, self._outputs, strict=True):
            host.copy_(device, non_blocking=True)
        torch.cuda.current_stream().synchronize()
        return [h.numpy() for h in self._host_outputs], self.transform

    def gpu_memory_bytes(self) -> int | None:
        return int(self._torch.cuda.memory_reserved())

    def close(self) -> None:
        self._graph = None
        self._torch.cuda.empty_cache()
