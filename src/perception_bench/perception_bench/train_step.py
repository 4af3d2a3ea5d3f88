"""``perception-train-bench``: training throughput of the default detector on this machine.

Two numbers, because either can be the limit: the optimiser step (forward, backward, AdamW) on
batches already on the device, and the data pipeline (decode, letterbox, augmentation, targets)
per loader process. Frames are real rendered scenes. The load average is recorded beside the
numbers: on a shared machine they are only as good as the machine was quiet.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from perception_core import atomic
from perception_core.interrupt import on_ctrl_c
from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.config import TrainConfig
from perception_trainer.generate import generate_dataset
from perception_trainer.precision import autocast
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset, normalise


def step_throughput(device: torch.device, frames: Path, *, batch_size: int, steps: int, amp: bool,
                    channels_last: bool) -> dict:
    arch = ARCHITECTURES['centernet']
    spec = arch.input_spec(*arch.input_size)
    data = DetectionDataset(load_dataset(frames).samples, spec, arch.encode, 10, train=True)
    items = [data[i % len(data)] for i in range(batch_size)]
    batch = {k: torch.from_numpy(np.stack([it[k] for it in items])).to(device)
             for k in items[0] if k not in ('index', 'valid')}
    model = arch.build(10).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cfg = TrainConfig(train_data='-', amp=amp)
    images = normalise(batch.pop('image'), spec)
    if channels_last:
        images = images.contiguous(memory_format=torch.channels_last)

    def step() -> None:
        with autocast(cfg, device):
            outputs = model(images)
        loss = arch.loss(outputs, batch)['loss']
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(3):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == 'cuda':
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {'images_per_s': round(steps * batch_size / seconds, 1),
            'ms_per_step': round(1000 * seconds / steps, 2)}


def loader_throughput(frames: Path, items: int) -> float:
    """Images per second one loader process prepares (read, letterbox, augment, targets)."""
    arch = ARCHITECTURES['centernet']
    data = DetectionDataset(load_dataset(frames).samples, arch.input_spec(*arch.input_size), arch.encode, 10,
                            train=True)
    start = time.perf_counter()
    for i in range(items):
        data[i % len(data)]
    return round(items / (time.perf_counter() - start), 1)


@on_ctrl_c('perception-train-bench')
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog='perception-train-bench', description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument('--batch-size', type=int, default=32)
    parser.add_argument('--steps', type=int, default=10)
    parser.add_argument('--frames', type=Path, default=Path('/tmp/perception-train-bench'),
                        help='where the rendered frames go')
    parser.add_argument('--out', type=Path, help='JSON result (e.g. bench/results/train_cpu.json)')
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    frames = generate_dataset(args.frames, 32, seed=77, workers=1, progress=False)
    # channels-last is the trainer's default on both devices (on the CPU it doubled the step here)
    variants = [('fp32', False, False), ('fp32_channels_last', False, True)]
    if device.type == 'cuda':
        variants += [('amp', True, False), ('amp_channels_last', True, True)]
    name = torch.cuda.get_device_name(device) if device.type == 'cuda' else platform.processor() or 'cpu'
    result = {
        'device': name,
        'cpu_count': os.cpu_count(), 'torch_threads': torch.get_num_threads(), 'torch': torch.__version__,
        'batch_size': args.batch_size, 'input': list(ARCHITECTURES['centernet'].input_size),
        'load_average_before': list(os.getloadavg()),
        'train_step': {name: step_throughput(device, frames, batch_size=args.batch_size, steps=args.steps,
                                             amp=amp, channels_last=cl)
                       for name, amp, cl in variants},
        'loader_images_per_s_per_process': loader_throughput(frames, 64),
        'load_average_after': list(os.getloadavg()),
    }
    if args.out:
        atomic.write_json(args.out, result)
    print(json.dumps(result, indent=2))


if __name__ == '__main__':
    main()
