"""The detectors ``perception-train --arch`` knows, and everything that differs between them:
network, input (size, resize, normalisation), targets, loss and bundle output format."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from perception_core.bundle import InputSpec

from . import centernet, centernet_targets, losses, single_object
from .backbones import BACKBONES, IMAGENET_MEAN, IMAGENET_STD

Encode = Callable[[np.ndarray, np.ndarray, int, int, int], dict[str, np.ndarray]]
# The same targets for a batch on its device: boxes [B, M, 4], labels [B, M] (-1: padding).
EncodeBatch = Callable[[torch.Tensor, torch.Tensor, int, int, int], dict[str, torch.Tensor]]
# -> {'loss': the total to minimise, then each part by name}; training logs every entry.
Loss = Callable[[tuple[torch.Tensor, ...], dict[str, torch.Tensor]], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class Architecture:
    name: str
    description: str
    input_size: tuple[int, int]  # default (height, width)
    resize: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    output_format: str
    output_names: tuple[str, ...]
    # (number of classes, backbone=, size=) -> the training network; build(n) is the default model.
    build: Callable[..., nn.Module]
    head: Callable[[tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]  # -> the bundle's outputs
    encode: Encode
    loss: Loss
    # Training outputs -> mask of bundle-output values that depend on a numerical tie (or None).
    ties: Callable[[tuple[torch.Tensor, ...], float], torch.Tensor] | None = None
    encode_batch: EncodeBatch | None = None  # what ``targets_on: device`` runs; None: the loader only

    backbones: tuple[str, ...] = ('tiny',)  # --backbone choices; the first is the default

    def input_spec(self, height: int, width: int, imagenet: bool = False) -> InputSpec:
        """``imagenet``: the backbone starts from ImageNet weights, so the input is normalised as
        they were trained (torchvision's mean/std), in training and in model.json alike."""
        mean, std = (IMAGENET_MEAN, IMAGENET_STD) if imagenet else (self.mean, self.std)
        return InputSpec(name='images', height=height, width=width, layout='NCHW', color='RGB',
                         resize=self.resize, pad_value=114, mean=mean, std=std)

    def targets_place(self, setting: str, device_type: str) -> str:
        """'loader' or 'device': where ``targets_on`` (auto, loader, device; TrainConfig checks it)
        encodes the training targets. ``auto`` = the device on CUDA (the loader processes are the
        limit there), the loader on the CPU (the batch version is slower than the workers there)."""
        if self.encode_batch is None:
            return 'loader'
        if setting == 'auto':
            return 'device' if device_type == 'cuda' else 'loader'
        return setting

    def model(self, num_classes: int, backbone: str = 'tiny', size: str = 'n') -> nn.Module:
        if backbone not in self.backbones:
            raise ValueError(f'--arch {self.name}: backbone {backbone!r} is not one of '
                             f'{", ".join(self.backbones)}')
        if len(self.backbones) == 1 and (backbone, size) != ('tiny', 'n'):
            raise ValueError(f'--arch {self.name} has one model: no --backbone or --size choice')
        if len(self.backbones) == 1:
            return self.build(num_classes)
        return self.build(num_classes, backbone, size)


def model_options(meta: Mapping[str, object]) -> dict[str, str]:
    """backbone and size of a checkpoint's model (its recipe); the defaults for checkpoints that
    predate the choice."""
    config = meta.get('config')
    config = config if isinstance(config, Mapping) else {}
    return {'backbone': str(config.get('backbone', 'tiny')), 'size': str(config.get('size', 'n'))}


class Deployed(nn.Module):
    """The graph a bundle ships: images -> the architecture's bundle-format outputs."""

    def __init__(self, model: nn.Module, architecture: Architecture) -> None:
        super().__init__()
        self.model = model
        self.head = architecture.head

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return self.head(self.model(images))


class Architectures(Mapping[str, Architecture]):
    """The architectures by name. An old name (``aliases``) finds its architecture too, so recipes,
    checkpoints and bundles that recorded it still work; iterating lists each architecture once,
    by its current name."""

    def __init__(self, architectures: tuple[Architecture, ...], aliases: Mapping[str, str]) -> None:
        self._by_name = {a.name: a for a in architectures}
        self.aliases = dict(aliases)

    def canonical(self, name: str) -> str:
        return self.aliases.get(name, name)

    def __getitem__(self, name: str) -> Architecture:
        return self._by_name[self.canonical(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def __len__(self) -> int:
        return len(self._by_name)


ARCHITECTURES = Architectures((
    Architecture(
        name='centernet',
        description='anchor-free CenterNet, TTFNet box regression, stride 4, in-graph peak decoding',
        input_size=(256, 320), resize='letterbox', mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25),
        output_format='dense_boxes_scores', output_names=('detections',),
        build=centernet.build, head=centernet.dense_detections, encode=centernet_targets.encode,
        loss=losses.centernet_loss, ties=centernet.peak_ties, encode_batch=centernet_targets.encode_batch,
        backbones=(*centernet.FROM_SCRATCH, *BACKBONES)),
    Architecture(
        name='single_object',
        description='one object per image: features + classification head + single-box regression head',
        input_size=(224, 224), resize='stretch', mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225),
        output_format='class_box', output_names=('class_logits', 'box'),
        build=single_object.SingleObjectNet, head=tuple, encode=single_object.encode,
        loss=single_object.single_object_loss),
), aliases={'lesson': 'single_object'})  # the name the source lesson gave it
