"""Backend latency and throughput, every backend this machine runs, measured in one run.

Per backend: the network alone on preprocessed batches at batch 1 and at
``performance.max_batch_size`` (``perception_bench.timing``'s caller and timer), and a
whole camera frame through the node's :class:`Detector` (preprocess, infer, decode). On the GPU:
fp32 eager, fp16 eager, fp16 + CUDA graph (the node's torch_cuda default) and torch.compile +
CUDA graph. GPU results are checked against ONNX Runtime on the CPU, frame by frame.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from perception_bench.timing import caller, synchronizer, time_calls
from perception_core.backends import Backend, BackendOptions
from perception_core.backends.gpu import torch_cuda_available
from perception_core.bundle import Bundle
from perception_core.convert import Frame
from perception_core.decode import Detections, Thresholds
from perception_core.detector import Detector
from perception_core.engine.build import open_exactly
from perception_core.engine.frames import ImageFrame, scene_frames

from .agreement import agreement
from .stats import repeated

log = logging.getLogger(__name__)
REFERENCE = 'onnxruntime_cpu'


@dataclass(frozen=True)
class Effort:
    """How long each figure is measured: runs per figure, and calls per run."""

    repeats: int = 5
    gpu_calls: int = 200
    cpu_calls: int = 30
    warmup: int = 10
    agreement_frames: int = 16
    run_budget_s: float = 2.0  # fewer calls per run where one call is slow (PyTorch CPU at batch 8)

    def plan(self, call: Callable[[int], object], gpu: bool) -> tuple[int, int]:
        """(warm-up calls, timed calls) per run: as configured, fewer (at least 5) where one call is
        so slow that they would overrun the budget. The first call (graph capture, compilation)
        is not counted."""
        call(0)
        start = time.perf_counter()
        call(1)
        once = time.perf_counter() - start
        calls = max(
            5, min(self.gpu_calls if gpu else self.cpu_calls, int(self.run_budget_s / max(once, 1e-9)))
        )
        return min(self.warmup, calls), calls


@dataclass(frozen=True)
class Variant:
    key: str
    label: str
    gpu: bool
    open: Callable[[Bundle], Backend]


def cpu_threads() -> int:
    return len(os.sched_getaffinity(0))


def _torchscript_cpu(bundle: Bundle) -> Backend:
    backend = open_exactly(
        'torchscript', bundle.torchscript_path, bundle, BackendOptions(threads=cpu_threads())
    )
    if str(getattr(backend, 'device', 'cpu')) != 'cpu':
        # The torchscript backend takes the GPU where there is one; this row is PyTorch on the CPU.
        import torch

        backend.module = backend.module.to('cpu')  # type: ignore[attr-defined]
        backend.device = torch.device('cpu')  # type: ignore[attr-defined]
        backend.description = backend.description.replace('on cuda', 'on cpu')
    return backend


def eager_module(bundle: Bundle) -> Any:
    """The bundle's deployed network as an eager module on the CPU: code from perception_trainer,
    weights from model.ts (torch.compile and FLOP counting cannot look inside TorchScript)."""
    import torch

    from perception_trainer.architectures import ARCHITECTURES, Deployed, model_options
    from perception_trainer.float16_weights import float32_state, fold_batchnorm

    arch = ARCHITECTURES[bundle.arch]
    # the family member model.json's recipe names (backbone, size), as the checkpoint does
    training = bundle.raw.get('training')
    options = model_options(training if isinstance(training, dict) else {})
    model = arch.model(len(bundle.classes), **options).eval()
    state = torch.jit.load(str(bundle.torchscript_path), map_location='cpu').state_dict()
    if bundle.weights_storage == 'float16':  # stored folded, as float16
        model = fold_batchnorm(model, torch.zeros(bundle.input.shape(1)))
        state = float32_state(state)
    eager = Deployed(model, arch)
    eager.load_state_dict(state)
    return eager.eval()


def compiled_module(bundle: Bundle) -> Any:
    """``torch.compile`` of the eager network, fp16 on the GPU, weights frozen as constants."""
    import torch
    from torch._inductor import config as inductor

    inductor.freezing = True  # batch norm folds into the convolutions
    return torch.compile(eager_module(bundle).to('cuda', torch.float16), dynamic=False)


def _torch_cuda(
    precision: str, *, graphs: bool, freeze: bool = True, compiled: bool = False
) -> Callable[[Bundle], Backend]:
    def open_variant(bundle: Bundle) -> Backend:
        from perception_core.backends.torch_cuda import TorchCudaBackend

        options = BackendOptions(precision=precision)
        module = compiled_module(bundle) if compiled else None
        return TorchCudaBackend(
            bundle.torchscript_path, bundle, options, graphs=graphs, freeze=freeze, module=module
        )

    return open_variant


VARIANTS = (
    Variant(
        'onnxruntime_cpu',
        'ONNX Runtime, CPU',
        False,
        lambda b: open_exactly('onnxruntime', b.onnx_path, b, BackendOptions(threads=cpu_threads())),
    ),
    Variant('pytorch_cpu', 'PyTorch (TorchScript), CPU', False, _torchscript_cpu),
    Variant('fp32_eager', 'GPU fp32, eager', True, _torch_cuda('fp32', graphs=False)),
    Variant('fp16_eager', 'GPU fp16, eager', True, _torch_cuda('fp16', graphs=False)),
    Variant(
        'fp16_graph_unfrozen',
        'GPU fp16 + CUDA graph, not frozen',
        True,
        _torch_cuda('fp16', graphs=True, freeze=False),
    ),
    Variant('fp16_graph', 'GPU fp16 + CUDA graph (node default)', True, _torch_cuda('fp16', graphs=True)),
    Variant(
        'fp16_compile_graph',
        'GPU fp16 torch.compile + CUDA graph',
        True,
        _torch_cuda('fp16', graphs=True, compiled=True),
    ),
)


def camera_frames(bundle: Bundle, count: int, width: int, height: int, encoding: str = 'rgb8') -> list[Frame]:
    frames = scene_frames(bundle, count, size=(width, height))
    pixels = [f.pixels if encoding == 'rgb8' else np.ascontiguousarray(f.pixels[..., ::-1]) for f in frames]
    return [Frame(p, encoding) for p in pixels]


def _network(
    backend: Backend,
    bundle: Bundle,
    frames: Sequence[ImageFrame],
    batch_size: int,
    *,
    gpu: bool,
    effort: Effort,
) -> dict[str, Any]:
    call, fed = caller(backend, bundle, frames, batch_size, images=False)
    sync = synchronizer()
    warmup, calls = effort.plan(call, gpu)
    figure = repeated(lambda: {'latency': time_calls(call, warmup, calls, sync)}, effort.repeats, batch_size)[
        'latency'
    ]
    return {**figure, 'input': fed}


def _frame_pipeline(detector: Detector, frames: Sequence[Frame], gpu: bool, effort: Effort) -> dict[str, Any]:
    """Frame -> detections through the node's Detector, and its backend part (preprocess + infer)."""
    warmup, calls = effort.plan(lambda i: detector.detect(frames[i % len(frames)]), gpu)

    def run() -> dict[str, list[float]]:
        total: list[float] = []
        backend: list[float] = []
        for i in range(warmup + calls):
            start = time.perf_counter()
            _, timings = detector.detect(frames[i % len(frames)])
            elapsed = time.perf_counter() - start  # backends return host arrays: the GPU is done
            if i >= warmup:
                total.append(elapsed)
                backend.append(timings['preprocess'] + timings['infer'])
        return {'frame_to_detections': total, 'backend': backend}

    return repeated(run, effort.repeats)


def detect_all(detector: Detector, frames: Sequence[Frame]) -> list[Detections]:
    return [detector.detect(f)[0] for f in frames]


def measure(
    bundle: Bundle,
    batch_sizes: Sequence[int],
    effort: Effort,
    variants: Sequence[Variant] = VARIANTS,
    gpu_bundle: Bundle | None = None,
) -> dict[str, Any]:
    """Every variant this machine can run; the others are listed with the reason they were skipped.
    GPU variants run ``gpu_bundle`` where given (perception_bench/cuda_model.py), the same weights."""
    frames = scene_frames(bundle, 16)
    vga = camera_frames(bundle, 16, 640, 480)
    checks = {
        '640x480 rgb8': camera_frames(bundle, effort.agreement_frames, 640, 480),
        '1280x720 bgr8': camera_frames(bundle, effort.agreement_frames // 2, 1280, 720, 'bgr8'),
    }
    thresholds = Thresholds.resolve(bundle.postprocess)
    reference: dict[str, list[Detections]] = {}
    results: dict[str, Any] = {}
    for variant in variants:
        entry: dict[str, Any] = {'label': variant.label, 'gpu': variant.gpu}
        results[variant.key] = entry
        if variant.gpu and not torch_cuda_available():
            entry['skipped'] = 'no CUDA device here (the GPU half runs on the device: tools/bench_device.sh)'
            continue
        try:
            backend = variant.open(gpu_bundle or bundle if variant.gpu else bundle)
        except Exception as exc:  # one variant that cannot load must not cost the others
            log.exception('%s: cannot load', variant.key)
            entry['error'] = f'{type(exc).__name__}: {exc}'
            continue
        try:
            entry['description'] = backend.description
            entry['network'] = {
                str(b): _network(backend, bundle, frames, b, gpu=variant.gpu, effort=effort)
                for b in batch_sizes
            }
            detector = Detector(bundle, backend, thresholds)
            entry['frame_640x480'] = _frame_pipeline(detector, vga, variant.gpu, effort)
            found = {name: detect_all(detector, shown) for name, shown in checks.items()}
            if variant.key == REFERENCE:
                reference = found
            elif reference:
                entry['agreement'] = {name: agreement(reference[name], found[name]) for name in checks}
        except Exception as exc:
            log.exception('%s: measurement failed', variant.key)
            entry['error'] = f'{type(exc).__name__}: {exc}'
        finally:
            backend.close()
    return {
        'model': str(bundle.directory),
        'input': f'{bundle.input.width}x{bundle.input.height}',
        'batch_sizes': list(batch_sizes),
        'reference': REFERENCE,
        'variants': results,
        'targets': targets(results),
    }


def targets(results: dict[str, Any]) -> dict[str, Any]:
    """The issue's GPU targets at 640x480: fp16 + CUDA graph p50 <= 1.0 ms, >= 3x fp32 eager."""

    def p50(key: str, part: str) -> float | None:
        figure = results.get(key, {}).get('frame_640x480', {}).get(part)
        return None if figure is None else figure['p50_ms']['median']

    out: dict[str, Any] = {}
    for part in ('backend', 'frame_to_detections'):
        graph, eager = p50('fp16_graph', part), p50('fp32_eager', part)
        if graph is None:
            continue
        out[part] = {'fp16_graph_p50_ms': graph, 'p50_target_ms': 1.0, 'p50_met': graph <= 1.0}
        if eager is not None:
            speedup = eager / graph
            out[part].update(
                fp32_eager_p50_ms=eager,
                speedup=round(speedup, 2),
                speedup_target=3.0,
                speedup_met=speedup >= 3.0,
            )
    return out
