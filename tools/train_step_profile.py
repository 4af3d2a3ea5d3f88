"""Where a training step's time goes (issue 17: ours saw 15 epochs in the peer table's 4 minutes,
YOLO11n 34). For each member, on freshly rendered data:

1. the loader alone: batches/s out of the trainer's own DataLoader (``train._loader``: cached
   images, the default augmentation, targets), at each ``--workers`` count, nothing on the GPU;
   with ``--photometric loader,device`` also with the colour, blur and noise left to the device
   (``photometric_on device``), and what ``photometric.OnDevice`` then costs there per batch;
2. the step alone: one batch already on the device, ``--steps`` optimiser steps as
   ``epoch.train_one_epoch`` runs them, whole (images/s) and phase by phase (a synchronise between
   phases: normalise, forward, loss, finite check, backward, clip + optimiser, schedule, weight
   average), and torch.profiler's top operators by self CPU time.

If (1) is far above (2), the data pipeline is not what limits training; if (2)'s phases add up to
much more than its whole, the GPU waits for Python between kernels.

    python tools/train_step_profile.py --out OUT [--members resnet18:n,tiny:m] [--workers 4,8,12]
    # the device: run  carry=[".whl_peers"]  command="bash tools/train_step_profile_device.sh"
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch.profiler import ProfilerActivity, profile

from perception_trainer import distributed, photometric
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.compilation import begin_step, compiled_network
from perception_trainer.config import TrainConfig
from perception_trainer.epoch import GRAD_CLIP, Run, _check_finite, batch_targets, train_step
from perception_trainer.precision import autocast
from perception_trainer.train import _configure_torch, _datasets, _loader, _training_state
from perception_trainer.training_data import DetectionDataset, collate, normalise


def render(root: Path, images: int) -> Path:
    if not (root / 'metadata.json').is_file():
        subprocess.run([sys.executable, '-m', 'perception_trainer.generate', '--out', str(root),
                        '--num-images', str(images), '--seed', '1'], check=True)
    return root


def setup(member: str, data: Path, device: torch.device, out: Path, *,
          photometric_on: str = 'loader', targets_on: str = 'loader') -> tuple[Run, DetectionDataset]:
    """The member's run and its training set, images cached once (each figure changes only the
    loader's workers or batch size). OpenCV single-threaded, as the trainer sets it for workers."""
    backbone, _, size = member.partition(':')
    cfg = TrainConfig(train_data=str(data), val_fraction=0.05, backbone=backbone, size=size or 'n',
                      device=device.type, workers=1, out=str(out / 'run'), cache_images=True)
    process = distributed.Process(rank=0, world=1, local_rank=0)
    _configure_torch(cfg, device)
    arch = ARCHITECTURES[cfg.arch]
    spec = arch.input_spec(*arch.input_size)
    train_set, samples, _, _ = _datasets(cfg, process)
    encode = arch.encode if targets_on == 'loader' else None
    dataset = DetectionDataset(samples, spec, encode, len(train_set.classes), train=True,
                               augment=cfg.augment, seed=cfg.seed, cache=True, photometric=photometric_on)
    return Run(cfg, arch, spec, tuple(train_set.classes), process, device), dataset


def loader_rate(dataset: DetectionDataset, run: Run, workers: int, batches: int) -> float:
    """Images/s out of the trainer's DataLoader with ``workers``, after its first batch (worker start)."""
    cfg = run.cfg.model_copy(update={'workers': workers})
    loader, _ = _loader(dataset, cfg, run.process, train=True, device=run.device)
    iterator = iter(loader)
    next(iterator)
    start = time.perf_counter()
    count = sum(len(batch['image']) for batch in itertools.islice(iterator, batches))
    return count / (time.perf_counter() - start)


def _synchronise(device: torch.device) -> Any:
    return torch.cuda.synchronize if device.type == 'cuda' else (lambda: None)


def ms_per_call(call: Any, device: torch.device, repeats: int) -> float:
    """Milliseconds per ``call()`` on ``device``: three calls to warm up, then ``repeats`` timed
    between two synchronisations."""
    sync = _synchronise(device)
    for _ in range(3):
        call()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    sync()
    return round((time.perf_counter() - start) / repeats * 1e3, 3)


def photometric_ms(run: Run, dataset: DetectionDataset, batch_size: int,
                   repeats: int = 20) -> dict[str, Any]:
    """Milliseconds per batch of the device photometric half: eager (``photometric.apply``) and as
    the training loop runs it (``photometric.OnDevice``: a CUDA graph on CUDA), and torch.profiler's
    top operators in the latter."""
    cfg = run.cfg.model_copy(update={'batch_size': batch_size, 'workers': 0})
    loader, _ = _loader(dataset, cfg, run.process, train=True, device=run.device)
    batch = next(iter(loader))
    images = batch['image'].to(run.device)
    sync = _synchronise(run.device)
    generator = photometric.generator_for(run.device, 0, 0, 0)

    def timed(call: Any) -> float:
        return ms_per_call(lambda: call(images, batch['photometric'], generator), run.device, repeats)

    in_loop = photometric.OnDevice(run.device)
    found: dict[str, Any] = {'eager_ms': timed(photometric.apply), 'in_training_ms': timed(in_loop)}
    same = [call(images, batch['photometric'], photometric.generator_for(run.device, 0, 0, 0))
            for call in (photometric.apply, in_loop)]
    found['in_training_vs_eager_max_abs'] = float((same[0] - same[1]).abs().max())
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if run.device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        for _ in range(5):
            in_loop(images, batch['photometric'], generator)
        sync()
    found['profile_top'] = prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=15)
    return found


def targets_ms(run: Run, dataset: DetectionDataset, batch_size: int, repeats: int = 20) -> float:
    """Milliseconds per batch of ``targets_on: device`` (``epoch.batch_targets``: copy the padded
    boxes and labels, encode them there)."""
    cfg = run.cfg.model_copy(update={'batch_size': batch_size, 'workers': 0})
    loader, _ = _loader(dataset, cfg, run.process, train=True, device=run.device)
    batch = next(iter(loader))
    return ms_per_call(lambda: batch_targets(batch, run), run.device, repeats)


def step_phases(run: Run, batch: dict[str, torch.Tensor], steps: int) -> dict[str, Any]:
    """train_one_epoch's step on one device-resident batch: whole (``epoch.train_step`` itself),
    then phase by phase (``step`` below mirrors it, with a synchronise after each phase). The network
    as ``run.cfg.compile`` has training run it; its compilation falls in the warm-up steps."""
    state = _training_state(run, steps=1000, start_epoch=0, resuming=False)
    cfg, device = run.cfg, run.device
    net = compiled_network(state.model, cfg, device)
    net.train()
    images_u8 = batch['image'].to(device)
    targets = batch_targets(batch, run)
    sync = _synchronise(device)
    phases: dict[str, float] = {}

    def mark(name: str, since: float) -> float:
        sync()
        now = time.perf_counter()
        phases[name] = phases.get(name, 0.0) + now - since
        return now

    def step() -> None:
        begin_step(cfg)
        t = time.perf_counter()
        images = normalise(images_u8, run.spec)
        if run.channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        t = mark('normalise', t)
        with autocast(cfg, device):
            outputs = net(images)
        t = mark('forward', t)
        losses = run.arch.loss(outputs, targets)
        values = torch.stack([v.detach() for v in losses.values()]).float()
        t = mark('loss', t)
        _check_finite(values, list(losses), 'profile')
        t = mark('finite check (host read)', t)
        state.optimizer.zero_grad(set_to_none=True)
        state.scaler.scale(losses['loss']).backward()
        t = mark('backward', t)
        state.scaler.unscale_(state.optimizer)
        torch.nn.utils.clip_grad_norm_(state.model.parameters(), GRAD_CLIP)
        state.scaler.step(state.optimizer)
        state.scaler.update()
        t = mark('clip + optimiser', t)
        state.scheduler.step()
        t = mark('schedule', t)
        state.average.update(state.model)
        mark('weight average', t)

    def whole_step() -> None:
        train_step(net, state, images_u8, targets, run, where='profile')

    warmed = time.perf_counter()
    for _ in range(5):  # cuDNN autotuning, allocator; compilation and CUDA graph recording
        whole_step()
    sync()
    warm_up_s = time.perf_counter() - warmed
    sync()
    start = time.perf_counter()
    for _ in range(steps):
        whole_step()
    sync()
    whole = (time.perf_counter() - start) / steps  # seconds per step
    for _ in range(steps):
        step()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == 'cuda' else [])
    with profile(activities=activities) as prof:
        for _ in range(5):
            whole_step()
        sync()
    batch_size = len(images_u8)
    # torch logs each graph it would not record (and why: a CPU device, mutated inputs, ...) as a
    # warning; counted here so that a result says whether the step replayed CUDA graphs at all.
    skipped = int(torch._dynamo.utils.counters['inductor']['cudagraph_skips'])
    return {'batch_size': batch_size, 'compile': cfg.compile, 'warm_up_s': round(warm_up_s, 1),
            'cudagraph_skips_so_far': skipped,
            'step_ms': round(whole * 1e3, 2),
            'images_per_s': round(batch_size / whole, 1),
            'phases_ms': {k: round(v / steps * 1e3, 3) for k, v in phases.items()},
            'phases_sum_ms': round(sum(phases.values()) / steps * 1e3, 2),
            'profile_top': prof.key_averages().table(sort_by='self_cpu_time_total', row_limit=18)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--data', type=Path, default=Path('/tmp/profile_data'))
    parser.add_argument('--images', type=int, default=2048)
    parser.add_argument('--members', default='resnet18:n,tiny:m')
    parser.add_argument('--workers', default='4,8,12')
    parser.add_argument('--batches', type=int, default=40, help='loader batches per worker count')
    parser.add_argument('--steps', type=int, default=40)
    parser.add_argument('--batch-sizes', default='32', help='step section: batch sizes, comma separated')
    parser.add_argument('--photometric', default='loader',
                        help='loader section: photometric_on places, comma separated (loader, device)')
    parser.add_argument('--compile', default='none',
                        help='step section: values of the trainer\'s compile key, comma separated (none, '
                        'cudagraphs, default, reduce-overhead, max-autotune)')
    parser.add_argument('--targets', default='loader',
                        help='loader section: targets_on places, comma separated (loader, device); device '
                        'is measured with the photometric half on the device too')
    args = parser.parse_args(argv)
    if 'device' in args.targets.split(',') and 'device' not in args.photometric.split(','):
        parser.error('--targets device is measured against --photometric device: give both')
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    args.out.mkdir(parents=True, exist_ok=True)
    data = render(args.data, args.images)
    gpu = torch.cuda.get_device_name(0) if device.type == 'cuda' else 'no GPU'
    result: dict[str, Any] = {'machine': f'{gpu}, {os.cpu_count()} CPU cores', 'images': args.images,
                              'members': {}}
    for member in args.members.split(','):
        found: dict[str, Any] = {'loader_images_per_s': {}}
        run, dataset = setup(member, data, device, args.out)
        for workers in [int(w) for w in args.workers.split(',')]:
            found['loader_images_per_s'][workers] = round(loader_rate(dataset, run, workers, args.batches), 1)
            print(member, 'loader', workers, found['loader_images_per_s'][workers], flush=True)
        if 'device' in args.photometric.split(','):
            _, on_device = setup(member, data, device, args.out, photometric_on='device')
            rates = found['loader_images_per_s_photometric_on_device'] = {}
            for workers in [int(w) for w in args.workers.split(',')]:
                rates[workers] = round(loader_rate(on_device, run, workers, args.batches), 1)
                print(member, 'loader, photometric on the device', workers, rates[workers], flush=True)
            costs = found['photometric_ms'] = {
                b: photometric_ms(run, on_device, int(b)) for b in args.batch_sizes.split(',')}
            for b, cost in costs.items():
                print(member, 'photometric ms per batch of', b, {k: v for k, v in cost.items()
                                                                if k != 'profile_top'}, flush=True)
            print(next(iter(costs.values()))['profile_top'], flush=True)
        if 'device' in args.targets.split(','):
            _, lean = setup(member, data, device, args.out, photometric_on='device', targets_on='device')
            rates = found['loader_images_per_s_photometric_and_targets_on_device'] = {}
            for workers in [int(w) for w in args.workers.split(',')]:
                rates[workers] = round(loader_rate(lean, run, workers, args.batches), 1)
                print(member, 'loader, photometric and targets on the device', workers, rates[workers],
                      flush=True)
            found['targets_ms'] = {b: targets_ms(run, lean, int(b)) for b in args.batch_sizes.split(',')}
            # The device's targets against the loader's for the same 32 samples (same augmentation).
            made = batch_targets(collate([lean[i] for i in range(32)]), run)
            want = collate([on_device[i] for i in range(32)])
            found['targets_vs_loader_max_abs'] = {k: float((made[k].cpu() - want[k]).abs().max())
                                                  for k in made}
            print(member, 'targets ms per batch', found['targets_ms'], 'max abs vs the loader\'s',
                  found['targets_vs_loader_max_abs'], flush=True)
        for batch_size, mode in itertools.product([int(b) for b in args.batch_sizes.split(',')],
                                                  args.compile.split(',')):
            cfg = run.cfg.model_copy(update={'batch_size': batch_size, 'workers': 0})
            loader, _ = _loader(dataset, cfg, run.process, train=True, device=run.device)
            key = ('step' if batch_size == 32 else f'step_batch{batch_size}') + (
                '' if mode == 'none' else f'_compile_{mode}')
            compiled = dataclasses.replace(run, cfg=run.cfg.model_copy(update={'compile': mode}))
            found[key] = step_phases(compiled, next(iter(loader)), args.steps)
            print(member, key, json.dumps({k: v for k, v in found[key].items() if k != 'profile_top'}),
                  flush=True)
            print(found[key]['profile_top'], flush=True)
        result['members'][member] = found
        (args.out / 'train_step_profile.json').write_text(json.dumps(result, indent=1))
    return 0


if __name__ == '__main__':
    sys.exit(main())
