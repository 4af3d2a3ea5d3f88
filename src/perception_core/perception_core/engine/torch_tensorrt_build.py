"""The engine builder's only contact with Torch-TensorRT: the lesson's path, model.ts -> a
TensorRT-compiled TorchScript module the node's TorchScript backend loads (it imports
torch_tensorrt to register the TensorRT ops).

It carries out a :class:`~perception_core.engine.plan.BuildPlan` (target ``torch_tensorrt``):
the min/opt/max input shapes, the enabled precisions, the workspace, ``min_block_size`` from
``performance.minimum_segment_size`` and ``truncate_long_and_double``. Runs only where
Torch-TensorRT and a GPU exist.
"""

from __future__ import annotations

import time
from typing import Any

import torch
import torch_tensorrt

from perception_core.atomic import atomic_path

from .plan import BuildPlan


def versions() -> dict[str, str]:
    return {'torch': torch.__version__, 'torch_tensorrt': torch_tensorrt.__version__}


def compile_torchscript(plan: BuildPlan) -> float:
    """Compile plan.source_path (model.ts) and save it to plan.engine_path; returns build seconds."""
    module = torch.jit.load(str(plan.source_path), map_location='cuda').eval()
    precisions: set[Any] = {torch.float32}
    if plan.precision == 'fp16':
        precisions.add(torch.float16)
    device = torch_tensorrt.Device(
        **({'dla_core': plan.dla_core, 'allow_gpu_fallback': True} if plan.dla_core is not None
           else {'gpu_id': torch.cuda.current_device()}))
    start = time.perf_counter()
    compiled = torch_tensorrt.ts.compile(
        module,
        inputs=[torch_tensorrt.Input(min_shape=plan.profile.min, opt_shape=plan.profile.opt,
                                     max_shape=plan.profile.max, dtype=torch.float32)],
        enabled_precisions=precisions, workspace_size=plan.workspace_bytes,
        min_block_size=plan.minimum_segment_size, truncate_long_and_double=True,
        sparse_weights='SPARSE_WEIGHTS' in plan.builder_flags, device=device)
    seconds = time.perf_counter() - start
    with atomic_path(plan.engine_path) as tmp:
        torch.jit.save(compiled, str(tmp))
    return seconds
