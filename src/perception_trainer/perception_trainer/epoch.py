"""One pass over the data: :func:`train_one_epoch` (optimiser steps) and :func:`evaluate`
(validation loss and COCO metrics), in the shape of torchvision's detection references; ``train.py``
orchestrates them."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import torch
from torch.utils.data import DataLoader
from tqdm import tqdm

from perception_core import coco_metrics
from perception_core.bundle import InputSpec
from perception_core.coco_metrics import Metrics
from perception_core.decode import Thresholds
from perception_core.interrupt import stop_on_ctrl_c

from . import distributed, photometric
from .architectures import Architecture
from .checkpoint import TrainingState
from .compilation import begin_step
from .config import TrainConfig
from .precision import autocast
from .predictions import decode_batch
from .training_data import DetectionDataset, normalise

GRAD_CLIP = 10.0
VALIDATION_NMS = 0.6
NOT_TARGETS = ('image', 'index', 'valid', 'photometric')  # batch entries that are not loss targets


class NonFiniteLoss(RuntimeError):
    """A training loss that is NaN or infinite; the message names the epoch, the step and the part."""


@dataclass(frozen=True)
class Run:
    """What every step of one training process needs to know."""

    cfg: TrainConfig
    arch: Architecture
    spec: InputSpec
    classes: tuple[str, ...]
    process: distributed.Process
    device: torch.device

    @property
    def channels_last(self) -> bool:
        # On the CPU too: oneDNN's convolutions run the tiny model's training step about twice as
        # fast channels-last (bench/README "CPU training step").
        return self.cfg.channels_last

    @cached_property
    def device_photometric(self) -> photometric.OnDevice:
        # One per training run, so each batch shape's CUDA graph is captured once, not every epoch.
        return photometric.OnDevice(self.device)


@dataclass(frozen=True)
class EpochLosses:
    means: dict[str, float]  # 'loss' and every part, averaged over the steps and the processes
    lr: float                # the learning rate of the epoch's last step
    seconds: float


def batch_targets(batch: dict[str, Any], run: Run) -> dict[str, torch.Tensor]:
    """A loader batch's loss targets on the training device: copied there, or (``targets_on:
    device``) encoded there from the batch's padded boxes and labels."""
    if 'labels' not in batch:
        return {k: v.to(run.device, non_blocking=True) for k, v in batch.items() if k not in NOT_TARGETS}
    encode = run.arch.encode_batch
    if encode is None:
        raise ValueError(f'--arch {run.arch.name} encodes its targets in the loader only (targets_on loader)')
    boxes, labels = (batch[k].to(run.device, non_blocking=True) for k in ('boxes', 'labels'))
    return encode(boxes, labels, len(run.classes), run.spec.height, run.spec.width)


def _check_finite(values: torch.Tensor, names: list[str], where: str) -> None:
    if bool(torch.isfinite(values).all()):
        return
    found = dict(zip(names, values.tolist(), strict=True))
    bad = [name for name, value in found.items() if name != 'loss' and not math.isfinite(value)] or ['loss']
    parts = ', '.join(f'{name} {value:.4g}' for name, value in found.items())
    raise NonFiniteLoss(f'{where}: non-finite training loss from {", ".join(bad)} ({parts}); stopped '
                        f'before the optimiser step: try a lower --lr, or check the annotations in '
                        f'this step\'s batch')


def train_step(net: torch.nn.Module, state: TrainingState, images: torch.Tensor,
               targets: dict[str, torch.Tensor], run: Run, *, where: str) -> tuple[list[str], torch.Tensor]:
    """One optimiser step on a batch already on the device (``images`` uint8, or float 0-255 after
    :class:`photometric.OnDevice`); the schedule, the loss scale and the weight average step with
    it. -> (the loss parts' names, in the order arch.loss returns them, and their values).
    ``where`` names the step in a NonFiniteLoss."""
    begin_step(run.cfg)
    inputs = normalise(images, run.spec)
    if run.channels_last:
        inputs = inputs.contiguous(memory_format=torch.channels_last)
    with autocast(run.cfg, run.device):
        outputs = net(inputs)
    losses = run.arch.loss(outputs, targets)
    values = torch.stack([v.detach() for v in losses.values()]).float()
    names = list(losses)
    # One read back to the host per step: the price of stopping before a NaN reaches the weights.
    _check_finite(values, names, where)
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(losses['loss']).backward()
    state.scaler.unscale_(state.optimizer)
    torch.nn.utils.clip_grad_norm_(state.model.parameters(), GRAD_CLIP)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    state.scheduler.step()
    state.average.update(state.model)
    return names, values


def train_one_epoch(net: torch.nn.Module, state: TrainingState, loader: DataLoader, run: Run, epoch: int,
                    *, show: bool = False) -> EpochLosses:
    """One epoch of optimiser steps on ``net`` (``state.model``, or its DistributedDataParallel
    wrapper); the schedule, the loss scale and the weight average step with it."""
    cfg, device, steps = run.cfg, run.device, len(loader)
    rank = f'rank {run.process.rank}, ' if run.process.distributed else ''
    started = time.perf_counter()
    net.train()
    names: list[str] = []  # the loss parts, in the order arch.loss returns them
    sums = torch.zeros(0, device=device)
    lr = state.optimizer.param_groups[0]['lr']
    bar = tqdm(stop_on_ctrl_c(loader), total=steps, desc=f'epoch {epoch + 1}/{cfg.epochs}', unit='batch',
               disable=not show, dynamic_ncols=True)
    for step, batch in enumerate(bar):
        lr = state.optimizer.param_groups[0]['lr']
        images = batch['image'].to(device, non_blocking=True)
        if 'photometric' in batch:  # photometric_on: device
            images = run.device_photometric(images, batch['photometric'], photometric.generator_for(
                device, cfg.seed, epoch, int(batch['index'][0])))
        targets = batch_targets(batch, run)
        names, values = train_step(net, state, images, targets, run,
                                   where=f'{rank}epoch {epoch + 1}, step {step + 1}/{steps}')
        if step == 0:
            sums = torch.zeros_like(values)
        sums += values
        if show and (step % 10 == 0 or step == steps - 1):
            bar.set_postfix(loss=f'{sums[names.index("loss")].item() / (step + 1):.3f}')
    bar.close()
    seconds = time.perf_counter() - started
    means = (distributed.mean(run.process, sums) / steps).tolist()
    return EpochLosses(dict(zip(names, means, strict=True)), lr, seconds)


@torch.no_grad()
def evaluate(model: torch.nn.Module, loader: DataLoader, run: Run) -> tuple[float, Metrics | None]:
    """Validation loss (all ranks) and COCO metrics (rank 0; None elsewhere)."""
    cfg, arch, process, device = run.cfg, run.arch, run.process, run.device
    model.eval()
    dataset: DetectionDataset = loader.dataset  # type: ignore[assignment]
    thresholds = Thresholds(cfg.eval_score_threshold, VALIDATION_NMS, 100)
    loss_sum = torch.zeros(2, device=device)
    found: dict[int, Any] = {}
    for batch in stop_on_ctrl_c(loader):
        images = normalise(batch['image'].to(device, non_blocking=True), run.spec)
        targets = batch_targets(batch, run)
        with autocast(cfg, device):
            outputs = model(images)
        n = images.shape[0]
        loss_sum += torch.stack([arch.loss(outputs, targets)['loss'].detach().float() * n,
                                 torch.tensor(float(n), device=device)])
        # Decode in float32 as the exported graph does: bf16 keeps 8 significant bits, too few for
        # box corners in pixels.
        bundle_outputs = [o.cpu().numpy() for o in arch.head(tuple(o.float() for o in outputs))]
        indices = batch['index'].tolist()
        detections = decode_batch(bundle_outputs, arch.output_format, len(run.classes),
                                  [dataset.transform_of(i) for i in indices], thresholds)
        for i, valid, d in zip(indices, batch['valid'].tolist(), detections, strict=True):
            if valid:
                found[i] = d
    loss_sum = distributed.total(process, loss_sum)
    val_loss = float(loss_sum[0] / loss_sum[1].clamp(min=1))
    merged: dict[int, Any] = {}
    for part in distributed.gather(process, found):
        merged.update(part)
    if not process.main:
        return val_loss, None
    unreadable = {i for i in range(len(dataset)) if i not in merged}
    samples = [s for i, s in enumerate(dataset.samples) if i not in unreadable]
    renumbered = {j: merged[i] for j, i in enumerate(i for i in range(len(dataset)) if i not in unreadable)}
    return val_loss, coco_metrics.evaluate(samples, run.classes, renumbered, fast=True)
