"""``perception-train``: train a detector from a recipe; one script for CPU, one GPU and ``torchrun``.

This module sets a run up and orchestrates it: data, model, resume, the epoch loop (the epochs
themselves are :mod:`.epoch`'s), validation cadence, checkpoints and the time limit. Every epoch:
a progress bar with loss and ETA, validation loss and COCO mAP (on the averaged weights),
TensorBoard scalars, ``history.json``, and atomically written ``last.pt`` (every epoch) and
``best.pt`` (best mAP@[.5:.95]). ``--resume`` continues from ``last.pt``, so a kill loses at most
the epoch in progress, on any number of processes.

Under ``torchrun --nproc-per-node N``: DistributedSampler shards the data, batch-norm is
synchronised on CUDA if ``sync_bn`` asks, losses and metrics cover all ranks, and only rank 0 writes.
"""

from __future__ import annotations

import logging
import os
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
import yaml
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, DistributedSampler, RandomSampler, SequentialSampler
from torch.utils.tensorboard import SummaryWriter

from perception_core import atomic
from perception_core.interrupt import EXIT_INTERRUPTED, ctrl_c_remembered, interrupted, leave_to_parent

from . import backbones, checkpoint, distributed, photometric
from .annotations import DatasetError, LabelledSet, Sample
from .architectures import ARCHITECTURES, Architecture, model_options
from .checkpoint import TrainingState
from .compilation import compiled_network
from .config import ConfigError, TrainConfig, loader_workers, parse_command
from .epoch import NonFiniteLoss, Run, evaluate, train_one_epoch
from .launch import run_ranks
from .readers import load_dataset
from .schedule import Horizon, epoch_pace, warmup_cosine
from .training_data import DetectionDataset, collate
from .versions import versions
from .weight_average import WeightAverage

log = logging.getLogger('perception_trainer.train')
# What a user's recipe, data or checkpoint can cause: a message naming the thing, no traceback.
TRAINING_ERRORS = (ConfigError, DatasetError, checkpoint.CheckpointError, backbones.PretrainedError,
                   NonFiniteLoss)


def device_type(setting: str) -> str:
    """'cuda' or 'cpu': what the ``device`` setting (auto, cuda, cpu) trains on here."""
    return 'cuda' if setting == 'cuda' or (setting == 'auto' and torch.cuda.is_available()) else 'cpu'


def pick_device(kind: str, process: distributed.Process) -> torch.device:
    if device_type(kind) == 'cuda':
        if not torch.cuda.is_available():
            raise ConfigError('device cuda: torch sees no CUDA device here (device auto or cpu trains on '
                              'the CPU)')
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
        raise DatasetError(f'{labelled.source}: {len(order)} images are too few to hold some out for '
                           f'validation: give val_data')
    val = set(order[:n_val].tolist())
    return ([s for i, s in enumerate(labelled.samples) if i not in val],
            [s for i, s in enumerate(labelled.samples) if i in val])


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
                        pin_memory=device.type == 'cuda', collate_fn=collate,
                        worker_init_fn=leave_to_parent)
    return loader, sampler if process.distributed else None


def _datasets(cfg: TrainConfig, process: distributed.Process
              ) -> tuple[LabelledSet, list[Sample], list[Sample], dict[str, Any]]:
    train_set = load_dataset(cfg.train_data, cfg.data_format, cfg.classes, max_occlusion=cfg.max_occlusion,
                             class_map=cfg.class_map)
    if cfg.val_data:
        val_set = load_dataset(cfg.val_data, cfg.data_format, train_set.classes,
                               max_occlusion=cfg.max_occlusion, class_map=cfg.class_map)
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
    process = distributed.start(device_type(cfg.device))
    try:
        with ctrl_c_remembered():
            return _train(cfg, process, started)
    finally:
        distributed.stop(process)


def _checkpoint_to_resume(cfg: TrainConfig, arch: Architecture, classes: Sequence[str],
                          process: distributed.Process) -> dict[str, Any] | None:
    path = Path(cfg.out) / checkpoint.LAST
    if not cfg.resume:
        return None
    if not path.is_file():
        if process.main:
            log.warning('%s: nothing to resume, starting fresh', path)
        return None
    saved = checkpoint.load(path)
    meta = saved['meta']
    # Checkpoints of the single-object model written before its rename record 'lesson'.
    if meta['classes'] != list(classes) or ARCHITECTURES.canonical(meta['arch']) != arch.name:
        raise ConfigError(f'{path}: trained for {meta["arch"]} on {meta["classes"]}, not this recipe; '
                          'use a new --out')
    ours = {'backbone': cfg.backbone, 'size': cfg.size}
    if model_options(meta) != ours:
        raise ConfigError(f'{path}: a {model_options(meta)} model, not this recipe\'s {ours}; '
                          'use a new --out')
    return saved


def _training_state(run: Run, steps: int, start_epoch: int, horizon: Horizon | None = None, *,
                    resuming: bool) -> TrainingState:
    """``horizon``: the schedule's length, which a time-fitted run changes (None: ``cfg.epochs``)."""
    cfg, device = run.cfg, run.device
    model = run.arch.model(len(run.classes), cfg.backbone, cfg.size)
    if cfg.pretrained and not resuming:  # a resumed run's weights come from its checkpoint
        state, source = backbones.read_checkpoint(cfg.pretrained)
        backbones.load_torchvision_weights(model.backbone, state, source)
        if run.process.main:
            log.info('backbone %s: ImageNet weights from %s', cfg.backbone, source)
    average = WeightAverage(model)
    # On the device before any state loads, so the optimiser's moments load where the weights are.
    # The average in the weights' memory format: torch._foreach_lerp_ takes its one-kernel path only
    # for tensors of one layout, and fell back to a kernel per tensor (3.2 ms of a 21 ms step on
    # the H200, bench/README.md "Where a training step's time goes").
    memory_format = torch.channels_last if run.channels_last else torch.preserve_format
    model.to(device, memory_format=memory_format)
    average.model.to(device, memory_format=memory_format)
    # fused: one kernel for every parameter's update on the GPU instead of a few per tensor group
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                  fused=device.type == 'cuda')
    # fp16 needs loss scaling; bf16 and fp32 (CPU) do not, and a disabled scaler passes through.
    fp16 = cfg.amp and device.type == 'cuda' and not torch.cuda.is_bf16_supported()
    schedule = warmup_cosine(optimizer, cfg, steps, start_epoch * steps, horizon)
    return TrainingState(model, average, optimizer, schedule, torch.amp.GradScaler('cuda', enabled=fp16))


def _save(out: Path, state: TrainingState, meta: dict[str, Any], best: float, history: list[dict[str, Any]],
          *, improved: bool) -> None:
    checkpoint.save(out / checkpoint.LAST, {**state.state_dict(), 'epoch': meta['epoch'], 'best': best,
                                            'history': history, 'meta': meta})
    if improved or not (out / checkpoint.BEST).exists():
        checkpoint.save(out / checkpoint.BEST, {'model': state.average.model.state_dict(), 'meta': meta})
    atomic.write_json(out / 'history.json', history)


def _train(cfg: TrainConfig, process: distributed.Process, started: float) -> Path:
    device = pick_device(cfg.device, process)
    cores = len(os.sched_getaffinity(0))
    arch = ARCHITECTURES[cfg.arch]
    cfg = cfg.model_copy(update={'workers': loader_workers(cfg.workers, device.type, cores, process.world),
                                 'photometric_on': photometric.place(cfg.photometric_on, cfg.augment,
                                                                     device.type),
                                 'targets_on': arch.targets_place(cfg.targets_on, device.type)})
    _configure_torch(cfg, device)
    seed_everything(cfg.seed + process.rank)
    out = Path(cfg.out)
    height, width = (cfg.input_height, cfg.input_width) if cfg.input_height else arch.input_size
    spec = arch.input_spec(int(height), int(width), imagenet=cfg.pretrained is not None)
    train_set, train_samples, val_samples, data_summary = _datasets(cfg, process)
    classes = train_set.classes
    if process.main:
        atomic.write_text(out / 'config.yaml', yaml.safe_dump(cfg.model_dump(), sort_keys=False))
        log.info('%s: %d train / %d val images, %d classes, input %dx%d, device %s x%d',
                 cfg.arch, len(train_samples), len(val_samples), len(classes), width, height, device,
                 process.world)
    show = process.main
    encode = arch.encode if cfg.targets_on == 'loader' else None  # None: encode_batch on the device
    train_data = DetectionDataset(train_samples, spec, encode, len(classes), train=True,
                                  augment=cfg.augment, seed=cfg.seed, cache=cfg.cache_images, progress=show,
                                  photometric=cfg.photometric_on)
    val_data = DetectionDataset(val_samples, spec, encode, len(classes), train=False,
                                cache=cfg.cache_images, progress=show)
    train_loader, train_sampler = _loader(train_data, cfg, process, train=True, device=device)
    val_loader, _ = _loader(val_data, cfg, process, train=False, device=device)
    steps = len(train_loader)
    if steps == 0:
        raise DatasetError(f'{cfg.train_data}: fewer training images than one batch')

    run = Run(cfg, arch, spec, tuple(classes), process, device)
    meta = _meta(run, data_summary)
    saved = _checkpoint_to_resume(cfg, arch, classes, process)
    start_epoch = int(saved['epoch']) if saved else 0
    horizon = Horizon(cfg.epochs)
    state = _training_state(run, steps, start_epoch, horizon, resuming=saved is not None)
    best, history, elapsed_before = -1.0, [], 0.0
    if saved:
        schedule_restored = state.load_state_dict(saved)
        best, history = float(saved['best']), list(saved['history'])
        elapsed_before = float(history[-1]['elapsed_s']) if history else 0.0
        if process.main:
            log.info('resumed from %s at epoch %d', out / checkpoint.LAST, start_epoch + 1)
            if not schedule_restored:
                log.info('learning-rate schedule placed at epoch %d of this recipe (the checkpoint '
                         'has none, or one for another lr or number of steps per epoch)', start_epoch + 1)
    if process.distributed and run.device.type == 'cuda' and cfg.sync_bn:
        state.model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(state.model)
    net = (DistributedDataParallel(state.model, device_ids=[device.index] if device.type == 'cuda' else None)
           if process.distributed else state.model)
    net = compiled_network(net, cfg, device)
    writer = SummaryWriter(str(out / 'tensorboard')) if process.main else None

    loop_started, epoch = time.perf_counter(), start_epoch
    epoch_seconds: list[float] = []  # each epoch's, the validation before it included
    while epoch < horizon.epochs:
        train_data.epoch = epoch
        if train_sampler is not None:
            train_sampler.set_epoch(epoch)
        losses = train_one_epoch(net, state, train_loader, run, epoch, show=show)
        record: dict[str, Any] = {
            'epoch': epoch + 1, 'train_loss': losses.means['loss'],
            'train_loss_parts': {k: v for k, v in losses.means.items() if k != 'loss'},
            'lr': losses.lr, 'images_per_s': steps * cfg.batch_size * process.world / losses.seconds}
        out_of_time = False
        if cfg.time_limit_minutes > 0:
            # elapsed and pace agreed by every process (their mean), so all stop after the same epoch
            now = time.perf_counter()
            epoch_seconds.append(now - loop_started - sum(epoch_seconds))
            elapsed, pace = (float(v) for v in distributed.mean(process, torch.tensor(
                [elapsed_before + now - started, epoch_pace(epoch_seconds)],
                dtype=torch.float64, device=run.device)))
            if cfg.fit_schedule:  # the epochs this pace (last validation included) fits in the time left
                left = cfg.time_limit_minutes * 60 - elapsed
                record['planned_epochs'] = horizon.fit(cfg, epoch + 1, pace, left)
            out_of_time = elapsed > cfg.time_limit_minutes * 60
        last = epoch + 1 == horizon.epochs
        metrics = None
        if (epoch + 1) % cfg.eval_interval == 0 or last or out_of_time:
            record['val_loss'], metrics = evaluate(state.average.model, val_loader, run)
            if metrics is not None:
                record.update(metrics.summary())
        record['elapsed_s'] = elapsed_before + time.perf_counter() - started
        history.append(record)
        if process.main:
            improved = metrics is not None and metrics.map > best
            best = metrics.map if improved else best
            _report(record, writer, epoch)
            _save(out, state, {**meta, 'epoch': epoch + 1, 'metrics': record}, best, history,
                  improved=improved)
        distributed.barrier(process)
        if out_of_time and not last:
            if process.main:
                log.info('time limit of %.1f min reached after epoch %d', cfg.time_limit_minutes, epoch + 1)
            break
        epoch += 1
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


def saved_so_far(out: Path, going_on: str = '--resume continues from there') -> str:
    """What an interrupted run leaves in ``out``, for its last message."""
    last = out / checkpoint.LAST
    if not last.is_file():
        return f'no epoch had finished, so {out} holds no checkpoint'
    return f'{last} holds epoch {checkpoint.load(last)["epoch"]} (the last finished): {going_on}'


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg, processes = parse_command(argv)
    rank = int(os.environ.get('RANK', '0'))
    logging.basicConfig(level=logging.INFO if rank == 0 else logging.WARNING,
                        format='%(asctime)s %(levelname)s %(name)s: %(message)s')
    if processes > 1 and not distributed.is_rank():  # the ranks run this again, as ranks
        raise SystemExit(run_ranks(processes, argv))
    try:
        best = train(cfg)
    except TRAINING_ERRORS as exc:
        raise SystemExit(f'perception-train: {exc}') from None
    except KeyboardInterrupt:
        # Every rank is interrupted; the first says what the run kept.
        raise SystemExit(interrupted('perception-train', saved_so_far(Path(cfg.out))) if rank == 0
                         else EXIT_INTERRUPTED) from None
    if rank == 0:
        print(f'best checkpoint: {best}')


if __name__ == '__main__':
    main()
