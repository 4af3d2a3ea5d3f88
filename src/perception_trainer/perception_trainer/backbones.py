"""ImageNet backbones for the CenterNet family, in plain PyTorch, named as torchvision names them.

torchvision's PyPI wheel does not import with the CPU torch these machines run, so ResNet-18 and
MobileNetV3-Large are written here with torchvision's module and parameter names (``conv1.weight``,
``layer1.0.bn1.running_mean``; ``features.1.block.0.0.weight``...): its published ImageNet
checkpoints load key for key. Only the classification head (ResNet ``fc``, MobileNet
``classifier``) is not built: a detector never runs it, DistributedDataParallel refuses parameters
that get no gradient, and it would add 0.5-2.5 M parameters to the bundle. Loading checks that a
checkpoint holds those head keys too (they are torchvision's) and drops them.

Each backbone returns the stride 4, 8, 16 and 32 features the CenterNet neck fuses, and says
their channel counts in ``channels``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

# torchvision's published ImageNet-1k weights (IMAGENET1K_V1 of each).
TORCHVISION_URLS = {
    'resnet18': 'https://download.pytorch.org/models/resnet18-f37072fd.pth',
    'mobilenet_v3_large': 'https://download.pytorch.org/models/mobilenet_v3_large-8738ca79.pth',
}
# torchvision classification-head keys: in every torchvision checkpoint, never used here.
HEAD_KEYS = {
    'resnet18': ('fc.weight', 'fc.bias'),
    'mobilenet_v3_large': ('classifier.0.weight', 'classifier.0.bias', 'classifier.3.weight',
                           'classifier.3.bias'),
}
# What torchvision trained these weights on: the input normalisation that goes with them.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
SHOWN_KEYS = 5  # how many missing / unexpected keys an error lists


class PretrainedError(ValueError):
    """A checkpoint that does not fit the backbone; the message names the file and the keys."""


# ResNet-18 (torchvision.models.resnet: BasicBlock, layers [2, 2, 2, 2]).

class BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.downsample = (nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
                           if stride != 1 or c_in != c_out else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + identity)


class ResNet18(nn.Module):
    name = 'resnet18'
    channels = (64, 128, 256, 512)

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = nn.Sequential(BasicBlock(64, 64, 1), BasicBlock(64, 64, 1))
        self.layer2 = nn.Sequential(BasicBlock(64, 128, 2), BasicBlock(128, 128, 1))
        self.layer3 = nn.Sequential(BasicBlock(128, 256, 2), BasicBlock(256, 256, 1))
        self.layer4 = nn.Sequential(BasicBlock(256, 512, 2), BasicBlock(512, 512, 1))
        for m in self.modules():  # torchvision's initialisation, for training from scratch
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        c4 = self.layer1(self.maxpool(self.relu(self.bn1(self.conv1(x)))))
        c8 = self.layer2(c4)
        c16 = self.layer3(c8)
        return c4, c8, c16, self.layer4(c16)


# MobileNetV3-Large (torchvision.models.mobilenetv3, width 1.0, full tail).

def make_divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (mobilenetv2._make_divisible): never 10 % under ``value``."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def conv_norm_activation(c_in: int, c_out: int, kernel: int, stride: int = 1, *, groups: int = 1,
                         activation: type[nn.Module] | None = nn.Hardswish) -> nn.Sequential:
    """torchvision's Conv2dNormActivation: keys .0 (conv), .1 (batch norm), then the activation.

    Batch norm eps 0.001 as torchvision's (its weights were trained with it), but PyTorch's default
    momentum 0.1, not its 0.01 (tuned for 600 ImageNet epochs): a detector's shorter runs need
    running statistics that follow the data within a few hundred steps."""
    conv = nn.Conv2d(c_in, c_out, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False)
    layers: list[nn.Module] = [conv, nn.BatchNorm2d(c_out, eps=0.001)]
    if activation is not None:
        layers.append(activation(inplace=True))
    return nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        squeezed = make_divisible(channels // 4)
        self.fc1 = nn.Conv2d(channels, squeezed, 1)
        self.fc2 = nn.Conv2d(squeezed, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = F.relu(self.fc1(F.adaptive_avg_pool2d(x, 1)))
        return x * F.hardsigmoid(self.fc2(scale))


class InvertedResidual(nn.Module):
    def __init__(self, row: tuple[int, int, int, int, bool, bool, int]) -> None:
        """``row``: a line of MOBILENET_V3_LARGE."""
        super().__init__()
        c_in, kernel, expanded, c_out, se, hard_swish, stride = row
        activation = nn.Hardswish if hard_swish else nn.ReLU
        layers: list[nn.Module] = []
        if expanded != c_in:
            layers.append(conv_norm_activation(c_in, expanded, 1, activation=activation))
        layers.append(conv_norm_activation(expanded, expanded, kernel, stride, groups=expanded,
                                           activation=activation))
        if se:
            layers.append(SqueezeExcitation(expanded))
        layers.append(conv_norm_activation(expanded, c_out, 1, activation=None))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.block(x)
        return x + y if self.residual else y


# (input, kernel, expanded, output, squeeze-excitation, hard-swish, stride): torchvision's table.
MOBILENET_V3_LARGE = (
    (16, 3, 16, 16, False, False, 1), (16, 3, 64, 24, False, False, 2), (24, 3, 72, 24, False, False, 1),
    (24, 5, 72, 40, True, False, 2), (40, 5, 120, 40, True, False, 1), (40, 5, 120, 40, True, False, 1),
    (40, 3, 240, 80, False, True, 2), (80, 3, 200, 80, False, True, 1), (80, 3, 184, 80, False, True, 1),
    (80, 3, 184, 80, False, True, 1), (80, 3, 480, 112, True, True, 1), (112, 3, 672, 112, True, True, 1),
    (112, 5, 672, 160, True, True, 2), (160, 5, 960, 160, True, True, 1), (160, 5, 960, 160, True, True, 1),
)


class MobileNetV3Large(nn.Module):
    name = 'mobilenet_v3_large'
    channels = (24, 40, 112, 960)
    # Index in ``features`` after which each stride's feature is taken: 4, 8, 16, 32.
    taps = (3, 6, 12, 16)

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_norm_activation(3, 16, 3, 2)]
        layers += [InvertedResidual(row) for row in MOBILENET_V3_LARGE]
        layers.append(conv_norm_activation(160, 960, 1))
        self.features = nn.Sequential(*layers)
        for m in self.modules():  # torchvision's initialisation, for training from scratch
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out')
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        taken = []
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in self.taps:
                taken.append(x)
        return tuple(taken)


BACKBONES = {'resnet18': ResNet18, 'mobilenet_v3': MobileNetV3Large}
# --pretrained torchvision:NAME -> the backbone it initialises.
TORCHVISION_BACKBONE = {'resnet18': 'resnet18', 'mobilenet_v3_large': 'mobilenet_v3'}


def read_checkpoint(source: str) -> tuple[dict[str, torch.Tensor], str]:
    """``torchvision:NAME`` (downloaded once into torch.hub's cache) or a local file -> (state dict,
    what to call it in messages). Tensors only: no pickled code is run."""
    if source.startswith('torchvision:'):
        name = source.split(':', 1)[1]
        if name not in TORCHVISION_URLS:
            raise PretrainedError(f'--pretrained {source}: torchvision weights known here are '
                                  f'{", ".join("torchvision:" + n for n in TORCHVISION_URLS)}')
        url = TORCHVISION_URLS[name]
        return torch.hub.load_state_dict_from_url(url, map_location='cpu', check_hash=True,
                                                  weights_only=True), url
    path = Path(source)
    if not path.is_file():
        raise PretrainedError(f'--pretrained {source}: no such file (or torchvision:NAME)')
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as exc:  # any unreadable file is the same user error, whatever torch raises
        raise PretrainedError(f'{path}: unreadable checkpoint: {exc}') from exc
    if isinstance(state, Mapping) and 'state_dict' in state and isinstance(state['state_dict'], Mapping):
        state = state['state_dict']
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise PretrainedError(f'{path}: not a state dict of tensors (torchvision layout expected)')
    return dict(state), str(path)


def load_torchvision_weights(backbone: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load a torchvision-layout state dict into ``backbone``; every key must correspond."""
    head = set(HEAD_KEYS[backbone.name])
    own = backbone.state_dict()
    expected = set(own) | head
    missing = [k for k in (*own, *HEAD_KEYS[backbone.name]) if k not in state]  # in network order
    unexpected = sorted(set(state) - expected)
    wrong_shape = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or wrong_shape:
        parts = []
        for what, keys in (('missing', missing), ('unexpected', unexpected)):
            if keys:
                parts.append(f'{len(keys)} {what} keys ({", ".join(keys[:SHOWN_KEYS])}'
                             f'{", ..." if len(keys) > SHOWN_KEYS else ""})')
        if wrong_shape:
            shapes = (f'{k}: {tuple(state[k].shape)} not {tuple(own[k].shape)}'
                      for k in wrong_shape[:SHOWN_KEYS])
            parts.append(f'{len(wrong_shape)} keys of another shape ({", ".join(shapes)})')
        raise PretrainedError(f'{source}: not torchvision {backbone.name} weights: {"; ".join(parts)}')
    backbone.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=True)


def torchvision_layout(name: str) -> dict[str, list[int]]:
    """Every key of torchvision's ``name`` checkpoint with its shape, as this module builds it."""
    backbone = BACKBONES[TORCHVISION_BACKBONE[name]]()
    layout = {k: list(v.shape) for k, v in backbone.state_dict().items()}
    head = {'resnet18': {'fc.weight': [1000, 512], 'fc.bias': [1000]},
            'mobilenet_v3_large': {'classifier.0.weight': [1280, 960], 'classifier.0.bias': [1280],
                                   'classifier.3.weight': [1000, 1280], 'classifier.3.bias': [1000]}}[name]
    return {**layout, **head}
