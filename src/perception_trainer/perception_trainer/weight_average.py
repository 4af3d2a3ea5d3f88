"""Exponential moving average of the weights, the ones validated, checkpointed as best and
exported: it smooths the last epochs' noise for free."""

from __future__ import annotations

import copy
import math

import torch
from torch import nn


class WeightAverage:
    def __init__(self, model: nn.Module, decay: float = 0.998, warmup_steps: float = 300.0) -> None:
        self.model = copy.deepcopy(model).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.warmup_steps = warmup_steps  # early on the average follows the weights closely
        self.updates = 0

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.decay * (1 - math.exp(-self.updates / self.warmup_steps))
        averaged, current, counters = [], [], []
        for mine, theirs in zip(self.model.state_dict().values(), model.state_dict().values(), strict=True):
            if mine.dtype.is_floating_point:
                averaged.append(mine)
                current.append(theirs.detach())
            else:
                counters.append((mine, theirs))
        # One fused kernel for all tensors: a loop would launch one per tensor, every training step.
        torch._foreach_lerp_(averaged, current, 1 - d)
        for mine, theirs in counters:
            mine.copy_(theirs)
