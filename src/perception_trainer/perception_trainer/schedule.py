"""The learning-rate schedule: linear warm-up, then cosine decay to ``FINAL_LR`` of the peak, set
every optimiser step by a ``LambdaLR`` counting steps."""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import TrainConfig

FINAL_LR = 0.02  # fraction of the peak learning rate left at the end of the cosine schedule


def lr_factor(progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to FINAL_LR; ``progress`` in epochs (fractional)."""
    if progress < cfg.warmup_epochs:
        return max(progress / cfg.warmup_epochs, 1e-3)
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    t = min((progress - cfg.warmup_epochs) / span, 1.0)
    return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * t))


def warmup_cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                  start_step: int = 0) -> LambdaLR:
    """The schedule of ``cfg`` on ``optimizer``, its first learning rate already set: that of
    ``start_step``, the number of steps already taken (0, or where a resumed run continues). Peak
    ``cfg.lr`` and length ``cfg.epochs`` are this run's, so a resumed run follows the recipe it
    is given, as it always has."""
    def factor(step: int) -> float:
        # Epoch and step within it, as whole numbers first: the same float progress as counting
        # epochs, so every learning rate is bit for bit the one epoch + step / steps gives.
        return lr_factor(step // steps_per_epoch + step % steps_per_epoch / steps_per_epoch, cfg)

    for group in optimizer.param_groups:
        group['initial_lr'] = cfg.lr
    return LambdaLR(optimizer, factor, last_epoch=start_step - 1)
