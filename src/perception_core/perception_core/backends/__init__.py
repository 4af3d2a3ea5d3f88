"""Inference backends. Each turns the preprocessed network input (or, for ``torch_cuda``, the
camera image itself) into the network's outputs as numpy arrays; ``select.py`` picks one by
model path and walks the fallback chain. Every framework is imported lazily, inside the backend
that needs it, so the node runs with ONNX Runtime alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ..preprocess import Transform


class BackendError(RuntimeError):
    """A backend that cannot load or run; the message names the file and the cause."""


class EngineUnusable(BackendError):
    """A TensorRT engine that is missing (``missing``) or does not fit this device or deployment:
    what ``model.build_on_start`` / ``model.rebuild_on_mismatch`` can fix by building one."""

    def __init__(self, message: str, missing: bool) -> None:
        super().__init__(message)
        self.missing = missing


@dataclass(frozen=True)
class BackendOptions:
    """What the deployment asks of a backend (from the node's parameters)."""
    precision: str = 'fp32'
    gpu_usage: float = 1.0              # fraction of GPU memory the backend may take
    threads: int = 0                    # CPU threads for CPU backends; 0 = the framework's default
    compute_capability: str | None = None
    max_batch_size: int | None = None


class Backend:
    """One loaded model. ``infer`` runs one preprocessed frame; backends with ``takes_images``
    preprocess on their device and are called through ``infer_image`` instead."""

    name = ''
    takes_images = False
    # Most frames one ``infer`` call takes (a [N, ...] tensor), decided at load from the model's
    # batch axis; 1 = a fixed batch of one, so ``Detector.detect_batch`` runs one call per frame.
    batch_limit = 1

    def __init__(self, description: str) -> None:
        self.description = description

    def infer(self, tensor: np.ndarray) -> list[np.ndarray]:
        """The outputs for a [N, ...] input, N <= ``batch_limit``; each output's first axis is N."""
        raise NotImplementedError(f'{self.name} takes images; call infer_image')

    def infer_image(self, pixels: np.ndarray, rgb_channels: tuple[int, int, int]
                    ) -> tuple[list[np.ndarray], Transform]:
        raise NotImplementedError(f'{self.name} takes preprocessed tensors; call infer')

    def infer_images(self, images: Sequence[tuple[np.ndarray, tuple[int, int, int]]]
                     ) -> list[tuple[list[np.ndarray], Transform]]:
        """Several (pixels, rgb_channels), at most ``batch_limit``, as one batch: each image's
        outputs and transform, as ``infer_image`` gives them (``takes_images`` backends only)."""
        raise NotImplementedError(f'{self.name} takes preprocessed tensors; call infer')

    def gpu_memory_bytes(self) -> int | None:
        """GPU memory this backend holds, where it can tell; None on CPU or unknown."""
        return None

    def close(self) -> None:
        """Release framework resources (sessions, CUDA memory)."""


def dynamic_batch_limit(options: BackendOptions) -> int:
    """The batch a model with a dynamic batch axis takes per call: performance.max_batch_size."""
    return max(1, options.max_batch_size or 1)


def probed_batch_limit(limit: int, run_two: Callable[[], Sequence]) -> int:
    """``limit`` when the module answers two frames with two (a traced dynamic batch axis), else 1:
    TorchScript records no input shapes, so one call at load decides."""
    if limit < 2:
        return 1
    try:
        outputs = run_two()
    except Exception:  # a module traced for batch 1 fails its reshapes on two: per frame then
        return 1
    return limit if outputs and all(o.shape[:1] == (2,) for o in outputs) else 1


def torch_outputs(result: object) -> list:
    """A TorchScript module's result (tensor, tuple, list or dict of tensors) as a list."""
    if isinstance(result, dict):
        return list(result.values())
    if isinstance(result, (list, tuple)):
        return list(result)
    return [result]
