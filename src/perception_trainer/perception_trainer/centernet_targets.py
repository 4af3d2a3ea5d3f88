"""Training targets for :mod:`centernet`: per image in the data loader workers (:func:`encode`,
numpy), or per batch on the training device (:func:`encode_batch`, torch, ``targets_on: device``).

* ``heat`` [C, H/4, W/4]: an elliptical Gaussian per object (TTFNet, alpha 0.54), exactly 1 at
  the output location holding the box centre.
* ``box`` [4, H/4, W/4]: the object's x1, y1, x2, y2 (network-input pixels) at every location of
  its regression Gaussian (beta 0.54), ``box_weight`` [H/4, W/4] the Gaussian normalised per
  object and scaled by log(area), so large objects do not drown small ones.

Objects are drawn largest first; where two overlap, the smaller one owns the box locations.
"""

from __future__ import annotations

import numpy as np
import torch

from .centernet import STRIDE

ALPHA = 0.54  # heatmap Gaussian size relative to the box
BETA = 0.54  # regression area relative to the box


def _gaussian(dx: np.ndarray, dy: np.ndarray, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(dx * dx) / (2 * sx * sx) - (dy * dy) / (2 * sy * sy))


def encode(boxes: np.ndarray, labels: np.ndarray, num_classes: int, height: int, width: int
           ) -> dict[str, np.ndarray]:
    """Targets for one image; ``boxes`` [N, 4] in network-input pixels."""
    fh, fw = height // STRIDE, width // STRIDE
    heat = np.zeros((num_classes, fh, fw), np.float32)
    box = np.zeros((4, fh, fw), np.float32)
    weight = np.zeros((fh, fw), np.float32)
    areas = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    for i in np.argsort(-areas, kind='stable'):
        x1, y1, x2, y2 = boxes[i] / STRIDE
        cx = int(np.clip((x1 + x2) / 2, 0, fw - 1))
        cy = int(np.clip((y1 + y2) / 2, 0, fh - 1))
        w, h = max(x2 - x1, 1e-3), max(y2 - y1, 1e-3)
        sx, sy = max(ALPHA * w / 6, 0.3), max(ALPHA * h / 6, 0.3)
        rx, ry = int(np.ceil(3 * sx)), int(np.ceil(3 * sy))
        xa, xb, ya, yb = max(cx - rx, 0), min(cx + rx + 1, fw), max(cy - ry, 0), min(cy + ry + 1, fh)
        dy, dx = np.mgrid[ya - cy:yb - cy, xa - cx:xb - cx].astype(np.float32)
        patch = heat[labels[i], ya:yb, xa:xb]
        np.maximum(patch, _gaussian(dx, dy, sx, sy), out=patch)
        # Regression locations: inside the beta-shrunk box around the centre.
        bx, by = max(BETA * w / 2, 0.5), max(BETA * h / 2, 0.5)
        inside = (np.abs(dx) <= bx) & (np.abs(dy) <= by)
        inside[cy - ya, cx - xa] = True
        g = _gaussian(dx, dy, max(BETA * w / 6, 0.3), max(BETA * h / 6, 0.3)) * inside
        g *= np.log(max(areas[i], 2.0)) / g.sum()
        sel = g > 0
        weight[ya:yb, xa:xb][sel] = g[sel]
        box[:, ya:yb, xa:xb][:, sel] = boxes[i][:, None]
    return {'heat': heat, 'box': box, 'box_weight': weight}


def encode_batch(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, height: int, width: int
                 ) -> dict[str, torch.Tensor]:
    """:func:`encode` for a whole batch on its device (``targets_on: device``): ``boxes`` [B, M, 4]
    in network-input pixels, ``labels`` [B, M], -1 where a row is padding. The same targets to float
    rounding: every object's Gaussians over the whole output grid at once, cut to the window
    :func:`encode` draws them in, and each location's box given to the object drawn there last."""
    fh, fw = height // STRIDE, width // STRIDE
    b, m = labels.shape
    real = labels >= 0
    cells = boxes.float() / STRIDE
    x1, y1, x2, y2 = cells.unbind(-1)  # [B, M] each
    areas = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    cx = ((x1 + x2) / 2).clamp(0, fw - 1).floor()
    cy = ((y1 + y2) / 2).clamp(0, fh - 1).floor()
    w, h = (x2 - x1).clamp(min=1e-3), (y2 - y1).clamp(min=1e-3)
    sx, sy = (ALPHA * w / 6).clamp(min=0.3), (ALPHA * h / 6).clamp(min=0.3)
    rx, ry = torch.ceil(3 * sx), torch.ceil(3 * sy)
    # Offsets from each object's centre cell: [B, M, 1, W] and [B, M, H, 1], broadcast to the grid.
    dx = torch.arange(fw, device=boxes.device, dtype=torch.float32).view(1, 1, 1, fw) - cx[..., None, None]
    dy = torch.arange(fh, device=boxes.device, dtype=torch.float32).view(1, 1, fh, 1) - cy[..., None, None]

    def grid(v: torch.Tensor) -> torch.Tensor:
        return v[..., None, None]

    window = (dx.abs() <= grid(rx)) & (dy.abs() <= grid(ry)) & grid(real)
    peaks = _gaussian_t(dx, dy, grid(sx), grid(sy)) * window
    heat = torch.zeros(b, num_classes, fh * fw, device=boxes.device, dtype=torch.float32)
    heat.scatter_reduce_(1, labels.clamp(min=0).view(b, m, 1).expand(b, m, fh * fw), peaks.view(b, m, -1),
                         reduce='amax')
    bx, by = (BETA * w / 2).clamp(min=0.5), (BETA * h / 2).clamp(min=0.5)
    inside = ((dx.abs() <= grid(bx)) & (dy.abs() <= grid(by)) | (dx == 0) & (dy == 0)) & grid(real)
    g = _gaussian_t(dx, dy, grid((BETA * w / 6).clamp(min=0.3)), grid((BETA * h / 6).clamp(min=0.3))) * inside
    g = g * grid(torch.log(areas.clamp(min=2.0))) / g.sum((2, 3), keepdim=True).clamp(min=1e-30)
    # Draw order: largest first, ties in input order; the last object drawn at a location owns it.
    order = torch.sort(torch.where(real, -areas, torch.full_like(areas, float('inf'))), dim=1, stable=True)[1]
    rank = torch.empty_like(order).scatter_(1, order, torch.arange(m, device=boxes.device).expand(b, m))
    drawn = g.view(b, m, -1) > 0
    owner = torch.where(drawn, rank[..., None], torch.full_like(drawn, -1, dtype=rank.dtype))
    last, owner_index = owner.max(1)  # [B, H*W]: the last drawn object's rank (-1: none) and row
    covered = last >= 0
    weight = g.view(b, m, -1).gather(1, owner_index[:, None]).squeeze(1) * covered
    box = boxes.float().gather(1, owner_index[..., None].expand(b, fh * fw, 4)) * covered[..., None]
    return {'heat': heat.view(b, num_classes, fh, fw), 'box': box.permute(0, 2, 1).reshape(b, 4, fh, fw),
            'box_weight': weight.view(b, fh, fw)}


def _gaussian_t(dx: torch.Tensor, dy: torch.Tensor, sx: torch.Tensor, sy: torch.Tensor) -> torch.Tensor:
    return torch.exp(-(dx * dx) / (2 * sx * sx) - (dy * dy) / (2 * sy * sy))
