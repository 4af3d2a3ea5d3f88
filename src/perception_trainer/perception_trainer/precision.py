"""Mixed precision for training: bf16 where the GPU has it, else fp16 with loss scaling; fp32 on a CPU."""

from __future__ import annotations

import torch

from .config import TrainConfig


def autocast(cfg: TrainConfig, device: torch.device) -> torch.autocast:
    enabled = cfg.amp and device.type == 'cuda'
    dtype = torch.bfloat16 if enabled and torch.cuda.is_bf16_supported() else torch.float16
    return torch.autocast(device_type=device.type, dtype=dtype, enabled=enabled)
