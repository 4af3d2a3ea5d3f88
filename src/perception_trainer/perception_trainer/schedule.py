"""The learning-rate schedule: linear warm-up, then cosine decay to ``FINAL_LR`` of the peak, set
every optimiser step by a ``LambdaLR`` counting steps."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch.optim.lr_scheduler import LambdaLR

from .config import TrainConfig

FINAL_LR = 0.02  # fraction of the peak learning rate left at the end of the cosine schedule


class Horizon:
    """The schedule's length in epochs: ``cfg.epochs``, or fewer where a time-limited run fits it to
    its time (``fit``, after each epoch), so the cosine ends when time does."""

    def __init__(self, epochs: int) -> None:
        self.epochs = epochs

    def fit(self, cfg: TrainConfig, epochs_done: int, seconds_per_epoch: float, seconds_left: float) -> int:
        """Epochs done plus those that fit the time left, within [epochs done, cfg.epochs]."""
        more = int(max(seconds_left, 0.0) // max(seconds_per_epoch, 1e-9))
        self.epochs = max(epochs_done, min(cfg.epochs, epochs_done + more))
        return self.epochs


def epoch_pace(epoch_seconds: Sequence[float]) -> float:
    """Seconds an epoch ahead will take: the mean of the epochs after the first, which also starts
    the loader, warms the caches and compiles the network (a pace that counted a compile planned a
    fraction of the epochs that fit: bench/README.md); the first alone until another has run."""
    later = epoch_seconds[1:] or epoch_seconds[:1]
    return sum(later) / len(later)


def lr_factor(progress: float, cfg: TrainConfig, epochs: float | None = None) -> float:
    """Linear warm-up, then cosine decay to FINAL_LR over ``epochs`` (``cfg.epochs`` by default);
    ``progress`` in epochs (fractional)."""
    if progress < cfg.warmup_epochs:
        return max(progress / cfg.warmup_epochs, 1e-3)
    span = max((cfg.epochs if epochs is None else epochs) - cfg.warmup_epochs, 1e-9)
    t = min((progress - cfg.warmup_epochs) / span, 1.0)
    return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * t))


def warmup_cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int,
                  start_step: int = 0, horizon: Horizon | None = None) -> LambdaLR:
    """The schedule of ``cfg`` on ``optimizer``, its first learning rate already set: that of
    ``start_step``, the number of steps already taken (0, or where a resumed run continues). Peak
    ``cfg.lr`` and length ``cfg.epochs`` are this run's, so a resumed run follows the recipe it
    is given, as it always has. ``horizon``: its length, read at every step (a time-fitted run
    changes it)."""
    def factor(step: int) -> float:
        # Epoch and step within it, as whole numbers first: the same float progress as counting
        # epochs, so every learning rate is bit for bit the one epoch + step / steps gives.
        return lr_factor(step // steps_per_epoch + step % steps_per_epoch / steps_per_epoch, cfg,
                         None if horizon is None else horizon.epochs)

    for group in optimizer.param_groups:
        group['initial_lr'] = cfg.lr
    return LambdaLR(optimizer, factor, last_epoch=start_step - 1)
