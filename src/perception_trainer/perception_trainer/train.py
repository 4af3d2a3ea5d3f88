"""``perception-train``: train a detector from a recipe; one script for CPU, one GPU and ``torchrun``.

Every epoch: a progress bar with loss and ETA, validation loss and COCO mAP (on the averaged
weights), TensorBoard scalars, ``history.json``, and atomically written ``last.pt`` (every epoch)
and ``best.pt`` (best mAP@[.5:.95]). ``--resume`` continues from ``last.pt``, so a kill loses at
most the epoch in progress, on any number of processes.

Under ``torchrun --nproc-per-node N``: DistributedSampler shards the data, batch-norm is
synchronised on CUDA if ``sync_bn`` asks, losses and metrics cover all ranks, and only rank 0 writes.
"""

from __future__ import annotations

import logging
import math
import os
import random
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torch.utils.tensorboard import SummaryWriter
from tqdm import tqdm

from perception_core import atomic
from perception_core.bundle import InputSpec
from perception_core.coco_metrics import Metrics, evaluate
from perception_core.decode import Thresholds

from . import checkpoint, distributed
from .annotations import LabelledSet, Sample
from .architectures import ARCHITECTURES, Architecture
from .config import TrainConfig, parse_config
from .precision import autocast
from .predictions import decode_batch
from .readers import load_dataset
from .training_data import DetectionDataset, normalise
from .versions import versions
from .weight_average import WeightAverage

log = logging.getLogger('perception_trainer.train')
GRAD_CLIP = 10.0
FINAL_LR = 0.02  # fraction of the peak learning rate left at the end of the cosine schedule
VALIDATION_NMS = 0.6


def pick_device(kind: str, process: distributed.Process) -> torch.device:
    if kind == 'cuda' or (kind == 'auto' and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise RuntimeError('device cuda asked for, but torch sees no CUDA device')
        return torch.device('cuda', process.local_rank)
    return torch.device('cpu')


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def split(labelled: LabelledSet, fraction: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """A fixed random ``fraction`` of the images for validation, the rest for training."""
    order = np.random.default_rng(seed).permutation(len(labelled.samples))
    n_val = max(1, round(len(order) * fraction))
    if n_val >= len(order):
        raise ValueError(f'{labelled.source}: {len(order)} images are too few to hold some out')
    val = set(order[:n_val].tolist())
    return ([s for i, s in enumerate(labelled.samples) if i not in val],
            [s for i, s in enumerate(labelled.samples) if i in val])


def lr_factor(progress: float, cfg: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to FINAL_LR; ``progress`` in epochs (fractional)."""
    if progress < cfg.warmup_epochs:
        return max(progress / cfg.warmup_epochs, 1e-3)
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    t = min((progress - cfg.warmup_epochs) / span, 1.0)
    return FINAL_LR + (1 - FINAL_LR) * 0.5 * (1 + math.cos(math.pi * t))


def _loader(dataset: DetectionDataset, cfg: TrainConfig, process: distributed.Process, *, train: bool,
            device: torch.device) -> tuple[DataLoader, DistributedSampler | None]:
    sampler: Any
    if process.distributed:
        sampler = DistributedSampler(dataset, num_replicas=process.world, rank=process.rank,
                                     shuffle=train, seed=cfg.seed)
    elif train:
        sampler = RandomSampler(dataset, generator=torch.Generator().manual_seed(cfg.seed))
    else:
        sampler = SequentialSampler(dataset)
    loader = DataLoader(dataset, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.workers,
                        drop_last=train and len(dataset) >= cfg.batch_size * process.world,
                        pin_memory=device.type == 'cuda')
    return loader, sampler if process.distributed else None


def _datasets(cfg: TrainConfig, process: distributed.Process
              ) -> tuple[LabelledSet, list[Sample], list[Sample], dict[str, Any]]:
    train_set = load_dataset(cfg.train_data, cfg.data_format, cfg.classes)
    if cfg.val_data:
        val_set = load_dataset(cfg.val_data, cfg.data_format, train_set.classes)
        train_samples, val_samples = train_set.samples, val_set.samples
        summary = {'train': train_set.summary(), 'val': val_set.summary()}
        issues = train_set.issues + val_set.issues
    else:
        train_samples, val_samples = split(train_set, cfg.val_fraction, cfg.seed)
        summary = {'train': train_set.summary(), 'val': {'split_from_train': len(val_samples)}}
        issues = train_set.issues
    if process.main and issues:
        atomic.write_text(Path(cfg.out) / 'data_issues.txt', '\n'.join(issues) + '\n')
        log.warning('%d annotation issues skipped; all listed in %s', len(issues),
                    Path(cfg.out) / 'data_issues.txt')
    return train_set, train_samples, val_samples, summary


@dataclass(frozen=True)
class Run:
    """What every step of one training process needs to know."""

    cfg: TrainConfig
    arch: Architecture
    spec: InputSpec
    classes: tuple[str, ...]
    process: distributed.Process
    device: torch.device


@torch.no_grad()
def validate(model: torch.nn.Module, loader: DataLoader, run: Run) -> tuple[float, Metrics | None]:
    """Validation loss (all ranks) and COCO metrics (rank 0; None elsewhere)."""
    cfg, arch, spec, classes, process, device = (run.cfg, run.arch, run.spec, run.classes, run.process,
                                                 run.device)
    model.eval()
    dataset: DetectionDataset = loader.dataset  # type: ignore[assignment]
    thresholds = Thresholds(cfg.eval_score_threshold, VALIDATION_NMS, 100)
    loss_sum = torch.zeros(2, device=device)
    found: dict[int, Any] = {}
    for batch in loader:
        images = normalise(batch['image'].to(device, non_blocking=True), spec)
        targets = {k: v.to(device) for k, v in batch.items() if k not in ('image', 'index', 'valid')}
        with autocast(cfg, device):
            outputs = model(images)
        n = images.shape[0]
        loss_sum += torch.stack([arch.loss(outputs, targets)['loss'].detach().float() * n,
                                 torch.tensor(float(n), device=device)])
        # Decode in float32 as the exported graph does: bf16 would round box corners to ~2 px.
        bundle_outputs = [o.cpu().numpy() for o in arch.head(tuple(o.float() for o in outputs))]
        indices = batch['index'].tolist()
        detections = decode_batch(bundle_outputs, arch.output_format, len(classes),
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
    return val_loss, evaluate(samples, classes, renumbered)


def _meta(run: Run, data_summary: dict[str, Any]) -> dict[str, Any]:
    spec_dict = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(run.spec).items()}
    return {'arch': run.arch.name, 'classes': list(run.classes), 'input': spec_dict,
            'config': run.cfg.model_dump(), 'data': data_summary, 'versions': versions()}


def _configure_torch(cfg: TrainConfig, device: torch.device) -> None:
    if cfg.workers:
        # The loader workers do the image work, a core each: OpenCV's own thread pool in each of them
        # would oversubscribe the cores. Set here, before they fork: setting it inside a forked
        # worker deadlocks once the parent's pool has run.
        cv2.setNumThreads(1)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == 'cuda':
        torch.backends.cudnn.deterministic = cfg.deterministic
        torch.backends.cudnn.benchmark = not cfg.deterministic
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def train(cfg: TrainConfig) -> Path:
    """Run the recipe; returns the best checkpoint's path."""
    started = time.perf_counter()
    process = distributed.start('cuda' if cfg.device == 'cuda' or (
        cfg.device == 'auto' and torch.cuda.is_available()) else 'cpu')
    try:
        return _train(cfg, process, started)
    finally:
        distributed.stop(process)


def _train(cfg: TrainConfig, process: distributed.Process, started: float) -> Path:
    device = pick_device(cfg.device, process)
    _configure_torch(cfg, device)
    seed_everything(cfg.seed + process.rank)
    out = Path(cfg.out)
    arch = ARCHITECTURES[cfg.arch]
    height, width = (cfg.input_height, cfg.input_width) if cfg.input_height else arch.input_size
    spec = arch.input_spec(int(height), int(width))
    train_set, train_samples, val_samples, data_summary = _datasets(cfg, process)
    classes = train_set.classes
    if process.main:
        atomic.write_text(out / 'config.yaml', yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        log.info('%s: %d train / %d val images, %d classes, input %dx%d, device %s x%d',
                 cfg.arch, len(train_samples), len(val_samples), len(classes), width, height, device,
                 process.world)
    show = process.main
    train_data = DetectionDataset(train_samples, spec, arch.encode, len(classes), train=True,
                                  augment=cfg.augment, seed=cfg.seed, cache=cfg.cache_images, progress=show)
    val_data = DetectionDataset(val_samples, spec, arch.encode, len(classes), train=False,
                                cache=cfg.cache_images, progress=show)
    train_loader, train_sampler = _loader(train_data, cfg, process, train=True, device=device)
    val_loader, _ = _loader(val_data, cfg, process, train=False, device=device)

    run = Run(cfg, arch, spec, tuple(classes), process, device)
    model = arch.build(len(classes))
    meta = _meta(run, data_summary)
    average = WeightAverage(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    start_epoch, best, history, elapsed_before = 0, -1.0, [], 0.0
    if cfg.resume and (out / checkpoint.LAST).is_file():
        state = checkpoint.load(out / checkpoint.LAST)
        if state['meta']['classes'] != list(classes) or state['meta']['arch'] != arch.name:
            raise ValueError(f'{out / checkpoint.LAST}: trained for {state["meta"]["arch"]} on '
                             f'{state["meta"]["classes"]}, not this recipe; use a new --out')
        model.load_state_dict(state['model'])
        average.model.load_state_dict(state['average'])
        average.updates = int(state['average_updates'])
        optimizer.load_state_dict(state['optimizer'])
        start_epoch, best, history = int(state['epoch']), float(state['best']), list(state['history'])
        elapsed_before = float(history[-1]['elapsed_s']) if history else 0.0
        if process.main:
            log.info('resumed from %s at epoch %d', out / checkpoint.LAST, start_epoch + 1)
    elif cfg.resume and process.main:
        log.warning('%s: nothing to resume, starting fresh', out / checkpoint.LAST)

    cuda = device.type == 'cuda'
    channels_last = cfg.channels_last and cuda
    model.to(device, memory_format=torch.channels_last if channels_last else torch.preserve_format)
    average.model.to(device)
    if process.distributed and cuda and cfg.sync_bn:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    net = (DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
           if process.distributed else model)
    scaler = torch.amp.GradScaler('cuda', enabled=cfg.amp and cuda and not torch.cuda.is_bf16_supported())
    writer = SummaryWriter(str(out / 'tensorboard')) if process.main else None
    steps = len(train_loader)
    if steps == 0:
        raise ValueError(f'{cfg.train_data}: fewer training images than one batch')

    for epoch in range(start_epoch, cfg.epochs):
        epoch_start = time.perf_counter()
        train_data.epoch = epoch
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        net.train()
        sums = torch.zeros(3, device=device)
        bar = tqdm(train_loader, desc=f'epoch {epoch + 1}/{cfg.epochs}', unit='batch', disable=not show,
                   dynamic_ncols=True)
        for step, batch in enumerate(bar):
            for group in optimizer.param_groups:
                group['lr'] = cfg.lr * lr_factor(epoch + step / steps, cfg)
            images = normalise(batch['image'].to(device, non_blocking=True), spec)
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            targets = {k: v.to(device, non_blocking=True) for k, v in batch.items()
                       if k not in ('image', 'index', 'valid')}
            with autocast(cfg, device):
                outputs = net(images)
            losses = arch.loss(outputs, targets)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses['loss']).backward()
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
            scaler.step(optimizer)
            scaler.update()
            average.update(model)
            parts = list(losses.values())
            sums += torch.stack([parts[0].detach(), parts[1].detach(), parts[2].detach()]).float()
            if show and (step % 10 == 0 or step == steps - 1):
                bar.set_postfix(loss=f'{sums[0].item() / (step + 1):.3f}')
        bar.close()
        train_seconds = time.perf_counter() - epoch_start
        means = (distributed.mean(process, sums) / steps).tolist()
        images_per_s = steps * cfg.batch_size * process.world / train_seconds
        record: dict[str, Any] = {'epoch': epoch + 1, 'train_loss': means[0],
                                  'train_loss_parts': dict(zip(list(losses)[1:], means[1:], strict=True)),
                                  'lr': optimizer.param_groups[0]['lr'], 'images_per_s': images_per_s}
        last = epoch + 1 == cfg.epochs
        out_of_time = cfg.time_limit_minutes > 0 and (
            elapsed_before + time.perf_counter() - started > cfg.time_limit_minutes * 60)
        metrics = None
        if (epoch + 1) % cfg.eval_interval == 0 or last or out_of_time:
            record['val_loss'], metrics = validate(average.model, val_loader, run)
            if metrics is not None:
                record.update(metrics.summary())
        record['elapsed_s'] = elapsed_before + time.perf_counter() - started
        history.append(record)
        if process.main:
            improved = metrics is not None and metrics.map > best
            best = metrics.map if improved else best
            _report(record, writer, epoch)
            state = {'model': model.state_dict(), 'average': average.model.state_dict(),
                     'average_updates': average.updates, 'optimizer': optimizer.state_dict(),
                     'epoch': epoch + 1, 'best': best, 'history': history,
                     'meta': {**meta, 'epoch': epoch + 1, 'metrics': record}}
            # A model converted to SyncBatchNorm saves the same keys as a plain one.
            checkpoint.save(out / checkpoint.LAST, state)
            if improved or not (out / checkpoint.BEST).exists():
                checkpoint.save(out / checkpoint.BEST, {'model': average.model.state_dict(),
                                                        'meta': state['meta']})
            atomic.write_json(out / 'history.json', history)
        distributed.barrier(process)
        if out_of_time and not last:
            if process.main:
                log.info('time limit of %.1f min reached after epoch %d', cfg.time_limit_minutes, epoch + 1)
            break
    if writer is not None:
        writer.close()
    if process.main:
        log.info('best mAP@[.5:.95] %.4f; checkpoints in %s', best, out)
    return out / checkpoint.BEST


def _report(record: dict[str, Any], writer: SummaryWriter | None, epoch: int) -> None:
    text = (f"epoch {record['epoch']}: train loss {record['train_loss']:.4f}, "
            f"{record['images_per_s']:.1f} img/s")
    if 'mAP' in record:
        text += (f", val loss {record['val_loss']:.4f}, mAP {record['mAP']:.4f}, "
                 f"mAP50 {record['mAP50']:.4f}")
    log.info('%s, %.0f s elapsed', text, record['elapsed_s'])
    if writer is None:
        return
    for key in ('train_loss', 'val_loss', 'mAP', 'mAP50', 'mAP75', 'lr', 'images_per_s'):
        if key in record:
            writer.add_scalar(key, record[key], epoch + 1)
    for key, value in record['train_loss_parts'].items():
        writer.add_scalar(f'train_loss/{key}', value, epoch + 1)
    writer.flush()


def main(argv: Sequence[str] | None = None) -> None:
    cfg = parse_config(argv)
    rank = int(os.environ.get('RANK', '0'))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    best = train(cfg)
    if rank == 0:
        print(f'best checkpoint: {best}')


if __name__ == '__main__':
    main()
