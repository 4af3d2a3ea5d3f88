"""What each transform of an augmentation policy costs a loader process, per sample.

Renders a few frames at the network's input size, applies each of the policy's transforms alone
(forced to apply; a OneOf's members one by one) on one OpenCV thread, and prints the time per call
beside its chance in the policy, and the expected cost per sample (time x chance).

    tools/in_env.sh python tools/augment_cost.py --policy strong
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import albumentations as A
import cv2

from perception_core.bundle import InputSpec
from perception_trainer import augment
from perception_trainer.generate import generate_dataset


def members(transforms: list[A.BasicTransform]) -> list[tuple[A.BasicTransform, float]]:
    """Each transform with its chance of applying to a sample (a OneOf's members share its chance)."""
    found = []
    for t in transforms:
        if isinstance(t, A.OneOf):
            found += [(c, t.p / len(t.transforms)) for c in t.transforms]
        else:
            found.append((t, t.p))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--policy', choices=[p for p in augment.POLICIES if p != 'none'], default='strong')
    parser.add_argument('--size', default='320x256', help='network input WxH')
    parser.add_argument('--frames', type=int, default=24)
    parser.add_argument('--rounds', type=int, default=5)
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.split('x'))
    cv2.setNumThreads(1)  # as in a loader process
    with tempfile.TemporaryDirectory() as tmp:
        data = generate_dataset(Path(tmp), args.frames, 1, size=(width, height), workers=1, progress=False)
        frames = [cv2.imread(str(p)) for p in sorted((data / 'images').glob('*.jpg'))]
    spec = InputSpec(name='images', height=height, width=width)
    total = 0.0
    print(f'{"transform":18s} {"ms per call":>11s} {"chance":>7s} {"ms per sample":>13s}')
    composed = augment.policy(args.policy, spec)
    assert composed is not None
    for transform, chance in members(list(composed.transforms)):
        transform.p = 1.0
        alone = A.Compose([transform], bbox_params=A.BboxParams(format='pascal_voc', label_fields=['labels']))
        for frame in frames[:4]:  # warm-up
            alone(image=frame, bboxes=[[10, 10, 100, 100]], labels=[0])
        started = time.perf_counter()
        for _ in range(args.rounds):
            for frame in frames:
                alone(image=frame, bboxes=[[10, 10, 100, 100]], labels=[0])
        ms = (time.perf_counter() - started) / (args.rounds * len(frames)) * 1e3
        total += ms * chance
        print(f'{type(transform).__name__:18s} {ms:11.3f} {chance:7.3f} {ms * chance:13.3f}')
    print(f'{"expected per sample":18s} {"":11s} {"":7s} {total:13.3f}')
    return 0


if __name__ == '__main__':
    sys.exit(main())
