"""Labelled images -> network-ready batches: letterbox, box-aware augmentation, targets.

Geometry comes from the node's :func:`perception_core.preprocess.plan_transform`, so the
network trains on exactly the resize and padding it sees when deployed. Images stay uint8 until
they reach the device, where :func:`normalise` applies the bundle's mean/std (less to copy
between processes). Augmentation is a named policy of :mod:`.augment` (albumentations, box-aware).

An image that cannot be read mid-training is logged and replaced by the next one; training never
stops over one bad file. In evaluation mode it is marked invalid and left out of the metrics.
"""

from __future__ import annotations

import functools
import logging
import os
from concurrent.futures import ThreadPoolExecutor

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, default_collate
from tqdm import tqdm

from perception_core.bundle import InputSpec
from perception_core.preprocess import Transform, plan_transform

from . import photometric as ph
from . import seeds
from .annotations import Sample
from .architectures import Encode
from .augment import policy, policy_name

log = logging.getLogger(__name__)


def letterbox(rgb: np.ndarray, spec: InputSpec) -> tuple[np.ndarray, Transform]:
    """RGB uint8 image -> the uint8 network-input canvas (before scaling) and its geometry."""
    t = plan_transform(rgb.shape[0], rgb.shape[1], spec)
    canvas = np.full((spec.height, spec.width, 3), spec.pad_value, np.uint8)
    canvas[t.pad_y:t.pad_y + t.resized_height, t.pad_x:t.pad_x + t.resized_width] = cv2.resize(
        rgb, (t.resized_width, t.resized_height), interpolation=cv2.INTER_LINEAR)
    return canvas, t


def normalise(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """uint8 [B, 3, H, W] -> float input: pixels / 255, then (x - mean) / std, as model.json says."""
    mean, std = _mean_std(tuple(spec.mean), tuple(spec.std), images.device)
    return (images.float() - mean) / std


@functools.lru_cache(maxsize=16)
def _mean_std(mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
              ) -> tuple[torch.Tensor, torch.Tensor]:
    # Made once per device: a tensor made from a list is a copy from pageable host memory, which
    # waits for the GPU to finish its queue, twice in every training step.
    return (torch.tensor(mean, device=device).view(1, 3, 1, 1) * 255,
            torch.tensor(std, device=device).view(1, 3, 1, 1) * 255)


def read_rgb(path: str) -> np.ndarray | None:
    bgr = cv2.imread(path, cv2.IMREAD_COLOR)
    return None if bgr is None else cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def collate(samples: list[dict]) -> dict:
    """The loader's batches: torch's default, except that samples' 'boxes' [N, 4] and 'labels' [N]
    (``targets_on: device``) are padded to the batch's most objects, labels -1 in the padding."""
    if 'labels' not in samples[0]:
        return default_collate(samples)
    most = max(1, *(len(s['labels']) for s in samples))
    boxes = np.zeros((len(samples), most, 4), np.float32)
    labels = np.full((len(samples), most), -1, np.int64)
    for row, s in enumerate(samples):
        boxes[row, :len(s['labels'])] = s['boxes']
        labels[row, :len(s['labels'])] = s['labels']
    batch = default_collate([{k: v for k, v in s.items() if k not in ('boxes', 'labels')} for s in samples])
    return {**batch, 'boxes': torch.from_numpy(boxes), 'labels': torch.from_numpy(labels)}


class DetectionDataset(Dataset):
    """Samples -> {'image': uint8 [3, H, W], 'index', 'valid', <the architecture's targets>}; with
    ``encode=None`` 'boxes' (float32 [N, 4], network pixels) and 'labels' (int64 [N]) instead, for
    the architecture's ``encode_batch`` on the training device (batch them with :func:`collate`);
    with ``photometric='device'`` also 'photometric' (float32 [photometric.PARAMETERS]), the
    sample's colour, blur and noise for :func:`photometric.apply` to do on the training device."""

    def __init__(self, samples: list[Sample], spec: InputSpec, encode: Encode | None, num_classes: int, *,
                 train: bool, augment: str | bool = 'default', seed: int = 0, cache: bool = False,
                 progress: bool = False, photometric: str = 'loader') -> None:
        self.samples = samples
        self.spec = spec
        self.encode = encode
        self.num_classes = num_classes
        self.train = train
        self.seed = seed
        self.epoch = 0  # set by the trainer each epoch; workers are re-created per epoch
        # augment: a policy name (none / default / strong); True / False as old callers pass it.
        name = policy_name(augment)
        self.on_device = train and photometric == 'device' and ph.has_device_version(name)
        self.transform = policy(name, spec, photometric=not self.on_device) if train else None
        self._cache: list[np.ndarray | None] | None = None
        if cache:
            # Decoded once in the main process; forked loader workers share the pages. Threads, as
            # OpenCV's decode and resize release the GIL: one per core this process may use (as
            # train.py counts them for the loader), in sample order.
            with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
                self._cache = list(tqdm(pool.map(self._load, range(len(samples))), total=len(samples),
                                        desc='caching images', unit='img', disable=not progress))

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, index: int) -> np.ndarray | None:
        rgb = read_rgb(str(self.samples[index].image))
        if rgb is None:
            log.warning('%s: unreadable image, skipped', self.samples[index].image)
            return None
        return letterbox(rgb, self.spec)[0]

    def _canvas(self, index: int) -> np.ndarray | None:
        return self._cache[index] if self._cache is not None else self._load(index)

    def transform_of(self, index: int) -> Transform:
        sample = self.samples[index]
        return plan_transform(sample.height, sample.width, self.spec)

    def __getitem__(self, index: int) -> dict:
        canvas = self._canvas(index)
        if canvas is None and self.train:
            for step in range(1, len(self.samples)):
                index_ = (index + step) % len(self.samples)
                canvas = self._canvas(index_)
                if canvas is not None:
                    index = index_
                    break
        valid = canvas is not None
        if canvas is None:
            canvas = np.full((self.spec.height, self.spec.width, 3), self.spec.pad_value, np.uint8)
        sample = self.samples[index]
        boxes = self.transform_of(index).to_network(sample.boxes)
        labels = sample.labels
        if self.transform is not None:
            # Seeded per (seed, epoch, index): the same augmentation whatever the worker count.
            self.transform.set_random_seed(seeds.derived(self.seed, self.epoch, index))
            out = self.transform(image=canvas, bboxes=boxes, labels=labels)
            canvas = out['image']
            boxes = np.asarray(out['bboxes'], np.float32).reshape(-1, 4)
            labels = np.asarray(out['labels'], np.int64)
        if self.encode is None:
            targets = {'boxes': np.asarray(boxes, np.float32).reshape(-1, 4),
                       'labels': np.asarray(labels, np.int64)}
        else:
            targets = self.encode(boxes, labels, self.num_classes, self.spec.height, self.spec.width)
        if self.on_device:
            targets['photometric'] = ph.draw(seeds.derived(self.seed, self.epoch, index, 1))
        return {'image': np.ascontiguousarray(canvas.transpose(2, 0, 1)), 'index': index, 'valid': valid,
                **targets}
