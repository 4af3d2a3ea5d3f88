"""Checkpoints: written atomically, read with ``weights_only=True`` (plain tensors and Python
containers only, no pickled code); :class:`TrainingState`, what one holds to resume a run."""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from perception_core.atomic import atomic_path

from .weight_average import WeightAverage

LAST, BEST = 'last.pt', 'best.pt'


class CheckpointError(ValueError):
    """A checkpoint that cannot be read; the message names the file."""


def save(path: str | Path, state: dict[str, Any]) -> Path:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)
    return Path(path)


def load(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise CheckpointError(f'{path}: unreadable checkpoint: {exc}') from exc
    if not isinstance(state, dict) or 'model' not in state or 'meta' not in state:
        raise CheckpointError(f'{path}: not a perception-train checkpoint (needs model and meta)')
    return state


@dataclass
class TrainingState:
    """Everything that changes as training steps, so a resumed run continues as if never stopped:
    the weights, their average, the optimiser, the learning-rate schedule and the loss scale."""

    model: nn.Module
    average: WeightAverage
    optimizer: torch.optim.Optimizer
    scheduler: LRScheduler
    scaler: torch.amp.GradScaler

    def state_dict(self) -> dict[str, Any]:
        # A model converted to SyncBatchNorm saves the same keys as a plain one.
        return {'model': self.model.state_dict(), 'average': self.average.model.state_dict(),
                'average_updates': self.average.updates, 'optimizer': self.optimizer.state_dict(),
                'scheduler': self.scheduler.state_dict(), 'scaler': self.scaler.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> bool:
        """Restore ``state`` (from :meth:`state_dict`, or a checkpoint written before the schedule
        and scale were saved). The scheduler must already stand where this run continues
        (``schedule.warmup_cosine(..., start_step)``); its saved state is restored when it agrees
        with that, i.e. the same step and peak. It does not after a resume on another number of
        processes (another number of steps per epoch) or with another ``lr``: then the schedule
        stays as this run placed it. Returns whether the saved schedule was restored."""
        self.model.load_state_dict(state['model'])
        self.average.model.load_state_dict(state['average'])
        self.average.updates = int(state['average_updates'])
        self.optimizer.load_state_dict(state['optimizer'])
        saved, placed = state.get('scheduler'), self.scheduler.state_dict()
        restored = bool(saved) and all(saved.get(k) == placed[k] for k in ('last_epoch', 'base_lrs'))
        if restored:
            self.scheduler.load_state_dict(saved)
        # The optimiser's saved learning rates are the checkpointed run's; the schedule sets them.
        for group, lr, base in zip(self.optimizer.param_groups, self.scheduler.get_last_lr(),
                                   self.scheduler.base_lrs, strict=True):
            group['lr'], group['initial_lr'] = lr, base
        # An empty scale state comes from a disabled scaler (CPU, bf16): nothing to continue.
        if state.get('scaler'):
            self.scaler.load_state_dict(state['scaler'])
        return restored
