"""The default detector: an anchor-free CenterNet with TTFNet-style box regression.

Why this design: one heatmap peak per object and four distances (left, top, right, bottom)
regressed at the peak need no anchors and no NMS-heavy post-processing. TTFNet's trick, regressing
the box from every location inside a Gaussian around the centre (weighted), trains several
times faster than CenterNet's centre-only regression, which matters on a 2-core CPU.

Every op is plain Conv/BatchNorm/ReLU/Resize/MaxPool/Sigmoid/arithmetic, which ONNX (opset 17)
and TensorRT run natively. :func:`dense_detections` decodes in the graph into the bundle's
``dense_boxes_scores`` format: sigmoid class heatmap, 3x3 max-pool peak suppression (scores under
``MIN_SCORE`` zeroed), boxes as x1, y1, x2, y2 in network-input pixels, one tensor
``[B, H/4 * W/4, 4 + C]``.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .backbones import BACKBONES

STRIDE = 4
BOX_SCALE = 16.0  # distances are softplus(raw) * BOX_SCALE pixels: raw ~ 0..5 covers any box
PRIOR = 0.01  # initial heatmap probability (focal-loss prior)
MIN_SCORE = 0.01  # deployed scores below this are zero; far under any useful detection threshold


def conv_bn(c_in: int, c_out: int, kernel: int = 1, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(c_in, c_out, kernel, stride, kernel // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(c_out), nn.ReLU(inplace=True))


class Separable(nn.Module):
    """Depthwise 3x3 then pointwise 1x1 (MobileNet block), residual when shapes allow."""

    def __init__(self, c_in: int, c_out: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = conv_bn(c_in, c_in, 3, stride, groups=c_in)
        self.pw = conv_bn(c_in, c_out)
        self.residual = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pw(self.dw(x))
        return x + y if self.residual else y


def stage(c_in: int, c_out: int, blocks: int) -> nn.Sequential:
    return nn.Sequential(Separable(c_in, c_out, 2), *(Separable(c_out, c_out) for _ in range(blocks - 1)))


# --size: the tiny backbone's widths and the neck's channels (n is the shipped model's).
TINY_WIDTHS = {'n': (24, 48, 96, 128, 160), 's': (32, 64, 128, 192, 256), 'm': (48, 96, 192, 256, 320)}
NECK = {'n': 64, 's': 96, 'm': 128}
# Backbones without ImageNet weights, built here (the others are torchvision's, in .backbones).
FROM_SCRATCH = ('tiny', 'resnet_slim')


class CenterNet(nn.Module):
    """Backbone at strides 4-32, FPN top-down to stride 4, heatmap and box heads.

    ``backbone`` None is the tiny separable backbone (its layers are this module's own, as in
    every checkpoint before the backbone choice); otherwise an ImageNet backbone from
    :mod:`.backbones`, as ``self.backbone`` with torchvision's parameter names."""

    def __init__(self, num_classes: int, widths: tuple[int, ...] = TINY_WIDTHS['n'],
                 neck: int = NECK['n'], backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        if backbone is None:
            w0, w4, w8, w16, w32 = widths
            self.stem = nn.Sequential(conv_bn(3, w0, 3, 2), conv_bn(w0, w4, 3, 2))  # stride 4
            self.s4 = Separable(w4, w4)
            self.s8 = stage(w4, w8, 2)
            self.s16 = stage(w8, w16, 3)
            self.s32 = stage(w16, w32, 2)
            channels = (w4, w8, w16, w32)
        else:
            self.backbone = backbone
            channels = backbone.channels
        self.lateral = nn.ModuleList(conv_bn(c, neck) for c in channels)
        self.fuse = Separable(neck, neck)
        self.heat = nn.Sequential(Separable(neck, neck), nn.Conv2d(neck, num_classes, 1))
        self.box = nn.Sequential(Separable(neck, neck), nn.Conv2d(neck, 4, 1))
        # Small final weights: every location starts at the prior, so the first steps are not
        # dominated by tens of thousands of confident false positives.
        for head in (self.heat[-1], self.box[-1]):
            nn.init.normal_(head.weight, std=0.01)
            nn.init.zeros_(head.bias)
        nn.init.constant_(self.heat[-1].bias, -math.log((1 - PRIOR) / PRIOR))

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Stride 4, 8, 16, 32 features."""
        if 'backbone' in self._modules:
            return self.backbone(images)
        c4 = self.s4(self.stem(images))
        c8 = self.s8(c4)
        c16 = self.s16(c8)
        return c4, c8, c16, self.s32(c16)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """-> class logits [B, C, H/4, W/4], box distances l, t, r, b [B, 4, H/4, W/4] (pixels)."""
        c4, c8, c16, c32 = self.features(images)
        p = self.lateral[3](c32)
        for level, feature in ((2, c16), (1, c8), (0, c4)):
            p = self.lateral[level](feature) + upsample_to(p, feature)
        p = self.fuse(p)
        return self.heat(p), F.softplus(self.box(p)) * BOX_SCALE


def upsample_to(coarse: torch.Tensor, fine: torch.Tensor) -> torch.Tensor:
    """Nearest x2 (the shipped graph's Resize), or to ``fine``'s size where the input is not a
    multiple of 32 and the backbone rounded a level up; the size is a constant in the export."""
    h, w = int(fine.shape[2]), int(fine.shape[3])
    if (2 * int(coarse.shape[2]), 2 * int(coarse.shape[3])) == (h, w):
        return F.interpolate(coarse, scale_factor=2.0, mode='nearest')
    return F.interpolate(coarse, size=(h, w), mode='nearest')


def build(num_classes: int, backbone: str = 'tiny', size: str = 'n') -> CenterNet:
    """The --backbone / --size model; ``build(n)`` is the shipped model."""
    if size not in NECK:
        raise ValueError(f'size {size!r}: one of {", ".join(NECK)}')
    if backbone == 'tiny':
        return CenterNet(num_classes, TINY_WIDTHS[size], NECK[size])
    if backbone == 'resnet_slim':  # its size is in the backbone; the neck stays at 64 (the 10 MB bundle)
        from .resnet_slim import ResNetSlim  # here: it builds its stem from this module's conv_bn

        return CenterNet(num_classes, neck=NECK['n'], backbone=ResNetSlim(size))
    if backbone not in BACKBONES:
        raise ValueError(f'backbone {backbone!r}: one of {", ".join(FROM_SCRATCH + tuple(BACKBONES))}')
    return CenterNet(num_classes, neck=NECK[size], backbone=BACKBONES[backbone]())


def location_centres(feature: torch.Tensor) -> torch.Tensor:
    """[2, H, W] x, y of each output location's centre in network-input pixels, for a
    [B, C, H, W] map.

    Exported to ONNX it is a constant (only the batch axis is dynamic there), the simplest graph
    for TensorRT. Otherwise it is built from the map itself rather than ``arange(device=...)``, so
    a traced TorchScript model carries no device constant and runs wherever it is moved. Export
    verification compares the two on every export."""
    if torch.onnx.is_in_onnx_export():
        h, w = int(feature.shape[2]), int(feature.shape[3])
        ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                                indexing='ij')
        return torch.stack([xs, ys]).add(0.5).mul(STRIDE)
    ones = torch.ones_like(feature[0, :2])
    return torch.stack([ones[0].cumsum(1), ones[1].cumsum(0)]).sub(0.5).mul(STRIDE)


def distances_to_boxes(distances: torch.Tensor) -> torch.Tensor:
    """[B, 4, H, W] l, t, r, b -> [B, 4, H, W] x1, y1, x2, y2 in network-input pixels."""
    centres = location_centres(distances)
    return torch.cat([centres - distances[:, :2], centres + distances[:, 2:]], dim=1)


def dense_detections(outputs: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor]:
    """Training outputs -> (``detections`` [B, N, 4 + C],) in the bundle's dense_boxes_scores format."""
    logits, distances = outputs
    heat = torch.sigmoid(logits)
    # A location keeps its score only where it is the 3x3 maximum (one candidate per object) and
    # at least MIN_SCORE: background near-ties, which runtimes break differently, become zeros.
    peaks = F.max_pool2d(heat, 3, stride=1, padding=1)
    scores = heat * ((peaks == heat) & (heat >= MIN_SCORE)).to(heat.dtype)
    boxes = distances_to_boxes(distances).to(heat.dtype)
    b, c = logits.shape[:2]
    return (torch.cat([boxes.flatten(2), scores.flatten(2)], dim=1).reshape(b, 4 + c, -1).transpose(1, 2),)


def peak_ties(outputs: tuple[torch.Tensor, torch.Tensor], tolerance: float) -> torch.Tensor:
    """[B, N, 4 + C] bool: deployed values decided by a numerical tie in the 3x3 peak test (or at
    MIN_SCORE). Runtimes break such ties differently; export verification reports them apart."""
    heat = torch.sigmoid(outputs[0])
    b, c, h, w = heat.shape
    window = F.unfold(F.pad(heat, (1, 1, 1, 1), value=-1.0), 3).view(b, c, 9, h, w)
    neighbours = torch.cat([window[:, :, :4], window[:, :, 5:]], 2).amax(2)  # the 8 around, not itself
    tie = ((neighbours - heat).abs() <= tolerance) | ((heat - MIN_SCORE).abs() <= tolerance)
    columns = torch.cat([torch.zeros(b, 4, tie.shape[2] * tie.shape[3], dtype=torch.bool), tie.flatten(2)], 1)
    return columns.reshape(b, 4 + c, -1).transpose(1, 2)
