"""Where one training sample's time goes in the loader, per input size (issue 17: at 640x480 tiny m's
loader ran at half its 320x256 rate and kept it to 13-15 epochs in the peer table's budget).

For each size: the whole ``DetectionDataset.__getitem__`` (cached letterboxed image, the policy's
augmentation, CenterNet targets) in one process with OpenCV single-threaded, as a loader worker runs
it; then each transform of the policy alone (OneOf children one by one, each forced to apply), ms per
application and ms per sample at its probability; and the target encoding alone.

    python tools/loader_profile.py --out bench/results/loader_profile_cpu.json [--policy default]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
import warnings
from pathlib import Path

import albumentations as A
import cv2
import numpy as np

from perception_trainer.architectures import ARCHITECTURES
from perception_trainer.augment import policy
from perception_trainer.generate import generate_dataset
from perception_trainer.readers import load_dataset
from perception_trainer.training_data import DetectionDataset

SIZES = ((256, 320), (480, 640))


def per_call_ms(call, repeats: int) -> float:
    call()
    start = time.perf_counter()
    for _ in range(repeats):
        call()
    return (time.perf_counter() - start) / repeats * 1e3


def leaves(transforms, probability: float = 1.0):
    """(transform, chance it applies to a sample): OneOf picks one child, weighted by the children's p."""
    for t in transforms:
        if isinstance(t, A.OneOf):
            weights = np.array([c.p for c in t.transforms], dtype=float)
            for child, weight in zip(t.transforms, weights / weights.sum(), strict=True):
                yield child, probability * t.p * weight
        else:
            yield t, probability * t.p


def profile_size(samples, classes: int, size: tuple[int, int], name: str, repeats: int) -> dict:
    height, width = size
    arch = ARCHITECTURES['centernet']
    spec = arch.input_spec(height, width)
    dataset = DetectionDataset(samples, spec, arch.encode, classes, train=True, augment=name, seed=0,
                               cache=True, progress=False)
    indices = itertools.cycle(range(len(dataset)))
    whole = per_call_ms(lambda: dataset[next(indices)], min(len(dataset), repeats))
    canvas = dataset._canvas(0)
    boxes = dataset.transform_of(0).to_network(samples[0].boxes)
    labels = samples[0].labels
    rows = []
    for transform, chance in leaves(policy(name, spec).transforms):
        transform.p = 1.0
        alone = A.Compose([transform], bbox_params=A.BboxParams(format='pascal_voc', label_fields=['labels'],
                                                                 clip=True))
        ms = per_call_ms(lambda a=alone: a(image=canvas, bboxes=boxes, labels=labels), repeats)
        rows.append({'transform': type(transform).__name__, 'ms_per_application': round(ms, 3),
                     'chance': round(chance, 3), 'ms_per_sample': round(ms * chance, 3)})
    targets = per_call_ms(lambda: arch.encode(boxes, labels, classes, height, width), repeats)
    return {'input': f'{width}x{height}', 'sample_ms': round(whole, 3), 'images_per_s_per_process':
            round(1e3 / whole, 1), 'transforms': rows, 'targets_ms': round(targets, 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', type=Path, required=True)
    parser.add_argument('--data', type=Path, default=Path('/tmp/loader_profile_set'))
    parser.add_argument('--policy', default='default')
    parser.add_argument('--repeats', type=int, default=200)
    args = parser.parse_args()
    cv2.setNumThreads(1)  # as in every loader worker
    # a pixel-only transform composed alone with the bbox processor: albumentations says so, harmlessly
    warnings.filterwarnings('ignore', message='Got processor for bboxes')
    if not (args.data / 'metadata.json').is_file():
        generate_dataset(args.data, args.repeats, seed=1, workers=1, progress=False)
    labelled = load_dataset(args.data)
    report = {'machine': f'{platform.processor() or "cpu"}, {os.cpu_count()} cores, one process',
              'policy': args.policy, 'load_average': os.getloadavg(),
              'sizes': [profile_size(labelled.samples, len(labelled.classes), size, args.policy, args.repeats)
                        for size in SIZES]}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1) + '\n')
    for size in report['sizes']:
        rate, targets = size['images_per_s_per_process'], size['targets_ms']
        print(f"{size['input']}: {size['sample_ms']} ms per sample ({rate} images/s), targets {targets} ms")
        for row in sorted(size['transforms'], key=lambda r: -r['ms_per_sample']):
            print(f"  {row['transform']:<18} {row['ms_per_application']:7.3f} ms x {row['chance']:.2f}"
                  f" = {row['ms_per_sample']:.3f} ms per sample")


if __name__ == '__main__':
    main()
